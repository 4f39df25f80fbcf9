"""Evaluation: pruner gates, the batched sweep against single runs, end-to-end on MNIST-5k."""

from __future__ import annotations

import copy
import math

import optuna
import pytest
import torch
from torch import nn

import nosplug
from nosplug.evaluation.batched import BatchedProgramOptimizer
from nosplug.evaluation.presets import PRESETS, get_preset
from nosplug.evaluation.pruners import FINAL, PRESCREEN, SWEEP, TrialReporter, pruner_for
from nosplug.optim import GraphOptimizer, compile_genome
from nosplug.optim.schedules import WarmupHoldCosine, cycled_momentum, warmup_hold_cosine_factor
from nosplug.tasks.grouped import GroupedConvNet


def _trial(task, preset=None):
    """A trial whose pruner decides ``preset``'s gates (the classification task's by default)."""
    from nosplug.tasks.classification import ClassificationTask

    if preset is None:
        task, preset = ClassificationTask("digits"), task
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(), direction="maximize", pruner=pruner_for(task, preset)
    )
    return study.ask()


@pytest.mark.parametrize(
    ("stage", "epoch", "value", "pruned"),
    [
        (PRESCREEN, 0, 0.24, True),
        (PRESCREEN, 0, 0.26, False),
        (SWEEP, 0, 0.39, True),
        (SWEEP, 0, 0.41, False),
        (FINAL, 3, 0.10, False),  # floor not active before epoch index 4
        (FINAL, 4, 0.39, True),
        (FINAL, 4, 0.41, False),
        (FINAL, 9, float("nan"), True),
        (PRESCREEN, 0, float("inf"), True),
    ],
)
def test_each_gate_decides_through_the_pruner(stage, epoch, value, pruned) -> None:
    trial = _trial(PRESETS["paper"])
    assert TrialReporter(trial).gate(stage, value, epoch) is pruned
    # the gate value is published where the pruner (and anyone reading the trial) sees it
    stored = trial.study.trials[0].user_attrs["gate"]
    assert stored["stage"] == stage and stored["epoch"] == epoch


def test_gate_thresholds_are_preset_settings() -> None:
    strict = PRESETS["paper"].with_overrides({"prescreen_gate": 0.5})
    assert TrialReporter(_trial(strict)).gate(PRESCREEN, 0.45)
    assert not TrialReporter(_trial(PRESETS["paper"])).gate(PRESCREEN, 0.45)
    assert PRESETS["paper"].prescreen_gate is None  # unset: the task's own gate (0.25 for accuracy)


def test_a_minimised_metric_is_gated_from_above() -> None:
    from nosplug.evaluation.pruners import GatePruner

    p = GatePruner(2.0, 1.5, 1.8, 0, direction="minimize")
    assert p.passes(PRESCREEN, 1.9) and not p.passes(PRESCREEN, 2.1)
    assert p.passes(SWEEP, 1.5) and not p.passes(FINAL, 1.9, epoch=3)


def test_changing_the_surrogate_drops_the_old_surrogates_options() -> None:
    quick = get_preset("quick")
    assert quick.surrogate == "convnet" and "base" in quick.surrogate_options
    assert quick.with_overrides({"surrogate": "mlp"}).surrogate_options == {}
    mlp = quick.with_overrides({"surrogate": "mlp", "surrogate_options": {"hidden": [32]}})
    assert mlp.surrogate_options == {"hidden": [32]}
    assert quick.with_overrides({"surrogate": "convnet"}).surrogate_options == quick.surrogate_options


def test_preset_overrides_are_validated() -> None:
    with pytest.raises(nosplug.errors.UserError, match=r"evaluation\.sweep_stepz: unknown"):
        get_preset("quick").with_overrides({"sweep_stepz": 3})
    with pytest.raises(nosplug.errors.UserError, match=r"evaluation\.final_steps: expected a number"):
        get_preset("quick").with_overrides({"final_steps": "many"})
    with pytest.raises(nosplug.errors.UserError, match="must be positive"):
        get_preset("quick").with_overrides({"final_steps": 0})
    with pytest.raises(nosplug.errors.UserError, match="unknown evaluation preset"):
        get_preset("huge")


def _tiny_convnet(seed: int, base: int = 4) -> nn.Module:
    from nosplug.tasks.surrogates import build_surrogate

    torch.manual_seed(seed)
    model = build_surrogate("convnet", (1, 8, 8), 10, base=base)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0  # dropout masks differ between layouts; everything else must agree
    return model


@pytest.mark.parametrize("name", ["adam", "opt7", "momentum", "a5"])
def test_grouped_sweep_matches_separate_single_runs(name: str) -> None:
    """Each copy of the grouped model follows exactly the run a single model would make."""
    genome = nosplug.zoo.load(name)
    lrs = [0.3, 0.03, 0.003]
    T, steps = 40, 12
    single = _tiny_convnet(0)
    grouped = GroupedConvNet.from_models([single] * len(lrs), 10, base=4, dropout=0.0)
    refs = [copy.deepcopy(single) for _ in lrs]
    # A conv bias right before BatchNorm has a mathematically zero gradient; its float noise
    # differs between the two layouts and Adam-like rules amplify noise to full-size steps, so
    # those biases are frozen here (everything else, BN statistics included, must agree).
    for model in (grouped, *refs):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.bias.requires_grad_(False)
    trainable = [p for p in grouped.parameters() if p.requires_grad]
    bopt = BatchedProgramOptimizer(trainable, compile_genome(genome), lrs, T)
    ropts = [
        GraphOptimizer([p for p in m.parameters() if p.requires_grad], genome, lr=lr, total_steps=T)
        for m, lr in zip(refs, lrs)
    ]
    scheds = [WarmupHoldCosine(o, T, 5, 0, cycle_momentum=True) for o in ropts]
    gen = torch.Generator().manual_seed(3)
    for t in range(steps):
        x = torch.rand(16, 1, 8, 8, generator=gen)
        y = torch.randint(0, 10, (16,), generator=gen)
        logits = grouped(x)
        loss = nn.functional.cross_entropy(
            logits.permute(0, 2, 1), y.unsqueeze(1).expand(-1, len(lrs)), reduction="none"
        ).mean(0)
        bopt.zero_grad()
        loss.sum().backward()
        bopt.step(warmup_hold_cosine_factor(t, T, 5, 0), cycled_momentum(t, T, 5, 0))
        for m, o, s in zip(refs, ropts, scheds):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
            s.step()
    for k, ref in enumerate(refs):
        exported = grouped.export(k, copy.deepcopy(single))
        for (n, a), b in zip(exported.state_dict().items(), ref.state_dict().values()):
            if a.is_floating_point():
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (name, k, n)


def test_frozen_copies_keep_their_weights() -> None:
    single = _tiny_convnet(0)
    grouped = GroupedConvNet.from_models([single] * 2, 10, base=4, dropout=0.0)
    bopt = BatchedProgramOptimizer(
        list(grouped.parameters()), compile_genome(nosplug.zoo.load("sgd")), [1.0, 1.0], 10
    )
    bopt.freeze(1)
    before = copy.deepcopy(grouped)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    grouped(x).permute(0, 2, 1).log_softmax(1).gather(1, y[:, None, None].expand(-1, 1, 2)).sum().backward()
    bopt.step(1.0)
    a0 = grouped.export(0, copy.deepcopy(single))
    a1 = grouped.export(1, copy.deepcopy(single))
    b1 = before.export(1, copy.deepcopy(single))
    b0 = before.export(0, copy.deepcopy(single))
    assert all(torch.equal(p, q) for p, q in zip(a1.parameters(), b1.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a0.parameters(), b0.parameters()))


@pytest.fixture(scope="module")
def mnist():
    """(the MNIST-5k classification task, its seed-0 splits)."""
    from nosplug.tasks.classification import ClassificationTask

    task = ClassificationTask("mnist5k")
    return task, task.load(0)


@pytest.mark.slow
def test_adam_reaches_a_convnet_accuracy_on_mnist5k(mnist) -> None:
    """Quick preset, ConvNet base 16, 400 final steps on 4 000 MNIST images: >= 90% validation."""
    from nosplug.evaluation.evaluate import evaluate_genome
    from nosplug.evaluation.runs import for_stage

    task, data = mnist
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(),
        direction="maximize",
        pruner=pruner_for(*for_stage(task, "quick")),
    )
    trial = study.ask()
    res = evaluate_genome(nosplug.zoo.load("adam-paper"), task, data, "quick", reporter=TrialReporter(trial))
    assert res.status == "complete", res.reason
    assert res.fitness >= 0.90
    assert res.chosen_lr in get_preset("quick").all_lrs
    assert len(res.lr_scores) == 7
    assert res.val_curve and max(res.val_curve) == res.fitness
    # the validation curve is the trial's intermediate values, keyed by training step
    stored = study.trials[0].intermediate_values
    assert sorted(stored) == res.val_steps and [stored[s] for s in res.val_steps] == res.val_curve
    assert len(res.train_curve) == len(res.val_curve)


def test_degenerate_genome_is_pruned_before_the_final_run(mnist) -> None:
    from nosplug.evaluation.evaluate import evaluate_genome

    # sign-flipped by nothing, but a tiny constant-scale update: passes integrity (it moves),
    # cannot train a ConvNet -> pruned at the pre-screen gate, never reaches the final run.
    genome = nosplug.Genome.from_json(
        '{"format": "nosplug-genome", "version": 1, "nodes": ['
        '{"id": "h0", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["w_1e-6"]},'
        '{"id": "out", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["h0"]}]}'
    )
    small = get_preset("smoke").with_overrides({"integrity": False})
    res = evaluate_genome(genome, *mnist, small)
    assert res.status == "pruned" and res.stage == "prescreen"
    assert res.final_steps_run == 0 and res.chosen_lr is None
    assert "pre-screen: best training accuracy" in res.reason and "< 0.25" in res.reason


def test_integrity_failure_stops_evaluation(mnist) -> None:
    from nosplug.evaluation.evaluate import evaluate_genome

    genome = nosplug.Genome.from_json(
        '{"format": "nosplug-genome", "version": 1, "nodes": ['
        '{"id": "h0", "arity": 1, "unary": "min0", "binary": "add", "inputs": ["sign_g"]},'
        '{"id": "out", "arity": 1, "unary": "relu", "binary": "add", "inputs": ["h0"]}]}'
    )
    res = evaluate_genome(genome, *mnist, "smoke")
    assert res.status == "pruned" and res.stage == "integrity" and "integrity" in res.reason


def test_final_run_nan_terminates_with_best_so_far(mnist, monkeypatch) -> None:
    """TerminateOnNaN semantics: the run stops at the first non-finite loss, without validating
    the partial epoch, and the validations before it still count. The inputs turn NaN at step
    15 (mid second epoch), so the run certainly reaches NaN termination."""
    from nosplug.evaluation.runs import final_run, for_stage

    task, data = mnist
    real = type(task).batches

    def poisoned(self, data, seed, batch_size=None):
        stream, count = real(self, data, seed, batch_size), [0]

        class Poisoned:
            def next(self):
                count[0] += 1
                x, y = stream.next()
                return (x * float("nan") if count[0] > 15 else x), y

        return Poisoned()

    monkeypatch.setattr(type(task), "batches", poisoned)
    task, preset = for_stage(task, get_preset("smoke").with_overrides({"final_floor": 0.0}))
    trial = _trial(task, preset)
    run = final_run(nosplug.zoo.load("adam"), 1e-3, task, data, preset, TrialReporter(trial))
    assert run.diverged and "non-finite" in run.why
    assert run.steps == 15 and run.val_steps == [10]
    assert run.best == run.val_curve[0] and math.isfinite(run.best)
    assert trial.study.trials[0].intermediate_values == {10: run.best}


def test_a_run_that_diverges_before_any_validation_has_no_fitness(mnist, monkeypatch) -> None:
    from nosplug.evaluation import evaluate
    from nosplug.evaluation.runs import SweepResult

    task, data = mnist
    monkeypatch.setattr(type(task), "evaluate", lambda *a, **k: pytest.fail("a diverged epoch was validated"))
    preset = get_preset("smoke").with_overrides({"final_floor": 0.0, "integrity": False})
    monkeypatch.setattr(
        evaluate, "sweep", lambda genome, lrs, *a, **k: SweepResult([0.9] * len(lrs), [False] * len(lrs))
    )
    res = evaluate.evaluate_genome(nosplug.zoo.load("sgd"), task, _nan_data(data), preset)
    assert res.status == "nonfinite" and res.fitness is None and res.stage == "final"


def test_every_prescreen_rate_diverging_is_nonfinite_not_pruned(mnist) -> None:
    from nosplug.evaluation.evaluate import evaluate_genome

    task, data = mnist
    preset = get_preset("smoke").with_overrides({"integrity": False})
    res = evaluate_genome(nosplug.zoo.load("sgd"), task, _nan_data(data), preset)
    assert res.status == "nonfinite" and res.stage == "prescreen", res.reason


def _nan_data(data):
    import dataclasses

    from nosplug.tasks import Split

    return dataclasses.replace(data, train=Split(data.train.x * float("nan"), data.train.y))
