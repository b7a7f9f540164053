"""A loop-stall watchdog: the dead-man for a controller whose event loop hangs.

The governor's heartbeat catches a stalled *task*; it cannot catch a stalled
*event loop*, because then nothing in the loop runs at all. This thread watches a
timestamp the loop refreshes; if the loop has not refreshed it within the
heartbeat period, the loop first gets a moment (``STALL_GRACE_S``) to switch every
massager of this process off, then the process ends. A loop that only paused
(SIGSTOP/SIGCONT, a suspended VM) does that; a loop that is truly hung does not, and
then the BLE link drops with the process, the crash marker stays behind, and the next
footctl start (for the daemon: systemd's restart) connects to the massager and turns it
off. (Exiting at once raced the loop after SIGCONT: when the thread won, the massager
ran on until something restarted footctl.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable

from footctl.safety.governor import SafetyGovernor, live_governors

_LOG = logging.getLogger(__name__)

# Exit status when the watchdog ends a stalled process (EX_SOFTWARE from sysexits.h).
EXIT_STALLED = 70

# How long a stalled loop gets to switch everything off before the process ends: one
# stop with its re-sends (CONFIRM_TIMEOUT_S is 5 s) fits; a hung loop costs only this.
STALL_GRACE_S = 6.0


def _die() -> None:
    os._exit(EXIT_STALLED)


async def everything_off(reason: str = "heartbeat_missed") -> None:
    """Stop every massager this process drives (every live governor), at once."""

    async def one(governor: SafetyGovernor) -> None:
        with contextlib.suppress(Exception):
            await governor.stop(source="governor", reason=reason)

    await asyncio.gather(*(one(g) for g in live_governors()))


class LoopWatchdog:
    """Ends the process if the event loop stops running for ``timeout_s``."""

    def __init__(
        self,
        timeout_s: float,
        *,
        on_stall: Callable[[], None] = _die,
        clock: Callable[[], float] = time.monotonic,
        before_exit: Callable[[], Awaitable[object]] | None = everything_off,
        grace_s: float = STALL_GRACE_S,
    ) -> None:
        self.timeout_s = timeout_s
        self._on_stall = on_stall
        self._clock = clock
        self._before_exit = before_exit
        self.grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self.off_done = False
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
                self._give_the_loop_a_moment()
                self._on_stall()
                return

    def _give_the_loop_a_moment(self) -> None:
        """Ask the loop to switch everything off; wait up to ``grace_s`` for it."""
        loop, before_exit = self._loop, self._before_exit
        if loop is None or before_exit is None or loop.is_closed():
            return

        async def run() -> None:
            await before_exit()

        try:
            future = asyncio.run_coroutine_threadsafe(run(), loop)
        except RuntimeError:  # the loop is closed
            return
        try:
            future.result(timeout=self.grace_s)
            self.off_done = True
        except (concurrent.futures.TimeoutError, Exception) as exc:
            future.cancel()
            _LOG.critical("the stalled loop did not switch everything off (%r)", exc)

    def start(self) -> None:
        """Start beating from the running loop and watching from a thread."""
        self._loop = asyncio.get_running_loop()
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
