"""The journal listening to the hub: one row per governed session.

The owner tells its :class:`~footctl.control.hub.StateHub` of every session each of
its governors runs (:class:`~footctl.control.api.SessionEvent`: started, progress,
ended; see :class:`footctl.control.held.SessionPublisher`), whatever its source (the
CLI, the TUI, MQTT, a program, a schedule). :class:`JournalRecorder` is a hub
subscriber with a lossless stream of those events, and writes the rows: a session's
start (its source, program), its peak heat and seconds of heat as it runs, its end
(how it ended, the totals).

Nothing here may slow or break the device path: publishing an event appends it to
the recorder's queue, a background task writes it, and a write that fails is logged
(the massager is still driven safely). Whoever reads the journal in the owner
(the cooldown, a program's start limits) calls :meth:`JournalRecorder.settle` first,
so every event published before the read is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from footctl.config import journal_path
from footctl.errors import FootctlError
from footctl.journal import EndReason, Journal, SessionRecord

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
    """Writes the journal's rows from session events (see the module's docstring)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        # (owner pid, massager, session number) -> its row; None: its start was not written
        self._rows: dict[tuple[int, str, int], int | None] = {}
        self._stream: SessionStream | None = None

    def listen(self, hub: StateHub) -> Callable[[], None]:
        """Subscribe to ``hub``'s session events (losslessly, from now on); they are
        written by :meth:`run` or :meth:`settle`. Returns the unsubscribe function."""
        self._stream = hub.sessions()
        return self._stream.close

    async def run(self) -> None:
        """Write the events as they come, until cancelled (a task of the owner)."""
        stream = self._stream
        if stream is None:
            raise RuntimeError("listen() first")
        while not stream.closed:
            for event in await stream.get():
                self.record(event)

    def settle(self) -> None:
        """Write every event published so far, now."""
        if self._stream is not None:
            for event in self._stream.take():
                self.record(event)

    def record(self, event: SessionEvent) -> None:
        """Write one event to its session's row; a failure is logged, never raised."""
        key = (event.owner_pid, event.device_id, event.number)
        try:
            if event.phase == "started":
                self._rows[key] = None
                row = self.journal.start_session(
                    event.journal_device, source=event.source, profile_id=event.profile,
                    program=event.program, at=event.at, pid=event.owner_pid or None,
                    simulated=event.simulated,
                )
                self._rows[key] = row
                if event.steps_run:
                    self.journal.update_session(row, steps_run=event.steps_run)
                return
            row_or_none = self._rows.get(key)
            if row_or_none is None:
                return  # its start was not written: nothing to add to
            if event.phase == "progress":
                self.journal.update_session(
                    row_or_none, steps_run=event.steps_run or None, peak_heat=event.peak_heat,
                    heat_s=event.heat_s,
                )
                return
            del self._rows[key]
            reason = event.reason or "stopped"
            self.journal.end_session(
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
