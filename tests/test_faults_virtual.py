"""Fault injection on the real virtual link, for each shipped profile.

Each test runs a Bumble virtual massager behind the bleak backend, footctl's
DeviceSession and SafetyGovernor (with a fake governor clock), injects one fault,
and asserts what the DEVICE saw last: its frame log and its own state.
"""

from __future__ import annotations

import asyncio

import pytest

from footctl.device.profile.schema import Profile
from footctl.device.session import Target
from footctl.errors import ConfirmTimeout, FootctlError
from footctl.safety.governor import Request
from footctl.safety.limits import Caps
from safety_harness import eventually, is_off_frame
from virtual_rig import BenchFactory

SHIPPED = ["ems-v2", "shiatsu-aa55", "shiatsu-keys"]
# No ramp wait: each request lands at once (the ramp has its own tests).
NO_RAMP = Caps(ramp_step_s=0)
FAULTS_INJECTED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _report_faults(request: pytest.FixtureRequest) -> object:
    """After the module: print how many faults it injected."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"fault injection: {len(FAULTS_INJECTED)} faults injected over the virtual link"
        )


@pytest.mark.parametrize("pid", SHIPPED)
async def test_drop_mid_heat_away_past_the_heat_cap_turns_heat_off_first(
    bench_factory: BenchFactory, profiles: dict[str, Profile], pid: str
) -> None:
    FAULTS_INJECTED.append(f"{pid}: drop mid-heat past the heat cap")
    b = await bench_factory(profiles[pid], Caps(heat_s=120, ramp_step_s=0))
    await b.governor.submit(Request(intensity=profiles[pid].capabilities.intensity.min + 1, heat=1))
    assert b.model.effective_heat == 1
    await b.massager.drop()
    assert await eventually(lambda: not b.session.connected)
    b.clock.now += 300  # away for 5 (fake) minutes: the 2 min heat cap expired meanwhile
    await b.governor.enforce()  # cannot write now: the off is owed
    acted_before = len(b.acted())
    await b.massager.restore()
    assert await eventually(b.governor.ended.is_set)
    assert await eventually(lambda: not b.model.running and b.model.effective_heat == 0)
    after = b.acted()[acted_before:]
    assert after, "nothing written after the link came back"
    assert is_off_frame(after[0])  # off comes first
    assert all(is_off_frame(f) for f in after)  # and nothing else
    assert b.governor.end_reason == "cap_expired_while_away"


@pytest.mark.parametrize("pid", SHIPPED)
async def test_device_refusing_reconnection_for_a_minute_then_back_in_time(
    bench_factory: BenchFactory, profiles: dict[str, Profile], pid: str
) -> None:
    FAULTS_INJECTED.append(f"{pid}: refuses reconnection")
    profile = profiles[pid]
    b = await bench_factory(profile, NO_RAMP)
    level = profile.capabilities.intensity.min + 2
    await b.governor.submit(Request(intensity=level, heat=1))
    await b.massager.drop()
    assert await eventually(lambda: not b.session.connected)
    await b.world.refuse_connections(b.massager.device, True)
    await b.massager.restore()
    await asyncio.sleep(0.3)  # reconnect attempts are refused meanwhile
    assert not b.session.connected
    b.clock.now += 60  # a (fake) minute: within the 15 min heat cap
    await b.massager.reboot(disconnect=False)  # it forgot its state while away
    await b.world.refuse_connections(b.massager.device, False)
    assert await eventually(lambda: b.session.connected)
    # back in time, but it rebooted (came back off): the session ends, and the massager
    # is never driven on again (issue #9, 1: it was re-asserted, heat included)
    assert await eventually(b.governor.ended.is_set)
    assert b.governor.end_reason == "device_off"
    await asyncio.sleep(0.3)
    assert not b.model.running and b.model.effective_heat == 0
    assert any("link back after" in message for _, message in b.governor.events)


@pytest.mark.parametrize("fault", ["garbage", "truncate"])
@pytest.mark.parametrize("pid", SHIPPED)
async def test_garbled_notifications_are_ignored_and_do_not_corrupt_state(
    bench_factory: BenchFactory, profiles: dict[str, Profile], pid: str, fault: str
) -> None:
    FAULTS_INJECTED.append(f"{pid}: {fault} notifications")
    profile = profiles[pid]
    b = await bench_factory(profile, NO_RAMP)
    level = profile.capabilities.intensity.min + 1
    await b.governor.submit(Request(intensity=level))
    b.model.set_fault(fault, True)
    for _ in range(5):
        await b.massager.notify()
    assert await eventually(lambda: b.session.bad_frames >= 3)
    assert b.session.connected
    assert b.session.state.intensity == level  # nothing garbled was believed
    assert b.session.state.running
    b.model.set_fault(fault, False)
    await b.governor.stop()
    assert not b.model.running


@pytest.mark.parametrize("fault", ["mute", "ignore_writes"])
@pytest.mark.parametrize("pid", SHIPPED)
async def test_device_that_stops_answering_gets_the_stop_resent_until_timeout(
    bench_factory: BenchFactory, profiles: dict[str, Profile], pid: str, fault: str
) -> None:
    FAULTS_INJECTED.append(f"{pid}: {fault}")
    profile = profiles[pid]
    b = await bench_factory(profile, NO_RAMP)
    await b.governor.submit(Request(intensity=profile.capabilities.intensity.min + 1))
    b.model.set_fault(fault, True)
    seen_before = len(b.massager.frames)
    with pytest.raises(ConfirmTimeout):
        await b.session.apply(
            Target(running=True, intensity=profile.capabilities.intensity.max),
            timeout=1.0,
        )
    with pytest.raises(FootctlError):
        await b.session.all_off(timeout=1.5)
    stop_frames = [
        f for f in list(b.massager.frames)[seen_before:] if is_off_frame(f) or f.command == "query"
    ]
    # never silently dropped: the stop (or, for key devices, the query that must
    # precede a toggle) was written again and again while unconfirmed
    assert len(stop_frames) >= 2
    assert b.model.running  # the faulty device really did not act
    b.model.set_fault(fault, False)
    await b.governor.stop()
    assert await eventually(lambda: not b.model.running)


@pytest.mark.parametrize("pid", SHIPPED)
async def test_heat_not_asked_for_is_cut_at_once_and_ends_the_session(
    bench_factory: BenchFactory, profiles: dict[str, Profile], pid: str
) -> None:
    FAULTS_INJECTED.append(f"{pid}: rogue heat")
    profile = profiles[pid]
    b = await bench_factory(profile, NO_RAMP)
    await b.governor.submit(Request(intensity=profile.capabilities.intensity.min + 1, heat=0))
    b.model.set_fault("rogue_heat", 1)  # a failed relay: heat on by itself
    await b.massager.notify()
    assert await eventually(lambda: b.governor.fault == "unexpected_heat")
    assert await eventually(b.governor.ended.is_set, timeout=15)
    assert b.governor.end_reason == "unexpected_heat"
    assert not b.model.running  # everything the governor could switch off, is off
    last = b.acted()[-1]
    assert is_off_frame(last)


async def test_over_temperature_is_cut_at_once(
    bench_factory: BenchFactory, profiles: dict[str, Profile]
) -> None:
    # Only shiatsu-aa55 reports a temperature; the others cannot show this fault.
    FAULTS_INJECTED.append("shiatsu-aa55: over-temperature")
    b = await bench_factory(profiles["shiatsu-aa55"], NO_RAMP)
    await b.governor.submit(Request(intensity=2, heat=1))
    b.model.set_fault("rogue_heat", 1)  # stuck at the level we asked for...
    b.model.set_fault("rogue_celsius", 48.0)  # ...with a failed thermostat
    b.clock.now += 120  # the pad heats towards 48 C over two (fake) minutes
    b.model.tick()
    await b.massager.notify()
    assert await eventually(lambda: b.governor.fault == "over_temperature")
    assert await eventually(b.governor.ended.is_set, timeout=15)
    assert not b.model.running
    heat_frames = [f for f in b.acted() if f.command == "heat"]
    assert (heat_frames[-1].command, heat_frames[-1].value) == ("heat", 0)
