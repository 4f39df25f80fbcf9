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
    with pytest.raises(TeacherError, match=r"lr=fast is not a Python literal"):
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


# ----------------------------------------------------------------------------- curriculum and teachers
TINY_META = {
    "unroll": 3,
    "warmup_steps": 2,
    "depths": [1],
    "val_depths": [1],
    "alphas": [0.2],
    "instances": 1,
    "val_instances": 1,
    "min_periods": 2,
    "max_periods": 2,
    "patience": 0,
    "random_scaling": False,
}


def _tiny_run(tmp_path, loss: str = "mean", meta: dict | None = None, choice: dict | None = None) -> str:
    """Create run ``tiny`` (digits MLP, 3-step unrolls) in a journal under tmp_path; returns the URL."""
    import json

    from nosplug.amalgamation.run import create_run

    lines = ["version = 1", "[run]", 'name = "tiny"', "seed = 1", 'problem = "digits_mlp"']
    lines += ["[loss]", f'name = "{loss}"', "[meta]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in {**TINY_META, **(meta or {})}.items()]
    if choice:
        lines += ["[choice]", *(f"{k} = {json.dumps(v)}" for k, v in choice.items())]
    (tmp_path / "tiny.toml").write_text("\n".join(lines) + "\n")
    url = f"journal:{tmp_path / 'journal.log'}"
    create_run(tmp_path / "tiny.toml", storage=url, checkpoint_dir=str(tmp_path / "ck"))
    return url


def _script_periods(monkeypatch, script: list[tuple[float, float]]) -> list[dict]:
    """Replace ``MetaTrainer.period`` by scripted (train loss, validation loss) results; returns its calls."""
    from nosplug.amalgamation.train import MetaTrainer, PeriodResult

    calls: list[dict] = []
    results = iter(script)

    def fake(self, stage, *args, **kwargs):
        calls.append({"stage": stage, **kwargs})
        train, val = next(results)
        return PeriodResult(train, val, 1, 0, [train])

    monkeypatch.setattr(MetaTrainer, "period", fake)
    return calls


def _keys(calls: list[dict]) -> list[tuple[int, int, int]]:
    return [(c["stage"], c["period"], c["attempt"]) for c in calls]


def test_a_stage_start_compares_its_training_loss_with_the_last_stages_best(monkeypatch, tmp_path) -> None:
    """Spec §4.4: the first period of a stage is judged by its training meta loss against the
    previous stage's best validation loss; later periods by validation against ref + 0.5·|ref|."""
    from nosplug.amalgamation.run import run

    url = _tiny_run(tmp_path, meta={"depths": [1, 1], "val_depths": [1, 1], "alphas": [0.2, 0.1]})
    calls = _script_periods(
        monkeypatch,
        [
            (9.0, 1.0),  # the very first period: no reference, never repeated
            (1.0, 1.4),  # 1.4 <= 1.0 + 0.5: kept; stage 0 ends, its best validation loss is 1.0
            (1.6, 0.2),  # stage start: training 1.6 > 1.0 + 0.5 -> repeated (validation 0.2 looks fine)
            (1.2, 0.8),  # 1.2 <= 1.5: kept
            (0.1, 1.3),  # 1.3 > 0.8 + 0.4 -> repeated
            (0.1, 1.1),  # kept
        ],
    )
    events: list[dict] = []
    summary = run("tiny", url, on_event=events.append)
    assert summary["done"]
    assert torch.tensor([1e-40]).mul(1).item() > 0, "the run left subnormals flushed for the whole process"
    assert _keys(calls) == [(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]
    repeats = [e for e in events if e["event"] == "repeat"]
    assert [(e["stage"], e["period"], e["compared"]) for e in repeats] == [
        (1, 0, "training"),
        (1, 1, "validation"),
    ]
    assert repeats[0]["ref"] == pytest.approx(1.0) and repeats[1]["ref"] == pytest.approx(0.8)


def test_a_repeated_period_draws_new_batches_and_new_noise(monkeypatch, tmp_path) -> None:
    """A blown-up period restarts from the previous weights but not from the same random stream:
    a bit-identical repeat would blow up again."""
    from nosplug.amalgamation import train
    from nosplug.amalgamation.run import run

    url = _tiny_run(tmp_path, meta={"perturbation": "random"})
    vals = iter([1.0, 100.0, 1.0])  # period 1 blows up once
    monkeypatch.setattr(train.MetaTrainer, "validate", lambda self, *a, **k: next(vals))
    tries: list[dict[str, list[torch.Tensor]]] = []
    original_period, original_batches, original_perturbed = (
        train.MetaTrainer.period,
        train.Unroller.batches,
        train.perturbed,
    )

    def period(self, *args, **kwargs):
        tries.append({"batches": [], "noise": []})
        return original_period(self, *args, **kwargs)

    def batches(self, gen):
        out = original_batches(self, gen)
        tries[-1]["batches"].append(torch.stack([x for x, _ in out]))
        return out

    def perturbed(params, sigma, *args, **kwargs):
        out = original_perturbed(params, sigma, *args, **kwargs)
        tries[-1]["noise"].append(torch.cat([(out[k] - p).detach().reshape(-1) for k, p in params.items()]))
        return out

    monkeypatch.setattr(train.MetaTrainer, "period", period)
    monkeypatch.setattr(train.Unroller, "batches", batches)
    monkeypatch.setattr(train, "perturbed", perturbed)
    events: list[dict] = []
    run("tiny", url, on_event=events.append)
    assert [e["event"] for e in events].count("repeat") == 1
    assert len(tries) == 3
    failed, repeat = tries[1], tries[2]
    assert failed["batches"] and failed["noise"]
    assert not torch.equal(failed["batches"][0], repeat["batches"][0]), "new minibatches"
    assert not torch.equal(failed["noise"][0], repeat["noise"][0]), "new perturbations"


def test_a_non_finite_validation_loss_is_a_blow_up_stored_as_non_finite(monkeypatch, tmp_path) -> None:
    from nosplug.amalgamation.run import load_run, run

    url = _tiny_run(tmp_path, meta={"min_periods": 3, "max_periods": 3})
    nan = math.nan
    calls = _script_periods(monkeypatch, [(1.0, 1.0), *[(1.0, nan)] * 5, (1.0, 1.2)])
    events: list[dict] = []
    run("tiny", url, on_event=events.append)
    assert _keys(calls) == [(0, 0, 0), *[(0, 1, a) for a in range(5)], (0, 2, 0)], "at most 4 repeats"
    assert [e["event"] for e in events].count("repeat") == 4
    trials = [t for t in load_run("tiny", url).trials if t.user_attrs.get("period") == 1]
    assert len(trials) == 5
    assert all(math.isnan(t.user_attrs["val_loss"]) and t.user_attrs["blowup"] for t in trials)
    assert all(t.value is not None and not math.isfinite(t.value) for t in trials), "never 10.0"
    assert [bool(t.user_attrs.get("repeated")) for t in trials] == [True] * 4 + [False]


def test_validation_of_a_diverging_student_is_non_finite() -> None:
    """A student whose optimizee loss becomes non-finite has no finite meta loss to report."""
    from nosplug.amalgamation.problems import get_problem
    from nosplug.amalgamation.train import MetaConfig, MetaTrainer
    from nosplug.primitives.registry import registry

    class Exploding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(3e38))  # two steps overflow to inf

        def init_state(self, n, like):
            return {}

        def forward(self, g, state, frozen=False):
            return self.scale * torch.sign(g), state

    cfg = MetaConfig(unroll=3, warmup_steps=1, val_depths=(2,), val_instances=1, random_scaling=False)
    loss = registry().get("amalgamation_losses", "none")
    trainer = MetaTrainer(Exploding(), [], loss, cfg, get_problem("digits_mlp"))
    assert not math.isfinite(trainer.validate(0))


def test_the_choice_teacher_sees_the_rank_and_time_features_it_was_trained_with(monkeypatch) -> None:
    from nosplug.amalgamation.problems import get_problem
    from nosplug.amalgamation.run import LearnedTeacher
    from nosplug.amalgamation.train import MetaConfig, MetaTrainer
    from nosplug.primitives.registry import registry

    seen: list[tuple[torch.Tensor, int, bool]] = []
    original = ChoiceOptimizer.forward

    def spy(self, g, state, frozen=False):
        seen.append((state["rank"].clone(), state["t"], frozen))
        return original(self, g, state, frozen)

    monkeypatch.setattr(ChoiceOptimizer, "forward", spy)
    torch.manual_seed(0)
    choice = ChoiceOptimizer(["rmsprop", "adam"])
    cfg = MetaConfig(unroll=3, warmup_steps=2, random_scaling=False)
    problem = get_problem("digits_mlp")

    def one_truncation(learned, teachers, loss) -> list[tuple[torch.Tensor, int, bool]]:
        seen.clear()
        trainer = MetaTrainer(learned, teachers, registry().get("amalgamation_losses", loss), cfg, problem)
        gen = torch.Generator().manual_seed(0)
        model, s, student, tstates = trainer.unroller.start(0, gen)
        trainer._meta_step(model, s, student, tstates, trainer.unroller.batches(gen), 0.2)
        return list(seen)

    trained = one_truncation(choice, [], "none")
    used = one_truncation(RNNProp(), [LearnedTeacher(choice)], "choice")
    assert [(t, f) for _, t, f in used] == [(t, f) for _, t, f in trained], "same time feature and warm-up"
    assert all(torch.equal(a[0], b[0]) for a, b in zip(used, trained))
    ranks = used[-1][0]
    assert set(ranks.unique().tolist()) == {1.0, 2.0}, "weights are rank 2, biases rank 1"


def test_teachers_step_once_per_inner_step_even_under_adversarial_perturbation() -> None:
    """The adversarial probe reuses the truncation's teacher trajectories instead of stepping the
    (stateful) torch and genome teachers a second time."""
    from nosplug.amalgamation.problems import get_problem
    from nosplug.amalgamation.teachers import resolve_teacher as rt
    from nosplug.amalgamation.train import MetaConfig, MetaTrainer
    from nosplug.primitives.registry import registry

    def steps_and_thetas(perturbation: str) -> tuple[list[int], list[torch.Tensor]]:
        cfg = MetaConfig(unroll=5, warmup_steps=2, perturbation=perturbation, random_scaling=False)
        teachers = [rt("torch:Adam(lr=0.001)"), rt("genome:adam(lr=0.001)")]
        loss = registry().get("amalgamation_losses", "minmax")
        torch.manual_seed(0)
        trainer = MetaTrainer(RNNProp(), teachers, loss, cfg, get_problem("digits_mlp"))
        gen = torch.Generator().manual_seed(0)
        model, s, student, tstates = trainer.unroller.start(0, gen)
        res = trainer._meta_step(model, s, student, tstates, trainer.unroller.batches(gen), 0.2)
        steps = [int(next(iter(t.state["opt"].state.values()))["step"]) for t in res.teachers]
        return steps, [t.theta for t in res.teachers]

    plain_steps, plain_thetas = steps_and_thetas("none")
    attacked_steps, attacked_thetas = steps_and_thetas("adversarial")
    assert plain_steps == attacked_steps == [2 + 5, 2 + 5]
    assert all(torch.equal(a, b) for a, b in zip(plain_thetas, attacked_thetas))


def test_the_choice_phase_follows_spec_4_6(tmp_path) -> None:
    from nosplug.amalgamation.config import normalise
    from nosplug.amalgamation.run import _phase_setup

    raw = normalise({"run": {"name": "c"}, "loss": {"name": "choice"}})
    _learned, cfg, _loss = _phase_setup(raw, "choice", tmp_path)
    assert cfg.depths == (1, 2, 5, 5, 5) and cfg.unroll == 100 and cfg.instances == 10
    assert cfg.alphas == (0.0,) and cfg.perturbation == "none"
    assert cfg.val_depths == (10,) and cfg.val_instances == 1 and cfg.val_seed == 12345
    assert cfg.blowup == 0.9 and cfg.max_repeats == 4
    assert [cfg.warmup_at(stage) for stage in range(5)] == [0, 100, 100, 100, 100]


def test_choice_periods_repeat_on_validation_against_prev_plus_0_9(monkeypatch, tmp_path) -> None:
    """The choice optimizer's strategy repeats a period whose validation loss exceeds
    prev + 0.9·|prev|, with no stage-start rule (each of its periods is a stage of one period)."""
    from nosplug.amalgamation.run import run

    url = _tiny_run(tmp_path, loss="choice", choice={"depths": [1, 1, 1]})
    calls = _script_periods(monkeypatch, [(5.0, 1.0), (9.0, 1.85), (0.0, 3.6), (0.0, 3.5)])
    events: list[dict] = []
    assert not run("tiny", url, max_periods=3, on_event=events.append)["done"]
    assert _keys(calls) == [(0, 0, 0), (1, 0, 0), (2, 0, 0), (2, 0, 1)]
    assert [e["val_loss"] for e in events if e["event"] == "repeat"] == [3.6]


def test_a_first_choice_period_has_no_warm_up(monkeypatch) -> None:
    from nosplug.amalgamation.problems import get_problem
    from nosplug.amalgamation.train import MetaConfig, MetaTrainer
    from nosplug.primitives.registry import registry

    frozen: list[bool] = []
    original = ChoiceOptimizer.forward

    def spy(self, g, state, frozen_=False, **kw):
        frozen.append(bool(kw.get("frozen", frozen_)))
        return original(self, g, state, kw.get("frozen", frozen_))

    monkeypatch.setattr(ChoiceOptimizer, "forward", spy)
    cfg = MetaConfig(unroll=3, warmup_steps=2, depths=(1, 1), warmups=(0, 2), instances=1, val_instances=1,
                     val_depths=(1,), random_scaling=False)  # fmt: skip
    loss = registry().get("amalgamation_losses", "none")
    trainer = MetaTrainer(ChoiceOptimizer(), [], loss, cfg, get_problem("digits_mlp"))
    trainer.validate = lambda *a, **k: 0.0
    trainer.period(0)
    assert frozen.count(True) == 0
    trainer.period(1)
    assert frozen.count(True) == 2


def test_a_plugin_teacher_joins_the_pools_it_lists(tmp_path) -> None:
    import types

    import nosplug
    from nosplug import plugins
    from nosplug.amalgamation.config import normalise, teacher_refs
    from nosplug.amalgamation.run import _teachers_for
    from nosplug.amalgamation.teachers import SGD, TeacherSpec
    from nosplug.hookspecs import hookimpl

    mod = types.ModuleType("halfsgd_plugin")

    @hookimpl
    def nosplug_teachers():
        return [TeacherSpec("halfsgd", lambda **kw: SGD(**{"lr": 0.1, **kw}), "SGD 0.1", ("small", "mine"))]

    mod.nosplug_teachers = nosplug_teachers
    plugins.reset()
    nosplug.plugin_manager().register(mod, name="halfsgd_plugin")
    assert teacher_refs({"pool": "small", "refs": []}) == ["adam", "rmsprop", "halfsgd"]
    assert teacher_refs({"pool": "large", "refs": []})[-1] == "powersign", "not in pools it does not list"
    raw = normalise({"run": {"name": "p"}, "teachers": {"pool": "mine"}, "loss": {"name": "mean"}})
    assert [t.name for t in _teachers_for(raw, tmp_path, "student")] == ["sgd"]
    with pytest.raises(UserError, match=r"teachers\.pool: unknown pool 'huge'"):
        normalise({"run": {"name": "p"}, "teachers": {"pool": "huge"}})


def test_run_events_read_as_sentences() -> None:
    from nosplug.cli.amalgamate_cmd import describe_event

    events = [
        {"event": "abandoned", "trial": 3},
        {"event": "resumed", "phase": "student", "checkpoint": "/x/student-0003.ckpt", "stage": 1,
         "period": 2, "best": 0.5, "best_period": 1, "prev_val": 0.6, "repeats": 0, "index": 3},
        {"event": "repeat", "phase": "student", "stage": 1, "period": 0, "attempt": 0, "max_repeats": 4,
         "compared": "training", "value": 1.6, "limit": 1.5, "ref": 1.0, "val_loss": 0.2, "train_loss": 1.6},
        {"event": "repeat", "phase": "choice", "stage": 2, "period": 0, "attempt": 3, "max_repeats": 4,
         "compared": "validation", "value": math.nan, "limit": math.nan, "ref": math.nan,
         "val_loss": math.nan, "train_loss": 1.0},
        {"event": "period", "phase": "student", "stage": 0, "period": 1, "index": 1, "attempt": 4,
         "val_loss": math.nan, "train_loss": 1.0, "blowup": True},
        {"event": "phase_done", "phase": "choice"},
    ]  # fmt: skip
    for e in events:
        text = describe_event(e)
        assert text and "{" not in text and "'" not in text, text
    assert "stage 1 period 2" in describe_event(events[1])
    assert "training" in describe_event(events[2]) and "1.5" in describe_event(events[2])
    assert "blew up" in describe_event(events[4]) and describe_event(events[5]) == "choice optimizer trained"


def test_a_trainer_snapshot_is_not_changed_by_later_meta_steps() -> None:
    """A redone period restarts from the snapshot taken before it: meta-Adam's moments included
    (``optimizer.state_dict()`` alone aliases the live tensors)."""
    from nosplug.amalgamation.problems import get_problem
    from nosplug.amalgamation.train import MetaConfig, MetaTrainer
    from nosplug.primitives.registry import registry

    cfg = MetaConfig(unroll=3, warmup_steps=1, instances=1, val_instances=1, val_depths=(1,))
    loss = registry().get("amalgamation_losses", "none")
    trainer = MetaTrainer(RNNProp(), [], loss, cfg, get_problem("digits_mlp"))
    trainer.period(0)
    before = trainer.state_dict()
    moments = [v["exp_avg"].clone() for v in before["meta_opt"]["state"].values()]
    trainer.period(0, period=1)
    assert all(torch.equal(m, v["exp_avg"]) for m, v in zip(moments, before["meta_opt"]["state"].values()))
