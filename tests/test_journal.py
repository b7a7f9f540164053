"""The session journal: storage, crash marker, migrations, queries and views."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import footctl.journal as journal_module
from footctl.device.profile.loader import find_profiles
from footctl.errors import UsageError
from footctl.history import plot_history, render_history_table, summarize_nights
from footctl.journal import (
    SCHEMA_VERSION,
    Journal,
    JournalError,
    SessionRecord,
)
from footctl.programs import effective_intensity, find_programs
from footctl.programs.intent import resolve
from footctl.schedule import within_night_limit

BERLIN = ZoneInfo("Europe/Berlin")
EVENING = datetime(2025, 1, 15, 21, 45, tzinfo=BERLIN)
DEV = "AA:BB:CC:DD:EE:01"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "journal.sqlite"


@pytest.fixture
def j(path: Path) -> Journal:
    return Journal(path, clock=lambda: EVENING)


def session(
    j: Journal,
    start: datetime,
    minutes: float,
    reason: str = "completed",
    program: str | None = "wind-down",
    device: str = DEV,
) -> int:
    sid = j.start_session(device, source="schedule", program=program, at=start)
    j.end_session(sid, reason, at=start + timedelta(minutes=minutes))  # type: ignore[arg-type]
    return sid


# --- the file -----------------------------------------------------------------------


def test_new_journal_is_wal_and_versioned(path: Path, j: Journal) -> None:
    assert path.exists()
    assert j.schema_version == SCHEMA_VERSION
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [r[0] for r in raw.execute("SELECT version FROM schema_version")]
    assert versions == [v for v, _ in journal_module.MIGRATIONS]


def test_reopening_does_not_migrate_twice(path: Path) -> None:
    Journal(path).close()
    Journal(path).close()
    with sqlite3.connect(path) as raw:
        count = raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
    assert count == len(journal_module.MIGRATIONS)


def test_a_later_migration_is_applied_to_an_old_file(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Journal(path) as old:
        sid = session(old, EVENING, 15)
    extra = (SCHEMA_VERSION + 1, ("ALTER TABLE sessions ADD COLUMN room TEXT",))
    monkeypatch.setattr(journal_module, "MIGRATIONS", (*journal_module.MIGRATIONS, extra))
    monkeypatch.setattr(journal_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Journal(path) as new:
        assert new.schema_version == SCHEMA_VERSION + 1
        assert new.get(sid).end_reason == "completed"
    with sqlite3.connect(path) as raw:
        columns = [r[1] for r in raw.execute("PRAGMA table_info(sessions)")]
    assert "room" in columns


def test_a_file_from_a_newer_footctl_is_refused(path: Path) -> None:
    Journal(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 5,))
    with pytest.raises(JournalError) as info:
        Journal(path)
    assert info.value.advice is not None
    assert "upgrade" in info.value.advice


def test_a_file_that_is_not_a_database_is_an_error(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="cannot open"):
        Journal(path)


# Schema 4 (the sessions table before "device" was a source): the released migrations up
# to it, applied as an older footctl applied them.
SCHEMA_4 = tuple(m for m in journal_module.MIGRATIONS if m[0] <= 4)


def _schema_4_file(path: Path) -> list[tuple[object, ...]]:
    """A journal as schema 4 left it: a row of every source it allowed (ended, rated,
    noted, running), the last one deleted by hand (its id is not to be reused). Its rows."""
    path.parent.mkdir(parents=True)
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, statements in SCHEMA_4:
        for statement in statements:
            raw.execute(statement)
        raw.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    raw.execute("PRAGMA user_version = 4")
    start = EVENING.astimezone(UTC)
    for i, source in enumerate(("manual", "cli", "tui", "mqtt", "schedule", "program", "cli")):
        at = (start + timedelta(hours=i)).isoformat(timespec="microseconds")
        end = (start + timedelta(hours=i, minutes=20)).isoformat(timespec="microseconds")
        raw.execute(
            "INSERT INTO sessions (started_at, ended_at, device, profile_id, source, program, "
            "steps_run, peak_heat, heat_s, end_reason, rating, note, pid, ended_by, simulated) "
            "VALUES (?, ?, ?, 'ems-v2', ?, ?, ?, 1, 90.5, ?, ?, ?, 42, ?, ?)",
            (at, None if source == "mqtt" else end, DEV, source,
             "wind-down" if source in ("schedule", "program") else None, i,
             None if source == "mqtt" else "stopped", 4 if source == "manual" else None,
             "asleep" if source == "tui" else None, None if source == "mqtt" else "stopped",
             int(source == "tui")),
        )
    raw.execute("DELETE FROM sessions WHERE id = 7")
    rows = raw.execute("SELECT * FROM sessions ORDER BY id").fetchall()
    raw.close()
    return rows


def test_schema_4_is_migrated_to_allow_device_keeping_every_row(path: Path) -> None:
    """A session the massager's own button started is journaled as ``device``: schema 4's
    check refused that source. Every row stays as it was (ids, every column, the old
    ``manual`` ones, a running session's crash marker)."""
    before = _schema_4_file(path)
    with Journal(path, clock=lambda: EVENING) as journal:
        assert journal.schema_version == SCHEMA_VERSION > 4
        after = journal._db.execute("SELECT * FROM sessions ORDER BY id").fetchall()
        assert after == before
        assert journal._db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        indexes = {r[1] for r in journal._db.execute("PRAGMA index_list(sessions)")}
        assert {"sessions_started", "sessions_program"} <= indexes
        [marker] = journal.unfinished_sessions()
        assert (marker.source, marker.pid) == ("mqtt", 42)
        sid = journal.start_session(DEV, source="device", at=EVENING + timedelta(hours=9))
        assert sid == 8  # the id deleted by hand is not given out again
        assert journal.get(sid).source == "device"
        with pytest.raises(sqlite3.IntegrityError):
            journal._db.execute(
                "INSERT INTO sessions (started_at, device, source) VALUES ('x', 'y', 'robot')"
            )
    with sqlite3.connect(path) as raw:
        versions = [r[0] for r in raw.execute("SELECT version FROM schema_version")]
    assert versions == [v for v, _ in journal_module.MIGRATIONS]
    with Journal(path) as again:  # opening again migrates nothing
        assert again.schema_version == SCHEMA_VERSION
        assert len(again._db.execute("SELECT id FROM sessions").fetchall()) == len(before) + 1


# --- sessions and the crash marker -----------------------------------------------


def test_unfinished_session_survives_reopening(path: Path) -> None:
    daemon = Journal(path)
    sid = daemon.start_session(DEV, source="schedule", profile_id="shiatsu-aa55",
                               program="wind-down", at=EVENING)  # fmt: skip
    daemon.update_session(sid, steps_run=2, peak_heat=1, heat_s=420.0)
    del daemon  # crash: never ended, never closed

    after = Journal(path)
    (marker,) = after.unfinished_sessions()
    assert (marker.id, marker.device, marker.profile_id, marker.program) == (
        sid, DEV, "shiatsu-aa55", "wind-down",
    )  # fmt: skip
    assert (marker.steps_run, marker.peak_heat, marker.heat_s) == (2, 1, 420.0)
    assert marker.started_at == EVENING
    assert not marker.finished
    recovered = after.end_session(sid, "recovered_after_crash", at=EVENING + timedelta(hours=1))
    assert recovered.end_reason == "recovered_after_crash"
    assert after.unfinished_sessions() == []
    assert Journal(path).unfinished_sessions() == []


def test_two_handles_share_the_file(path: Path) -> None:
    daemon, cli = Journal(path), Journal(path)
    sid = daemon.start_session(DEV, source="manual", at=EVENING)
    assert [r.id for r in cli.unfinished_sessions()] == [sid]


def test_progress_only_grows_and_end_is_final(j: Journal) -> None:
    sid = j.start_session(DEV, source="program", program="quick-relax")
    j.update_session(sid, steps_run=3, peak_heat=2, heat_s=300.0)
    j.update_session(sid, steps_run=1, peak_heat=1, heat_s=10.0)  # stale
    j.update_session(sid, heat_s=360.0)
    record = j.end_session(sid, "stopped", note="phone rang")
    assert (record.steps_run, record.peak_heat, record.heat_s) == (3, 2, 360.0)
    assert (record.end_reason, record.note, record.ended_at) == ("stopped", "phone rang", EVENING)
    assert record.duration_s == 0.0
    with pytest.raises(JournalError, match="already ended"):
        j.end_session(sid, "completed")
    with pytest.raises(JournalError, match="no session"):
        j.end_session(sid + 100, "completed")


def test_bad_values_are_refused(j: Journal) -> None:
    with pytest.raises(ValueError, match="source"):
        j.start_session(DEV, source="telepathy")  # type: ignore[arg-type]
    sid = j.start_session(DEV, source="manual")
    with pytest.raises(ValueError, match="reason"):
        j.end_session(sid, "bored")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aware"):
        j.start_session(DEV, source="manual", at=datetime(2025, 1, 1, 22, 0))


def test_times_are_stored_as_utc_iso(path: Path, j: Journal) -> None:
    sid = session(j, EVENING, 15)
    with sqlite3.connect(path) as raw:
        started, ended = raw.execute(
            "SELECT started_at, ended_at FROM sessions WHERE id = ?", (sid,)
        ).fetchone()
    assert started == "2025-01-15T20:45:00.000000+00:00"
    assert datetime.fromisoformat(ended) == EVENING + timedelta(minutes=15)
    record = j.get(sid)
    assert record.started_at.tzinfo is not None
    assert json.loads(json.dumps(record.to_dict()))["started_at"] == started


# --- rating -------------------------------------------------------------------------


def test_rate_last_rates_the_latest_session_that_ran(j: Journal) -> None:
    first = session(j, EVENING - timedelta(days=1), 15)
    last = session(j, EVENING, 15)
    j.record_not_run(DEV, "skipped", source="schedule", at=EVENING + timedelta(hours=1),
                     program="wind-down")  # fmt: skip
    rated = j.rate_last(4, "asleep fast", now=EVENING + timedelta(hours=9))
    assert (rated.id, rated.rating, rated.note) == (last, 4, "asleep fast")
    assert j.get(first).rating is None


@pytest.mark.parametrize("rating", [0, 6, -1])
def test_rating_must_be_one_to_five(j: Journal, rating: int) -> None:
    session(j, EVENING, 15)
    with pytest.raises(UsageError, match="1 to 5"):
        j.rate_last(rating)


def test_nothing_recent_to_rate(j: Journal) -> None:
    session(j, EVENING - timedelta(days=3), 15)
    with pytest.raises(UsageError, match="no session"):
        j.rate_last(3)


# --- queries ------------------------------------------------------------------------


def test_completed_nights_counts_distinct_nights(j: Journal) -> None:
    session(j, EVENING, 15)
    # Half past midnight belongs to the same night: still one night.
    session(j, EVENING + timedelta(hours=2, minutes=45), 10)
    session(j, EVENING + timedelta(days=1), 5, reason="stopped")
    session(j, EVENING + timedelta(days=2), 15)
    session(j, EVENING + timedelta(days=3), 15, program="quick-relax")
    session(j, EVENING + timedelta(days=4), 15, device="OTHER")
    assert j.completed_nights("wind-down", zone=BERLIN) == 3
    assert j.completed_nights("wind-down", DEV, zone=BERLIN) == 2
    assert j.completed_nights("quick-relax", zone=BERLIN) == 1
    assert j.completed_nights("no-heat", zone=BERLIN) == 0


def test_progression_follows_the_journal(j: Journal) -> None:
    # relative intensities: resolved on a device (shiatsu-aa55: 0-50 % is 1-3)
    wind_down = resolve(find_programs()["wind-down"], find_profiles()["shiatsu-aa55"]).program
    assert wind_down.progression is not None
    every = wind_down.progression.every_nights
    first_step = wind_down.steps[0]
    levels = []
    for night in range(every + 1):
        levels.append(
            effective_intensity(wind_down, first_step, j.completed_nights("wind-down", zone=BERLIN))
        )
        session(j, EVENING + timedelta(days=night), 15)
    assert levels == [wind_down.progression.start_intensity] * every + [
        wind_down.progression.start_intensity + 1
    ]


def test_history_window(j: Journal) -> None:
    now = EVENING + timedelta(days=10)
    old = session(j, now - timedelta(days=8), 15)
    mid = session(j, now - timedelta(days=6), 15)
    skipped = j.record_not_run(DEV, "skipped", source="schedule", at=now - timedelta(days=2))
    recent = session(j, now - timedelta(days=1), 15)
    assert [r.id for r in j.history(7, now)] == [mid, skipped, recent]
    assert [r.id for r in j.history(9, now)] == [old, mid, skipped, recent]
    assert [r.id for r in j.history(7, now - timedelta(days=5))] == [old, mid]
    with pytest.raises(UsageError):
        j.history(0, now)


def test_sessions_in_night_for_the_nightly_limit(j: Journal) -> None:
    session(j, EVENING - timedelta(hours=22), 10)  # the night before (23:45 on the 14th)
    a = session(j, EVENING, 15)
    b = session(j, EVENING + timedelta(hours=3), 10)  # 00:45, same night
    j.record_not_run(DEV, "refused", source="mqtt", at=EVENING + timedelta(hours=4))
    running = j.start_session(DEV, source="manual", at=EVENING + timedelta(hours=5))
    session(j, EVENING + timedelta(hours=16), 10)  # 13:45 next day: the next night
    at_night = EVENING + timedelta(hours=6)
    tonight = j.sessions_in_night(at_night, zone=BERLIN, sources=None)
    assert [r.id for r in tonight] == [a, b, running]
    assert not within_night_limit(len(tonight), 3).allowed
    assert j.sessions_in_night(at_night, device="OTHER", zone=BERLIN) == []


def test_last_session_end_ignores_starts_that_did_not_run(j: Journal) -> None:
    assert j.last_session_end() is None
    session(j, EVENING, 15)
    j.record_not_run(DEV, "skipped", source="schedule", at=EVENING + timedelta(hours=2))
    j.start_session(DEV, source="manual", at=EVENING + timedelta(hours=3))
    assert j.last_session_end() == EVENING + timedelta(minutes=15)
    assert j.last_session_end("OTHER") is None


# --- views --------------------------------------------------------------------------


def test_history_table_lists_each_session(j: Journal) -> None:
    sid = session(j, EVENING, 12.5)
    j.rate_last(5, "great", now=EVENING + timedelta(hours=8))
    skipped = j.record_not_run(DEV, "skipped", source="schedule", at=EVENING + timedelta(days=1))
    running = j.start_session(DEV, source="manual", at=EVENING + timedelta(days=2))
    lines = render_history_table(
        j.history(7, EVENING + timedelta(days=3)), zone=BERLIN
    ).splitlines()
    assert lines[0].split()[:3] == ["id", "started", "min"]
    rows = {int(line.split()[0]): line for line in lines[2:]}
    assert set(rows) == {sid, skipped, running}
    assert "2025-01-15 21:45" in rows[sid]
    assert "12.5" in rows[sid]
    assert rows[sid].split()[-2:] == ["5", "great"]
    assert "skipped" in rows[skipped]
    assert "running" in rows[running]
    assert render_history_table([]) == "no sessions"


def test_night_summary_and_plot(j: Journal) -> None:
    session(j, EVENING, 15)
    session(j, EVENING + timedelta(hours=3), 5)  # same night
    j.rate_last(2, now=EVENING + timedelta(hours=8))
    j.record_not_run(DEV, "skipped", source="schedule", at=EVENING + timedelta(days=1))
    session(j, EVENING + timedelta(days=2), 10)
    records = j.history(7, EVENING + timedelta(days=3))
    nights = summarize_nights(records, zone=BERLIN)
    assert [(n.night, round(n.minutes, 6), n.rating) for n in nights] == [
        (date(2025, 1, 15), 20.0, 2),
        (date(2025, 1, 16), 0.0, None),
        (date(2025, 1, 17), 10.0, None),
    ]
    text = plot_history(records, zone=BERLIN, width=60, height=15)
    assert "minutes per night" in text
    assert all(label in text for label in ("01-15", "01-16", "01-17"))
    assert "\x1b[" not in text, "no colour codes"
    assert len(text.splitlines()) == 15
    assert plot_history([]) == "no sessions to plot"


def test_record_is_frozen(j: Journal) -> None:
    record = j.get(session(j, EVENING, 15))
    assert isinstance(record, SessionRecord)
    with pytest.raises(AttributeError):
        record.rating = 5  # type: ignore[misc]
    assert record.started_at.astimezone(UTC) == EVENING.astimezone(UTC)
