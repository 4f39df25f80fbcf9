"""Library calls stay quiet (issue 22 item 4): no Optuna INFO lines from the studies nosplug
creates for itself, without changing the user's logging configuration."""

from __future__ import annotations

import logging
import threading

import optuna
import pytest
from optuna.distributions import FloatDistribution

from nosplug.quiet import quiet_optuna

SPACE = {"lr": FloatDistribution(1e-5, 10.0, log=True)}


@pytest.fixture
def optuna_log():
    """Every record that reaches Optuna's logger (which does not propagate to the root)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("optuna")
    handler = Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    before = logger.level
    optuna.logging.set_verbosity(optuna.logging.INFO)  # Optuna's default, as a fresh user has it
    yield records
    logger.removeHandler(handler)
    logger.setLevel(before)


def test_suggest_and_suggest_blind_log_nothing(optuna_log, capfd) -> None:
    from nosplug.benchmark.contenders import suggest, suggest_blind

    suggest(SPACE, [({"lr": 0.1}, 1.0), ({"lr": 1.0}, None)], "minimize", 0)
    for sampler in ("random", "qmc"):
        suggest_blind(SPACE, 3, 0, sampler)
    assert [r.getMessage() for r in optuna_log] == []
    assert "A new study" not in capfd.readouterr().err
    assert logging.getLogger("optuna").level == logging.INFO  # the user's setting is back


def test_a_durable_study_is_created_quietly(optuna_log, tmp_path) -> None:
    from nosplug.benchmark.config import normalise
    from nosplug.benchmark.study import create

    raw = normalise(
        {
            "benchmark": {"name": "q", "contenders": ["adam"]},
            "tasks": [{"name": "diabetes-mlp"}],
        }
    )
    create(raw, f"journal:///{tmp_path}/j.log", exist_ok=True)
    assert [r.getMessage() for r in optuna_log] == []


def test_evaluate_genome_logs_nothing(optuna_log) -> None:
    from nosplug import zoo
    from nosplug.evaluation.evaluate import evaluate_genome
    from nosplug.tasks import resolve_task

    task = resolve_task("diabetes-mlp")
    evaluate_genome(zoo.load("adam"), task, task.load(0), "smoke")
    assert [r.getMessage() for r in optuna_log] == []


def test_quiet_restores_the_level_and_leaves_debug_alone() -> None:
    logger = logging.getLogger("optuna")
    before = logger.level
    try:
        logger.setLevel(logging.INFO)
        with quiet_optuna():
            assert logger.getEffectiveLevel() == logging.WARNING
            with quiet_optuna():  # nested
                pass
            assert logger.getEffectiveLevel() == logging.WARNING
        assert logger.level == logging.INFO
        logger.setLevel(logging.DEBUG)  # the user asked for everything
        with quiet_optuna():
            assert logger.getEffectiveLevel() == logging.DEBUG
        assert logger.level == logging.DEBUG
        logger.setLevel(logging.INFO)
        barrier = threading.Barrier(4)

        def worker() -> None:
            with quiet_optuna():
                barrier.wait(timeout=5)  # all four blocks overlap
            for _ in range(50):
                with quiet_optuna():
                    pass

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert logger.level == logging.INFO  # overlapping blocks in threads restore it too
    finally:
        logger.setLevel(before)
