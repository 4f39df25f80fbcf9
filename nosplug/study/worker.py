"""The worker: one evaluation loop on one study of any kind, with heartbeats and reclaiming.

Any number of workers, on any machines that reach the storage, share one study. A loop:

1. under the planning lock (:mod:`nosplug.study.locks`): read the trials, hand out again the
   work of workers that died, replay the kind's planner on what is stored and enqueue what it
   asks for (work identical to a finished trial is recorded as reused, not done again);
2. pop one waiting trial (Optuna's atomic WAITING -> RUNNING), evaluate it through its kind
   while a heartbeat thread stamps the trial, and tell the result.

Planners are deterministic in the seed and the stored results, and evaluation seeds derive from
the work item, so an interrupted and resumed study ends with the same trials as an
uninterrupted one. The worker knows nothing of what the work is: that is the study's kind
(:mod:`nosplug.study.kinds`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from nosplug.errors import EvaluationCrashError, UserError
from nosplug.evaluation.pruners import TrialReporter
from nosplug.study import optuna_adapter as oa
from nosplug.study import trials as T
from nosplug.study.artifacts import check as check_artifacts
from nosplug.study.kinds import Event, KindStudy, WorkItem, open_study
from nosplug.study.local import LocalSlot, process_gone
from nosplug.study.locks import planning_lock
from nosplug.study.plan import PlanResult, Record
from nosplug.study.result import TrialResult, first_line
from nosplug.study.storage import storage_url
from nosplug.study.studies import load


class PreflightError(UserError):
    """Something that would make every evaluation fail (missing data, a bad surrogate option);
    found once, before the first trial."""


class TrialLostError(Exception):
    """This worker no longer holds its trial (heartbeats failed for a lease, or another worker
    reclaimed it); the evaluation stops because the trial will be handed out again."""


def preflight(ctx: KindStudy, device: torch.device | str | None = None) -> torch.device:
    """Find, before the first trial, what would make every evaluation of the study fail; returns
    the device the worker trains on (``device``, else the study's ``workers.device``)."""
    from nosplug.tasks.devices import resolve_device

    try:
        dev = resolve_device(device or ctx.workers.device)
    except UserError as exc:
        raise PreflightError(f"study {ctx.name!r} cannot run: {exc}") from exc
    try:
        ctx.preflight(dev)
    except Exception as exc:
        noun = getattr(ctx, "noun", "study")
        raise PreflightError(f"{noun} {ctx.name!r} cannot run: {first_line(exc)}") from exc
    return dev


@dataclass
class WorkerSummary:
    evaluated: int = 0
    reused: int = 0
    reclaimed: int = 0
    crashed: int = 0  # evaluations that raised and were retried
    lost: int = 0  # trials given up because the worker no longer held them
    done: bool = False
    seconds: float = 0.0
    artifacts: str = ""  # one line: the best genomes attached to their trials, or why not


class Worker:
    """One evaluation loop on one study; run any number of these on any machines."""

    def __init__(
        self,
        name: str,
        storage: str | None = None,
        *,
        max_trials: int | None = None,
        on_event: Callable[[Event], None] | None = None,
        threads: int | None = None,
        artifacts: str | None = None,
        device: str | None = None,
        slot: LocalSlot | None = None,
    ) -> None:
        self.url = storage_url(storage)
        self.device_name = device  # None: the study's workers.device
        self.artifacts = artifacts  # artifact store URL (None: $NOSPLUG_ARTIFACTS or beside the journal)
        check_artifacts(self.url, artifacts)  # a bad store fails now, not after the work
        self.study = load(name, self.url)
        self.ctx = open_study(self.study)
        if not self.ctx.queued:
            raise UserError(f"study {name!r} is {self.ctx.kind!r}: its own command runs it, not workers")
        self.name = name
        self.max_trials = max_trials
        self.on_event = on_event or (lambda e: None)
        self.slot = slot  # this worker's place among local workers (for core pinning)
        w = self.ctx.workers
        self.threads = threads or w.threads or max(1, (os.cpu_count() or 1) // (slot.count if slot else 1))
        self.heartbeat = float(w.heartbeat_seconds)
        self.lease = float(w.lease_seconds)
        self.poll = float(w.poll_seconds)
        self.retries = int(w.retries)
        self.worker = T.worker_id()
        self.cache = T.GenomeCache()
        self._studies: dict[Any, optuna.Study] = {}  # the study loaded with each pruner
        self._crashes: dict[str, int] = {}  # key -> crashes seen by this worker

    # -- loop ---------------------------------------------------------------------------
    def run(self) -> WorkerSummary:
        """Work until the plan is done or ``max_trials`` evaluations were made.

        Raises :class:`PreflightError` before the first trial when every evaluation would fail,
        and :class:`~nosplug.errors.EvaluationCrashError` when an evaluation keeps raising after
        ``workers.retries`` retries (the study is then not done; running it again retries).
        The worker that finds the study done calls its kind's ``on_done`` (a search attaches its
        best genomes to their trials as Optuna artifacts; that may raise
        :class:`~nosplug.study.artifacts.ArtifactError`).
        """
        torch.set_num_threads(self.threads)
        if self.slot is not None:
            self.slot.pin(self.threads)
        self.device = preflight(self.ctx, self.device_name)
        summary = WorkerSummary()
        start = time.perf_counter()
        while self.max_trials is None or summary.evaluated < self.max_trials:
            with planning_lock(self.url, self.name):
                summary.reclaimed += self._reclaim()
                trials = self.study.get_trials(deepcopy=False)
                plan = self.ctx.planner.plan(self._records(trials))
                summary.reused += self._enqueue(plan, trials)
                # judged on the same snapshot as the plan: another worker may finish a trial
                # right after the lock is released, which makes the plan stale, not the study stuck
                busy = any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials)
            picked = self._pop()
            if picked is None:
                active = self.study.get_trials(
                    deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)
                )
                if plan.done and not active:
                    summary.done = True
                    break
                if not active and not plan.new and not busy:
                    raise RuntimeError(
                        f"study {self.name!r} stalled: nothing to run and the plan is not done"
                    )
                self.on_event({"event": "idle", "running": len(active)})
                time.sleep(self.poll)
                continue
            outcome = self._run_trial(picked)
            if outcome == "reused":
                summary.reused += 1
            elif outcome == "lost":
                summary.lost += 1
            elif outcome == "crashed":
                summary.crashed += 1
                self._after_crash(picked)
            else:
                summary.evaluated += 1
        summary.seconds = time.perf_counter() - start
        if summary.done:  # e.g. a search's best genomes beside their trials (idempotent)
            summary.artifacts = self.ctx.on_done(self.url, self.artifacts)
        self.on_event({"event": "stopped", "done": summary.done, "evaluated": summary.evaluated})
        return summary

    def _after_crash(self, t: FrozenTrial) -> None:
        """Retry a crashed key (it is planned again) or stop once it used up its retries."""
        key = t.user_attrs[T.KEY]
        n = self._crashes[key] = self._crashes.get(key, 0) + 1
        stored = oa.reload(self.study, t).user_attrs
        if n <= self.retries:
            self.on_event({"event": "retry", "key": key, "attempt": n + 1, "error": stored.get(T.ERROR)})
            return
        raise EvaluationCrashError(
            f"study {self.name!r}: trial {t.number} ({key}, genome {t.user_attrs.get(T.HASH)}) crashed "
            f"{n} time{'s' if n > 1 else ''}: {stored.get(T.ERROR)} -- the study is not done; fix the "
            f"cause and run it again (traceback: user attribute 'traceback' of trial {t.number})"
        )

    def _records(self, trials: list[FrozenTrial]) -> dict[str, Record]:
        return {k: T.to_record(t, self.cache) for k, t in T.live_trials(trials).items()}

    def _enqueue(self, plan: PlanResult, trials: list[FrozenTrial]) -> int:
        if not plan.new:
            return 0
        finished = {}
        for t in T.live_trials(trials).values():
            if t.state in T.FINISHED and t.user_attrs.get(T.REUSED_FROM) is None:
                finished.setdefault(T.reuse_signature(t.user_attrs), t)
        reused = 0
        for p in plan.new:
            attrs = T.planned_attrs(p)
            src = finished.get(T.reuse_signature(attrs))
            if src is not None:
                self.study.add_trial(T.copy_as_reused(src, attrs))
                reused += 1
                self.on_event({"event": "reused", "key": p.key, "from": src.number})
            else:
                self.study.enqueue_trial({}, user_attrs=attrs)
        self.on_event({"event": "planned", "count": len(plan.new), "progress": plan.progress})
        return reused

    def _pop(self) -> FrozenTrial | None:
        for t in oa.waiting(self.study):
            if T.KEY not in t.user_attrs:
                continue  # enqueued by another tool: not ours to run
            if oa.claim(self.study, t):
                oa.set_attr(self.study, t, T.WORKER, self.worker)
                oa.set_attr(self.study, t, T.HEARTBEAT, time.time())
                return oa.reload(self.study, t)
        return None

    # -- dead workers ------------------------------------------------------------------
    def _reclaim(self) -> int:
        """Mark RUNNING trials of dead workers as abandoned (FAIL); the planner re-issues their keys."""
        n = 0
        now = time.time()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if T.KEY not in t.user_attrs:
                continue
            last = t.user_attrs.get(T.HEARTBEAT) or (
                t.datetime_start.timestamp() if t.datetime_start else now
            )
            who = t.user_attrs.get(T.WORKER, "")
            gone = process_gone(who)
            if gone or now - last > self.lease:
                why = f"worker {who or '?'} " + (
                    "exited" if gone else f"sent no heartbeat for {now - last:.0f} s"
                )
                oa.set_attr(self.study, t, T.ABANDONED, True)
                oa.set_attr(self.study, t, T.REASON, why + "; its evaluation was handed out again")
                oa.fail(self.study, t)
                self.on_event({"event": "reclaimed", "key": t.user_attrs[T.KEY], "reason": why})
                n += 1
        return n

    # -- one evaluation ------------------------------------------------------------------
    def _run_trial(self, t: FrozenTrial) -> str:
        """Evaluate ``t`` and tell the result.

        Returns "evaluated", "reused", "crashed" (the evaluation raised: recorded on the trial,
        which then stands for nothing, so its key is planned again) or "lost" (the trial was
        taken away while it ran).
        """
        attrs = t.user_attrs
        key, stage = attrs[T.KEY], attrs[T.STAGE]
        if self._finish_as_reused(t):
            return "reused"
        self.on_event({"event": "started", "key": key, "stage": stage, "formula": attrs.get(T.FORMULA)})
        stop, lost = threading.Event(), threading.Event()
        beat = threading.Thread(target=self._beat, args=(t, stop, lost), daemon=True)
        beat.start()
        outcome = "evaluated"
        try:
            result = self._evaluate(t, lost)
        except KeyboardInterrupt:
            oa.set_attr(self.study, t, T.ABANDONED, True)
            oa.set_attr(self.study, t, T.REASON, "interrupted; its evaluation was handed out again")
            oa.fail(self.study, t)
            raise
        except TrialLostError as exc:
            # best effort: say so at once, rather than leaving others to wait out the lease
            with contextlib.suppress(Exception):
                oa.set_attr(self.study, t, T.ABANDONED, True)
                oa.set_attr(self.study, t, T.REASON, f"given up by its worker: {exc}")
                oa.fail(self.study, t)
            self.on_event({"event": "lost", "key": key, "reason": str(exc)})
            return "lost"
        except Exception as exc:  # not a verdict on the candidate: recorded, retried, never ranked
            outcome = "crashed"
            result = TrialResult.crashed(exc)
            self.on_event({"event": "crashed", "key": key, "error": result.attrs[T.ERROR]})
        finally:
            stop.set()
            beat.join()
        try:
            for k, v in result.to_attrs().items():
                oa.set_attr(self.study, t, k, v)
            state = T.state_for(result.status)
            value = result.fitness if state == TrialState.COMPLETE else None
            self.study.tell(t.number, value, state=state, skip_if_finished=False)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.on_event({"event": "lost", "key": key, "reason": "the trial was reclaimed while it ran"})
            return "lost"
        self.on_event(
            {
                "event": "finished",
                "key": key,
                "stage": stage,
                "status": result.status,
                "fitness": result.fitness,
                "reason": result.reason,
                "duration": result.attrs.get("duration"),
                "formula": attrs.get(T.FORMULA),
            }
        )
        return outcome

    def _finish_as_reused(self, t: FrozenTrial) -> bool:
        """Finish ``t`` with the result of an identical evaluation that finished meanwhile."""
        sig = T.reuse_signature(t.user_attrs)
        for other in T.live_trials(self.study.get_trials(deepcopy=False, states=T.FINISHED)).values():
            if other.number == t.number or other.user_attrs.get(T.REUSED_FROM) is not None:
                continue
            if T.reuse_signature(other.user_attrs) != sig or T.STATUS not in other.user_attrs:
                continue
            for k in T.RESULT_ATTRS:
                if k in other.user_attrs:
                    oa.set_attr(self.study, t, k, other.user_attrs[k])
            oa.set_attr(self.study, t, "duration", 0.0)
            oa.set_attr(self.study, t, T.REUSED_FROM, other.number)
            for step, value in other.intermediate_values.items():
                oa.set_intermediate(self.study, t, step, value)
            value = other.value if other.state == TrialState.COMPLETE else None
            self.study.tell(t.number, value, state=other.state, skip_if_finished=False)
            self.on_event({"event": "reused", "key": t.user_attrs[T.KEY], "from": other.number})
            return True
        return False

    def _beat(self, t: FrozenTrial, stop: threading.Event, lost: threading.Event) -> None:
        """Stamp the trial every ``heartbeat`` seconds; set ``lost`` when it is no longer ours.

        A heartbeat that cannot be written for ``lease - heartbeat`` seconds means other workers
        are about to judge this one dead and hand the trial out again, so it is given up before
        that (as it is at once when the trial was already reclaimed).
        """
        last_ok = time.time()
        while not stop.wait(self.heartbeat):
            try:
                oa.set_attr(self.study, t, T.HEARTBEAT, time.time())
                now = oa.reload(self.study, t)
            except Exception as exc:  # a storage hiccup: tolerated for less than a lease
                if time.time() - last_ok > self.lease - self.heartbeat:
                    self._lose(lost, f"no heartbeat could be written for {time.time() - last_ok:.0f} s: "
                               f"{first_line(exc)}")  # fmt: skip
                    return
                continue
            if now.state != TrialState.RUNNING or now.user_attrs.get(T.ABANDONED):
                self._lose(lost, "another worker reclaimed it")
                return
            last_ok = time.time()

    def _lost_check(self, lost: threading.Event) -> Callable[[str, dict[str, Any]], None]:
        """A progress callback (called after every epoch) that stops a trial this worker lost."""

        def check(_what: str, _info: dict[str, Any]) -> None:
            if lost.is_set():
                raise TrialLostError(getattr(self, "_lost_reason", "lost"))

        return check

    def _lose(self, lost: threading.Event, reason: str) -> None:
        self._lost_reason = reason
        lost.set()

    def _evaluate(self, t: FrozenTrial, lost: threading.Event) -> TrialResult:
        """Evaluate ``t`` through its kind, reporting to the trial with the kind's pruner."""
        item = WorkItem(t.number, t.user_attrs)
        pruner = self.ctx.pruner(item)
        study = self._studies.get(id(pruner) if pruner is not None else None)
        if study is None:
            study = optuna.load_study(study_name=self.name, storage=oa.storage_of(self.study), pruner=pruner)
            self._studies[id(pruner) if pruner is not None else None] = study
        reporter = TrialReporter(oa.live_trial(study, t))
        return self.ctx.evaluate(item, reporter, self.device, self._lost_check(lost))
