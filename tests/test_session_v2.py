"""DeviceSession on version-2 profiles, over the real bleak path to virtual massagers.

No mocks: a Bumble virtual massager (the same profile), the bleak backend, and the
session's planner turning targets into frames, waits and counted presses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from footctl.device.profile.loader import find_profiles
from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession, Target
from footctl.device.transport.ble import Radio
from footctl.errors import ConfirmTimeout, SafetyRefused
from footctl.virtual import radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.peripheral import VirtualMassager
from safety_harness import eventually

PROFILES = find_profiles()


class Rig:
    def __init__(self) -> None:
        self.closers: list[object] = []
        self.massager: VirtualMassager
        self.session: DeviceSession

    def received(self, outcome: str | None = "applied") -> list[str | None]:
        return [
            f.command for f in self.massager.frames if outcome is None or f.outcome == outcome
        ]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig()
    yield made
    for closer in reversed(made.closers):
        await closer.close()  # type: ignore[attr-defined]


async def start(rig: Rig, profile: Profile) -> Rig:
    world = VirtualWorld()
    rig.closers.append(world)
    rig.massager = await VirtualMassager.create(world, profile)
    rig.closers.append(rig.massager)
    vradio = await radio_for_world(world)
    rig.closers.append(vradio)
    radio = Radio("virtual link", vradio.scanner_backend, vradio.client_backend)
    rig.session = DeviceSession(profile, radio, scan_timeout=5.0)
    rig.closers.append(rig.session)
    await rig.session.connect()
    return rig


TARGETS = {
    "aircomp-duo": Target(running=True, intensity=2, mode="squeeze", zone=2, heat=1, timer=20),
    "aircomp-mini": Target(running=True, intensity=2, heat=1),
    "shiatsu-nodes": Target(running=True, intensity=4, mode="knead-roll", heat=1),
    "keys-table": Target(running=True, intensity=3, mode="rolling", heat=1, timer=20),
    "stepper-blind": Target(running=True, intensity=5, mode="vibration"),
}


@pytest.mark.parametrize("pid", sorted(TARGETS))
async def test_every_version_2_profile_reaches_a_target_and_stops(rig: Rig, pid: str) -> None:
    await start(rig, PROFILES[pid])
    target = TARGETS[pid]
    state = await rig.session.apply(target)
    m = rig.massager.model
    assert rig.session.matches(target, state)
    assert m.running and m.intensity == target.intensity
    if target.mode is not None:
        assert m.mode == target.mode
    if target.heat is not None:
        assert m.heat == target.heat
    if target.zone is not None:
        assert m.zone == target.zone
    if target.timer is not None:
        assert m.timer_choice == target.timer
    assert "error" not in [f.outcome for f in rig.massager.frames]
    await rig.session.all_off()
    assert not m.running and m.heat == 0


async def test_a_device_that_sleeps_gets_its_wake_frame_first(rig: Rig) -> None:
    await start(rig, PROFILES["aircomp-mini"])
    assert await eventually(lambda: rig.received(None))  # written without response
    assert rig.received(None)[0] == "wake"
    await rig.session.apply(TARGETS["aircomp-mini"])
    assert rig.received(None).count("wake") == 1


async def test_a_stop_on_a_device_that_is_off_presses_nothing(rig: Rig) -> None:
    await start(rig, PROFILES["aircomp-mini"])
    await rig.session.all_off()
    await rig.session.all_off()
    assert "power_key" not in rig.received(None)
    assert not rig.massager.model.running


async def test_a_re_sent_stop_never_presses_twice_without_a_report(rig: Rig) -> None:
    await start(rig, PROFILES["aircomp-mini"])
    await rig.session.apply(Target(running=True, intensity=1))
    rig.massager.model.mute = True  # acknowledges writes, acts on none, reports nothing
    with pytest.raises(ConfirmTimeout):
        await rig.session.all_off(timeout=2.0)
    presses = [f for f in rig.massager.frames if f.command == "power_key"]
    assert len(presses) == 2  # one to switch on, one (and only one) for the stop
    rig.massager.model.mute = False
    await rig.session.all_off()
    assert not rig.massager.model.running


async def test_a_device_without_status_is_stepped_by_counted_presses(rig: Rig) -> None:
    await start(rig, PROFILES["stepper-blind"])
    await rig.session.apply(Target(running=True, intensity=5))
    assert rig.session.presses == {"intensity": 4}
    await rig.session.apply(Target(running=True, intensity=3))
    assert rig.session.presses == {"intensity": 6}
    assert rig.massager.model.intensity == 3
    # presses are never re-sent on a merely believed state
    await rig.session.apply(Target(running=True, intensity=3))
    assert rig.session.presses == {"intensity": 6}
    await rig.session.all_off()
    await rig.session.apply(Target(running=True, intensity=2))  # counted from power-on
    assert rig.massager.model.intensity == 2 and rig.session.presses == {"intensity": 7}


async def test_a_target_the_profile_cannot_reach_is_refused_with_the_reason(rig: Rig) -> None:
    await start(rig, PROFILES["shiatsu-nodes"])
    with pytest.raises(SafetyRefused, match="no zone setting") as info:
        await rig.session.apply(Target(running=True, intensity=2, zone=1))
    assert info.value.reason == "unreachable"


async def test_keys_wait_for_a_device_that_is_still_starting(rig: Rig) -> None:
    await start(rig, PROFILES["keys-table"])
    await rig.session.apply(Target(running=True, mode="tapping", intensity=2))
    outcomes = [(f.command, f.outcome) for f in rig.massager.frames]
    assert ("key_tap", "applied") in outcomes and ("key_tap", "ignored") not in outcomes
    # the power key and the first key after it are at least ready_seconds apart
    times = {f.command: f.time for f in rig.massager.frames}
    assert times["key_tap"] - times["key_power"] >= 1.0
