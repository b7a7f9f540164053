"""The journal listening to the governor: one row per governed session.

:class:`JournalHooks` is a ``SessionHooks``: every session a governor starts (by
hand, from a program, a schedule, MQTT) gets a row at its start and its end (how it
ended, peak heat, minutes of heat). A program run adds its name and the steps it ran
through :meth:`JournalHooks.follow`. Nothing here may raise into the governor: a
journal that cannot be written is logged, and the massager is still driven safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from footctl.config import journal_path
from footctl.errors import FootctlError
from footctl.journal import EndReason, Journal, SessionRecord, Source

if TYPE_CHECKING:
    from footctl.programs.runner import Progress
    from footctl.safety.governor import SafetyGovernor

_LOG = logging.getLogger(__name__)

# While a session runs, its peak heat and seconds of heat are written to its row this
# often, so a SIGKILL (or a power cut) leaves them in the journal for crash recovery:
# at most this many seconds of heat go unrecorded. A row update takes well under a
# millisecond.
FLUSH_S = 2.0

# Governor sources with a journal source of their own; the rest (cli, tui, daemon
# clients) are the user's hand: "manual".
_SOURCES: dict[str, Source] = {"program": "program", "schedule": "schedule", "mqtt": "mqtt"}

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


def journal_source(source: str) -> Source:
    """The journal's source for a governor request source."""
    return _SOURCES.get(source, "manual")


def journal_reason(reason: str) -> EndReason:
    """The journal's end reason for a governor end reason (unknown ones: stopped)."""
    return _REASONS.get(reason, "stopped")


def device_key(governor: SafetyGovernor) -> str:
    """What the journal calls this governor's device: its address in capitals (as
    scanners report it, whatever the config's spelling), else its profile."""
    return governor.session.state.address.upper() or governor.profile.id


def open_journal() -> Journal | None:
    """The user's journal, or None (with a warning) if it cannot be opened: a broken
    journal must not keep anyone from switching a massager off."""
    try:
        return Journal(journal_path())
    except FootctlError as exc:
        _LOG.warning("journal not recorded: %s", exc)
        return None


@dataclass
class _Open:
    row: int | None = None
    program: str | None = None
    steps_run: int = 0
    flusher: asyncio.Task[None] | None = None
    # When the row's session started, on the wall clock (for people) and on the
    # monotonic clock (for its length: a wall clock moved by NTP or by hand in between
    # made durations wrong, even negative).
    started_wall: datetime | None = None
    started_mono: float | None = None


def heat_seconds_so_far(governor: SafetyGovernor) -> float:
    """Seconds of heat in the governor's session up to now, the heat that is on now
    included (``governor.heat_seconds`` counts only heat already switched off)."""
    return governor.session_heat_seconds()


class JournalHooks:
    """Records every session of the governors it is added to."""

    def __init__(
        self,
        journal: Journal,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.journal = journal
        self._pid = os.getpid()
        self._open: dict[int, _Open] = {}
        self._sleep = sleep

    def attach(self, governor: SafetyGovernor) -> None:
        """Listen to ``governor``'s sessions."""
        governor.add_hooks(self)

    def follow(self, governor: SafetyGovernor, progress: Progress) -> None:
        """A program runs on ``governor``: note its name, and the steps as they come
        (the runner reports before its first request, so the row has the name)."""
        entry = self._open.setdefault(id(governor), _Open())
        entry.program = progress.program
        if progress.step is not None and progress.step > entry.steps_run:
            entry.steps_run = progress.step
            if entry.row is not None:
                self._safely(self.journal.update_session, entry.row, steps_run=progress.step)

    def forget(self, governor: SafetyGovernor) -> None:
        """The program on ``governor`` is over: later sessions there are not its own."""
        entry = self._open.get(id(governor))
        if entry is not None:
            entry.program = None
            entry.steps_run = 0
            if entry.row is None:
                self._open.pop(id(governor), None)

    def session_started(self, governor: SafetyGovernor, source: str) -> None:
        """Open a row."""
        entry = self._open.setdefault(id(governor), _Open())
        entry.started_wall = self.journal.now()
        entry.started_mono = governor.monotonic()
        entry.row = self._safely(
            self.journal.start_session,
            device_key(governor),
            source=journal_source(source),
            profile_id=governor.profile.id,
            program=entry.program,
            at=entry.started_wall,
            pid=self._pid,
            simulated=governor.session.radio.virtual,
        )
        if entry.row is not None and entry.steps_run:
            self._safely(self.journal.update_session, entry.row, steps_run=entry.steps_run)
        if entry.row is not None:
            self._start_flushing(governor, entry, entry.row)

    def _start_flushing(self, governor: SafetyGovernor, entry: _Open, row: int) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous test): the end writes the totals
            return
        if entry.flusher is not None:
            entry.flusher.cancel()
        entry.flusher = loop.create_task(
            self._flush_while_running(governor, row),
            name=f"footctl[{device_key(governor)}].journal",
        )

    async def _flush_while_running(self, governor: SafetyGovernor, row: int) -> None:
        """Keep the row's peak heat and heat seconds current until the session ends."""
        while True:
            await self._sleep(FLUSH_S)
            self._safely(
                self.journal.update_session,
                row,
                peak_heat=governor.peak_heat,
                heat_s=heat_seconds_so_far(governor),
            )

    def session_ended(self, governor: SafetyGovernor, reason: str) -> None:
        """Close the row with how it ended, the peak heat and the seconds of heat."""
        entry = self._open.get(id(governor))
        if entry is None or entry.row is None:
            return
        row, entry.row = entry.row, None
        if entry.flusher is not None:
            entry.flusher.cancel()
            entry.flusher = None
        if entry.program is None:
            self._open.pop(id(governor), None)
        at = None
        if entry.started_wall is not None and entry.started_mono is not None:
            # The end is the start plus the length measured on the monotonic clock.
            elapsed = max(0.0, governor.monotonic() - entry.started_mono)
            at = entry.started_wall + timedelta(seconds=elapsed)
        self._safely(
            self.journal.end_session,
            row,
            journal_reason(reason),
            at=at,
            steps_run=entry.steps_run or None,
            peak_heat=governor.peak_heat,
            heat_s=governor.heat_seconds,
            ended_by=reason,
        )

    def _safely(self, fn: Callable[..., object], *args: object, **kwargs: object) -> int | None:
        try:
            result = fn(*args, **kwargs)
        except Exception:
            _LOG.exception("journal write failed")
            return None
        return result if isinstance(result, int) else None


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
