"""Amalgamation on a device: ``run.device`` / ``protocol.device`` / ``--device``, checked before any
training, and an explicit ``cpu`` that computes exactly what the default does on a CPU-only machine."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from study_helpers import nosplug as nosplug_cli

from nosplug.cli import main
from nosplug.errors import UserError

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

TINY_META = {
    "unroll": 3,
    "warmup_steps": 2,
    "depths": [1],
    "val_depths": [1],
    "alphas": [0.2],
    "instances": 2,
    "val_instances": 1,
    "min_periods": 2,
    "max_periods": 2,
    "patience": 0,
    "perturbation": "random",  # the noise stream, the scaling and the batches all drawn
}


def _config(tmp_path: Path, name: str, device: str | None) -> Path:
    lines = ["version = 1", "[run]", f'name = "{name}"', "seed = 2", 'problem = "digits_mlp"']
    if device is not None:
        lines.append(f'device = "{device}"')
    lines += ["[loss]", 'name = "mean"', "[evaluation]", 'problems = ["digits_mlp"]', "runs = 1"]
    lines += ["epochs = 2"]
    lines += ["[meta]", *(f"{k} = {json.dumps(v)}" for k, v in TINY_META.items())]
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _create(tmp_path: Path, name: str, device: str | None, url: str) -> Path:
    from nosplug.amalgamation.run import create_run

    ckdir = tmp_path / "ck" / name
    create_run(_config(tmp_path, name, device), storage=url, checkpoint_dir=str(ckdir))
    return ckdir


def _error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@NO_CUDA
def test_a_cuda_run_on_a_machine_without_cuda_fails_with_one_line_before_training(tmp_path: Path) -> None:
    from nosplug.amalgamation.run import load_run

    url = f"journal:{tmp_path / 'journal.log'}"
    ckdir = _create(tmp_path, "gpu", "cuda", url)  # created anywhere; the device is checked where it runs
    out = nosplug_cli("amalgamate", "run", "gpu", "--storage", url, "--quiet")
    assert out.returncode == 2, out.stderr
    (line,) = _error_lines(out.stderr)
    assert "CUDA is not available" in line and "Traceback" not in out.stderr
    assert load_run("gpu", url).trials == [], "nothing was trained or stored"
    assert not ckdir.exists(), "not even the checkpoint folder"


@NO_CUDA
@pytest.mark.parametrize("command", ["run", "evaluate"])
def test_device_cuda_on_the_command_line_fails_with_one_line_before_training(
    tmp_path: Path, capsys, monkeypatch, command: str
) -> None:
    from nosplug.amalgamation import train

    monkeypatch.setattr(train.MetaTrainer, "period", lambda *a, **k: pytest.fail("trained"))
    url = f"journal:{tmp_path / 'journal.log'}"
    _create(tmp_path, "cpu-run", None, url)
    assert main(["amalgamate", command, "cpu-run", "--storage", url, "--device", "cuda:0"]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "cuda:0" in line and "CUDA is not available" in line


@NO_CUDA
def test_a_cuda_protocol_fails_with_one_line_before_anything_is_stored(tmp_path: Path, capsys) -> None:
    from nosplug.study.storage import open_storage
    from nosplug.study.studies import study_names

    _config(tmp_path, "m", None)
    proto = tmp_path / "p.toml"
    proto.write_text(
        '[protocol]\nname = "p"\nreplicates = 1\ndevice = "cuda"\n[evaluation]\nproblems = ["digits_mlp"]\n'
        'runs = 1\nepochs = 1\nteachers = ["adam"]\n[methods.mean]\nconfig = "m.toml"\n'
    )
    url = f"journal:{tmp_path / 'journal.log'}"
    assert main(["amalgamate", "protocol", str(proto), "--storage", url]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "CUDA is not available" in line
    assert study_names(open_storage(url)) == []


def test_a_device_that_is_no_device_name_is_refused_when_the_run_is_created(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"run\.device: 'cdua' is not a device name"):
        _create(tmp_path, "typo", "cdua", f"journal:{tmp_path / 'journal.log'}")
    with pytest.raises(UserError, match=r"run\.device: device 'meta' is not supported"):
        _create(tmp_path, "meta", "meta", f"journal:{tmp_path / 'journal.log'}")


def test_device_cpu_gives_results_bit_identical_to_the_default(tmp_path: Path) -> None:
    """On this machine ``auto`` is the CPU, and naming it changes nothing: the same periods, the
    same student to the bit, the same evaluation. (Every random draw comes from CPU generators, so
    on another device only float rounding would differ.)"""
    from nosplug.amalgamation.run import load_run, run
    from nosplug.amalgamation.student import load

    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("auto is an accelerator on this machine")
    url = f"journal:{tmp_path / 'journal.log'}"
    results = {}
    for name, config_device, arg in (("default", None, None), ("config", "cpu", None), ("arg", None, "cpu")):
        ckdir = _create(tmp_path, name, config_device, url)
        summary = run(name, url, device=arg)
        assert summary["done"]
        values = [t.value for t in load_run(name, url).trials]
        weights = load(summary["student"]).state_dict()
        out = tmp_path / f"{name}.parquet"
        args = ["amalgamate", "evaluate", name, "--storage", url, "--out", str(out), "--json"]
        assert main([*args, *(["--device", arg] if arg else [])]) == 0
        results[name] = (values, weights, pq.read_table(out).column("val_losses").to_pylist(), ckdir)
    ref_values, ref_weights, ref_curves, _ = results["default"]
    assert len(ref_values) == 2
    for name in ("config", "arg"):
        values, weights, curves, _ = results[name]
        assert values == ref_values, name
        assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights), name
        assert curves == ref_curves, name


def test_checkpoints_hold_cpu_tensors_and_a_resume_loads_them(tmp_path: Path) -> None:
    """Checkpoints are written device-independently (CPU tensors, loaded with map_location)."""
    from nosplug.amalgamation.run import run

    url = f"journal:{tmp_path / 'journal.log'}"
    ckdir = _create(tmp_path, "ck", "cpu", url)
    assert not run("ck", url, max_periods=1)["done"]
    (ckpt,) = sorted(ckdir.glob("student-*.ckpt"))
    sd = torch.load(ckpt, weights_only=True, map_location="cpu")

    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from tensors(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from tensors(v)

    found = list(tensors(sd["trainer"]))
    assert found and all(t.device.type == "cpu" for t in found)
    assert run("ck", url)["done"]


def test_a_protocol_resumes_on_another_device_setting(tmp_path: Path) -> None:
    """``protocol.device`` says where a protocol trains, not what it is: changing it is not a
    changed config."""
    from nosplug.amalgamation import protocol

    _config(tmp_path, "m", None)
    text = (
        '[protocol]\nname = "p"\nreplicates = 1\n{device}[evaluation]\nproblems = ["digits_mlp"]\n'
        'runs = 1\nepochs = 1\nteachers = ["adam"]\n[methods.mean]\nconfig = "m.toml"\n'
    )
    url = f"journal:{tmp_path / 'journal.log'}"
    path = tmp_path / "p.toml"
    path.write_text(text.format(device=""))
    first = protocol.create(path, url)
    path.write_text(text.format(device='device = "cpu"\n'))
    assert protocol.create(path, url).study_name == first.study_name
    path.write_text(text.format(device='device = "cuda:x"\n'))
    with pytest.raises(UserError, match=r"protocol\.device: 'cuda:x' is not a device name"):
        protocol.create(path, url)
