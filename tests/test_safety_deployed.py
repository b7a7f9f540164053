"""Regression tests for issue #9, "Safety as deployed": what probing footctl from outside,
as deployed (heartbeat on, leases, devices that power cycle, any value at the edge),
found past the stateful test. One test (or a few) per finding; each failed on the code
before the fix.

Same rig as tests/test_safety_regressions.py: the real DeviceSession, SafetyGovernor and
codec over the scripted fake link to a MassagerModel, on a virtual-time event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from footctl.config import Config
from footctl.control.api import ErrorReply, ReleaseRequest, Reply, error_reply, parse_request
from footctl.control.owner import Owner
from footctl.device.session import FRAMES_KEPT
from footctl.errors import SafetyRefused, UsageError
from footctl.journal import Journal
from footctl.journal_hooks import JournalHooks
from footctl.programs.model import Program
from footctl.programs.runner import assess
from footctl.safety.dose import HEAT_COOLDOWN_S, HeatDose
from footctl.safety.governor import ECHO_WINDOW_S, EVENTS_KEPT, Request, SafetyGovernor
from footctl.safety.limits import FLOOR_COOLDOWN_S, FLOOR_RAMP_STEP_S, Caps, Limits
from footctl.safety.markers import MarkerStore
from footctl.safety.watchdog import everything_off
from footctl.schedule import may_start
from footctl.state import Command, DeviceState
from footctl.virtual.model import FrameRecord, MassagerModel
from safety_harness import (
    FakeLinks,
    FakeMassager,
    VirtualTimeLoop,
    build_owner,
    without_auto_off,
)
from test_safety_regressions import ABSOLUTE, KEYS, PROFILES, Rig, make_rig, virtual_time

HEAT_ON_WRITES = {("heat", 1), ("power", 1), ("press_power", None), ("press_heat", None)}


def on_writes(rig: Rig, since: int) -> list[tuple[str | None, int | None]]:
    """Frames since ``since`` that switch something on (power, heat, keys)."""
    return [w for w in rig.writes(since) if w in HEAT_ON_WRITES]


def start_watch(governor: SafetyGovernor) -> asyncio.Task[None]:
    """The governor's watch loop as deployed (daemon, guardian): heartbeat on."""
    return asyncio.get_running_loop().create_task(governor.watch(heartbeat=True))


# --- 1. a massager that comes back off is never switched back on --------------------------


@pytest.mark.parametrize("profile_id", [ABSOLUTE, KEYS])
@virtual_time
async def test_massager_that_reboots_and_reconnects_is_not_driven_on_again(
    profile_id: str,
) -> None:
    """Protects (issue #9, 1): the daemon runs a session with heat 1; the massager
    reboots (a power cut drops the link too) and the session reconnects at once. The
    massager is back *off*: the session ends (``device_off``) and nothing switches it on.
    Before, the session reconnected in 0.1 s and wrote power 1, heat 1."""
    rig = await make_rig(profile_id)
    governor = rig.governor()
    start_watch(governor)
    await governor.submit(Request(source="daemon", intensity=1, heat=1))
    assert rig.model.running and rig.model.effective_heat == 1
    before = len(rig.received)

    rig.device.drop()  # the power cut takes the link down ...
    rig.model.reset()  # ... and the massager forgets its state
    rig.device.back()  # it is back (off) at once
    await asyncio.sleep(5)

    assert on_writes(rig, before) == [], rig.writes(before)
    assert not rig.model.running and rig.model.effective_heat == 0
    assert governor.ended.is_set() and governor.end_reason == "device_off"
    await asyncio.sleep(60)
    assert not rig.model.running


# --- 2. after a heat fault the massager is still supervised --------------------------------


@virtual_time
async def test_heat_fault_rearms_once_the_heater_is_clean_again() -> None:
    """Protects (issue #9, 2): after an ``unexpected_heat`` session ended, the fault stayed
    set, so a massager that later came on by itself with heat was ignored (no writes, no
    timers). Now the fault latches only until the heater reports clean; a later heat
    fault is flagged and switched off again."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor()
    start_watch(governor)
    await governor.submit(Request(source="cli", intensity=1))
    rig.model.set_fault("rogue_heat", 1)
    await asyncio.sleep(15)
    assert governor.fault == "unexpected_heat" and governor.ended.is_set()
    rig.model.set_fault("rogue_heat", None)  # repaired (or it cooled off)
    await asyncio.sleep(5)
    before = len(rig.received)

    rig.model.set_fault("rogue_heat", 1)  # later, it heats on its own again
    await asyncio.sleep(15)

    assert rig.writes(before), "the second heat fault was ignored: nothing was written"
    assert not rig.model.running
    assert not rig.model.heat  # the commanded heat is off (the stuck heater is the device's)


@virtual_time
async def test_massager_coming_on_by_itself_after_a_session_is_capped() -> None:
    """Protects (issue #9, 2): after a session had ended, a massager switched on by its
    own buttons started no timer at all and ran past every cap."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor(session_s=120)
    start_watch(governor)
    await governor.submit(Request(source="cli", intensity=1))
    await governor.stop()
    assert governor.ended.is_set()
    await asyncio.sleep(ECHO_WINDOW_S + 1)  # (within it, a report of running gets the off)

    rig.model.apply(Command("power", 1))  # someone pressed its power button
    rig.device.notify_soon()
    await asyncio.sleep(1)
    assert governor.timers().session_left_s is not None
    await asyncio.sleep(121)
    assert not rig.model.running


@virtual_time
async def test_a_report_of_running_right_after_a_stop_gets_the_off_again() -> None:
    """Protects: a device's notifications of earlier writes can trail the write
    responses that confirmed a stop; one reporting running (with heat) started an "own
    button" session of its own (a phantom journal row after every stop of a running
    program) and flagged unexpected heat. Within ECHO_WINDOW_S of a confirmed stop such
    a report gets the off written again instead: nothing runs afterwards, no new
    session, no fault. (A press of the massager's own button in that window is switched
    off too: the safe side.)"""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor(session_s=120)
    start_watch(governor)
    await governor.submit(Request(source="cli", intensity=1))
    await governor.stop()
    before = len(rig.received)
    rig.model.apply(Command("power", 1))  # an echo, or a late write: it reports running
    rig.device.notify_soon()
    await asyncio.sleep(1)
    assert rig.writes(before), "nothing was written after a report of running"
    assert not rig.model.running
    assert governor.timers().session_left_s is None and governor.fault is None
    await asyncio.sleep(ECHO_WINDOW_S + 1)
    rig.model.apply(Command("power", 1))  # later: its own button, supervised as ever
    rig.device.notify_soon()
    await asyncio.sleep(1)
    assert governor.timers().session_left_s is not None


# --- 3. the heat dose ------------------------------------------------------------------------


@virtual_time
async def test_short_gap_does_not_reset_the_heat_cap() -> None:
    """Protects (issue #9, 3): 14:55 of heat, 5 s off, then heat again ran 5 more
    minutes under a 15 min cap (any heat-0 request restarted the heat timer). The heat
    dose counts across the gap: heat is off within one pass of 15:00 of heat in all."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor()
    start_watch(governor)
    await governor.submit(Request(source="program", intensity=1, heat=1))
    await asyncio.sleep(14 * 60 + 55)
    await governor.submit(Request(source="program", heat=0))
    await asyncio.sleep(5)
    await governor.submit(Request(source="program", heat=1))
    heat_again = rig.clock()
    for _ in range(1200):  # (virtual time: 0.25 s polls cost nothing)
        if not rig.model.heat:
            break
        await asyncio.sleep(0.25)

    assert rig.clock() - heat_again <= 5 + 1.0, "heat ran on past the dose cap"
    with pytest.raises(SafetyRefused) as info:
        await governor.submit(Request(source="program", heat=1))
    assert info.value.reason == "heat_cap_reached"


@virtual_time
async def test_heat_returns_only_after_a_cool_down() -> None:
    """The dose resets after HEAT_COOLDOWN_S without heat, not before."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor(heat_s=60)
    start_watch(governor)
    await governor.submit(Request(source="cli", intensity=1, heat=1))
    await asyncio.sleep(61)
    assert not rig.model.heat
    await asyncio.sleep(HEAT_COOLDOWN_S - 60)
    with pytest.raises(SafetyRefused):
        await governor.submit(Request(source="cli", heat=1))
    await asyncio.sleep(61)
    await governor.submit(Request(source="cli", heat=1))
    assert rig.model.heat == 1


def test_program_check_refuses_a_short_gap_between_heated_steps() -> None:
    """Protects (issue #9, 3): ``program check --scheduled`` passed 14:55 heat, 0:05 off,
    5:00 heat under a 15 min cap. It now counts the dose as the governor does."""
    program = Program.model_validate(
        {
            "name": "gap",
            "steps": [
                {"duration": 895, "mode": "kneading", "intensity": 1, "heat": 1},
                {"duration": 5, "mode": "kneading", "intensity": 1},
                {"duration": 300, "mode": "kneading", "intensity": 1, "heat": 1},
            ],
        }
    )
    profile = PROFILES[ABSOLUTE]
    limits = Limits.compute(profile, Caps(session_s=45 * 60))
    assessment = assess(program, profile, limits, unattended=True)
    refused = [f for f in assessment.refused if f.field == "heat" and f.step == 3]
    assert refused, assessment
    with pytest.raises(SafetyRefused):
        assessment.raise_if_refused()


def test_hotter_levels_weigh_more_and_the_window_forgets() -> None:
    limits = Limits.compute(PROFILES["ems-v2"], Caps())
    assert limits.heat_weights == (0.0, 1.0, 2.0, 4.0)  # 38, 41, 44 C: 3 C doubles
    d = HeatDose().heating(0.0, limits.heat_weights[2])
    assert d.left(0.0, 900.0) == pytest.approx(450.0)  # level 2: half the time
    # Heat 10 min every 20 min (gaps under the cool-down) adds up: no reset.
    d = HeatDose()
    for k in range(3):
        d = d.heating(k * 1200.0, 1.0).heating(k * 1200.0 + 600.0, 0.0)
    assert d.dose(3000.0) == pytest.approx(1800.0)
    # ... an hour later only the window's part counts; after a cool-down, nothing.
    assert d.dose(3000.0 + HEAT_COOLDOWN_S) == 0.0


# --- 4. several expiries at once ---------------------------------------------------------


@virtual_time
async def test_heat_cap_and_lease_expiring_together_refuse_a_request() -> None:
    """Protects (issue #9, 4): with the heat cap and a lease out together, only the heat
    cap counted: a request was accepted (and renewed the heartbeat)."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor(heat_s=60)
    await governor.submit(Request(source="mqtt", intensity=1, heat=1))
    governor.lease("mqtt", 60)
    await asyncio.sleep(61)  # no watch loop: both ran out unnoticed
    before = len(rig.received)

    with pytest.raises(SafetyRefused) as info:
        await governor.submit(Request(source="mqtt", intensity=2))
    assert info.value.reason == "heartbeat_missed"
    assert rig.writes(before) == []


@virtual_time
async def test_one_enforce_pass_acts_on_every_expired_limit() -> None:
    """Protects (issue #9, 4): one pass of ``enforce`` after the heat cap and the lease
    both ran out switches everything off, not just the heat."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor(heat_s=60)
    await governor.submit(Request(source="mqtt", intensity=1, heat=1))
    governor.lease("mqtt", 60)
    await asyncio.sleep(61)
    await governor.enforce()
    assert not rig.model.running and not rig.model.heat
    assert governor.end_reason == "heartbeat_missed"


@virtual_time
async def test_loop_stall_with_heat_on_switches_everything_off() -> None:
    """Protects (issue #9, 4): after a 90 s loop stall with heat on (the heat cap ran out
    in it too), massage was still running 600 s later: the heat cap was acted on, the
    missed heartbeat was not, and the watch loop then renewed the heartbeat."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor(session_s=45 * 60)
    start_watch(governor)
    await governor.submit(Request(source="daemon", intensity=1, heat=1))
    await asyncio.sleep(14 * 60)
    rig.clock.advance(90)  # the whole loop stalls 90 s (SIGSTOP, a hung call)
    await asyncio.sleep(2)
    assert not rig.model.running, "massage ran on after the stall"
    assert governor.end_reason == "heartbeat_missed"
    await asyncio.sleep(600)
    assert not rig.model.running


# --- 5. the watchdog's grace, with real governors ------------------------------------------


@virtual_time
async def test_watchdog_everything_off_stops_every_live_governor() -> None:
    """What the watchdog asks a stalled loop to do before the process ends (issue #9, 5):
    everything off on every massager of the process."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor()
    await governor.submit(Request(source="daemon", intensity=1, heat=1))
    await everything_off()
    assert not rig.model.running and not rig.model.heat
    assert governor.ended.is_set()


# --- 6. limits a config could loosen -----------------------------------------------------------


@virtual_time
async def test_governor_on_a_real_radio_keeps_the_design_floors() -> None:
    """Protects (issue #9, 6): ``intensity_step_seconds = 0`` disabled the ramp,
    ``cooldown_minutes = 0`` the cooldown, ``unattended_heat_level`` had no ceiling."""
    rig = await make_rig("ems-v2")
    governor = rig.governor(ramp_step_s=0, cooldown_s=0, unattended_heat_level=3)
    assert governor.limits.ramp_step_s >= FLOOR_RAMP_STEP_S
    assert governor.limits.cooldown_s >= FLOOR_COOLDOWN_S
    decision = governor.decide(Request(source="schedule", heat=2, unattended=True))
    assert decision.target.heat == 1
    start = len(rig.received)
    await governor.submit(Request(source="cli", intensity=3))
    rises = [r.time for r in rig.received[start:] if r.command == "intensity"]
    assert len(rises) == 4  # power-on at the lowest level (0), then 1, 2, 3
    gaps = [b - a for a, b in itertools.pairwise(rises)]
    assert min(gaps) >= FLOOR_RAMP_STEP_S - 1e-6, gaps


# --- 7. smaller ones ------------------------------------------------------------------


class _BrokenMarkers(MarkerStore):
    """A marker store whose clear fails (a read-only or full disk)."""

    def clear(self, address: str) -> None:
        raise OSError(28, "No space left on device")


@virtual_time
async def test_watch_survives_an_oserror_and_keeps_enforcing(tmp_path: Path) -> None:
    """Protects (issue #9, 7): ``watch()`` caught only FootctlError; an OSError from the
    marker store ended cap enforcement silently."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor(_BrokenMarkers(tmp_path / "active"), session_s=120)
    watch = start_watch(governor)
    await governor.submit(Request(source="cli", intensity=1))
    await asyncio.sleep(121)
    assert not rig.model.running
    assert not watch.done(), "the watch loop died"
    await asyncio.sleep(HEAT_COOLDOWN_S)
    await governor.submit(Request(source="cli", intensity=1))
    await asyncio.sleep(121)
    assert not rig.model.running, "the second session's cap was not enforced"


@virtual_time
async def test_frames_written_stays_bounded() -> None:
    """Protects (issue #9, 7): ``frames_written`` grew by every keepalive frame."""
    rig = await make_rig(ABSOLUTE)
    for _ in range(FRAMES_KEPT + 500):
        await rig.session._query()
    assert len(rig.session.frames_written) == FRAMES_KEPT


@virtual_time
async def test_governor_events_stay_bounded() -> None:
    """Protects: the governor's event log grew by every request for as long as the
    daemon ran (found reviewing issue #8's benchmark path)."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor(None, session_s=3600)
    for i in range(EVENTS_KEPT + 100):
        await governor.submit(Request(source="cli", intensity=1 + i % 2))
    assert len(governor.events) == EVENTS_KEPT
    assert "cli" in governor.events[-1][1]  # the newest are kept


@virtual_time
async def test_a_cooldown_refusal_says_the_same_from_the_governor_and_may_start() -> None:
    """A new user's first hour: 20 s after a session ended the governor said "ended 0
    min ago", and `footctl run` (may_start) put it another way. One wording now."""
    now = datetime(2026, 1, 10, 22, 0, tzinfo=UTC)
    ended = now - timedelta(seconds=20)
    rig = await make_rig(ABSOLUTE)
    limits = Limits.compute(rig.session.profile, Caps(cooldown_s=30 * 60))
    governor = SafetyGovernor(
        rig.session, limits, clock=rig.clock, sleep=asyncio.sleep,
        last_session_end=lambda _a: ended.timestamp(), wall_clock=now.timestamp,
    )
    check = may_start(now, ended, 30)
    with pytest.raises(SafetyRefused) as info:
        await governor.submit(Request(source="cli", intensity=1))
    said = f"{info.value}; {info.value.advice}"
    for text in (said, check.message):
        assert "ended less than a minute ago" in text, text
        assert "the feet rest 30 min between sessions" in text, text
        assert "try again in 30 min" in text, text


@virtual_time
async def test_cooldown_check_and_may_start_agree_when_the_wall_clock_moved_back() -> None:
    """Protects (issue #9, 7): with the last end in the future (the wall clock moved
    back), the governor allowed a new session and may_start refused it (for longer than
    the cooldown). Both now count it as just ended."""
    now = datetime(2026, 1, 10, 22, 0, tzinfo=UTC)
    ended = now + timedelta(minutes=10)
    rig = await make_rig(ABSOLUTE)
    limits = Limits.compute(rig.session.profile, Caps(cooldown_s=30 * 60))
    governor = SafetyGovernor(
        rig.session,
        limits,
        clock=rig.clock,
        sleep=asyncio.sleep,
        last_session_end=lambda _a: ended.timestamp(),
        wall_clock=now.timestamp,
    )
    check = may_start(now, ended, 30)
    with pytest.raises(SafetyRefused) as info:
        await governor.submit(Request(source="cli", intensity=1))
    assert info.value.reason == "cooldown" == check.reason
    assert check.wait_s == 30 * 60
    assert "30 min" in (info.value.advice or "")


@virtual_time
async def test_journal_durations_come_from_the_monotonic_clock(tmp_path: Path) -> None:
    """Protects (issue #9, 7): the journal took a session's length from the wall clock
    (moved back an hour mid-session, the length came out negative)."""
    wall = [datetime(2026, 1, 10, 22, 0, tzinfo=UTC)]
    journal = Journal(tmp_path / "j.sqlite3", clock=lambda: wall[0])
    rig = await make_rig(ABSOLUTE)
    hooks = JournalHooks(journal)
    governor = rig.governor()
    hooks.attach(governor)
    await governor.submit(Request(source="cli", intensity=1))
    await asyncio.sleep(300)
    wall[0] -= timedelta(hours=1)  # NTP, or a person, sets the clock back
    await governor.stop()
    (record,) = journal.history(days=10_000, now=wall[0] + timedelta(days=1))
    assert record.duration_s == pytest.approx(300, abs=1)


# --- the open soak finding: a heat fault mid-apply ----------------------------------------------


@virtual_time
async def test_over_temperature_mid_apply_preempts_the_rest_of_the_apply() -> None:
    """Protects (open soak finding): an over-temperature report that arrives while a
    request's apply is half-way: the apply's remaining writes (heat 1 among them) went
    out before the heat-off. The flagged fault now preempts the apply as a stop does."""
    rig = await make_rig(ABSOLUTE, running=True, intensity=1)
    governor = rig.governor()
    await governor.submit(Request(source="cli", intensity=1))
    await asyncio.sleep(10)  # the ramp allows the next step at once: one apply
    flagged_at: list[int] = []

    def overheat(record: FrameRecord) -> None:
        if record.command == "intensity" and not flagged_at:
            rig.model.set_fault("rogue_celsius", 60.0)
            rig.model.set_fault("rogue_heat", 1)
            rig.model.temperature = 60.0
            flagged_at.append(len(rig.received))

    rig.device.frame_listeners.append(overheat)
    with pytest.raises((SafetyRefused, UsageError)):
        await governor.submit(Request(source="cli", intensity=2, heat=1))
    await asyncio.sleep(15)

    assert governor.fault == "over_temperature"
    after = [w for w in rig.writes(flagged_at[0]) if w == ("heat", 1)]
    assert after == [], rig.writes(flagged_at[0])
    assert not rig.model.running



# --- pinned examples of the stateful test as deployed --------------------------------------
# Violations tests/test_safety_stateful.py found on the way, replayed step by step on its
# machine (same rig, same invariants), so each stays fixed without a random search.

_CONFIG = {
    "session_min": 2.0,
    "heat_min": 1.0,
    "temp": 38.0,
    "int_cap": None,
    "heartbeat_s": 5.0,
    "ramp_s": 0.0,
    "unattended_heat_level": 0,
    "cooldown_min": 0.0,
    "no_heat": False,
    "clamp": False,
    "device_auto_off": 0,
}
_REQUEST = {
    "source": "cli",
    "intensity_typed": 1,
    "intensity": None,
    "heat_typed": 1,
    "heat": None,
    "mode": None,
    "zone": None,
    "device": None,
    "lease_s": None,
}


class _Draws:
    """Stands in for hypothesis' ``data``: each draw answers by its label."""

    def __init__(self, values: dict[str, object]) -> None:
        self.values = values

    def draw(self, _strategy: object, label: str | None = None) -> object:
        assert label is not None
        return self.values[label]


def _replay(
    profile_id: str,
    steps: list[tuple[str, dict[str, object]]],
    config: dict[str, object] | None = None,
) -> None:
    import test_safety_stateful as stateful
    from safety_harness import memoized_codec

    machine = stateful._machine(profile_id)()
    try:
        with memoized_codec():
            machine.setup(_Draws({**_CONFIG, **(config or {})}))  # type: ignore[arg-type]
            machine.promises_hold()
            for name, args in steps:
                if name == "request":
                    machine.request(_Draws({**_REQUEST, **args}))  # type: ignore[arg-type]
                else:
                    getattr(machine, name)(**args)
                machine.promises_hold()
    finally:
        machine.teardown()


def test_pinned_heat_fault_when_the_link_flaps_is_off_first_on_return() -> None:
    """A heat fault was being handled (its heat-off waiting for a confirmation) when the
    link flapped: on return the desired state was re-asserted instead of everything off."""
    _replay(
        "ems-v2",
        [
            ("device_reboot", {}),
            ("link_flap", {"gaps": []}),
            ("advance", {"seconds": 1.0}),
            ("device_reboot", {}),
            ("request", {}),
            ("heater_fault", {"celsius": None, "level": 1}),
            ("spurious_notification", {}),
            ("link_flap", {"gaps": []}),
        ],
    )


def test_pinned_own_button_while_the_heater_is_still_suspect_is_switched_off() -> None:
    """After an overheating fault the pad was still hot (heat off); someone switched the
    massager on by its button: it ran on, the fault latched and never acted on again."""
    _replay(
        "shiatsu-aa55",
        [
            ("crash", {}),
            ("device_reboot", {}),
            ("restart", {}),
            ("advance", {"seconds": 2.0}),
            ("heater_fault", {"celsius": 50.0, "level": 1}),
            ("link_flap", {"gaps": []}),
            ("loop_stall", {"seconds": 61.0}),
            ("heater_fault", {"celsius": None, "level": 0}),
            ("own_power_button", {}),
            ("advance", {"seconds": 12.0}),
        ],
    )


def test_pinned_keys_reconnect_during_a_request_does_not_skip_the_ramp() -> None:
    """A key-press massager's link returned while a request was in flight: the re-assert
    ran beside it with a step computed from the state before the request's press, and
    intensity rose twice within 0.05 s."""
    _replay(
        "shiatsu-keys",
        [
            ("request", {"intensity": 2}),
            ("link_drop", {}),
            ("link_return", {}),
            ("link_drop", {}),
            ("link_return", {}),
            ("request", {}),
        ],
    )


def test_pinned_a_program_step_never_supersedes_a_limit_being_acted_on() -> None:
    """The 10,000-example soak: a program with heat ran through a 61 s loop stall with
    the massager power-cycled meanwhile; the dead man switched everything off as the
    stall ended, and the program's next step, due at the same moment, superseded that
    off and drove the (rebooted) massager on again with heat. While the governor writes
    the off of a limit, a request is refused (``session_ending``)."""
    _replay(
        "ems-v2",
        [
            ("spurious_notification", {}),
            ("run_program", {"program": "quick-relax", "source": "program"}),
            ("power_cycle", {"away": 0.0}),
            ("loop_stall", {"seconds": 61.0}),
        ],
        {"session_min": 20.0, "heat_min": 15.0},
    )


def test_pinned_a_lease_that_ran_out_while_idle_never_stops_an_unseen_own_button_session() -> None:
    """The 10,000-example soak (shiatsu-keys): an MQTT lease renewed while the massager
    was idle ran out during a loop stall; its own button then switched it on while its
    reports were truncated, so the governor had no session yet (it had not seen it
    running). The stale lease, which guarded nothing, switched that session off as
    ``heartbeat_missed`` with every live lease held. A lease matters only to a session
    the governor supervises; one that ran out before is dropped when that starts."""
    _replay(
        "shiatsu-keys",
        [
            ("own_power_button", {}),
            ("heater_fault", {"celsius": None, "level": 1}),
            ("own_power_button", {}),
            ("advance", {"seconds": 0.05}),
            ("wall_clock_jump", {"hours": -2.0}),
            ("lease", {"release": False, "seconds": None, "source": "mqtt"}),
            ("loop_stall", {"seconds": 21.0}),
            ("notification_faults", {"garbage": False, "truncate": True}),
            ("own_power_button", {}),
            ("advance", {"seconds": 8.0}),
        ],
    )


def test_pinned_keys_a_stop_overtakes_a_heat_off_waiting_on_its_press() -> None:
    """The 10,000-example soak (shiatsu-keys): a heater stuck on, the heat-off pressed the
    heat key (the report never moves) and waited for its effect, holding the off lock,
    when a 601 s loop stall began; as the loop returned the session cap's stop waited
    behind that press's second wait and reached the massager 0.6 s late. A newer stop
    overtakes the wait of an older off's press."""
    _replay(
        "shiatsu-keys",
        [
            ("own_power_button", {}),
            ("heater_fault", {"celsius": None, "level": 1}),
            ("own_power_button", {}),
            ("own_power_button", {}),
            ("own_power_button", {}),
            ("own_power_button", {}),
            ("wall_clock_jump", {"hours": -2.0}),
            ("loop_stall", {"seconds": 3.0}),
            ("own_power_button", {}),
            ("loop_stall", {"seconds": 601.0}),
            ("advance", {"seconds": 1.0}),
        ],
    )


def test_pinned_a_set_claiming_source_program_never_passes_a_running_program() -> None:
    """The 10,000-example soak: during a scheduled program (unattended: no heat), a set
    whose source said "program" got past the owner's busy check (it let the sources
    "program" and "schedule" through, though a program's steps never come that way) and
    set attended heat 1 over the program. A set during a program is refused, whatever
    source it names."""
    _replay(
        "ems-v2",
        [
            ("lease", {"release": False, "seconds": None, "source": "mqtt"}),
            ("run_program", {"program": "quick-relax", "source": "schedule"}),
            ("request", {"source": "program", "intensity_typed": 1, "intensity": None,
                         "heat_typed": 1, "heat": 1}),
        ],
        {"session_min": 20.0, "heat_min": 15.0},
    )


def test_pinned_keys_a_lease_acted_on_is_not_acted_on_again_once_nothing_runs() -> None:
    """The 10,000-example soak, after the dead man was limited to supervised sessions: a
    key-press massager with its reports lost rebooted; the MQTT lease ran out and the dead
    man switched everything off (unconfirmed: the reports are lost), the link dropped and
    came back, and the same stale lease was acted on again as heartbeat_missed with
    nothing running and nothing asked for. The dead man acts while something runs, is
    asked for or heats, in a session the governor supervises."""
    _replay(
        "shiatsu-keys",
        [
            ("own_power_button", {}),
            ("notification_faults", {"garbage": False, "truncate": True}),
            ("device_reboot", {}),
            ("lease", {"release": False, "seconds": None, "source": "mqtt"}),
            ("advance", {"seconds": 6.0}),
            ("stop_during_connect", {"delay": 0.0, "source": "cli", "with_request": False}),
        ],
    )


def test_pinned_keys_a_heat_off_never_powers_on_a_massager_that_rebooted() -> None:
    """The 10,000-example soak (shiatsu-keys): a heater fault during a program; the
    heat-off pressed the heat key, the massager rebooted (off) meanwhile, and the
    heat-off's next key, toward its target "running, heat 0", was power: it switched
    on the massager that had switched itself off. A heat-off never powers one on."""
    _replay(
        "shiatsu-keys",
        [
            ("run_program", {"program": "no-heat", "source": "program"}),
            ("heater_fault", {"celsius": None, "level": 1}),
            ("device_reboot", {}),
            ("heater_fault", {"celsius": None, "level": 0}),
        ],
        {"session_min": 20.0},
    )


def test_pinned_keys_an_off_owed_on_return_counts_from_the_end_of_a_loop_stall() -> None:
    """The 10,000-example soak (shiatsu-keys), a gap in the test's model: an off owed on
    a blind key-press massager, its reports readable again and the loop stalled for 3 s
    at that moment; the off went out as the loop returned, and the model counted the
    wait from the reports' return, not from the end of the stall (every other promise
    counts from it). Kept so that the governor's side stays as it is: off at once."""
    _replay(
        "shiatsu-keys",
        [
            ("own_power_button", {}),
            ("notification_faults", {"garbage": False, "truncate": True}),
            ("device_reboot", {}),
            ("device_reboot", {}),
            ("stop", {"device": None, "source": "cli"}),
            ("link_flap", {"gaps": []}),
            ("notification_faults", {"garbage": False, "truncate": False}),
            ("loop_stall", {"seconds": 3.0}),
        ],
    )


def test_pinned_keys_an_off_owed_on_return_counts_from_the_last_return() -> None:
    """The 10,000-example soak (shiatsu-keys), the same gap in the model: an off owed on
    a blind key-press massager, the link dropped again before it landed, a loop stall,
    the massager back in range while the session's reconnect waited out its backoff; the
    off went out first on the reconnect, and the model counted from the first return."""
    _replay(
        "shiatsu-keys",
        [
            ("own_power_button", {}),
            ("notification_faults", {"garbage": False, "truncate": True}),
            ("device_reboot", {}),
            ("stop", {"device": None, "source": "cli"}),
            ("link_flap", {"gaps": []}),
            ("link_drop", {}),
            ("advance", {"seconds": 1.0}),
            ("notification_faults", {"garbage": False, "truncate": False}),
            ("loop_stall", {"seconds": 3.0}),
            ("link_return", {}),
            ("advance", {"seconds": 2.0}),
        ],
    )


# --- leases guard a running session only (through the owner and the control API) ---------


WALL_EPOCH = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)


@dataclass
class OwnerRig:
    """The owner as the daemon builds it (journal, markers, heartbeat, its own watch
    task) on the fake radio, reached by JSON lines through the API's edge."""

    owner: Owner
    device: FakeMassager

    @property
    def model(self) -> MassagerModel:
        return self.device.model

    @property
    def governor(self) -> SafetyGovernor:
        return self.owner.held[0].governor

    async def send(self, **fields: object) -> Reply | ErrorReply:
        """One request line, parsed at the edge, then to the owner (as the socket does)."""
        try:
            request = parse_request(json.dumps(fields))
        except UsageError as exc:
            return error_reply(exc)
        return await self.owner.request(request)


@contextlib.asynccontextmanager
async def owner_rig(
    tmp_path: Path, profile_id: str = ABSOLUTE, wall_jumps: list[float] | None = None,
    config: Config | None = None,
) -> AsyncIterator[OwnerRig]:
    """An open :class:`OwnerRig` on an idle massager; closed (everything off) after.
    The wall clock runs with fake time, plus every jump in ``wall_jumps`` (seconds)."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    clock = loop.clock
    start = clock()
    jumps = wall_jumps if wall_jumps is not None else []

    def wall() -> datetime:
        return WALL_EPOCH + timedelta(seconds=clock() - start + sum(jumps))

    profile = without_auto_off(PROFILES[profile_id])
    device = FakeMassager(profile, MassagerModel(profile, now=clock, rng=random.Random(0)))
    status = loop.create_task(device.status_loop())
    journal = Journal(tmp_path / "journal.sqlite", clock=wall)
    owner = build_owner(
        profile, config or Config(), FakeLinks(device), clock=clock, wall=wall,
        markers=MarkerStore(tmp_path / "active"), journal=journal,
    )
    await owner.open()
    try:
        yield OwnerRig(owner, device)
    finally:
        await owner.close()
        status.cancel()
        journal.close()


@virtual_time
async def test_a_lease_that_ran_out_while_idle_does_not_end_the_next_session(
    tmp_path: Path,
) -> None:
    """Protects: a lease renewed while the massager was idle (the MQTT bridge, the TUI)
    ran out while nothing ran, and the next session, whoever started it, was switched
    off at once as ``heartbeat_missed``. A lease guards a running session only."""
    async with owner_rig(tmp_path) as rig:
        assert isinstance(await rig.send(kind="lease", source="mqtt", seconds=30.0), Reply)
        await asyncio.sleep(60)  # nothing runs; the lease runs out
        reply = await rig.send(kind="on", source="cli")
        assert isinstance(reply, Reply), reply
        await asyncio.sleep(5)
        assert rig.model.running
        assert rig.governor.end_reason is None


@virtual_time
async def test_a_wall_clock_set_forward_during_a_session_does_not_shorten_the_cooldown(
    tmp_path: Path,
) -> None:
    """Protects: the journal records a session's end as its start plus its length on the
    monotonic clock; the wall clock set 30 min forward during the session made a new
    session 60 s after the end count 31 min of rest, and start. The owner that saw
    the end counts the rest on the monotonic clock too."""
    jumps: list[float] = []
    async with owner_rig(tmp_path, wall_jumps=jumps) as rig:
        assert isinstance(await rig.send(kind="on", source="cli"), Reply)
        await asyncio.sleep(60)
        jumps.append(30 * 60.0)  # NTP, or a person, sets the clock forward
        assert isinstance(await rig.send(kind="stop", source="cli"), Reply)
        await asyncio.sleep(60)
        reply = await rig.send(kind="on", source="cli")
        assert isinstance(reply, ErrorReply) and reply.reason == "cooldown", reply
        assert not rig.model.running


@virtual_time
async def test_a_program_start_applies_the_cooldown_floor_the_governor_applies(
    tmp_path: Path,
) -> None:
    """Protects: with ``cooldown_minutes = 0`` in the config, a program's start check
    read the config as written while the governor (a real radio) applies the design's
    floor: the run was accepted, then its first step refused. The start is refused,
    naming the cooldown, and nothing is written."""
    config = Config.model_validate({"caps": {"cooldown_minutes": 0}})
    async with owner_rig(tmp_path, config=config) as rig:
        assert rig.governor.limits.cooldown_s >= FLOOR_COOLDOWN_S
        assert isinstance(await rig.send(kind="on", source="cli"), Reply)
        await asyncio.sleep(60)
        assert isinstance(await rig.send(kind="stop", source="cli"), Reply)
        await asyncio.sleep(60)
        reply = await rig.send(kind="run", source="cli", program="quick-relax")
        assert isinstance(reply, ErrorReply) and reply.reason == "cooldown", reply
        await asyncio.sleep(5)
        assert not rig.model.running


@virtual_time
async def test_a_live_lease_guards_the_session_it_was_taken_for(tmp_path: Path) -> None:
    """The dead man still works: a source that leases a running session and goes quiet
    (no release) switches it off within one pass of its lease running out."""
    async with owner_rig(tmp_path) as rig:
        assert isinstance(await rig.send(kind="on", source="mqtt"), Reply)
        assert isinstance(await rig.send(kind="lease", source="mqtt", seconds=30.0), Reply)
        await asyncio.sleep(29)
        assert rig.model.running
        await asyncio.sleep(2)
        assert not rig.model.running
        assert rig.governor.end_reason == "heartbeat_missed"


@virtual_time
async def test_a_released_lease_leaves_the_session_running(tmp_path: Path) -> None:
    """The TUI quits from a daemon (or the MQTT bridge shuts down cleanly): it releases
    its lease, and the daemon's session goes on under its caps instead of ending as a
    missed heartbeat when the lease would have run out."""
    async with owner_rig(tmp_path) as rig:
        assert isinstance(await rig.send(kind="on", source="tui"), Reply)
        assert isinstance(await rig.send(kind="lease", source="tui", seconds=30.0), Reply)
        assert isinstance(await rig.send(kind="release", source="tui"), Reply)
        await asyncio.sleep(60)
        assert rig.model.running
        assert rig.governor.end_reason is None


@pytest.mark.parametrize(
    "fields",
    [
        {"seconds": 0},
        {"seconds": 0.0},
        {"seconds": -30.0},
        {"seconds": 4.0},
        {"seconds": 601.0},
        {"seconds": "30"},
        {"seconds": True},
        {"release": True},
    ],
)
def test_a_lease_of_no_length_or_a_release_flag_is_refused_at_the_edge(
    fields: dict[str, object],
) -> None:
    """A lease is 5-600 s; handing it back is its own request (``release``), never a
    lease of zero (which once meant "the heartbeat's length")."""
    with pytest.raises(UsageError):
        parse_request(json.dumps({"kind": "lease", "source": "mqtt", **fields}))


def test_a_release_names_at_most_a_device() -> None:
    assert parse_request('{"kind": "release", "source": "tui"}') == ReleaseRequest(source="tui")
    with pytest.raises(UsageError):
        parse_request('{"kind": "release", "source": "tui", "seconds": 30}')


async def test_quitting_the_tui_from_a_daemon_releases_its_leases() -> None:
    """Protects: the TUI quit from a daemon by letting its leases lapse, which switched
    the daemon's session off as ``heartbeat_missed`` 30 s later, against the README's
    "q stops what it owns; leaves the daemon's". It hands them back instead; and it
    stops nothing of the daemon's."""
    from footctl.tui.app import FootctlTui
    from tui_fake import FakeController, base_view, fake_catalog

    fake = FakeController(base_view())
    app = FootctlTui(fake, owns_devices=False, catalog=fake_catalog())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        fake.reply = Reply(devices=(base_view(),))
        await pilot.press("plus")
        while app._tasks:
            await pilot.pause()
        assert app.leased == {base_view().device_id}
        await pilot.press("q")
        await pilot.pause()
    assert [(r.kind, r.device) for r in fake.requests if r.kind in ("release", "stop")] == [
        ("release", base_view().device_id)
    ]


async def test_the_mqtt_bridge_releases_when_idle_and_on_a_clean_shutdown() -> None:
    """The MQTT bridge hands its lease back when the massager it leased goes idle (a
    lease renewed just before a session ended must not guard the next session of
    another source), and on a clean shutdown (what MQTT started runs on under the
    caps). A broker that goes away is not a clean shutdown: those leases lapse."""
    from footctl.mqtt.bridge import MqttBridge
    from footctl.mqtt.settings import BrokerSettings
    from tui_fake import FakeController, base_view

    idle = base_view(
        reported=base_view().reported.model_copy(update={"power": False}),
        desired=base_view().desired.model_copy(update={"power": False}),
    )
    device = idle.device_id
    fake = FakeController(idle)
    bridge = MqttBridge(fake, BrokerSettings(host="127.0.0.1"))
    bridge._leased.add(device)
    await bridge._lease(device)  # the renewal finds it idle
    assert [(r.kind, r.device) for r in fake.requests] == [("release", device)]
    assert bridge._leased == set()

    fake = FakeController(base_view())
    bridge = MqttBridge(fake, BrokerSettings(host="127.0.0.1"))
    bridge._leased.add(device)
    await bridge._release_all()
    assert [(r.kind, r.device, r.source) for r in fake.requests] == [("release", device, "mqtt")]


@virtual_time
async def test_a_request_as_the_link_returns_is_not_written_on_a_rebooted_massager(
    tmp_path: Path,
) -> None:
    """Protects (issue #9, 1, through the owner): the massager lost power and rebooted
    with the link; a request (a program's next step, due during a loop stall) reaches
    the owner the moment the link is up again, before the session's reconnect query has
    reported the massager back off. It must not be written before the governor has
    looked at the returned massager: it came back off, so the session ends
    (``device_off``) and the request is voided. Before, power 1 went out ahead of the
    query and drove the rebooted massager on again (found by the 10,000-example soak)."""
    async with owner_rig(tmp_path) as rig:
        assert isinstance(await rig.send(kind="on", source="cli"), Reply)
        await asyncio.sleep(2)
        assert rig.model.running
        loop = asyncio.get_running_loop()
        sent: list[asyncio.Task[Reply | ErrorReply]] = []

        def on_state(state: DeviceState) -> None:
            if state.connected and not sent:  # the link is up: the query is not out yet
                sent.append(loop.create_task(rig.send(kind="set", source="cli", intensity=2)))

        rig.device.drop()  # the power cut takes the link down ...
        rig.model.reset()  # ... and the massager reboots, off
        mark = rig.model.now
        unsubscribe = rig.governor.session.register_callback(on_state)
        try:
            rig.device.back()
            await asyncio.sleep(10)
        finally:
            unsubscribe()
        assert len(sent) == 1
        await sent[0]
        since = [(f.command, f.value) for f in rig.model.frames
                 if f.time >= mark and f.outcome == "applied"]
        assert ("power", 1) not in since, since
        assert not rig.model.running
        assert rig.governor.end_reason == "device_off"


# --- found by the stateful test once it ran through the owner and the control API ----------


def test_pinned_a_set_from_the_schedule_gets_the_unattended_heat_limit() -> None:
    """A set request with source "schedule" reached the governor as an attended one:
    heat 1 with ``unattended_heat_level = 0``."""
    _replay("shiatsu-keys", [("request", {"source": "schedule", "heat": 1})], {"temp": 41.0})


def test_pinned_an_own_button_session_starts_the_cooldown() -> None:
    """A session the massager's own button started was never journaled, so its end did
    not start the cooldown: a request right after it started a new session at once."""
    _replay(
        "shiatsu-aa55",
        [
            ("crash", {}),
            ("device_reboot", {}),
            ("restart", {}),
            ("own_power_button", {}),
            ("stop_during_connect", {"delay": 0.0, "source": "cli", "with_request": False}),
            ("lease", {"release": False, "seconds": None, "source": "mqtt"}),
            ("request", {}),
        ],
    )


def test_pinned_a_ramp_step_waits_for_the_returning_link_to_be_looked_at() -> None:
    """A ramp went on after the owner's reply; the massager rebooted with the link (a
    power cut) during a loop stall, and the next ramp step pressed power on it before
    the governor had looked at the returned link."""
    _replay(
        "shiatsu-keys",
        [
            ("request", {"intensity": 3}),
            ("power_cycle", {"away": 0.0}),
            ("loop_stall", {"seconds": 3.0}),
        ],
    )


def test_pinned_a_program_step_waiting_for_the_link_is_not_written_on_a_rebooted_massager() -> None:
    """A program step came due while the link was down (a loop stall); the owner waited
    for the link and, the moment it was back, the governor wrote power 1 before the
    session's reconnect query had reported the massager back off (it had rebooted with
    the link): the rebooted massager was driven on again (found by the 10,000-example
    soak through the owner). The step must wait for the return to be looked at: the
    session ends as ``device_off`` and the step is voided."""
    _replay(
        "shiatsu-aa55",
        [
            ("run_program", {"program": "quick-relax", "source": "program"}),
            ("loop_stall", {"seconds": 3.0}),
            ("loop_stall", {"seconds": 3.0}),
            ("run_program", {"program": "no-heat", "source": "program"}),
            ("power_cycle", {"away": 0.3}),
            ("loop_stall", {"seconds": 90.0}),
        ],
        {"session_min": 20.0},
    )


@pytest.mark.parametrize(
    "line",
    [
        b'{"kind": "set", "source": "mqtt", "intensity": NaN}\n',
        b'{"kind": "set", "source": "mqtt", "heat": Infinity}\n',
        b'{"kind": "set", "source": "mqtt", "intensity": "3"}\n',
        b'{"kind": "set", "source": "mqtt", "intensity": true}\n',
        b'{"kind": "set", "source": "mqtt", "intensity": 2.5}\n',
        b'{"kind": "lease", "source": "mqtt", "seconds": 0}\n',
        b'{"kind": "release", "source": "mqtt", "seconds": 30}\n',
    ],
)
async def test_the_socket_refuses_values_of_the_wrong_type_before_the_owner(line: bytes) -> None:
    """The stateful test sends its JSON lines through ``parse_request`` and not through
    the socket (no real sockets on its fake clock); this checks that the socket server
    is that edge: a type-confused or non-finite value gets a usage error (exit 2) and
    never reaches the owner."""
    from footctl.control.hub import StateHub
    from footctl.control.server import ControlServer

    seen: list[object] = []

    async def handle(request: object) -> Reply:
        seen.append(request)
        return Reply()

    sock = Path(tempfile.mkdtemp(prefix="fs-")) / "o.sock"  # (a short path for AF_UNIX)
    server = ControlServer(sock, handle, StateHub().subscribe)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(line)
        await writer.drain()
        answer = json.loads(await asyncio.wait_for(reader.readline(), 5))
        writer.close()
    finally:
        await server.close()
        shutil.rmtree(sock.parent, ignore_errors=True)
    assert answer["ok"] is False and answer["exit_code"] == 2, answer
    assert seen == []
