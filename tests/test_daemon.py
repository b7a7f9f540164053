"""The daemon: scheduled programs on a fake clock, missed starts, start limits, crash
recovery, and the control socket (credentials, malformed requests).

The daemon, its governor, the runner, the journal and the virtual massager's model
share one FakeClock (``clock.wall()`` is its wall-clock face), so the scheduler fires
at a chosen instant and a whole program runs in moments.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from footctl.config import Config
from footctl.control.api import Reply
from footctl.control.hub import StateHub
from footctl.control.owner import DeviceSpec, journal_key
from footctl.control.server import ControlServer
from footctl.control.sockets import peer_allowed, peer_uid
from footctl.daemon import Daemon
from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession, Target
from footctl.journal import Journal
from footctl.safety.markers import MarkerStore
from footctl.sdnotify import notify, watchdog_period
from program_rig import BASE_WALL, FakeClock, VirtualBench, check_device_followed, virtual_bench

MIN = timedelta(minutes=1)

# ems-v2 has heat levels 1-3 (38/41/44 C); heat 2 is within the 42 C cap, but a
# scheduled (unattended) start may use only level 1.
WARM2 = """
name = "warm2"
[[steps]]
name = "warm kneading"
duration = "2m"
mode = "kneading"
intensity = 3
heat = 2
[[steps]]
name = "tapping"
duration = "1m"
mode = "tapping"
intensity = 2
heat = 2
[[steps]]
name = "cool"
duration = "1m"
mode = "kneading"
intensity = 1
heat = 0
"""

AT_2130 = {"kind": "weekly", "at": "21:30", "tz": "UTC"}


@dataclass
class DRig:
    daemon: Daemon
    bench: VirtualBench
    clock: FakeClock
    journal: Journal
    gate: asyncio.Event  # cleared: the program parks at its next sleep

    @property
    def managed(self) -> Any:
        return self.daemon.devices[0]

    @property
    def key(self) -> str:
        return journal_key(self.managed)


async def ask(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """One request line, one reply line (the control API on the daemon's socket)."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps({"v": 1, "source": "cli", **request}).encode() + b"\n")
        await writer.drain()
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), 20))
        return reply
    finally:
        writer.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="fd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


MakeRig = Callable[..., Awaitable[DRig]]


@pytest.fixture
async def make_rig(tmp_path: Path, sock_dir: Path) -> AsyncIterator[MakeRig]:
    made: list[tuple[DRig, bool]] = []

    async def make(
        profile: Profile,
        *,
        schedules: list[dict[str, Any]] | None = None,
        caps: dict[str, Any] | None = None,
        markers: MarkerStore | None = None,
        clock: FakeClock | None = None,
        bench: VirtualBench | None = None,
    ) -> DRig:
        clock = clock or FakeClock()
        own_bench = bench is None
        bench = bench or await virtual_bench(profile, clock)
        programs = tmp_path / "programs"
        programs.mkdir(exist_ok=True)
        (programs / "warm2.toml").write_text(WARM2)
        config = Config.model_validate({"caps": caps or {}, "schedules": schedules or []})
        journal = Journal(tmp_path / "journal.sqlite3", clock=clock.wall)
        gate = asyncio.Event()
        gate.set()

        async def sleep(seconds: float) -> None:
            await clock.sleep(seconds)
            await gate.wait()

        daemon = await Daemon.open_in(
            contextlib.AsyncExitStack(), config, [(DeviceSpec(profile), bench.radio)],
            journal=journal, socket_path=sock_dir / "daemon.sock",
            state_path=tmp_path / "scheduler.json", markers=markers, program_dir=programs,
            clock=clock, sleep=sleep, wall=clock.wall, scan_timeout=5.0,
        )
        await daemon.start(scheduler_loop=False)
        rig = DRig(daemon, bench, clock, journal, gate)
        made.append((rig, own_bench))
        return rig

    yield make
    for rig, own_bench in made:
        rig.gate.set()
        await rig.daemon.close()
        rig.journal.close()
        if own_bench:
            await rig.bench.close()


def weekly(program: str, **kw: Any) -> dict[str, Any]:
    return {**AT_2130, "program": program, **kw}


# --- the scheduler -------------------------------------------------------------------


async def test_scheduled_program_runs_at_its_time_unattended_and_is_journaled(
    make_rig: MakeRig, profiles: dict[str, Profile]
) -> None:
    rig = await make_rig(profiles["ems-v2"], schedules=[weekly("warm2")])
    assert await rig.daemon.check_schedules() == []  # 21:00: the daemon starts looking
    rig.clock.set_wall(BASE_WALL + 20 * MIN)
    assert await rig.daemon.check_schedules() == []  # 21:20: nothing due yet
    assert not any(s.running for s in rig.bench.log.samples)
    rig.clock.set_wall(BASE_WALL + 30 * MIN + timedelta(seconds=5))
    (runner,) = await rig.daemon.check_schedules()  # 21:30:05: due, 5 s late
    assert runner.unattended and runner.source == "schedule"
    result = await asyncio.wait_for(rig.daemon.owner.wait_program(rig.managed), 30)
    assert result is not None and result.completed, result
    # the device: nothing before 21:30, then each step at its second, heat held at 1
    start = runner.started_at
    assert start is not None
    assert start == pytest.approx(1000 + 30 * 60 + 5, abs=0.5)
    assert not any(s.running for s in rig.bench.log.samples if s.t < start)
    check_device_followed(rig.bench.log, rig.managed.governor, runner)
    assert max(s.heat for s in rig.bench.log.samples) == 1  # the program asked for 2
    # the journal
    (row,) = rig.journal.history(1, include_simulated=True)
    assert (row.source, row.program, row.end_reason, row.peak_heat, row.steps_run) == (
        "schedule", "warm2", "completed", 1, 3,
    )
    assert abs(row.started_at - (BASE_WALL + 30 * MIN)) <= timedelta(seconds=6)
    assert row.duration_s == pytest.approx(4 * 60, abs=1)
    # the same start never runs twice
    assert await rig.daemon.check_schedules() == []


async def test_missed_start_30_min_late_is_skipped_and_recorded(
    make_rig: MakeRig, profiles: dict[str, Profile]
) -> None:
    rig = await make_rig(profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")])
    await rig.daemon.check_schedules()  # 21:00
    rig.clock.set_wall(BASE_WALL + 60 * MIN)  # 22:00: the machine slept through 21:30
    assert await rig.daemon.check_schedules() == []
    (row,) = rig.journal.history(1, include_simulated=True)
    assert (row.source, row.program, row.end_reason) == ("schedule", "quick-relax", "skipped")
    assert row.started_at == BASE_WALL + 30 * MIN
    assert row.note is not None and "30 min late" in row.note
    assert not any(s.running for s in rig.bench.log.samples)


async def test_start_within_the_grace_still_runs(
    make_rig: MakeRig, profiles: dict[str, Profile]
) -> None:
    rig = await make_rig(profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")])
    await rig.daemon.check_schedules()
    rig.clock.set_wall(BASE_WALL + 38 * MIN)  # 8 min late; the grace is 10
    (runner,) = await rig.daemon.check_schedules()
    result = await asyncio.wait_for(rig.daemon.owner.wait_program(rig.managed), 30)
    assert result is not None and result.completed
    assert runner.started_at == pytest.approx(1000 + 38 * 60, abs=0.5)


async def test_starts_missed_while_the_daemon_was_down_are_recorded(
    make_rig: MakeRig, profiles: dict[str, Profile], tmp_path: Path
) -> None:
    clock = FakeClock()
    bench = await virtual_bench(profiles["shiatsu-aa55"], clock)
    try:
        first = await make_rig(
            profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")], clock=clock, bench=bench
        )
        await first.daemon.check_schedules()  # 21:00, then the daemon goes down
        await first.daemon.close()
        clock.set_wall(BASE_WALL + timedelta(days=2, minutes=45))  # back two days later
        second = await make_rig(
            profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")], clock=clock, bench=bench
        )
        assert await second.daemon.check_schedules() == []
        rows = second.journal.history(3, include_simulated=True)
        skipped = [r for r in rows if r.end_reason == "skipped"]
        assert [r.started_at for r in skipped] == [
            BASE_WALL + timedelta(days=d, minutes=30) for d in (0, 1, 2)
        ]
    finally:
        await bench.close()


async def test_cooldown_refuses_a_scheduled_start(
    make_rig: MakeRig, profiles: dict[str, Profile]
) -> None:
    rig = await make_rig(profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")])
    key = rig.key
    row = rig.journal.start_session(key, source="manual", at=BASE_WALL)
    rig.journal.end_session(row, "stopped", at=BASE_WALL + 20 * MIN)  # ended 21:20
    await rig.daemon.check_schedules()
    rig.clock.set_wall(BASE_WALL + 30 * MIN + timedelta(seconds=5))
    assert await rig.daemon.check_schedules() == []
    last = rig.journal.history(1, include_simulated=True)[-1]
    assert (last.source, last.end_reason) == ("schedule", "refused")
    assert last.note is not None and "cooldown" in last.note
    assert not any(s.running for s in rig.bench.log.samples)


async def test_night_limit_refuses_a_scheduled_start(
    make_rig: MakeRig, profiles: dict[str, Profile]
) -> None:
    rig = await make_rig(
        profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")],
        caps={"cooldown_minutes": 0, "max_sessions_per_night": 1},
    )
    # A program run by hand earlier counts toward the night's program starts (a
    # manual session would not: it has its own budget).
    row = rig.journal.start_session(
        rig.key, source="program", program="no-heat", at=BASE_WALL - 60 * MIN
    )
    rig.journal.end_session(row, "completed", at=BASE_WALL - 50 * MIN)
    await rig.daemon.check_schedules()
    rig.clock.set_wall(BASE_WALL + 30 * MIN + timedelta(seconds=5))
    assert await rig.daemon.check_schedules() == []
    last = rig.journal.history(1, include_simulated=True)[-1]
    assert last.end_reason == "refused" and "night_limit" in (last.note or "")


# --- crash recovery ------------------------------------------------------------------


async def test_start_turns_off_what_a_crashed_run_left_on(
    make_rig: MakeRig, profiles: dict[str, Profile], tmp_path: Path
) -> None:
    profile = profiles["shiatsu-aa55"]
    clock = FakeClock()
    bench = await virtual_bench(profile, clock)
    try:
        # A run that died mid-session: the massager on with heat, a marker, a journal row.
        crashed = DeviceSession(profile, bench.radio, scan_timeout=5.0)
        await crashed.connect()
        await crashed.apply(Target(running=True, intensity=2, heat=1))
        address = crashed.state.address
        await crashed.close()
        assert bench.massager.model.running and bench.massager.model.effective_heat == 1
        child = await asyncio.create_subprocess_exec("true")
        await child.wait()  # reaped: its pid names no process now
        markers = MarkerStore(tmp_path / "active")
        markers.write(address, profile.id, "cli")
        marker_file = next((tmp_path / "active").glob("*.json"))
        data = json.loads(marker_file.read_text())
        marker_file.write_text(json.dumps({**data, "pid": child.pid}))  # that run is dead
        assert [m.pid for m in markers.orphaned()] == [child.pid]
        journal = Journal(tmp_path / "journal.sqlite3", clock=clock.wall)
        row = journal.start_session(address, source="manual", profile_id=profile.id,
                                    pid=child.pid)
        journal.close()

        rig = await make_rig(profile, markers=markers, clock=clock, bench=bench)
        model = bench.massager.model
        assert not model.running and model.effective_heat == 0
        assert markers.all() == []
        record = rig.journal.get(row)
        assert (record.end_reason, record.ended_by) == (
            "recovered_after_crash", "recovered_after_crash",
        )
    finally:
        await bench.close()


# --- the control socket ----------------------------------------------------------------


async def test_socket_is_private_and_answers_status_run_and_stop(
    make_rig: MakeRig, profiles: dict[str, Profile]
) -> None:
    rig = await make_rig(profiles["shiatsu-aa55"], caps={"cooldown_minutes": 0})
    path = rig.daemon.server.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    status = await ask(path, {"kind": "status"})
    assert status["ok"] and status["daemon"] is True
    (view,) = status["devices"]
    assert view["link"] == "connected" and view["program"] is None
    rig.gate.clear()  # the program parks at its first sleep
    started = await ask(path, {"kind": "run", "program": "quick-relax"})
    assert started["ok"] and started["started"] == "quick-relax"
    running = await ask(path, {"kind": "status"})
    program = running["devices"][0]["program"]
    assert program["step"] == 1 and program["program"] == "quick-relax"
    busy = await ask(path, {"kind": "set", "intensity": 4})
    assert busy["ok"] is False and busy["reason"] == "busy"
    assert rig.bench.massager.model.running
    stopped = await ask(path, {"kind": "stop"})
    assert stopped["ok"] and stopped["devices"][0]["reported"]["power"] is False
    assert not rig.bench.massager.model.running
    assert stopped["devices"][0]["last_run"]["end_reason"] == "stopped"
    (row,) = rig.journal.history(1, include_simulated=True)
    assert (row.source, row.program, row.end_reason) == ("program", "quick-relax", "stopped")
    schedules = await ask(path, {"kind": "schedules"})
    assert schedules["ok"] and schedules["schedules"] == []


async def test_malformed_requests_get_error_replies_and_the_daemon_keeps_serving(
    make_rig: MakeRig, profiles: dict[str, Profile]
) -> None:
    rig = await make_rig(profiles["shiatsu-aa55"])
    path = rig.daemon.server.path
    reader, writer = await asyncio.open_unix_connection(str(path))
    bad = [
        b"{not json\n",
        b"\xff\xfe\x00garbage\n",
        b"[1, 2, 3]\n",
        b'{"no": "kind"}\n',
        b'{"kind": "launch-rockets"}\n',
        b'{"kind": "set", "intensity": "high"}\n',
        b'{"kind": "set", "heat": true}\n',
        b'{"kind": "set", "intensity": NaN}\n',
        b'{"kind": "set", "heat": Infinity}\n',
        b'{"kind": "set", "intensity": 2.5}\n',
        b'{"kind": "set", "intensity": 1e400}\n',
        b'{"kind": "set", "intensity": -1}\n',
        b'{"kind": "set"}\n',
        b'{"kind": "set", "intensity": 1, "extra": 1}\n',
        b'{"kind": "stop", "source": "nobody"}\n',
        b'{"kind": "stop", "v": 2}\n',
        b'{"kind": "status", "device": "nobody"}\n',
        b'{"kind": "run"}\n',
        b'{"kind": "run", "program": "no-such-program"}\n',
    ]
    try:
        for line in bad:
            writer.write(line)
            await writer.drain()
            reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
            assert reply["ok"] is False, (line, reply)
            assert reply["message"], reply
            assert reply["exit_code"] in (2, 3), (line, reply)
        writer.write(b'{"kind": "status"}\n')  # the same connection still works
        await writer.drain()
        assert json.loads(await reader.readline())["ok"] is True
    finally:
        writer.close()
    # a request past the size limit closes that connection, with an error reply
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(b'{"kind": "' + b"x" * 70_000 + b'"}\n')
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert reply["ok"] is False and "too long" in reply["message"]
    finally:
        writer.close()
    assert (await ask(path, {"kind": "status"}))["ok"] is True
    assert not rig.bench.massager.model.running
    assert rig.managed.governor.desired.running is False


def test_peer_credentials_of_a_unix_socket() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert peer_uid(a) == os.getuid()
    me = os.getuid()
    assert peer_allowed(me, me)
    assert not peer_allowed(me + 1, me)
    assert not peer_allowed(0, 1000)  # not even root gets in
    assert peer_allowed(None, me)  # no SO_PEERCRED: the 0600 socket is the guard


async def test_a_connection_from_another_uid_is_rejected(sock_dir: Path) -> None:
    handled: list[Any] = []

    async def handler(request: Any) -> Reply:
        handled.append(request)
        return Reply()

    hub = StateHub()
    # The server believes it belongs to another user: our connection is a stranger's.
    server = ControlServer(sock_dir / "s.sock", handler, hub.subscribe,
                           own_uid=os.getuid() + 1)
    await server.start()
    try:
        reply = await ask(server.path, {"kind": "stop"})
        assert reply["ok"] is False and reply["error"] == "forbidden"
        assert handled == [] and server.rejected == 1
    finally:
        await server.close()
    mine = ControlServer(sock_dir / "t.sock", handler, hub.subscribe)
    await mine.start()
    try:
        assert (await ask(mine.path, {"kind": "stop"}))["ok"] is True
        assert handled and handled[0].kind == "stop"
    finally:
        await mine.close()


# --- sd_notify -----------------------------------------------------------------------


def test_sd_notify_sends_datagrams_to_notify_socket(sock_dir: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = sock_dir / "notify"
    listener.bind(str(path))
    listener.settimeout(5)
    with listener:
        assert notify("READY=1", env={"NOTIFY_SOCKET": str(path)})
        assert listener.recv(100) == b"READY=1"
        assert notify("WATCHDOG=1", env={"NOTIFY_SOCKET": str(path)})
        assert listener.recv(100) == b"WATCHDOG=1"
    assert notify("READY=1", env={}) is False  # not run by systemd: nothing to do


def test_sd_notify_abstract_socket() -> None:
    name = f"footctl-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(5)
    with listener:
        assert notify("READY=1", env={"NOTIFY_SOCKET": "@" + name})
        assert listener.recv(100) == b"READY=1"


def test_watchdog_period_is_half_of_watchdog_usec() -> None:
    me = str(os.getpid())
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 15.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_period({}) is None


async def test_a_long_ramp_replies_with_the_state_so_far_and_goes_on(
    make_rig: MakeRig, profiles: dict[str, Profile]
) -> None:
    rig = await make_rig(profiles["shiatsu-aa55"])
    rig.daemon.owner.reply_budget_s = 0.2
    rig.gate.clear()  # the ramp's next step waits until the test lets it go
    reply = await asyncio.wait_for(ask(rig.daemon.server.path, {"kind": "set", "intensity": 4}), 10)
    assert reply["ok"] and reply["devices"][0]["reported"]["intensity"] < 4
    assert any("ramping to intensity 4" in n for n in reply["notes"])
    model = rig.bench.massager.model
    assert model.running and model.intensity < 4
    rig.gate.set()
    for _ in range(200):
        if model.intensity == 4:
            break
        await asyncio.sleep(0.01)
    assert model.intensity == 4  # the ramp went on after the reply


async def test_the_daemon_logs_what_would_go_wrong_with_the_schedules_as_it_starts(
    make_rig: MakeRig, profiles: dict[str, Profile], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="footctl.daemon")
    await make_rig(
        profiles["shiatsu-aa55"],
        schedules=[weekly("quick-relax"), weekly("no-such-program")],
        caps={"cooldown_minutes": 30},
    )
    found = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "footctl.daemon"]
    # the unknown program: an error, named at start instead of at 21:30
    assert any(
        level == logging.ERROR and "schedule 1" in text and "no-such-program" in text
        for level, text in found
    ), found
