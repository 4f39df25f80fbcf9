"""The command line: output, option handling and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nosplug.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nosplug", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_help_lists_commands(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("plugins", "genome", "evaluate"):
        assert cmd in out


def test_plugins_list_json_and_disable_flag(capsys) -> None:
    assert main(["plugins", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {p["name"] for p in data["plugins"]}
    assert {"nosplug.operands", "nosplug.operations", "nosplug.schedules"} <= names
    ops = next(p for p in data["plugins"] if p["name"] == "nosplug.operands")
    assert "v_hat" in ops["registers"]["operands"]
    assert ops["version"]
    assert main(["-p", "no:nosplug.schedules", "plugins", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "nosplug.schedules" not in {p["name"] for p in data["plugins"]}
    assert data["disabled"] == ["nosplug.schedules"]


def test_plugins_list_table() -> None:
    out = run("plugins", "list")
    assert out.returncode == 0
    assert "nosplug.operands" in out.stdout and "20 operands" in out.stdout


def test_genome_show_formula_hash_and_latex(capsys) -> None:
    assert main(["genome", "show", "adam", "opt10", "--latex"]) == 0
    out = capsys.readouterr().out
    assert "m_0.9 / (sqrt(|v_0.999|) + 1e-8)" in out
    assert "Nesterov" in out and "a13 * a2" in out
    assert "\\frac" in out


def test_genome_show_file_and_json(tmp_path, capsys) -> None:
    import nosplug

    p = tmp_path / "g.json"
    p.write_text(nosplug.zoo.load("opt6").to_json())
    assert main(["genome", "show", str(p), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "nosplug-genome"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["genome", "show", "no-such-genome"], "neither a zoo genome nor a genome file"),
        (["-p", "nope", "plugins", "list"], "expected no:NAME"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message) -> None:
    out = run(*args)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_malformed_genome_file_names_the_problem(tmp_path) -> None:
    p = tmp_path / "bad.json"
    p.write_text(
        '{"format": "nosplug-genome", "version": 1, "nodes": [{"id": "out", "arity": 1, '
        '"unary": "warp", "binary": "add", "inputs": ["g"]}]}'
    )
    out = run("genome", "show", str(p))
    assert out.returncode == 2
    assert "node 'out': unknown unary op 'warp'" in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3
