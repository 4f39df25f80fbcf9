"""Evaluations per hour of a study with 1 and 2 local workers (scaling ratio), on 2 CPU cores.

    python benchmarks/bench_study.py            # the quick study's settings, a few minutes
    python benchmarks/bench_study.py --fast     # smoke-sized evaluations

Each configuration runs the same study (same seed) from scratch in a fresh journal storage.
One worker gets both cores (2 torch threads); two workers get one thread each. Evaluations
per hour count trained evaluations only (reused results are free). The plan has barriers (the
initial population must finish before particles start; a timestep's slots before the next), so
perfect scaling is 2.0 only when there is enough parallel work at every barrier.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

from nosplug.study import runner
from nosplug.study.config import StudyConfig

ROOT = Path(__file__).resolve().parents[1]


def run(raw: dict, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"journal:{Path(tmp) / 'bench.log'}"
        runner.create_study(StudyConfig(raw), storage=url)
        threads = max(1, 2 // workers)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "nosplug", "study", "run", raw["study"]["name"], "--storage", url]
        cmd += ["--workers", str(workers), "--threads", str(threads), "--quiet"]
        subprocess.run(cmd, check=True)
        dt = time.perf_counter() - t0
        study = runner.load(raw["study"]["name"], url)
        trained = [
            t
            for t in study.trials
            if t.user_attrs.get("reused_from") is None and not t.user_attrs.get("abandoned")
        ]
        busy = sum(t.user_attrs.get("duration") or 0.0 for t in trained)
        return {
            "workers": workers,
            "evaluations": len(trained),
            "seconds": dt,
            "per_hour": 3600 * len(trained) / dt,
            "busy": busy / (dt * workers),
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast", action="store_true")
    args = ap.parse_args()
    raw = tomllib.loads((ROOT / "studies" / "quick.toml").read_text())
    raw["study"]["name"] = "bench"
    raw["ga"].update({"initial_population": 8, "particles": 2, "timesteps": 2, "mutations": 4})
    if args.fast:
        for stage in raw["evaluation"].values():
            stage.update({"preset": "smoke", "surrogate_options": {"base": 4}})
        raw["data"] = {"dataset": "digits"}
    rows = [run(raw, 1), run(raw, 2)]
    print(f"{'workers':>7} {'evals':>6} {'seconds':>8} {'evals/hour':>11} {'worker busy':>12}")
    for r in rows:
        cells = f"{r['workers']:>7} {r['evaluations']:>6} {r['seconds']:>8.1f} {r['per_hour']:>11.0f}"
        print(f"{cells} {r['busy']:>11.0%}")
    ratio = rows[1]["per_hour"] / rows[0]["per_hour"]
    print(f"scaling (2 workers / 1 worker, evaluations per hour): {ratio:.2f}x")


if __name__ == "__main__":
    main()
