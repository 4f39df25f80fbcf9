"""The report of a benchmark: tables with intervals, verdicts, performance profiles, learning curves.

Everything comes from :func:`nosplug.benchmark.results.collect` (the stored trials), so the report
shows the numbers ``nosplug benchmark`` printed. ``report.md`` links the PNGs, ``report.html``
embeds them.
"""

from __future__ import annotations

import base64
import html as h
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nosplug.benchmark.results import BenchmarkResult, collect

DPI = 110


def _n(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "never"
    return f"{v:.{digits}g}"


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def profile_figure(res: BenchmarkResult, path: Path) -> Path:
    """AlgoPerf-style performance profiles: fraction of tasks within tau x the fastest time-to-target."""
    fig = Figure(figsize=(7.5, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    assert res.profiles is not None
    for i, (c, rho) in enumerate(res.profiles.rho.items()):
        ax.step(res.profiles.tau, rho, where="post", color=f"C{i % 10}", linewidth=2,
                label=f"{c} (area {res.profiles.area[c]:.2f})")  # fmt: skip
    ax.set_xlim(1, res.profiles.tau_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau: time-to-target within tau x the fastest contender's")
    ax.set_ylabel("fraction of tasks")
    ax.set_title("Performance profiles (training seconds to the target, median over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def curves_figure(res: BenchmarkResult, task: str, path: Path) -> Path:
    """Mean validation and test curves over the evaluation seeds, per contender, against steps."""
    entry = next(t for t in res.tasks if t["label"] == task)
    fig = Figure(figsize=(10, 3.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for i, c in enumerate(res.contenders):
        runs = [r for r in res.runs if r.contender == c and r.task == task and r.steps]
        if not runs:
            continue
        n = min(len(r.steps) for r in runs)
        steps = runs[0].steps[:n]
        for ax, field in zip(axes, ("val", "test")):
            mean = np.mean([getattr(r, field)[:n] for r in runs], axis=0)
            ax.plot(steps, mean, color=f"C{i % 10}", linewidth=1.8, label=c)
    target = res.targets.get(task)
    for ax, split in zip(axes, ("validation", "test")):
        if target is not None and math.isfinite(target) and split == "validation":
            ax.axhline(target, color="0.4", linestyle=":", linewidth=1.2, label="target")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{split} {entry['metric']}")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    better = "higher" if entry["direction"] == "maximize" else "lower"
    fig.suptitle(f"{task}: mean over each contender's evaluation seeds ({better} is better)")
    return _save(fig, path)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def build(
    name: str, storage: str | None, out_dir: Path, formats: tuple[str, ...] = ("md", "html")
) -> list[Path]:
    """Write the benchmark ``name``'s report into ``out_dir``; returns the files written."""
    from nosplug.study.studies import load

    res = collect(load(name, storage))
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    if res.profiles is not None:
        figures["profiles"] = profile_figure(res, out_dir / "profiles.png")
    for entry in res.tasks:
        task = entry["label"]
        if any(r.task == task for r in res.runs):
            figures[f"curves:{task}"] = curves_figure(res, task, out_dir / f"curves-{_safe(task)}.png")
    written = list(figures.values())
    if "md" in formats:
        p = out_dir / "report.md"
        p.write_text(markdown(res, figures))
        written.append(p)
    if "html" in formats:
        p = out_dir / "report.html"
        p.write_text(html(res, figures))
        written.append(p)
    return written


def _task_rows(res: BenchmarkResult, task: str) -> list[list[str]]:
    rows = []
    for c in res.contenders:
        s = res.summaries.get((c, task))
        if s is None:
            continue
        tuned = ", ".join(f"{k} {v:.3g}" for k, v in s.tuned.items()) or "-"
        rates = [st["lr"] for st in s.studies if "lr" in st]
        if len(s.studies) > 1 and rates:
            tuned = f"lr {min(rates):.2g}..{max(rates):.2g} over {len(s.studies)} studies"
        rows.append([
            c + (" (reference)" if c == res.reference else ""), str(s.final_test.n), tuned,
            f"{_n(s.final_test.mean)} ± {_n(s.final_test.std, 2)}", _n(s.best_test.mean),
            f"{_n(s.steps_to_target)} ({s.reached}/{s.final_test.n})", _n(s.seconds_to_target, 3),
            _n(s.train_seconds, 3),
        ])  # fmt: skip
    return rows


HEAD = [
    "contender",
    "seeds",
    "tuned",
    "final test (mean ± std)",
    "best test",
    "steps to target",
    "s to target",
    "s / run",
]


def _intro(res: BenchmarkResult) -> list[str]:
    return [
        f"Benchmark `{res.name}`: {res.budget_line()}.",
        f"Design: {res.design.summary()}." + (f" **{res.design.note()}**." if res.design.note() else ""),
        "Verdicts are computed from the numbers beside them (docs/benchmark.md): `better` needs a "
        "Holm-corrected (sequential) Wilcoxon p < 0.05 over the paired tuning studies, P(improvement) "
        "above 0.5, and no task significantly worse.",
    ]


def markdown(res: BenchmarkResult, figures: dict[str, Path]) -> str:
    out = [f"# Benchmark {res.name}", "", *_intro(res), ""]
    if not res.done:
        out += ["**Not finished**: rerun `nosplug benchmark` with the same name to continue.", ""]
    for entry in res.tasks:
        task = entry["label"]
        better = "higher" if entry["direction"] == "maximize" else "lower"
        out += [f"## {task}", "", f"Test {entry['metric']} ({better} is better) over each contender's seeds; "
                f"target {_n(res.targets.get(task))} (validation; reached by the tuned reference on "
                "about 3 of 4 seeds unless the config sets it).", ""]  # fmt: skip
        out += ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _task_rows(res, task)]
        out.append("")
        if f"curves:{task}" in figures:
            out += [f"![learning curves]({figures[f'curves:{task}'].name})", ""]
    out += [
        "## Verdicts",
        "",
        "| contender | verdict | seeds | stopped | evidence |",
        "|---|---|---|---|---|",
    ]
    for c, v in res.verdicts.items():
        out.append(
            f"| {c} | {v.outcome} | {sum(v.comparison.seeds_per_task)} | {res.stopped(c)} | {v.sentence} |"
        )
        out += [f"| {c} on {t} | {tv.outcome} | | | {tv.sentence} |" for t, tv in v.per_task.items()]
    if not res.verdicts:
        out.append("| - | pending | | | statistics need every contender's first batch of tuning studies |")
    out.append("")
    if "profiles" in figures:
        out += ["## Performance profiles", "", f"![performance profiles]({figures['profiles'].name})", ""]
    return "\n".join(out)


def _embed(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{h.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{h.escape(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{h.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def html(res: BenchmarkResult, figures: dict[str, Path]) -> str:
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Benchmark {h.escape(res.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>Benchmark {h.escape(res.name)}</h1>", *[f"<p>{h.escape(p)}</p>" for p in _intro(res)],
    ]  # fmt: skip
    for entry in res.tasks:
        task = entry["label"]
        parts += [f"<h2>{h.escape(task)}</h2>", _table(HEAD, _task_rows(res, task))]
        if f"curves:{task}" in figures:
            parts.append(_embed(figures[f"curves:{task}"], f"learning curves on {task}"))
    verdict_rows = []
    for c, v in res.verdicts.items():
        verdict_rows.append([c, v.outcome, sum(v.comparison.seeds_per_task), res.stopped(c), v.sentence])
        verdict_rows += [[f"{c} on {t}", tv.outcome, "", "", tv.sentence] for t, tv in v.per_task.items()]
    head = ["contender", "verdict", "seeds", "stopped", "evidence"]
    parts += ["<h2>Verdicts</h2>", _table(head, verdict_rows)]
    if "profiles" in figures:
        parts += ["<h2>Performance profiles</h2>", _embed(figures["profiles"], "performance profiles")]
    parts.append("</body></html>")
    return "\n".join(parts)
