"""GraphOptimizer against independent references: torch.optim and the published formulas."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import nosplug
from nosplug.optim import GraphOptimizer, NonFiniteUpdateError, WarmupHoldCosine

STEPS = 100


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4))


def _data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(64, 12, generator=gen), torch.randint(0, 4, (64,), generator=gen)


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int = STEPS, sched=None) -> list[float]:
    x, y = _data()
    losses = []
    for i in range(steps):
        opt.zero_grad()
        # vary the batch so moments see changing gradients
        idx = torch.arange(64).roll(i * 7)[:48]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
    return losses


def _max_rel_diff(a: nn.Module, b: nn.Module) -> float:
    worst = 0.0
    for pa, pb in zip(a.parameters(), b.parameters()):
        worst = max(worst, ((pa - pb).norm() / pb.norm().clamp_min(1e-12)).item())
    return worst


REFERENCES = {
    "adam": lambda p: torch.optim.Adam(p),
    "rmsprop": lambda p: torch.optim.RMSprop(p),
    "sgd": lambda p: torch.optim.SGD(p),
    "momentum": lambda p: torch.optim.SGD(p, momentum=0.9),
    "nesterov": lambda p: torch.optim.SGD(p, momentum=0.9, nesterov=True),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_zoo_genome_matches_torch_optimizer_step_for_step(name: str) -> None:
    ref_model = _model()
    our_model = copy.deepcopy(ref_model)
    ref_opt = REFERENCES[name](ref_model.parameters())
    our_opt = GraphOptimizer(our_model.parameters(), nosplug.zoo.load(name))
    # both use the reference's default learning rate (and momentum)
    assert our_opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]
    x, y = _data()
    for i in range(STEPS):
        for model, opt in ((ref_model, ref_opt), (our_model, our_opt)):
            opt.zero_grad()
            idx = torch.arange(64).roll(i * 7)[:48]
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    assert _max_rel_diff(our_model, ref_model) < 1e-5
    # the runs really moved the weights, so the comparison means something
    assert _max_rel_diff(our_model, _model()) > 1e-3


def _bello(sign_kind: str, lr: float, steps: int = 30) -> tuple[nn.Module, nn.Module]:
    """Hand-written AddSign/PowerSign (Bello et al.) against the zoo genomes."""
    ref_model, our_model = _model(), _model()
    our_opt = GraphOptimizer(our_model.parameters(), nosplug.zoo.load(sign_kind), lr=lr)
    m = [torch.zeros_like(p) for p in ref_model.parameters()]
    x, y = _data()
    for i in range(steps):
        idx = torch.arange(64).roll(i * 7)[:48]
        for model in (ref_model, our_model):
            model.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        our_opt.step()
        with torch.no_grad():
            for p, mi in zip(ref_model.parameters(), m):
                mi.mul_(0.9).add_(p.grad, alpha=0.1)
                agree = torch.sign(p.grad) * torch.sign(mi)
                factor = 1 + agree if sign_kind == "addsign" else torch.exp(agree)
                p.sub_(lr * factor * p.grad)
    return ref_model, our_model


@pytest.mark.parametrize("kind", ["addsign", "powersign"])
def test_sign_genomes_match_published_formulas(kind: str) -> None:
    ref, ours = _bello(kind, lr=0.05)
    assert _max_rel_diff(ours, ref) < 1e-5


def test_param_groups_have_their_own_hyperparameters() -> None:
    ref_model = _model()
    our_model = copy.deepcopy(ref_model)
    groups = lambda m: [  # noqa: E731
        {"params": list(m[0].parameters()), "lr": 0.01},
        {"params": list(m[2].parameters()) + list(m[4].parameters()), "lr": 0.002},
    ]
    ref_opt = torch.optim.Adam(groups(ref_model))
    our_opt = GraphOptimizer(groups(our_model), "adam")
    _train(ref_model, ref_opt, 30)
    _train(our_model, our_opt, 30)
    assert _max_rel_diff(our_model, ref_model) < 1e-5


def test_state_dict_round_trip_mid_run_continues_identically() -> None:
    torch.manual_seed(0)
    a = _model()
    opt_a = GraphOptimizer(a.parameters(), "opt9", lr=0.01, total_steps=80)
    _train(a, opt_a, 40)
    b = copy.deepcopy(a)
    opt_b = GraphOptimizer(b.parameters(), "opt9", lr=0.5, total_steps=80)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert opt_b.param_groups[0]["lr"] == 0.01
    _train(a, opt_a, 40)
    _train(b, opt_b, 40)
    assert _max_rel_diff(a, b) == 0.0


def test_state_dict_of_another_genome_is_rejected() -> None:
    a = _model()
    opt_a = GraphOptimizer(a.parameters(), "adam")
    _train(a, opt_a, 2)
    opt_b = GraphOptimizer(a.parameters(), "rmsprop")
    with pytest.raises(nosplug.errors.UserError, match="saved for genome"):
        opt_b.load_state_dict(opt_a.state_dict())


def test_only_state_the_active_graph_uses_is_stored() -> None:
    model = _model()
    opt = GraphOptimizer(model.parameters(), "adam")
    _train(model, opt, 1)
    keys = set(opt.state[next(model.parameters())])
    assert keys == {"step", "ema_g1_b0.9", "ema_g2_b0.999"}
    sgd = GraphOptimizer(model.parameters(), "sgd")
    _train(model, sgd, 1)
    assert set(sgd.state[next(model.parameters())]) == {"step"}


def test_nonfinite_update_never_reaches_the_weights() -> None:
    model = _model()
    before = copy.deepcopy(model)
    opt = GraphOptimizer(model.parameters(), "sgd", lr=0.1)
    for p in model.parameters():
        p.grad = torch.full_like(p, float("nan"))
    with pytest.raises(NonFiniteUpdateError, match="weights were not changed"):
        opt.step()
    assert _max_rel_diff(model, before) == 0.0
    skip = GraphOptimizer(model.parameters(), "sgd", lr=0.1, nonfinite="skip")
    skip.step()
    assert skip.last_step_nonfinite and skip.nonfinite_steps == 1
    assert _max_rel_diff(model, before) == 0.0


def test_decayed_genome_needs_total_steps() -> None:
    with pytest.raises(nosplug.errors.UserError, match="total_steps"):
        GraphOptimizer(_model().parameters(), "opt7")


@pytest.mark.parametrize("name", nosplug.zoo.names())
def test_every_zoo_genome_trains_a_small_model_without_nan(name: str) -> None:
    torch.manual_seed(0)
    model = _model()
    genome = nosplug.zoo.load(name)
    steps = 60
    opt = GraphOptimizer(model.parameters(), genome, total_steps=steps, seed=0)
    sched = nosplug.zoo.scheduler_for(genome, opt, steps) or WarmupHoldCosine(opt, steps, 6)
    losses = _train(model, opt, steps, sched)
    assert all(math.isfinite(v) for v in losses)
    assert opt.nonfinite_steps == 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_warmup_hold_cosine_shape_and_momentum_cycle() -> None:
    model = _model()
    opt = GraphOptimizer(model.parameters(), "nesterov", lr=1.0)
    sched = WarmupHoldCosine(opt, total_steps=100, warmup_steps=10, hold_steps=20, cycle_momentum=True)
    lrs, mus = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        mus.append(opt.param_groups[0]["momentum"])
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == 1.0 and lrs[30] == 1.0
    assert lrs[65] == pytest.approx(0.5 * (1 + math.cos(math.pi * 35 / 70)))
    assert mus[0] == pytest.approx(0.95) and mus[10] == pytest.approx(0.85) and mus[29] == pytest.approx(0.85)
    assert mus[99] == pytest.approx(0.85 + 0.1 * 69 / 70)


def test_scheduler_works_with_plain_torch_adam() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    sched = WarmupHoldCosine(opt, 50, 5, 5, cycle_momentum=True)
    for _ in range(5):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.85)


def test_params_without_grad_and_added_groups_follow_torch() -> None:
    """Parameters that skip steps keep their own step count; groups added later work."""
    ref_model, our_model = _model(), _model()
    ref_opt = torch.optim.Adam(list(ref_model[0].parameters()) + list(ref_model[2].parameters()))
    our_opt = GraphOptimizer(list(our_model[0].parameters()) + list(our_model[2].parameters()), "adam")
    x, y = _data()
    for i in range(20):
        if i == 5:
            ref_opt.add_param_group({"params": list(ref_model[4].parameters()), "lr": 3e-3})
            our_opt.add_param_group({"params": list(our_model[4].parameters()), "lr": 3e-3})
        for model, opt in ((ref_model, ref_opt), (our_model, our_opt)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            if i % 3 == 0:  # the first layer sometimes gets no gradient
                for p in model[0].parameters():
                    p.grad = None
            opt.step()
    assert _max_rel_diff(our_model, ref_model) < 1e-5
    assert our_opt.state[our_model[0].weight]["step"] == 13


COMPILED = ["adam", "nesterov", "opt6", "a5"]  # plain, momentum, decays, per-tensor norm


@pytest.mark.slow
@pytest.mark.parametrize("name", COMPILED)
def test_compiled_execution_matches_eager_step_for_step(name: str) -> None:
    """compile=True runs the same arithmetic fused: same weights, state and schedules."""
    genome = nosplug.zoo.load(name)
    runs = {}
    for compiled in (False, True):
        model = _model()
        opt = GraphOptimizer(model.parameters(), genome, lr=1e-2, total_steps=40, compile=compiled)
        sched = nosplug.zoo.scheduler_for(genome, opt, 40) or WarmupHoldCosine(opt, 40, 4)
        _train(model, opt, 25, sched)
        assert opt.compiled is compiled
        runs[compiled] = (model, opt)
    (eager, e_opt), (fused, f_opt) = runs[False], runs[True]
    assert _max_rel_diff(fused, eager) < 1e-5
    for pe, pf in zip(eager.parameters(), fused.parameters()):
        for key, value in e_opt.state[pe].items():
            assert torch.allclose(torch.as_tensor(f_opt.state[pf][key]), torch.as_tensor(value), atol=1e-6)


@pytest.mark.slow
def test_compiled_execution_still_guards_against_nonfinite_updates() -> None:
    model = _model()
    before = copy.deepcopy(model)
    opt = GraphOptimizer(model.parameters(), "adam", compile=True, nonfinite="skip")
    for p in model.parameters():
        p.grad = torch.full_like(p, float("inf"))
    opt.step()
    assert opt.last_step_nonfinite and _max_rel_diff(model, before) == 0.0


def test_stochastic_genomes_run_eagerly_even_when_compile_is_asked() -> None:
    genome = nosplug.Genome.from_dict(
        {
            "format": "nosplug-genome",
            "version": 1,
            "nodes": [
                {"id": "h0", "arity": 1, "unary": "drop0.5", "binary": "add", "inputs": ["g"]},
                {"id": "out", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["h0"]},
            ],
        }
    )
    opt = GraphOptimizer(_model().parameters(), genome, compile=True, seed=0)
    assert opt.compiled is False
