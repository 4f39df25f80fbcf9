"""Assemble a study report: read the storage, draw the figures, evaluate baselines, write files.

Every check that can fail on bad input (unknown study, wrong kind of study, nothing finished,
unknown baseline, unknown format) runs before the output folder is created, so a failed
``nosplug report`` leaves nothing behind. The study storage is only read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from nosplug.errors import UserError
from nosplug.genome.model import Genome
from nosplug.reporting import compare, data, figures
from nosplug.reporting.report import BestGenome, ComparisonRow, Report

DEFAULT_BASELINES: tuple[str, ...] = ("adam", "sgd", "momentum", "rmsprop")
FORMATS = ("md", "html")
FITNESS_PNG, SCHEDULES_PNG, COMPARISON_PNG = "fitness.png", "schedules.png", "comparison.png"
#: m(t) is measured at this many steps at most (the state still advances through every step).
SCHEDULE_POINTS = 400

Event = dict[str, Any]


class ReportError(UserError):
    """The study cannot be reported (wrong kind, nothing finished) or an option is invalid."""


def build_report(
    name: str,
    storage: str | None = None,
    *,
    out: str | Path | None = None,
    top: int = 5,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    formats: Collection[str] = FORMATS,
    on_event: Callable[[Event], None] | None = None,
) -> Report:
    """Write the report of study ``name`` to ``out`` (default ``reports/<name>/``) and return it.

    Args:
        top: how many distinct genomes (by canonical hash) the best-genome table shows.
        baselines: zoo genome names evaluated under the study's evolution-stage evaluation.
        formats: ``md`` and/or ``html``; the PNG figures and the baseline cache are always written.
        on_event: progress callback (``stage`` messages, ``baseline_start`` / ``baseline``).
    """
    from nosplug import zoo
    from nosplug.search.kind import SearchStudy
    from nosplug.search.planners.particle_ga import EVOLUTION
    from nosplug.search.ranking import ELIMINATION, best, ranking_stage
    from nosplug.study.export import trial_rows
    from nosplug.study.kinds import open_study, plan_state
    from nosplug.study.plan import derived_seed
    from nosplug.study.studies import kind_name, load

    emit = on_event or (lambda e: None)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ReportError(f"unknown report format(s) {', '.join(unknown)} (known: md, html)")
    formats = tuple(f for f in FORMATS if f in set(formats))
    if not formats:
        raise ReportError("give at least one output format (md, html)")
    if top < 1:
        raise ReportError(f"the number of best genomes must be at least 1, got {top}")

    emit({"event": "stage", "message": f"reading study {name}"})
    study = load(name, storage)
    kind = kind_name(study)
    if kind.startswith("amalgamation"):
        raise ReportError(
            f"study {name!r} is an amalgamation run, not a search; `nosplug report` reports searches "
            "(see `nosplug amalgamate --help`)"
        )
    if kind == ELIMINATION:
        raise ReportError(
            f"study {name!r} is an elimination study; report the search it came from "
            f"({study.user_attrs.get('nosplug.config', {}).get('source', '?')!r}) instead"
        )
    ctx = open_study(study)
    if not isinstance(ctx, SearchStudy):
        raise ReportError(f"study {name!r} has kind {kind!r}; `nosplug report` reports searches")
    best_stage = ranking_stage(study)
    top_trials = best(study, top, stage=best_stage)
    if not top_trials:
        raise ReportError(
            f"study {name!r} has no finished evaluation with a fitness yet; "
            f"run `nosplug study run {name}` first"
        )
    reference = [(n, zoo.load(n)) for n in dict.fromkeys(b.strip() for b in baselines if b.strip())]

    out_dir = Path(out) if out is not None else Path("reports") / name
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"--out {str(out_dir)!r} exists and is not a folder")
    rows = trial_rows(study)
    plan = plan_state(study)
    preset = ctx.presets[EVOLUTION]
    report = Report(
        study=name,
        out=out_dir,
        generated=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        summary=_summary(study, ctx, rows, plan),
        best=[_best_genome(i, t) for i, t in enumerate(top_trials, 1)],
        best_stage=best_stage,
        trajectories=[],
        comparison=[],
    )
    if best_stage != EVOLUTION:
        report.notes.append(
            "No evaluation of the evolution stage has finished yet, so the best genomes come from the "
            "initial population; the comparison table re-evaluates them with the evolution preset."
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    # -- figure 1: fitness over timesteps ------------------------------------------------
    emit({"event": "stage", "message": "fitness figure"})
    current = {int(p): info["key"] for p, info in plan.progress.get("positions", {}).items()}
    report.trajectories = data.particle_trajectories(rows, current)
    init = data.initial_population(rows)
    report.figures["fitness"] = figures.fitness_figure(
        report.trajectories,
        init,
        out_dir / FITNESS_PNG,
        f"Study {name}: fitness per particle over timesteps",
    )

    # -- figure 2: learned learning-rate schedules --------------------------------------
    with_decays = [b for b in report.best if b.has_decays]
    if with_decays:
        emit({"event": "stage", "message": f"learning-rate schedules of {len(with_decays)} genome(s)"})
        report.schedules = [_schedule_curve(b, preset) for b in with_decays]
        report.figures["schedules"] = figures.schedule_figure(report.schedules, out_dir / SCHEDULES_PNG)
    else:
        report.notes.append("None of the best genomes has decay functions, so there is no schedule figure.")

    # -- comparison with baselines -------------------------------------------------------
    cache = compare.ResultCache(out_dir / compare.CACHE_FILE)
    fp = compare.fingerprint(preset, {"task": ctx.raw.get("task"), "data": ctx.raw["data"]})
    seed = int(ctx.raw["study"]["seed"])
    todo: list[tuple[str, bool, Genome, compare.Result | None]] = []
    for b in report.best:
        stored = None
        if b.stage == EVOLUTION:
            stored = compare.Result("complete", b.fitness, b.chosen_lr, "", "study")
        todo.append((f"#{b.rank} {b.key}", True, b.genome, stored))
    todo += [(n, False, g, None) for n, g in reference]
    with _threads(ctx.workers.threads):
        for i, (label, search, genome, known) in enumerate(todo):
            h = genome.canonical_hash()
            eval_seed = derived_seed(seed, EVOLUTION, h, "report")
            key = compare.cache_key(fp, h, eval_seed)
            result = known or compare.stored_result(rows, EVOLUTION, h) or cache.get(key)
            if result is None:
                emit({"event": "baseline_start", "label": label, "index": i, "total": len(todo)})
                result = compare.evaluate(genome, ctx.task, ctx.data(), preset, eval_seed)
                if result.status != "error":  # crashes are not cached: they may be transient
                    cache.put(key, result, genome=label, hash=h, seed=eval_seed, preset=preset.name)
            report.comparison.append(ComparisonRow(label, search, h, result))
            emit({"event": "baseline", "label": label, "index": i, "total": len(todo), "result": result})
    report.figures["comparison"] = figures.comparison_figure(
        [_bar(r) for r in report.comparison],
        out_dir / COMPARISON_PNG,
        f"Study {name}: best genomes vs baselines ({preset.name} preset, evolution stage)",
    )

    # -- documents ---------------------------------------------------------------------
    from nosplug.reporting import document

    emit({"event": "stage", "message": "writing " + " and ".join(f"report.{f}" for f in formats)})
    for stale in {FITNESS_PNG, SCHEDULES_PNG, COMPARISON_PNG} - {p.name for p in report.figures.values()}:
        (out_dir / stale).unlink(missing_ok=True)  # a figure of an earlier run that no longer applies
    report.files = list(report.figures.values())
    if "md" in formats:
        report.files.append(_write(out_dir / "report.md", document.markdown(report)))
    if "html" in formats:
        report.files.append(_write(out_dir / "report.html", document.html(report)))
    return report


# ----------------------------------------------------------------------------- helpers
def _best_genome(rank: int, t: Any) -> BestGenome:
    from nosplug.optim.program import compile_genome
    from nosplug.study import trials as T

    a = t.user_attrs
    genome = T.evaluated_genome(a)
    mom = genome.momentum + (f" ({genome.nesterov})" if genome.momentum == "nesterov" else "")
    return BestGenome(
        rank=rank,
        trial=t.number,
        key=a[T.KEY],
        stage=a[T.STAGE],
        fitness=float(a[T.FITNESS]),
        chosen_lr=a.get("chosen_lr"),
        hash=genome.canonical_hash(),
        formula=genome.formula(),
        latex=genome.latex(),
        momentum=mom,
        flip=bool(a.get("flip", False)),
        has_decays=bool(compile_genome(genome).decays),
        genome=genome,
    )


def _schedule_curve(b: BestGenome, preset: Any) -> figures.ScheduleCurve:
    from nosplug.optim.effective_lr import effective_lr_multiplier
    from nosplug.optim.schedules import warmup_hold_cosine_factor

    total = int(preset.schedule_steps)
    end = min(total, int(preset.final_steps))  # the final run never trains past its own end
    n = min(end, SCHEDULE_POINTS)
    points = sorted({round(i * (end - 1) / max(1, n - 1)) for i in range(n)})
    steps, m = effective_lr_multiplier(b.genome, total, points=points)
    base = [warmup_hold_cosine_factor(int(s), total, preset.warmup_steps, preset.hold_steps) for s in steps]
    return figures.ScheduleCurve(
        title=f"#{b.rank} {b.key}  (fitness {b.fitness:.3f})",
        steps=steps.tolist(),
        base=base,
        learned=[f * float(x) for f, x in zip(base, m)],
        total_steps=total,
        final_steps=int(preset.final_steps),
    )


def _bar(row: ComparisonRow) -> figures.Bar:
    r = row.result
    if r.fitness is not None:
        note = f"lr {r.chosen_lr:g}" if r.chosen_lr is not None else ""
    else:
        note = r.status
    return figures.Bar(row.label, r.fitness, note, row.search)


def _summary(study: Any, ctx: Any, rows: list[dict[str, Any]], plan: Any) -> list[tuple[str, str]]:
    """Label/value lines describing the study, its search settings and its state."""
    from nosplug.search.planners.particle_ga import EVOLUTION, INIT

    raw, ga = ctx.raw, ctx.config.ga
    d = raw["data"]
    lines = [("study", study.study_name)]
    if raw["study"].get("description"):
        lines.append(("description", raw["study"]["description"]))
    lines.append(("created with", f"nosplug {study.user_attrs.get('nosplug.version', '?')}"))
    lines.append(
        (
            "data",
            f"{d['dataset']}"
            + (f" (at most {d['limit']} examples)" if d["limit"] else "")
            + f", seed {raw['study']['seed']}",
        )
    )
    start = (
        f"{len(ga.initial_genomes)} initial genome(s)"
        if ga.initial_genomes
        else f"best {ga.particles} of an initial population of {ga.initial_population}"
    )
    lines.append(
        (
            "search",
            f"{ga.n_particles} particles × {ga.timesteps} timesteps × {ga.mutations} mutations, {start}",
        )
    )
    for stage in (INIT, EVOLUTION):
        if stage == INIT and ga.initial_genomes:
            continue
        p = ctx.presets[stage]
        opts = ", ".join(f"{k}={v}" for k, v in sorted(p.surrogate_options.items()))
        lines.append(
            (
                f"{stage} evaluation",
                f"preset {p.name}: {p.surrogate}({opts}), {p.final_steps} final steps, schedule "
                f"{p.schedule_steps} steps (warmup {p.warmup_steps}, hold {p.hold_steps})",
            )
        )
    counts = data.state_counts(rows)
    lines.append(("evaluations", ", ".join(f"{n} {s.lower()}" for s, n in counts.items()) or "none"))
    lines.append(("state", "finished" if plan.done else f"in progress ({plan.progress.get('phase', '?')})"))
    return lines


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Train with the study's torch thread count, as its workers did (results depend on it)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
