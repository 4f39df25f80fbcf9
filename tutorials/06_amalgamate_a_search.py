"""Tutorial 6: amalgamate the hall of fame of a search, then benchmark the student fairly.

**Goal.** Close the loop between nosplug's two halves: run a (tiny) neural optimizer search, take
the best genomes it found, its *hall of fame*, as teachers alongside zoo teachers, distil them
into one learned optimizer, and measure whether the student is any good, with a comparison that
is fair to the teachers.

**The story.** ``nosplug study create/run`` searches on scikit-learn's digits. ``study best``
lists the hall of fame with the learning rate each genome was evaluated at. In an amalgamation
config, ``study:NAME#k(lr=...)`` is the k-th best genome of study NAME, run by GraphOptimizer
*as evaluated*: when the search's integrity check found a genome that climbs the loss and
flipped its sign, the teacher comes out with that flip applied, so it descends. The pool here is
the top two of the search plus ``genome:adam(lr=0.005)`` and the paper's ``rmsprop``; the
student is meta-trained with min-max amalgamation on the digits MLP (``amalgamate
create/run``). The teachers are looked up in the run's own storage (``--storage``).

**A fair benchmark.** ``amalgamate evaluate`` trains fresh models with the student and with
every teacher: run k uses the same initialisation, the same minibatch order and the same
number of steps for every optimizer, and every number is a loss on the *validation* split,
which meta-training never touches (it draws training minibatches only). One of the two
problems, the MNIST-5k MLP, is held out entirely: the student never saw it. The table gives
mean ± a 95 % t interval over runs of the best log validation loss, and the student's paired
difference to each teacher (run k against run k) with its own interval: an interval that
contains 0 means the runs cannot tell the two apart.

**Budgets.** The default runs in about a minute: 6 random genomes and one mutation round on
tiny budgets, a few dozen meta-steps, 3 runs of 4 epochs. Enough to see every piece work, not
to conclude anything. ``--full`` uses a larger search and meta-training and 5 runs (several
minutes).

Run it: ``python tutorials/06_amalgamate_a_search.py [--full] [--workdir DIR]``.
"""

from __future__ import annotations

import json
import math
import statistics

import _tutorial
import pyarrow.parquet as pq
from scipy import stats

STUDY = "hall-of-fame"
RUN = "hof-student"


def search_config(full: bool) -> str:
    init, particles, timesteps, mutations = (12, 3, 2, 2) if full else (6, 2, 1, 1)
    return f"""\
# A tiny particle-GA search on the digits data (docs/studies.md lists every key).
version = 1

[study]
name = "{STUDY}"
seed = 3                 # a seed where several random genomes pass the gates at this size

[data]
dataset = "digits"       # scikit-learn's 8x8 digits, embedded; 20 % held out for validation

[ga]
initial_population = {init}
particles = {particles}
timesteps = {timesteps}
mutations = {mutations}
tries = 1

[evaluation.init]
preset = "smoke"         # a ConvNet of width 8 trained for a few dozen steps per learning rate
[evaluation.evolution]
preset = "smoke"

[workers]
threads = 1

[validate]
top = 0                  # the tutorial benchmarks the student instead (below)
"""


def amalgamation_config(teachers: list[str], full: bool) -> str:
    depths, instances, periods = ("[1, 2, 4]", 8, 3) if full else ("[1, 2, 4]", 6, 2)
    runs, epochs = (5, 6) if full else (3, 4)
    refs = ", ".join(json.dumps(t) for t in teachers)
    return f"""\
# Min-max amalgamation of the search's hall of fame and two zoo teachers (docs/amalgamation.md).
version = 1

[run]
name = "{RUN}"
seed = 0
problem = "digits_mlp"   # meta-training problem: MLP 64-32-10 (sigmoid) on the digits training split

[teachers]
refs = [{refs}]

[loss]
name = "minmax"          # at every step, imitate the teacher the student is farthest from

[meta]
unroll = 20
warmup_steps = 20
depths = {depths}
val_depths = [2, 4, 8]
alphas = [0.2, 0.1, 0.05]
instances = {instances}
val_instances = 1
min_periods = 1
patience = 1
max_periods = {periods}
random_scaling = false

[evaluation]
problems = ["digits_mlp", "mlp"]   # the training problem and a held-out one (MNIST-5k MLP)
runs = {runs}
epochs = {epochs}
"""


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % Student t interval (0 for a single value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, half


def main(argv: list[str] | None = None) -> None:
    opts = _tutorial.parse_args(__doc__, "06", argv)
    work = opts.workdir
    storage = f"journal:{work / 'journal.log'}"

    def cli(*args: str) -> str:
        return _tutorial.run_nosplug(*args, "--storage", storage, cwd=work, env=opts.env).stdout

    # ------------------------------------------------------------------------------------------
    _tutorial.step(1, "run a small search")
    (work / "search.toml").write_text(search_config(opts.full))
    cli("study", "create", str(work / "search.toml"))

    def show(e: dict) -> None:
        if e["event"] == "finished":
            fit = "" if e["fitness"] is None else f" fitness {e['fitness']:.4f}"
            print(f"  {e['key']:<14} {e['status']:<8}{fit}")

    _tutorial.stream_nosplug_jsonl(
        "study", "run", STUDY, "--storage", storage, "--jsonl", cwd=work, env=opts.env, on_event=show
    )

    # ------------------------------------------------------------------------------------------
    _tutorial.step(2, "the hall of fame: the best genomes and the learning rate each was evaluated at")
    best = [json.loads(line) for line in cli("study", "best", STUDY, "-n", "2", "--json").splitlines()]
    teachers = []
    for rank, g in enumerate(best, start=1):
        flip = " (sign flipped by the integrity check)" if g["flipped_by_integrity_check"] else ""
        print(f"  #{rank}: fitness {g['fitness']:.4f}, lr {g['chosen_lr']:g}: {g['formula']}{flip}")
        teachers.append(f"study:{STUDY}#{rank}(lr={g['chosen_lr']:g})")
    teachers += ["genome:adam(lr=0.005)", "rmsprop"]
    print(f"teacher pool: {teachers}")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(3, "amalgamate them into one student")
    config = work / "amalgamation.toml"
    config.write_text(amalgamation_config(teachers, opts.full))
    print(config.read_text())
    cli("amalgamate", "create", str(config))
    events = _tutorial.stream_nosplug_jsonl(
        "amalgamate", "run", RUN, "--storage", storage, "--jsonl", cwd=work, env=opts.env,
        on_event=lambda e: e["event"] == "period" and print(
            f"  stage {e['stage']} period {e['period']}: meta-train {e['train_loss']:+.4f}, "
            f"meta-validation {e['val_loss']:+.4f}"
        ),
    )  # fmt: skip
    periods = sum(e["event"] == "period" for e in events)

    # ------------------------------------------------------------------------------------------
    _tutorial.step(4, "benchmark the student against its teachers: same seeds, validation split")
    out = work / "benchmark.parquet"
    cli("amalgamate", "evaluate", RUN, "--out", str(out))
    rows = pq.read_table(out).to_pylist()
    runs: dict[tuple[str, str], dict[int, float]] = {}
    for r in rows:
        runs.setdefault((r["problem"], r["optimizer"]), {})[r["run"]] = r["best_log_val"]
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    names = ["student", *teachers]
    print("\nbest log validation loss, mean ± 95 % t interval over runs (lower is better);")
    print("student − teacher: paired by run (same init and batches), mean ± 95 % interval\n")
    print(f"{'problem':<11} {'optimizer':<28} {'best log val':>18} {'student − teacher':>20}")
    beaten, worse, compared = 0, 0, 0
    for p in problems:
        for name in names:
            values = runs[(p, name)]
            mean, half = interval(list(values.values()))
            diff_text = ""
            if name != "student":
                diffs = [runs[(p, "student")][k] - v for k, v in values.items()]
                d, dh = interval(diffs)
                diff_text = f"{d:+.3f} ± {dh:.3f}"
                compared += 1
                beaten += d + dh < 0  # the whole interval below 0: the student is better here
                worse += d - dh > 0
            print(f"{p:<11} {name:<28} {mean:+9.3f} ± {half:.3f}  {diff_text:>20}")
    n_runs = len(runs[(problems[0], "student")])
    print(
        f"\n{n_runs} runs per optimizer and problem, {compared} comparisons: the student is better "
        f"(interval of the paired difference below 0) in {beaten}, worse (above 0) in {worse}, "
        f"not distinguishable in {compared - beaten - worse}"
    )
    counts = f"beaten={beaten} worse={worse} compared={compared}"
    print(f"\nsummary: periods={periods} teachers={len(teachers)} rows={len(rows)} {counts}")


if __name__ == "__main__":
    main()
