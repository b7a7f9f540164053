"""Commands that wait behind one in flight (a ramp) are never lost: a good setting
merged with a refused one is still carried out, and a program start waiting for its
turn is not replaced by a later setting. Found by a newcomer driving a virtual massager
from mosquitto_pub (FINDINGS.md, "MQTT: a queued setting is lost")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from footctl.config import CapsConfig, Config
from footctl.control.api import ErrorReply
from footctl.device.profile.schema import Profile
from footctl.mqtt.flow import CommandLanes, Item
from footctl.mqtt.payloads import Apply, Command, Run, Stop
from footctl.mqtt.topics import Topics
from footctl.virtual.model import MassagerModel
from mqtt_broker import Broker, broker  # noqa: F401
from mqtt_rig import Hub, Rig
from safety_harness import eventually

# A ramp of one level per 0.5 s keeps a set from 1 to 5 in flight for 2 s: long enough
# for the commands below to arrive while it runs, short enough for a test.
SLOW_RAMP = Config(caps=CapsConfig(intensity_step_seconds=0.5, cooldown_minutes=0))


@pytest.fixture
async def rig(broker: Broker) -> AsyncIterator[Rig]:  # noqa: F811 - the fixture above
    r = Rig(broker)
    yield r
    await r.close()


@dataclass
class Ramping:
    """A hub, the topics of the one massager, its model, and where the hub's messages
    stood when a set to intensity 5 began to ramp (it is in flight)."""

    hub: Hub
    t: Topics
    tid: str
    m: MassagerModel
    mark: int


@contextlib.asynccontextmanager
async def ramping(rig: Rig, profile: Profile) -> AsyncIterator[Ramping]:
    """Switch the massager on and send a set that ramps for 2 s; stop it at the end."""
    owner = await rig.owner([profile], SLOW_RAMP)
    async with rig.hub() as hub:
        await rig.bridge(owner)
        t, tid = rig.topics(), rig.tid(0)
        m = rig.massagers[0].model
        await hub.publish(t.set(tid, "power"), "ON")
        assert await eventually(lambda: m.running)
        mark = hub.mark()
        await hub.publish(t.set(tid), '{"intensity": 5}')  # ramps for 2 s
        assert await eventually(lambda: m.intensity == 2)  # in flight
        yield Ramping(hub, t, tid, m, mark)
        await hub.publish(t.set(tid, "stop"), "PRESS")
        assert await eventually(lambda: not m.running)


async def test_a_refused_setting_does_not_take_a_good_one_queued_with_it(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    async with ramping(rig, profiles["shiatsu-aa55"]) as r:
        hub, t, tid, m = r.hub, r.t, r.tid, r.m
        await hub.publish(t.set(tid, "mode"), "rolling")  # waits behind it: fine
        await hub.publish(t.set(tid, "intensity"), "9")  # waits too: above the range
        error = (await hub.wait(t.error(tid), since=r.mark)).json()
        assert error["topic"] == t.set(tid, "intensity") and error["payload"] == "9", error
        assert error["reason"] == "intensity_above_cap", error
        assert await eventually(lambda: m.mode == "rolling" and m.intensity == 5), (
            m.mode, m.intensity)
        # The good one drew no error; the bad one exactly one.
        errors = [e.json() for e in hub.on(t.error(tid), since=r.mark)]
        assert [e["payload"] for e in errors] == ["9"], errors


async def test_a_program_start_waiting_its_turn_is_answered_not_replaced_by_a_setting(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    async with ramping(rig, profiles["shiatsu-aa55"]) as r:
        hub, t, tid, m = r.hub, r.t, r.tid, r.m
        await hub.publish(t.set(tid), '{"program": "no-heat"}')  # waits its turn
        await hub.publish(t.set(tid, "mode"), "combined")  # sent after the program start
        # The program start gets its answer (a program does not start on a massager
        # already running), instead of vanishing under the later setting ...
        error = (await hub.wait(t.error(tid), since=r.mark)).json()
        assert error["payload"] == '{"program": "no-heat"}', error
        assert error["reason"] == "busy", error
        # ... which is carried out after it.
        assert await eventually(lambda: m.mode == "combined" and m.intensity == 5), (
            m.mode, m.intensity)
        assert len(hub.on(t.error(tid), since=r.mark)) == 1


# --- the lanes alone, with a scripted owner ------------------------------------------


class ScriptedOwner:
    """Carries out commands in order; refuses an intensity above 5; a gate holds the
    first command in flight until the test opens it."""

    def __init__(self) -> None:
        self.done: list[Command] = []
        self.reported: list[bytes] = []
        self.gate = asyncio.Event()
        self.lanes = CommandLanes(self.execute, self.report)

    async def execute(
        self, device_id: str, command: Command, payload: bytes, topic: str
    ) -> ErrorReply | None:
        del device_id, payload, topic
        if not self.done:
            await self.gate.wait()
        if isinstance(command, Apply) and (command.intensity or 0) > 5:
            return ErrorReply(error="refused", message="above", reason="intensity_above_cap",
                              exit_code=4)
        self.done.append(command)
        return None

    async def report(self, device_id: str, item: Item, error: ErrorReply) -> None:
        del device_id, error
        self.reported.append(item[1])

    def submit(self, command: Command, payload: bytes) -> None:
        self.lanes.submit("d", (command, payload, "t"))


async def test_a_stop_voids_the_payloads_of_a_refused_merge() -> None:
    o = ScriptedOwner()
    o.submit(Apply(intensity=3), b"first")  # in flight, held at the gate
    o.submit(Apply(mode="rolling"), b"mode")
    o.submit(Apply(intensity=9), b"nine")  # merged: refused, so tried one by one ...
    o.submit(Stop(), b"stop")  # ... unless a stop came first: then nothing of it
    o.gate.set()
    assert await eventually(lambda: Stop() in o.done)
    await asyncio.sleep(0.05)
    assert o.done == [Stop(), Apply(intensity=3)] or o.done == [Apply(intensity=3), Stop()]
    assert o.reported == []


async def test_a_flood_of_settings_keeps_one_payload_per_field() -> None:
    o = ScriptedOwner()
    o.submit(Apply(intensity=1), b"first")  # in flight
    for i in range(200):
        o.submit(Apply(intensity=1 + i % 5, zone=i % 3), b"flood")
    o.submit(Apply(mode="rolling"), b"mode")
    o.submit(Apply(intensity=9), b"nine")
    o.gate.set()
    assert await eventually(lambda: Apply(mode="rolling") in o.done)
    # The merged request was refused (intensity 9); what each field last asked for
    # was then carried out alone, and only the bad payload was answered.
    assert o.done[0] == Apply(intensity=1)
    assert o.done[1:] == [Apply(intensity=5, zone=1), Apply(mode="rolling")], o.done
    assert o.reported == [b"nine"]


async def test_settings_replaced_by_a_later_program_start_are_answered() -> None:
    o = ScriptedOwner()
    o.submit(Apply(intensity=3), b"first")  # in flight
    o.submit(Apply(mode="rolling"), b"mode")
    o.submit(Apply(heat=1), b"heat")
    o.submit(Run("wind-down"), b"program")  # sets everything anew: replaces both
    o.gate.set()
    assert await eventually(lambda: Run("wind-down") in o.done)
    await asyncio.sleep(0.05)
    assert o.done == [Apply(intensity=3), Run("wind-down")]
    assert sorted(o.reported) == [b"heat", b"mode"]  # each answered, none silently lost
