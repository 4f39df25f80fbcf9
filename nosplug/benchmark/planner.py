"""The benchmark as a deterministic planner: tuning trials, then evaluation runs on fresh seeds.

For every (task, contender): ``trials`` tuning runs, each on its own tuning seed (the same seeds
for every contender of a task: common random numbers), each scored on the validation split.
TPE proposes the next hyperparameters from the finished ones, replayed by a freshly seeded
sampler, so its trials run one after the other and the plan depends only on the stored results
(any worker, a resume or a rerun plans the same trials). Quasi-random and random search do not
look at results: all their tuning trials are planned at once and run side by side. The
best tuning run's hyperparameters (best validation value; the first on ties) then run on
``evaluation.seeds`` fresh evaluation seeds, shared by all contenders of a task so runs pair by
seed; those runs are measured on the test split.

Keys: ``tune/T/C/003`` (task T, contender C, tuning trial 3) and ``eval/T/C/2`` (seed index 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nosplug.study.plan import Planned, PlanResult, Record, derived_seed

TUNE, EVAL = "tune", "eval"
#: Samplers whose proposals do not depend on earlier results (so tuning trials can run in parallel).
BLIND = ("qmc", "random")


def tune_key(t: int, c: int, i: int) -> str:
    return f"{TUNE}/{t}/{c}/{i:03d}"


def eval_key(t: int, c: int, s: int) -> str:
    return f"{EVAL}/{t}/{c}/{s}"


class BenchmarkPlanner:
    name = "benchmark"

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.seed = int(raw["benchmark"]["seed"])
        self.contenders: list[str] = list(raw["benchmark"]["contenders"])
        self.tasks: list[dict[str, Any]] = list(raw["tasks"])

    # -- seeds ----------------------------------------------------------------------------
    def tuning_seed(self, t: int, c: int, i: int) -> int:
        """Common random numbers: tuning trial i of every contender on a task uses the same seed
        (and :meth:`_suggest` the same sampler seed), so contenders differ only by what they are."""
        return derived_seed(self.seed, "tune", self.tasks[t]["label"], i)

    def eval_seed(self, t: int, s: int) -> int:
        """Shared by every contender of a task (runs pair by seed), never used for tuning."""
        return derived_seed(self.seed, "eval", self.tasks[t]["label"], s)

    # -- the plan -------------------------------------------------------------------------
    def plan(self, records: Mapping[str, Record]) -> PlanResult:
        from nosplug.benchmark.config import trials_for

        new: list[Planned] = []
        todo = 0
        for t, task in enumerate(self.tasks):
            for c, spec in enumerate(self.contenders):
                budget = trials_for(self.raw, spec)
                history = self.history(records, t, c, budget)
                if len(history) < budget:  # tuning goes on
                    # TPE: one trial at a time; samplers blind to results: every trial at once
                    upto = budget if self.raw["tuning"]["sampler"] in BLIND else len(history) + 1
                    for i in range(len(history), upto):
                        key = tune_key(t, c, i)
                        if key not in records:
                            params = self._suggest(t, c, history, i)
                            new.append(self._planned(key, TUNE, t, c, params, self.tuning_seed(t, c, i)))
                    todo += 1
                    continue
                params = self.chosen(history, task["direction"])
                for s in range(int(self.raw["evaluation"]["seeds"])):
                    key = eval_key(t, c, s)
                    if key not in records:
                        new.append(self._planned(key, EVAL, t, c, params, self.eval_seed(t, s), seed_index=s))
                    if key not in records or not records[key].finished:
                        todo += 1
        total = sum(
            trials_for(self.raw, spec) + int(self.raw["evaluation"]["seeds"]) for spec in self.contenders
        ) * len(self.tasks)
        done = sum(1 for r in records.values() if r.finished)
        return PlanResult(new, todo == 0, {"phase": "benchmark", "runs_done": done, "runs": total})

    @staticmethod
    def history(
        records: Mapping[str, Record], t: int, c: int, budget: int
    ) -> list[tuple[dict, float | None]]:
        """The finished tuning trials of (task, contender), in order, up to the first unfinished."""
        out = []
        for i in range(budget):
            r = records.get(tune_key(t, c, i))
            if r is None or not r.finished:
                break
            out.append((dict(r.attrs.get("params", {})), r.fitness if r.accepted else None))
        return out

    @staticmethod
    def chosen(history: list[tuple[dict, float | None]], direction: str) -> dict:
        """The best tuning trial's hyperparameters (best validation value, earliest on ties);
        when no trial produced a value, the first trial's."""
        scored = [(i, v) for i, (_p, v) in enumerate(history) if v is not None and math.isfinite(v)]
        if not scored:
            return history[0][0]
        sign = -1.0 if direction == "maximize" else 1.0
        best = min(scored, key=lambda iv: (sign * iv[1], iv[0]))[0]
        return history[best][0]

    def _suggest(self, t: int, c: int, history, index: int) -> dict[str, float]:
        """Tuning trial ``index``'s hyperparameters (TPE: from ``history``, which then has
        ``index`` entries; blind samplers: from the index alone)."""
        from nosplug.benchmark.contenders import resolve, suggest, suggest_blind

        spec = self.contenders[c]
        tu = self.raw["tuning"]
        contender = resolve(spec, tu["extra"].get(spec, ()), genomes=self.raw.get("genomes", {}))
        space = contender.space(tuple(tu["lr"]), float(tu["max_warmup"]))
        seed = derived_seed(self.seed, "sampler", self.tasks[t]["label"])
        if tu["sampler"] in BLIND:
            return suggest_blind(space, index, seed, tu["sampler"])
        return suggest(space, history, self.tasks[t]["direction"], seed, tu["sampler"])

    def _planned(
        self, key: str, phase: str, t: int, c: int, params: dict, seed: int, seed_index: int | None = None
    ) -> Planned:
        attrs: dict[str, Any] = {
            "phase": phase,
            "task": self.tasks[t]["label"],
            "task_index": t,
            "contender": self.contenders[c],
            "contender_index": c,
            "params": params,
        }
        if seed_index is not None:
            attrs["seed_index"] = seed_index
        return Planned(key, None, phase, seed, attrs)  # type: ignore[arg-type]
