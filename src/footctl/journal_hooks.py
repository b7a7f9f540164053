"""The journal listening to the hub: one row per governed session.

The owner tells its :class:`~footctl.control.hub.StateHub` of every session each of
its governors runs (:class:`~footctl.control.api.SessionEvent`: started, progress,
ended; see :class:`footctl.control.held.SessionPublisher`), whatever its source (the
CLI, the TUI, MQTT, a program, a schedule). :class:`JournalRecorder` is a hub
subscriber with a lossless stream of those events, and writes the rows: a session's
start (its source, program), its peak heat and seconds of heat as it runs, its end
(how it ended, the totals).

Nothing here may slow or break the device path: publishing an event appends it to
the recorder's stream, a task of the owner hands it to the recorder's one writer
thread (in order, none dropped), which writes it on its own connection to the file,
and a write that fails is logged (the massager is still driven safely). So a
commit's fsync (an SD card) or another footctl process holding the write lock (up
to the busy timeout) never stops the owner's event loop, where every massager's
governor runs. Whoever reads the journal in the owner (the cooldown, a program's
start limits; those reads stay on the loop: a WAL reader does not wait for a
writer) calls :meth:`JournalRecorder.settle` first, so every event published before
the read is written; :meth:`JournalRecorder.aclose` writes the rest at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from footctl.config import journal_path
from footctl.errors import FootctlError
from footctl.journal import BUSY_TIMEOUT_MS, EndReason, Journal, SessionRecord

if TYPE_CHECKING:
    from footctl.control.api import SessionEvent
    from footctl.control.held import SessionPublisher
    from footctl.control.hub import SessionStream, StateHub
    from footctl.programs.runner import Progress
    from footctl.safety.governor import SafetyGovernor

_LOG = logging.getLogger(__name__)

# While a session runs, its peak heat and seconds of heat are written to its row this
# often, so a SIGKILL (or a power cut) leaves them in the journal for crash recovery:
# at most this many seconds of heat go unrecorded. A row update takes well under a
# millisecond.
FLUSH_S = 2.0

# How long a read in the owner (settle) waits for the writer thread to write what was
# published before it: one write held up by another process's lock, as long as the
# journal's busy timeout (the most a synchronous write could stop the loop before).
# Past it the read goes on with what is written (the cooldown also holds from the
# owner's own memory of the last end, SessionEnds) and the events are written later.
SETTLE_TIMEOUT_S = BUSY_TIMEOUT_MS / 1000
# How long the owner's close waits (off the loop) for the writer to drain: a few
# writes held up by a lock, well inside systemd's stop timeout (90 s by default).
CLOSE_TIMEOUT_S = 3 * BUSY_TIMEOUT_MS / 1000

# The governor's reasons, grouped into the journal's coarse end reasons. The exact
# reason is kept beside it (``ended_by``).
_REASONS: dict[str, EndReason] = {
    "completed": "completed",
    "stopped": "stopped",
    "device_off": "stopped",  # the massager switched itself off (its own timer, a power cut)
    "exit": "stopped",
    "shutdown": "stopped",
    "error": "stopped",
    "session_cap": "cap",
    "heat_cap": "cap",
    "heartbeat_missed": "cap",
    "over_temperature": "cap",
    "unexpected_heat": "cap",
    "cap_expired_while_away": "cap_expired_while_away",
    "link_lost": "link_lost",
    "recovered_after_crash": "recovered_after_crash",
}


def journal_reason(reason: str) -> EndReason:
    """The journal's end reason for a governor end reason (unknown ones: stopped)."""
    return _REASONS.get(reason, "stopped")


def open_journal() -> Journal | None:
    """The user's journal, or None (with a warning) if it cannot be opened: a broken
    journal must not keep anyone from switching a massager off."""
    try:
        return Journal(journal_path())
    except FootctlError as exc:
        _LOG.warning("journal not recorded: %s", exc)
        return None


class JournalRecorder:
    """Writes the journal's rows from session events (see the module's docstring).

    :meth:`record` writes at once on ``journal`` (the caller's thread); an owner's
    events (:meth:`listen`, :meth:`run`, :meth:`settle`) go to one writer thread that
    opens its own :class:`Journal` on the same file (an sqlite3 connection belongs to
    the thread that made it) and writes them in order."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        # (owner pid, massager, session number) -> its row; None: its start was not written
        self._rows: dict[tuple[int, str, int], int | None] = {}
        self._stream: SessionStream | None = None
        # The writer thread's queue (None: stop) and the events queued but not written.
        self._queue: queue.SimpleQueue[SessionEvent | None] = queue.SimpleQueue()
        self._pending = 0
        self._drained = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def listen(self, hub: StateHub) -> Callable[[], None]:
        """Subscribe to ``hub``'s session events (losslessly, from now on); they are
        written by :meth:`run` or :meth:`settle`. Returns the unsubscribe function."""
        self._stream = hub.sessions()
        return self._stream.close

    async def run(self) -> None:
        """Hand the events to the writer thread as they come, until cancelled (a task
        of the owner)."""
        stream = self._stream
        if stream is None:
            raise RuntimeError("listen() first")
        while not stream.closed:
            self._hand_over(await stream.get())

    def settle(self) -> None:
        """Write every event published so far before returning (waiting at most
        :data:`SETTLE_TIMEOUT_S` for the writer thread; after :meth:`aclose`, in this
        thread)."""
        events = self._stream.take() if self._stream is not None else []
        if self._closed:
            for event in events:
                self.record(event)
            return
        self._hand_over(events)
        if not self._wait_drained(SETTLE_TIMEOUT_S):
            _LOG.warning("journal: %d session events not written yet (the file is busy)",
                         self._pending)

    async def aclose(self) -> None:
        """Write every event published so far and stop the writer thread, waiting off
        the loop (at most :data:`CLOSE_TIMEOUT_S`). Later events are written by
        :meth:`settle` in the caller's thread."""
        if self._closed:
            return
        self._hand_over(self._stream.take() if self._stream is not None else [])
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(thread.join, CLOSE_TIMEOUT_S)
        if thread.is_alive():
            _LOG.error("journal: %d session events not written (the file stayed busy "
                       "for %g s)", self._pending, CLOSE_TIMEOUT_S)

    def _hand_over(self, events: list[SessionEvent]) -> None:
        if not events:
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._writer, name="footctl.journal.writer", daemon=True
            )
            self._thread.start()
        with self._drained:
            self._pending += len(events)
        for event in events:
            self._queue.put(event)

    def _wait_drained(self, timeout: float) -> bool:
        with self._drained:
            return self._drained.wait_for(lambda: self._pending == 0, timeout)

    def _writer(self) -> None:
        """The writer thread: its own connection, every event in order, until None."""
        journal: Journal | None = None
        try:
            while (event := self._queue.get()) is not None:
                try:
                    if journal is None:  # (again, if the last try failed)
                        journal = Journal(self.journal.path, clock=self.journal.now)
                    self._write(journal, event)
                except Exception:
                    _LOG.exception("journal not opened (%s of session %d on %s lost)",
                                   event.phase, event.number, event.device_id)
                finally:
                    with self._drained:
                        self._pending -= 1
                        self._drained.notify_all()
        finally:
            if journal is not None:
                journal.close()

    def record(self, event: SessionEvent) -> None:
        """Write one event to its session's row now, in this thread; a failure is
        logged, never raised."""
        self._write(self.journal, event)

    def _write(self, journal: Journal, event: SessionEvent) -> None:
        key = (event.owner_pid, event.device_id, event.number)
        try:
            if event.phase == "started":
                self._rows[key] = None
                row = journal.start_session(
                    event.journal_device, source=event.source, profile_id=event.profile,
                    program=event.program, at=event.at, pid=event.owner_pid or None,
                    simulated=event.simulated,
                )
                self._rows[key] = row
                if event.steps_run:
                    journal.update_session(row, steps_run=event.steps_run)
                return
            row_or_none = self._rows.get(key)
            if row_or_none is None:
                return  # its start was not written: nothing to add to
            if event.phase == "progress":
                journal.update_session(
                    row_or_none, steps_run=event.steps_run or None, peak_heat=event.peak_heat,
                    heat_s=event.heat_s,
                )
                return
            del self._rows[key]
            reason = event.reason or "stopped"
            journal.end_session(
                row_or_none, journal_reason(reason), at=event.at,
                steps_run=event.steps_run or None, peak_heat=event.peak_heat,
                heat_s=event.heat_s, ended_by=reason,
            )
        except Exception:
            _LOG.exception("journal write failed (%s of session %d on %s)",
                           event.phase, event.number, event.device_id)


class JournalHooks:
    """A governor outside an owner (a test rig, a bench) journaled the way an owner
    does it: a :class:`~footctl.control.held.SessionPublisher` per governor, its
    events written at once by a :class:`JournalRecorder`."""

    def __init__(
        self, journal: Journal, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self.journal = journal
        self.recorder = JournalRecorder(journal)
        self._sleep = sleep
        self._pid = os.getpid()
        self._publishers: dict[int, SessionPublisher] = {}

    def attach(self, governor: SafetyGovernor) -> None:
        """Journal ``governor``'s sessions."""
        from footctl.control.held import SessionPublisher, device_key  # noqa: PLC0415

        publisher = SessionPublisher(
            governor, device_key(governor), self.recorder.record, wall=self.journal.now,
            pid=self._pid, sleep=self._sleep,
        )
        self._publishers[id(governor)] = publisher
        governor.add_hooks(publisher)

    def follow(self, governor: SafetyGovernor, progress: Progress) -> None:
        """A program runs on ``governor``: its name and steps go into its rows."""
        self._publishers[id(governor)].follow(progress)

    def forget(self, governor: SafetyGovernor) -> None:
        """The program on ``governor`` is over."""
        self._publishers[id(governor)].forget()


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists (ours included)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_journal(
    journal: Journal,
    *,
    turned_off: Iterable[str],
    still_owed: Iterable[str],
    at: datetime | None = None,
) -> list[SessionRecord]:
    """End the rows a dead process left open, as ``recovered_after_crash``.

    A row whose process still runs is left alone. A row whose device is in
    ``still_owed`` (a crash marker we could not act on yet: the massager may still be
    on) stays open until it is turned off. Every other row of a dead process is ended:
    its device was just turned off (``turned_off``) or has nothing left to turn off
    (an in-process virtual massager, or a crash after the device was already off).
    """
    off = {a.lower() for a in turned_off}
    owed = {a.lower() for a in still_owed}
    ended: list[SessionRecord] = []
    for record in journal.unfinished_sessions():
        if record.pid is not None and pid_alive(record.pid):
            continue
        device = record.device.lower()
        if device in owed:
            continue
        detail = "recovered_after_crash" if device in off else "owner_gone"
        with contextlib.suppress(FootctlError):
            ended.append(
                journal.end_session(
                    record.id,
                    "recovered_after_crash",
                    at=at,
                    ended_by=detail,
                )
            )
    return ended
