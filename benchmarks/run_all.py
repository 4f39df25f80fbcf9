"""Run every benchmark and write its tables into docs/performance.md.

    python benchmarks/run_all.py                  # all of them, about 15 minutes on 2 cores
    python benchmarks/run_all.py --fast           # smoke budgets (CI): checks the machinery only
    python benchmarks/run_all.py --only optimizer study

Each benchmark runs alone as a subprocess with ``--threads``/``OMP_NUM_THREADS`` threads (2 by
default, the project machine's cores); its progress is shown as it goes. The last line of its
output carries its tables as data (see ``benchmarks/_bench.py``); each table replaces the block
between ``<!-- bench:ID -->`` and ``<!-- /bench:ID -->`` in the docs page, headed by the date,
torch version, machine and cores it was measured on. Tables of benchmarks not run are left as
they are. The Markdown written is also printed, so a run's log shows exactly what the page says.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _bench import PREFIX  # noqa: E402

#: name -> script; the order runs the short ones first
BENCHMARKS = {
    "optimizer": "bench_optimizer.py",
    "evaluation": "bench_evaluation.py",
    "study": "bench_study.py",
    "benchmark": "bench_benchmark.py",
    "amalgamation": "bench_amalgamation.py",
}
TABLE_START = "<!-- bench:{id} -->"
TABLE_END = "<!-- /bench:{id} -->"
PRINT_START = "=== table {id} ==="
PRINT_END = "=== end table {id} ==="


def run_benchmark(name: str, fast: bool, threads: int) -> dict[str, Any]:
    """Run one benchmark script, echo its output live, return its result payload."""
    cmd = [sys.executable, str(HERE / BENCHMARKS[name]), "--threads", str(threads)]
    if fast:
        cmd.append("--fast")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env["PYTHONUNBUFFERED"] = "1"
    t0 = time.perf_counter()
    print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    payload = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(PREFIX):
            payload = json.loads(line[len(PREFIX) :])
        else:
            print(f"[{name}] {line}", end="", flush=True)
    if proc.wait() != 0:
        raise BenchmarkFailed(f"[{name}] failed with exit code {proc.returncode}")
    if payload is None:
        raise BenchmarkFailed(f"[{name}] printed no result line ({PREFIX.strip()} ...)")
    print(f"[{name}] done in {time.perf_counter() - t0:.0f} s", flush=True)
    return payload


class BenchmarkFailed(RuntimeError):
    """A benchmark exited with an error or without its result line."""


def markdown(table: dict[str, Any], env: dict[str, Any], fast: bool, command: str) -> str:
    """One table as the docs show it: provenance line, table, note."""
    provenance = (
        f"_{env['date']}, torch {env['torch']}, {env['machine']}, {env['cores']} cores, "
        f"{env['threads']} threads; `{command}`"
    )
    provenance += " (smoke budgets: not a measurement)_" if fast else "_"
    lines = [provenance, "", "| " + " | ".join(table["columns"]) + " |"]
    lines.append("|" + "---|" * len(table["columns"]))
    lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    if table.get("note"):
        lines += ["", table["note"]]
    return "\n".join(lines)


def write_tables(page: str, blocks: dict[str, str]) -> str:
    """Replace each table's block between its markers; every table must have its markers."""
    for table_id, block in blocks.items():
        start, end = TABLE_START.format(id=table_id), TABLE_END.format(id=table_id)
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
        if not pattern.search(page):
            raise SystemExit(f"the docs page has no markers for table {table_id!r}: add {start} ... {end}")
        page = pattern.sub(lambda _m, b=block, s=start, e=end: f"{s}\n{b}\n{e}", page, count=1)
    return page


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="smoke budgets, for CI")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--docs", type=Path, default=ROOT / "docs" / "performance.md")
    ap.add_argument("--no-write", action="store_true", help="print the tables, leave the docs alone")
    args = ap.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    command = "python benchmarks/run_all.py" + (" --fast" if args.fast else "")
    blocks: dict[str, str] = {}
    failed: list[str] = []
    for i, name in enumerate(names, 1):
        print(f"\n== benchmark {i}/{len(names)}: {name} ==", flush=True)
        try:
            payload = run_benchmark(name, args.fast, args.threads)
        except BenchmarkFailed as exc:  # the others' tables are still worth writing
            print(exc, flush=True)
            failed.append(name)
            continue
        for table in payload["tables"]:
            block = markdown(table, payload["env"], payload["fast"], command)
            blocks[table["id"]] = block
            print(PRINT_START.format(id=table["id"]), block, PRINT_END.format(id=table["id"]), sep="\n")
    if not args.no_write:
        args.docs.write_text(write_tables(args.docs.read_text(), blocks))
        print(f"\nwrote {len(blocks)} tables into {args.docs}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
