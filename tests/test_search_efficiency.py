"""benchmarks/search_efficiency.py --fast: every planner runs real searches through the command
line, and the page gets a table with a row per planner and an anytime figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_search_efficiency_fast_writes_its_table_and_figure(tmp_path: Path) -> None:
    page = tmp_path / "search-efficiency.md"
    page.write_text("# Search efficiency\n\nhand-written reading stays\n")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--fast", "--out", str(page)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = page.read_text()
    assert "hand-written reading stays" in text
    assert "<!-- bench:search-efficiency -->" in text and "smoke budgets" in text
    for planner in ("particle-ga", "random", "regularized-evolution"):
        assert f"| {planner} | warm |" in text
    assert (tmp_path / "search-efficiency" / "digits-convnet.png").stat().st_size > 1000
    assert out.stdout.count("  ... ") >= 6  # progress as it went
