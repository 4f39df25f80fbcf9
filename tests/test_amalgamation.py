"""Amalgamation: teachers against torch / their formulas, losses, perturbations, student, files."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nosplug.amalgamation import StudentOptimizer, load, save
from nosplug.amalgamation.losses import log_distance, meta_term, reduce_mean, reduce_minmax
from nosplug.amalgamation.student import ChoiceOptimizer, RNNProp
from nosplug.amalgamation.teachers import TeacherError, resolve_teacher
from nosplug.amalgamation.train import adaptive_clip_, perturbed
from nosplug.errors import UserError


def _grads(n: int = 50, steps: int = 50, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=gen, dtype=torch.float64) for _ in range(steps)]


def _run_teacher(ref: str, grads, theta0: torch.Tensor) -> torch.Tensor:
    t = resolve_teacher(ref)
    theta = theta0.clone()
    st = t.init(theta)
    for g in grads:
        d, st = t.step(g, st, theta)
        theta = theta - d
    return theta


def _run_torch(opt_cls, kw, grads, theta0) -> torch.Tensor:
    p = theta0.clone().requires_grad_(True)
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a - b).abs() / b.abs().clamp_min(1e-12)).max() < 1e-5)


@pytest.mark.parametrize(
    ("ref", "opt_cls", "kw"),
    [
        ("adam_std(lr=0.001)", torch.optim.Adam, {"lr": 1e-3}),
        ("rmsprop(lr=0.005, eps=0)", torch.optim.RMSprop, {"lr": 5e-3, "alpha": 0.9, "eps": 0.0}),
        ("sgd", torch.optim.SGD, {"lr": 0.2}),
        # EMA momentum at lr 0.5 is heavy-ball SGD(momentum 0.9) at lr 0.05 (spec §2.2)
        ("momentum", torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
        ("torch:Adagrad(lr=0.01)", torch.optim.Adagrad, {"lr": 0.01}),
        ("genome:adam(lr=0.001)", torch.optim.Adam, {"lr": 1e-3}),
    ],
)
def test_teachers_match_torch_step_for_step(ref, opt_cls, kw) -> None:
    grads = _grads()
    theta0 = torch.randn(50, dtype=torch.float64)
    if ref.startswith("genome:"):  # GraphOptimizer runs in float32 like most models
        grads = [g.float() for g in grads]
        theta0 = theta0.float()
    assert _close(_run_teacher(ref, grads, theta0), _run_torch(opt_cls, kw, grads, theta0))


def _moments(grads):
    m = torch.zeros_like(grads[0])
    v = torch.zeros_like(grads[0])
    for g in grads:
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        yield g, m, v


def test_reference_adam_and_sign_teachers_match_their_formulas() -> None:
    grads = _grads(steps=30)
    theta0 = torch.randn(50, dtype=torch.float64)
    refs = {
        name: theta0.clone() for name in ("adam", "addsign", "powersign", "addsign_sign", "powersign_sign")
    }
    for g, m, v in _moments(grads):
        r = torch.sqrt(v + 1e-10)
        smooth = torch.tanh(g / r) * torch.tanh(m / r)
        hard = torch.sign(g) * torch.sign(m)
        refs["adam"] -= 5e-3 * (m / 0.1) / torch.sqrt(v / 0.001 + 1e-10)
        refs["addsign"] -= 0.1 * (1 + smooth) * g
        refs["powersign"] -= 0.1 * torch.exp(smooth) * g
        refs["addsign_sign"] -= 0.1 * (1 + hard) * g
        refs["powersign_sign"] -= 0.1 * torch.exp(hard) * g
    for name, expected in refs.items():
        assert _close(_run_teacher(name, grads, theta0), expected), name


def test_teacher_reference_errors_are_clear() -> None:
    with pytest.raises(TeacherError, match="unknown teacher 'adamw'"):
        resolve_teacher("adamw")
    with pytest.raises(TeacherError, match=r"torch\.optim has no optimizer 'Adamm'"):
        resolve_teacher("torch:Adamm(lr=0.1)")
    with pytest.raises(TeacherError, match=r"lr must be a number"):
        resolve_teacher("adam(lr=fast)")


def test_losses_on_hand_computed_values() -> None:
    d = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 4.0]])  # 2 teachers x 3 steps
    assert float(reduce_mean(d)) == pytest.approx(15 / 6)
    assert float(reduce_minmax(d)) == pytest.approx((3 + 5 + 4) / 3)
    student = torch.tensor([0.0, 0.0, 0.0, 0.0])
    teachers = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0]])
    # log(0.5 * sum sq + 1e-10) - log(n)
    expected = [math.log(0.5 * 4 + 1e-10) - math.log(4), math.log(0.5 * 4 + 1e-10) - math.log(4)]
    assert log_distance(student, teachers).tolist() == pytest.approx(expected)
    assert float(meta_term(torch.tensor(0.5), torch.tensor(1.0))) == pytest.approx(math.log(0.5))


def test_random_perturbation_has_the_stated_relative_scale() -> None:
    torch.manual_seed(0)
    params = {"w": torch.randn(200, 80) * 3.0, "b": torch.full((80,), 0.5)}
    sigma = 5e-4
    noisy = perturbed(params, sigma)
    for k, p in params.items():
        rms = float(torch.sqrt((p.pow(2) + 1e-8).mean()))
        rel = float((noisy[k] - p).std()) / rms
        assert rel == pytest.approx(sigma, rel=0.1), k
    again = perturbed(params, sigma)
    assert not torch.equal(again["w"], noisy["w"]), "noise is redrawn at every use"


def test_adversarial_step_is_clipped_to_epsilon_times_the_weight_norm() -> None:
    from nosplug.amalgamation.problems import get_problem
    from nosplug.amalgamation.teachers import resolve_teacher as rt
    from nosplug.amalgamation.train import MetaConfig, MetaTrainer
    from nosplug.primitives.registry import registry

    cfg = MetaConfig(
        unroll=5, warmup_steps=2, instances=1, val_instances=1, perturbation="adversarial", epsilon=1e-3
    )
    student = RNNProp()
    loss = registry().get("amalgamation_losses", "minmax")
    trainer = MetaTrainer(student, [rt("adam")], loss, cfg, get_problem("digits_mlp"))
    seen = {}
    original = trainer.unroller.truncation

    def spy(model, s, st, teachers, batches, alpha, params, **kw):
        if "probe" not in seen:
            seen["probe"] = True
        else:
            seen["shift"] = {k: (params[k] - p).detach() for k, p in student.named_parameters()}
            seen["norms"] = {k: float(p.detach().norm()) for k, p in student.named_parameters()}
        return original(model, s, st, teachers, batches, alpha, params, **kw)

    trainer.unroller.truncation = spy
    gen = torch.Generator().manual_seed(0)
    model, s, st, teachers = trainer.unroller.start(0, gen)
    trainer._meta_step(model, s, st, teachers, trainer.unroller.batches(gen), 0.2)
    for k, norm in seen["norms"].items():
        assert float(seen["shift"][k].norm()) <= 1e-3 * norm * 1.0001 + 1e-12, k
    assert any(float(v.norm()) > 0 for v in seen["shift"].values())


def test_adaptive_gradient_clipping() -> None:
    m = nn.Linear(4, 4)
    with torch.no_grad():
        m.weight.fill_(1.0)  # ||W|| = 4
    m.weight.grad = torch.full((4, 4), 10.0)  # ||G|| = 40 > 0.1 * 4
    m.bias.grad = torch.full((4,), 1e-6)
    adaptive_clip_(m, 0.1)
    assert float(m.weight.grad.norm()) == pytest.approx(0.4)
    assert float(m.bias.grad.norm()) == pytest.approx(2e-6)


def test_student_sizes_match_the_spec() -> None:
    assert sum(p.numel() for p in RNNProp().parameters()) == 5141
    assert sum(p.numel() for p in ChoiceOptimizer(["rmsprop", "adam"]).parameters()) == 5482
    large = ["adam", "rmsprop", "sgd", "momentum", "addsign", "powersign"]
    assert sum(p.numel() for p in ChoiceOptimizer(large).parameters()) == 5886
    forget = RNNProp().b1[20:40]
    assert torch.equal(forget, torch.ones(20)), "Keras unit_forget_bias"


def test_rnnprop_features_use_constant_debiasing() -> None:
    """At t = 1, m~ = g~ = g / sqrt(g^2 + eps) ~ sign(g): the first update depends on sign only."""
    torch.manual_seed(0)
    r = RNNProp()
    g = torch.tensor([1e-3, 5.0, -2.0])
    d1, _ = r(g, r.init_state(3, g))
    d2, _ = r(torch.sign(g), r.init_state(3, g))
    assert torch.allclose(d1, d2, atol=1e-5)
    assert float(d1.abs().max()) <= 0.1


def test_save_load_round_trip_and_student_optimizer_trains(tmp_path) -> None:
    torch.manual_seed(0)
    r = RNNProp()
    save(r, tmp_path / "s")
    assert (tmp_path / "s.json").exists() and (tmp_path / "s.pt").exists()
    loaded = load(tmp_path / "s")
    g = torch.randn(10)
    assert torch.equal(r(g, r.init_state(10, g))[0], loaded(g, loaded.init_state(10, g))[0])
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    opt = load(tmp_path / "s", model.parameters(), warmup=20, warmup_lr=0.05)
    assert isinstance(opt, StudentOptimizer)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss)
    assert float(loss) < first
    with pytest.raises(UserError, match="no learned optimizer here"):
        load(tmp_path / "missing")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[run]\nname = 'x'\n[meta]\nunrol = 3\n", "meta.unrol: unknown key"),
        ("[run]\nname = 'x'\n[meta]\nunroll = 'long'\n", "meta.unroll: expected int"),
        ("[run]\nname = 'x'\n[teachers]\nrefs = ['adamw']\n", "teachers.refs: unknown teacher 'adamw'"),
        ("[run]\nname = 'x'\n[loss]\nname = 'maxmin'\n", "unknown amalgamation loss 'maxmin'"),
        ("[run]\nname = 'x'\nproblem = 'imagenet'\n", "run.problem: unknown problem 'imagenet'"),
        ("[runn]\nname = 'x'\n", "runn: unknown section"),
    ],
)
def test_bad_amalgamation_configs_name_the_key(tmp_path, text: str, message: str) -> None:
    from nosplug.amalgamation.run import create_run

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        create_run(path, storage=f"journal:{tmp_path / 'j.log'}")


def test_a_genome_teacher_with_decays_schedules_them_over_the_given_run_length() -> None:
    """opt6's decays depend on t / T: T comes from the caller (or total_steps=N), never a guess."""
    from nosplug.amalgamation.run import teacher_horizon

    with pytest.raises(TeacherError, match=r"give the run length \(genome:opt6\(total_steps=N\)\)"):
        resolve_teacher("genome:opt6")
    grads = [g.float() for g in _grads(steps=12)]
    theta0 = torch.randn(50)
    explicit = resolve_teacher("genome:opt6(lr=0.01, total_steps=12)")
    from_caller = resolve_teacher("genome:opt6(lr=0.01)", total_steps=12)
    other_length = resolve_teacher("genome:opt6(lr=0.01)", total_steps=1000)

    def run(t):
        state, theta = t.init(theta0), theta0.clone()
        for g in grads:
            d, state = t.step(g, state, theta)
            theta = theta - d
        return theta

    assert torch.equal(run(explicit), run(from_caller))
    assert not torch.equal(run(explicit), run(other_length)), "T changes the decays"
    raw = {"meta": {"unroll": 20, "warmup_steps": 20, "depths": [1, 2, 4]}}
    assert teacher_horizon(raw) == 20 + 4 * 20


def test_a_genome_teacher_rejects_options_it_does_not_have() -> None:
    with pytest.raises(TeacherError, match="unknown option"):
        resolve_teacher("genome:adam(lr0=0.1)")
