"""Evaluations per hour of a study with 1 and 2 local workers (scaling ratio), on 2 CPU cores.

    python benchmarks/bench_study.py            # the quick study's settings, a few minutes
    python benchmarks/bench_study.py --fast     # smoke budgets (CI): a tiny GA, smoke evaluations

Each configuration runs the same study (same seed) from scratch in a fresh journal storage.
One worker gets both cores (2 torch threads); two workers get one thread each. Evaluations
per hour count trained evaluations only (reused results are free). The plan has barriers (the
initial population must finish before particles start; a timestep's slots before the next), so
perfect scaling is 2.0 only when there is enough parallel work at every barrier. The search
alone is measured: the quick study's elimination and final verdict are switched off here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import emit, print_table, progress, table

from nosplug.study import runner
from nosplug.study.config import StudyConfig

ROOT = Path(__file__).resolve().parents[1]


def run(raw: dict, workers: int, cores: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"journal:{Path(tmp) / 'bench.log'}"
        runner.create_study(StudyConfig(raw), storage=url)
        threads = max(1, cores // workers)
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


def config(fast: bool) -> dict:
    raw = tomllib.loads((ROOT / "studies" / "quick.toml").read_text())
    raw["study"]["name"] = "bench"
    raw["ga"].update({"initial_population": 8, "particles": 2, "timesteps": 2, "mutations": 4})
    raw["elimination"] = {"stages": []}  # the search alone: no elimination ...
    raw["validate"] = {"top": 0}  # ... and no final verdict against Adam
    raw.pop("next_round", None)
    if fast:  # a handful of evaluations of a few steps: the machinery, not a measurement
        raw["ga"].update({"initial_population": 2, "particles": 1, "timesteps": 1, "mutations": 1})
        budget = {"sweep_steps": 4, "sweep_epoch_steps": 2, "final_steps": 8, "final_epoch_steps": 4}
        for stage in raw["evaluation"].values():
            stage.update({"preset": "smoke", "surrogate_options": {"base": 4}, **budget})
            stage.update({"schedule_steps": 16, "warmup_steps": 2})
        raw["data"] = {"dataset": "digits"}
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="smoke budgets (CI)")
    ap.add_argument("--threads", type=int, default=2, help="cores to share between the workers")
    args = ap.parse_args()
    raw = config(args.fast)
    rows = []
    for workers in (1, 2):
        threads = max(1, args.threads // workers)
        progress(f"the study from scratch with {workers} worker(s), {threads} thread(s) each")
        r = run(raw, workers, args.threads)
        progress(f"{r['evaluations']} evaluations in {r['seconds']:.1f} s")
        rows.append(r)
    ratio = rows[1]["per_hour"] / rows[0]["per_hour"]
    t = table(
        "study-scaling",
        "A study with 1 and 2 local workers",
        ["workers", "evaluations", "seconds", "evaluations / hour", "worker busy"],
        [
            [
                str(r["workers"]),
                str(r["evaluations"]),
                f"{r['seconds']:.1f}",
                f"{r['per_hour']:,.0f}",
                f"{r['busy']:.0%}",
            ]
            for r in rows
        ],
        f"Scaling 2 workers / 1 worker (evaluations per hour): **{ratio:.2f}×**.",
    )
    print_table(t)
    emit("study", [t], args.fast)


if __name__ == "__main__":
    main()
