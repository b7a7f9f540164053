"""The daemon's scheduler state: when each schedule was last looked at.

:func:`footctl.schedule.due` decides on the starts between two checks. The time of
the last check is kept on disk, so starts missed while the daemon was down (or the
machine asleep) are found when it comes back: started if less than the grace late,
otherwise skipped and recorded. A schedule the daemon has never seen (new, or edited)
starts counting from now: there is nothing it could have missed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from footctl.schedule import (
    BedtimeSchedule,
    CronSchedule,
    Decision,
    Schedule,
    WeeklySchedule,
    due,
    next_starts,
)

_LOG = logging.getLogger(__name__)


def schedule_key(index: int, schedule: Schedule) -> str:
    """A stable name for a schedule: its place and a digest of its settings, so an
    edited schedule counts as new."""
    digest = hashlib.sha256(schedule.model_dump_json().encode()).hexdigest()[:12]
    return f"{index}-{digest}"


def describe(schedule: Schedule) -> str:
    """A schedule in a few words."""
    days = ",".join(schedule.days) if not isinstance(schedule, CronSchedule) else ""
    if len(days.split(",")) == 7:
        days = "every day"
    if isinstance(schedule, WeeklySchedule):
        when = f"{days} at {schedule.at:%H:%M}"
    elif isinstance(schedule, BedtimeSchedule):
        when = f"{schedule.lead_minutes} min before bedtime {schedule.bedtime:%H:%M}, {days}"
    else:
        when = f"cron '{schedule.expr}'"
    zone = f" ({schedule.tz})" if schedule.tz else ""
    return f"{schedule.program}: {when}{zone}"


@dataclass(frozen=True)
class Upcoming:
    """One future start."""

    at: datetime
    index: int
    schedule: Schedule

    def to_dict(self, zone: tzinfo) -> dict[str, object]:
        """A JSON-ready view; ``local`` is in ``zone``, followed by the schedule's own
        zone's wall time when that differs (a laptop travelling, a server in UTC)."""
        local = self.at.astimezone(zone)
        text = local.strftime("%a %Y-%m-%d %H:%M %Z")
        own = self.at.astimezone(ZoneInfo(self.schedule.tz)) if self.schedule.tz else None
        if own is not None and own.utcoffset() != local.utcoffset():
            text += f" ({own.strftime('%H:%M')} {self.schedule.tz})"
        return {
            "at": self.at.isoformat(),
            "local": text,
            "schedule": self.index,
            "program": self.schedule.program,
            "device": self.schedule.device,
        }


def upcoming(schedules: list[Schedule], after: datetime, count: int) -> list[Upcoming]:
    """The next ``count`` starts of all ``schedules`` together, in time order."""
    starts = [
        Upcoming(at, index, s)
        for index, s in enumerate(schedules)
        for at in next_starts(s, after, count)
    ]
    starts.sort(key=lambda u: (u.at, u.index))
    return starts[:count]


@dataclass(frozen=True)
class Due:
    """A schedule with something to do now (start, or skipped starts to record)."""

    index: int
    schedule: Schedule
    decision: Decision


class Scheduler:
    """Checks the schedules and remembers (on disk) when each was last checked."""

    def __init__(self, schedules: list[Schedule], state_path: Path | None) -> None:
        self.schedules = schedules
        self.state_path = state_path
        self.last_checked: dict[str, datetime] = self._load()

    def _load(self) -> dict[str, datetime]:
        if self.state_path is None:
            return {}
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return {str(k): datetime.fromisoformat(v) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            _LOG.warning("scheduler state %s unreadable (%s): starts afresh", self.state_path, exc)
            return {}

    def _save(self) -> None:
        if self.state_path is None:
            return
        data = {k: v.isoformat() for k, v in self.last_checked.items()}
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.state_path)
        except OSError as exc:
            # Losing it only means missed starts during a later outage go unrecorded.
            _LOG.warning("scheduler state %s not saved: %s", self.state_path, exc)

    def check(self, now: datetime) -> list[Due]:
        """Every schedule with a start (or a missed start) since its last check. The
        check time is saved before anything starts, so a crash mid-program does not
        start it again on restart."""
        found: list[Due] = []
        keys = set()
        for index, schedule in enumerate(self.schedules):
            key = schedule_key(index, schedule)
            keys.add(key)
            last = self.last_checked.get(key, now)
            decision = due(schedule, last, now)
            if now >= last:
                self.last_checked[key] = now
            if decision.action != "wait" or decision.skipped:
                found.append(Due(index, schedule, decision))
        for stale in set(self.last_checked) - keys:
            del self.last_checked[stale]
        self._save()
        return found

    def forget(self) -> None:
        """Drop the saved state (tests, and a user resetting the scheduler)."""
        self.last_checked.clear()
        if self.state_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.state_path.unlink()
