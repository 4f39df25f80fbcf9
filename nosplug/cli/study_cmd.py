"""``nosplug study``: create, run (many workers), status, best, export, eliminate, list."""

from __future__ import annotations

import contextlib
import functools
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
from rich.text import Text

from nosplug.cli.console import console, emit_json, err_console
from nosplug.cli.options import ARTIFACTS_HELP

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
    if not exist_ok:  # --exist-ok is how scripts (the README's chained command) create then run
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
) -> None:
    """Work on study NAME until its plan is done; resumes wherever the storage says it stands.

    Start as many of these as you like, on any machines that reach the storage: they share the
    work through Optuna's queue, and the work of a worker that dies is handed out again.
    """
    from nosplug.study.runner import load
    from nosplug.study.storage import storage_url

    url = storage_url(storage)
    s = load(name, url)  # fail early, with one line, on a missing study or storage
    per_worker = _device_list(devices, workers, device)
    try:
        _run(s, name, url, len(per_worker), max_trials, threads, quiet, jsonl, artifacts, per_worker)
        if not max_trials:  # a bounded run stops there; the verdict comes when the search is done
            _verdict(name, url, len(per_worker) > 1, threads, quiet, jsonl, per_worker[0])
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: study {escape(name)} is saved; resume it with: "
            f"[bold]{escape(resume_command(name, storage))}[/bold]"
        )
        raise click.exceptions.Exit(130) from None


def _verdict(name: str, url: str, children: bool, threads, quiet: bool, jsonl: bool, device) -> None:
    """End a finished search with its verdict (config ``[validate]``): the best genomes against
    tuned baselines, benchmarked fairly (docs/benchmark.md). Worker processes of ``--workers K``
    each join it; the parent then prints the table they computed."""
    from nosplug.cli.benchmark_cmd import render
    from nosplug.study.runner import context, load, plan_state, run_verdict, verdict

    s = load(name, url)
    if context(s).kind != "particle-ga" or not plan_state(s).done:
        return
    if children:
        result = verdict(name, url)
    elif jsonl:
        result = run_verdict(name, url, device=device, threads=threads, on_event=emit_json)
    elif quiet:
        result = run_verdict(name, url, device=device, threads=threads)
    else:
        console.print(
            f"verdict: benchmarking the best genomes of {escape(name)} against tuned baselines "
            "(equal tuning budgets, fresh seeds, test split)"
        )

        def progress(e: dict[str, Any]) -> None:
            if e.get("event") == "finished":
                from nosplug.cli.benchmark_cmd import _progress

                _progress(e)

        result = run_verdict(name, url, device=device, threads=threads, on_event=progress)
    if result is not None and not (quiet or jsonl):
        from nosplug.benchmark.baseline_report import report_lines

        console.print(render(result))
        for line in report_lines(result):  # tuning space per contender; against the best baseline
            console.print(escape(line))


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


def _resume_note(s) -> None:
    """On a resume, say where the study stands and how much interrupted work is redone."""
    from nosplug.study import trials as T

    trials = s.get_trials(deepcopy=False)
    live = T.live_trials(trials)
    done = sum(t.state in T.FINISHED for t in live.values())
    if not trials:
        return
    redo = {t.user_attrs[T.KEY] for t in trials if t.user_attrs.get(T.ABANDONED)} - {
        k for k, t in live.items() if t.state in T.FINISHED
    }
    note = f"resuming study {escape(s.study_name)}: {done} evaluations already finished"
    if redo:
        note += f"; {len(redo)} abandoned by interrupted or dead workers will run again"
    console.print(note)


def resume_command(name: str, storage: str | None) -> str:
    """The command that continues study ``name`` (with --storage only if the user gave one)."""
    from nosplug.study.storage import shown_url

    return f"nosplug study run {name}" + (f" --storage {shown_url(storage)}" if storage else "")


def _run(s, name, url, workers, max_trials, threads, quiet, jsonl, artifacts=None, devices=None) -> None:
    from nosplug.study.artifacts import line_if_done
    from nosplug.study.runner import Worker

    devices = devices or [None] * workers
    device = devices[0]
    if workers > 1:
        _run_processes(name, url, workers, max_trials, threads, quiet, jsonl, artifacts, devices)
        if not (quiet or jsonl) and (line := line_if_done(s, url, artifacts)):  # the workers attached them
            console.print(escape(line), soft_wrap=True)
        return
    worker = functools.partial(
        Worker, name, url, max_trials=max_trials, threads=threads, artifacts=artifacts, device=device
    )
    if jsonl:
        summary = worker(on_event=emit_json).run()
        emit_json({"event": "summary", **summary.__dict__})
        return
    if quiet:
        worker().run()
        return
    _resume_note(s)
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
    _summary(s, summary.done, summary.evaluated, summary.reused, summary.seconds)
    if summary.artifacts:
        console.print(escape(summary.artifacts), soft_wrap=True)


def _run_processes(
    name: str,
    url: str,
    k: int,
    max_trials: int | None,
    threads: int | None,
    quiet: bool,
    jsonl: bool,
    artifacts: str | None = None,
    devices: list[str | None] | None = None,
) -> None:
    """K worker processes on one study (worker i on ``devices[i]`` when given). Each child's
    error line (a crash that used up its retries, a failed preflight) is collected and shown
    once, and the command fails."""
    import tempfile

    from nosplug.study.runner import load

    cmd = [sys.executable, "-m", "nosplug", "study", "run", name, "--storage", url, "--workers", "1"]
    cmd += ["--jsonl"] if jsonl else ["--quiet"]
    if max_trials:
        cmd += ["--max-trials", str(max_trials)]
    if threads:
        cmd += ["--threads", str(threads)]
    if artifacts:
        cmd += ["--artifacts", artifacts]
    env = {**os.environ, "NOSPLUG_WORKERS": str(k)}
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(k)]
        devices = devices or [None] * k
        procs = [
            subprocess.Popen(
                cmd + (["--device", dev] if dev else []),
                env={**env, "NOSPLUG_WORKER_INDEX": str(i)},  # each pins its own cores
                stdout=None if jsonl else subprocess.DEVNULL,
                stderr=log,
            )
            for i, (log, dev) in enumerate(zip(logs, devices))
        ]
        codes = _wait_for(procs, load(name, url), quiet or jsonl)
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read())
    errors: list[str] = []
    for text, code in zip(outputs, codes):
        if code != 0:
            line = next((ln for ln in reversed(text.splitlines()) if ln.startswith("error:")), None)
            line = (line or f"a worker exited with status {code}: {_last_line(text)}").removeprefix("error: ")
            if line not in errors:
                errors.append(line)
        elif text.strip():
            sys.stderr.write(text)  # warnings of a worker that succeeded
    if errors:
        from nosplug.errors import EvaluationCrashError

        failed = sum(c != 0 for c in codes)
        raise EvaluationCrashError(f"{failed} of {k} workers stopped: " + " | ".join(errors))


def _wait_for(procs: list[subprocess.Popen], s, quiet: bool) -> list[int]:
    """Wait for the worker processes (showing the study's progress unless ``quiet``)."""
    start = time.perf_counter()
    try:
        if quiet:
            return [p.wait() for p in procs]
        monitor = Monitor(s)
        with Live(monitor.render(), console=console, refresh_per_second=1) as live:
            while any(p.poll() is None for p in procs):
                time.sleep(2)
                live.update(monitor.render())
            live.update(monitor.render())
        _summary(s, None, None, None, time.perf_counter() - start)
        return [p.returncode for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.wait()  # they got the same Ctrl-C and mark their trials abandoned
        raise


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


class Monitor:
    """Progress bars, the last few outcomes (why candidates were rejected) and the best so far."""

    RECENT = 5

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
        self.recent: list[str] = []

    def _expected(self) -> int:
        if self.ctx.config is not None:
            return self.ctx.config.ga.expected_evaluations
        raw = self.ctx.raw
        return sum(min(len(raw["candidates"]), s["keep"]) for s in raw["stages"]) * raw["repeats"]

    def note(self, e: dict[str, Any]) -> None:
        """Keep a line for each outcome, so a screen of rejections says why."""
        line = outcome_line(e)
        if line:
            self.recent = [*self.recent, line][-self.RECENT :]

    def render(self):
        from rich.console import Group

        from nosplug.study.runner import best, plan_state
        from nosplug.study.trials import FINISHED, live_trials

        trials = self.study.get_trials(deepcopy=False)
        live = live_trials(trials).values()
        finished = sum(t.state in FINISHED for t in live)
        pending = sum(t.state not in FINISHED for t in live)
        plan = plan_state(self.study)
        # never complete-looking while work remains: the plan grows as rejected slots are retried
        total = max(self._expected(), finished + pending + (0 if plan.done else 1))
        self.progress.update(self.overall, completed=finished, total=total)
        state = plan.progress
        if "init_total" in state:
            self._bar("initial population", state["init_done"], state["init_total"])
        if self.ctx.config is not None:
            steps = self.ctx.config.ga.timesteps
            for p, info in sorted(state.get("positions", {}).items()):
                if info["timestep"] > 0 and not info.get("done"):
                    self._bar(f"particle {p}", info["timestep"] - 1, steps)
                elif info.get("done") and f"particle {p}" in self.tasks:
                    self._bar(f"particle {p}", steps, steps)
        parts: list[Any] = [self.progress]
        if self.recent:
            parts.append(Text("last outcomes:", style="bold"))
            parts += [Text("  " + line, overflow="ellipsis", no_wrap=True) for line in self.recent]
        parts.append(best_table(best(self.study, 5), title="best so far"))
        return Group(*parts)

    def _bar(self, label: str, done: int, total: int) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=total)
        self.progress.update(self.tasks[label], completed=done, total=total)


def outcome_line(e: dict[str, Any]) -> str | None:
    """One line for a worker event that ends an evaluation (None for other events)."""
    kind = e.get("event")
    if kind == "finished":
        status = e.get("status")
        if status == "complete":
            return f"{e['key']}: fitness {e['fitness']:.4f}"
        return f"{e['key']}: {status} at {e.get('reason') or '?'}"
    if kind == "crashed":
        return f"{e['key']}: crashed: {e['error']}"
    if kind == "retry":
        return f"{e['key']}: retrying (attempt {e['attempt']})"
    if kind == "reclaimed":
        return f"{e['key']}: handed out again ({e['reason']})"
    if kind == "reused":
        return f"{e['key']}: same genome as trial {e['from']}, result reused"
    return None


def best_table(trials, title: str = "best genomes", latex: bool = False, width: int | None = None):
    """The ranked genomes, two lines each: the figures, then the formula below them, so formulas
    stay readable in an 80-column terminal instead of folding into a narrow column. Keys and
    hashes are never cut: when the figures would not fit ``width`` (the console's), the hash goes
    on a line of its own."""
    from rich.console import Group
    from rich.padding import Padding

    from nosplug.study import trials as T
    from nosplug.study.runner import RANKING_RULE

    head = Table.grid(padding=(0, 2))
    for col in ("#", "fitness", "lr", "key", "hash"):
        head.add_column(col, no_wrap=True)
    rows: list[Any] = [Text(title, style="bold"), Text(f"({RANKING_RULE})", style="dim")]
    if not trials:
        rows.append(Text("  nothing has passed the gates yet", style="dim"))
    for i, t in enumerate(trials, 1):
        a = t.user_attrs
        genome = T.evaluated_genome(a)  # with the integrity check's sign flip
        formula = genome.latex() if latex else genome.formula()
        lr = a.get("chosen_lr")
        seeds = a.get("fitness_seeds", 1)
        cells = [
            f"{i:>2}",
            f"fitness {a.get(T.FITNESS, float('nan')):.4f}" + (f" ({seeds} seeds)" if seeds > 1 else ""),
            "lr -" if lr is None else f"lr {lr:g}",
            a.get(T.KEY, ""),
            genome.canonical_hash(),
        ]
        own_line = sum(map(len, cells)) + 2 * (len(cells) - 1) > (width or console.width)
        line = Table.grid(padding=(0, 2))
        for _ in cells[: 4 if own_line else 5]:
            line.add_column(no_wrap=True)
        line.add_row(*map(escape, cells[: 4 if own_line else 5]))
        rows.append(line)
        if own_line:
            rows.append(Text(f"    hash {cells[4]}"))
        rows.append(Padding(Text(formula, overflow="fold"), (0, 0, 0, 4)))
    return Group(*rows)


def _summary(s, done: bool | None, evaluated: int | None, reused: int | None, seconds: float) -> None:
    from nosplug.study.runner import best, plan_state

    plan = plan_state(s)
    state = "finished" if plan.done else "not finished (run it again to continue)"
    extra = f", {evaluated} evaluated here, {reused} reused" if evaluated is not None else ""
    console.print(f"study [bold]{escape(s.study_name)}[/bold]: {state}{extra}, {seconds:.0f} s")
    if plan.progress.get("fewer_particles"):
        console.print(f"[yellow]note:[/yellow] {escape(plan.progress['fewer_particles'])}")
    console.print(best_table(best(s, 5)))


@study.command()
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(name: str, storage: str | None, as_json: bool) -> None:
    """Where study NAME stands: trial states, phase, particles, best fitness."""
    from collections import Counter

    from nosplug.ga.plan import CRASHED
    from nosplug.study import trials as T
    from nosplug.study.runner import best, load, plan_state
    from nosplug.study.trials import ABANDONED, REUSED_FROM

    s = load(name, storage)
    trials = s.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials if not t.user_attrs.get(ABANDONED))
    outcomes = Counter(
        t.user_attrs.get(T.STATUS, t.state.name.lower())
        for t in trials
        if t.state in T.FINISHED and not t.user_attrs.get(ABANDONED) and not t.user_attrs.get(REUSED_FROM)
    )
    crashes = [
        {"trial": t.number, "key": t.user_attrs.get(T.KEY), "error": t.user_attrs.get(T.ERROR)}
        for t in trials
        if t.user_attrs.get(T.STATUS) == CRASHED
    ]
    plan = plan_state(s)
    top = best(s, 1)
    info = {
        "study": name,
        "done": plan.done,
        "phase": plan.progress.get("phase"),
        "states": dict(states),
        "outcomes": dict(outcomes),
        "reused": sum(1 for t in trials if t.user_attrs.get(REUSED_FROM) is not None),
        "abandoned": sum(1 for t in trials if t.user_attrs.get(ABANDONED)),
        "crashes": crashes[-5:],
        "particles_done": plan.progress.get("particles_done"),
        "particles": plan.progress.get("particles"),
        "note": plan.progress.get("fewer_particles"),
        "best_fitness": top[0].user_attrs.get("fitness") if top else None,
    }
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
    from nosplug.study import trials as T
    from nosplug.study.runner import best, load, verdict

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
    from nosplug.study.runner import load

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
    from nosplug.study.elimination import create_elimination, evolution_stage, parse_stages
    from nosplug.study.runner import context, load, study_names
    from nosplug.study.storage import open_storage, storage_url

    url = storage_url(storage)
    el_name = f"{name}.elimination"
    if el_name not in study_names(open_storage(url, create=False)):
        parsed = parse_stages(stages, evolution_stage(name, url), steps) if stages else None
        if lr_mode:
            parsed = [
                {**s, "lr": lr_mode}
                for s in (parsed or context(load(name, url)).raw["elimination"]["stages"])
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
        from nosplug.study.runner import plan_state

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
    from nosplug.study.elimination import create_round2, round2_name
    from nosplug.study.runner import study_names
    from nosplug.study.storage import open_storage, storage_url

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
