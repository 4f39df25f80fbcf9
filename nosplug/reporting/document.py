"""Render a :class:`~nosplug.reporting.build.Report` as Markdown (linking the PNGs) or HTML.

The HTML file is self-contained: figures are embedded as base64 data URIs and the style sheet
is inline, so it can be mailed or archived without the folder. Formulas are shown as plain text
(the report must open offline, so no MathJax); their LaTeX source sits below each table.
"""

from __future__ import annotations

import base64
import html as h
from typing import TYPE_CHECKING

from nosplug.search.ranking import RANKING_RULE

if TYPE_CHECKING:
    from nosplug.reporting.compare import Result
    from nosplug.reporting.report import Report

FIGURE_TEXT = {
    "fitness": (
        "Fitness over timesteps",
        "One line per particle through the position it held after each timestep (init = its start, "
        "re-evaluated with the evolution preset); faint dots are the other children it tried, spread "
        "around their timestep. Grey dots left of init are the random initial population (init preset). "
        "Evaluations without a fitness (pruned by a gate, failed the integrity check) are crosses on the "
        "bottom band, counted per timestep; a hollow marker is a position whose own evaluation was "
        "rejected.",
    ),
    "schedules": (
        "Learned learning-rate schedules",
        "For each best genome with decay functions: the base schedule η_t/η of the evolution preset "
        "(warmup, hold, cosine) and the learned schedule η_t·m(t)/η. m(t) is the effective "
        "learning-rate multiplier of the genome's decays: mean |U_t with decays| / mean |U_t with all "
        "decays removed|, on the same synthetic gradient stream and the same state. For decays on a "
        "distributive path this is exactly the product of their factors; for decays inside non-linear "
        "ops it is the effective scale they give the update.",
    ),
    "comparison": (
        "Comparison with baselines",
        "Best genomes and zoo baselines under the study's own evolution-stage evaluation (preset, data, "
        "and the seed a study trial would use). Fitness is the best validation accuracy of the final "
        "run at the learning rate the sweep chose.",
    ),
}


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "–" if x is None else format(x, spec)


def _lr(x: float | None) -> str:
    return "–" if x is None else f"{x:g}"


def _status(r: Result) -> str:
    """The status, with the reason when there is no fitness (why a baseline was rejected matters)."""
    return f"{r.status} ({r.reason})" if r.fitness is None and r.reason else r.status


def _source(s: str) -> str:
    return {"study": "stored in the study", "cache": "report cache", "evaluated": "evaluated now"}.get(s, s)


# ----------------------------------------------------------------------------- Markdown
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: Report) -> str:
    out = [f"# Report: study `{report.study}`", "", f"Generated {report.generated} by `nosplug report`.", ""]
    out += ["| | |", "|---|---|"]
    out += [f"| {_cell(k)} | {_cell(v)} |" for k, v in report.summary]
    out.append("")
    for note in report.notes:
        out += [f"> {note}", ""]

    title, text = FIGURE_TEXT["fitness"]
    out += [f"## {title}", "", f"![{title}]({report.figures['fitness'].name})", "", text, ""]

    stage = " (evolution stage)" if report.best_stage == "evolution" else " (initial population stage)"
    out += [f"## Best {len(report.best)} genomes{stage}", "", f"Genomes are {RANKING_RULE}.", ""]
    out += [
        "| rank | fitness | chosen lr | momentum | key | hash | formula |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in report.best:
        formula = b.formula + (" (sign flipped by the integrity check)" if b.flip else "")
        out.append(
            f"| {b.rank} | {b.fitness:.4f} | {_lr(b.chosen_lr)} | {b.momentum} | `{b.key}` | `{b.hash}` "
            f"| `{_cell(formula)}` |"
        )
    out += ["", "LaTeX:", ""]
    out += [f"- #{b.rank}: $`{b.latex}`$" for b in report.best]
    out.append("")

    if "schedules" in report.figures:
        title, text = FIGURE_TEXT["schedules"]
        out += [f"## {title}", "", f"![{title}]({report.figures['schedules'].name})", "", text, ""]

    title, text = FIGURE_TEXT["comparison"]
    out += [f"## {title}", "", text, ""]
    out += ["| genome | kind | status | fitness | chosen lr | result |", "|---|---|---|---|---|---|"]
    for r in report.comparison:
        res = r.result
        out.append(
            f"| `{_cell(r.label)}` | {'search' if r.search else 'baseline'} | {_cell(_status(res))} "
            f"| {_fmt(res.fitness)} | {_lr(res.chosen_lr)} | {_source(res.source)} |"
        )
    out += ["", f"![{title}]({report.figures['comparison'].name})", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- HTML
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
table.summary th { width: 11rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; background: #f6f6f6;
       padding: 0 .2em; word-break: break-word; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, p.caption { color: #555; font-size: .9rem; }
.note { background: #fff8e1; border-left: 4px solid #f0c000; padding: .4rem .8rem; }
details { margin: .4rem 0; font-size: .9rem; }
"""


def _img(report: Report, name: str, alt: str) -> str:
    data = base64.b64encode(report.figures[name].read_bytes()).decode("ascii")
    return f'<figure><img alt="{h.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def html(report: Report) -> str:
    e = h.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Report: study {e(report.study)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Report: study <code>{e(report.study)}</code></h1>",
        f"<p>Generated {e(report.generated)} by <code>nosplug report</code>.</p>",
        '<table class="summary">',
        *[f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in report.summary],
        "</table>",
        *[f'<p class="note">{e(n)}</p>' for n in report.notes],
    ]
    title, text = FIGURE_TEXT["fitness"]
    parts += [f"<h2>{e(title)}</h2>", _img(report, "fitness", title), f'<p class="caption">{e(text)}</p>']

    stage = " (evolution stage)" if report.best_stage == "evolution" else " (initial population stage)"
    parts += [
        f"<h2>Best {len(report.best)} genomes{e(stage)}</h2>",
        f"<p>Genomes are {e(RANKING_RULE)}.</p>",
        "<table><tr><th>rank</th><th>fitness</th><th>chosen lr</th><th>momentum</th><th>key</th>"
        "<th>hash</th><th>formula</th></tr>",
    ]
    for b in report.best:
        flip = " <em>(sign flipped by the integrity check)</em>" if b.flip else ""
        parts.append(
            f'<tr><td class="num">{b.rank}</td><td class="num">{b.fitness:.4f}</td>'
            f'<td class="num">{e(_lr(b.chosen_lr))}</td><td>{e(b.momentum)}</td>'
            f"<td><code>{e(b.key)}</code></td><td><code>{e(b.hash)}</code></td>"
            f"<td><code>{e(b.formula)}</code>{flip}</td></tr>"
        )
    parts.append("</table>")
    parts.append("<details><summary>Formulas as LaTeX</summary><ol>")
    parts += [f"<li><code>{e(b.latex)}</code></li>" for b in report.best]
    parts.append("</ol></details>")

    if "schedules" in report.figures:
        title, text = FIGURE_TEXT["schedules"]
        parts += [
            f"<h2>{e(title)}</h2>",
            _img(report, "schedules", title),
            f'<p class="caption">{e(text)}</p>',
        ]

    title, text = FIGURE_TEXT["comparison"]
    parts += [
        f"<h2>{e(title)}</h2>",
        f'<p class="caption">{e(text)}</p>',
        "<table><tr><th>genome</th><th>kind</th><th>status</th><th>fitness</th><th>chosen lr</th>"
        "<th>result</th></tr>",
    ]
    for r in report.comparison:
        res = r.result
        parts.append(
            f"<tr><td><code>{e(r.label)}</code></td><td>{'search' if r.search else 'baseline'}</td>"
            f'<td>{e(_status(res))}</td><td class="num">{e(_fmt(res.fitness))}</td>'
            f'<td class="num">{e(_lr(res.chosen_lr))}</td><td>{e(_source(res.source))}</td></tr>'
        )
    parts += ["</table>", _img(report, "comparison", title), "</body></html>", ""]
    return "\n".join(parts)
