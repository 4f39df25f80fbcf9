"""Shared helpers for study tests: tiny configs, CLI runs, trial-set signatures, a PostgreSQL server."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nosplug.study.plan import Record

TINY = """\
version = 1
[study]
name = "{name}"
seed = {seed}
[data]
dataset = "digits"
[ga]
initial_population = {init}
particles = {particles}
timesteps = {timesteps}
mutations = {mutations}
tries = 2
{extra_ga}
[evaluation.init]
preset = "smoke"
surrogate_options = {{ base = 4 }}
{extra_eval}
[evaluation.evolution]
preset = "smoke"
surrogate_options = {{ base = 4 }}
{extra_eval}
[workers]
threads = 1
heartbeat_seconds = 0.5
lease_seconds = 4
poll_seconds = 0.2
[elimination]
top = 3
repeats = 2
stages = [ {{ name = "b6", keep = 1, lr = "search", preset = "smoke", surrogate_options = {{ base = 6 }} }} ]
[validate]
top = {validate_top}
tuning_trials = 2
seeds = 2
studies = 1
allow_underpowered = true
"""


def write_config(
    path: Path,
    name: str = "tiny",
    seed: int = 0,
    init: int = 4,
    particles: int = 2,
    timesteps: int = 1,
    mutations: int = 2,
    extra_ga: str = "",
    extra_eval: str = "",
    validate_top: int = 0,
) -> Path:
    path.write_text(
        TINY.format(
            name=name,
            seed=seed,
            init=init,
            particles=particles,
            timesteps=timesteps,
            mutations=mutations,
            extra_ga=extra_ga,
            extra_eval=extra_eval,
            validate_top=validate_top,
        )
    )
    return path


def nosplug(*args: str, cwd: Path | None = None, timeout: float = 900, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "nosplug", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def signature(study: optuna.Study) -> dict[str, tuple]:
    """key -> (genome hash, state, fitness) over the trials that stand for an evaluation."""
    out: dict[str, tuple] = {}
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if a.get("abandoned") or a.get("status") == "crashed":  # no result: the key was run again
            continue
        assert a["key"] not in out, f"evaluation {a['key']} appears twice"
        out[a["key"]] = (a["hash"], t.state.name, a.get("fitness"))
    return out


def assert_all_finished_once(study: optuna.Study) -> None:
    sig = signature(study)
    assert sig, "no evaluations"
    states = {s for _h, s, _f in sig.values()}
    assert states <= {"COMPLETE", "PRUNED", "FAIL"}, states
    assert not any(
        t.state in (TrialState.WAITING, TrialState.RUNNING) for t in study.get_trials(deepcopy=False)
    )


# ----------------------------------------------------------------------------- PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throw-away PostgreSQL on loopback; yield its SQLAlchemy URL; stop it afterwards."""
    bindir = pg_bin()
    assert bindir is not None, "PostgreSQL is not installed (.ci/run installs Debian's package)"
    root = Path(tempfile.mkdtemp(prefix="nosplug-pg-"))
    os.chmod(root, 0o755)
    data = root / "data"
    port = _free_port()
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name

    def run(*cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    if as_root:
        shutil.chown(root, "postgres")
    run(str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=50"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"  # the form the docs show
    finally:
        with contextlib.suppress(Exception):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        time.sleep(0.2)
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------- planners on fake results
def fake_result(p) -> Record:
    """A deterministic fake evaluation: rejected 30% of the time, else a fitness from the hash."""
    r = random.Random(f"{p.genome.canonical_hash()}{p.stage}")
    if r.random() < 0.3:
        return Record(p.key, p.genome, True, "pruned", None)
    return Record(p.key, p.genome, True, "complete", round(r.random(), 6))


def drive(ga, order_seed: int | None = None) -> dict[str, Record]:
    """Run a planner to the end: all planned evaluations at once, or one at a time in random order."""
    records: dict[str, Record] = {}
    pending = []
    rng = random.Random(order_seed)
    for _ in range(10_000):
        res = ga.plan({**records, **{p.key: Record(p.key, p.genome, False) for p in pending}})
        pending += res.new
        if res.done and not pending:
            return records
        if order_seed is None:
            take, pending = pending, []
        else:
            rng.shuffle(pending)
            take, pending = pending[:1], pending[1:]
        for p in take:
            records[p.key] = fake_result(p)
    raise AssertionError("planner did not finish")
