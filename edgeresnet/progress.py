"""Progress and status output for long stages, on stderr so stdout stays machine-readable."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def progress_bar(description: str, *, total: int | None) -> Iterator[Callable[[int], None]]:
    """A bar with an ETA; yields ``advance(n)``."""
    columns = (
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def stage(title: str) -> Iterator[None]:
    """Announce a pipeline stage and report how long it took."""
    console.print(f"[bold]>[/bold] {title} ...")
    start = time.perf_counter()
    yield
    console.print(f"  done in {time.perf_counter() - start:.1f} s")


@contextlib.contextmanager
def quiet_logger(name: str, level: int) -> Iterator[None]:
    """Raise logger ``name``'s level inside the block only (a library's chatty logging)."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(max(level, before))
    try:
        yield
    finally:
        logger.setLevel(before)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")
