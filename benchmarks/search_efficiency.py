"""Search efficiency: does a planner find good optimizers faster than random search?

    python benchmarks/search_efficiency.py                       # the full run (about 80 minutes on 2 cores)
    python benchmarks/search_efficiency.py --fast --out /tmp/p.md  # smoke budgets (tests)

Every planner (particle GA, random search, regularized evolution), started cold (random genomes
only) and warm (Adam in the initial population), runs ``--repeats`` independent searches
(study seeds 0, 1, ...; search r of every planner sees the same data split) of exactly the
task's number of evaluations (``--tasks mnist5k-convnet:40,diabetes-mlp:100``), with the same
evaluation settings for every evaluation (both stages of the config are the task's own budget).
Each search is a real study run through the command line (``nosplug study run --max-trials N``,
one thread; ``--jobs`` searches side by side, each pinned to its own core).

Reported per task, over the repeats (mean and 95 % t-interval): the best fitness found after k
evaluations and after s CPU-seconds of evaluation (anytime curves, also drawn as PNGs), how many
evaluations each configuration needs to reach two levels (the median and the 75th percentile of
every run's final best), the paired difference to random search with the same start and study
seed, how many distinct genomes (canonical hash) it evaluated, and how many evaluations the gates
rejected. The tables go between the markers of ``docs/search-efficiency.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _bench import environment, print_table, progress, table  # noqa: E402

PLANNERS = ("particle-ga", "random", "regularized-evolution")
STARTS = ("cold", "warm")
MARK_START, MARK_END = "<!-- bench:search-efficiency -->", "<!-- /bench:search-efficiency -->"


def search_config(name: str, task: str, planner: str, start: str, seed: int, n: int, preset: str) -> str:
    """The TOML of one search: ``n`` evaluations of ``planner`` on ``task``."""
    ga = {"initial_population": max(4, n // 4), "particles": 2, "tries": 1, "mutations": 7}
    ga["timesteps"] = max(
        1, math.ceil((n - ga["initial_population"]) / (ga["particles"] * (1 + ga["mutations"])))
    )
    options: dict[str, Any] = {}
    if planner == "random":
        options = {"evaluations": n}
    elif planner == "regularized-evolution":
        population = min(n, max(2, n // 4))
        options = {"evaluations": n, "population": population, "sample": min(3, population), "parallel": 1}
    lines = ["version = 1", "[study]", f'name = "{name}"', f"seed = {seed}", "[task]", f'name = "{task}"']
    lines += ["[ga]", *(f"{k} = {v}" for k, v in ga.items())]
    if start == "warm":
        lines.append('seed_genomes = ["adam"]')
    lines += [
        "[search]",
        f'planner = "{planner}"',
        "[search.options]",
        *(f"{k} = {v}" for k, v in options.items()),
    ]
    for stage in ("init", "evolution"):
        lines += [f"[evaluation.{stage}]", f'preset = "{preset}"']
    lines += ["[workers]", "threads = 1", "[validate]", "top = 0"]
    return "\n".join(lines) + "\n"


def run_search(work: Path, task: str, planner: str, start: str, seed: int, n: int, preset: str, core: int):
    """Run one search to ``n`` evaluations; returns its evaluations in completion order."""
    name = f"{task}.{planner}.{start}.{seed}"
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "search.toml"
    cfg.write_text(search_config(name, task, planner, start, seed, n, preset))
    url = f"journal:{folder / 'journal.log'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "nosplug", "study"]
    subprocess.run([*base, "create", str(cfg), "--storage", url], check=True, env=env, capture_output=True)
    pin = ["taskset", "-c", str(core)] if _taskset() else []
    started = time.perf_counter()
    out = subprocess.run(
        [*pin, *base, "run", name, "--storage", url, "--quiet", "--threads", "1", "--max-trials", str(n)],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"{name}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
        )
    return name, _evaluations(name, url), time.perf_counter() - started


def _taskset() -> bool:
    return subprocess.run(["which", "taskset"], capture_output=True).returncode == 0


def _evaluations(name: str, url: str) -> list[dict[str, Any]]:
    from nosplug.study import trials as T
    from nosplug.study.studies import load

    study = load(name, url)
    done = [
        t
        for t in T.live_trials(study.get_trials(deepcopy=False)).values()
        if t.state in T.FINISHED and t.user_attrs.get(T.REUSED_FROM) is None
    ]
    done.sort(key=lambda t: (t.datetime_complete, t.number))
    return [
        {
            "fitness": t.user_attrs.get(T.FITNESS),
            "status": t.user_attrs.get(T.STATUS),
            "seconds": float(t.user_attrs.get("duration") or 0.0),
            "hash": t.user_attrs.get(T.HASH),
            "seeded": t.user_attrs.get("seeded"),
        }
        for t in done
    ]


# ----------------------------------------------------------------------------- statistics
def best_so_far(evals: list[dict[str, Any]], sign: float) -> list[float]:
    """Best fitness after each evaluation (sign * value is maximised; nan until one succeeds)."""
    out, best = [], math.nan
    for e in evals:
        f = e["fitness"]
        if f is not None and math.isfinite(f) and (math.isnan(best) or sign * f > sign * best):
            best = f
        out.append(best)
    return out


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of finite values (nan when none)."""
    from scipy import stats

    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return math.nan, math.nan, math.nan
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, math.nan, math.nan
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    h = stats.t.ppf(0.975, len(xs) - 1) * sd / math.sqrt(len(xs))
    return m, m - h, m + h


def fmt(m: float, lo: float, hi: float) -> str:
    if math.isnan(m):
        return "–"
    return f"{m:.4g} [{lo:.4g}, {hi:.4g}]" if not math.isnan(lo) else f"{m:.4g}"


def at_seconds(evals: list[dict[str, Any]], curve: list[float], s: float) -> float:
    """Best fitness found within ``s`` CPU-seconds of evaluation."""
    total, best = 0.0, math.nan
    for e, b in zip(evals, curve):
        total += e["seconds"]
        if total > s:
            break
        best = b
    return best


def reach(curve: list[float], level: float, sign: float) -> int | None:
    """Evaluations until the best reaches ``level`` (None: never)."""
    for i, b in enumerate(curve):
        if not math.isnan(b) and sign * b >= sign * level:
            return i + 1
    return None


# ----------------------------------------------------------------------------- figures
def figure(task: str, runs: dict, sign: float, metric: str, n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (planner, start), items in sorted(runs.items()):
        curves = np.array([r["curve"] + [r["curve"][-1]] * (n - len(r["curve"])) for r in items], dtype=float)
        x = np.arange(1, n + 1)
        m = np.nanmean(curves, axis=0)
        style = "-" if start == "warm" else "--"
        (line,) = axes[0].plot(x, m, style, label=f"{planner} ({start})")
        if len(items) > 1:
            sd = np.nanstd(curves, axis=0, ddof=1)
            h = 4.303 * sd / math.sqrt(len(items)) if len(items) == 3 else 1.96 * sd / math.sqrt(len(items))
            axes[0].fill_between(x, m - h, m + h, color=line.get_color(), alpha=0.12)
        for r in items:
            secs = np.cumsum([e["seconds"] for e in r["evals"]])
            axes[1].plot(secs, r["curve"], style, color=line.get_color(), alpha=0.6, lw=1)
    axes[0].set(xlabel="evaluations", ylabel=f"best {metric} found", title=f"{task}: best vs evaluations")
    axes[1].set(
        xlabel="CPU-seconds of evaluation",
        ylabel=f"best {metric} found",
        title="best vs CPU-seconds (each run)",
    )
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def parse_tasks(text: str, default_n: int) -> dict[str, int]:
    """``"mnist5k-convnet:40,diabetes-mlp:100"`` -> task -> evaluations per search."""
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, n = part.partition(":")
        out[name] = int(n) if n else default_n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--tasks", default="mnist5k-convnet:40,diabetes-mlp:100", help="TASK[:EVALUATIONS],... (tasks)"
    )
    ap.add_argument("--evaluations", type=int, default=40, help="for a task given without its own")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--preset", default="task", help="evaluation preset of every evaluation")
    ap.add_argument("--jobs", type=int, default=2, help="searches side by side, one core each")
    ap.add_argument(
        "--fast",
        action="store_true",
        help="smoke budgets: 1 task, 3 evaluations, 2 repeats, warm starts only",
    )
    ap.add_argument("--out", default=str(ROOT / "docs" / "search-efficiency.md"))
    ap.add_argument("--work", help="folder for the studies (default: a temporary one)")
    args = ap.parse_args()
    starts = STARTS
    if args.fast:
        args.tasks, args.repeats, args.preset = "digits-convnet:3", 2, "smoke"
        starts = ("warm",)
    tasks = parse_tasks(args.tasks, args.evaluations)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="nosplug-search-eff-"))
    jobs = [(t, p, s, r) for t in tasks for r in range(args.repeats) for p in PLANNERS for s in starts]
    progress(
        f"{len(jobs)} searches ({', '.join(f'{t}: {n} evaluations' for t, n in tasks.items())}) in {work}"
    )
    results: dict[tuple, dict] = {}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            pool.submit(run_search, work, *job, tasks[job[0]], args.preset, i % args.jobs): job
            for i, job in enumerate(jobs)
        }
        for k, (fut, job) in enumerate(futures.items(), 1):
            name, evals, wall = fut.result()
            results[job] = {"evals": evals, "wall": wall}
            so_far = time.perf_counter() - t0
            progress(
                f"[{k}/{len(jobs)}] {name}: {len(evals)} evaluations in {wall:.0f} s ({so_far:.0f} s so far)"
            )
    sections, tables = [], []
    figdir = Path(args.out).with_suffix("")
    figdir.mkdir(parents=True, exist_ok=True)
    for task, n in tasks.items():
        t, fig = task_table(task, n, {k: v for k, v in results.items() if k[0] == task}, starts, args, figdir)
        tables.append(t)
        print_table(t)
        sections.append((t, fig))
    _write(Path(args.out), sections, args)
    print(json.dumps({"tables": tables, "env": environment()})[:200])


def task_table(task: str, n: int, results: dict[tuple, dict], starts, args, figdir: Path):
    """The table (and figure) of one task: every planner and start over the repeats."""
    from nosplug.tasks.resolve import resolve_task

    metric = resolve_task(task).metric
    sign = 1.0 if metric.direction == "maximize" else -1.0
    runs: dict[tuple[str, str], list[dict]] = {}
    by_repeat: dict[tuple[str, str, int], dict] = {}
    for (_t, p, s, r), res in sorted(results.items()):
        res["curve"] = best_so_far(res["evals"], sign)
        runs.setdefault((p, s), []).append(res)
        by_repeat[(p, s, r)] = res
    finals = [r["curve"][-1] for rs in runs.values() for r in rs if r["curve"]]
    finals = sorted((v for v in finals if not math.isnan(v)), key=lambda v: sign * v)
    levels = {"median": finals[len(finals) // 2], "p75": finals[(3 * len(finals)) // 4]} if finals else {}
    checkpoints = sorted({max(1, n // 4), max(1, n // 2), n})
    secs = sorted({round(sum(e["seconds"] for e in r["evals"]) / 2) for rs in runs.values() for r in rs})
    budget_s = secs[len(secs) // 2] if secs else 0
    rows = []
    for planner in PLANNERS:
        for start in starts:
            items = runs.get((planner, start), [])
            cells = [planner, start]
            for c in checkpoints:
                at = [r["curve"][min(c, len(r["curve"])) - 1] for r in items if r["curve"]]
                cells.append(fmt(*mean_ci(at)))
            cells.append(fmt(*mean_ci([at_seconds(r["evals"], r["curve"], budget_s) for r in items])))
            cells.append(versus_random(by_repeat, planner, start, args.repeats, sign))
            for lv in levels.values():
                hits = [reach(r["curve"], lv, sign) for r in items]
                got = [h for h in hits if h is not None]
                k = f"{len(got)}/{len(items)}"
                cells.append(f"{sum(got) / len(got):.1f} ({k})" if got else f"never ({k})")
            distinct = [len({e["hash"] for e in r["evals"]}) for r in items]
            rejected = [sum(e["fitness"] is None for e in r["evals"]) for r in items]
            cpu = [sum(e["seconds"] for e in r["evals"]) for r in items]
            cells.append(f"{sum(distinct) / max(1, len(distinct)):.1f}")
            cells.append(f"{sum(rejected) / max(1, len(rejected)):.1f}")
            cells.append(f"{sum(cpu) / max(1, len(cpu)):.0f}")
            rows.append(cells)
    columns = ["planner", "start", *(f"best after {c} evals" for c in checkpoints)]
    columns += [f"best within {budget_s} CPU-s", f"better than random after {n} (paired)"]
    columns += [f"evals to {k} ({metric.name} {v:.4g})" for k, v in levels.items()]
    columns += ["distinct genomes", "rejected", "CPU-s per search"]
    fig = figdir / f"{task}.png"
    figure(task, runs, sign, metric.name, n, fig)
    note = (
        f"{task}: {metric.name} ({metric.direction}), {args.repeats} searches per row (study seeds "
        f"0..{args.repeats - 1}: search r of every planner sees the same data split), {n} evaluations "
        f"each, preset {args.preset!r}; mean [95 % t-interval over searches]; 'better than random': the "
        "paired difference of the final best to random search with the same start and study seed "
        "(positive: better), mean [95 % t-interval], and in how many of the searches it was better; "
        "levels: the median and 75th percentile of every search's final best on this task"
    )
    return table(f"search-efficiency-{task}", f"Search efficiency on {task}", columns, rows, note), fig


def versus_random(by_repeat: dict, planner: str, start: str, repeats: int, sign: float) -> str:
    """The paired difference of final bests to random search (same start and study seed), with the
    sign making 'better' positive: mean [95 % t-interval] and wins."""
    if planner == "random":
        return "(baseline)"
    diffs = []
    for r in range(repeats):
        mine, base = by_repeat.get((planner, start, r)), by_repeat.get(("random", start, r))
        if mine and base and mine["curve"] and base["curve"]:
            a, b = mine["curve"][-1], base["curve"][-1]
            if not (math.isnan(a) or math.isnan(b)):
                diffs.append(sign * (a - b))
    if not diffs:
        return "–"
    m, lo, hi = mean_ci(diffs)
    wins = sum(d > 0 for d in diffs)
    ties = sum(d == 0 for d in diffs)
    return f"{fmt(m, lo, hi)}; {wins}/{len(diffs)} better" + (f", {ties} tied" if ties else "")


def _write(page: Path, sections, args) -> None:
    env = environment()
    head = (
        f"Measured {env['date']} with torch {env['torch']} on {env['machine']} ({env['cores']} cores), "
        f"one thread per search, {args.jobs} searches at a time"
        + (" (smoke budgets: checks the machinery only)" if args.fast else "")
        + "; `python benchmarks/search_efficiency.py"
        + (" --fast" if args.fast else "")
        + "`."
    )
    body = [head, ""]
    for t, fig in sections:
        body += [f"### {t['title']}", "", f"![{t['title']}]({fig.parent.name}/{fig.name})", ""]
        body += ["| " + " | ".join(t["columns"]) + " |", "|" + "---|" * len(t["columns"])]
        body += ["| " + " | ".join(r) + " |" for r in t["rows"]]
        body += ["", t["note"], ""]
    block = MARK_START + "\n" + "\n".join(body).rstrip() + "\n" + MARK_END
    text = page.read_text() if page.exists() else f"# Search efficiency\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in text:
        text += f"\n{MARK_START}\n{MARK_END}\n"
    start, end = text.index(MARK_START), text.index(MARK_END) + len(MARK_END)
    page.write_text(text[:start] + block + text[end:])
    progress(f"wrote {page}")


if __name__ == "__main__":
    main()
