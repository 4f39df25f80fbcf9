"""The README's promises: two set-up commands, CI runs the test one, the example runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _setup_commands() -> list[str]:
    section = README.split("## Set up and run", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    cmds = _setup_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    ci = (ROOT / ".ci" / "run").read_text()
    assert cmds[1] in ci


@pytest.mark.slow
def test_main_command_runs(tmp_path: Path) -> None:
    """The main job (a quick study on MNIST-5k, ending with its verdict against tuned Adam) runs to
    the end, twice; what it prints about "better" is what the storage holds."""
    main = _setup_commands()[0]
    assert main.startswith("pip install -e . && ")
    env = {**os.environ, "NOSPLUG_STORAGE": f"journal:{tmp_path / 'journal.log'}", "COLUMNS": "120"}
    printed = []
    for _ in range(2):  # the second time everything is already done: it must still succeed
        for part in main.split(" && ")[1:]:
            args = shlex.split(part)
            assert args[0] == "nosplug"
            out = subprocess.run(
                [sys.executable, "-m", "nosplug", *args[1:]],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=env,
                timeout=1500,  # ~3 minutes alone on 2 cores; a loaded CI machine may take several times that
            )
            assert out.returncode == 0, out.stderr[-2000:]
            printed.append(out.stdout)
    best = subprocess.run(
        [sys.executable, "-m", "nosplug", "study", "best", "quick", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    rows = [json.loads(line) for line in best.stdout.splitlines()]
    assert rows and rows[0]["fitness"] > 0.5, best.stderr
    # the verdict row: printed by the run, and equal to what the storage implies
    from nosplug.search.verdict import verdict

    result = verdict("quick", env["NOSPLUG_STORAGE"])
    assert result is not None and result.done
    v = result.verdicts["study:quick#1"]
    assert v.outcome in ("better", "worse", "no detectable difference")
    assert rows[0]["verdict"]["sentence"] == v.sentence and rows[0]["verdict"]["outcome"] == v.outcome
    # rich draws the table with box characters and wraps long cells: compare the words
    run_output = " ".join(re.sub(r"[\u2500-\u257f]", " ", printed[-1]).split())
    for text in (v.outcome, v.comparison.iqm.format(3), v.comparison.reference_iqm.format(3)):
        assert text in run_output, text
    assert "verdicts against tuned torch:Adam" in run_output and "study:quick#1" in run_output


def test_python_example_runs() -> None:
    code = re.search(r"## 30-second example\n+```python\n(.*?)```", README, re.S)
    assert code, "README has no 30-second example"
    out = subprocess.run([sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()


@pytest.mark.parametrize("link", re.findall(r"\]\((docs/[^)]+)\)", README))
def test_doc_links_exist(link: str) -> None:
    assert (ROOT / link).exists()
