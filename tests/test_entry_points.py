"""Outside plugins are discovered through the ``nosplug`` entry-point group."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = textwrap.dedent(
    """
    import torch
    from nosplug.hookspecs import hookimpl
    from nosplug.primitives import Operand, Schedule

    @hookimpl
    def nosplug_operands():
        return [Operand("half_g", lambda ctx: ctx.g * 0.5, "g/2", "g/2", tags=frozenset({"demo"}))]

    @hookimpl
    def nosplug_schedules():
        return [Schedule("flat", lambda t, T: torch.ones_like(t), "flat", "1")]
    """
)


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Path:
    """A distribution 'nosplug-demo 1.2.3' with an entry point, on a sys.path folder."""
    (tmp_path / "nosplug_demo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "nosplug_demo-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nosplug-demo\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[nosplug]\ndemo = nosplug_demo_plugin\n")
    return tmp_path


def _run(path: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": str(path), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "nosplug", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_entry_point_plugin_is_listed_with_its_version(installed_plugin: Path) -> None:
    out = _run(installed_plugin, "plugins", "list", "--json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    assert plugins["demo"]["version"] == "1.2.3"
    assert plugins["demo"]["registers"] == {"operands": ["half_g"], "schedules": ["flat"]}
    assert not plugins["demo"]["builtin"]


def test_entry_point_plugin_can_be_disabled(installed_plugin: Path) -> None:
    for args, env in ((("-p", "no:demo"), None), ((), {"NOSPLUG_DISABLE_PLUGINS": "demo"})):
        out = _run(installed_plugin, *args, "plugins", "list", "--json", env_extra=env)
        assert out.returncode == 0, out.stderr
        assert "demo" not in {p["name"] for p in json.loads(out.stdout)["plugins"]}


def test_entry_point_operand_is_usable_in_genomes(installed_plugin: Path, tmp_path: Path) -> None:
    genome = {
        "format": "nosplug-genome",
        "version": 1,
        "nodes": [
            {"id": "h0", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["half_g"]},
            {"id": "out", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["h0"]},
        ],
    }
    path = tmp_path / "half.json"
    path.write_text(json.dumps(genome))
    out = _run(installed_plugin, "genome", "show", str(path))
    assert out.returncode == 0, out.stderr
    assert "g/2" in out.stdout
    # without the plugin the same file is an error that names the operand
    out = _run(installed_plugin, "-p", "no:demo", "genome", "show", str(path))
    assert out.returncode == 2 and "'half_g'" in out.stderr
