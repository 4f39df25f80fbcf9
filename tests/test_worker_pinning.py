"""Local workers pin their threads to cores of their own (issue 14: two workers on 2 cores)."""

from __future__ import annotations

import os

import pytest

from nosplug.study.local import LocalSlot

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity API")


@pytest.fixture
def affinity(monkeypatch):
    calls: list[list[int]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: calls.append(list(cpus)))
    return calls


def test_each_worker_gets_its_own_cores(affinity) -> None:
    for i, want in enumerate(([0, 1], [2, 3])):
        assert LocalSlot(i, 2).pin(2) == want
    assert affinity == [[0, 1], [2, 3]]


def test_no_pinning_for_a_single_worker_or_too_few_cores(affinity) -> None:
    assert LocalSlot(0, 1).pin(1) is None  # `study run` without --workers
    assert LocalSlot(1, 3).pin(2) is None  # 3 x 2 threads do not fit 4 cores: leave it to the OS
    assert affinity == []


def test_a_slot_is_read_from_the_command_line() -> None:
    assert LocalSlot.parse("1/2") == LocalSlot(1, 2) and str(LocalSlot(1, 2)) == "1/2"
    for bad in ("2/2", "x/2", "1", "-1/2"):
        with pytest.raises(ValueError, match="I/K"):
            LocalSlot.parse(bad)


def test_a_real_child_worker_is_pinned(tmp_path) -> None:
    """The affinity a pinned process reports is the core it was given."""
    import subprocess
    import sys

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("one core")
    code = (
        "import os; from nosplug.study.local import LocalSlot; "
        "print(LocalSlot(1, 2).pin(1), sorted(os.sched_getaffinity(0)))"
    )
    env = {**os.environ, "NOSPLUG_WORKERS": "2", "NOSPLUG_WORKER_INDEX": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split("] ")[1].strip() == f"[{cpus[1]}]"
