"""The daemon's scheduler state: when each schedule was last looked at.

:func:`footctl.schedule.due` decides on the starts between two checks. The time of
the last check is kept on disk, so starts missed while the daemon was down (or the
machine asleep) are found when it comes back: started if less than the grace late,
otherwise skipped and recorded. A schedule the daemon has never seen (new, or edited)
starts counting from now: there is nothing it could have missed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from footctl.schedule import (
    BedtimeSchedule,
    CronSchedule,
    Decision,
    Schedule,
    WeeklySchedule,
    due,
    local_zone,
    next_starts,
    night_of,
)

if TYPE_CHECKING:
    from footctl.config import Config

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


# The key of the user's controls (pause, skipped nights) in the scheduler state file;
# every other key is a schedule's last check.
CONTROLS_KEY = "_controls"


@dataclass(frozen=True)
class Controls:
    """What the user asked of the schedules: all paused, or some nights skipped
    (``footctl schedule pause|resume|skip tonight``)."""

    paused: bool = False
    skip_nights: frozenset[date] = frozenset()

    def to_json(self) -> dict[str, object]:
        """As stored in the state file."""
        nights = sorted(n.isoformat() for n in self.skip_nights)
        return {"paused": self.paused, "skip_nights": nights}

    @classmethod
    def from_json(cls, data: object) -> Controls:
        """From the state file (raises ValueError/TypeError on a damaged entry)."""
        if not isinstance(data, dict):
            raise TypeError("controls must be a table")
        nights = frozenset(date.fromisoformat(str(n)) for n in data.get("skip_nights", []))
        return cls(bool(data.get("paused", False)), nights)

    def holds(self, start: datetime, zone: tzinfo) -> str | None:
        """Why a start at ``start`` must not run, or None (nights are named in
        ``zone``: the local one, where the user said "tonight")."""
        if self.paused:
            return "schedules paused ('footctl schedule resume' resumes them)"
        if night_of(start, zone) in self.skip_nights:
            return "night skipped ('footctl schedule resume' undoes it)"
        return None


# How many starts ``next_running`` looks through for one that is not held: skipped
# nights hold a few starts each (at most max_sessions_per_night), so this covers weeks.
HELD_LOOKAHEAD_STARTS = 64


def next_running(
    schedules: list[Schedule], after: datetime, controls: Controls, zone: tzinfo
) -> Upcoming | None:
    """The next start of ``schedules`` that will really run: none while paused, and
    not one in a skipped night (nights named in ``zone``, the local one)."""
    if controls.paused:
        return None
    count = 1
    while True:
        starts = upcoming(schedules, after, count)
        for start in starts:
            if controls.holds(start.at, zone) is None:
                return start
        if len(starts) < count or count >= HELD_LOOKAHEAD_STARTS:
            return None
        count = min(2 * count, HELD_LOOKAHEAD_STARTS)


def _read_state(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError("the state file must hold a table")
    return data


def read_controls(path: Path) -> Controls:
    """The controls in the scheduler state file at ``path`` (none if absent)."""
    try:
        return Controls.from_json(_read_state(path).get(CONTROLS_KEY, {}))
    except FileNotFoundError:
        return Controls()
    except (OSError, ValueError, TypeError) as exc:
        _LOG.warning("scheduler state %s unreadable (%s): no pause or skip", path, exc)
        return Controls()


def write_controls(path: Path, controls: Controls) -> None:
    """Store ``controls`` in the scheduler state file, keeping the rest of it. A
    running daemon reads them on its next scheduler pass."""
    try:
        data = _read_state(path)
    except FileNotFoundError:
        data = {}
    except (ValueError, TypeError):
        data = {}
    data[CONTROLS_KEY] = controls.to_json()
    _write_state(path, data)


def _write_state(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


class Scheduler:
    """Checks the schedules and remembers (on disk) when each was last checked."""

    def __init__(self, schedules: list[Schedule], state_path: Path | None) -> None:
        self.schedules = schedules
        self.state_path = state_path
        self.last_checked: dict[str, datetime] = self._load()
        self.controls = Controls()

    def _load(self) -> dict[str, datetime]:
        if self.state_path is None:
            return {}
        try:
            data = _read_state(self.state_path)
            return {
                str(k): datetime.fromisoformat(str(v))
                for k, v in data.items()
                if k != CONTROLS_KEY
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            _LOG.warning("scheduler state %s unreadable (%s): starts afresh", self.state_path, exc)
            return {}

    def _save(self) -> None:
        if self.state_path is None:
            return
        data: dict[str, object] = {k: v.isoformat() for k, v in self.last_checked.items()}
        try:
            # Re-read the controls just before writing: the CLI may have changed them.
            data[CONTROLS_KEY] = read_controls(self.state_path).to_json()
            _write_state(self.state_path, data)
        except OSError as exc:
            # Losing it only means missed starts during a later outage go unrecorded.
            _LOG.warning("scheduler state %s not saved: %s", self.state_path, exc)

    def check(self, now: datetime) -> list[Due]:
        """Every schedule with a start (or a missed start) since its last check. The
        check time is saved before anything starts, so a crash mid-program does not
        start it again on restart."""
        found: list[Due] = []
        keys = set()
        if self.state_path is not None:
            self.controls = read_controls(self.state_path)
        for index, schedule in enumerate(self.schedules):
            key = schedule_key(index, schedule)
            keys.add(key)
            last = self.last_checked.get(key, now)
            decision = due(schedule, last, now)
            if now >= last:
                self.last_checked[key] = now
            held = (
                self.controls.holds(decision.scheduled, local_zone())
                if decision.action == "start" and decision.scheduled is not None
                else None
            )
            if held is not None:
                # What the user asked for (pause, skip tonight): not a warning.
                _LOG.info("schedule %d (%s): start at %s not run: %s", index,
                          schedule.program, decision.scheduled, held)
                decision = dataclasses.replace(decision, action="wait", scheduled=None)
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


# --- checking schedules before their night --------------------------------------------

# How far ahead audit_schedules() looks for colliding starts: two weeks covers every
# weekly pattern twice, and a cron expression's usual variety.
AUDIT_HORIZON = timedelta(days=14)

# A cron expression that matches every minute would give thousands of starts to pair
# up; this many per schedule is plenty to find a collision.
AUDIT_MAX_STARTS = 200

ProblemKind = Literal["unknown_program", "unknown_device", "cooldown_collision", "night_limit"]


@dataclass(frozen=True)
class ScheduleProblem:
    """Something that would go wrong with a schedule at its start time. ``error``:
    the schedule can never start (unknown program or device); otherwise a warning
    (some starts would be refused)."""

    index: int
    kind: ProblemKind
    message: str

    @property
    def error(self) -> bool:
        """True if the schedule cannot start at all."""
        return self.kind in ("unknown_program", "unknown_device")

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {"schedule": self.index, "kind": self.kind, "message": self.message,
                "error": self.error}

    def __str__(self) -> str:
        return f"schedule {self.index}: {self.message}"


def audit_schedules(
    schedules: Sequence[Schedule | None],
    *,
    programs: dict[str, float],
    devices: dict[str, str] | None,
    default_device: str | None,
    cooldown_minutes: float,
    max_sessions_per_night: int,
    now: datetime,
) -> list[ScheduleProblem]:
    """What would go wrong with ``schedules`` at their start times, found now instead
    of at night. Pure.

    ``programs``: every known program name and its length in seconds. ``devices``:
    each name and address a schedule's ``device`` may use, lower-cased, to the
    massager it means (None: any, as with ``--simulate``); ``default_device``: the
    massager a schedule without ``device`` runs on.
    Two starts on one massager closer than the first program's length plus
    ``cooldown_minutes`` collide (the later one is refused), and so do more starts in
    one night than ``max_sessions_per_night``; both are looked for over the next
    :data:`AUDIT_HORIZON`. A None in ``schedules`` is an entry that is invalid in
    itself (reported elsewhere); it keeps the others at their index.
    """
    problems: list[ScheduleProblem] = []
    for index, s in enumerate(schedules):
        if s is None:
            continue
        if s.program not in programs:
            names = ", ".join(sorted(programs)) or "none"
            problems.append(ScheduleProblem(
                index, "unknown_program",
                f"no program {s.program!r} (known programs: {names})"))
        if s.device is not None and devices is not None and s.device.lower() not in devices:
            problems.append(ScheduleProblem(
                index, "unknown_device",
                f"no massager {s.device!r} in [[devices]] "
                + (f"(configured: {', '.join(sorted(devices))})" if devices else
                   "(there is none: add it with 'footctl devices add --name NAME')")))
    bad = {p.index for p in problems}
    end = now + AUDIT_HORIZON
    starts: list[tuple[datetime, int, str]] = []  # (start UTC, schedule, device)
    valid = {index: s for index, s in enumerate(schedules) if s is not None}
    for index, s in valid.items():
        if index in bad:
            continue
        named = s.device.lower() if s.device is not None else None
        device = (devices or {}).get(named or "", named) or default_device or ""
        for at in next_starts(s, now, AUDIT_MAX_STARTS):
            if at > end:
                break
            starts.append((at.astimezone(UTC), index, device))
    starts.sort()
    seen: set[tuple[int, int, str]] = set()
    for i, (at, index, device) in enumerate(starts):
        busy_until = at + timedelta(
            seconds=programs[valid[index].program], minutes=cooldown_minutes
        )
        for later, other, other_device in starts[i + 1 :]:
            if later >= busy_until:
                break
            kind_key = (min(index, other), max(index, other), "cooldown")
            if other_device != device or kind_key in seen:
                continue
            seen.add(kind_key)
            gap = (later - at).total_seconds() / 60
            first = f"schedule {index}" if other != index else "one of its starts"
            problems.append(ScheduleProblem(
                other, "cooldown_collision",
                f"starts {gap:g} min after {first} ({valid[index].program}, "
                f"{at.astimezone(valid[index].zone()):%a %H:%M}) began; that program "
                f"lasts {programs[valid[index].program] / 60:g} min and cooldown_minutes "
                f"= {cooldown_minutes:g}, so this start would be refused"))
    per_night: dict[tuple[str, date], list[int]] = {}
    for at, index, device in starts:
        night = night_of(at, valid[index].zone())
        per_night.setdefault((device, night), []).append(index)
    reported: set[int] = set()
    for (_device, night), indexes in sorted(per_night.items()):
        if len(indexes) > max_sessions_per_night and indexes[-1] not in reported:
            reported.add(indexes[-1])
            problems.append(ScheduleProblem(
                indexes[-1], "night_limit",
                f"{len(indexes)} starts in the night of {night:%a %Y-%m-%d} (schedules "
                f"{', '.join(map(str, sorted(set(indexes))))}); max_sessions_per_night = "
                f"{max_sessions_per_night}, so the last would be refused"))
    return problems


def audit_config(
    config: Config,
    now: datetime,
    program_dir: Path | None = None,
    *,
    schedules: Sequence[Schedule | None] | None = None,
    held: Mapping[str, str] | None = None,
    quiet: bool = False,
) -> list[ScheduleProblem]:
    """:func:`audit_schedules` for the config file's schedules (or ``schedules``: a
    salvaged file's, None where an entry is invalid), the programs found (shipped and
    the user's, in ``program_dir``, by default the usual place) and the configured
    massagers (or ``held``: each name a running owner knows, lower-cased, to its
    massager, as with ``--simulate``); the daemon calls this as it starts and
    ``footctl schedule list`` when it lists. Without ``held``, a schedule naming a
    massager when there is no ``[[devices]]`` names one that does not exist.
    ``quiet``: do not log invalid program files (a caller that lists them itself)."""
    from footctl.programs.loader import (  # noqa: PLC0415
        default_user_dir,
        list_programs,
        scan_programs,
    )

    where = program_dir if program_dir is not None else default_user_dir()
    found = scan_programs(where).programs if quiet else list_programs(where)
    programs = {f.program.name: f.program.duration_s for f in found}
    devices: dict[str, str] = {}
    default: str | None = None
    for d in config.devices:
        devices[d.address.lower()] = d.address.lower()
        if d.name:
            devices[d.name.lower()] = d.address.lower()
    if config.devices:
        default = config.devices[0].address.lower()
    if held is not None:
        devices = {k.lower(): v.lower() for k, v in held.items()}
        default = next(iter(devices.values()), None)
    return audit_schedules(
        list(config.schedules) if schedules is None else schedules,
        programs=programs,
        devices=devices,
        default_device=default,
        cooldown_minutes=config.caps.cooldown_minutes,
        max_sessions_per_night=config.caps.max_sessions_per_night,
        now=now,
    )


# The scheduler state file, in the state directory: last checks and the user's controls.
STATE_FILE = "scheduler.json"


def default_state_path() -> Path:
    """Where the daemon keeps the scheduler state (``scheduler.json`` in the state dir)."""
    from footctl.config import state_dir  # noqa: PLC0415 - config imports schedule

    return state_dir() / STATE_FILE
