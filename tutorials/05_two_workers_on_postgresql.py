"""Tutorial 5: run one study with two workers that share a PostgreSQL database.

**Goal.** Spread a search over several machines. A nosplug study lives entirely in its Optuna
storage, so any process that reaches the storage can work on it: there is no coordinator to
start. Here two ``nosplug study run`` processes play two machines; they share the work through
the database, and afterwards plain ``optuna`` (no nosplug import) shows that every evaluation ran
exactly once and which worker ran it.

**How the workers share the work** (docs/studies.md). A worker takes the study's *planning
lock* (a PostgreSQL advisory lock), replays the deterministic GA planner on the stored results
and enqueues the evaluations the plan asks for as WAITING trials; then it takes one waiting trial
(Optuna's atomic WAITING -> RUNNING), evaluates it while a heartbeat thread stamps the trial, and
stores the result. Each trial records the worker that ran it (user attribute ``worker`` =
``host:pid``). A worker whose heartbeat is older than ``workers.lease_seconds`` is considered
dead and its evaluation is handed out again as a new trial (the old one is marked ``abandoned``).

**Real use on several machines.** Every machine needs the same nosplug (and plugin) versions and,
for file-based datasets such as CIFAR, the data in ``$NOSPLUG_DATA``. Then::

    # once, on the database host: a database and a user the workers may connect as
    sudo -u postgres createuser --pwprompt nosplug && sudo -u postgres createdb -O nosplug nosplug
    # (allow the workers' addresses in pg_hba.conf and set listen_addresses in postgresql.conf)

    export NOSPLUG_STORAGE=postgresql://nosplug:PASSWORD@db-host/nosplug   # on every machine
    nosplug study create studies/quick.toml          # once, from anywhere
    nosplug study run quick --workers 2              # on each machine: 2 local worker processes
    nosplug study status quick                       # from anywhere, at any time
    nosplug study export quick --out quick.parquet   # when it is done

Start more workers at any time, stop any of them at any time (a stopped machine's running trial
is redone by the others after the lease expires), and rerun ``study run`` to resume.

**This script.** ``python tutorials/05_two_workers_on_postgresql.py --storage
postgresql://USER@HOST/DB [--full] [--workdir DIR]`` (or with ``$NOSPLUG_STORAGE`` set). Without a
storage it explains how to get a PostgreSQL server and exits with status 2. It needs a PostgreSQL
driver: ``pip install 'nosplug[postgres]'`` installs psycopg 3, which a plain ``postgresql://`` URL
uses (psycopg2 works too). It creates a new study named ``tutorial-two-workers-<time>``
(``--study`` to choose) on scikit-learn's digits with the ``smoke`` evaluation budget: well under
a minute (``--full``: the ``quick`` budget on MNIST-5k, a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _tutorial
import optuna

NO_STORAGE = """\
This tutorial needs a PostgreSQL database: give its URL with --storage or $NOSPLUG_STORAGE, e.g.

    python tutorials/05_two_workers_on_postgresql.py --storage postgresql://USER:PASSWORD@HOST:5432/DB

To get one on your own machine:

  * Debian/Ubuntu:  sudo apt-get install postgresql
                    sudo -u postgres createuser --superuser "$USER" && createdb nosplug
                    -> --storage postgresql://$USER@localhost/nosplug   (or via the socket:
                       postgresql:///nosplug)
  * Docker:         docker run -d --name nosplug-db -p 5432:5432 -e POSTGRES_PASSWORD=secret postgres:16
                    -> --storage postgresql://postgres:secret@localhost:5432/postgres

The Python driver: pip install 'nosplug[postgres]' (psycopg 3; psycopg2 works too). The test
suite starts a throw-away server itself (tests/study_helpers.py: postgres_server()).
"""


def config_text(name: str, full: bool) -> str:
    budget = (
        'dataset = "mnist5k"\n',
        'preset = "quick"\nsurrogate_options = { base = 8, bn_momentum = 0.1 }\n'
        "final_steps = 200\nschedule_steps = 400\n",
    )
    if not full:
        budget = ('dataset = "digits"\n', 'preset = "smoke"\nsurrogate_options = { base = 4 }\n')
    data, evaluation = budget
    init, particles, timesteps, mutations = (12, 3, 2, 3) if full else (6, 2, 2, 2)
    return f"""\
version = 1
[study]
name = "{name}"
seed = 0
[data]
{data}
[ga]
initial_population = {init}
particles = {particles}
timesteps = {timesteps}
mutations = {mutations}
tries = 2
[evaluation.init]
{evaluation}
[evaluation.evolution]
{evaluation}
[workers]
threads = 1               # one torch thread per worker: two workers share this machine's cores
heartbeat_seconds = 2     # each worker stamps its running trial this often ...
lease_seconds = 30        # ... and one silent this long counts as dead (its trial is redone)
poll_seconds = 0.5        # wait between looks at the queue while the other worker holds the rest
[validate]
top = 0                   # no verdict benchmark here: this tutorial is about sharing the work
"""


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        default=os.environ.get("NOSPLUG_STORAGE"),
        help="PostgreSQL URL, e.g. postgresql://user:password@host/db (default: $NOSPLUG_STORAGE)",
    )
    parser.add_argument("--study", default=None, help="study name (default: tutorial-two-workers-<time>)")


def check_storage(args: argparse.Namespace) -> None:
    """Exit with status 2 and directions when there is no PostgreSQL URL (before writing anything)."""
    if not args.storage:
        print(f"error: no storage given\n\n{NO_STORAGE}", file=sys.stderr)
        raise SystemExit(2)
    if not args.storage.startswith("postgresql"):
        print(f"error: {args.storage!r} is not a PostgreSQL URL\n\n{NO_STORAGE}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    opts = _tutorial.parse_args(__doc__, "05", argv, configure=add_options, validate=check_storage)
    storage: str = opts.extra.storage
    work = opts.workdir
    name = opts.extra.study or f"tutorial-two-workers-{time.strftime('%Y%m%d-%H%M%S')}"
    shown = _tutorial.mask_url(storage)  # never print a password
    print(f"storage: {shown}; study: {name}")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(1, "create a tiny study in the database")
    config = work / "two-workers.toml"
    config.write_text(config_text(name, opts.full))
    print(config.read_text())
    _tutorial.run_nosplug(
        "study", "create", str(config), "--storage", storage, cwd=work, env=opts.env, secret=storage
    )

    # ------------------------------------------------------------------------------------------
    _tutorial.step(2, "start two workers, as two machines would")
    # Two independent processes with nothing in common but the storage URL. On two machines you
    # would run exactly this command on each (or `--workers K` for K processes per machine).
    # Each writes its events to its own log (--jsonl: one JSON object per line).
    workers: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    started = time.perf_counter()
    for label in ("machine-A", "machine-B"):
        log = work / f"{label}.jsonl"
        cmd = [sys.executable, "-m", "nosplug", "study", "run", name, "--storage", storage, "--jsonl"]
        print(f"[{label}] $ nosplug study run {name} --storage {shown} --jsonl > {log.name}")
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=work, env=_tutorial.nosplug_env(opts.env), stdout=out, stderr=subprocess.STDOUT
            )
        workers.append((label, proc, log))
    # While they work, count the evaluations each has finished so far (from their logs).
    last = ""
    while any(proc.poll() is None for _label, proc, _log in workers):
        time.sleep(5)
        done = {label: log.read_text().count('"event": "finished"') for label, _proc, log in workers}
        line = ", ".join(f"{label} {n}" for label, n in done.items())
        if line != last:
            print(f"  {time.perf_counter() - started:5.0f} s: finished evaluations: {line}", flush=True)
            last = line
    codes = {label: proc.wait() for label, proc, _log in workers}
    print(f"both workers finished in {time.perf_counter() - started:.1f} s; exit statuses {codes}")

    pid_of: dict[str, str] = {}
    for label, proc, log in workers:
        events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        summary = next((e for e in events if e["event"] == "summary"), {})
        finished = [e["key"] for e in events if e["event"] == "finished"]
        pid_of[str(proc.pid)] = label
        print(
            f"[{label}] pid {proc.pid}: evaluated {summary.get('evaluated')}, "
            f"reused {summary.get('reused')}, plan done {summary.get('done')}; first keys {finished[:4]}"
        )
        if codes[label] != 0:
            print(log.read_text()[-3000:])
            raise SystemExit(f"{label} failed with exit status {codes[label]}")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(3, "read the study with plain optuna")
    # Everything is in the database: the config, every genome, every result. optuna.load_study
    # reads it without nosplug (dashboards such as optuna-dashboard work the same way).
    assert "nosplug" not in sys.modules, "this step must not need nosplug"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    live = [t for t in trials if not t.user_attrs.get("abandoned")]
    keys = Counter(t.user_attrs["key"] for t in live)
    twice = sorted(k for k, n in keys.items() if n > 1)
    unfinished = [t.number for t in trials if not t.state.is_finished()]
    reused = [t for t in live if t.user_attrs.get("reused_from") is not None]
    ran = [t for t in live if t.user_attrs.get("reused_from") is None]
    by_worker = Counter(t.user_attrs.get("worker") for t in ran)

    print(f"{'trial':>5}  {'key':<14} {'state':<8} {'fitness':>7}  {'worker':<28} reason")
    for t in trials:
        a: dict[str, Any] = t.user_attrs
        worker = a.get("worker", "-")
        label = pid_of.get(str(worker).rpartition(":")[2], "?")
        fitness = "-" if a.get("fitness") is None else f"{a['fitness']:.3f}"
        # FAIL = rejected before training (integrity check) or an error; PRUNED = stopped by a gate
        note = "reused, not trained" if a.get("reused_from") is not None else str(a.get("reason", ""))[:40]
        note = "abandoned (worker died)" if a.get("abandoned") else note
        who = f"{worker} = {label}"
        print(f"{t.number:5d}  {a['key']:<14} {t.state.name:<8} {fitness:>7}  {who:<28} {note}")

    print(f"\n{len(trials)} trials, {len(keys)} distinct evaluations, {len(reused)} reused results")
    print(f"evaluations that ran more than once: {twice or 'none'}")
    print(f"trials not finished: {unfinished or 'none'}")
    for worker, n in sorted(by_worker.items()):
        label = pid_of.get(str(worker).rpartition(":")[2], "?")
        print(f"  worker {worker} ({label}) ran {n} evaluations")
    scored = [t for t in ran if t.user_attrs.get("fitness") is not None]
    best = max(scored, key=lambda t: t.user_attrs["fitness"]) if scored else None
    if best is not None:
        print(f"best: {best.user_attrs['fitness']:.4f} {best.user_attrs['formula']}")
    once = not twice and not unfinished
    print(
        f"\nsummary: trials={len(trials)} evaluations={len(keys)} every_evaluation_once={once} "
        f"workers={len(by_worker)} best_fitness={None if best is None else best.user_attrs['fitness']}"
    )


if __name__ == "__main__":
    main()
