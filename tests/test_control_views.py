"""The views an owner publishes follow every change, although they are built cheaply:
parts memoized by value, a copy of the massager's fixed fields, and a hub that tells
a change without copying the view (the reply to every request waits for this)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from footctl.config import Config
from footctl.control.api import DeviceView, Reply, SetRequest, Settings, StopRequest, Timers
from footctl.control.hub import StateHub
from footctl.control.owner import DeviceSpec, Owner
from footctl.device.profile.schema import Profile
from footctl.device.transport.ble import Radio
from footctl.virtual import radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.peripheral import VirtualMassager


def _view(**changes: Any) -> DeviceView:
    base = DeviceView.model_construct(
        device_id="A", address="AA:BB:CC:DD:EE:01", name="m0", profile="shiatsu-aa55",
        simulated=True, radio="virtual", link="connected", rssi=None, reconnect_attempts=0,
        reported=Settings(power=True, intensity=2), assumed=False, temperature=30.0,
        timer_minutes=None, desired=Settings(power=True, intensity=2), program=None,
        timers=Timers(session_left_s=100.0), session_source="cli", last_refusal=None,
        fault=None, end_reason=None, last_run=None, owner_pid=1, seq=0,
    )
    return base.model_copy(update=changes)


# A different value for every field of a view but ``seq``.
OTHER: dict[str, object] = {
    "device_id": "A",  # the same massager: its id stays (a different id is another one)
    "address": "AA:BB:CC:DD:EE:02", "name": "m1", "profile": "ems-v2", "simulated": False,
    "radio": "bluetooth", "link": "lost", "rssi": -60, "reconnect_attempts": 1,
    "reported": Settings(power=True, intensity=3), "assumed": True, "temperature": 31.0,
    "timer_minutes": 15, "desired": Settings(power=True, intensity=3), "program": None,
    "timers": Timers(session_left_s=99.0), "session_source": "tui",
    "last_refusal": "heat_above_cap: no", "fault": "unexpected_heat",
    "end_reason": "stopped", "last_run": None, "owner_pid": 2,
}


def test_every_field_of_a_view_but_seq_is_a_change() -> None:
    fields = set(DeviceView.model_fields) - {"seq", "device_id"}
    assert fields <= set(OTHER), "give OTHER a value for the new field"
    for name in sorted(fields):
        hub = StateHub()
        first = hub.publish(_view())
        assert first is not None and first.seq == 1
        assert hub.publish(_view(seq=7)) is None, "only seq differs: no change"
        if name in ("program", "last_run"):
            continue  # None in both; their own content is compared like any model's
        changed = hub.publish(_view(**{name: OTHER[name]}))
        assert changed is not None, f"a change of {name} was not published"
        assert changed.seq == 2 and getattr(changed, name) == OTHER[name]


def test_a_change_inside_a_nested_part_is_a_change() -> None:
    hub = StateHub()
    hub.publish(_view())
    changed = hub.publish(_view(reported=Settings(power=True, intensity=2, heat=1)))
    assert changed is not None and changed.reported.heat == 1


def test_a_view_built_with_the_next_seq_is_kept_and_any_other_renumbered() -> None:
    hub = StateHub()
    view = _view(seq=hub.next_seq("A"))
    assert hub.publish(view) is view
    stale = _view(address="AA:BB:CC:DD:EE:03", seq=1)
    published = hub.publish(stale)
    assert published is not None and published is not stale and published.seq == 2
    assert hub.next_seq("A") == 3


@pytest.fixture
async def two(profiles: dict[str, Profile]) -> AsyncIterator[Owner]:
    world = VirtualWorld()
    profile = profiles["shiatsu-aa55"]
    massagers = [await VirtualMassager.create(world, profile) for _ in range(2)]
    vradio = await radio_for_world(world)
    radio = Radio("virtual", vradio.scanner_backend, vradio.client_backend)
    config = Config.model_validate({"caps": {"intensity_step_seconds": 0}})
    owner = Owner(
        config,
        [(DeviceSpec(profile, m.address, f"m{i}", simulated=True), radio)
         for i, m in enumerate(massagers)],
        scan_timeout=5.0,
    )
    try:
        await owner.open()
        yield owner
    finally:
        await owner.close()
        await vradio.close()
        for m in massagers:
            await m.close()
        await world.close()


def _only(reply: object) -> DeviceView:
    assert isinstance(reply, Reply), reply
    (view,) = reply.devices
    return view


async def test_views_follow_every_change_of_each_massager(two: Owner) -> None:
    m0 = _only(await two.request(SetRequest(device="m0", intensity=2)))
    m1 = _only(await two.request(SetRequest(device="m1", intensity=3)))
    assert (m0.name, m0.reported.intensity, m0.desired.intensity) == ("m0", 2, 2)
    assert (m1.name, m1.reported.intensity, m1.desired.intensity) == ("m1", 3, 3)
    assert m0.device_id != m1.device_id and m0.address != m1.address
    again = _only(await two.request(SetRequest(device="m0", intensity=3)))
    assert (again.name, again.reported.intensity, again.desired.intensity) == ("m0", 3, 3)
    assert again.seq > m0.seq
    # Equal parts are one object (memoized by value), and still equal to a fresh one.
    assert again.reported is m1.reported
    assert again.reported == Settings.model_validate(m1.reported.model_dump())
    off = _only(await two.request(StopRequest(device="m0")))
    assert (off.reported.power, off.desired.power, off.name) == (False, False, "m0")
    assert two.hub.latest(m1.device_id) == _only(await two.request(
        SetRequest(device="m1", intensity=3)))  # nothing changed: the same view
    for view in two.snapshot():
        assert DeviceView.model_validate_json(view.model_dump_json()) == view
    await two.request(StopRequest())


def test_memoized_parts_are_keyed_by_every_value_and_its_type() -> None:
    from footctl.control import held

    assert held._timers(100.0, None, None, None) is held._timers(100.0, None, None, None)
    timers = (held._timers(99.0, None, None, None), held._timers(100.0, 5.0, None, None),
              held._timers(100.0, 5.0, 30.0, None), held._timers(100.0, 5.0, 30.0, 600.0))
    assert [(t.session_left_s, t.heat_left_s, t.lease_left_s, t.cooldown_left_s)
            for t in timers] == [(99.0, None, None, None), (100.0, 5.0, None, None),
                                 (100.0, 5.0, 30.0, None), (100.0, 5.0, 30.0, 600.0)]
    one = held._settings(True, 2, 1, 40.0, "kneading", None)
    assert one is held._settings(True, 2, 1, 40.0, "kneading", None)
    for other in (held._settings(True, 3, 1, 40.0, "kneading", None),
                  held._settings(True, 2, 0, None, "kneading", None),
                  held._settings(True, 2, 1, 40.0, "rolling", None),
                  held._settings(True, 2, 1, 40.0, "kneading", 2),
                  held._settings(False, 2, 1, 40.0, "kneading", None)):
        assert other != one
    # 40 and 40.0 (and True and 1) are equal keys to a plain memo: kept apart by type.
    assert type(held._settings(True, 2, 1, 40, "kneading", None).heat_celsius) is int
    assert type(held._settings(1, 2, 1, 40.0, "kneading", None).power) is int
    assert type(one.power) is bool and type(one.heat_celsius) is float
