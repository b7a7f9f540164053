"""The daemon's log of scheduled starts: journald shows why the massager came on, how
the program ended, and why a start did not run (on the daemon rig of test_daemon)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from footctl.commands.service import SCHEDULE_LOGGERS, log_schedule_events
from footctl.device.profile.schema import Profile
from footctl.scheduler import Controls, write_controls
from program_rig import BASE_WALL
from test_daemon import MIN, MakeRig, make_rig, sock_dir, weekly

__all__ = ["make_rig", "sock_dir"]  # fixtures, used by name


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_a_scheduled_start_and_its_end_are_logged_at_info(
    make_rig: MakeRig, profiles: dict[str, Profile], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="footctl")
    rig = await make_rig(profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")])
    await rig.daemon.check_schedules()  # 21:00
    rig.clock.set_wall(BASE_WALL + 30 * MIN + timedelta(seconds=5))
    (_runner,) = await rig.daemon.check_schedules()
    result = await asyncio.wait_for(rig.daemon.owner.wait_program(rig.managed), 30)
    assert result is not None and result.completed
    for _ in range(20):  # the end is logged by a task that waits for the program
        if any("ended on" in m for m in messages(caplog, logging.INFO)):
            break
        await asyncio.sleep(0)
    info = messages(caplog, logging.INFO)
    name = rig.managed.name
    assert any(m.startswith("schedule 0 (quick-relax): due at ")
               and m.endswith(f"starting it on {name} (unattended)") for m in info), info
    assert f"schedule 0 (quick-relax): started on {name}" in info
    ended = [m for m in info if m.startswith(f"schedule 0 (quick-relax): ended on {name}: ")]
    assert ended and "completed after" in ended[0], info


async def test_a_held_start_is_logged_with_its_reason(
    make_rig: MakeRig, profiles: dict[str, Profile], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="footctl")
    rig = await make_rig(profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")])
    await rig.daemon.check_schedules()
    assert rig.daemon.scheduler.state_path is not None
    write_controls(rig.daemon.scheduler.state_path, Controls(paused=True))
    rig.clock.set_wall(BASE_WALL + 30 * MIN + timedelta(seconds=5))
    assert await rig.daemon.check_schedules() == []
    info = messages(caplog, logging.INFO)
    assert any("schedule 0 (quick-relax): start at" in m and "not run: schedules paused" in m
               for m in info), info


async def test_a_refused_start_is_logged_with_its_reason(
    make_rig: MakeRig, profiles: dict[str, Profile], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="footctl")
    rig = await make_rig(profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")])
    row = rig.journal.start_session(rig.key, source="manual", at=BASE_WALL)
    rig.journal.end_session(row, "stopped", at=BASE_WALL + 20 * MIN)
    await rig.daemon.check_schedules()
    rig.clock.set_wall(BASE_WALL + 30 * MIN + timedelta(seconds=5))
    assert await rig.daemon.check_schedules() == []
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any("starting it on" in m for m in logged)
    assert any(m.startswith("schedule 0 (quick-relax): refused: cooldown") for m in logged), logged


def test_the_daemon_lets_schedule_info_through_at_the_default_level() -> None:
    loggers = [logging.getLogger(n) for n in SCHEDULE_LOGGERS]
    before = [lg.level for lg in loggers]
    root = logging.getLogger()
    root_level = root.level
    try:
        root.setLevel(logging.WARNING)  # the CLI's default, without -v
        for lg in loggers:
            lg.setLevel(logging.NOTSET)
        assert not loggers[0].isEnabledFor(logging.INFO)
        log_schedule_events()
        assert all(lg.isEnabledFor(logging.INFO) for lg in loggers)
    finally:
        root.setLevel(root_level)
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)
