"""What ``nosplug study run`` shows while it works: progress, recent outcomes, the best so far.

The live screen reads the study itself (the trials, the plan's progress and the ranking), so the
parent of several worker processes draws the same screen as a single worker.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from nosplug.cli.console import console


def resume_note(s) -> None:
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


def wait_for(procs: list[subprocess.Popen], s) -> list[int]:
    """Wait for the worker processes, showing the study's progress."""
    start = time.perf_counter()
    monitor = Monitor(s)
    with Live(monitor.render(), console=console, refresh_per_second=1) as live:
        while any(p.poll() is None for p in procs):
            time.sleep(2)
            live.update(monitor.render())
        live.update(monitor.render())
    print_summary(s, None, None, None, time.perf_counter() - start)
    return [p.returncode for p in procs]


class Monitor:
    """Progress bars, the last few outcomes (why candidates were rejected) and the best so far."""

    RECENT = 5

    def __init__(self, s) -> None:
        from nosplug.study.kinds import open_study

        self.study = s
        self.ctx = open_study(s)
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
        return self.ctx.expected_evaluations() or 0

    def note(self, e: dict[str, Any]) -> None:
        """Keep a line for each outcome, so a screen of rejections says why."""
        line = outcome_line(e)
        if line:
            self.recent = [*self.recent, line][-self.RECENT :]

    def render(self):
        from rich.console import Group

        from nosplug.search.ranking import best
        from nosplug.study.trials import FINISHED, live_trials

        trials = self.study.get_trials(deepcopy=False)
        live = live_trials(trials).values()
        finished = sum(t.state in FINISHED for t in live)
        pending = sum(t.state not in FINISHED for t in live)
        plan = self.ctx.plan_state()
        # never complete-looking while work remains: the plan grows as rejected slots are retried
        total = max(self._expected(), finished + pending + (0 if plan.done else 1))
        self.progress.update(self.overall, completed=finished, total=total)
        state = plan.progress
        if "init_total" in state:
            self._bar("initial population", state["init_done"], state["init_total"])
        config = getattr(self.ctx, "config", None)  # a search's
        if config is not None:
            steps = config.ga.timesteps
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

    from nosplug.search.ranking import RANKING_RULE
    from nosplug.study import trials as T

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


def print_summary(s, done: bool | None, evaluated: int | None, reused: int | None, seconds: float) -> None:
    from nosplug.search.ranking import best
    from nosplug.study.kinds import plan_state

    plan = plan_state(s)
    state = "finished" if plan.done else "not finished (run it again to continue)"
    extra = f", {evaluated} evaluated here, {reused} reused" if evaluated is not None else ""
    console.print(f"study [bold]{escape(s.study_name)}[/bold]: {state}{extra}, {seconds:.0f} s")
    if plan.progress.get("fewer_particles"):
        console.print(f"[yellow]note:[/yellow] {escape(plan.progress['fewer_particles'])}")
    console.print(best_table(best(s, 5)))
