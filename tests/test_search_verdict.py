"""The verdict that ends a search speaks for the user: when no searched genome is better than the
tuned reference, the output says what to try next, with the commands."""

from __future__ import annotations

from types import SimpleNamespace

from nosplug.search.verdict import next_steps


def _result(outcomes: dict[str, str]):
    verdicts = {c: SimpleNamespace(outcome=o) for c, o in outcomes.items()}
    return SimpleNamespace(
        contenders=[*outcomes, "torch:Adam"],
        verdicts=verdicts,
        reference="torch:Adam",
        tasks=[{"name": "charlm"}],
    )


def test_no_better_genome_gives_the_next_commands() -> None:
    lines = next_steps(
        "quick", _result({"study:quick#1": "worse", "study:quick#2": "no detectable difference"})
    )
    text = "\n".join(lines)
    assert "None of the best genomes of quick is better than tuned torch:Adam" in text
    assert "nosplug study create studies/discovery.toml && nosplug study run discovery" in text
    assert 'planner = "regularized-evolution"' in text and 'seed_genomes = ["adam"]' in text
    assert "nosplug benchmark study:quick#1 --tasks diabetes-mlp" in text  # not the searched task


def test_the_discovery_search_is_not_sent_to_itself() -> None:
    text = "\n".join(next_steps("discovery", _result({"study:discovery#1": "worse"})))
    assert "studies/discovery.toml" not in text
    assert "regularized-evolution" in text


def test_a_better_genome_needs_no_advice() -> None:
    assert next_steps("quick", _result({"study:quick#1": "better", "study:quick#2": "worse"})) == []
