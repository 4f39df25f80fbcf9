"""Reading and checking TOML config files: one place for the rules every config follows.

A schema maps section -> key -> (accepted types, default); a default of ``None`` marks a
required key. Errors are one line that starts with the key path (``ga.particles: expected int,
got 'many'``), raised as the caller's error class so each kind of config keeps its own name.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Schema = dict[str, dict[str, tuple[tuple[type, ...], Any]]]


def read_toml(path: str | Path, error: type[Exception]) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: no such config file")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{p}: not valid TOML ({exc})") from None


def check_sections(
    data: Mapping[str, Any], schema: Schema, error: type[Exception], free_sections: Iterable[str] = ()
) -> dict[str, Any]:
    """Typed, defaulted copies of the schema's sections; unknown sections and keys are errors.

    ``free_sections`` are allowed but not checked here (the caller validates them).
    """
    if not isinstance(data, Mapping):
        raise error("a config must be a table")
    allowed = {*schema, *free_sections, "version"}
    for section in data:
        if section not in allowed:
            raise error(f"{section}: unknown section (known: {', '.join(sorted(allowed))})")
    out: dict[str, Any] = {}
    for section, keys in schema.items():
        given = data.get(section, {})
        if not isinstance(given, Mapping):
            raise error(f"{section}: expected a table, got {type(given).__name__}")
        sec: dict[str, Any] = {}
        for key, value in given.items():
            if key not in keys:
                raise error(f"{section}.{key}: unknown key (known: {', '.join(keys)})")
            types = keys[key][0]
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                expected = " or ".join(t.__name__ for t in types)
                raise error(f"{section}.{key}: expected {expected}, got {value!r}")
            sec[key] = copy.deepcopy(value)
        for key, (_types, default) in keys.items():
            if key not in sec:
                if default is None:
                    raise error(f"{section}.{key}: required")
                sec[key] = copy.deepcopy(default)
        out[section] = sec
    return out
