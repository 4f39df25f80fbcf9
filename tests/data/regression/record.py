"""Record the regression fixture: run tests/data/regression/search.toml (search, verdict,
elimination) into ``journal.log`` beside this file, through the command line.

Run it only to re-record on purpose (a change of behaviour that the fixture must follow):

    rm tests/data/regression/journal.log && python tests/data/regression/record.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def nosplug(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "nosplug", *args], check=True, env=env, cwd=HERE)


def main() -> None:
    journal = HERE / "journal.log"
    if journal.exists():
        sys.exit(f"{journal} exists; remove it to record again")
    url = f"journal:{journal}"
    nosplug("study", "create", "search.toml", "--storage", url)
    nosplug("study", "run", "regress", "--storage", url, "--quiet")
    nosplug("study", "eliminate", "regress", "--storage", url, "--quiet")
    nosplug("study", "next-round", "regress", "--storage", url, "--quiet")
    # artifacts and planning locks are not part of the fixture
    for leftover in [*HERE.glob("*artifacts*"), *HERE.glob("*.plan-lock")]:
        subprocess.run(["rm", "-rf", str(leftover)], check=True)


if __name__ == "__main__":
    main()
