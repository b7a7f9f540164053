"""DeviceSession and SafetyGovernor over the real bleak path to virtual massagers.

No mocks: each test runs a Bumble virtual massager, the bleak backend over a Bumble
central, and footctl's session and governor. The governor's clock is a fake so caps
of many minutes expire at once; the device itself runs on real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from footctl.device.profile.loader import load_profile_text
from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession, Target
from footctl.device.transport.ble import Radio
from footctl.errors import SafetyRefused
from footctl.safety.governor import Request, SafetyGovernor
from footctl.safety.limits import Caps, Limits
from footctl.virtual import radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.peripheral import VirtualMassager
from safety_harness import FakeClock, eventually

SHIPPED = ["ems-v2", "shiatsu-aa55", "shiatsu-keys"]


@dataclass
class Rig:
    massager: VirtualMassager
    session: DeviceSession
    governor: SafetyGovernor
    clock: FakeClock

    def applied(self) -> list[tuple[str | None, int | None]]:
        """Commands the device acted on, in order."""
        return [
            (f.command, f.value)
            for f in self.massager.frames
            if f.outcome == "applied" and f.command != "query"
        ]

    def received(self) -> list[str | None]:
        return [f.command for f in self.massager.frames]


Made = tuple[Rig, VirtualWorld, object]
Rigs = list[Made]


async def make_rig(profile: Profile, caps: Caps | None = None) -> Made:
    world = VirtualWorld()
    massager = await VirtualMassager.create(world, profile)
    vradio = await radio_for_world(world)
    radio = Radio("virtual link", vradio.scanner_backend, vradio.client_backend)
    session = DeviceSession(profile, radio, scan_timeout=5.0)
    clock = FakeClock()
    governor = SafetyGovernor(
        session, Limits.compute(profile, caps or Caps()), clock=clock, sleep=clock.sleep
    )
    await session.connect()
    return Rig(massager, session, governor, clock), world, vradio


@pytest.fixture
async def rigs(profiles: dict[str, Profile]) -> AsyncIterator[Rigs]:
    made: Rigs = []
    yield made
    for rig, world, vradio in made:
        await rig.session.close()
        await vradio.close()  # type: ignore[attr-defined]
        await rig.massager.close()
        await world.close()


async def rig_for(
    rigs: Rigs, profile: Profile, caps: Caps | None = None
) -> Rig:
    made = await make_rig(profile, caps)
    rigs.append(made)
    return made[0]


@pytest.mark.parametrize("pid", SHIPPED)
async def test_submit_reaches_and_confirms_target(
    rigs: Rigs, profiles: dict[str, Profile], pid: str
) -> None:
    profile = profiles[pid]
    rig = await rig_for(rigs, profile)
    mode = profile.capabilities.modes[-1].name
    level = profile.capabilities.intensity.min + 2
    state, _ = await rig.governor.submit(Request(intensity=level, heat=1, mode=mode))
    assert (state.running, state.intensity, state.heat, state.mode) == (True, level, 1, mode)
    assert state.assumed is False
    model = rig.massager.model
    assert (model.running, model.intensity, model.effective_heat, model.mode) == (
        True, level, 1, mode,
    )
    # and back down again, including heat off
    state, _ = await rig.governor.submit(Request(intensity=level - 1, heat=0))
    assert (model.intensity, model.effective_heat) == (level - 1, 0)


@pytest.mark.parametrize("pid", SHIPPED)
async def test_stop_is_always_sent_even_when_already_off(
    rigs: Rigs, profiles: dict[str, Profile], pid: str
) -> None:
    rig = await rig_for(rigs, profiles[pid])
    await rig.governor.submit(Request(intensity=profiles[pid].capabilities.intensity.min + 1))
    await rig.governor.stop()
    assert not rig.massager.model.running
    await asyncio.sleep(0.1)  # let frames written without response land
    frames_after_first = len(rig.massager.frames)
    await rig.governor.stop()  # already off: still written (never deduplicated)
    assert await eventually(lambda: len(rig.massager.frames) > frames_after_first)
    await asyncio.sleep(0.1)
    assert not rig.massager.model.running  # and a toggle key did not switch it back on


async def test_heat_cap_turns_heat_off_and_locks_it(
    rigs: Rigs, profiles: dict[str, Profile]
) -> None:
    rig = await rig_for(rigs, profiles["shiatsu-aa55"], Caps(heat_s=60))
    started = rig.clock.now
    await rig.governor.submit(Request(intensity=2, heat=1))  # the ramp takes 10 s
    rig.clock.now = started + 59
    await rig.governor.enforce()
    assert rig.massager.model.effective_heat == 1
    rig.clock.now = started + 61
    await rig.governor.enforce()
    assert rig.massager.model.effective_heat == 0
    assert rig.massager.model.running  # massage goes on; only heat hit its cap
    with pytest.raises(SafetyRefused) as info:
        await rig.governor.submit(Request(heat=1))
    assert info.value.reason == "heat_cap_reached"


async def test_session_cap_turns_everything_off(
    rigs: Rigs, profiles: dict[str, Profile]
) -> None:
    rig = await rig_for(rigs, profiles["ems-v2"], Caps(session_s=120))
    await rig.governor.submit(Request(intensity=5, heat=1))
    rig.clock.advance(121)
    await rig.governor.enforce()
    model = rig.massager.model
    assert not model.running and model.effective_heat == 0
    assert rig.governor.ended.is_set()
    assert rig.governor.end_reason == "session_cap"


async def test_cap_expired_while_away_sends_off_first_on_return(
    rigs: Rigs, profiles: dict[str, Profile]
) -> None:
    rig = await rig_for(rigs, profiles["shiatsu-aa55"], Caps(heat_s=60))
    await rig.governor.submit(Request(intensity=3, heat=1))
    await rig.massager.drop()
    await rig.session._wait_for(lambda: not rig.session.connected, 5)
    rig.clock.advance(120)  # the heat cap expires while the device is out of range
    await rig.governor.enforce()  # cannot write: the off is owed
    before = len(rig.massager.frames)
    await rig.massager.restore()
    await asyncio.wait_for(rig.governor.ended.wait(), 10)
    assert await eventually(lambda: not rig.massager.model.running)
    commands = [f for f in list(rig.massager.frames)[before:] if f.command != "query"]
    assert (commands[0].command, commands[0].value) == ("heat", 0)  # heat off comes first
    assert ("power", 0) in [(f.command, f.value) for f in commands]
    assert rig.governor.end_reason == "cap_expired_while_away", rig.governor.events


async def test_return_in_time_reasserts_desired_state(
    rigs: Rigs, profiles: dict[str, Profile]
) -> None:
    rig = await rig_for(rigs, profiles["shiatsu-aa55"])
    await rig.governor.submit(Request(intensity=4, mode="combined"))
    await rig.massager.drop()
    await rig.session._wait_for(lambda: not rig.session.connected, 5)
    model = rig.massager.model
    model.intensity = 2  # (it changed while away, still running: re-asserted on return)
    await rig.massager.restore()
    assert await eventually(lambda: model.running and model.intensity == 4, 10)
    assert model.mode == "combined"
    target = Target(running=True, intensity=4, mode="combined")
    assert rig.session.matches(target)


async def test_return_after_a_reboot_ends_the_session_and_stays_off(
    rigs: Rigs, profiles: dict[str, Profile]
) -> None:
    """A massager that comes back off (it rebooted while away) is never re-driven
    (issue #9, 1)."""
    rig = await rig_for(rigs, profiles["shiatsu-aa55"])
    await rig.governor.submit(Request(intensity=4, mode="combined"))
    await rig.massager.drop()
    await rig.session._wait_for(lambda: not rig.session.connected, 5)
    await rig.massager.reboot(disconnect=False)  # lost its state while away
    await rig.massager.restore()
    assert await eventually(rig.governor.ended.is_set, 10)
    assert rig.governor.end_reason == "device_off"
    await asyncio.sleep(0.3)
    assert not rig.massager.model.running


NO_STATUS = """
schema_version = 1
id = "blind"
name = "write-only massager"
[advertisement]
name_globs = ["BLIND*"]
service_uuids = ["FFB0"]
local_name = "BLIND1"
[gatt]
service = "FFB0"
write = "FFB1"
write_with_response = true
[capabilities]
command_style = "absolute"
reports_status = false
intensity = { min = 1, max = 3 }
modes = [{ name = "kneading", code = 1 }]
[framing]
header = "A0"
checksum = { preset = "sum8" }
[commands.power]
code = 0x01
body = [{ arg = "u8" }]
[commands.intensity]
code = 0x02
body = [{ arg = "u8" }]
[commands.mode]
code = 0x03
body = [{ arg = "u8" }]
"""


async def test_device_without_status_is_tracked_as_assumed(
    rigs: Rigs,
) -> None:
    profile = load_profile_text(NO_STATUS)
    rig = await rig_for(rigs, profile)
    state, _ = await rig.governor.submit(Request(intensity=2))
    assert state.assumed is True
    assert (state.running, state.intensity) == (True, 2)
    assert (rig.massager.model.running, rig.massager.model.intensity) == (True, 2)
    state = await rig.governor.stop()
    assert state.running is False
    assert not rig.massager.model.running


async def test_keepalive_only_queries(
    rigs: Rigs, profiles: dict[str, Profile]
) -> None:
    base = profiles["ems-v2"]
    caps = base.capabilities.model_copy(update={"keepalive_seconds": 0.05})
    profile = base.model_copy(update={"capabilities": caps})
    rig = await rig_for(rigs, profile)
    await rig.governor.submit(Request(intensity=3))
    applied_before = rig.applied()
    received_before = len(rig.massager.frames)
    await asyncio.sleep(0.4)
    new = [f.command for f in list(rig.massager.frames)[received_before:]]
    assert len(new) >= 3
    assert set(new) == {"query"}  # a keepalive never replays a command
    assert rig.applied() == applied_before


async def test_garbage_notifications_are_ignored_not_fatal(
    rigs: Rigs, profiles: dict[str, Profile]
) -> None:
    rig = await rig_for(rigs, profiles["shiatsu-aa55"])
    rig.massager.model.set_fault("garbage", True)
    await rig.massager.notify()
    await asyncio.sleep(0.1)
    assert rig.session.bad_frames >= 1
    assert rig.session.connected
    rig.massager.model.set_fault("garbage", False)
    state, _ = await rig.governor.submit(Request(intensity=2))
    assert state.intensity == 2


async def test_new_session_within_cooldown_is_refused(
    rigs: Rigs, profiles: dict[str, Profile]
) -> None:
    profile = profiles["shiatsu-aa55"]
    rig = await rig_for(rigs, profile, Caps(cooldown_s=30 * 60))
    wall = [1_000_000.0]
    ends: dict[str, float] = {}
    gov = SafetyGovernor(
        rig.session,
        Limits.compute(profile, Caps(cooldown_s=30 * 60, ramp_step_s=0)),
        clock=rig.clock,
        sleep=rig.clock.sleep,
        last_session_end=ends.get,
        wall_clock=lambda: wall[0],
    )
    await gov.submit(Request(intensity=2))
    await gov.stop()
    ends[rig.session.state.address] = wall[0]
    wall[0] += 10 * 60
    rig.clock.advance(10 * 60)  # time passes on both clocks
    with pytest.raises(SafetyRefused) as info:
        await gov.submit(Request(intensity=2))
    assert info.value.reason == "cooldown"
    assert not rig.massager.model.running
    wall[0] += 21 * 60  # 31 min after the end: rested
    rig.clock.advance(21 * 60)
    state, _ = await gov.submit(Request(intensity=2))
    assert state.running
