"""benchmarks/device_check.py: on a machine without an accelerator it says so, still runs the CPU
side of its checks ((a)-(c), the small search (d), the small model's cost table (e)) and exits 0;
its comparison flags results outside the tolerances."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nosplug.tasks.devices import accelerators

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(bool(accelerators()), reason="this machine has an accelerator")
def test_without_an_accelerator_the_script_says_so_runs_the_cpu_side_and_exits_0() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "no accelerator present" in text
    assert "tolerances (relative): evaluation 0.01, sweep 0.001, meta-step 0.001" in text
    for check in ("(a) evaluation", "(b) batched sweep", "(c) amalgamation meta-step"):
        assert check in text, check
    cpu_lines = [ln for ln in text.splitlines() if ln.strip().startswith("cpu:") and " s; " in ln]
    assert len(cpu_lines) == 3, cpu_lines
    assert "status complete" in cpu_lines[0] and "diverged [False, False, False]" in cpu_lines[1]
    assert "MISMATCH" not in text and "nothing was compared" in text
    # (d): the whole small search through the CLI, once on the CPU
    assert "(d) a whole small search through the CLI" in text
    search = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("cpu: ")]
    assert "cpu: ok" in search, text
    assert any(ln.startswith("cpu: stochastic genomes:") for ln in search)
    assert any("largest difference to GraphOptimizer 0" in ln for ln in search)
    # (e): the small model's table on the CPU (the large one needs an accelerator)
    assert "(e) optimizer step time and memory" in text and "model small: 192 tensors" in text
    assert "targets (issue 21):" in text and "exported adam / GraphOptimizer(adam)" in text


def test_the_comparison_flags_what_lies_outside_the_tolerance() -> None:
    dc = _script()
    ref = dc.Outcome(
        1.0,
        exact={"status": "complete"},
        numbers={"fitness": [0.5], "curve": [1.0, math.nan]},
        vectors={"g": torch.ones(4)},
    )
    close = dc.Outcome(
        0.5,
        exact={"status": "complete"},
        numbers={"fitness": [0.5 * (1 + 5e-4)], "curve": [1.0, math.nan]},
        vectors={"g": torch.ones(4) * (1 + 5e-4)},
    )
    worst, problems = dc.compare(ref, close, 1e-3)
    assert problems == [] and worst == pytest.approx(5e-4, rel=1e-3)
    far = dc.Outcome(
        0.5,
        exact={"status": "pruned"},
        numbers={"fitness": [0.6], "curve": [1.0, 2.0]},
        vectors={"g": torch.tensor([1.0, 1.0, 1.0, 2.0])},
    )
    _, problems = dc.compare(ref, far, 1e-3)
    assert len(problems) == 4, problems
    assert problems[0].startswith("status: 'pruned' here, 'complete' on the CPU")
    assert any("fitness[0]" in p for p in problems) and any("curve[1]" in p for p in problems)
    assert any(p.startswith("g: relative L2 difference") for p in problems)
