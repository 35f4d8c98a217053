"""How list and show commands print: tables for people, ``--json`` for scripts.

`print_json` writes plain JSON to standard output (datetimes as ISO 8601, no colour, no
wrapping), so ``llmasos keys list --json | jq -r '.[0].key_id'`` works. Its field names are
part of the CLI's contract and listed in docs/cli.md.

`table` builds a rich table whose *key* columns (identifiers, model names, paths) are never
cut or wrapped, at any terminal width: the other columns wrap instead (each keeps at least a
readable width). When the columns cannot all fit, `print_table` prints each row as a block
of ``header  value`` lines instead (like psql's expanded display), so nothing is dropped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from llmasos.cli.root import console

JSON_OPTION_HELP = "Print JSON (stable field names, see docs/cli.md) instead of a table."


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def print_json(data: Any) -> None:
    """``data`` as indented JSON on standard output."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=_default) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Column:
    """A table column; ``key`` columns (ids, names, paths) are never cut or wrapped."""

    header: str
    key: bool = False
    justify: str = "left"


def table(*columns: Column | str, title: str | None = None, plain: bool = False) -> Table:
    """A table with ``columns``; a bare string is an ordinary (wrapping) column.

    ``plain`` gives Ollama's look (no box, no padding at the edges)."""
    options: dict[str, Any] = {"box": None, "pad_edge": False} if plain else {}
    result = Table(title=title, **options)
    for column in columns:
        spec = Column(column) if isinstance(column, str) else column
        if spec.key:
            result.add_column(spec.header, no_wrap=True, overflow="ignore")
        else:
            result.add_column(spec.header, overflow="fold", justify=spec.justify)  # type: ignore[arg-type]
    return result


MIN_WRAPPED_WIDTH = 10
"""The narrowest a wrapping column gets before the table switches to blocks."""


def _text_width(cell: Any) -> int:
    text = cell if isinstance(cell, Text) else Text(str(cell))
    return max((line.cell_len for line in text.split("\n")), default=0)


def print_table(result: Table, **print_options: Any) -> None:
    """Print ``result`` with every key column whole; as blocks when it does not fit."""
    needed = 0
    for column in result.columns:
        cells: Sequence[Any] = list(column.cells)
        content = max([_text_width(column.header), *map(_text_width, cells)])
        if column.no_wrap:
            column.min_width = content
        else:
            column.min_width = min(content, max(_text_width(column.header), MIN_WRAPPED_WIDTH))
        needed += column.min_width
    count = len(result.columns)
    needed += 2 * count - 2 if result.box is None else 3 * count + 1
    if needed <= console.width or not result.row_count:
        console.print(result, **print_options)
        return
    _print_blocks(result)


def _print_blocks(result: Table) -> None:
    """Each row as ``header  value`` lines, a blank line between rows."""
    headers = [str(column.header) for column in result.columns]
    width = max(map(len, headers))
    columns = [list(column.cells) for column in result.columns]
    if result.title:
        console.print(result.title, highlight=False)
    for index in range(result.row_count):
        if index:
            console.print()
        for header, cells in zip(headers, columns, strict=True):
            value = cells[index]
            line = Text(f"{header:<{width}}  ", style="bold")
            line.append(value if isinstance(value, Text) else Text(str(value)))
            console.print(line, soft_wrap=True)
