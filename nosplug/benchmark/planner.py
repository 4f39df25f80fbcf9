"""The benchmark as a deterministic planner: tuning studies, then evaluation runs on fresh seeds.

For every (task, contender) and tuning study k: ``trials`` tuning runs, each on its own tuning
seed (the same seeds for study k of every contender of a task: common random numbers), each scored
on the validation split. TPE proposes a study's next hyperparameters from its finished trials,
replayed by a freshly seeded sampler, so its trials run one after the other and the plan depends
only on the stored results (any worker, a resume or a rerun plans the same trials). Quasi-random
and random search do not look at results: all their tuning trials are planned at once and run side
by side. The best tuning run of a study (best validation value; the first on ties) then runs on
``evaluation.seeds`` fresh evaluation seeds of its own (seed indices k·seeds ... k·seeds + seeds - 1,
shared by all contenders of a task so runs pair by seed); those runs are measured on the test split.

How many studies each contender gets is the sequential design's decision
(:func:`nosplug.benchmark.design.replay`): the first look's studies, then, after each look, more
for the contenders whose verdict is not decided, up to the cap; the reference gets as many as the
most any contender needs.

Keys: ``tune/T/C/003`` (task T, contender C, tuning trial 3 of study 0), ``tune/T/C/2/003`` (of
study 2) and ``eval/T/C/5`` (seed index 5, of study 5 // seeds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nosplug.benchmark import design as bdesign
from nosplug.study.plan import Planned, PlanResult, Record, derived_seed

TUNE, EVAL = "tune", "eval"
#: Samplers whose proposals do not depend on earlier results (so tuning trials can run in parallel).
BLIND = ("qmc", "random")


def tune_key(t: int, c: int, i: int, study: int = 0) -> str:
    return f"{TUNE}/{t}/{c}/{i:03d}" if study == 0 else f"{TUNE}/{t}/{c}/{study}/{i:03d}"


def eval_key(t: int, c: int, s: int) -> str:
    return f"{EVAL}/{t}/{c}/{s}"


class BenchmarkPlanner:
    name = "benchmark"

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.seed = int(raw["benchmark"]["seed"])
        self.contenders: list[str] = list(raw["benchmark"]["contenders"])
        self.tasks: list[dict[str, Any]] = list(raw["tasks"])
        self.design = bdesign.of(raw)

    # -- seeds ----------------------------------------------------------------------------
    def tuning_seed(self, t: int, c: int, i: int, study: int = 0) -> int:
        """Common random numbers: tuning trial i of study k of every contender on a task uses the
        same seed (and :meth:`_suggest` the same sampler seed), so contenders differ only by what
        they are; each study has seeds of its own."""
        label = self.tasks[t]["label"]
        if study == 0:
            return derived_seed(self.seed, "tune", label, i)
        return derived_seed(self.seed, "tune", label, study, i)

    def eval_seed(self, t: int, s: int) -> int:
        """Shared by every contender of a task (runs pair by seed), never used for tuning."""
        return derived_seed(self.seed, "eval", self.tasks[t]["label"], s)

    # -- the plan -------------------------------------------------------------------------
    def plan(self, records: Mapping[str, Record]) -> PlanResult:
        from nosplug.benchmark.config import trials_for

        d = self.design
        finals = {}
        for r in records.values():
            a = r.attrs
            if r.finished and a.get("phase") == EVAL and a.get("final_test") is not None:
                finals[(a["contender"], a["task"], int(a["seed_index"]))] = float(a["final_test"])
        labels = [t["label"] for t in self.tasks]
        wanted = bdesign.replay(
            self.raw, bdesign.unit_scores(d, self.contenders, labels, finals), n_resamples=1
        ).wanted
        new: list[Planned] = []
        todo = 0
        for t, task in enumerate(self.tasks):
            for c, spec in enumerate(self.contenders):
                budget = trials_for(self.raw, spec)
                for k in range(min(wanted.get(spec, d.looks.units[0]), d.studies)):
                    history = self.history(records, t, c, budget, k)
                    if len(history) < budget:  # this study's tuning goes on
                        # TPE: one trial at a time; samplers blind to results: every trial at once
                        upto = budget if self.raw["tuning"]["sampler"] in BLIND else len(history) + 1
                        for i in range(len(history), upto):
                            key = tune_key(t, c, i, k)
                            if key not in records:
                                params = self._suggest(t, c, history, i, k)
                                seed = self.tuning_seed(t, c, i, k)
                                new.append(self._planned(key, TUNE, t, c, params, seed, study=k))
                        todo += 1
                        continue
                    params = self.chosen(history, task["direction"])
                    for s in range(k * d.seeds, (k + 1) * d.seeds):
                        key = eval_key(t, c, s)
                        if key not in records:
                            seed = self.eval_seed(t, s)
                            new.append(self._planned(key, EVAL, t, c, params, seed, seed_index=s, study=k))
                        if key not in records or not records[key].finished:
                            todo += 1
        total = (
            sum(trials_for(self.raw, spec) + d.seeds for spec in self.contenders)
            * d.studies
            * len(self.tasks)
        )
        done = sum(1 for r in records.values() if r.finished)
        return PlanResult(new, todo == 0, {"phase": "benchmark", "runs_done": done, "runs": total})

    @staticmethod
    def history(
        records: Mapping[str, Record], t: int, c: int, budget: int, study: int = 0
    ) -> list[tuple[dict, float | None]]:
        """The finished tuning trials of (task, contender, study), in order, up to the first unfinished."""
        out = []
        for i in range(budget):
            r = records.get(tune_key(t, c, i, study))
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

    def _suggest(self, t: int, c: int, history, index: int, study: int = 0) -> dict[str, float]:
        """Tuning trial ``index``'s hyperparameters in study ``study`` (TPE: from ``history``,
        which then has ``index`` entries; blind samplers: from the index alone). Each study has its
        own sampler seed (the same for every contender of the task)."""
        from nosplug.benchmark.contenders import resolve, suggest, suggest_blind

        spec = self.contenders[c]
        tu = self.raw["tuning"]
        contender = resolve(spec, tu["extra"].get(spec, ()), genomes=self.raw.get("genomes", {}))
        space = contender.space(tuple(tu["lr"]), float(tu["max_warmup"]))
        label = self.tasks[t]["label"]
        seed = (
            derived_seed(self.seed, "sampler", label)
            if study == 0
            else derived_seed(self.seed, "sampler", label, study)
        )
        if tu["sampler"] in BLIND:
            return suggest_blind(space, index, seed, tu["sampler"])
        return suggest(space, history, self.tasks[t]["direction"], seed, tu["sampler"])

    def _planned(
        self, key: str, phase: str, t: int, c: int, params: dict, seed: int, seed_index: int | None = None,
        study: int = 0,
    ) -> Planned:  # fmt: skip
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
        if self.design.multi:  # designs of one study keep the attributes they always had
            attrs["study"] = study
        return Planned(key, None, phase, seed, attrs)  # type: ignore[arg-type]
