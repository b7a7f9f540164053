"""When programs start: schedules, their next starts, missed starts and start limits.

Everything here is pure: times come in as arguments (aware datetimes), so a whole
week across a DST change is computed in microseconds in tests.

Three kinds of schedule, told apart by ``kind``:

- ``weekly``: on ``days`` at wall-clock time ``at``. ``days`` are calendar days.
- ``bedtime``: start ``lead_minutes`` before ``bedtime`` on each night in ``days``.
  A *night* is named by the evening it begins: it runs from noon to the next noon
  (:data:`NIGHT_BOUNDARY_HOUR`), so ``bedtime = "00:30"`` with ``days = ["fri"]``
  means half past midnight early on Saturday. The lead is real elapsed time before
  the bedtime instant.
- ``cron``: a five-field cron expression (croniter) in wall-clock time.

Time zones and DST (zoneinfo; ``tz`` is an IANA name, default the local zone). A
schedule names wall-clock times; each wall-clock time is turned into one instant:

- **Spring forward (gap).** A wall-clock time that does not exist that night (02:30
  in Europe/Berlin on the last Sunday of March) runs ONCE, at the first valid instant
  after the gap (03:00 local, the moment of the change). Several times inside one
  gap (a cron ``*/15``) collapse into that one start.
- **Fall back (repeated hour).** A wall-clock time that happens twice (02:30 in
  Europe/Berlin on the last Sunday of October) runs ONCE, at its first occurrence
  (``fold=0``, still summer time). Never twice.

Missed starts (machine asleep, daemon down): :func:`due` starts a program if it is
less than ``missed_start_grace_minutes`` late, otherwise it is skipped and the
scheduled time returned, so the journal can record it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter  # type: ignore[import-untyped]
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
)

from footctl.safety.limits import DEFAULT_COOLDOWN_S, cooldown_left_s, cooldown_words

# A night runs from noon to the next noon, so a session after midnight counts with the
# evening it belongs to (for nightly limits, progress and history).
NIGHT_BOUNDARY_HOUR = 12

# Missed-start grace: a start up to 10 min late still feels like "at bedtime".
DEFAULT_GRACE_MINUTES = 10.0
# The daemon wakes at the start time but may be a few seconds late; a grace shorter
# than a minute would skip starts that were on time.
MIN_GRACE_MINUTES = 1.0
# A start hours late is no longer the routine the user set up (they may be asleep).
MAX_GRACE_MINUTES = 180.0

# Programs last at most 45 min; a lead of more than a few hours is a mis-typed unit.
MAX_LEAD_MINUTES = 240

# How far back due() looks for missed starts: a daemon down longer than a week has
# nothing useful to say about each night, and the bound keeps the check cheap.
MISSED_LOOKBACK = timedelta(days=7)

# Enough to cover any UTC offset change (the largest ever was a whole day) plus the
# lead, when stepping back from "after" to the first wall-clock candidate.
_WALL_MARGIN = timedelta(days=2)

# Sessions per night: one bedtime program plus one top-up by hand; more means a loop.
DEFAULT_MAX_SESSIONS_PER_NIGHT = 2

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_clock(value: object) -> time:
    """A wall-clock time from "HH:MM" (24 h) or a TOML local time."""
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError("give a wall-clock time without an offset; use 'tz' for the zone")
        return value.replace(microsecond=0)
    if isinstance(value, str):
        parts = value.strip().split(":")
        if len(parts) == 2 and all(p.isdigit() and len(p) == 2 for p in parts):
            hour, minute = int(parts[0]), int(parts[1])
            if hour < 24 and minute < 60:
                return time(hour, minute)
    raise ValueError(f"{value!r} is not a time such as '22:30' (24-hour HH:MM)")


Clock = Annotated[time, BeforeValidator(_parse_clock)]


def local_zone() -> tzinfo:
    """The local IANA zone: ``$TZ``, else /etc/localtime, else the current fixed offset
    (the last resort knows no DST)."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    target = os.path.realpath("/etc/localtime")
    if "zoneinfo/" in target:
        try:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        pass
    return datetime.now().astimezone().tzinfo or UTC


class _Base(BaseModel):
    # Strict like the rest of the config file (config._Model): no "45" for 45.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    program: Annotated[str, Field(min_length=1)]
    device: str | None = None
    tz: str | None = None
    missed_start_grace_minutes: Annotated[
        float, Field(ge=MIN_GRACE_MINUTES, le=MAX_GRACE_MINUTES)
    ] = DEFAULT_GRACE_MINUTES

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(
                    f"{value!r} is not an IANA time zone such as 'Europe/Berlin'"
                ) from exc
        return value

    def zone(self) -> tzinfo:
        """The schedule's time zone (the local zone when ``tz`` is not given)."""
        return ZoneInfo(self.tz) if self.tz else local_zone()


def _unique_days(days: tuple[Weekday, ...]) -> tuple[Weekday, ...]:
    if len(set(days)) != len(days):
        raise ValueError("a day is listed twice")
    return days


# Not strict: TOML gives an array (a list), kept as a tuple; each day is still checked.
Days = Annotated[
    tuple[Weekday, ...], Field(min_length=1, strict=False), AfterValidator(_unique_days)
]


class WeeklySchedule(_Base):
    """Start on each of ``days`` (calendar days) at wall-clock time ``at``."""

    kind: Literal["weekly"]
    days: Days = WEEKDAYS
    at: Clock


class BedtimeSchedule(_Base):
    """Start ``lead_minutes`` before ``bedtime`` on each night in ``days`` (a night is
    named by its evening; see the module docstring)."""

    kind: Literal["bedtime"]
    days: Days = WEEKDAYS
    bedtime: Clock
    lead_minutes: Annotated[int, Field(ge=0, le=MAX_LEAD_MINUTES)] = 45


class CronSchedule(_Base):
    """Start whenever the five-field cron expression ``expr`` matches wall-clock time."""

    kind: Literal["cron"]
    expr: str

    @field_validator("expr")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        fields = value.split()
        # Schedules are minute-grained: a sixth (seconds) field is not wanted.
        if len(fields) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a five-field cron expression such as '0 22 * * 1-5'"
            )
        try:
            croniter(value, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterError as exc:
            raise ValueError(f"{value!r} never matches") from exc
        return value


Schedule = Annotated[WeeklySchedule | BedtimeSchedule | CronSchedule, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[Schedule] = TypeAdapter(Schedule)


def parse_schedule(data: object) -> Schedule:
    """Validate one schedule table (a dict from TOML). Raises pydantic's ValidationError."""
    return _ADAPTER.validate_python(data)


# --- wall clock to instants ---------------------------------------------------------


def _as_utc(value: datetime, name: str) -> datetime:
    """``value`` in UTC. Arithmetic and comparison of two datetimes with the same zone
    work on wall-clock time and ignore ``fold``, so everything here is done in UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def resolve_wall_time(wall: datetime, zone: tzinfo) -> datetime:
    """The one instant a naive wall-clock time stands for in ``zone``.

    A time in a spring-forward gap becomes the first valid instant after the gap (the
    moment of the change); a time in a fall-back repeated hour becomes its first
    occurrence (``fold=0``). The result is aware, in ``zone``.
    """
    first = wall.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 reads the wall time with the offset before the change, fold=1
    # with the one after, so the change lies between the two instants.
    lo = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    hi = int(first.timestamp())
    if lo > hi:
        lo, hi = hi, lo
    before = datetime.fromtimestamp(lo, zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, zone)


def night_of(instant: datetime, zone: tzinfo) -> date:
    """The night an instant belongs to, named by its evening's date (noon to noon)."""
    local = _as_utc(instant, "instant").astimezone(zone)
    if local.hour < NIGHT_BOUNDARY_HOUR:
        return local.date() - timedelta(days=1)
    return local.date()


def night_bounds(night: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """The instants a night (named by its evening) starts and ends in ``zone``."""
    boundary = time(NIGHT_BOUNDARY_HOUR)
    start = resolve_wall_time(datetime.combine(night, boundary), zone)
    end = resolve_wall_time(datetime.combine(night + timedelta(days=1), boundary), zone)
    return start, end


def _candidates(schedule: Schedule, zone: tzinfo, after: datetime) -> Iterator[datetime]:
    """Start instants in non-decreasing order, beginning safely before ``after``."""
    wall_start = after.astimezone(zone).replace(tzinfo=None) - _WALL_MARGIN
    if isinstance(schedule, CronSchedule):
        it = croniter(schedule.expr, wall_start)
        while True:
            try:
                wall = it.get_next(datetime)
            except CroniterError:
                return
            yield resolve_wall_time(wall, zone)
    day = wall_start.date()
    while True:
        if WEEKDAYS[day.weekday()] in schedule.days:
            if isinstance(schedule, WeeklySchedule):
                yield resolve_wall_time(datetime.combine(day, schedule.at), zone)
            else:
                after_midnight = schedule.bedtime.hour < NIGHT_BOUNDARY_HOUR
                bed_day = day + timedelta(days=1) if after_midnight else day
                bed = resolve_wall_time(datetime.combine(bed_day, schedule.bedtime), zone)
                lead = timedelta(minutes=schedule.lead_minutes)
                # Subtract in UTC: aware arithmetic in one zone is wall-clock arithmetic.
                yield (bed.astimezone(UTC) - lead).astimezone(zone)
        day += timedelta(days=1)


def _starts_after(schedule: Schedule, after: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Distinct starts strictly after ``after`` (UTC), in order, as (UTC, local) pairs."""
    zone = schedule.zone()
    last: datetime | None = None
    for candidate in _candidates(schedule, zone, after):
        start = candidate.astimezone(UTC)
        if start <= after or (last is not None and start <= last):
            continue
        last = start
        yield start, start.astimezone(zone)


def next_starts(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` starts strictly after ``after`` (aware), as aware datetimes in
    the schedule's zone, following the DST rules in the module docstring."""
    after_utc = _as_utc(after, "after")
    if count < 0:
        raise ValueError("count cannot be negative")
    out: list[datetime] = []
    if count == 0:
        return out
    for _, start in _starts_after(schedule, after_utc):
        out.append(start)
        if len(out) == count:
            break
    return out


@dataclass(frozen=True)
class Decision:
    """What the scheduler should do now.

    ``action`` is ``start`` (run the program for ``scheduled``), ``skip`` (``scheduled``
    was missed by more than the grace; record it) or ``wait`` (nothing due). ``skipped``
    lists every start in the window that will not run, oldest first, including earlier
    starts superseded by a later one. ``next_start`` is the first start after ``now``.
    """

    action: Literal["start", "skip", "wait"]
    scheduled: datetime | None
    late_s: float
    skipped: tuple[datetime, ...]
    next_start: datetime | None


def due(schedule: Schedule, last_checked: datetime, now: datetime) -> Decision:
    """Decide on the starts in ``(last_checked, now]``.

    The latest start in the window runs if it is less than the schedule's grace late;
    otherwise it is skipped. Earlier starts in the window are skipped. Starts older
    than :data:`MISSED_LOOKBACK` before ``now`` are not looked at. A clock that went
    backwards (``now < last_checked``) finds nothing due.
    """
    now_utc = _as_utc(now, "now")
    window_start = max(_as_utc(last_checked, "last_checked"), now_utc - MISSED_LOOKBACK)
    passed: list[tuple[datetime, datetime]] = []
    next_start: datetime | None = None
    for start_utc, start in _starts_after(schedule, window_start):
        if start_utc > now_utc:
            next_start = start
            break
        passed.append((start_utc, start))
    if not passed:
        return Decision("wait", None, 0.0, (), next_start)
    latest_utc, latest = passed[-1]
    late_s = (now_utc - latest_utc).total_seconds()
    earlier = tuple(local for _, local in passed[:-1])
    if late_s < schedule.missed_start_grace_minutes * 60:
        return Decision("start", latest, late_s, earlier, next_start)
    return Decision("skip", latest, late_s, (*earlier, latest), next_start)


# --- start limits -------------------------------------------------------------------


@dataclass(frozen=True)
class StartCheck:
    """Whether a session may start now; ``reason`` is a stable code when it may not
    (``cooldown``, ``night_limit``), and ``wait_s`` how long until it may."""

    allowed: bool
    reason: str | None = None
    message: str = ""
    wait_s: float = 0.0


def _setting(name: str, value: float, default: float) -> str:
    """Where a cap's value comes from, as far as its value tells: the default (no
    config file needed to explain it), else the user's ``[caps]``."""
    if value == default:
        return f"{name} = {value:g}, the default (a config file's [caps] may change it)"
    return f"{name} = {value:g} in [caps] of the config file"


def within_night_limit(sessions_tonight: int, max_sessions_per_night: int) -> StartCheck:
    """Refuse a start when this night already had ``max_sessions_per_night`` program
    starts; the message names the setting."""
    if sessions_tonight >= max_sessions_per_night:
        return StartCheck(
            False,
            "night_limit",
            f"{sessions_tonight} program start(s) tonight already; the limit is "
            + _setting("max_sessions_per_night", max_sessions_per_night,
                       DEFAULT_MAX_SESSIONS_PER_NIGHT)
            + "; programs started by hand ('footctl run', MQTT) count too, 'set' and "
            "'on' sessions do not",
        )
    return StartCheck(True)


def may_start(
    now: datetime,
    last_session_end: datetime | None,
    cooldown_minutes: float,
    *,
    sessions_tonight: int = 0,
    max_sessions_per_night: int = DEFAULT_MAX_SESSIONS_PER_NIGHT,
) -> StartCheck:
    """Whether a session may start at ``now``: the cooldown since ``last_session_end``
    has passed, and the night is within ``max_sessions_per_night``. An end in the
    future (clock trouble) counts as just ended."""
    now_utc = _as_utc(now, "now")
    night = within_night_limit(sessions_tonight, max_sessions_per_night)
    if not night.allowed:
        return night
    if last_session_end is None:
        return StartCheck(True)
    ended = _as_utc(last_session_end, "last_session_end")
    wait_s = cooldown_left_s(now_utc.timestamp(), ended.timestamp(), cooldown_minutes * 60)
    if wait_s > 0:
        message, advice = cooldown_words(wait_s, cooldown_minutes * 60)
        return StartCheck(
            False,
            "cooldown",
            f"{message} "
            f"({_setting('cooldown_minutes', cooldown_minutes, DEFAULT_COOLDOWN_S / 60)}); "
            f"{advice}",
            wait_s,
        )
    return StartCheck(True)
