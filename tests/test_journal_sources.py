"""Issue 8: every request carries its source, which the journal records, and the journal
listens to the hub (session events, never dropped) instead of to the governor.

The sources are checked through the processes that ship them: the one-shot CLI owner,
the daemon reached by the thin CLI client, and the TUI's socket client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from footctl.control.api import DeviceView, SetRequest, StopRequest
from footctl.control.hub import StateHub
from footctl.control.owner import Owner
from footctl.history import render_history_table
from footctl.journal import PROGRAM_SOURCES, SCHEMA_VERSION, Journal
from safety_harness import eventually
from test_control_owner import Rig

CLI_TIMEOUT_S = 60.0
# Zero cooldown and a fast ramp, so one test may run several sessions in a row.
FAST = "[caps]\ncooldown_minutes = 0\nintensity_step_seconds = 0.05\n"


def footctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "footctl.cli", *args], capture_output=True, text=True,
        timeout=CLI_TIMEOUT_S, env=os.environ.copy(), check=False,
    )


def sessions() -> list[dict[str, Any]]:
    proc = footctl("--json", "history", "--include-simulated")
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, Any]] = json.loads(proc.stdout)["sessions"]
    return rows


@pytest.fixture
def fast_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "fast.toml"
    config.write_text(FAST)
    monkeypatch.setenv("FOOTCTL_CONFIG", str(config))
    return config


@pytest.fixture
def daemon(tmp_path: Path, fast_config: Path) -> Iterator[Path]:
    """``footctl --simulate shiatsu-aa55 daemon`` in its own process: its socket."""
    sock = Path(os.environ["FOOTCTL_RUNTIME_DIR"]) / "daemon.sock"
    with open(tmp_path / "daemon.err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "footctl.cli", "--simulate", "shiatsu-aa55", "daemon"],
            stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while not (sock.exists() and footctl("status").returncode == 0):
            assert proc.poll() is None, (tmp_path / "daemon.err").read_text()
            assert time.monotonic() < deadline, "the daemon did not come up"
            time.sleep(0.05)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_a_one_shot_cli_set_is_journaled_as_cli(fast_config: Path) -> None:
    """Before: every CLI session was journaled "manual"."""
    ran = footctl("--simulate", "shiatsu-aa55", "set", "--intensity", "2")
    assert ran.returncode == 0, ran.stderr
    [row] = sessions()
    assert (row["source"], row["simulated"], row["end_reason"]) == ("cli", True, "stopped")


def test_cli_and_tui_requests_through_the_daemon_are_journaled_with_their_sources(
    daemon: Path,
) -> None:
    """Before: the CLI and the TUI were both journaled "manual"."""
    from footctl.tui.remote import SocketController

    assert footctl("set", "--intensity", "1").returncode == 0
    assert footctl("stop").returncode == 0

    async def from_the_tui() -> None:
        tui = SocketController(daemon)  # the TUI's own client of a running daemon
        assert tui.source == "tui"
        for request in (SetRequest(source="tui", intensity=1), StopRequest(source="tui")):
            reply = await tui.request(request)
            assert reply.ok, reply

    asyncio.run(from_the_tui())
    rows = sessions()
    assert [(r["source"], r["end_reason"]) for r in rows] == [
        ("cli", "stopped"), ("tui", "stopped"),
    ], rows


def test_footctl_history_shows_an_own_button_session_as_device() -> None:
    """``footctl history``, as a table and with ``--json``, on a real massager's row."""
    from footctl.config import journal_path

    with Journal(journal_path()) as journal:
        start = journal.now() - timedelta(hours=1)
        row = journal.start_session("F0:F0:00:00:00:01", source="device", at=start,
                                    profile_id="shiatsu-aa55")
        journal.end_session(row, "cap", at=start + timedelta(minutes=20), ended_by="session_cap")
    [json_row] = sessions()
    assert (json_row["id"], json_row["source"], json_row["simulated"]) == (row, "device", False)
    table = footctl("history")
    assert table.returncode == 0, table.stderr
    header, _rule, line = table.stdout.splitlines()
    column = header.index("source")
    assert line[column:].split()[0] == "device", table.stdout


# --- the hub's session events ----------------------------------------------------------------


def _event(number: int, phase: str = "started") -> Any:
    from footctl.control.api import SessionEvent

    return SessionEvent(
        phase=phase, device_id="A", number=number, journal_device="A", profile="p",
        source="cli", at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_session_events_are_never_coalesced_while_views_are() -> None:
    hub = StateHub()
    stream = hub.sessions()
    for n in range(1, 101):
        hub.emit(_event(n))
        hub.emit(_event(n, "ended"))
    got = await stream.get()
    assert [(e.number, e.phase) for e in got] == [
        (n, p) for n in range(1, 101) for p in ("started", "ended")
    ]
    stream.close()
    hub.emit(_event(101))
    assert await stream.get() == []


@contextlib.asynccontextmanager
async def journaled_owner(
    tmp_path: Path, profile: Any, config: Any = None
) -> AsyncIterator[tuple[Owner, Rig, Journal]]:
    """An owner of one virtual massager with a journal of its own."""
    rig = Rig()
    journal = Journal(tmp_path / "j.sqlite3")
    try:
        owner = await rig.build([profile], journal=journal, config=config)
        yield owner, rig, journal
    finally:
        await rig.close()
        journal.close()


async def test_owner_sessions_reach_the_journal_through_the_hub(
    tmp_path: Path, profiles: dict[str, Any]
) -> None:
    async with journaled_owner(tmp_path, profiles["shiatsu-aa55"], _zero_cooldown()) as (
        owner, _rig, journal,
    ):
        events = owner.hub.sessions()
        for source in ("mqtt", "tui", "cli"):
            reply = await owner.request(SetRequest(source=source, intensity=1, heat=1))
            assert reply.ok, reply
            await owner.request(StopRequest(source=source))
        seen = events.take()
        assert [(e.phase, e.source) for e in seen if e.phase != "progress"] == [
            ("started", "mqtt"), ("ended", "mqtt"), ("started", "tui"), ("ended", "tui"),
            ("started", "cli"), ("ended", "cli"),
        ]
        ended = [e for e in seen if e.phase == "ended"]
        assert all(e.peak_heat == 1 and e.reason == "stopped" for e in ended), ended
        owner.settle_journal()
        rows = journal.history(1, include_simulated=True)
        assert [(r.source, r.peak_heat, r.end_reason) for r in rows] == [
            ("mqtt", 1, "stopped"), ("tui", 1, "stopped"), ("cli", 1, "stopped"),
        ]


async def test_an_own_button_session_is_journaled_and_reported_as_device(
    tmp_path: Path, profiles: dict[str, Any]
) -> None:
    """The massager's own power button started a session: its SessionEvents, the view's
    ``session_source``, the MQTT state's ``source``, its journal row and ``history``
    (table and ``--json``) all say ``device``. Before: ``cli`` everywhere (the session
    events and the journal), and no source at all in the view (the governor's own
    session has no request source)."""
    from footctl.mqtt.payloads import state_payload
    from footctl.state import Command

    async with journaled_owner(tmp_path, profiles["shiatsu-aa55"], _zero_cooldown()) as (
        owner, rig, journal,
    ):
        events = owner.hub.sessions()
        seen: list[Any] = []
        massager = rig.massagers[0]
        massager.model.apply(Command("power", 1))  # someone presses its power button
        await massager.notify()

        def started() -> bool:
            seen.extend(events.take())
            return any(e.phase == "started" for e in seen)

        assert await eventually(started), seen
        [start] = [e for e in seen if e.phase == "started"]
        assert start.source == "device"
        assert await eventually(lambda: owner.snapshot()[0].session_source == "device"), (
            owner.snapshot()[0]
        )
        view = owner.snapshot()[0]
        assert state_payload(view)["source"] == "device"
        assert DeviceView.model_validate_json(view.model_dump_json()) == view

        stop = await owner.request(StopRequest())
        assert stop.ok, stop
        assert not massager.model.running
        assert await eventually(lambda: owner.snapshot()[0].session_source is None)
        owner.settle_journal()
        seen.extend(events.take())
        [end] = [e for e in seen if e.phase == "ended"]
        assert end.source == "device"
        [row] = journal.history(1, include_simulated=True)
        assert (row.source, row.end_reason) == ("device", "stopped")
        assert "device (sim)" in render_history_table([row])
        assert json.loads(json.dumps(row.to_dict()))["source"] == "device"


async def test_a_journal_that_cannot_be_written_never_stops_the_massager(
    tmp_path: Path, profiles: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with journaled_owner(tmp_path, profiles["shiatsu-aa55"]) as (owner, rig, journal):

        def broken(*_a: object, **_k: object) -> int:
            raise sqlite3.OperationalError("disk I/O error")

        journal.start_session = broken
        with caplog.at_level(logging.ERROR, logger="footctl.journal_hooks"):
            reply = await owner.request(SetRequest(intensity=1))
            assert reply.ok, reply
            assert rig.massagers[0].model.running
            await asyncio.sleep(0.05)  # the recorder's turn
            stop = await owner.request(StopRequest())
            assert stop.ok, stop
            owner.settle_journal()
        assert not rig.massagers[0].model.running
        assert "journal write failed" in caplog.text


def _zero_cooldown() -> Any:
    from footctl.config import Config

    return Config.model_validate({"caps": {"cooldown_minutes": 0}})


# --- the migration ---------------------------------------------------------------------------

# The sessions table as schema 1 to 3 made it (migration 1 plus the columns of 2 and 3).
OLD_SCHEMA = (
    """CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        device TEXT NOT NULL,
        profile_id TEXT,
        source TEXT NOT NULL CHECK (source IN ('manual', 'schedule', 'mqtt', 'program')),
        program TEXT,
        steps_run INTEGER NOT NULL DEFAULT 0,
        peak_heat INTEGER NOT NULL DEFAULT 0,
        heat_s REAL NOT NULL DEFAULT 0,
        end_reason TEXT CHECK (end_reason IS NULL OR end_reason IN ('completed', 'stopped',
            'cap', 'link_lost', 'cap_expired_while_away', 'recovered_after_crash',
            'skipped', 'refused')),
        rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
        note TEXT
    )""",
    "CREATE INDEX sessions_started ON sessions (started_at)",
    "CREATE INDEX sessions_program ON sessions (program, end_reason)",
    "ALTER TABLE sessions ADD COLUMN pid INTEGER",
    "ALTER TABLE sessions ADD COLUMN ended_by TEXT",
    "ALTER TABLE sessions ADD COLUMN simulated INTEGER NOT NULL DEFAULT 0",
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version (version) VALUES (1), (2), (3)",
)
NIGHT = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)


def _old_journal(path: Path) -> None:
    db = sqlite3.connect(path)
    for statement in OLD_SCHEMA:
        db.execute(statement)
    rows = [  # (start, minutes, source, program, end_reason, rating)
        (NIGHT - timedelta(days=1), 20, "manual", None, "stopped", 4),
        (NIGHT - timedelta(hours=3), 15, "program", "no-heat", "completed", None),
        (NIGHT - timedelta(hours=2), 5, "mqtt", None, "cap", None),
        (NIGHT - timedelta(hours=1), 0, "schedule", "no-heat", "skipped", None),
    ]
    for start, minutes, source, program, reason, rating in rows:
        end = start + timedelta(minutes=minutes)
        db.execute(
            "INSERT INTO sessions (started_at, ended_at, device, profile_id, source, program, "
            "peak_heat, heat_s, end_reason, rating, pid, ended_by) "
            "VALUES (?, ?, 'AA:BB', 'ems-v2', ?, ?, 1, 60.5, ?, ?, 42, ?)",
            (start.isoformat(timespec="microseconds"), end.isoformat(timespec="microseconds"),
             source, program, reason, rating, reason),
        )
    db.commit()
    db.close()


def test_an_old_journal_is_migrated_keeping_every_row(tmp_path: Path) -> None:
    """Before: an old journal opened fine but refused a "cli" or "tui" row."""
    path = tmp_path / "old.sqlite3"
    _old_journal(path)
    before = sqlite3.connect(path).execute("SELECT * FROM sessions ORDER BY id").fetchall()
    with Journal(path, clock=lambda: NIGHT) as journal:
        assert journal.schema_version == SCHEMA_VERSION
        after = journal._db.execute("SELECT * FROM sessions ORDER BY id").fetchall()
        assert after == before  # every row, every column, ids included
        assert journal._db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        # old rows read as they were: "manual" is shown as such
        rows = journal.history(days=3, now=NIGHT)
        assert [r.source for r in rows] == ["manual", "program", "mqtt", "schedule"]
        assert "manual" in render_history_table(rows)
        # the night's program starts still count programs and schedules only
        tonight = journal.sessions_in_night(NIGHT - timedelta(minutes=1), device="AA:BB")
        assert [r.source for r in tonight] == ["program"]
        assert set(PROGRAM_SOURCES) == {"program", "schedule"}
        # new rows name their source; the check still refuses nonsense
        for source in ("cli", "tui"):
            sid = journal.start_session("AA:BB", source=source, at=NIGHT + timedelta(hours=1))
            assert journal.get(sid).source == source
        with pytest.raises(sqlite3.IntegrityError):
            journal._db.execute(
                "INSERT INTO sessions (started_at, device, source) VALUES ('x', 'y', 'robot')"
            )
        ids = [r[0] for r in journal._db.execute("SELECT id FROM sessions ORDER BY id")]
        assert ids == [1, 2, 3, 4, 5, 6]
    with Journal(path) as again:  # opening again migrates nothing
        assert again.schema_version == SCHEMA_VERSION and len(again.history(3, now=NIGHT)) == 4
