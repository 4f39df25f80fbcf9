"""A torch / torchvision pair that does not match fails in one line that names the pair and the fix
(issue 22 item 7), only where torchvision is needed; the main job never imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nosplug.errors import UserError
from nosplug.tasks.vision import TorchvisionMismatchError, fix_command, import_torchvision

NMS = "operator torchvision::nms does not exist"


class _BrokenTorchvision:
    """A meta-path finder that fails every torchvision import the way a mismatched wheel does."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            raise RuntimeError(NMS)
        return None


@pytest.fixture
def broken_torchvision(monkeypatch):
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BrokenTorchvision(), *sys.meta_path])


def test_mismatch_is_one_line_naming_the_pair_and_the_fix(broken_torchvision) -> None:
    from importlib import metadata

    with pytest.raises(TorchvisionMismatchError) as info:
        import_torchvision("torchvision.models")
    msg = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in msg
    assert NMS in msg
    assert f"torch {metadata.version('torch')}" in msg
    assert f"torchvision {metadata.version('torchvision')}" in msg
    assert "pip install --force-reinstall" in msg


def test_fix_command_installs_from_the_torch_builds_index() -> None:
    cpu = fix_command("2.13.0+cpu")
    assert '"torchvision==0.28.*"' in cpu and "https://download.pytorch.org/whl/cpu" in cpu
    assert "whl/cu130" in fix_command("2.14.1+cu130")
    assert "--index-url" not in fix_command("2.14.1")  # a PyPI torch: PyPI's torchvision


def test_surrogate_and_cifar_loader_fail_in_one_line(broken_torchvision, tmp_path: Path) -> None:
    from nosplug.tasks.datasets import load_dataset
    from nosplug.tasks.surrogates import build_surrogate

    with pytest.raises(TorchvisionMismatchError, match="torchvision::nms"):
        build_surrogate("efficientnet_v2_s", (3, 32, 32), 10, width=0.25, depth=0.25)
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(TorchvisionMismatchError, match="fix: pip install"):
        load_dataset("cifar10", root=tmp_path)


def test_tasks_without_torchvision_still_train(broken_torchvision) -> None:
    """The built-in tasks of the main job build and load without torchvision."""
    from nosplug.tasks import resolve_task

    for name in ("mnist5k-convnet", "diabetes-mlp"):
        task = resolve_task(name)
        data = task.load(0)
        model = task.model(0, "cpu")
        assert np.isfinite(task.loss(model(data.train.x[:4]), data.train.y[:4]).item())


def test_the_package_imports_no_torchvision() -> None:
    code = (
        "import sys, nosplug, nosplug.tasks, nosplug.tasks.surrogates, nosplug.tasks.datasets, "
        "nosplug.evaluation.evaluate; print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
