"""The README's main job (the quick study and its verdict) with 1 and 2 local workers, on 2 cores.

    python benchmarks/bench_study.py            # studies/quick.toml three times, about 10 minutes
    python benchmarks/bench_study.py --fast     # smoke budgets (CI): a tiny GA, smoke evaluations

Each configuration runs the same study (same seed) from scratch in a fresh journal storage,
through ``nosplug study run`` exactly as the README does: the search, then its verdict
(``[validate]``: the best genome against Adam tuned just as hard). Configurations: one worker with
both cores (2 torch threads, what the README's command does), one worker with one thread, and two
workers with one thread each, pinned to a core of their own. Evaluations count trained trials of
the search and the verdict (reused results are free); per CPU-hour divides by the cores given.

Two scalings: two workers against one worker with one thread (how well the work spreads over
workers), and against one worker with both cores (what ``--workers 2`` gains on this machine,
which also depends on how much a second thread speeds one evaluation up). The first run is also
replayed through the planner on K virtual workers with its measured durations
(``benchmarks/plan_scaling.py``): the scaling the plan's barriers allow, free of CPU effects.
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
from plan_scaling import replay, stored

from nosplug.search.api import create_search
from nosplug.search.config import SearchConfig
from nosplug.search.verdict import verdict_name
from nosplug.study.kinds import open_study
from nosplug.study.storage import open_storage
from nosplug.study.studies import load, study_names

ROOT = Path(__file__).resolve().parents[1]
#: the README's main job must finish within this (issue 14)
TARGET_SECONDS = 300


def run(raw: dict, workers: int, threads: int) -> dict:
    name = raw["study"]["name"]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"journal:{Path(tmp) / 'bench.log'}"
        create_search(SearchConfig(raw), storage=url)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "nosplug", "study", "run", name, "--storage", url]
        cmd += ["--workers", str(workers), "--threads", str(threads), "--quiet"]
        subprocess.run(cmd, check=True)
        dt = time.perf_counter() - t0
        store = open_storage(url)
        studies = [load(n, url) for n in (name, verdict_name(name)) if n in study_names(store)]
        trained = [
            t
            for s in studies
            for t in s.trials
            if t.user_attrs.get("reused_from") is None and not t.user_attrs.get("abandoned")
        ]
        busy = sum(t.user_attrs.get("duration") or 0.0 for t in trained)
        plan = {}
        for k in (1, 2):  # the plan's own scaling, from this run's durations
            plan[k] = sum(replay(open_study(s).planner, stored(s), k)["makespan"] for s in studies)
        return {
            "workers": workers,
            "threads": threads,
            "evaluations": len(trained),
            "seconds": dt,
            "per_hour": 3600 * len(trained) / dt,
            "per_cpu_hour": 3600 * len(trained) / (dt * workers * threads),
            "busy": busy / (dt * workers),
            "plan_scaling": plan[1] / plan[2],
            "search": sum(1 for t in trained if not t.user_attrs.get("phase")),
        }


def config(fast: bool) -> dict:
    raw = tomllib.loads((ROOT / "studies" / "quick.toml").read_text())
    raw["study"]["name"] = "bench"
    if fast:  # a handful of evaluations of a few steps: the machinery, not a measurement
        raw["ga"].update({"initial_population": 2, "particles": 1, "timesteps": 1, "mutations": 1})
        budget = {"sweep_steps": 4, "sweep_epoch_steps": 2, "final_steps": 8, "final_epoch_steps": 4}
        for stage in raw["evaluation"].values():
            stage.update({"preset": "smoke", "surrogate_options": {"base": 4}, **budget})
            stage.update({"schedule_steps": 16, "warmup_steps": 2})
            stage.update({"prescreen_gate": 0.0, "sweep_gate": 0.0, "final_floor": 0.0})  # a verdict
        raw["data"] = {"dataset": "digits"}
        raw["validate"].update({"tuning_trials": 2, "seeds": 2})
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="smoke budgets (CI)")
    ap.add_argument("--threads", type=int, default=2, help="cores to share between the workers")
    args = ap.parse_args()
    raw = config(args.fast)
    cores = args.threads
    rows = []
    for workers, threads in ((1, cores), (1, 1), (2, max(1, cores // 2))):
        progress(f"the main job from scratch with {workers} worker(s), {threads} thread(s) each")
        r = run(raw, workers, threads)
        progress(f"{r['evaluations']} evaluations in {r['seconds']:.1f} s")
        rows.append(r)
    full, one, two = rows
    within = "met" if full["seconds"] <= TARGET_SECONDS else "missed"
    t = table(
        "study-scaling",
        "The quick study and its verdict (the README's main job) with 1 and 2 local workers",
        ["workers × threads", "evaluations", "seconds", "evaluations / hour", "per CPU-hour", "worker busy"],
        [
            [
                f"{r['workers']} × {r['threads']}",
                str(r["evaluations"]),
                f"{r['seconds']:.1f}",
                f"{r['per_hour']:,.0f}",
                f"{r['per_cpu_hour']:,.0f}",
                f"{r['busy']:.0%}",
            ]
            for r in rows
        ],
        f"Two workers (one pinned thread each) / one worker with one thread: "
        f"**{two['per_hour'] / one['per_hour']:.2f}×** (target ≥ 1.8×); / one worker with both cores: "
        f"**{two['per_hour'] / full['per_hour']:.2f}×**; a second thread speeds one worker up "
        f"{one['seconds'] / full['seconds']:.2f}×. The plan's barriers allow "
        f"{full['plan_scaling']:.2f}× for two workers (the first run replayed on virtual workers). "
        f"The main job took **{full['seconds']:.0f} s** with the README's command "
        f"(target ≤ {TARGET_SECONDS} s: {within}).",
    )
    print_table(t)
    emit("study", [t], args.fast)


if __name__ == "__main__":
    main()
