"""benchmarks/run_all.py --fast: every benchmark runs, and the tables it writes into (a copy of)
docs/performance.md are exactly the ones it printed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_all  # noqa: E402


@pytest.mark.slow
def test_run_all_fast_writes_the_tables_it_printed(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    shutil.copy(ROOT / "docs" / "performance.md", page)
    untouched = page.read_text()
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run_all.py"),
            "--fast",
            "--threads",
            "1",
            "--docs",
            str(page),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    printed = dict(re.findall(r"=== table (\S+) ===\n(.*?)\n=== end table \1 ===", out.stdout, re.S))
    assert set(printed) >= {
        "optimizer-eager",
        "evaluation",
        "study-scaling",
        "benchmark-overhead",
        "amalgamation-meta",
        "amalgamation-step",
    }
    text = page.read_text()
    for table_id, block in printed.items():
        start, end = run_all.TABLE_START.format(id=table_id), run_all.TABLE_END.format(id=table_id)
        assert f"{start}\n{block}\n{end}" in text, table_id
        assert "smoke budgets" in block.splitlines()[0] and "torch 2." in block.splitlines()[0]
        assert re.search(r"^\| .* \|$", block, re.M), f"{table_id}: no Markdown table"
    # progress was shown as the benchmarks went, and nothing outside the markers changed
    assert out.stdout.count("  ... ") >= 10
    strip = lambda t: re.sub(r"<!-- bench:(\S+) -->.*?<!-- /bench:\1 -->", r"[\1]", t, flags=re.S)  # noqa: E731
    assert strip(text) == strip(untouched)


def test_markdown_and_markers() -> None:
    env = {"date": "2026-01-02", "torch": "2.14.1", "machine": "cpu", "cores": 2, "threads": 2}
    table = {"id": "t", "title": "T", "columns": ["a", "b"], "rows": [["1", "**2×**"]], "note": "n"}
    block = run_all.markdown(table, env, False, "python benchmarks/run_all.py")
    assert block.splitlines()[0] == (
        "_2026-01-02, torch 2.14.1, cpu, 2 cores, 2 threads; `python benchmarks/run_all.py`_"
    )
    assert "| a | b |\n|---|---|\n| 1 | **2×** |\n\nn" in block
    page = "x\n<!-- bench:t -->\nold\n<!-- /bench:t -->\ny"
    assert run_all.write_tables(page, {"t": block}) == f"x\n<!-- bench:t -->\n{block}\n<!-- /bench:t -->\ny"
    with pytest.raises(SystemExit, match="no markers"):
        run_all.write_tables("x", {"t": block})
