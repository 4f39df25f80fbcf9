"""Library code stays quiet: Optuna's INFO lines from the studies nosplug creates for itself.

Optuna logs ``[I ...] A new study created in memory with name: no-name-...`` for every study it
creates, including the throw-away in-memory studies a sampler is asked through
(:func:`nosplug.benchmark.contenders.suggest`) and the durable studies a search or benchmark
lives in. Called from Python, those lines would land on the user's console, one per call.

:func:`quiet_optuna` silences them for the duration of a call only: it raises the ``optuna``
logger's level to WARNING and restores it afterwards, so the user's own logging configuration
(handlers, formats, Optuna's verbosity outside nosplug's calls) is never changed. Asking for the
messages: set Optuna's verbosity to DEBUG (``optuna.logging.set_verbosity(optuna.logging.DEBUG)``)
and nosplug leaves the level alone. Warnings and errors always pass. No torch, no Optuna import.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

_LOCK = threading.Lock()
_DEPTH = 0
_SAVED: int = logging.NOTSET


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Within the block, Optuna logs warnings and errors only (re-entrant, thread-safe: the
    outermost block restores the level the logger had)."""
    global _DEPTH, _SAVED
    logger = logging.getLogger("optuna")
    with _LOCK:
        if _DEPTH == 0:
            _SAVED = logger.level
        _DEPTH += 1
        if logging.DEBUG < logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                logger.setLevel(_SAVED)
