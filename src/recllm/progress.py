"""One progress bar for the trainers (SASRec, TIGER, LoRA): shown on an interactive stderr, silent otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def training_progress(label: str, total: int, *, done: int = 0, enabled: bool = True,
                      show_count: bool = False) -> Iterator[Callable[[str], None]]:
    """A rich bar named ``label`` over ``total`` units (epochs or steps), ``done`` of them already behind (a
    resumed run); yields ``advance(description)``. Disabled off a terminal (tests, logs) or when not ``enabled``."""
    console = Console(stderr=True)
    columns = [TextColumn(label), BarColumn(), *([TextColumn("{task.completed}/{task.total}")] if show_count else []),
               TextColumn("{task.description}"), TimeElapsedColumn()]
    progress = Progress(*columns, console=console, transient=True, disable=not (enabled and console.is_terminal))
    with progress:
        task = progress.add_task("", total=total, completed=done)

        def advance(description: str) -> None:
            progress.update(task, advance=1, description=description)

        yield advance
