"""A loop-stall watchdog: the dead-man for a controller whose event loop hangs.

The governor's heartbeat catches a stalled *task*; it cannot catch a stalled
*event loop*, because then nothing in the loop runs at all. This thread watches a
timestamp the loop refreshes; if the loop has not refreshed it within the
heartbeat period, the process ends at once. The BLE link drops with it, the crash
marker stays behind, and the next footctl start (for the daemon: systemd's
restart) connects to the massager and turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable

_LOG = logging.getLogger(__name__)

# Exit status when the watchdog ends a stalled process (EX_SOFTWARE from sysexits.h).
EXIT_STALLED = 70


def _die() -> None:
    os._exit(EXIT_STALLED)


class LoopWatchdog:
    """Ends the process if the event loop stops running for ``timeout_s``."""

    def __init__(
        self,
        timeout_s: float,
        *,
        on_stall: Callable[[], None] = _die,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self._on_stall = on_stall
        self._clock = clock
        self._last = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.fired = False

    def _beat(self) -> None:
        self._last = self._clock()
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(self.timeout_s / 4, self._beat)

    def _run(self) -> None:
        while not self._stop.wait(self.timeout_s / 4):
            stalled = self._clock() - self._last
            if stalled > self.timeout_s:
                _LOG.critical(
                    "event loop stalled for %.1f s (limit %.1f s): ending the process so the "
                    "next start turns the massager off",
                    stalled,
                    self.timeout_s,
                )
                self.fired = True
                self._on_stall()
                return

    def start(self) -> None:
        """Start beating from the running loop and watching from a thread."""
        self._beat()
        self._thread = threading.Thread(target=self._run, name="footctl-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (clean exit)."""
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s)
