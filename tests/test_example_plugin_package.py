"""The example plugin package under plugins/ installs with pip, registers itself and works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plugins" / "nosplug-example"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """pip-install the package (its own pyproject.toml, entry point) into a private folder."""
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    out = subprocess.run(
        [*pip, "--target", str(target), str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return target


def _env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site)}


def _nosplug(site: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nosplug", *args], capture_output=True, text=True, env=_env(site), timeout=600
    )


def test_plugins_list_shows_the_installed_package(site: Path) -> None:
    out = _nosplug(site, "plugins", "list", "--json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    assert plugins["example"]["version"] == "0.2.0"
    assert plugins["example"]["registers"] == {
        "operands": ["g_rms"],
        "schedules": ["step3"],
        "surrogates": ["tiny_mlp"],
    }


def test_the_package_tests_pass_against_this_nosplug(site: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PACKAGE / "tests")],
        capture_output=True,
        text=True,
        env=_env(site),
        timeout=600,
        cwd=PACKAGE,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_genome_using_the_plugin_operand_trains_a_model(site: Path, tmp_path: Path) -> None:
    genome = {
        "format": "nosplug-genome",
        "version": 1,
        "nodes": [
            {"id": "h0", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["g_rms"]},
            {"id": "out", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["h0"]},
        ],
    }
    path = tmp_path / "g_rms.json"
    path.write_text(json.dumps(genome))
    out = _nosplug(site, "evaluate", str(path), "--dataset", "digits", "--preset", "smoke", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["status"] == "complete" and res["fitness"] > 0.5, res
    # without the plugin, the same genome is rejected with a message naming the operand
    plain = subprocess.run(
        [sys.executable, "-m", "nosplug", "genome", "show", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plain.returncode != 0 and "g_rms" in plain.stderr
