"""Names match the docs (issue 22 item 5): attached best genomes are NAME_bestK.json with the
study's own name, and ``evaluate --json`` names both hashes, as planned and as evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import nosplug
from nosplug.cli import main
from nosplug.study.artifacts import best_file


def test_best_genome_files_carry_the_study_name_as_it_is() -> None:
    assert best_file("my-study", 1, "json") == "my-study_best1.json"
    assert best_file("MyStudy", 2, "py") == "MyStudy_best2.py"
    assert best_file("quick.round2", 3, "json") == "quick.round2_best3.json"
    assert best_file("a b/c", 1, "json") == "a_b_c_best1.json"  # what a file name cannot hold


def test_evaluate_json_names_the_planned_and_the_evaluated_hash(tmp_path: Path, capsys) -> None:
    adam = nosplug.zoo.load("adam")
    ascent = nosplug.Genome.from_dict(adam.to_dict())
    ascent.flip = not ascent.flip  # gradient ascent: the integrity check flips it back
    path = tmp_path / "ascent.json"
    path.write_text(ascent.to_json())
    assert main(["evaluate", str(path), "--task", "diabetes-mlp", "--preset", "smoke", "--json"]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["flip"] is True and "hash" not in line
    assert line["planned_hash"] == ascent.canonical_hash()
    assert line["evaluated_hash"] == adam.canonical_hash() != line["planned_hash"]
