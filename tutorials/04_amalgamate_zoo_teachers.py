"""Tutorial 4: amalgamate optimizers from the zoo into one learned optimizer.

**Goal.** Optimizer amalgamation (Huang et al., ICLR 2022) distils a pool of *teacher* optimizers
into one learned *student* optimizer (RNNProp: two small LSTMs applied to every coordinate). Here
the pool mixes optimizers from three sources, which is where nosplug's plugin design pays off:

* zoo genomes, run by ``GraphOptimizer``: ``genome:adam(lr=0.005)`` and ``genome:opt6(lr=0.5)``
  (``opt6`` is one of the optimizers the neural optimizer search paper discovered; its decay
  functions are scheduled over the run length of each problem instance);
* an analytical teacher of the paper: ``rmsprop`` (spec §2.2, with its learning rate 5e-3);
* any ``torch.optim`` optimizer: ``torch:Adagrad(lr=0.05)``.

``name(key=value)`` overrides a teacher's hyperparameters. (``study:NAME#k`` would take the k-th
best genome of a search study, such as the one of tutorial 1.)

**The story.** ``nosplug amalgamate create`` validates the config and stores the run as an Optuna
study; ``run`` meta-trains the student on small problem instances (here the digits MLP) through
a curriculum of longer and longer unrolls, with a loss that rewards a fast-falling training loss
*and* closeness to the teachers' trajectories (min-max over teachers); every period is
checkpointed, so an interrupted ``run`` resumes. ``evaluate`` trains fresh models with the
student, each teacher and reports the per-problem *oracle* (the best teacher); ``export`` writes
the student as a plain tensor file plus JSON. Finally the exported student is loaded with
``nosplug.amalgamation.load(path, params)`` as an ordinary ``torch.optim.Optimizer`` and trains a
model in a plain PyTorch loop.

**Budgets.** The default meta-trains for a few dozen meta-steps (well under a minute): enough to
see every piece work, not to beat the teachers. ``--full`` uses budgets like
``studies/amalgamation-quick.toml`` (a few minutes). The paper meta-trains for hours.

Run it: ``python tutorials/04_amalgamate_zoo_teachers.py [--full] [--workdir DIR]``.
"""

from __future__ import annotations

import math
from typing import Any

import _tutorial
import pyarrow.parquet as pq
import torch
from sklearn.datasets import load_digits
from torch import nn

import nosplug.amalgamation

NAME = "zoo-teachers"
WARMUP_STEPS = 20  # meta.warmup_steps of both budgets; the student expects the same warm-up in use

SMALL_META = f"""\
unroll = 20              # steps per truncation (the paper: 100)
warmup_steps = {WARMUP_STEPS}        # shared SGD warm-up (lr 0.05) of each problem instance before the unroll
depths = [1, 2]          # curriculum: truncations per instance in each stage
val_depths = [2, 4]      # meta-validation horizon of each stage
alphas = [0.2, 0.1]      # weight of the imitation loss in each stage
instances = 4            # problem instances per period (each gives `depth` meta-steps)
val_instances = 1
min_periods = 1
patience = 1
max_periods = 2
random_scaling = false   # the paper scales the optimizee randomly; too noisy for tiny budgets"""

FULL_META = f"""\
unroll = 20
warmup_steps = {WARMUP_STEPS}
depths = [1, 2, 4]
val_depths = [2, 4, 8]
alphas = [0.2, 0.1, 0.05]
instances = 6
val_instances = 2
min_periods = 2
patience = 1
max_periods = 3
random_scaling = false
perturbation = "random"  # noise on the student's weights during meta-training (spec §4.5)"""


def config_text(full: bool) -> str:
    runs, epochs = (2, 10) if full else (1, 6)
    return f"""\
# Amalgamation of zoo genomes, an analytical teacher and a torch optimizer (docs/amalgamation.md).
version = 1

[run]
name = "{NAME}"
seed = 0
problem = "digits_mlp"   # meta-training problem: MLP 64-32-10 (sigmoid) on scikit-learn's digits

[student]
kind = "rnnprop"         # LSTM(20) -> LSTM(20) -> Dense(1), 5,141 weights, shared by all coordinates

[teachers]
# genome:NAME runs a zoo genome (or genome file) with GraphOptimizer. Decay functions (opt6 has
# some) follow t / T, with T the teacher's run on one problem instance (warm-up + longest unroll
# chain) in meta-training and the whole training run in `evaluate`; genome:NAME(total_steps=N)
# fixes T yourself.
refs = ["genome:adam(lr=0.005)", "genome:opt6(lr=0.5)", "rmsprop", "torch:Adagrad(lr=0.05)"]

[loss]
name = "minmax"          # imitation loss: the farthest teacher at each step (eq. 3); or mean, choice

[meta]
{SMALL_META if not full else FULL_META}

[evaluation]
problems = ["digits_mlp", "mlp"]   # the training problem and a held-out one (MLP on MNIST-5k)
runs = {runs}
epochs = {epochs}
"""


def main(argv: list[str] | None = None) -> None:
    opts = _tutorial.parse_args(__doc__, "04", argv)
    work = opts.workdir
    storage = f"journal:{work / 'journal.log'}"
    torch.set_num_threads(1)  # the models are tiny; see tutorial 2

    def cli(*args: str) -> str:
        return _tutorial.run_nosplug(*args, "--storage", storage, cwd=work, env=opts.env).stdout

    # ------------------------------------------------------------------------------------------
    _tutorial.step(1, "write the amalgamation config")
    config = work / "zoo-teachers.toml"
    config.write_text(config_text(opts.full))
    print(config.read_text())

    # ------------------------------------------------------------------------------------------
    _tutorial.step(2, "create the run")
    # create resolves every teacher reference (an unknown genome or torch optimizer is an error
    # naming the key) and stores the config; checkpoints go to ./nosplug-amalgamation/NAME.
    cli("amalgamate", "create", str(config))

    # ------------------------------------------------------------------------------------------
    _tutorial.step(3, "meta-train the student")

    def show(e: dict[str, Any]) -> None:
        if e["event"] == "period":
            print(
                f"  {e['phase']} stage {e['stage']} period {e['period']}: meta-train loss "
                f"{e['train_loss']:+.4f}, meta-validation loss {e['val_loss']:+.4f}"
            )
        elif e["event"] == "repeat":
            # a period whose validation loss blew up is redone (at most meta.max_repeats times)
            print(f"  period redone: validation {e['val_loss']:+.4f} worse than reference {e['ref']:+.4f}")
        elif e["event"] == "resumed":
            print(f"  resumed: {e}")
        elif e["event"] == "summary":
            print(f"  done: {e['done']}, student saved as {e['student']}.pt/.json")

    # The losses are log-ratios: below 0 means the training loss fell during the unroll.
    events = _tutorial.stream_nosplug_jsonl(
        "amalgamate", "run", NAME, "--storage", storage, "--jsonl", cwd=work, env=opts.env, on_event=show
    )
    periods = sum(e["event"] == "period" for e in events)
    cli("amalgamate", "status", NAME)

    # ------------------------------------------------------------------------------------------
    _tutorial.step(4, "evaluate the student against its teachers")
    # Every optimizer trains fresh models (same initialisation and batches for all) on each
    # problem; lower best log validation loss is better; the oracle is the best teacher.
    evaluation = work / "evaluation.parquet"
    cli("amalgamate", "evaluate", NAME, "--out", str(evaluation))
    rows = pq.read_table(evaluation).to_pylist()
    print(f"{evaluation.name}: {len(rows)} runs (optimizer x problem x run), per-epoch losses included")
    by_problem: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        by_problem.setdefault(r["problem"], {}).setdefault(r["optimizer"], []).append(r["best_log_val"])
    for problem, results in by_problem.items():
        mean = {name: sum(v) / len(v) for name, v in results.items()}
        oracle = min((v, k) for k, v in mean.items() if k != "student")
        print(
            f"  {problem}: student {mean['student']:+.4f}, oracle {oracle[1]} {oracle[0]:+.4f}, "
            f"student beats {sum(v > mean['student'] for k, v in mean.items() if k != 'student')} "
            f"of {len(mean) - 1} teachers"
        )

    # ------------------------------------------------------------------------------------------
    _tutorial.step(5, "export the student")
    exported = work / "my_optimizer"
    cli("amalgamate", "export", NAME, "--out", str(exported))
    print(f"{exported.name}.json:\n{exported.with_suffix('.json').read_text()}")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(6, "train a fresh model with the student in a plain PyTorch loop")
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0  # [0, 1], as the problems scale images
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    x_val, y_val, x_train, y_train = x[order[:360]], y[order[:360]], x[order[360:]], y[order[360:]]
    epochs, batch = (30 if opts.full else 15), 128

    def make_model() -> nn.Module:
        torch.manual_seed(0)  # the same start for both optimizers
        return nn.Sequential(nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 10))

    def train(label: str, model: nn.Module, optimizer: torch.optim.Optimizer) -> float:
        for epoch in range(epochs):
            perm = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(epoch))
            for i in range(0, len(perm), batch):
                idx = perm[i : i + batch]
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
                optimizer.step()
            with torch.no_grad():
                logits = model(x_val)
                val_loss = nn.functional.cross_entropy(logits, y_val).item()
                acc = (logits.argmax(1) == y_val).float().mean().item()
            if epoch % max(1, epochs // 5) == 0 or epoch == epochs - 1:
                print(f"  {label} epoch {epoch + 1:2d}: validation loss {val_loss:.4f}, accuracy {acc:.4f}")
        return val_loss

    # load(path, params, ...) returns a torch.optim.Optimizer. Its first `warmup` steps are plain SGD
    # at warmup_lr while the LSTM state stays frozen, as during meta-training (meta.warmup_steps).
    warmup = WARMUP_STEPS
    model = make_model()
    student = nosplug.amalgamation.load(exported, model.parameters(), warmup=warmup, warmup_lr=0.05)
    print(f"{type(student).__name__}: {sum(p.numel() for p in student.learned.parameters())} learned weights")
    student_loss = train("student", model, student)
    model = make_model()
    adam_loss = train("adam   ", model, torch.optim.Adam(model.parameters(), lr=5e-3))
    finite = math.isfinite(student_loss)
    print(f"final validation loss: student {student_loss:.4f}, Adam(lr=5e-3) {adam_loss:.4f}")
    print(
        f"\nsummary: periods={periods} evaluation_rows={len(rows)} "
        f"student_val_loss={student_loss:.4f} adam_val_loss={adam_loss:.4f} finite={finite}"
    )


if __name__ == "__main__":
    main()
