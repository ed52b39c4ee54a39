"""Progress of long work: a bar with rate and ETA on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

import click

PLAIN_EVERY = 5.0  # seconds between plain progress lines


class Progress:
    def __init__(self, title: str) -> None:
        self.title = title
        self.total = 0
        self.done = 0
        self.failed = 0
        self._bar: Any = None
        self._task: Any = None
        self._last_line = 0.0
        self._started = 0.0

    def __enter__(self) -> Progress:
        return self

    def start(self, total: int) -> None:
        self.total = total
        self._started = time.monotonic()
        if sys.stdout.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as Bar

            class Rate(TransferSpeedColumn):
                def render(self, task: Any) -> Any:
                    from rich.text import Text

                    speed = task.finished_speed or task.speed
                    return Text(f"{speed or 0:.0f} msg/s", style="progress.data.speed")

            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                Rate(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=total)
        else:
            click.echo(f"{self.title}: {total} to send")

    def advance(self, result: Any) -> None:
        self.done += 1
        if getattr(result, "outcome", "sent") != "sent":
            self.failed += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1)
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_EVERY or self.done == self.total:
            self._last_line = now
            elapsed = max(now - self._started, 1e-6)
            rate = self.done / elapsed
            left = (self.total - self.done) / rate if rate else 0
            click.echo(
                f"{self.title}: {self.done}/{self.total} ({rate:.0f} msg/s, "
                f"{left:.0f}s left, {self.failed} not sent)"
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
