"""The loop-stall watchdog fires when the event loop hangs, and not otherwise; before it
ends the process it gives the loop a moment to switch everything off."""

from __future__ import annotations

import asyncio
import threading
import time

from footctl.safety.watchdog import LoopWatchdog


async def test_watchdog_fires_when_the_loop_stalls() -> None:
    fired = threading.Event()
    dog = LoopWatchdog(0.2, on_stall=fired.set, before_exit=None)
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


async def test_a_loop_that_resumes_switches_everything_off_before_the_process_ends() -> None:
    """SIGSTOP/SIGCONT: the thread sees the stall; the loop, running again, must get to
    switch everything off before the exit (issue #9, 5: the thread used to exit at once
    and the massager ran on)."""
    order: list[str] = []
    fired = threading.Event()

    async def everything_off() -> None:
        order.append("off")

    def on_stall() -> None:
        order.append("exit")
        fired.set()

    dog = LoopWatchdog(0.2, on_stall=on_stall, before_exit=everything_off, grace_s=5.0)
    dog.start()
    try:
        time.sleep(0.6)  # noqa: ASYNC251 - the stall; the loop resumes afterwards
        for _ in range(100):
            if fired.is_set():
                break
            await asyncio.sleep(0.02)
        assert order == ["off", "exit"]
        assert dog.off_done
    finally:
        dog.stop()


async def test_a_hung_loop_still_ends_the_process_after_the_grace() -> None:
    """A loop that never runs again cannot switch anything off: after the grace the
    process ends anyway (the crash marker and the next start's recovery take over)."""
    fired = threading.Event()
    ran: list[str] = []

    async def everything_off() -> None:
        ran.append("off")

    dog = LoopWatchdog(0.1, on_stall=fired.set, before_exit=everything_off, grace_s=0.3)
    dog.start()
    try:
        time.sleep(0.2)  # noqa: ASYNC251 - hung
        assert fired.wait(2.0)  # still hung (this wait blocks the loop too)
        assert ran == []
        assert not dog.off_done
    finally:
        dog.stop()
