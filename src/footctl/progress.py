"""Progress messages on stderr, at a rate that suits where stderr goes.

On a terminal every message is shown (a ramp step, a connect). When stderr is not a
terminal (journald under systemd, a log file, a pipe) progress is logged as plain
lines: a new kind of message (scanning, connecting, ramping) at once, repeats of one
kind (the steps of a ramp) at most one per :data:`LOG_INTERVAL_S`, so a ramp leaves a
readable trail in the log without flooding it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

# The default ramp step (one intensity level per 10 s): off a terminal, one line per
# step of a default ramp, and no flood when the ramp is set faster.
LOG_INTERVAL_S = 10.0


class ProgressPrinter:
    """A progress callback (``printer(message)``) for commands that wait."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        verbose: bool = False,
        stream: TextIO | None = None,
        interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.every = verbose or self.stream.isatty()
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        now = self._clock()
        # "ramping intensity: 2 of 3, ..." -> "ramping intensity": one kind of message.
        kind = message.split(":", 1)[0]
        last = self._last.get(kind)
        if not self.every and last is not None and now - last < self.interval_s:
            return
        self._last[kind] = now
        print(message, file=self.stream, flush=True)


def progress_printer(as_json: bool, verbose: int) -> ProgressPrinter:
    """The progress callback of a CLI command: quiet under ``--json`` (unless ``-v``),
    every message on a terminal, throttled lines otherwise."""
    return ProgressPrinter(enabled=not as_json or verbose > 0, verbose=verbose > 0)
