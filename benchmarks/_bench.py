"""What the benchmark scripts share: progress lines and the machine-readable result line.

Every script prints its progress as it goes (``progress``), its tables for people, and as its
last line ``NOSPLUG-BENCH-JSON {...}`` (``emit``): the tables as data, which
``benchmarks/run_all.py`` turns into the Markdown tables of docs/performance.md. A table is
``{"id", "title", "columns", "rows", "note"}`` with every cell already a string (units and
emphasis as they should appear in the docs).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from typing import Any

PREFIX = "NOSPLUG-BENCH-JSON "


def progress(text: str) -> None:
    print(f"  ... {text}", flush=True)


def table(
    table_id: str, title: str, columns: list[str], rows: list[list[str]], note: str = ""
) -> dict[str, Any]:
    if any(len(r) != len(columns) for r in rows):
        raise ValueError(f"table {table_id}: every row needs {len(columns)} cells")
    return {"id": table_id, "title": title, "columns": columns, "rows": rows, "note": note}


def machine() -> str:
    """``platform.processor()``, or the CPU model from /proc/cpuinfo where that is empty (Linux)."""
    name = platform.processor()
    if not name or name == platform.machine():
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    return name or platform.machine()


def environment() -> dict[str, Any]:
    import torch

    return {
        "date": _dt.date.today().isoformat(),
        "torch": torch.__version__.split("+")[0],
        "machine": machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }


def emit(benchmark: str, tables: list[dict[str, Any]], fast: bool = False) -> None:
    """The result line (last line of the script's output)."""
    payload = {"benchmark": benchmark, "fast": fast, "env": environment(), "tables": tables}
    print(PREFIX + json.dumps(payload), flush=True)


def print_table(t: dict[str, Any]) -> None:
    """A table for people reading the script's output."""
    widths = [max(len(c), *(len(r[i]) for r in t["rows"])) for i, c in enumerate(t["columns"])]
    print(f"\n{t['title']}")
    print("  ".join(c.ljust(w) for c, w in zip(t["columns"], widths)))
    for r in t["rows"]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    if t["note"]:
        print(t["note"])
