from __future__ import annotations

import os

import pytest
import torch

# Keep CI deterministic and lean on 2 cores. NOSPLUG_TEST_THREADS=1 lets two test runs share the
# machine without oversubscribing it.
torch.set_num_threads(int(os.environ.get("NOSPLUG_TEST_THREADS") or max(1, min(2, os.cpu_count() or 1))))


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch):
    """Every test starts with the default plugin set (tests may disable or add plugins)."""
    from nosplug import plugins

    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    plugins._extra_disabled.clear()
    plugins.reset()
    yield
    plugins._extra_disabled.clear()
    plugins.reset()
