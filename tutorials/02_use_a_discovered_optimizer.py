"""Tutorial 2: use a discovered optimizer in your own PyTorch training loop.

**Goal.** Take ``opt6``, one of the optimizers the neural optimizer search paper discovered, out of
``nosplug.zoo`` and train a model with it in a completely ordinary PyTorch loop, next to Adam.
Nothing here needs the search machinery: a genome compiles to a ``torch.optim.Optimizer``.

**What you will see.**

1. Load ``opt6`` and ``adam`` from the zoo and read their update rules. ``opt6`` divides a
   quasi-hyperbolic momentum term by a weight-dependent denominator, and its connections carry
   *decay functions* ``[d](x)``: values in [0, 1] that change with t / T, so the optimizer needs the
   run length ``total_steps`` up front.
2. Load scikit-learn's 8x8 digits and build a small CNN: plain ``torch.nn``, nothing special.
3. Train with ``nosplug.GraphOptimizer`` and the schedule the paper trains the genome with
   (``nosplug.zoo.scheduler_for``: warm-up, hold, cosine), and print validation accuracy per epoch
   for both optimizers.
4. Save ``model``, optimizer and scheduler ``state_dict`` mid-run, rebuild everything from the
   checkpoint, continue, and check the resumed run ends with exactly the weights of the
   uninterrupted one. Loading Adam's optimizer state into an ``opt6`` optimizer is refused.
5. The non-finite guard: a genome that overflows raises ``NonFiniteUpdateError`` by default
   (``nonfinite="raise"``); with ``nonfinite="skip"`` the bad update is skipped and counted in
   ``opt.nonfinite_steps``. Either way no NaN/inf ever reaches the weights.

Run it: ``python tutorials/02_use_a_discovered_optimizer.py`` (5 epochs, about 10 s) or with
``--full`` (30 epochs, about 20 s). It writes its checkpoint into ``--workdir``.
"""

from __future__ import annotations

import math

import _tutorial
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

import nosplug
from nosplug.optim import NonFiniteUpdateError


def main(argv: list[str] | None = None) -> None:
    opts = _tutorial.parse_args(__doc__, "02", argv)
    # One thread: a model this small gains nothing from more, and on a busy machine intra-op
    # threads that wait for each other can make every step ten times slower.
    torch.set_num_threads(1)
    epochs = 30 if opts.full else 5
    batch_size = 32

    # ------------------------------------------------------------------------------------------
    _tutorial.step(1, "two optimizers from the zoo")
    # A zoo name or a path to a genome JSON file both work. The genome carries metadata: a
    # description, where it comes from, default hyperparameters and the schedule it was found with.
    opt6 = nosplug.zoo.load("opt6")
    adam = nosplug.zoo.load("adam")
    for name, genome in (("opt6", opt6), ("adam", adam)):
        print(f"{name}: {genome.formula()}")
        print(f"  description: {genome.meta.get('description')}")
        print(f"  default hyperparameters: {genome.meta.get('defaults')}")
        print(f"  paper's schedule: {genome.meta.get('schedule')}")
        print(f"  canonical hash: {genome.canonical_hash()}")
    # The [d](x) brackets are decay functions of t / T. They are why opt6 needs total_steps: without
    # the run length the optimizer could not know how far into the run a step is.

    # ------------------------------------------------------------------------------------------
    _tutorial.step(2, "data and model")
    # scikit-learn's digits: 1,797 8x8 grey images, embedded in the package (no download).
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_val = 360
    val_idx, train_idx = order[:n_val], order[n_val:]
    mean, std = x[train_idx].mean(), x[train_idx].std()  # statistics of the training part only
    x = (x - mean) / std
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    steps_per_epoch = math.ceil(len(y_train) / batch_size)
    total_steps = epochs * steps_per_epoch
    print(f"{len(y_train)} training and {len(y_val)} validation images; {epochs} epochs of")
    print(f"{steps_per_epoch} steps = {total_steps} optimizer steps (opt6 needs this number)")

    def make_model() -> nn.Module:
        torch.manual_seed(0)  # the same initial weights for every optimizer: a fair comparison
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 10),
        )

    print(f"model: small CNN with {sum(p.numel() for p in make_model().parameters()):,} weights")

    def accuracy(model: nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            acc = (model(x_val).argmax(1) == y_val).float().mean().item()
        model.train()
        return acc

    def train_epoch(
        model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler | None, epoch: int
    ) -> float:
        # The batch order depends only on the epoch, so an interrupted run that resumes at epoch k
        # sees exactly the batches the uninterrupted run sees.
        perm = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(1000 + epoch))
        total = 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()  # once per optimizer step, as the schedule counts steps
            total += loss.item() * len(idx)
        return total / len(y_train)

    # ------------------------------------------------------------------------------------------
    _tutorial.step(3, "pick a learning rate, then train with opt6 and with Adam in a plain loop")

    def build(
        genome: nosplug.Genome, lr: float | None, steps: int
    ) -> tuple[nn.Module, nosplug.GraphOptimizer, LRScheduler | None]:
        model = make_model()
        # lr=None takes the genome's default (opt6: 0.01, adam: 1e-3). total_steps is required for
        # genomes with decay functions and harmless for the others.
        optimizer = nosplug.GraphOptimizer(model.parameters(), genome, lr=lr, total_steps=steps)
        # The paper's schedule for opt6 (warm-up, hold, cosine to 0; None for adam = constant lr).
        scheduler = nosplug.zoo.scheduler_for(genome, optimizer, total_steps=steps)
        return model, optimizer, scheduler

    def train(
        genome: nosplug.Genome, lr: float, n_epochs: int, verbose: bool
    ) -> tuple[list[float], nn.Module]:
        model, optimizer, scheduler = build(genome, lr, n_epochs * steps_per_epoch)
        accs = []
        for epoch in range(n_epochs):
            loss = train_epoch(model, optimizer, scheduler, epoch)
            accs.append(accuracy(model))
            if verbose:
                print(f"  epoch {epoch + 1:2d}: train loss {loss:.4f}  validation accuracy {accs[-1]:.4f}")
        return accs, model

    # A zoo default is a starting point, not a promise: the paper picked each genome's rate with a
    # sweep on its own problem (nosplug's evaluation does the same). opt6's update is roughly a
    # momentum term divided by about 1, so it wants SGD-like rates, while Adam's is normalised.
    # A short sweep per optimizer on a shortened run is cheap insurance.
    sweep_epochs = 5 if opts.full else 2
    rates = {"opt6": (0.01, 0.1, 1.0), "adam": (1e-3, 3e-3, 1e-2)}
    chosen: dict[str, float] = {}
    for name, genome in (("opt6", opt6), ("adam", adam)):
        results = {lr: max(train(genome, lr, sweep_epochs, verbose=False)[0]) for lr in rates[name]}
        chosen[name] = max(results, key=lambda lr: results[lr])
        shown = ", ".join(f"lr {lr:g}: {acc:.3f}" for lr, acc in results.items())
        print(f"{name} sweep ({sweep_epochs} epochs each): {shown} -> lr {chosen[name]:g}")

    curves: dict[str, list[float]] = {}
    final_weights: dict[str, list[torch.Tensor]] = {}
    for name, genome in (("opt6", opt6), ("adam", adam)):
        print(f"{name} at lr {chosen[name]:g} for {epochs} epochs:")
        curves[name], model = train(genome, chosen[name], epochs, verbose=True)
        final_weights[name] = [p.detach().clone() for p in model.parameters()]
    print("\nbest validation accuracy:")
    for name, accs in curves.items():
        print(f"  {name}: {max(accs):.4f} (last epoch {accs[-1]:.4f})")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(4, "checkpoint mid-run and resume")
    # GraphOptimizer is a torch.optim.Optimizer: state_dict() holds the per-parameter state the
    # genome reads (opt6: one EMA buffer per parameter) plus the step count, and a nosplug entry
    # with the genome's hash. The LR scheduler has its own state_dict, like any torch scheduler.
    half = epochs // 2 or 1
    model, optimizer, scheduler = build(opt6, chosen["opt6"], total_steps)
    assert scheduler is not None  # opt6's metadata names a schedule
    for epoch in range(half):
        train_epoch(model, optimizer, scheduler, epoch)
    checkpoint = opts.workdir / "opt6-checkpoint.pt"
    torch.save(
        {
            "epoch": half,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        },
        checkpoint,
    )
    saved_state = optimizer.state_dict()
    print(f"saved after epoch {half} to {checkpoint.name} ({checkpoint.stat().st_size:,} bytes)")
    print(f"  optimizer state per parameter: {sorted(saved_state['state'][0])}")
    print(f"  nosplug entry: {saved_state['nosplug']}")
    del model, optimizer, scheduler  # as if the process had died

    # A new process would rebuild model, optimizer and scheduler, then load the three states.
    model, optimizer, scheduler = build(opt6, chosen["opt6"], total_steps)
    assert scheduler is not None
    state = torch.load(checkpoint, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for epoch in range(state["epoch"], epochs):
        train_epoch(model, optimizer, scheduler, epoch)
    identical = all(torch.equal(a, b) for a, b in zip(model.parameters(), final_weights["opt6"]))
    print(f"resumed from epoch {state['epoch']} and finished: validation accuracy {accuracy(model):.4f}")
    print(f"resumed weights identical to the uninterrupted run: {identical}")

    # The state of another genome is refused rather than silently misread: Adam's EMA buffers mean
    # something else than opt6's.
    adam_model = make_model()
    adam_opt = nosplug.GraphOptimizer(adam_model.parameters(), adam)  # lr: the genome's default
    adam_model(x_train[:8]).sum().backward()
    adam_opt.step()
    try:
        optimizer.load_state_dict(adam_opt.state_dict())
        print("adam's state was accepted by an opt6 optimizer (unexpected)")
    except Exception as exc:  # nosplug reports it as a UserError with a readable message
        print(f"loading adam's state into opt6 is refused: {exc}")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(5, "the non-finite guard")
    # A search explores random genomes, and some explode: exp(1000 g) overflows float32 as soon as a
    # gradient element exceeds about 0.09. GraphOptimizer checks every update before applying it.
    risky = nosplug.Genome.from_dict(
        {
            "format": "nosplug-genome",
            "version": 1,
            "nodes": [
                {"id": "h0", "arity": 2, "unary": "identity", "binary": "mul",
                 "inputs": ["g", "const(value=1000.0)"]},
                {"id": "out", "arity": 1, "unary": "exp", "binary": "add", "inputs": ["h0"]},
            ],
        }
    )  # fmt: skip
    print(f"risky genome: {risky.formula()}")
    model = make_model()
    guarded = nosplug.GraphOptimizer(model.parameters(), risky, lr=1e-3)  # nonfinite="raise"
    perm = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))
    for number, i in enumerate(range(0, len(perm), batch_size), start=1):
        idx = perm[i : i + batch_size]
        before = [p.detach().clone() for p in model.parameters()]
        guarded.zero_grad()
        nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
        try:
            guarded.step()
        except NonFiniteUpdateError as exc:
            unchanged = all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
            print(f'nonfinite="raise", step {number}: {type(exc).__name__}: {exc}')
            print(f"  weights unchanged by the failed step: {unchanged}")
            break
    else:
        print("no step produced a non-finite update (unexpected)")

    # "skip" is what you want inside a long job: count the bad steps, keep going, decide later.
    model = make_model()
    skipping = nosplug.GraphOptimizer(model.parameters(), risky, lr=1e-3, nonfinite="skip")
    train_epoch(model, skipping, None, 0)
    finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    print(
        f'nonfinite="skip": {skipping.nonfinite_steps} of {steps_per_epoch} steps skipped in one epoch; '
        f"all weights finite: {finite}"
    )
    print("(the EMA state of a genome has already seen the gradient of a skipped step)")

    print(
        f"\nsummary: opt6_best={max(curves['opt6']):.4f} adam_best={max(curves['adam']):.4f} "
        f"opt6_lr={chosen['opt6']:g} adam_lr={chosen['adam']:g} resume_identical={identical} "
        f"skipped={skipping.nonfinite_steps}"
    )


if __name__ == "__main__":
    main()
