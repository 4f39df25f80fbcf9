"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

No ``pyplot``: a :class:`~matplotlib.figure.Figure` saved to PNG renders with Agg without
touching matplotlib's global backend or figure registry, so building a report inside a
notebook or a GUI program neither switches its backend nor leaks figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nosplug.reporting.data import Evaluation, Trajectory

DPI = 120
#: Up to this many particles get a legend entry and a categorical colour each.
LEGEND_PARTICLES = 10


@dataclass(frozen=True)
class ScheduleCurve:
    """One panel of the schedule figure: base schedule and learned schedule over the run."""

    title: str
    steps: Sequence[int]
    base: Sequence[float]  # eta_t / eta
    learned: Sequence[float]  # eta_t * m(t) / eta
    total_steps: int
    final_steps: int  # where the final run stops (may be before total_steps)


@dataclass(frozen=True)
class Bar:
    """One row of the comparison figure."""

    label: str
    fitness: float | None
    note: str  # text after the bar: the chosen rate, or why there is no fitness
    search: bool  # found by the search (else a zoo baseline)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def _particle_colours(n: int) -> list:
    from matplotlib import colormaps

    if n <= LEGEND_PARTICLES:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(1, n - 1)) for i in range(n)]


def _evaluation_dots(
    ax,
    xs: Sequence[float],
    evals: Sequence[Evaluation],
    band: float,
    *,
    size: float,
    colour: str | tuple[float, ...],
    cross_alpha: float,
) -> None:
    """Faint dots at the fitness of scored evaluations, crosses on the band for rejected ones."""
    ax.scatter(
        [x for x, e in zip(xs, evals) if e.scored],
        [e.fitness for e in evals if e.scored],
        s=size,
        color=colour,
        alpha=0.45,
        linewidths=0,
        zorder=2,
    )
    ax.scatter(
        [x for x, e in zip(xs, evals) if e.rejected],
        [band] * sum(e.rejected for e in evals),
        s=size,
        marker="x",
        color=colour,
        alpha=cross_alpha,
        zorder=2,
    )


def fitness_figure(
    trajectories: Sequence[Trajectory],
    init_population: Sequence[Evaluation],
    path: Path,
    title: str,
) -> Path:
    """Figure 1: fitness over timesteps, one line per particle through its chosen positions.

    Children are faint dots spread around their timestep; the random initial population sits
    just left of timestep 0 ("init"). Evaluations without a fitness (pruned by a gate, failed the
    integrity check) are crosses on a separate band below the axis, labelled with their count,
    so a particle whose position was rejected keeps its line.
    """
    fig = Figure(figsize=(9.5, 5.2), dpi=DPI)
    ax = fig.add_subplot()
    scored = [e.fitness for t in trajectories for e in (*t.positions, *t.children) if e.scored]
    scored += [e.fitness for e in init_population if e.scored]
    lo, hi, step = _fitness_range([f for f in scored if f is not None])
    band = lo - 0.09 * (hi - lo)  # where rejected evaluations are drawn
    last = max(
        [0]
        + [e.timestep or 0 for t in trajectories for e in t.children]
        + [len(t.positions) - 1 for t in trajectories]
    )
    colours = _particle_colours(len(trajectories))

    if init_population:
        n = len(init_population)
        xs = [-0.32 + 0.24 * i / max(1, n - 1) for i in range(n)]
        _evaluation_dots(ax, xs, init_population, band, size=14, colour="0.45", cross_alpha=0.45)
    # children spread evenly around their timestep (by particle, slot, round) so none hides another
    by_step: dict[int, list[Evaluation]] = {}
    for t in trajectories:
        for c in t.children:
            by_step.setdefault(c.timestep or 0, []).append(c)
    offset: dict[str, float] = {}
    for k, group in by_step.items():
        group.sort(key=lambda c: (c.particle or 0, c.slot or 0, c.round or 0))
        for i, c in enumerate(group):
            offset[c.key] = k - 0.2 + 0.4 * (i + 0.5) / len(group)
    for traj, colour in zip(trajectories, colours):
        chosen = {e.key for e in traj.positions}  # drawn as the line's markers, not again as dots
        kids = [c for c in traj.children if c.finished and c.key not in chosen]
        xs = [offset[c.key] for c in kids]
        _evaluation_dots(ax, xs, kids, band, size=22, colour=colour, cross_alpha=0.6)
        # a start still waiting for its evaluation is not drawn (only a start can be unfinished)
        done = [(k, e) for k, e in enumerate(traj.positions) if e.finished]
        if done:
            xs = [k for k, _ in done]
            ys = [e.fitness if e.scored else band for _, e in done]
            ax.plot(xs, ys, color=colour, linewidth=1.8, alpha=0.95, zorder=3)
            ax.scatter(
                xs,
                ys,
                s=36,
                color=[colour if e.scored else "white" for _, e in done],
                edgecolors=[colour] * len(ys),
                linewidths=1.4,
                zorder=4,
            )

    ax.axhline(lo - 0.045 * (hi - lo), color="0.6", linewidth=0.8, linestyle=":")
    # crosses on the band pile up, so each group is labelled with its count
    # (the initial population's count stands at its own x, left of the particles' starts at 0)
    rejected: dict[float, int] = {}
    groups = [(-0.16, e) for e in init_population] + [
        (float(e.timestep or 0), e) for t in trajectories for e in (*t.positions[:1], *t.children)
    ]
    for x, e in groups:
        if e.rejected:
            rejected[x] = rejected.get(x, 0) + 1
    for x, count in rejected.items():
        ax.text(
            x,
            band + 0.018 * (hi - lo),
            f"{count} rejected",
            ha="center",
            va="bottom",
            fontsize=7,
            color="0.3",
        )
    ticks = _ticks(lo, hi, step)
    ax.set_yticks([band, *ticks], ["pruned /\nfailed", *[f"{t:.2f}" for t in ticks]])
    ax.set_ylim(band - 0.06 * (hi - lo), hi)
    ax.set_xticks(range(last + 1), ["init", *[str(k) for k in range(1, last + 1)]])
    ax.set_xlim(-0.45, last + 0.35)
    start = "chosen from the initial population" if init_population else "the study's initial genome"
    ax.set_xlabel(f"timestep (init = the particle's start position, {start})")
    ax.set_ylabel("fitness (best validation accuracy)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)

    handles: list = []
    if len(trajectories) <= LEGEND_PARTICLES:
        handles += [
            Line2D([], [], color=c, marker="o", linewidth=1.8, label=f"particle {t.particle}")
            for t, c in zip(trajectories, colours)
        ]
    else:
        handles.append(
            Line2D([], [], color=colours[0], marker="o", label=f"{len(trajectories)} particles (position)")
        )
    handles += [
        Line2D([], [], color="0.3", marker="o", linestyle="", alpha=0.4, label="other children (tries)"),
        Line2D(
            [], [], color="0.3", marker="x", linestyle="", alpha=0.6, label="no fitness (pruned / failed)"
        ),
        Line2D(
            [], [], color="0.3", marker="o", markerfacecolor="white", linestyle="", label="rejected position"
        ),
    ]
    if init_population:
        handles.append(
            Line2D(
                [],
                [],
                color="0.45",
                marker="o",
                linestyle="",
                alpha=0.5,
                label="initial population (init stage)",
            )
        )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    return _save(fig, path)


def _fitness_range(values: Sequence[float]) -> tuple[float, float, float]:
    """(low, high, tick step): limits around the fitness values in [0, 1], on multiples of the step."""
    if not values:
        return 0.0, 1.0, 0.2
    lo, hi = max(0.0, min(values) - 0.02), min(1.0, max(values) + 0.02)
    if hi - lo < 0.2:
        lo, hi = max(0.0, hi - 0.2), max(hi, 0.2)
    step = 0.1 if hi - lo <= 0.6 else 0.2
    return math.floor(lo / step + 1e-9) * step, min(1.0, math.ceil(hi / step - 1e-9) * step), step


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    """Multiples of ``step`` inside [lo, hi]."""
    return [round(k * step, 2) for k in range(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1)]


def schedule_figure(curves: Sequence[ScheduleCurve], path: Path) -> Path:
    """Figure 2: each genome's learned LR schedule eta_t·m(t) against the base schedule eta_t.

    Both are divided by the peak rate eta, as in the paper's appendix figures, so a genome whose
    decays leave the rate alone draws on top of the base schedule.
    """
    n = len(curves)
    cols = 1 if n == 1 else 2
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(6.2 * cols, 3.6 * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, c in enumerate(curves):
        ax = axes[i // cols][i % cols]
        ax.plot(
            c.steps, c.base, color="0.35", linestyle="--", linewidth=1.5, label=r"base schedule $\eta_t/\eta$"
        )
        ax.plot(c.steps, c.learned, color=f"C{i % 10}", linewidth=2.0, label=r"learned $\eta_t\,m(t)/\eta$")
        # only the steps the final run trains are drawn: past its end the schedule is never used
        end = min(c.final_steps, c.total_steps)
        ax.set_xlim(0, end)
        ax.set_ylim(bottom=0)
        ax.set_title(c.title, fontsize=10)
        part = f" (the final run: {end} of the schedule's {c.total_steps} steps)"
        ax.set_xlabel("training step t" + (part if end < c.total_steps else ""))
        ax.set_ylabel(r"LR multiplier ($\times\,\eta$)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle("Learned learning-rate schedules of the best genomes (decay functions)")
    return _save(fig, path)


def comparison_figure(bars: Sequence[Bar], path: Path, title: str) -> Path:
    """Figure 3: fitness of the best genomes next to the zoo baselines, one horizontal bar each."""
    fig = Figure(figsize=(8.5, 0.9 + 0.42 * len(bars)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ys = list(range(len(bars)))[::-1]  # first bar on top
    widths = [b.fitness if b.fitness is not None else 0.0 for b in bars]
    colours = ["C0" if b.search else "0.6" for b in bars]
    ax.barh(ys, widths, color=colours, height=0.65)
    for y, b, w in zip(ys, bars, widths):
        text = f"{b.fitness:.3f}  {b.note}" if b.fitness is not None else b.note
        ax.text(w + 0.01, y, text, va="center", fontsize=8.5)
    ax.set_yticks(ys, [b.label for b in bars])
    ax.set_xlim(0, 1.25)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("fitness (best validation accuracy)")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    fig.legend(  # outside the axes: inside, it covered the value labels of the lowest bars
        handles=[
            Line2D([], [], color="C0", linewidth=8, label="best genomes (search)"),
            Line2D([], [], color="0.6", linewidth=8, label="zoo baselines"),
        ],
        loc="outside lower center",
        ncols=2,
        fontsize=8,
        frameon=False,
    )
    return _save(fig, path)
