"""The reproduction script runs end to end on a tiny budget and its report comes from its results."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "reproduce.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("repro")
    args = ["--budget", "smoke", "--out", str(out), "--work", str(out / "work")]
    args += ["--datasets", "digits,cifar10", "--optimizers", "adam,sgd,opt6,a1,lr7", "--seeds", "2"]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900, cwd=out
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return out


@pytest.mark.slow
def test_every_table_number_comes_from_the_results_file(smoke: Path) -> None:
    results = json.loads((smoke / "results.json").read_text())
    md = (smoke / "reproduction.md").read_text()
    digits = results["nos"]["digits"]
    for name in ("adam", "sgd", "opt6", "a1", "lr7"):
        rec = digits[name]
        assert set(rec["lr_test"]) == {repr(r) for r in (10.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5)}
        assert rec["lr_test"][repr(rec["chosen_lr"])] == max(rec["lr_test"].values()), "the best rate wins"
        bests = [r["best"] for r in rec["runs"].values()]
        assert len(bests) == 2
        row = re.search(rf"^\| \d+ \| {name} \| \w+ \| [^|]+ \| ([0-9.]+) ± ([0-9.]+) \|", md, re.M)
        assert row is not None, f"no table row for {name}"
        assert float(row.group(1)) == pytest.approx(statistics.fmean(bests), abs=1e-4)
        assert float(row.group(2)) == pytest.approx(statistics.stdev(bests), abs=1e-4)
    assert "**cifar10**: not run here" in md, "a missing local CIFAR copy is reported, not hidden"


@pytest.mark.slow
def test_verdicts_figures_and_amalgamation_table(smoke: Path) -> None:
    md = (smoke / "reproduction.md").read_text()
    assert re.search(r"\*\*digits, Opt1–Opt10\*\*: [01] of 1 beat Adam", md)
    assert re.search(r"The paper's claim (agrees|partly agrees|disagrees) here", md)
    png = smoke / "reproduction-digits.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    results = json.loads((smoke / "results.json").read_text())
    rows = results["amalgamation"]["rows"]
    methods = {"mean", "minmax", "minmax-plain", "choice-small", "choice-large", "original", "rnnprop"}
    assert {r["method"] for r in rows if r["kind"] == "student"} == methods
    assert len(rows) == 7 * 2 * 2 + 2 * 2, "7 methods x 2 replicates x 2 runs + 2 teachers x 2 runs"
    for method in methods:  # the table's mean is the rows' (balanced replicates)
        row = re.search(rf"^\| digits_mlp \| {method} \| 2 × 2 \| ([+-][0-9.]+) \[", md, re.M)
        assert row is not None, method
        values = [r["best_log_val"] for r in rows if r["method"] == method]
        assert float(row.group(1)) == pytest.approx(statistics.fmean(values), abs=1e-3)
    verdicts = re.findall(
        r"^- \*\*.+\*\*: (supported|contradicted|not detectable at this scale|not run)\.", md, re.M
    )
    assert len(verdicts) >= 4, "one computed verdict per claim of the paper"


@pytest.mark.slow
def test_a_rerun_resumes_from_the_results_file(smoke: Path) -> None:
    """Nothing is trained again: every run is in results.json, so the rerun only rebuilds the report."""
    before = (smoke / "results.json").read_text()
    args = ["--budget", "smoke", "--out", str(smoke), "--work", str(smoke / "work")]
    args += ["--datasets", "digits", "--optimizers", "adam,sgd,opt6,a1,lr7", "--seeds", "2"]
    run = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert " lr " not in run.stdout and "seed" not in run.stdout, run.stdout
    after = json.loads((smoke / "results.json").read_text())
    assert after["nos"] == json.loads(before)["nos"]
