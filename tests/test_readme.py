"""The README's promises: two set-up commands, CI runs the test one, the example runs."""

from __future__ import annotations

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


def test_main_command_runs() -> None:
    main = _setup_commands()[0]
    assert main.startswith("pip install -e . && ")
    nosplug_part = main.split("&& ", 1)[1]
    args = shlex.split(nosplug_part)
    assert args[0] == "nosplug"
    out = subprocess.run(
        [sys.executable, "-m", "nosplug", *args[1:]], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_python_example_runs() -> None:
    code = re.search(r"## 30-second example\n+```python\n(.*?)```", README, re.S)
    assert code, "README has no 30-second example"
    out = subprocess.run([sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()


@pytest.mark.parametrize("link", re.findall(r"\]\((docs/[^)]+)\)", README))
def test_doc_links_exist(link: str) -> None:
    assert (ROOT / link).exists()
