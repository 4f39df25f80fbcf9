"""Shared rich console helpers for the CLI (one place for output modes)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

# no emoji codes: an optimizer name such as pytorch_optimizer:SOAP: must print as written
console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


def emit_json(obj: Any) -> None:
    """One JSON document per line on stdout (the ``--json`` mode of commands)."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def name_column(table: Any, header: str, **kwargs: Any) -> None:
    """Add the column that names each row (an optimizer, genome, task, plugin): never wrapped,
    so a name is either whole or visibly cut, which :func:`fitted` then avoids."""
    table.add_column(header, no_wrap=True, overflow="ellipsis", min_width=len(header), **kwargs)


def value_column(table: Any, header: str, justify: str = "right", **kwargs: Any) -> None:
    """Add a column of figures: it may wrap between words (a header over two lines, an interval
    over two), never inside one, so nothing in it is cut while the table fits at all."""
    longest = max((len(w) for w in header.split()), default=1)
    table.add_column(header, justify=justify, min_width=longest, overflow="fold", **kwargs)


def fitted(build: Callable[[list[str]], Any], names: Sequence[str], width: int | None = None) -> Any:
    """The table ``build(labels)`` with every row's name whole: ``labels`` are the ``names``
    themselves when the table fits ``width`` (the console's) that way, every name whole and no
    cell or header cut; otherwise each distinct name gets a key (``#1``, ``#2``, ...) in the
    table and a line below it (``#1  full name``), the way long evidence goes below the table
    instead of being folded inside it."""
    from rich.console import Group
    from rich.markup import escape
    from rich.text import Text

    width = width or console.width
    names = list(names)
    table = build(names)
    if fits(table, names, width):
        return table
    keys = {n: f"#{i}" for i, n in enumerate(dict.fromkeys(names), 1)}
    legend = [Text.from_markup(f"[bold]{k}[/bold]  {escape(n)}", emoji=False) for n, k in keys.items()]
    return Group(build([keys[n] for n in names]), *legend)


def fits(renderable: Any, names: Sequence[str], width: int) -> bool:
    """Whether ``renderable`` printed ``width`` columns wide shows every name whole on one line
    and cuts nothing (no more ellipses than it has with all the room it wants)."""
    narrow, wide = render_text(renderable, width), render_text(renderable, 100_000)
    lines = narrow.splitlines()
    whole = all(any(n in line for line in lines) for n in names)
    uncropped = max((len(line.rstrip()) for line in lines), default=0) <= width
    return whole and uncropped and narrow.count("…") <= wide.count("…")


def render_text(renderable: Any, width: int) -> str:
    """``renderable`` as plain text, ``width`` columns wide; lines that do not fit are kept whole
    (not cropped), so a caller can see that they do not."""
    import io

    probe = Console(
        file=io.StringIO(), width=width, color_system=None, force_terminal=False, record=True, emoji=False
    )
    probe.print(renderable, crop=False)
    return probe.export_text()
