"""How `rctc` shows what it found: tables on stdout, times absolute and relative, progress on stderr.

    table(["alert", "due"], [[alert_id, when(due, now)]])   # a rich table; plain text when stdout is no terminal
    with progress("reading alerts.enriched") as step:       # a bar on stderr, only when stderr is a terminal
        await simulate(..., progress=step)                  # step(done, total); None off a terminal

stdout carries the command's answer alone (a table, or one JSON document with --json), so scripts can read it;
anything that only reassures a person waiting goes to stderr, and only when a person is watching.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

Progressed = Callable[[int, int], None]
# Off a terminal rich would wrap at 80 columns, cutting alert ids in two: a script reads whole lines.
PLAIN_WIDTH = 240


def relative(at: datetime, now: datetime) -> str:
    """`at` from `now` in its largest unit: "in 4m", "3m ago", "now" (within a second)."""
    seconds = int((at - now).total_seconds())
    size = abs(seconds)
    if size < 1:
        return "now"
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if size >= length:
            amount = f"{size // length}{unit}"
            return f"in {amount}" if seconds > 0 else f"{amount} ago"
    return "now"  # unreachable: size >= 1


def when(at: datetime | str | None, now: datetime) -> str:
    """A time for a table: ISO 8601 to the second and relative to `now` ("2026-12-03T10:04:00+00:00 (in 4m)")."""
    if at is None:
        return "-"
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    return f"{moment.replace(microsecond=0).isoformat()} ({relative(moment, now)})"


def console() -> Console:
    """stdout as rich writes it: colours and the terminal's width on one, plain text and wide lines off one."""
    terminal = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if terminal else PLAIN_WIDTH, no_color=not terminal)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
    """Print `rows` under `columns` on stdout (numbers right-aligned); "none" when there are no rows."""
    out = console()
    if not rows:
        out.print(f"{title}: none" if title else "none")
        return
    grid = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for n, name in enumerate(columns):
        numeric = all(isinstance(row[n], int) for row in rows)
        grid.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        grid.add_row(*(str(cell) for cell in row))
    out.print(grid)


def print_json(document: Any) -> None:
    """One JSON document on stdout, for scripts (--json)."""
    print(json.dumps(document, indent=2, sort_keys=True, default=str))


@contextmanager
def progress(description: str) -> Iterator[Progressed | None]:
    """A progress bar on stderr while the block runs, fed by the callback yielded; None (no bar, nothing to call)
    when stderr is not a terminal, so a log or a pipe gets no control characters."""
    if not sys.stderr.isatty():
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(description, total=None)

    def step(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield step
