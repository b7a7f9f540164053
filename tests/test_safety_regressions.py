"""Deterministic regression tests for the session and governor fixes that the stateful
safety test (tests/test_safety_stateful.py) found.

Each test drives the real DeviceSession, SafetyGovernor and codec over the scripted
fake link of ``tests/safety_harness.py`` to a :class:`MassagerModel`, on a virtual-time
event loop: confirmation timeouts, key-press waits and stop re-sends take no real time,
and the order of events is the same on every run.

The tests are ``async def`` bodies run on a fresh :class:`VirtualTimeLoop` each (see
:func:`virtual_time`): pytest-asyncio's loop runs on real time, where the 5 s
confirmation timeouts these scenarios hit would make the file slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from footctl.device.profile.loader import find_profiles
from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession, Superseded, Target
from footctl.device.transport.ble import Radio
from footctl.errors import ConfirmTimeout, SafetyRefused
from footctl.safety.governor import Request, SafetyGovernor
from footctl.safety.limits import Caps, Limits
from footctl.safety.markers import MarkerStore
from footctl.state import Command
from footctl.virtual.model import FrameRecord, MassagerModel
from safety_harness import (
    ADDRESS,
    FakeClock,
    FakeLink,
    FakeMassager,
    VirtualTimeLoop,
    mark_owner_dead,
    without_auto_off,
)

PROFILES = find_profiles()
KEYS = "shiatsu-keys"  # key presses; running, heat (0/1), intensity, mode in its status
ABSOLUTE = "shiatsu-aa55"  # absolute commands (off = heat 0, power 0); reports temperature


# --- plumbing ---------------------------------------------------------------------------


def virtual_time(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an ``async def`` test on a fresh virtual-time loop (fixtures still apply)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        loop = VirtualTimeLoop(FakeClock())
        try:
            loop.run(test(*args, **kwargs))
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    return run


class LaggingMassager(FakeMassager):
    """A :class:`FakeMassager` whose status notifications arrive ``LAG`` seconds after
    the change (a slow radio), so a test can look between a write and its report."""

    LAG = 0.3

    def notify_soon(self) -> None:
        if self._pending or self.connection is None or self.interval is None:
            return
        self._pending = True
        asyncio.get_running_loop().call_later(self.LAG, self._deliver)


@dataclass
class Rig:
    """One massager model, the fake link to it and a session attached over it."""

    device: FakeMassager
    session: DeviceSession
    clock: FakeClock
    received: list[FrameRecord] = field(default_factory=list)

    @property
    def model(self) -> MassagerModel:
        return self.device.model

    def presses(self, since: int = 0) -> list[str | None]:
        """The commands (queries left out) the device received since frame ``since``."""
        return [r.command for r in self.received[since:] if r.command != "query"]

    def writes(self, since: int = 0) -> list[tuple[str | None, int | None]]:
        """(command, value) of every non-query frame received since frame ``since``."""
        return [(r.command, r.value) for r in self.received[since:] if r.command != "query"]

    def governor(self, markers: MarkerStore | None = None, **caps: Any) -> SafetyGovernor:
        """A governor for the session on the loop's clock (caps default but for ``caps``)."""
        limits = Limits.compute(self.session.profile, Caps(**caps))
        return SafetyGovernor(
            self.session, limits, clock=self.clock, sleep=asyncio.sleep, markers=markers
        )


async def make_rig(
    profile_id: str,
    *,
    running: bool = False,
    heat: int = 0,
    intensity: int | None = None,
    lag: bool = False,
    setup: Callable[[MassagerModel], None] | None = None,
) -> Rig:
    """A massager in the given state (set on the model directly, as if by its own
    buttons), with a session attached that has read its first report."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    clock = loop.clock
    profile: Profile = without_auto_off(PROFILES[profile_id])
    model = MassagerModel(profile, now=clock, rng=random.Random(0))
    if running:
        model.apply(Command("power", 1) if "power" in profile.commands else Command("press_power"))
        model.intensity = intensity if intensity is not None else model.intensity
        model.heat = heat
    if setup is not None:
        setup(model)
    device = (LaggingMassager if lag else FakeMassager)(profile, model)
    rig = Rig(device, DeviceSession(profile, Radio("fake link"), address=ADDRESS), clock)
    device.frame_listeners.append(rig.received.append)
    link = FakeLink(device)
    link.session = rig.session
    await link.connect()
    await rig.session.attach(link, ADDRESS)
    return rig


# --- key-press devices -------------------------------------------------------------------


@virtual_time
async def test_keys_stop_with_heat_on_presses_power_only() -> None:
    """Protects: a stop on a running key-press massager with heat on presses ONLY the
    power key (it takes heat with it). Pressing the heat toggle first cost a key-press
    wait, and with a heater stuck on each re-sent stop switched the heat back on."""
    rig = await make_rig(KEYS, running=True, heat=1, intensity=3)
    assert (rig.session.state.running, rig.session.state.heat) == (True, 1)
    before = len(rig.received)

    state = await rig.session.all_off()

    assert rig.presses(before) == ["press_power"]
    assert (state.running, state.heat, state.assumed) == (False, 0, False)
    assert (rig.model.running, rig.model.effective_heat) == (False, 0)


@virtual_time
async def test_keys_apply_presses_at_most_one_key_while_reports_are_lost() -> None:
    """Protects: while status notifications do not arrive (truncated), ``apply`` presses
    at most one key, then raises ConfirmTimeout saying the reports are not arriving
    (instead of building more presses on a guess); a second apply presses nothing."""
    rig = await make_rig(KEYS, running=True, intensity=1)
    rig.model.set_fault("truncate", True)
    before = len(rig.received)

    with pytest.raises(ConfirmTimeout) as info:
        await rig.session.apply(Target(running=True, intensity=4))
    assert rig.presses(before) == ["press_intensity_up"]
    assert rig.model.intensity == 2
    assert "status reports are not arriving" in str(info.value)
    # what the press should have done is believed, never taken as confirmed
    assert (rig.session.state.intensity, rig.session.state.assumed) == (2, True)

    with pytest.raises(ConfirmTimeout) as info:
        await rig.session.apply(Target(running=True, intensity=4))
    assert rig.presses(before) == ["press_intensity_up"]  # nothing more
    assert rig.model.intensity == 2
    assert "status reports are not arriving" in str(info.value)


@virtual_time
async def test_keys_apply_presses_nothing_before_any_report_arrives() -> None:
    """Protects: a key-press session that has never read a report (notifications
    garbled since it connected) presses no key at all: a blind press of the power
    toggle on a state believed off switched the massager on."""
    rig = await make_rig(KEYS, setup=lambda m: m.set_fault("garbage", True))
    assert rig.session.state.reports == 0
    before = len(rig.received)

    with pytest.raises(ConfirmTimeout) as info:
        await rig.session.apply(Target(running=True, intensity=1))
    assert rig.presses(before) == []
    assert not rig.model.running
    assert "status reports are not arriving" in str(info.value)


@virtual_time
async def test_keys_press_whose_field_does_not_move_is_not_repeated() -> None:
    """Protects: when a key press is answered by a report whose field did not move (a
    heater stuck on hides the heat level), ``apply`` raises ConfirmTimeout instead of
    pressing that toggle again (each press cycled the commanded heat on and off)."""
    rig = await make_rig(KEYS, running=True, intensity=2)
    rig.model.set_fault("rogue_heat", 1)
    await rig.session._wait_for(lambda: rig.session.state.heat == 1, 1.0)
    before = len(rig.received)
    reports = rig.session.state.reports

    with pytest.raises(ConfirmTimeout) as info:
        await rig.session.apply(Target(running=True, heat=0))
    assert rig.presses(before) == ["press_heat"]
    assert "did not respond to its heat key" in str(info.value)
    assert rig.session.state.reports > reports  # the press was answered, heat did not move
    assert not rig.session.state.assumed


@virtual_time
async def test_keys_press_is_assumed_until_reported_and_stop_does_not_confirm_stale_off() -> None:
    """Protects: right after a key press is written and before its report, the session
    holds the believed result with ``assumed=True``; a concurrent ``all_off`` therefore
    does not "confirm" off from the stale report before the press (that left a massager
    the press had switched on running, with its crash marker cleared), but waits for a
    report and presses power."""
    rig = await make_rig(KEYS, lag=True)  # off; reports arrive 0.3 s after a change
    assert not rig.session.state.running and not rig.session.state.assumed
    before = len(rig.received)

    apply = asyncio.create_task(rig.session.apply(Target(running=True)))
    await asyncio.sleep(0.1)  # the power press is written; its report is still on the way
    assert rig.presses(before) == ["press_power"] and rig.model.running
    state = rig.session.state
    assert (state.running, state.assumed) == (True, True)
    assert not rig.session.confirmed(Target(running=True))
    assert not rig.session.confirmed(Target(running=False))

    state = await rig.session.all_off()

    assert (state.running, state.assumed) == (False, False)
    assert not rig.model.running
    assert rig.presses(before) == ["press_power", "press_power"]
    with pytest.raises(Superseded):  # the stop overtook the press's wait: nothing more
        await apply


@pytest.mark.parametrize("profile_id", sorted(PROFILES))
@virtual_time
async def test_a_heat_off_never_switches_a_massager_on(profile_id: str) -> None:
    """Protects: the governor's heat-off drives a running massager to heat 0 with a
    target that says ``running``; found off (it rebooted during the heat-off, or its
    reports were lost), a key-press massager got its power key and an absolute one
    ``power 1``: the heat-off switched on a massager that had switched itself off
    (found by the 10,000-example soak). With ``power_on=False`` nothing is written that
    switches it on, and off counts as done, whatever the profile."""
    rig = await make_rig(profile_id)  # off, and the session has seen it off
    before = len(rig.received)

    await rig.session.apply(Target(running=True, heat=0), power_on=False)

    assert not rig.model.running, rig.writes(before)
    assert not rig.session.state.running


# --- the governor --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("celsius", "reason"), [(None, "unexpected_heat"), (60.0, "over_temperature")]
)
@virtual_time
async def test_submit_refused_while_device_reports_heat_not_asked_for(
    celsius: float | None, reason: str
) -> None:
    """Protects: ``submit`` refuses to start a session (reason = the heat fault) while
    the idle massager reports heat the governor did not ask for (a heater stuck on),
    or a temperature over the cap; nothing is written. Starting one powered the device
    on again right after a heat fault had switched it off."""

    def stuck_heater(model: MassagerModel) -> None:
        model.set_fault("rogue_heat", 1)
        model.set_fault("rogue_celsius", celsius)

    rig = await make_rig(ABSOLUTE, setup=stuck_heater)
    if celsius is not None:
        rig.clock.advance(600)  # the pad heats up towards 60 C
        await rig.session._query()
        await rig.session._wait_for(lambda: (rig.session.state.temperature or 0) > 50, 1.0)
    assert (rig.session.state.running, rig.session.state.heat) == (False, 1)
    governor = rig.governor()
    before = len(rig.received)

    with pytest.raises(SafetyRefused) as info:
        await governor.submit(Request(source="cli", intensity=1))

    assert info.value.reason == reason
    assert rig.writes(before) == []
    assert not rig.model.running


@virtual_time
async def test_unrecovered_crash_marker_is_owed_until_off_lands(tmp_path: Path) -> None:
    """Protects: after crash recovery, an orphaned marker for this massager (recovery
    could not confirm it off) is adopted: new sessions are refused with reason
    ``recovery_pending`` and nothing is written, ``enforce()`` sends everything off, and
    once that is confirmed the marker is gone and sessions are allowed again."""
    markers = MarkerStore(tmp_path / "active")
    markers.write(ADDRESS, ABSOLUTE, "cli")
    assert mark_owner_dead(markers) == 1  # the run that wrote it died
    rig = await make_rig(ABSOLUTE, running=True, heat=1, intensity=3)
    governor = rig.governor(markers)

    assert governor.adopt_unrecovered() is True
    before = len(rig.received)
    with pytest.raises(SafetyRefused) as info:
        await governor.submit(Request(source="cli", intensity=1))
    assert info.value.reason == "recovery_pending"
    assert rig.writes(before) == []
    assert rig.model.running

    await governor.enforce()

    assert ("power", 0) in rig.writes(before)
    assert (rig.model.running, rig.model.effective_heat) == (False, 0)
    assert markers.all() == []
    assert governor.ended.is_set()
    assert governor.end_reason == "recovered_after_crash"

    state, _ = await governor.submit(Request(source="cli", intensity=1))
    assert state.running and rig.model.running


@virtual_time
async def test_unconfirmed_stop_is_resent_by_enforce(tmp_path: Path) -> None:
    """Protects: a stop that is not confirmed (the device ignores writes) leaves the off
    owed, and a later ``enforce()`` with no cap expired sends it again; when it lands
    the session ends (and its crash marker is cleared)."""
    markers = MarkerStore(tmp_path / "active")
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor(markers, ramp_step_s=0)
    await governor.submit(Request(source="cli", intensity=2))
    assert rig.model.running and len(markers.all()) == 1

    rig.model.set_fault("ignore_writes", True)
    with pytest.raises(ConfirmTimeout):
        await governor.stop()
    assert rig.model.running and not governor.ended.is_set()

    rig.model.set_fault("ignore_writes", False)
    timers = governor.timers()
    assert timers.session_left_s is not None and timers.session_left_s > 0  # no cap expired
    before = len(rig.received)

    await governor.enforce()

    assert ("power", 0) in rig.writes(before)
    assert not rig.model.running
    assert governor.ended.is_set() and governor.end_reason == "stopped"
    assert markers.all() == []


@virtual_time
async def test_stop_overtaken_by_newer_submit_does_not_end_its_session(tmp_path: Path) -> None:
    """Protects: a ``stop()`` overtaken by a newer ``submit()`` while its off awaits
    confirmation does not end the newer session: the massager that request switched
    on keeps its crash marker (ending it here cleared the marker of a running
    massager, so a crash then could not be recovered)."""
    markers = MarkerStore(tmp_path / "active")
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor(markers)
    await governor.submit(Request(source="cli", intensity=1))
    assert rig.model.running and len(markers.all()) == 1

    newer: list[asyncio.Task[Any]] = []

    def request_arrives(record: FrameRecord) -> None:
        # A new request comes in just as the massager takes the stop's power-off, so
        # it runs while the stop is still waiting for its confirmation.
        if (record.command, record.value) == ("power", 0) and not newer:
            newer.append(asyncio.create_task(governor.submit(Request(source="tui", intensity=1))))

    rig.device.frame_listeners.append(request_arrives)

    await governor.stop(source="cli")
    assert newer, "the stop never powered the massager off"
    state, _ = await newer[0]

    assert state.running and rig.model.running
    assert [m.address for m in markers.all()] == [ADDRESS]
    assert not governor.ended.is_set()
    assert governor.source == "tui"


@pytest.mark.parametrize("profile_id", [ABSOLUTE, KEYS])
@virtual_time
async def test_device_switching_itself_off_ends_the_session(
    profile_id: str, tmp_path: Path
) -> None:
    """Protects: a massager that switches itself off while the link is up (its own
    auto-off timer, a power cut) ends the governed session (``device_off``, marker
    cleared, nothing written to power it back on); before, the governor kept the session
    until a cap and would re-power it on the next request step."""
    markers = MarkerStore(tmp_path / "active")
    rig = await make_rig(profile_id)
    governor = rig.governor(markers)
    await governor.submit(Request(source="cli", intensity=1))
    await asyncio.sleep(1.5)  # a status report or two while it runs
    assert rig.model.running and not governor.ended.is_set()
    before = len(rig.received)

    rig.model.reset()  # off, as by its own timer or a power blip
    rig.device.notify_soon()
    await asyncio.sleep(1.5)

    assert governor.ended.is_set() and governor.end_reason == "device_off"
    assert not governor.desired.running
    assert markers.all() == []
    assert rig.writes(before) == []
    assert not rig.model.running


@virtual_time
async def test_keys_concurrent_offs_do_not_toggle_the_massager_back_on() -> None:
    """Protects: two offs at once (a stop and the heat-fault handler, say) on a
    key-press massager do not both press power on the same report: the second press
    switched it back on (found by the 10,000-example soak)."""
    rig = await make_rig(KEYS, running=True, heat=1)
    results = await asyncio.gather(
        rig.session.all_off(), rig.session.all_off(), return_exceptions=True
    )
    assert not any(isinstance(r, BaseException) for r in results), results
    assert not rig.model.running
    assert rig.presses().count("press_power") == 1


@pytest.mark.parametrize("profile_id", [ABSOLUTE, KEYS])
@virtual_time
async def test_submit_refused_while_a_heat_fault_is_being_handled(profile_id: str) -> None:
    """Protects: right after a heat fault is flagged, while its heat-off is still
    settling, a new request is refused (the fault's own reason) and nothing is
    switched on; the settle window hid the fault from the refusal check, and the
    request pressed a key-press massager's keys while its heater was stuck (found by the
    10,000-example soak)."""
    rig = await make_rig(profile_id)
    governor = rig.governor()
    rig.model.set_fault("rogue_heat", 1)  # a heater stuck on while the massager is off
    rig.device.notify_soon()
    await asyncio.sleep(0.1)
    assert governor.fault == "unexpected_heat"

    with pytest.raises(SafetyRefused) as info:
        await governor.submit(Request(source="cli", heat=0))
    assert info.value.reason == "unexpected_heat"
    assert "press_power" not in rig.presses() and ("power", 1) not in rig.writes()
    assert not rig.model.running


@virtual_time
async def test_request_cannot_supersede_the_off_a_heat_fault_owes() -> None:
    """Protects: while the off a heat fault owes has not landed (here: the device
    ignored it, then the link went down), a new request is refused with the fault's
    reason instead of superseding it; when the link returns, off goes first. Before,
    the request cleared the owed off and the returning link re-asserted the session on
    the faulty heater (found by the 10,000-example soak)."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor()
    await governor.submit(Request(source="cli", intensity=1))
    rig.model.set_fault("ignore_writes", True)
    rig.model.set_fault("rogue_heat", 1)
    rig.device.notify_soon()
    await asyncio.sleep(15)  # the heat-off and then the stop go unconfirmed
    assert governor.fault == "unexpected_heat"
    assert rig.model.running

    rig.device.drop()
    await asyncio.sleep(0.1)
    with pytest.raises(SafetyRefused) as info:
        await governor.submit(Request(source="cli", intensity=1))
    assert info.value.reason == "unexpected_heat"

    rig.model.set_fault("ignore_writes", False)
    before = len(rig.received)
    rig.device.back()
    await asyncio.sleep(6)  # the session reconnects and the governor acts on it
    writes = rig.writes(before)
    assert writes and writes[0] in (("heat", 0), ("power", 0)), writes
    assert not rig.model.running


@virtual_time
async def test_ramp_steps_on_from_what_was_written_when_reports_are_lost() -> None:
    """Protects: on an absolute-value massager whose status reports are lost, the ramp
    steps on from the intensity last written (believed, as assumed), not from the stale
    last report: lowering to 0 and then asking for 2 jumped the massager from 0 to 2
    (found by the 10,000-example soak)."""
    rig = await make_rig("ems-v2")
    governor = rig.governor(ramp_step_s=5)
    await governor.submit(Request(source="cli", intensity=1))
    assert rig.model.running and rig.model.intensity == 1

    rig.model.set_fault("truncate", True)  # every report from here on is lost
    with pytest.raises(ConfirmTimeout):
        await governor.submit(Request(source="cli", intensity=0))
    assert rig.model.intensity == 0
    await asyncio.sleep(5)
    with contextlib.suppress(ConfirmTimeout):
        await governor.submit(Request(source="cli", intensity=2))

    assert rig.model.intensity <= 1, "intensity rose by more than one ramp step"


@virtual_time
async def test_unconfirmed_ramp_step_still_counts_as_a_step() -> None:
    """Protects: a ramp step whose confirmation was lost still counts as a rise, so the
    next rise waits the full ramp interval after it (counting only confirmed steps let
    the next one follow 5 s after an unconfirmed one on a 10 s ramp; found by the
    10,000-example soak)."""
    rig = await make_rig("ems-v2")
    governor = rig.governor(ramp_step_s=10)
    await governor.submit(Request(source="cli", intensity=0))
    assert rig.model.running

    rig.model.set_fault("truncate", True)  # reports lost while the next step is written
    with pytest.raises(ConfirmTimeout):
        await governor.submit(Request(source="cli", intensity=2))
    rig.model.set_fault("truncate", False)  # they come back: the step to 1 is seen
    rig.device.notify_soon()
    await asyncio.sleep(0.1)
    assert rig.session.state.intensity == 1 and not rig.session.state.assumed
    with contextlib.suppress(ConfirmTimeout):
        await governor.submit(Request(source="cli", intensity=2))

    rises, level = [], 0
    for r in rig.received:
        if r.command == "intensity" and r.value is not None:
            if r.value > level:
                rises.append(r.time)
            level = r.value
    assert len(rises) == 2, rig.writes()  # to 1 (unconfirmed), then to 2
    assert rises[1] - rises[0] >= 10 - 1e-6, rises


@virtual_time
async def test_request_cannot_extend_a_session_whose_lease_ran_out() -> None:
    """Protects: once a lease has run out (or the session cap), the session is ending:
    a new request is refused with that reason and writes nothing, instead of
    superseding the off (the massager ran on past a missed lease while the re-sent off
    waited; found by the 10,000-example soak)."""
    rig = await make_rig(ABSOLUTE)
    governor = rig.governor()
    await governor.submit(Request(source="mqtt", intensity=1))
    governor.lease("mqtt", 5)
    await asyncio.sleep(6)  # the MQTT source stopped renewing; no watch loop runs here
    before = len(rig.received)

    with pytest.raises(SafetyRefused) as info:
        await governor.submit(Request(source="cli", intensity=2))
    assert info.value.reason == "heartbeat_missed"
    assert rig.writes(before) == []
    assert rig.model.intensity == 1


@virtual_time
async def test_power_on_is_believed_to_start_at_the_lowest_intensity() -> None:
    """Protects: when a power-on goes unconfirmed (reports lost), the session believes
    the massager starts at its lowest intensity, not at the level from before the last
    off; stepping on from that old level jumped it from 0 to 2 (found by the
    10,000-example soak)."""
    rig = await make_rig("ems-v2")
    governor = rig.governor(ramp_step_s=5)
    await governor.submit(Request(source="cli", intensity=2))
    rig.model.set_fault("truncate", True)  # every report from here on is lost
    with pytest.raises(ConfirmTimeout):
        await governor.stop()
    assert not rig.model.running

    with pytest.raises(ConfirmTimeout):
        await governor.submit(Request(source="cli"))
    assert rig.model.running and rig.model.intensity == 0
    await asyncio.sleep(5)
    with contextlib.suppress(ConfirmTimeout):
        await governor.submit(Request(source="cli", intensity=2))

    assert rig.model.intensity <= 1, "intensity rose by more than one ramp step"
