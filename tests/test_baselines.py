"""Named baseline sets (issue 22 item 2): registered the plugin way, expanded into contenders with
their own extra hyperparameters and the same budget, run with their recipes (Muon on the 2-D
weights with AdamW on the rest; Schedule-Free without decay, evaluated in eval() mode), stated
below the verdict table, and every other contender judged against the best of them."""

from __future__ import annotations

import math
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import nosplug
from nosplug.baselines import (
    INSTALL_HINT,
    Baseline,
    BaselineSet,
    BaselineSetError,
    baseline_contenders,
    baseline_sets,
    expand,
)
from nosplug.benchmark.baseline_report import tuning_lines
from nosplug.benchmark.config import BenchmarkConfigError, normalise
from nosplug.benchmark.contenders import resolve
from nosplug.cli import main
from nosplug.hookspecs import hookimpl

MODERN = [
    "torch:AdamW",
    "torch:NAdam(decoupled_weight_decay=True)",
    "pytorch_optimizer:Lion",
    "pytorch_optimizer:ScheduleFreeAdamW",
    "pytorch_optimizer:SOAP",
    "nosplug.baselines:MuonAdamW",
]
needs_muon = pytest.mark.skipif(
    not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9"
)
TINY = {"name": "diabetes-mlp", "overrides": {"final_steps": 20, "final_epoch_steps": 10}}


def _config(**benchmark) -> dict:
    return {"benchmark": {"name": "b", **benchmark}, "tasks": [{"name": "diabetes-mlp"}]}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 1))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 6, generator=g)
    return x, x[:, :2].sum(1, keepdim=True).sin()


# ----------------------------------------------------------------------------- the sets
def test_the_builtin_sets_are_registered_through_the_hook() -> None:
    from nosplug.primitives.registry import registry

    sets = baseline_sets()
    assert [b.ref for b in sets["modern"].baselines] == MODERN
    assert [b.ref for b in sets["algoperf"].baselines] == ["torch:NAdam(decoupled_weight_decay=True)"]
    assert registry().provenance[("baseline_sets", "modern")] == "nosplug.baselines"
    for b in sets["modern"].baselines:  # every member resolves as a contender with its extras
        c = resolve(b.ref, b.tune)
        assert c.kind == "torch" and set(b.tune) <= set(c.space((1e-5, 10.0), 0.25))


def test_a_plugin_registers_its_own_set(capsys) -> None:
    mod = types.ModuleType("my_sets")

    @hookimpl
    def nosplug_baseline_sets():
        return [BaselineSet("sgd-family", (Baseline("torch:SGD(momentum=0.9)", ("momentum",)),), "mine")]

    mod.nosplug_baseline_sets = nosplug_baseline_sets
    nosplug.plugin_manager().register(mod, name="my_sets")
    assert [b.ref for b in expand(["sgd-family"])] == ["torch:SGD(momentum=0.9)"]
    raw = normalise(_config(contenders=["opt6"], baselines=["sgd-family"]))
    assert raw["benchmark"]["contenders"] == ["opt6", "torch:SGD(momentum=0.9)", "torch:Adam"]
    assert raw["tuning"]["extra"] == {"torch:SGD(momentum=0.9)": ["momentum"]}
    assert main(["plugins", "list", "--json"]) == 0
    assert '"baseline_sets": ["sgd-family"]' in capsys.readouterr().out


def test_a_config_expands_sets_with_equal_budgets_and_their_extras() -> None:
    raw = normalise(_config(contenders=["opt6"], baselines=["modern"]))
    assert raw["benchmark"]["contenders"] == ["opt6", *MODERN, "torch:Adam"]
    assert raw["benchmark"]["baselines"] == ["modern"]
    assert raw["tuning"]["per_contender"] == {}  # the same number of trials for everyone
    assert raw["tuning"]["extra"]["pytorch_optimizer:Lion"] == ["beta1", "beta2", "weight_decay"]
    assert raw["tuning"]["extra"]["nosplug.baselines:MuonAdamW"] == ["momentum", "weight_decay"]
    assert baseline_contenders(raw) == [*MODERN, "torch:Adam"]
    # tuning.extra given for a member wins over the set's; the reference is not listed twice
    own = normalise({**_config(contenders=["torch:AdamW"], baselines=["modern"], reference="torch:AdamW"),
                     "tuning": {"extra": {"torch:AdamW": ["weight_decay"]}}})  # fmt: skip
    assert own["benchmark"]["contenders"] == MODERN and own["tuning"]["extra"]["torch:AdamW"] == [
        "weight_decay"
    ]
    # no sets: no key, so configs stored before baseline sets still compare equal and resume
    assert "baselines" not in normalise(_config(contenders=["opt6"]))["benchmark"]
    only = normalise(_config(baselines=["algoperf"]))  # the baselines alone against tuned Adam
    assert only["benchmark"]["contenders"] == ["torch:NAdam(decoupled_weight_decay=True)", "torch:Adam"]


def test_unknown_or_uninstalled_sets_are_one_line(monkeypatch) -> None:
    unknown = r"benchmark\.baselines: unknown baseline set 'nope' \(registered: algoperf, modern\)"
    with pytest.raises(BenchmarkConfigError, match=unknown):
        normalise(_config(contenders=["opt6"], baselines=["nope"]))
    import nosplug.baselines as bl

    real = bl._importable
    monkeypatch.setattr(bl, "_importable", lambda m: m != "pytorch_optimizer" and real(m))
    with pytest.raises(BaselineSetError) as info:
        expand(["modern"])
    assert "pytorch_optimizer" in str(info.value) and INSTALL_HINT in str(info.value)
    assert "\n" not in str(info.value)
    monkeypatch.setattr(bl, "_importable", lambda m: m != "torch.optim:Muon" and real(m))
    with pytest.raises(BaselineSetError, match=r"torch\.optim:Muon \(torch >= 2\.9\)"):
        expand(["modern"])


def test_tuning_lines_state_every_contenders_space_and_recipe() -> None:
    raw = normalise(_config(contenders=["opt6", "pretrained:choice-large"], baselines=["modern"]))
    lines = tuning_lines(raw)
    assert lines[0].startswith("tuning: 8 TPE trial(s) per contender and task, the same for every contender")
    by = {line.split(": ", 1)[0]: line for line in lines[1:]}
    assert set(by) == set(raw["benchmark"]["contenders"])
    assert (
        "beta1 in [0.5, 0.99], beta2 in [0.9, 0.9999], weight_decay log-uniform in [1e-06, 0.1]"
        in by["pytorch_optimizer:Lion"]
    )
    assert (
        "schedule-free" in by["pytorch_optimizer:ScheduleFreeAdamW"]
        and "beta2" not in by["pytorch_optimizer:ScheduleFreeAdamW"]
    )
    assert "Muon (torch.optim.Muon) on every 2-D parameter" in by["nosplug.baselines:MuonAdamW"]
    assert "AlgoPerf" in by["torch:NAdam(decoupled_weight_decay=True)"]
    assert "lr log-uniform in [1e-05, 10], warm-up fraction in [0, 0.25]; warm-up" in by["torch:Adam"]
    assert "momentum cycles" in by["opt6"] and "SGD warm-up rate" in by["pretrained:choice-large"]


# ----------------------------------------------------------------------------- recipes
def test_a_tuned_beta_keeps_the_classs_other_beta() -> None:
    lion = resolve("pytorch_optimizer:Lion", ("beta1",))
    opt, _ = lion.build(_model().parameters(), {"lr": 1e-3, "warmup": 0.0, "beta1": 0.8}, 10)
    assert opt.param_groups[0]["betas"] == (0.8, 0.99)  # Lion's own beta2, not Adam's 0.999
    soap = resolve("pytorch_optimizer:SOAP", ("beta2",))
    opt, _ = soap.build(_model().parameters(), {"lr": 1e-3, "warmup": 0.0, "beta2": 0.99}, 10)
    assert opt.param_groups[0]["betas"] == (0.95, 0.99)


@needs_muon
def test_muon_adamw_runs_muon_on_matrices_and_adamw_on_the_rest() -> None:
    from nosplug.baselines.recipes import MuonAdamW

    model = _model()
    opt = MuonAdamW(model.parameters(), lr=0.01, weight_decay=0.0)
    matrices = {id(p) for p in model.parameters() if p.ndim == 2}
    assert {id(p) for g in opt.muon.param_groups for p in g["params"]} == matrices
    assert {id(p) for g in opt.adamw.param_groups for p in g["params"]} == {
        id(p) for p in model.parameters() if p.ndim != 2
    }
    assert opt.param_groups == [*opt.muon.param_groups, *opt.adamw.param_groups]
    # one schedule drives both halves
    c = resolve("nosplug.baselines:MuonAdamW", ("momentum", "weight_decay"))
    opt, sched = c.build(
        model.parameters(), {"lr": 0.02, "warmup": 0.5, "momentum": 0.9, "weight_decay": 0.01}, 8
    )
    x, y = _data()
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        assert len({g["lr"] for g in opt.param_groups}) == 1
    assert opt.muon.param_groups[0]["momentum"] == 0.9 and losses[-1] < losses[0]
    assert all(len(opt.adamw.state[p]) > 0 for g in opt.adamw.param_groups for p in g["params"])
    # the state of both halves round-trips
    fresh, _ = c.build(
        model.parameters(), {"lr": 0.02, "warmup": 0.5, "momentum": 0.9, "weight_decay": 0.01}, 8
    )
    fresh.load_state_dict(opt.state_dict())
    p = next(q for q in model.parameters() if q.ndim == 2)
    assert torch.equal(fresh.muon.state[p]["momentum_buffer"], opt.muon.state[p]["momentum_buffer"])


def test_schedule_free_keeps_the_rate_after_warmup_and_is_evaluated_in_eval_mode(monkeypatch) -> None:
    from nosplug.baselines.recipes import is_schedule_free
    from nosplug.benchmark import runs
    from nosplug.evaluation.presets import get_preset
    from nosplug.tasks import resolve_task

    c = resolve("pytorch_optimizer:ScheduleFreeAdamW", ("beta1",))
    opt, sched = c.build(_model().parameters(), {"lr": 0.01, "warmup": 0.25, "beta1": 0.9}, 8)
    assert is_schedule_free(opt) and not is_schedule_free(torch.optim.AdamW)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == [0.0, 0.005] and lrs[2:] == [0.01] * 6  # warm-up, then no decay
    cos = resolve("torch:AdamW")
    opt2, sched2 = cos.build(_model().parameters(), {"lr": 0.01, "warmup": 0.25}, 8)
    for _ in range(7):
        opt2.step()
        sched2.step()
    assert opt2.param_groups[0]["lr"] < 0.01  # the others decay

    modes: list[str] = []
    task = resolve_task("diabetes-mlp")
    real = task.evaluate

    def evaluate(model, split, chunk=1000):
        modes.append("train" if made[0].param_groups[0]["train_mode"] else "eval")
        return real(model, split, chunk)

    made: list = []
    build = c.build

    def build_and_keep(*args, **kwargs):
        opt, sched = build(*args, **kwargs)
        made.append(opt)
        return opt, sched

    monkeypatch.setattr(c, "build", build_and_keep)
    monkeypatch.setattr(task, "evaluate", evaluate)
    preset = get_preset("task").with_overrides({"final_steps": 20, "final_epoch_steps": 10}, where="t")
    out = runs.run(c, task, preset, task.load(0), {"lr": 0.01, "warmup": 0.1, "beta1": 0.9}, 0, test=True)
    # the untrained model's test value, then every evaluation during training: eval() mode
    assert modes[0] == "train" and len(modes) == 5 and set(modes[1:]) == {"eval"}
    assert made[0].param_groups[0]["train_mode"]  # and back to training afterwards
    assert math.isfinite(out["final_test"])


# ----------------------------------------------------------------------------- the verdict
@pytest.mark.slow
def test_a_benchmark_with_the_modern_set_judges_the_rest_against_the_best_baseline(tmp_path: Path) -> None:
    from nosplug.benchmark.baseline_report import against_best_baseline, report_json, report_lines

    sets = ["modern"] if hasattr(torch.optim, "Muon") else ["algoperf"]
    res = nosplug.benchmark(["opt6"], [TINY], baselines=sets, seeds=2, tuning_trials=1, name="m",
                            storage=f"journal:{tmp_path / 'j.log'}")  # fmt: skip
    assert res.done and res.verdicts
    trials = {s.tuning_trials for s in res.summaries.values()}
    assert trials == {1}  # equal budgets
    best, verdicts = against_best_baseline(res)
    assert best in baseline_contenders(res.raw) and list(verdicts) == ["opt6"]
    assert f"from the best baseline, tuned {best}: IQM" in verdicts["opt6"].sentence
    lines = report_lines(res)
    said = f"the best baseline (highest IQM among the reference and the baseline sets): {best}"
    assert said in lines
    assert any(line.startswith("opt6: ") and "against it" in line for line in lines)
    assert report_json(res)["best_baseline"] == best


def test_validate_baselines_take_set_names_beside_contenders(tmp_path: Path, monkeypatch) -> None:
    """A search's ``[validate] baselines`` may name sets (``algoperf``) beside contender
    references; the verdict benchmark adds the sets' members with their tuning."""
    from study_helpers import write_config

    from nosplug.benchmark import config as bconfig
    from nosplug.search import ranking
    from nosplug.search.api import create_search
    from nosplug.search.verdict import verdict_config
    from nosplug.study.kinds import open_study
    from nosplug.study.studies import load

    url = f"journal:{tmp_path / 'j.log'}"
    create_search(write_config(tmp_path / "s.toml", validate_top=1), storage=url)
    ctx = open_study(load("tiny", url))
    ctx.raw["validate"]["baselines"] = ["algoperf", "torch:SGD(momentum=0.9)"]
    monkeypatch.setattr(ranking, "best", lambda study, n: ["a finished trial"][:n])
    monkeypatch.setattr(bconfig, "_check_contenders", lambda raw, storage: None)  # study:tiny#1 is not real
    raw = verdict_config(ctx, url)
    b = raw["benchmark"]
    assert b["baselines"] == ["algoperf"]
    assert b["contenders"] == [
        "study:tiny#1",
        "torch:SGD(momentum=0.9)",
        "torch:NAdam(decoupled_weight_decay=True)",
        "torch:Adam",
    ]
    assert raw["tuning"]["extra"] == {
        "torch:NAdam(decoupled_weight_decay=True)": ["beta1", "beta2", "weight_decay"]
    }


@pytest.mark.slow
def test_the_benchmark_command_takes_sets_and_states_the_tuning(tmp_path: Path, capsys) -> None:
    import json

    assert main(["benchmark", "opt6", "--baselines", "nope", "--tasks", "diabetes-mlp"]) == 2
    assert "unknown baseline set 'nope'" in capsys.readouterr().err
    cfg = tmp_path / "b.toml"
    cfg.write_text(
        '[benchmark]\nname = "cli"\ncontenders = ["opt6"]\nbaselines = ["algoperf"]\n'
        "[tuning]\ntrials = 1\n[evaluation]\nseeds = 2\n"
        '[[tasks]]\nname = "diabetes-mlp"\noverrides = { final_steps = 20, final_epoch_steps = 10 }\n'
    )
    assert main(["benchmark", "--config", str(cfg), "--baselines", "modern"]) == 2  # one or the other
    capsys.readouterr()
    storage = f"journal:{tmp_path / 'j.log'}"
    assert main(["benchmark", "--config", str(cfg), "--storage", storage, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    nadamw = "torch:NAdam(decoupled_weight_decay=True)"
    assert out["best_baseline"] in (nadamw, "torch:Adam") and list(out["against_best_baseline"]) == ["opt6"]
    assert any(line.startswith(f"{nadamw}: lr log-uniform") and "beta2" in line for line in out["tuning"])
    assert main(["benchmark", "--config", str(cfg), "--storage", storage, "--quiet"]) == 0  # resumes, done
    text = " ".join(capsys.readouterr().out.split())  # lines wrap at 80 columns
    assert "the best baseline (highest IQM among the reference and the baseline sets)" in text
    assert "opt6: " in text and "against it" in text


def test_a_search_naming_an_uninstalled_set_fails_at_creation(monkeypatch) -> None:
    import nosplug.baselines as bl
    from nosplug.search.config import ConfigError
    from nosplug.search.config import normalise as study_normalise

    assert study_normalise({"study": {"name": "v"}, "validate": {"baselines": ["modern"]}})
    real = bl._importable
    monkeypatch.setattr(bl, "_importable", lambda m: m != "pytorch_optimizer" and real(m))
    with pytest.raises(ConfigError, match=r"validate\.baselines: baseline set 'modern' needs"):
        study_normalise({"study": {"name": "v"}, "validate": {"baselines": ["modern"]}})
