"""The journal's writes never block the owner's event loop: the recorder writes in its own
thread, so another process holding the journal's write lock (or a slow fsync) leaves every
governor's watch and tick running, and the rows appear, complete and in order, once the
lock is released. Before: each write was a synchronous sqlite3 call on the loop, which
stood still for the whole busy timeout (5 s) and then lost the write ("database is
locked").
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from footctl.control.api import SessionEvent, SetRequest, StopRequest
from footctl.control.hub import StateHub
from footctl.journal import Journal
from footctl.journal_hooks import JournalRecorder
from test_journal_sources import _zero_cooldown, journaled_owner

# How long the other connection holds the write lock: well under the journal's busy
# timeout (5 s), so a write that waits for it succeeds.
HOLD_S = 2.0
# The longest the loop may stand still while the lock is held. Generous for a loaded
# 2-core machine (ticks are ~10 ms apart); a write on the loop stalls it for the whole
# HOLD_S, at least.
LOOP_GAP_S = 0.5
# A tick of the gap meter.
TICK_S = 0.01


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection (as another footctl process would) holding the journal's
    write lock until the block ends."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield other
        finally:
            other.execute("COMMIT")
    finally:
        other.close()


@contextlib.asynccontextmanager
async def loop_gaps() -> AsyncIterator[list[float]]:
    """The gaps between the ticks of a task sleeping :data:`TICK_S` in a loop, while
    the block runs."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def meter() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = loop.create_task(meter())
    try:
        yield gaps
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_locked_journal_never_stops_the_owner(
    tmp_path: Path, profiles: dict[str, Any]
) -> None:
    """A stop is sent and confirmed, and the loop keeps ticking, while another connection
    holds the journal's write lock; the session's end is written once it is released."""
    async with journaled_owner(tmp_path, profiles["shiatsu-aa55"], _zero_cooldown()) as (
        owner, rig, journal,
    ):
        massager = rig.massagers[0]
        reply = await owner.request(SetRequest(source="cli", intensity=1, heat=1))
        assert reply.ok, reply
        owner.settle_journal()  # its start is written
        [started] = journal.history(1, include_simulated=True)
        assert started.ended_at is None
        async with loop_gaps() as gaps:
            with write_lock(journal.path):
                stop = await owner.request(StopRequest(source="cli"))
                assert stop.ok, stop
                assert not massager.model.running  # confirmed while the lock is held
                await asyncio.sleep(HOLD_S)
        assert gaps and max(gaps) < LOOP_GAP_S, max(gaps)
        owner.settle_journal()
        [row] = journal.history(1, include_simulated=True)
        assert (row.id, row.source, row.end_reason, row.peak_heat) == (
            started.id, "cli", "stopped", 1,
        )


def _event(number: int, phase: str, at: datetime, **values: Any) -> SessionEvent:
    return SessionEvent(
        phase=phase, device_id="A", number=number, journal_device="A", profile="p",
        source="cli", at=at, **values,
    )


async def test_every_event_is_written_in_order_after_the_lock(tmp_path: Path) -> None:
    """Sessions started, grown and ended while the file is locked: the loop runs on, and
    afterwards every row is there, in order, with its last values."""
    journal = Journal(tmp_path / "j.sqlite3")
    hub = StateHub()
    recorder = JournalRecorder(journal)
    recorder.listen(hub)
    task = asyncio.get_running_loop().create_task(recorder.run())
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    sessions = 20
    try:
        async with loop_gaps() as gaps:
            with write_lock(journal.path):
                for n in range(1, sessions + 1):
                    at = t0 + timedelta(minutes=n)
                    hub.emit(_event(n, "started", at))
                    for heat in (1, 2, 3):
                        hub.emit(_event(n, "progress", at, peak_heat=heat, heat_s=heat * n))
                    hub.emit(_event(n, "ended", at + timedelta(seconds=30), reason="completed",
                                    peak_heat=3, heat_s=3.0 * n, steps_run=n))
                    await asyncio.sleep(0)  # the recorder's turn
                await asyncio.sleep(HOLD_S)
        assert gaps and max(gaps) < LOOP_GAP_S, max(gaps)
        recorder.settle()
        rows = journal.history(1, now=t0 + timedelta(hours=1), include_simulated=True)
        assert [(r.started_at, r.ended_at, r.end_reason, r.peak_heat, r.heat_s, r.steps_run)
                for r in rows] == [
            (t0 + timedelta(minutes=n), t0 + timedelta(minutes=n, seconds=30), "completed",
             3, 3.0 * n, n)
            for n in range(1, sessions + 1)
        ]
        assert [r.id for r in rows] == sorted(r.id for r in rows)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await recorder.aclose()
        journal.close()


async def test_closing_the_owner_writes_every_end(
    tmp_path: Path, profiles: dict[str, Any]
) -> None:
    """The owner closes (its sessions end) while the journal is locked: its close waits
    for the writer, off the loop, and the ends are in the file when it returns."""
    journal = Journal(tmp_path / "j.sqlite3")
    try:
        async with journaled_owner(tmp_path, profiles["shiatsu-aa55"], _zero_cooldown()) as (
            owner, _rig, _journal,
        ):
            reply = await owner.request(SetRequest(source="mqtt", intensity=1, heat=1))
            assert reply.ok, reply
            owner.settle_journal()
            with write_lock(journal.path):
                closing = asyncio.get_running_loop().create_task(owner.close())
                await asyncio.sleep(HOLD_S)
                assert not closing.done()  # waiting for the writer
            await closing
        [row] = journal.history(1, include_simulated=True)
        assert (row.source, row.end_reason, row.ended_by, row.peak_heat) == (
            "mqtt", "stopped", "shutdown", 1,
        )
    finally:
        journal.close()
