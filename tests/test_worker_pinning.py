"""Local workers pin their threads to cores of their own (issue 14: two workers on 2 cores)."""

from __future__ import annotations

import os

import pytest

from nosplug.study.runner import pin_to_cores

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity API")


@pytest.fixture
def affinity(monkeypatch):
    calls: list[list[int]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: calls.append(list(cpus)))
    return calls


def test_each_worker_gets_its_own_cores(monkeypatch, affinity) -> None:
    monkeypatch.setenv("NOSPLUG_WORKERS", "2")
    for i, want in enumerate(([0, 1], [2, 3])):
        monkeypatch.setenv("NOSPLUG_WORKER_INDEX", str(i))
        assert pin_to_cores(2) == want
    assert affinity == [[0, 1], [2, 3]]


def test_no_pinning_for_a_single_worker_or_too_few_cores(monkeypatch, affinity) -> None:
    monkeypatch.delenv("NOSPLUG_WORKER_INDEX", raising=False)
    assert pin_to_cores(1) is None  # `study run` without --workers
    monkeypatch.setenv("NOSPLUG_WORKER_INDEX", "1")
    monkeypatch.setenv("NOSPLUG_WORKERS", "3")
    assert pin_to_cores(2) is None  # 3 x 2 threads do not fit 4 cores: leave it to the OS
    assert affinity == []


def test_a_real_child_worker_is_pinned(tmp_path) -> None:
    """The affinity a pinned process reports is the core it was given."""
    import subprocess
    import sys

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("one core")
    code = (
        "import os; from nosplug.study.runner import pin_to_cores; "
        "print(pin_to_cores(1), sorted(os.sched_getaffinity(0)))"
    )
    env = {**os.environ, "NOSPLUG_WORKERS": "2", "NOSPLUG_WORKER_INDEX": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split("] ")[1].strip() == f"[{cpus[1]}]"
