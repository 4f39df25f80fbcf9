"""``nosplug amalgamate``: create, run, evaluate and export optimizer-amalgamation runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from nosplug.cli.console import console, emit_json, fitted, name_column, value_column
from nosplug.cli.options import ARTIFACTS_HELP

STORAGE_HELP = "Optuna storage URL (default: $NOSPLUG_STORAGE, else ./nosplug-studies/journal.log)."
DEVICE_HELP = "Device to train on: auto, cpu, cuda, cuda:N or mps (default: the config's, else auto)."


@click.group()
def amalgamate() -> None:
    """Distil a pool of teacher optimizers into one learned optimizer (see docs/amalgamation.md)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@amalgamate.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--name", help="Run name (default: the config's run.name).")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--checkpoint-dir", help="Where checkpoints go (default ./nosplug-amalgamation/NAME).")
def create(config: str, name: str | None, storage: str | None, checkpoint_dir: str | None) -> None:
    """Create an amalgamation run from a TOML CONFIG; refuses to overwrite one."""
    from nosplug.amalgamation.run import DIR_ATTR, create_run

    study = create_run(config, name=name, storage=storage, checkpoint_dir=checkpoint_dir)
    console.print(f"created amalgamation run [bold]{escape(study.study_name)}[/bold]")
    console.print(f"  checkpoints in {escape(study.user_attrs[DIR_ATTR])}")
    console.print(f"  next: nosplug amalgamate run {escape(study.study_name)}")


@amalgamate.command()
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--artifacts", help=ARTIFACTS_HELP)
@click.option("--max-periods", type=click.IntRange(1), help="Stop after N curriculum periods (resume later).")
@click.option("--threads", type=click.IntRange(1), help="Torch threads (default: all cores).")
@click.option("--device", help=DEVICE_HELP)
@click.option("--quiet", is_flag=True)
@click.option("--jsonl", is_flag=True, help="One JSON object per event.")
def run(
    name: str,
    storage: str | None,
    artifacts: str | None,
    max_periods: int | None,
    threads: int | None,
    device: str | None,
    quiet: bool,
    jsonl: bool,
) -> None:
    """Meta-train run NAME; resumes from its last finished period after an interruption."""
    import torch

    from nosplug.amalgamation.run import run as run_amalgamation

    if threads:
        torch.set_num_threads(threads)
    if device is not None:  # a missing device is one error line before the run is even opened
        from nosplug.tasks.devices import resolve_device

        resolve_device(device)
    if jsonl:
        summary = run_amalgamation(
            name, storage, max_periods=max_periods, on_event=emit_json, artifacts=artifacts, device=device
        )
        emit_json({"event": "summary", **summary})
        return
    if quiet:
        run_amalgamation(name, storage, max_periods=max_periods, artifacts=artifacts, device=device)
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("meta-training", total=None)

        def on_event(e: dict[str, Any]) -> None:
            if e["event"] == "meta_step":
                bar.update(task, description=f"meta-step {e['step']}: loss {e['loss']:.4f}")
            elif e["event"] == "period":
                console.print(escape(describe_event(e)))
            else:
                console.print(f"[dim]{escape(describe_event(e))}[/dim]")

        summary = run_amalgamation(
            name, storage, max_periods=max_periods, on_event=on_event, artifacts=artifacts, device=device
        )
    if summary["done"]:
        console.print(f"finished; student saved as {escape(summary['student'])}.pt/.json")
    else:
        console.print(f"stopped after {summary['periods']} periods; run again to continue")


_PHASES = {"choice": "choice optimizer", "student": "student"}


def _num(value: Any) -> str:
    return "none" if value is None else f"{value:.4f}"


def describe_event(e: dict[str, Any]) -> str:
    """One readable line for an event of ``nosplug.amalgamation.run.run`` (``--jsonl`` prints the
    events themselves)."""
    kind = e.get("event")
    phase = _PHASES.get(e.get("phase", ""), e.get("phase", ""))
    where = f"{phase} stage {e.get('stage')} period {e.get('period')}"
    if kind == "period":
        note = " (blew up; repeats used up, kept)" if e.get("blowup") else ""
        return f"{where}: train {_num(e['train_loss'])}, validation {_num(e['val_loss'])}{note}"
    if kind == "repeat":
        left = f"repeat {e['attempt'] + 1} of at most {e['max_repeats']}"
        if not math.isfinite(e["value"]):
            return f"{where}: {e['compared']} loss is {e['value']} (not finite), redoing it ({left})"
        return (
            f"{where}: {e['compared']} loss {_num(e['value'])} above the limit {_num(e['limit'])} "
            f"(reference {_num(e['ref'])}), redoing it with new batches ({left})"
        )
    if kind == "resumed":
        best = f", best validation so far {_num(e['best'])}" if e.get("best") is not None else ""
        return f"resumed {where} from {e['checkpoint']}{best}"
    if kind == "phase_done":
        return f"{phase} trained"
    if kind == "abandoned":
        return f"trial {e['trial']} was left running by a stopped process; marked failed"
    if kind == "artifacts":
        return e["line"]
    return f"{kind}: " + ", ".join(f"{k} {v}" for k, v in e.items() if k != "event")


@amalgamate.command()
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--runs", type=click.IntRange(1), help="Runs per problem (default: config).")
@click.option("--epochs", type=click.IntRange(1), help="Epochs per run (default: config).")
@click.option("--problems", help="Comma-separated problems (default: config).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Parquet file (default: CHECKPOINT_DIR/evaluation.parquet).",
)
@click.option("--device", help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True)
def evaluate(name, storage, runs, epochs, problems, out, device, as_json) -> None:
    """Evaluate the trained student against its teachers and the per-problem oracle."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nosplug.amalgamation.config import resolve_run_device, teacher_refs
    from nosplug.amalgamation.evaluate import evaluate as run_eval
    from nosplug.amalgamation.evaluate import learned_stepper, steps_per_epoch, summarise, teacher_stepper
    from nosplug.amalgamation.problems import get_problem
    from nosplug.amalgamation.run import CONFIG_ATTR, DIR_ATTR, load_run
    from nosplug.amalgamation.student import load
    from nosplug.amalgamation.teachers import resolve_teacher
    from nosplug.errors import UserError

    study = load_run(name, storage)
    raw = study.user_attrs[CONFIG_ATTR]
    dev = resolve_run_device(raw, device)  # a missing device: one error line before any training
    ckdir = Path(study.user_attrs[DIR_ATTR])
    if not (ckdir / "student.json").exists():
        raise UserError(f"run {name!r} has no trained student yet; run `nosplug amalgamate run {name}` first")
    ev = raw["evaluation"]
    refs = list(ev["teachers"]) or teacher_refs(raw["teachers"])
    meta = raw["meta"]
    warmup = int(meta.get("warmup_steps", 100))  # the warm-up the student was trained after
    student = learned_stepper(load(ckdir / "student"), warmup, float(meta.get("warmup_lr", 0.05)))
    plist = problems.split(",") if problems else ev["problems"]
    n_runs, n_epochs = runs or ev["runs"], epochs or ev["epochs"]

    def show(r) -> None:
        if as_json:
            keys = ("optimizer", "problem", "run", "best_log_val", "stability")
            emit_json({k: getattr(r, k) for k in keys})

    results = []
    for pname in plist:
        # genome teachers with decay functions schedule them over this problem's whole run
        horizon = n_epochs * steps_per_epoch(get_problem(pname))
        optimizers = {"student": student}
        for ref in refs:
            optimizers[ref] = teacher_stepper(resolve_teacher(ref, total_steps=horizon, storage=storage))
        results += run_eval(optimizers, [pname], n_runs, n_epochs, on_result=show, device=dev)
    rows = summarise(results, "student", refs)
    target = Path(out) if out else ckdir / "evaluation.parquet"
    table_rows = [
        {"run_name": name, "optimizer": r.optimizer, "problem": r.problem, "run": r.run,
         "best_log_val": r.best_log_val, "last_log_val": r.last_log_val, "stability": r.stability,
         "seconds": r.seconds, "val_losses": r.val_losses}
        for r in results
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(table_rows), target)
    if as_json:
        for row in rows:
            emit_json({"summary": True, **row})
        return
    console.print(evaluation_table(name, rows))
    console.print(f"wrote {len(table_rows)} runs to {escape(str(target))}")


@amalgamate.command()
@click.argument("name")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Path for OUT.pt and OUT.json.")
@click.option("--storage", help=STORAGE_HELP)
def export(name: str, out: str, storage: str | None) -> None:
    """Copy the trained student to OUT.pt + OUT.json (load it with nosplug.amalgamation.load)."""
    from nosplug.amalgamation.run import DIR_ATTR, load_run
    from nosplug.amalgamation.student import load, save
    from nosplug.errors import UserError

    study = load_run(name, storage)
    src = Path(study.user_attrs[DIR_ATTR]) / "student"
    if not src.with_suffix(".json").exists():
        raise UserError(f"run {name!r} has no trained student yet")
    path = save(load(src), out, extra={"run": name})
    console.print(f"wrote {escape(str(path))}.pt and .json")


@amalgamate.command()
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
def status(name: str, storage: str | None) -> None:
    """Periods done per phase and stage, best validation loss, whether a student exists."""
    from nosplug.amalgamation.run import DIR_ATTR, load_run

    study = load_run(name, storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE" and not t.user_attrs.get("repeated")]
    t = Table(title=f"amalgamation run {name}")
    for col in ("phase", "stage", "period", "train loss", "validation loss"):
        t.add_column(col)
    for tr in done:
        a = tr.user_attrs
        t.add_row(
            a["phase"], str(a["stage"]), str(a["period"]), f"{a['train_loss']:.4f}", f"{a['val_loss']:.4f}"
        )
    console.print(t)
    student = Path(study.user_attrs[DIR_ATTR]) / "student.json"
    console.print(f"student: {escape(str(student)) if student.exists() else 'not trained yet'}")


@amalgamate.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--storage", help=STORAGE_HELP)
@click.option(
    "--checkpoint-dir", help="Where replicate checkpoints go (default ./nosplug-amalgamation/NAME)."
)
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Parquet file of every evaluation (default NAME.parquet)."
)
@click.option("--threads", type=click.IntRange(1), help="Torch threads (default: all cores).")
@click.option(
    "--device", help="Device to train on: auto, cpu, cuda, cuda:N or mps (default: protocol.device)."
)
@click.option("--jsonl", is_flag=True, help="One JSON object per event, then the summary rows and claims.")
def protocol(
    config: str,
    storage: str | None,
    checkpoint_dir: str | None,
    out: str | None,
    threads: int | None,
    device: str | None,
    jsonl: bool,
) -> None:
    """Run (or resume) the paper's evaluation protocol of CONFIG: every method meta-trained in
    replicates, evaluated with its teachers and the oracle; prints means with confidence intervals,
    variance components and the paper's claims, and writes the Parquet file."""
    import torch

    from nosplug.amalgamation import protocol as proto
    from nosplug.amalgamation import report

    if threads:
        torch.set_num_threads(threads)
    study = proto.create(config, storage, checkpoint_dir, device=device)

    def on_event(e: dict[str, Any]) -> None:
        if jsonl:
            emit_json(e)
        elif e["event"] == "evaluated":
            console.print(
                f"[dim]{escape(e['method'])} r{e['replicate']} {e['problem']} run {e['run']}: best log val "
                f"{e['best_log_val']:+.4f} ({e['seconds']:.1f} s)[/dim]"
            )
        elif e["event"] in ("train", "trained", "period", "repeat", "resumed", "abandoned"):
            line = (
                describe_event(e)
                if e["event"] not in ("train", "trained")
                else (
                    f"meta-training {e['method']} replicate {e['replicate']}"
                    + (f": done in {e['seconds']:.0f} s" if e["event"] == "trained" else "")
                )
            )
            console.print(f"[dim]{escape(line)}[/dim]")

    summary = proto.run_protocol(study, storage, on_event=on_event, device=device)
    rows = proto.rows(study)
    target = proto.export(study, out or f"{study.study_name}.parquet")
    if jsonl:
        for row in report.summary(rows):
            emit_json({"event": "row", **row})
        for c in report.claims(rows):
            emit_json({"event": "claim", "name": c.name, "paper": c.paper, "verdict": c.verdict,
                       "evidence": c.evidence})  # fmt: skip
        emit_json({"event": "summary", **summary, "parquet": str(target)})
        return
    console.print(protocol_table(study.study_name, report.summary(rows)))
    for c in report.claims(rows):
        console.print(f"[bold]{escape(c.paper)}[/bold]: {c.verdict}. {escape(c.evidence)}")
    console.print(f"wrote {len(rows)} evaluations to {escape(str(target))}")


def evaluation_table(name: str, rows: list[dict[str, Any]]):
    """``amalgamate evaluate``'s table: one row per problem and optimizer; optimizer names are
    never split (:func:`~nosplug.cli.console.fitted`)."""

    def build(labels: list[str]) -> Table:
        t = Table(
            title=f"amalgamation run {name}: best log validation loss (mean ± std), lower is better",
            title_justify="left",
        )
        t.add_column("problem", no_wrap=True)
        name_column(t, "optimizer")
        for col in ("best log val", "stability", "vs oracle"):
            value_column(t, col)
        for label, row in zip(labels, rows):
            vs = row["vs_oracle"]
            t.add_row(
                row["problem"],
                escape(label) + (" (oracle)" if row["is_oracle"] else ""),
                f"{row['best_log_val_mean']:.4f} ± {row['best_log_val_std']:.4f}",
                f"{row['stability_mean']:.4f}",
                "" if math.isnan(vs) else f"{vs:+.4f}",
            )
        return t

    return fitted(build, [row["optimizer"] for row in rows])


def protocol_table(name: str, summary: list[dict[str, Any]]):
    """``amalgamate protocol``'s table: one row per problem and method (students first, then by
    mean); method names are never split (:func:`~nosplug.cli.console.fitted`)."""
    from nosplug.amalgamation import report

    ordered = sorted(summary, key=lambda s: (s["problem"], s["kind"] != "student", s["mean"]))

    def build(labels: list[str]) -> Table:
        t = Table(
            title=f"protocol {name}: best log validation loss, mean [95 % CI], lower is better",
            title_justify="left",
        )
        t.add_column("problem", no_wrap=True)
        name_column(t, "method")
        for col in ("reps × runs", "mean [95 % CI]", "σ_meta", "σ_eval", "stability"):
            value_column(t, col)
        for label, s in zip(labels, ordered):
            t.add_row(
                s["problem"],
                escape(label) + (" (oracle)" if s["oracle"] else ""),
                f"{s['replicates']} × {s['runs'] // max(1, s['replicates'])}",
                f"{s['mean']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}]",
                *(report.number(s[k]) for k in ("sd_meta", "sd_eval", "stability")),
            )
        return t

    return fitted(build, [s["method"] for s in ordered])
