"""``nosplug study``: create, run (many workers), status, best, export, eliminate, list."""

from __future__ import annotations

import functools
from typing import Any

import click
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from nosplug.cli.console import console, emit_json, err_console
from nosplug.cli.options import ARTIFACTS_HELP, STORAGE_HELP
from nosplug.cli.study_screen import Monitor, best_table, print_summary, resume_note, wait_for


@click.group()
def study() -> None:
    """Searches as durable Optuna studies: any number of workers share one study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # nosplug prints its own progress


@study.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--name", help="Study name (default: the config's study.name).")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--exist-ok", is_flag=True, help="Succeed if the study exists with this very config.")
def create(config: str, name: str | None, storage: str | None, exist_ok: bool) -> None:
    """Create a study from a TOML CONFIG (see docs/studies.md); refuses to overwrite one."""
    from nosplug.search.api import create_search
    from nosplug.study.kinds import open_study
    from nosplug.study.storage import shown_url, storage_url

    s = create_search(config, name=name, storage=storage, exist_ok=exist_ok)
    cfg = open_study(s).config
    ga = cfg.ga
    where = escape(shown_url(storage_url(storage)))
    console.print(f"study [bold]{escape(s.study_name)}[/bold] in {where} ({len(s.trials)} trials so far)")
    if cfg.planner_spec.name == "particle-ga":
        console.print(
            f"  {ga.n_particles} particles x {ga.timesteps} timesteps x {ga.mutations} mutations"
            + ("" if ga.initial_genomes else f", initial population {ga.initial_population}")
            + f"; at least {ga.expected_evaluations} evaluations"
        )
    else:
        options = ", ".join(f"{k} {v}" for k, v in cfg.planner_options.items())
        console.print(f"  planner {escape(cfg.planner_spec.name)} ({escape(options)})")
    if cfg.seeds:
        console.print(
            f"  warm starts in the initial population: {escape(', '.join(r for r, _ in cfg.seeds))}"
        )
    if not exist_ok:  # --exist-ok is how scripts (the README's chained command) create then run
        console.print(f"  next: nosplug study run {escape(s.study_name)}")


@study.command("list")
@click.option("--storage", help=STORAGE_HELP)
def list_cmd(storage: str | None) -> None:
    """List the studies in the storage."""
    from nosplug.study.storage import open_storage
    from nosplug.study.studies import study_names

    for name in sorted(study_names(open_storage(storage, create=False))):
        console.print(escape(name))


@study.command()
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--artifacts", help=ARTIFACTS_HELP)
@click.option(
    "--workers", type=click.IntRange(1, 256), default=1, show_default=True, help="Local worker processes."
)
@click.option("--max-trials", type=click.IntRange(1), help="Stop this worker after N evaluations.")
@click.option(
    "--threads", type=click.IntRange(1), help="Torch threads per worker (default: cores / workers)."
)
@click.option("--device", help="Device to train on: auto, cpu, cuda, cuda:N, mps (default: workers.device).")
@click.option(
    "--devices",
    help="One worker per device on the same study, e.g. cuda:0,cuda:1 (replaces --workers and --device).",
)
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--jsonl", is_flag=True, help="Print one JSON object per event (for scripts).")
@click.option("--slot", hidden=True, help="I/K: worker I of K local workers (set by --workers K).")
def run(
    name: str,
    storage: str | None,
    artifacts: str | None,
    workers: int,
    max_trials: int | None,
    threads: int | None,
    device: str | None,
    devices: str | None,
    quiet: bool,
    jsonl: bool,
    slot: str | None,
) -> None:
    """Work on study NAME until its plan is done; resumes wherever the storage says it stands.

    Start as many of these as you like, on any machines that reach the storage: they share the
    work through Optuna's queue, and the work of a worker that dies is handed out again.
    """
    from nosplug.study.local import LocalSlot
    from nosplug.study.storage import storage_url
    from nosplug.study.studies import load

    url = storage_url(storage)
    s = load(name, url)  # fail early, with one line, on a missing study or storage
    per_worker = _device_list(devices, workers, device)
    try:
        place = LocalSlot.parse(slot) if slot else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--slot") from None
    try:
        _run(s, name, url, len(per_worker), max_trials, threads, quiet, jsonl, artifacts, per_worker, place)
        if not max_trials:  # a bounded run stops there; the verdict comes when the search is done
            _follow_ups(name, url, len(per_worker) > 1, threads, quiet, jsonl, per_worker[0])
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: study {escape(name)} is saved; resume it with: "
            f"[bold]{escape(resume_command(name, storage))}[/bold]"
        )
        raise click.exceptions.Exit(130) from None


def _follow_ups(name: str, url: str, children: bool, threads, quiet: bool, jsonl: bool, device) -> None:
    """Run the studies that follow a finished one (a search's verdict, config ``[validate]``: the
    best genomes against tuned baselines, benchmarked fairly, docs/benchmark.md). Worker
    processes of ``--workers K`` each join them; the parent then prints what they computed."""
    from nosplug.benchmark.results import collect
    from nosplug.cli.benchmark_cmd import render
    from nosplug.search.verdict import next_steps
    from nosplug.study.kinds import open_study
    from nosplug.study.studies import load
    from nosplug.study.worker import Worker

    ctx = open_study(load(name, url))
    if not ctx.queued or not ctx.plan_state().done:
        return
    for follow in ctx.follow_ups(url):
        if not children:
            if jsonl:
                Worker(follow, url, device=device, threads=threads, on_event=emit_json).run()
            elif quiet:
                Worker(follow, url, device=device, threads=threads).run()
            else:
                console.print(
                    f"verdict: benchmarking the best genomes of {escape(name)} against tuned baselines "
                    "(equal tuning budgets, fresh seeds, test split)"
                )

                def progress(e: dict[str, Any]) -> None:
                    if e.get("event") == "finished":
                        from nosplug.cli.benchmark_cmd import _progress

                        _progress(e)

                Worker(follow, url, device=device, threads=threads, on_event=progress).run()
        if not (quiet or jsonl):
            from nosplug.benchmark.baseline_report import report_lines

            result = collect(load(follow, url))
            console.print(render(result))
            for line in report_lines(result):  # tuning space per contender; against the best baseline
                console.print(escape(line))
            for line in next_steps(name, result):
                console.print(escape(line), soft_wrap=True)


def _device_list(devices: str | None, workers: int, device: str | None) -> list[str | None]:
    """The device of each local worker: one per ``--devices`` entry, else ``--device`` (or the
    study's ``workers.device``) for each of ``--workers``. Checked before anything starts."""
    from nosplug.tasks.devices import resolve_device

    if devices is None:
        if device is not None:
            resolve_device(device)
        return [device] * workers
    if device is not None or workers != 1:
        raise click.UsageError(
            "--devices gives each worker its device; do not combine it with --device or --workers"
        )
    listed = [d.strip() for d in devices.split(",") if d.strip()]
    if not listed:
        raise click.BadParameter("expected devices such as cuda:0,cuda:1", param_hint="--devices")
    for d in listed:
        resolve_device(d)
    return listed


def resume_command(name: str, storage: str | None) -> str:
    """The command that continues study ``name`` (with --storage only if the user gave one)."""
    from nosplug.study.storage import shown_url

    return f"nosplug study run {name}" + (f" --storage {shown_url(storage)}" if storage else "")


def _run(s, name, url, workers, max_trials, threads, quiet, jsonl, artifacts=None, devices=None, slot=None):
    from nosplug.study.artifacts import line_if_done
    from nosplug.study.local import start_workers
    from nosplug.study.worker import Worker

    devices = devices or [None] * workers
    device = devices[0]
    if workers > 1:
        wait = None if quiet or jsonl else functools.partial(wait_for, s=s)
        start_workers(
            name,
            url,
            devices,
            jsonl=jsonl,
            max_trials=max_trials,
            threads=threads,
            artifacts=artifacts,
            wait=wait,
        )
        if not (quiet or jsonl) and (line := line_if_done(s, url, artifacts)):  # the workers attached them
            console.print(escape(line), soft_wrap=True)
        return
    worker = functools.partial(
        Worker,
        name,
        url,
        max_trials=max_trials,
        threads=threads,
        artifacts=artifacts,
        device=device,
        slot=slot,
    )
    if jsonl:
        summary = worker(on_event=emit_json).run()
        emit_json({"event": "summary", **summary.__dict__})
        return
    if quiet:
        worker().run()
        return
    resume_note(s)
    monitor = Monitor(s)
    with Live(monitor.render(), console=console, refresh_per_second=2, transient=False) as live:

        def on_event(e: dict[str, Any]) -> None:
            monitor.note(e)
            if e["event"] in ("finished", "reused", "reclaimed", "planned", "stopped", "crashed", "retry"):
                live.update(monitor.render())

        summary = worker(on_event=on_event).run()
        live.update(monitor.render())
    if not console.is_terminal:  # rich leaves the last frame of a non-terminal Live unterminated
        console.print()
    print_summary(s, summary.done, summary.evaluated, summary.reused, summary.seconds)
    if summary.artifacts:
        console.print(escape(summary.artifacts), soft_wrap=True)


@study.command()
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(name: str, storage: str | None, as_json: bool) -> None:
    """Where study NAME stands: trial states, phase, particles, best fitness."""
    from nosplug.study.kinds import open_study
    from nosplug.study.studies import load

    info = open_study(load(name, storage)).status()
    if as_json:
        emit_json(info)
        return
    table = Table(title=f"study {name}", show_header=False, title_justify="left")
    for k, v in info.items():
        if k == "crashes":
            for c in v:
                table.add_row("crash", escape(f"trial {c['trial']} ({c['key']}): {c['error']}"))
        elif k == "outcomes":
            table.add_row(k, escape(", ".join(f"{n} {o}" for o, n in sorted(v.items())) or "none yet"))
        elif k != "study":
            table.add_row(k, escape(str(v)))
    console.print(table)


@study.command("best")
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
@click.option("-n", "count", type=click.IntRange(1), default=10, show_default=True, help="How many genomes.")
@click.option("--latex", is_flag=True, help="Show formulas as LaTeX.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per genome (with the genome JSON).")
def best_cmd(name: str, storage: str | None, count: int, latex: bool, as_json: bool) -> None:
    """The best distinct genomes of study NAME with their fitness and formulas."""
    from nosplug.search.ranking import best
    from nosplug.search.verdict import verdict
    from nosplug.study import trials as T
    from nosplug.study.studies import load

    top = best(load(name, storage), count)
    result = verdict(name, storage)  # the benchmark that ended the search, if it ran
    verdicts = result.verdicts if result is not None else {}
    if as_json:
        for rank, t in enumerate(top, 1):
            a = t.user_attrs
            genome = T.evaluated_genome(a)  # what was trained: the integrity check's flip applied
            v = verdicts.get(f"study:{name}#{rank}")
            emit_json(
                {
                    "trial": t.number,
                    "key": a[T.KEY],
                    "fitness": a[T.FITNESS],
                    "fitness_seeds": a.get("fitness_seeds", 1),
                    "chosen_lr": a.get("chosen_lr"),
                    "hash": genome.canonical_hash(),
                    "flipped_by_integrity_check": bool(a.get("flip")),
                    "formula": genome.formula(),
                    "genome": genome.to_dict(),
                    "verdict": None if v is None else {
                        "outcome": v.outcome,
                        "sentence": v.sentence,
                        "iqm": [v.comparison.iqm.point, v.comparison.iqm.low, v.comparison.iqm.high],
                        "reference_iqm": [v.comparison.reference_iqm.point, v.comparison.reference_iqm.low,
                                          v.comparison.reference_iqm.high],
                        "p_corrected": v.comparison.test.p_corrected,
                    },
                }
            )  # fmt: skip
        return
    if not top:
        console.print(f"study {escape(name)} has no finished evaluations yet")
        return
    console.print(best_table(top, latex=latex))
    if result is None:
        console.print(
            "[dim]no verdict yet: it runs when the search finishes (config [validate]); "
            "until then these fitness values have no tuned baseline beside them[/dim]"
        )
        return
    from nosplug.cli.benchmark_cmd import render

    ref = result.reference
    rows = [s for (c, _t), s in result.summaries.items() if c == ref]
    for s in rows:
        console.print(
            f"baseline {escape(ref)}, tuned with the same budget: test {escape(s.task)} "
            f"{s.final_test.mean:.4g} ± {s.final_test.std:.2g} over {s.final_test.n} seeds"
        )
    console.print(render(result, verdicts_only=True))
    from nosplug.benchmark.baseline_report import report_lines

    for line in report_lines(result):  # tuning space per contender; against the best baseline
        console.print(escape(line))


@study.command()
@click.argument("name")
@click.option("--out", help="Parquet file to write (default: NAME.parquet here).")
@click.option("--storage", help=STORAGE_HELP)
def export(name: str, out: str | None, storage: str | None) -> None:
    """Write one row per trial of study NAME to a Parquet file (schema: docs/parquet.md)."""
    from nosplug.study.export import export_parquet
    from nosplug.study.studies import load

    out = out or f"{name}.parquet"
    n = export_parquet(load(name, storage), out)
    console.print(f"wrote {n} rows to {escape(out)}")


@study.command()
@click.argument("name")
@click.option(
    "--stages", help="Stages as baseN:KEEP,... e.g. base64:24,base96:12,base128:6 (default: config)."
)
@click.option("--top", type=click.IntRange(1), help="Candidates taken from the search (default: config, 50).")
@click.option("--repeats", type=click.IntRange(1), help="Runs per candidate and stage (default: config, 3).")
@click.option(
    "--steps", type=click.IntRange(1), help="Training steps per run (default: the evolution preset's)."
)
@click.option(
    "--lr",
    "lr_mode",
    type=click.Choice(["sweep", "search"]),
    help="Every stage's learning rate: its own test (sweep) or the search's (default: each stage's "
    "lr, else sweep).",
)
@click.option("--storage", help=STORAGE_HELP)
@click.option("--artifacts", help=ARTIFACTS_HELP)
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--device", help="Device to train on: auto, cpu, cuda, cuda:N, mps (default: workers.device).")
@click.option("--quiet", is_flag=True)
def eliminate(
    name: str,
    stages: str | None,
    top: int | None,
    repeats: int | None,
    steps: int | None,
    lr_mode: str | None,
    storage: str | None,
    artifacts: str | None,
    workers: int,
    device: str | None,
    quiet: bool,
) -> None:
    """Elimination protocol (spec §10) on the best genomes of study NAME, as study NAME.elimination.

    Each stage trains the survivors on its task (a larger surrogate, or a task of its own) REPEATS
    times and keeps the best by mean fitness; its learning rate comes from its own learning-rate
    test unless the stage says lr = "search". Re-running resumes the elimination study.
    """
    from nosplug.search.rounds import create_elimination, evolution_stage, parse_stages
    from nosplug.study.kinds import open_study
    from nosplug.study.storage import open_storage, storage_url
    from nosplug.study.studies import load, study_names

    url = storage_url(storage)
    el_name = f"{name}.elimination"
    if el_name not in study_names(open_storage(url, create=False)):
        parsed = parse_stages(stages, evolution_stage(name, url), steps) if stages else None
        if lr_mode:
            parsed = [
                {**s, "lr": lr_mode}
                for s in (parsed or open_study(load(name, url)).raw["elimination"]["stages"])
            ]
        create_elimination(name, url, stages=parsed, top=top, repeats=repeats)
        if not quiet:
            console.print(f"created elimination study [bold]{escape(el_name)}[/bold]")
    elif stages or top or repeats or steps or lr_mode:
        raise click.UsageError(
            f"{el_name} already exists; its settings cannot change (run without options to resume)"
        )
    _run_to_end(el_name, url, artifacts, workers, device, quiet)
    if not quiet:
        from nosplug.study.kinds import plan_state

        progress = plan_state(load(el_name, url)).progress
        for st in progress.get("stages", []):
            console.print(f"{escape(st['stage'])}: survivors {', '.join(map(escape, st['survivors']))}")


@study.command("next-round")
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--artifacts", help=ARTIFACTS_HELP)
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--device", help="Device to train on: auto, cpu, cuda, cuda:N, mps (default: workers.device).")
@click.option("--quiet", is_flag=True)
def next_round(
    name: str, storage: str | None, artifacts: str | None, workers: int, device: str | None, quiet: bool
) -> None:
    """Second GA round (spec §10 step 7) of search NAME, as study NAME.round2.

    Its particles are the best next_round.top winners of NAME.elimination; every child is trained
    on next_round.seeds seeds. Then run `nosplug study eliminate NAME.round2` for its final
    stage. Re-running resumes the round.
    """
    from nosplug.search.rounds import create_round2, round2_name
    from nosplug.study.storage import open_storage, storage_url
    from nosplug.study.studies import study_names

    url = storage_url(storage)
    r2 = round2_name(name)
    if r2 not in study_names(open_storage(url, create=False)):
        create_round2(name, url)
        if not quiet:
            console.print(f"created second round [bold]{escape(r2)}[/bold]")
    _run_to_end(r2, url, artifacts, workers, device, quiet)
    if not quiet:
        console.print(f"next: [bold]nosplug study eliminate {escape(r2)}[/bold]")


def _run_to_end(name: str, url: str, artifacts, workers: int, device: str | None, quiet: bool) -> None:
    """``study run NAME`` with these options (the other options at their defaults)."""
    click.get_current_context().invoke(
        run, name=name, storage=url, artifacts=artifacts, workers=workers, device=device, quiet=quiet
    )
