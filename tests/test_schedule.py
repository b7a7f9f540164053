"""Schedules: next starts over whole weeks and DST changes, missed starts, start limits.

Expected instants are written in UTC from the published offsets (Europe/Berlin: CET
UTC+1, CEST UTC+2, changes at 01:00 UTC on the last Sundays of March and October;
America/New_York: EST UTC-5, EDT UTC-4, changes at 02:00 local on the second Sunday of
March and the first Sunday of November), not computed by the code under test.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from footctl.schedule import (
    Schedule,
    due,
    local_zone,
    may_start,
    next_starts,
    night_of,
    parse_schedule,
    resolve_wall_time,
    within_night_limit,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = timedelta(hours=1)


def sched(**kw: Any) -> Schedule:
    return parse_schedule({"program": "wind-down", **kw})


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- a plain week ----------------------------------------------------------------


def test_weekly_gives_a_whole_week_of_weekday_starts() -> None:
    s = sched(
        kind="weekly", days=["mon", "tue", "wed", "thu", "fri"], at="22:00", tz="Europe/Berlin"
    )
    # Saturday 2025-01-11, noon: January, so CET (UTC+1) all week.
    starts = next_starts(s, datetime(2025, 1, 11, 12, tzinfo=BERLIN), 7)
    assert [x.astimezone(UTC) for x in starts] == [
        utc(2025, 1, d, 21) for d in (13, 14, 15, 16, 17, 20, 21)
    ]
    assert all(x.tzinfo == BERLIN for x in starts)


def test_next_starts_are_strictly_after_and_count_is_respected() -> None:
    s = sched(kind="weekly", at="22:00", tz="Europe/Berlin")
    at_start = datetime(2025, 1, 13, 22, tzinfo=BERLIN)
    starts = next_starts(s, at_start, 3)
    assert starts[0] == at_start + timedelta(days=1)
    assert len(starts) == 3
    assert next_starts(s, at_start, 0) == []


def test_naive_times_are_refused() -> None:
    s = sched(kind="weekly", at="22:00", tz="Europe/Berlin")
    with pytest.raises(ValueError, match="aware"):
        next_starts(s, datetime(2025, 1, 1), 1)


# --- DST: a week across each change --------------------------------------------------


def test_week_across_spring_forward_in_berlin_keeps_wall_clock() -> None:
    s = sched(kind="weekly", at="22:00", tz="Europe/Berlin")
    starts = next_starts(s, datetime(2025, 3, 26, 12, tzinfo=BERLIN), 7)
    assert [x.astimezone(UTC) for x in starts] == [
        utc(2025, 3, 26, 21), utc(2025, 3, 27, 21), utc(2025, 3, 28, 21), utc(2025, 3, 29, 21),
        utc(2025, 3, 30, 20), utc(2025, 3, 31, 20), utc(2025, 4, 1, 20),
    ]  # fmt: skip
    assert {x.time() for x in starts} == {time(22, 0)}


def test_week_across_fall_back_in_new_york_keeps_wall_clock() -> None:
    s = sched(kind="weekly", at="21:30", tz="America/New_York")
    starts = next_starts(s, datetime(2025, 10, 30, 12, tzinfo=NEW_YORK), 7)
    # Subtract in UTC: same-zone subtraction is wall-clock arithmetic.
    instants = [x.astimezone(UTC) for x in starts]
    gaps = [b - a for a, b in itertools.pairwise(instants)]
    # 2025-11-02 has 25 hours: the start that evening is 25 h after Saturday's.
    assert gaps == [24 * HOUR, 24 * HOUR, 25 * HOUR, 24 * HOUR, 24 * HOUR, 24 * HOUR]
    assert starts[3].astimezone(UTC) == utc(2025, 11, 3, 2, 30)


def test_0230_in_the_spring_forward_gap_runs_once_at_0300_berlin() -> None:
    s = sched(kind="weekly", at="02:30", tz="Europe/Berlin")
    starts = next_starts(s, datetime(2025, 3, 28, 12, tzinfo=BERLIN), 3)
    assert [x.astimezone(UTC) for x in starts] == [
        utc(2025, 3, 29, 1, 30),  # CET
        utc(2025, 3, 30, 1, 0),  # the change itself: 03:00 CEST, first valid instant
        utc(2025, 3, 31, 0, 30),  # CEST
    ]
    assert starts[1].time() == time(3, 0)


def test_0230_in_the_spring_forward_gap_runs_once_at_0300_new_york() -> None:
    s = sched(kind="weekly", at="02:30", tz="America/New_York")
    starts = next_starts(s, datetime(2025, 3, 8, 12, tzinfo=NEW_YORK), 3)
    assert [x.astimezone(UTC) for x in starts] == [
        utc(2025, 3, 9, 7, 0), utc(2025, 3, 10, 6, 30), utc(2025, 3, 11, 6, 30),
    ]  # fmt: skip


def test_start_in_the_repeated_hour_runs_once_first_occurrence_berlin() -> None:
    s = sched(kind="weekly", at="02:30", tz="Europe/Berlin")
    starts = next_starts(s, datetime(2025, 10, 25, 12, tzinfo=BERLIN), 2)
    # 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET): only the first.
    assert [x.astimezone(UTC) for x in starts] == [
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 27, 1, 30),
    ]
    assert starts[0].fold == 0


def test_start_in_the_repeated_hour_runs_once_first_occurrence_new_york() -> None:
    s = sched(kind="weekly", at="01:30", tz="America/New_York")
    after = datetime(2025, 11, 1, 12, tzinfo=NEW_YORK)
    starts = next_starts(s, after, 2)
    assert [x.astimezone(UTC) for x in starts] == [utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 6, 30)]
    # Asking again from just after the first occurrence must not give the second one.
    again = next_starts(s, utc(2025, 11, 2, 5, 31), 1)
    assert again[0].astimezone(UTC) == utc(2025, 11, 3, 6, 30)
    # 01:15 EST (the second pass, fold=1) is after 01:30 EDT, though its wall time is
    # earlier: the start at 01:30 that day has passed.
    second_pass = datetime(2025, 11, 2, 1, 15, fold=1, tzinfo=NEW_YORK)
    assert next_starts(s, second_pass, 1)[0].astimezone(UTC) == utc(2025, 11, 3, 6, 30)
    assert due(s, second_pass, second_pass + timedelta(minutes=30)).action == "wait"


def test_cron_inside_the_gap_collapses_to_one_start() -> None:
    s = sched(kind="cron", expr="*/15 2 * * *", tz="Europe/Berlin")
    starts = next_starts(s, datetime(2025, 3, 29, 12, tzinfo=BERLIN), 5)
    assert [x.astimezone(UTC) for x in starts] == [
        utc(2025, 3, 30, 1, 0),  # 02:00, 02:15, 02:30 and 02:45 fall in the gap: one start
        utc(2025, 3, 31, 0, 0), utc(2025, 3, 31, 0, 15), utc(2025, 3, 31, 0, 30),
        utc(2025, 3, 31, 0, 45),
    ]  # fmt: skip


def test_cron_in_the_repeated_hour_never_runs_twice() -> None:
    s = sched(kind="cron", expr="*/20 2 * * *", tz="Europe/Berlin")
    starts = next_starts(s, datetime(2025, 10, 25, 12, tzinfo=BERLIN), 4)
    assert [x.astimezone(UTC) for x in starts] == [
        utc(2025, 10, 26, 0, 0), utc(2025, 10, 26, 0, 20), utc(2025, 10, 26, 0, 40),
        utc(2025, 10, 27, 1, 0),
    ]  # fmt: skip


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe",
         "America/Santiago", "Europe/Dublin"]  # fmt: skip


@given(
    zone=st.sampled_from(ZONES),
    at=st.times().map(lambda t: t.replace(second=0, microsecond=0, tzinfo=None)),
    first=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 1)),
)
def test_daily_start_runs_exactly_once_every_local_day(zone: str, at: time, first: date) -> None:
    tz = ZoneInfo(zone)
    s = sched(kind="weekly", at=at.strftime("%H:%M"), tz=zone)
    after = datetime.combine(first, time(0), tzinfo=tz) - timedelta(days=1)
    starts = next_starts(s, after, 40)
    local_days = [x.astimezone(tz).date() for x in starts]
    assert local_days == [local_days[0] + timedelta(days=i) for i in range(40)], "once a day"
    for x in starts:
        local = x.astimezone(tz)
        assert local.fold == 0, "the first of a repeated wall time"
        if local.time() != at:
            # Only in a gap: the start is the change itself, just after the asked time.
            just_before = (x - timedelta(seconds=1)).astimezone(tz)
            assert just_before.utcoffset() != local.utcoffset()
            assert local.time() > at


def test_resolve_wall_time_leaves_ordinary_times_alone() -> None:
    wall = datetime(2025, 7, 1, 22, 15)
    assert resolve_wall_time(wall, BERLIN).astimezone(UTC) == utc(2025, 7, 1, 20, 15)


# --- bedtime -----------------------------------------------------------------------


def test_bedtime_starts_lead_minutes_before() -> None:
    s = sched(
        kind="bedtime", days=["sun", "wed"], bedtime="22:30", lead_minutes=45, tz="Europe/Berlin"
    )
    starts = next_starts(s, datetime(2025, 1, 6, 12, tzinfo=BERLIN), 3)  # a Monday
    assert [x.astimezone(UTC) for x in starts] == [
        utc(2025, 1, 8, 20, 45), utc(2025, 1, 12, 20, 45), utc(2025, 1, 15, 20, 45),
    ]  # fmt: skip


def test_bedtime_after_midnight_belongs_to_the_evening_before() -> None:
    s = sched(kind="bedtime", days=["fri"], bedtime="00:30", lead_minutes=45, tz="America/New_York")
    (start,) = next_starts(s, datetime(2025, 1, 6, 12, tzinfo=NEW_YORK), 1)
    # Friday night's bedtime is 00:30 on Saturday 2025-01-11: start 23:45 Friday (EST).
    assert start.astimezone(UTC) == utc(2025, 1, 11, 4, 45)


def test_bedtime_lead_is_real_time_across_spring_forward() -> None:
    s = sched(kind="bedtime", days=["sat"], bedtime="03:30", lead_minutes=60, tz="Europe/Berlin")
    (start,) = next_starts(s, datetime(2025, 3, 29, 12, tzinfo=BERLIN), 1)
    # Bedtime 03:30 CEST = 01:30 UTC; 60 real minutes earlier is 00:30 UTC (01:30 CET).
    assert start.astimezone(UTC) == utc(2025, 3, 30, 0, 30)


# --- cron --------------------------------------------------------------------------


def test_cron_weekdays() -> None:
    s = sched(kind="cron", expr="0 22 * * 1-5", tz="America/New_York")
    starts = next_starts(s, datetime(2025, 1, 4, 12, tzinfo=NEW_YORK), 10)  # a Saturday
    assert {x.strftime("%a %H:%M") for x in starts} == {
        f"{d} 22:00" for d in ("Mon", "Tue", "Wed", "Thu", "Fri")
    }
    assert [x.date() for x in starts] == [
        date(2025, 1, d) for d in (6, 7, 8, 9, 10, 13, 14, 15, 16, 17)
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "cron", "expr": "0 22 * * 1-5 0"},
        {"kind": "cron", "expr": "not cron"},
        {"kind": "cron", "expr": "0 0 30 2 *"},
        {"kind": "weekly", "at": "25:00"},
        {"kind": "weekly", "at": "9:00"},
        {"kind": "weekly", "at": "22:00", "days": ["mon", "mon"]},
        {"kind": "weekly", "at": "22:00", "days": []},
        {"kind": "weekly", "at": "22:00", "days": ["monday"]},
        {"kind": "weekly", "at": "22:00", "tz": "Mars/Olympus"},
        {"kind": "weekly", "at": "22:00", "colour": "blue"},
        {"kind": "weekly", "at": "22:00", "missed_start_grace_minutes": 0},
        {"kind": "bedtime", "bedtime": "22:30", "lead_minutes": -5},
        {"kind": "hourly", "at": "22:00"},
    ],
)
def test_invalid_schedules_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        sched(**bad)


def test_default_zone_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    s = sched(kind="weekly", at="22:00")
    assert s.zone() == NEW_YORK == local_zone()
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert sched(kind="weekly", at="22:00").zone() == ZoneInfo("Asia/Tokyo")


# --- missed starts ------------------------------------------------------------------

NIGHTLY = {"kind": "weekly", "at": "22:00", "tz": "Europe/Berlin"}
SCHEDULED = datetime(2025, 1, 15, 22, 0, tzinfo=BERLIN)


def test_missed_start_five_minutes_late_starts() -> None:
    d = due(sched(**NIGHTLY), SCHEDULED - timedelta(minutes=1), SCHEDULED + timedelta(minutes=5))
    assert (d.action, d.scheduled, d.late_s, d.skipped) == ("start", SCHEDULED, 300.0, ())
    assert d.next_start == SCHEDULED + timedelta(days=1)


def test_missed_start_thirty_minutes_late_is_skipped_with_its_time() -> None:
    d = due(sched(**NIGHTLY), SCHEDULED - timedelta(hours=3), SCHEDULED + timedelta(minutes=30))
    assert (d.action, d.scheduled, d.skipped) == ("skip", SCHEDULED, (SCHEDULED,))


def test_grace_is_less_than_not_equal_and_configurable() -> None:
    before = SCHEDULED - timedelta(minutes=1)
    assert due(sched(**NIGHTLY), before, SCHEDULED + timedelta(minutes=10)).action == "skip"
    assert due(sched(**NIGHTLY), before, SCHEDULED + timedelta(seconds=599)).action == "start"
    long = sched(**NIGHTLY, missed_start_grace_minutes=45)
    assert due(long, before, SCHEDULED + timedelta(minutes=30)).action == "start"


def test_nothing_due_waits_for_the_next_start() -> None:
    d = due(sched(**NIGHTLY), SCHEDULED - timedelta(hours=2), SCHEDULED - timedelta(hours=1))
    assert (d.action, d.scheduled, d.skipped, d.next_start) == ("wait", None, (), SCHEDULED)
    # A start exactly at last_checked was handled by the previous check.
    assert due(sched(**NIGHTLY), SCHEDULED, SCHEDULED + timedelta(minutes=1)).action == "wait"


def test_machine_asleep_for_days_skips_the_old_starts_and_runs_the_latest() -> None:
    d = due(
        sched(**NIGHTLY), SCHEDULED - timedelta(days=3, hours=1), SCHEDULED + timedelta(minutes=2)
    )
    assert d.action == "start"
    assert d.scheduled == SCHEDULED
    assert d.skipped == tuple(SCHEDULED - timedelta(days=n) for n in (3, 2, 1))


def test_clock_going_backwards_finds_nothing_due() -> None:
    d = due(sched(**NIGHTLY), SCHEDULED + timedelta(minutes=5), SCHEDULED + timedelta(minutes=1))
    assert d.action == "wait"


def test_missed_start_in_the_gap_uses_the_resolved_time() -> None:
    s = sched(kind="weekly", at="02:30", tz="Europe/Berlin")
    change = utc(2025, 3, 30, 1, 0)
    d = due(s, change - timedelta(hours=2), change + timedelta(minutes=4))
    assert (d.action, d.scheduled, d.late_s) == ("start", change, 240.0)


# --- start limits --------------------------------------------------------------------

NOW = datetime(2025, 1, 15, 22, 0, tzinfo=BERLIN)


def test_cooldown_refuses_until_it_has_passed() -> None:
    early = may_start(NOW, NOW - timedelta(minutes=20), 30)
    assert (early.allowed, early.reason, early.wait_s) == (False, "cooldown", 600.0)
    assert may_start(NOW, NOW - timedelta(minutes=30), 30).allowed
    assert may_start(NOW, None, 30).allowed


def test_session_end_in_the_future_counts_as_just_ended() -> None:
    check = may_start(NOW, NOW + timedelta(minutes=5), 30)
    assert not check.allowed
    # just ended: the whole cooldown from now, as the governor decides (issue #9, 7)
    assert check.wait_s == 30 * 60


def test_sessions_per_night_limit() -> None:
    assert within_night_limit(1, 2).allowed
    full = within_night_limit(2, 2)
    assert (full.allowed, full.reason) == (False, "night_limit")
    via_may_start = may_start(NOW, None, 30, sessions_tonight=2, max_sessions_per_night=2)
    assert via_may_start.reason == "night_limit"


def test_a_night_runs_from_noon_to_noon() -> None:
    evening = date(2025, 1, 15)
    assert night_of(datetime(2025, 1, 15, 12, 0, tzinfo=BERLIN), BERLIN) == evening
    assert night_of(datetime(2025, 1, 16, 1, 30, tzinfo=BERLIN), BERLIN) == evening
    assert night_of(datetime(2025, 1, 16, 11, 59, tzinfo=BERLIN), BERLIN) == evening
    assert night_of(datetime(2025, 1, 16, 12, 0, tzinfo=BERLIN), BERLIN) == evening + timedelta(
        days=1
    )
    # The zone matters: 01:30 in Berlin is still the evening before in New York.
    assert night_of(utc(2025, 1, 16, 0, 30), NEW_YORK) == evening
