"""The loop-stall watchdog fires when the event loop hangs, and not otherwise."""

from __future__ import annotations

import asyncio
import threading
import time

from footctl.safety.watchdog import LoopWatchdog


async def test_watchdog_fires_when_the_loop_stalls() -> None:
    fired = threading.Event()
    dog = LoopWatchdog(0.2, on_stall=fired.set)
    dog.start()
    try:
        time.sleep(0.6)  # noqa: ASYNC251 - blocking the loop on purpose, like a hung controller
        assert fired.wait(1.0)
        assert dog.fired
    finally:
        dog.stop()


async def test_watchdog_stays_quiet_while_the_loop_runs() -> None:
    fired = threading.Event()
    dog = LoopWatchdog(0.2, on_stall=fired.set)
    dog.start()
    try:
        for _ in range(12):
            await asyncio.sleep(0.05)  # the loop keeps turning for 3x the limit
        assert not fired.is_set()
    finally:
        dog.stop()
