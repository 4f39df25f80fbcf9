"""``nosplug study``: create, run (many workers), status, best, export, eliminate, list."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import click
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nosplug.cli.console import console, emit_json, err_console

STORAGE_HELP = (
    "Optuna storage URL (default: $NOSPLUG_STORAGE, else the journal file ./nosplug-studies/journal.log)."
)


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
    from nosplug.study.runner import context, create_study
    from nosplug.study.storage import shown_url, storage_url

    s = create_study(config, name=name, storage=storage, exist_ok=exist_ok)
    ctx = context(s)
    ga = ctx.config.ga if ctx.config else None
    where = escape(shown_url(storage_url(storage)))
    console.print(f"study [bold]{escape(s.study_name)}[/bold] in {where} ({len(s.trials)} trials so far)")
    if ga is not None:
        console.print(
            f"  {ga.n_particles} particles x {ga.timesteps} timesteps x {ga.mutations} mutations"
            + ("" if ga.initial_genomes else f", initial population {ga.initial_population}")
            + f"; at least {ga.expected_evaluations} evaluations"
        )
    console.print(f"  next: nosplug study run {escape(s.study_name)}")


@study.command("list")
@click.option("--storage", help=STORAGE_HELP)
def list_cmd(storage: str | None) -> None:
    """List the studies in the storage."""
    from nosplug.study.runner import study_names
    from nosplug.study.storage import open_storage

    for name in sorted(study_names(open_storage(storage, create=False))):
        console.print(escape(name))


@study.command()
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
@click.option(
    "--workers", type=click.IntRange(1, 256), default=1, show_default=True, help="Local worker processes."
)
@click.option("--max-trials", type=click.IntRange(1), help="Stop this worker after N evaluations.")
@click.option(
    "--threads", type=click.IntRange(1), help="Torch threads per worker (default: cores / workers)."
)
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--jsonl", is_flag=True, help="Print one JSON object per event (for scripts).")
def run(
    name: str,
    storage: str | None,
    workers: int,
    max_trials: int | None,
    threads: int | None,
    quiet: bool,
    jsonl: bool,
) -> None:
    """Work on study NAME until its plan is done; resumes wherever the storage says it stands.

    Start as many of these as you like, on any machines that reach the storage: they share the
    work through Optuna's queue, and the work of a worker that dies is handed out again.
    """
    from nosplug.study.runner import Worker, load
    from nosplug.study.storage import storage_url

    url = storage_url(storage)
    s = load(name, url)  # fail early, with one line, on a missing study or storage
    if workers > 1:
        _run_processes(name, url, workers, max_trials, threads, quiet, jsonl)
        return
    if jsonl:
        summary = Worker(name, url, max_trials=max_trials, threads=threads, on_event=emit_json).run()
        emit_json({"event": "summary", **summary.__dict__})
        return
    if quiet:
        Worker(name, url, max_trials=max_trials, threads=threads).run()
        return
    monitor = Monitor(s)
    with Live(monitor.render(), console=console, refresh_per_second=2, transient=False) as live:

        def on_event(e: dict[str, Any]) -> None:
            if e["event"] in ("finished", "reused", "reclaimed", "planned", "stopped"):
                live.update(monitor.render())
            if e["event"] == "error":
                err_console.print(
                    f"[red]evaluation {escape(e['key'])} failed[/red]\n{escape(e['traceback'])}"
                )

        summary = Worker(name, url, max_trials=max_trials, threads=threads, on_event=on_event).run()
        live.update(monitor.render())
    if not console.is_terminal:  # rich leaves the last frame of a non-terminal Live unterminated
        console.print()
    _summary(s, summary.done, summary.evaluated, summary.reused, summary.seconds)


def _run_processes(
    name: str, url: str, k: int, max_trials: int | None, threads: int | None, quiet: bool, jsonl: bool
) -> None:
    from nosplug.study.runner import load

    cmd = [sys.executable, "-m", "nosplug", "study", "run", name, "--storage", url, "--workers", "1"]
    cmd += ["--jsonl"] if jsonl else ["--quiet"]
    if max_trials:
        cmd += ["--max-trials", str(max_trials)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "NOSPLUG_WORKERS": str(k)}
    procs = [subprocess.Popen(cmd, env=env, stdout=None if jsonl else subprocess.DEVNULL) for _ in range(k)]
    start = time.perf_counter()
    s = load(name, url)
    if quiet or jsonl:
        codes = [p.wait() for p in procs]
    else:
        monitor = Monitor(s)
        with Live(monitor.render(), console=console, refresh_per_second=1) as live:
            while any(p.poll() is None for p in procs):
                time.sleep(2)
                live.update(monitor.render())
            live.update(monitor.render())
        codes = [p.returncode for p in procs]
        _summary(s, None, None, None, time.perf_counter() - start)
    bad = [c for c in codes if c != 0]
    if bad:
        raise click.ClickException(f"{len(bad)} of {k} workers exited with an error (exit codes {bad})")


class Monitor:
    """Progress bars (overall, initial population, active particles) and the best genomes so far."""

    def __init__(self, s) -> None:
        from nosplug.study.runner import context

        self.study = s
        self.ctx = context(s)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.overall = self.progress.add_task("evaluations", total=self._expected())
        self.tasks: dict[str, int] = {}

    def _expected(self) -> int:
        if self.ctx.config is not None:
            return self.ctx.config.ga.expected_evaluations
        raw = self.ctx.raw
        return sum(min(len(raw["candidates"]), s["keep"]) for s in raw["stages"]) * raw["repeats"]

    def render(self):
        from rich.console import Group

        from nosplug.study.runner import best, plan_state
        from nosplug.study.trials import FINISHED, live_trials

        live = live_trials(self.study.get_trials(deepcopy=False)).values()
        finished = sum(t.state in FINISHED for t in live)
        self.progress.update(self.overall, completed=finished, total=max(self._expected(), finished))
        state = plan_state(self.study).progress
        if "init_total" in state:
            self._bar("initial population", state["init_done"], state["init_total"])
        if self.ctx.config is not None:
            steps = self.ctx.config.ga.timesteps
            for p, info in sorted(state.get("positions", {}).items()):
                if info["timestep"] > 0 and not info.get("done"):
                    self._bar(f"particle {p}", info["timestep"] - 1, steps)
                elif info.get("done") and f"particle {p}" in self.tasks:
                    self._bar(f"particle {p}", steps, steps)
        return Group(self.progress, best_table(best(self.study, 5), title="best so far"))

    def _bar(self, label: str, done: int, total: int) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=total)
        self.progress.update(self.tasks[label], completed=done, total=total)


def best_table(trials, title: str = "best genomes", latex: bool = False) -> Table:
    from nosplug.study import trials as T

    table = Table(title=title, title_justify="left")
    for col in ("rank", "fitness", "lr", "key", "hash", "formula"):
        table.add_column(col, overflow="fold")
    for i, t in enumerate(trials, 1):
        a = t.user_attrs
        genome = T.evaluated_genome(a)  # with the integrity check's sign flip
        formula = genome.latex() if latex else genome.formula()
        lr = a.get("chosen_lr")
        table.add_row(
            str(i),
            f"{a.get(T.FITNESS, float('nan')):.4f}",
            "-" if lr is None else f"{lr:g}",
            escape(a.get(T.KEY, "")),
            genome.canonical_hash(),
            escape(formula),
        )
    return table


def _summary(s, done: bool | None, evaluated: int | None, reused: int | None, seconds: float) -> None:
    from nosplug.study.runner import best, plan_state

    plan = plan_state(s)
    state = "finished" if plan.done else "not finished (run it again to continue)"
    extra = f", {evaluated} evaluated here, {reused} reused" if evaluated is not None else ""
    console.print(f"study [bold]{escape(s.study_name)}[/bold]: {state}{extra}, {seconds:.0f} s")
    console.print(best_table(best(s, 5)))


@study.command()
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(name: str, storage: str | None, as_json: bool) -> None:
    """Where study NAME stands: trial states, phase, particles, best fitness."""
    from collections import Counter

    from nosplug.study.runner import best, load, plan_state
    from nosplug.study.trials import ABANDONED, REUSED_FROM

    s = load(name, storage)
    trials = s.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials if not t.user_attrs.get(ABANDONED))
    plan = plan_state(s)
    top = best(s, 1)
    info = {
        "study": name,
        "done": plan.done,
        "phase": plan.progress.get("phase"),
        "states": dict(states),
        "reused": sum(1 for t in trials if t.user_attrs.get(REUSED_FROM) is not None),
        "abandoned": sum(1 for t in trials if t.user_attrs.get(ABANDONED)),
        "particles_done": plan.progress.get("particles_done"),
        "particles": plan.progress.get("particles"),
        "best_fitness": top[0].user_attrs.get("fitness") if top else None,
    }
    if as_json:
        emit_json(info)
        return
    table = Table(title=f"study {name}", show_header=False, title_justify="left")
    for k, v in info.items():
        if k != "study":
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
    from nosplug.study import trials as T
    from nosplug.study.runner import best, load

    top = best(load(name, storage), count)
    if as_json:
        for t in top:
            a = t.user_attrs
            genome = T.evaluated_genome(a)  # what was trained: the integrity check's flip applied
            emit_json(
                {
                    "trial": t.number,
                    "key": a[T.KEY],
                    "fitness": a[T.FITNESS],
                    "chosen_lr": a.get("chosen_lr"),
                    "hash": genome.canonical_hash(),
                    "flipped_by_integrity_check": bool(a.get("flip")),
                    "formula": genome.formula(),
                    "genome": genome.to_dict(),
                }
            )
        return
    if not top:
        console.print(f"study {escape(name)} has no finished evaluations yet")
        return
    console.print(best_table(top, latex=latex))


@study.command()
@click.argument("name")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Parquet file to write.")
@click.option("--storage", help=STORAGE_HELP)
def export(name: str, out: str, storage: str | None) -> None:
    """Write one row per trial of study NAME to a Parquet file (schema: docs/parquet.md)."""
    from nosplug.study.export import export_parquet
    from nosplug.study.runner import load

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
@click.option("--storage", help=STORAGE_HELP)
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--quiet", is_flag=True)
def eliminate(
    name: str,
    stages: str | None,
    top: int | None,
    repeats: int | None,
    steps: int | None,
    storage: str | None,
    workers: int,
    quiet: bool,
) -> None:
    """Elimination protocol (spec §10) on the best genomes of study NAME, as study NAME.elimination.

    Each stage trains the survivors on a larger surrogate REPEATS times at the learning rate the
    search chose and keeps the best by mean fitness. Re-running resumes the elimination study.
    """
    from nosplug.study.runner import (
        context,
        create_elimination,
        evolution_stage,
        load,
        parse_stages,
        study_names,
    )
    from nosplug.study.storage import open_storage, storage_url

    url = storage_url(storage)
    el_name = f"{name}.elimination"
    if el_name not in study_names(open_storage(url, create=False)):
        parsed = parse_stages(stages, evolution_stage(context(load(name, url))), steps) if stages else None
        create_elimination(name, url, stages=parsed, top=top, repeats=repeats)
        if not quiet:
            console.print(f"created elimination study [bold]{escape(el_name)}[/bold]")
    elif stages or top or repeats or steps:
        raise click.UsageError(
            f"{el_name} already exists; its settings cannot change (run without options to resume)"
        )
    ctx = click.get_current_context()
    ctx.invoke(
        run,
        name=el_name,
        storage=url,
        workers=workers,
        max_trials=None,
        threads=None,
        quiet=quiet,
        jsonl=False,
    )
    if not quiet:
        from nosplug.study.runner import plan_state

        progress = plan_state(load(el_name, url)).progress
        for st in progress.get("stages", []):
            console.print(f"{escape(st['stage'])}: survivors {', '.join(map(escape, st['survivors']))}")
