"""How far a study's plan lets K workers scale: the finished study replayed on K virtual workers.

    python benchmarks/plan_scaling.py STORAGE NAME [NAME.verdict ...] [--workers 1 2 4]

Each finished study is replayed through its own planner with the durations its evaluations took:
K virtual workers take planned evaluations in queue order, each busy for the stored duration;
whenever one finishes, its stored result is revealed and the planner plans again. The makespan
for K workers against one worker is the scaling the plan's barriers allow (the initial
population before the particles, a timestep's slots before the next, retry rounds, tuning before
evaluation), free of CPU effects: measured durations, perfect cores. Idle worker time is split by
what the idle workers were waiting for (the phase of the evaluations still running).
"""

from __future__ import annotations

import argparse
import heapq
from collections import Counter
from typing import Any

from nosplug.study import trials as T
from nosplug.study.kinds import open_study
from nosplug.study.plan import Record
from nosplug.study.studies import load


def stored(study) -> dict[str, tuple[Record, float]]:
    """key -> (its finished record, seconds it took) for every evaluation of a finished study."""
    cache = T.GenomeCache()
    out = {}
    for key, t in T.live_trials(study.get_trials(deepcopy=False)).items():
        out[key] = (T.to_record(t, cache), float(t.user_attrs.get("duration") or 0.0))
    return out


def phase(key: str) -> str:
    head = key.split("/", 1)[0]
    return {"init": "initial population", "tune": "tuning", "eval": "evaluation"}.get(
        head, "evolution" if head.startswith("p") else head
    )


def replay(planner: Any, results: dict[str, tuple[Record, float]], workers: int) -> dict[str, Any]:
    """Makespan, busy and idle seconds (by phase waited on) of the plan on ``workers`` workers."""
    records: dict[str, Record] = {}
    queue: list[str] = []
    running: list[tuple[float, str]] = []  # (finish time, key)
    now, busy = 0.0, 0.0
    idle: Counter = Counter()
    while True:
        for p in planner.plan(records).new:
            if p.key not in records:
                if p.key not in results:
                    raise SystemExit(f"the replayed plan asks for {p.key}, which the study never ran")
                records[p.key] = Record(p.key, p.genome, False, attrs=dict(p.attrs))
                queue.append(p.key)
        while queue and len(running) < workers:
            key = queue.pop(0)
            seconds = results[key][1]
            busy += seconds
            heapq.heappush(running, (now + seconds, key))
        if not running:
            break
        finish, key = heapq.heappop(running)
        free = workers - len(running) - 1  # workers with nothing to do until ``finish``
        if free > 0 and not queue:
            waited_on = Counter(phase(k) for _f, k in running) + Counter([phase(key)])
            for ph, n in waited_on.items():
                idle[ph] += free * (finish - now) * n / sum(waited_on.values())
        now = finish
        records[key] = results[key][0]
    return {"makespan": now, "busy": busy, "idle": dict(idle)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("storage")
    ap.add_argument("names", nargs="+")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    total: Counter = Counter()
    for name in args.names:
        study = load(name, args.storage)
        results = stored(study)
        planner = open_study(study).planner
        for k in args.workers:
            r = replay(planner, results, k)
            total[k] += r["makespan"]
            idle = ", ".join(f"{ph} {s:.0f}s" for ph, s in sorted(r["idle"].items())) or "none"
            line = f"makespan {r['makespan']:.0f}s, busy {r['busy']:.0f}s, idle: {idle}"
            print(f"{name}: {k} worker(s): {line}")
    base = total[args.workers[0]]
    for k in args.workers[1:]:
        print(f"plan-limited scaling, {k} workers / {args.workers[0]}: {base / total[k]:.2f}x")


if __name__ == "__main__":
    main()
