"""Learned-optimizer baselines (spec §6.1): "Original" and RNNProp on the meta loss alone, trained
by exactly the code and budget of the amalgamated students."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nosplug.amalgamation.student import DMOptimizer, build_learned
from nosplug.tomlconfig import read_toml

ROOT = Path(__file__).resolve().parents[1]


def test_original_is_a_two_layer_lstm_on_the_raw_gradient() -> None:
    torch.manual_seed(0)
    dm = build_learned({"kind": "original"})
    assert isinstance(dm, DMOptimizer)
    assert (
        sum(p.numel() for p in dm.parameters()) == 4 * 20 * (1 + 20 + 1) + 4 * 20 * (20 + 20 + 1) + 21 == 5061
    )
    g = torch.tensor([1e-3, 5.0, -2.0])
    st = dm.init_state(3, g)
    delta, new = dm(g, st)
    assert delta.shape == (3,) and torch.isfinite(delta).all()
    # alpha · Dense(h2): the output is 0.1 times the dense layer's value
    h2 = new["h2"]
    assert torch.allclose(delta, 0.1 * (h2 @ dm.wd + dm.bd).squeeze(1))
    # raw gradient: a scaled gradient gives another update (RNNProp's features would not change)
    assert not torch.allclose(dm(g * 100, st)[0], delta)
    zero, same = dm(g, st, frozen=True)
    assert torch.equal(zero, torch.zeros(3)) and same is st


def _normalised(name: str) -> dict:
    from nosplug.amalgamation.config import AmalgamationConfigError, normalise

    return normalise(read_toml(ROOT / "studies" / f"{name}.toml", AmalgamationConfigError))


@pytest.mark.parametrize("baseline", ["amalgamation-baseline-original", "amalgamation-baseline-rnnprop"])
def test_baseline_configs_differ_from_the_amalgamation_configs_only_in_student_loss_teachers(
    baseline,
) -> None:
    base, amalg = _normalised(baseline), _normalised("amalgamation-minmax")
    assert base["loss"]["name"] == "none"
    for section in ("meta", "evaluation", "choice"):
        assert base[section] == amalg[section], section
    assert {k: v for k, v in base["run"].items() if k != "name"} == {
        k: v for k, v in amalg["run"].items() if k != "name"
    }
    assert base["meta"]["second_order"] is True
    assert base["student"]["kind"] == ("original" if baseline.endswith("original") else "rnnprop")


def _create(tmp_path: Path, name: str, student: str, loss: str) -> str:
    from nosplug.amalgamation.run import create_run

    meta = {"unroll": 3, "warmup_steps": 2, "depths": [1, 2], "val_depths": [1, 1], "alphas": [0.2, 0.1],
            "instances": 2, "val_instances": 1, "min_periods": 1, "max_periods": 2, "patience": 0,
            "random_scaling": False}  # fmt: skip
    lines = ["version = 1", "[run]", f'name = "{name}"', "seed = 1", 'problem = "digits_mlp"']
    lines += ["[student]", f'kind = "{student}"', "[loss]", f'name = "{loss}"', "[meta]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in meta.items()]
    (tmp_path / f"{name}.toml").write_text("\n".join(lines) + "\n")
    url = f"journal:{tmp_path / 'journal.log'}"
    create_run(tmp_path / f"{name}.toml", storage=url, checkpoint_dir=str(tmp_path / name))
    return url


def test_a_baseline_run_takes_the_amalgamation_code_path_with_the_same_meta_steps(
    monkeypatch, tmp_path
) -> None:
    """Same entry point, same trainer, same number of meta-steps and periods; only the teachers
    (none for the baselines) and the loss differ."""
    from nosplug.amalgamation import train
    from nosplug.amalgamation.run import load_run, run

    seen: dict[str, list[tuple[int, int]]] = {}
    current = {"name": ""}
    original_step = train.MetaTrainer._meta_step

    def spy(self, model, s, student, teachers, batches, alpha):
        seen.setdefault(current["name"], []).append((len(self.unroller.teachers), len(batches)))
        return original_step(self, model, s, student, teachers, batches, alpha)

    monkeypatch.setattr(train.MetaTrainer, "_meta_step", spy)
    # every period validates the same way, so the curriculum's decisions cannot differ between runs
    monkeypatch.setattr(train.MetaTrainer, "validate", lambda self, stage: 1.0)
    summaries = {}
    for name, student, loss in (("amalg", "rnnprop", "mean"), ("base-rnnprop", "rnnprop", "none"),
                                ("base-original", "original", "none")):  # fmt: skip
        url = _create(tmp_path, name, student, loss)
        current["name"] = name
        summaries[name] = run(name, url)
    assert all(s["done"] for s in summaries.values())
    steps = {name: [b for _, b in calls] for name, calls in seen.items()}
    assert steps["amalg"] == steps["base-rnnprop"] == steps["base-original"]
    assert len(steps["amalg"]) == 2 * 1 + 2 * 2, "stage 0: 2 instances x depth 1; stage 1: 2 x 2"
    assert {t for t, _ in seen["amalg"]} == {2} and {t for t, _ in seen["base-rnnprop"]} == {0}
    url = f"journal:{tmp_path / 'journal.log'}"
    per_run = {name: [t.user_attrs["meta_steps"] for t in load_run(name, url).trials] for name in summaries}
    assert per_run["amalg"] == per_run["base-rnnprop"] == per_run["base-original"]
    student = json.loads((tmp_path / "base-original" / "student.json").read_text())
    assert student["config"]["kind"] == "original"
