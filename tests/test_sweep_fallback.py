"""A user's model that ``vmap`` cannot run never crashes the default (``auto``) sweep (issue 22
item 1): probed once per task and model, separate runs instead, said once, recorded with the
result; and an unexpected error of any command is one line naming the file with its traceback."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from nosplug import zoo
from nosplug.cli import main
from nosplug.evaluation import sweep as sweep_module
from nosplug.evaluation.evaluate import evaluate_genome
from nosplug.evaluation.presets import get_preset
from nosplug.evaluation.runs import for_stage
from nosplug.evaluation.sweep import SweepFallbackWarning, sweep_mode
from nosplug.tasks import resolve_task

TASKS = '''
import torch
from torch import nn

from nosplug.tasks import Gates, Metric, Split, Task, TaskData


class Square(torch.autograd.Function):
    """A custom autograd function without a vmap rule."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class GRUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out[:, -1])


class SquareNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(8, 1)

    def forward(self, x):
        return self.b(Square.apply(self.a(x.flatten(1))))


class BrokenNet(SquareNet):
    def forward(self, x):
        raise RuntimeError("the user's model is broken")


class Sequences(Task):
    name = "sequences"
    description = "a small model predicts the sum of a generated sequence"
    metric = Metric("mse", "minimize")
    train_metric = Metric("loss", "minimize")
    gates = Gates(prescreen=0.99, sweep=0.99, run=2.0, final_floor=2.0, scale="relative")
    budget = {"batch_size": 16, "sweep_steps": 6, "sweep_epoch_steps": 3, "final_steps": 6,
              "final_epoch_steps": 3, "schedule_steps": 12, "warmup_steps": 1}

    def __init__(self, model="gru"):
        self.options = {"model": model}
        self.kind = model

    def load(self, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(96, 2, 3, generator=g)
        y = x.sum(dim=(1, 2)).unsqueeze(1) / 2
        return TaskData(Split(x[:64], y[:64]), Split(x[64:80], y[64:80]), Split(x[80:], y[80:]))

    def build_model(self, seed):
        torch.manual_seed(seed)
        return {"gru": GRUNet, "square": SquareNet, "broken": BrokenNet}[self.kind]()

    def loss(self, output, y):
        return nn.functional.mse_loss(output, y)

    def evaluate(self, model, split, chunk=1000):
        with torch.no_grad():
            return nn.functional.mse_loss(model(split.x), split.y).item()


def make_task(model="gru"):
    return Sequences(model)


def broken_task():
    raise ZeroDivisionError("the user's factory divided by zero")
'''


@pytest.fixture
def user_tasks(tmp_path: Path, monkeypatch) -> str:
    """A task module of the user's own (``seqtasks``), importable like one in the current folder."""
    name = f"seqtasks_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweep_module, "_VMAP_PROBES", {})
    return name


@pytest.mark.parametrize("model", ["gru", "square"])
def test_auto_falls_back_to_separate_runs_once_and_records_it(user_tasks: str, model: str) -> None:
    task = resolve_task(f"{user_tasks}:make_task", {"model": model})
    stage_task, preset = for_stage(task, "task")
    assert sweep_mode(stage_task, preset, torch.device("cpu")) == "vmap"  # small, no BatchNorm
    data = task.load(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = evaluate_genome(zoo.load("adam"), task, data, "task")
        second = evaluate_genome(zoo.load("sgd"), task, data, "task")
    said = [w for w in caught if issubclass(w.category, SweepFallbackWarning)]
    assert len(said) == 1, [str(w.message) for w in caught]  # once per task and model
    assert "vmap cannot run this model" in str(said[0].message)
    for res in (first, second):
        assert res.sweep_mode == "sequential" and "vmap cannot run this model" in res.sweep_note
        assert res.stage == "final" and res.fitness is not None, res.reason
        assert res.to_dict()["sweep_note"] == res.sweep_note  # stored with a study's trial


def test_a_model_that_fails_by_itself_is_a_crash_not_a_fallback(user_tasks: str) -> None:
    """The probe runs the model plainly first: its own failure propagates (a worker records it as
    a crash and retries), instead of being blamed on vmap and hidden behind separate runs."""
    task = resolve_task(f"{user_tasks}:make_task", {"model": "broken"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="the user's model is broken"):
            evaluate_genome(zoo.load("adam"), task, task.load(0), "task")
    assert not [w for w in caught if issubclass(w.category, SweepFallbackWarning)]
    assert sweep_module._VMAP_PROBES == {}  # nothing cached: a fixed model is probed again


def test_a_model_vmap_can_run_is_still_stacked(monkeypatch) -> None:
    monkeypatch.setattr(sweep_module, "_VMAP_PROBES", {})
    task = resolve_task("diabetes-mlp")
    p = get_preset("task").with_overrides(
        {"sweep_steps": 4, "sweep_epoch_steps": 2, "final_steps": 4, "final_epoch_steps": 2}, where="test"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", SweepFallbackWarning)
        res = evaluate_genome(zoo.load("adam"), task, task.load(0), p)
    assert res.sweep_mode == "vmap" and res.sweep_note == ""


def test_evaluate_command_on_a_gru_task_exits_0_and_says_it_once(user_tasks: str, capsys) -> None:
    assert main(["evaluate", "adam", "sgd", "--task", f"{user_tasks}:make_task", "--json"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(x) for x in captured.out.splitlines()]
    assert [r["sweep_mode"] for r in lines] == ["sequential", "sequential"]
    warned = [x for x in captured.err.splitlines() if x.startswith("warning:")]
    assert len(warned) == 1 and "vmap cannot run this model" in warned[0], captured.err


def test_an_unexpected_error_is_one_line_with_the_traceback_in_a_file(
    user_tasks: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("NOSPLUG_ERROR_DIR", str(tmp_path / "errors"))
    monkeypatch.delenv("NOSPLUG_TRACEBACK", raising=False)
    assert main(["evaluate", "adam", "--task", f"{user_tasks}:broken_task"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "ZeroDivisionError" in err or "divided by zero" in err
    if "full traceback" in err:  # not a user error: the traceback went to the named file
        (path,) = (tmp_path / "errors").iterdir()
        assert str(path) in err
        assert "Traceback (most recent call last)" in path.read_text()


def test_an_unexpected_exception_in_a_command_exits_1_naming_the_file(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    def boom(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("nosplug.tasks.task_specs", boom)  # `task list` imports it when it runs
    monkeypatch.setenv("NOSPLUG_ERROR_DIR", str(tmp_path / "errors"))
    monkeypatch.delenv("NOSPLUG_TRACEBACK", raising=False)
    assert main(["task", "list"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: KeyError: 'a bug'"), err
    (path,) = (tmp_path / "errors").iterdir()
    assert str(path) in err and "Traceback (most recent call last)" in path.read_text()
    monkeypatch.setenv("NOSPLUG_TRACEBACK", "1")
    assert main(["task", "list"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
