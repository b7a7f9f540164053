"""The MQTT bridge end to end: a plain MQTT client on a real mosquitto, the bridge, an
Owner with virtual massagers on a Bumble link; assertions on what the virtual
massager did."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import aiomqtt
import pytest

from footctl.control.api import (
    DescribeRequest,
    DeviceView,
    ErrorReply,
    Reply,
    Request,
    SetRequest,
    StopRequest,
)
from footctl.control.port import Controller, Stream
from footctl.device.profile.schema import Profile
from footctl.mqtt.bridge import MqttBridge
from footctl.mqtt.check import check_broker
from footctl.mqtt.flow import STATE_BURST, STATE_RATE_PER_S
from ha_schema import check_component, expand_device_discovery
from mqtt_broker import Broker, broker, make_test_ca, own_broker, running  # noqa: F401
from mqtt_rig import Hub, Rig
from safety_harness import eventually


class TlsHub(Hub):
    """The hub's client over TLS, trusting only the test CA."""

    def __init__(self, tls_broker: Broker, ca: Path, filters: list[str]) -> None:
        super().__init__(tls_broker, filters)
        self.ca = ca

    async def __aenter__(self) -> Hub:
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca))
        self.client = aiomqtt.Client("127.0.0.1", self.broker.port, tls_context=context)
        await self.client.__aenter__()
        await self.client.subscribe([(f, 1) for f in self.filters])
        self._task = asyncio.create_task(self._read())
        return self


@pytest.fixture
async def rig(broker: Broker) -> AsyncIterator[Rig]:  # noqa: F811 - the fixture above
    r = Rig(broker)
    yield r
    await r.close()


def state_of(payload: bytes) -> dict[str, object]:
    data = json.loads(payload)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_set_reaches_the_massager_and_the_new_state_comes_back(
    rig: Rig, profiles: dict[str, Profile], protocol: str
) -> None:
    owner = await rig.owner([profiles["shiatsu-aa55"]])
    async with rig.hub() as hub:
        await rig.bridge(owner, rig.settings(protocol=protocol))
        t, tid = rig.topics(), rig.tid(0)
        assert (await hub.wait(t.bridge_state)).payload == b"online"
        assert (await hub.wait(t.availability(tid))).payload == b"online"
        config = (await hub.wait(t.discovery(tid))).json()
        _top, comps = expand_device_discovery(config)
        for cid, comp in comps.items():
            check_component(cid, comp)
        idle = state_of((await hub.wait(t.state(tid))).payload)
        assert idle["power"] is False and idle["link"] == "connected"

        mark = hub.mark()
        await hub.publish(t.set(tid), '{"intensity": 2, "heat": 1}')
        m = rig.massagers[0].model
        assert await eventually(lambda: m.running and m.intensity == 2 and m.heat == 1)
        state = await hub.wait(t.state(tid), lambda msg: state_of(msg.payload)["heat"] == 1,
                               since=mark)
        data = state_of(state.payload)
        assert (data["power"], data["intensity"], data["source"]) == (True, 2, "mqtt")
        assert state.retain is False  # live delivery; the broker keeps it retained

        mark = hub.mark()
        await hub.publish(t.set(tid, "mode"), "rolling")
        await hub.publish(t.set(tid, "heat"), "off")
        assert await eventually(lambda: m.heat == 0 and m.mode_index == 1)
        await hub.publish(t.set(tid, "power"), "OFF")
        assert await eventually(lambda: not m.running)
        await hub.wait(t.state(tid), lambda msg: state_of(msg.payload)["power"] is False,
                       since=mark)
        await hub.publish(t.set(tid, "power"), "ON")  # Home Assistant's switch
        assert await eventually(lambda: m.running and m.heat == 0)
        await hub.publish(t.set(tid), '{"stop": true}')
        assert await eventually(lambda: not m.running)
        assert hub.on(t.error(tid)) == []


MALFORMED = [
    ("", b"not json"),
    ("", b'{"intensity": NaN}'),
    ("", b'{"intensity": 3.0}'),
    ("", b'{"intensity": "3"}'),
    ("", b'{"heat": true}'),
    ("", b'{"volume": 3}'),
    ("", b'{"stop": true, "intensity": 2}'),
    ("", b"{}"),
    ("", b'{"mode": "' + b"x" * 2000 + b'"}'),
    ("intensity", b"2.5"),
    ("power", b"maybe"),
    ("volume", b"3"),
]


async def test_malformed_and_over_cap_payloads_are_answered_and_change_nothing(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    owner = await rig.owner([profiles["ems-v2"]])
    async with rig.hub() as hub:
        await rig.bridge(owner)
        t, tid = rig.topics(), rig.tid(0)
        m = rig.massagers[0].model
        await hub.publish(t.set(tid), '{"intensity": 3}')
        assert await eventually(lambda: m.running and m.intensity == 3)
        before = (m.running, m.intensity, m.heat, m.mode_index, m.zone)
        writes = len(rig.massagers[0].frames)

        over_cap = [("", b'{"heat": 3}'), ("", b'{"intensity": 20}'), ("zone", b"9"),
                    ("", b'{"mode": "tickle"}'), ("", b'{"program": "no-such-program"}')]
        for field, payload in MALFORMED + over_cap:
            mark = hub.mark()
            await hub.publish(t.set(tid, field or None), payload)
            error = (await hub.wait(t.error(tid), since=mark)).json()
            assert error["topic"] == t.set(tid, field or None)
            assert error["payload_bytes"] == len(payload)
            assert error["payload"] == payload[:200].decode() + ("..." if len(payload) > 200
                                                                 else "")
            assert error["message"]
            if (field, payload) in over_cap:
                assert error["error"] in ("refused", "usage"), error
            else:
                assert error["error"] == "malformed", error
        heat_refusal = [e.json() for e in hub.on(t.error(tid))
                        if e.json()["payload"] == '{"heat": 3}']
        assert heat_refusal[0]["reason"] == "heat_above_cap"
        assert (m.running, m.intensity, m.heat, m.mode_index, m.zone) == before
        # Only what the session sends by itself (keepalive queries) reached the massager.
        sent = [f.command for f in rig.massagers[0].frames[writes:]]
        assert set(sent) <= {"query"}, sent
        state = await hub.wait(t.state(tid), lambda s: state_of(s.payload)["last_refusal"]
                               is not None)
        assert "heat_above_cap" in str(state_of(state.payload)["last_refusal"])


async def test_a_retained_command_is_never_carried_out(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    owner = await rig.owner([profiles["shiatsu-aa55"]])
    t, tid = rig.topics(), rig.tid(0)
    async with rig.hub() as hub:
        await hub.publish(t.set(tid), '{"intensity": 2, "heat": 1}', retain=True)
        await rig.bridge(owner)
        error = (await hub.wait(t.error(tid))).json()
        assert "retained" in error["message"]
        await hub.publish(t.set(tid), b"", retain=True)  # clear it
        assert not rig.massagers[0].model.running


async def test_home_assistant_birth_brings_discovery_and_state_again(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    owner = await rig.owner([profiles["shiatsu-aa55"]])
    async with rig.hub() as hub:
        bridge = await rig.bridge(owner)
        t, tid = rig.topics(), rig.tid(0)
        await hub.wait(t.discovery(tid))
        await hub.wait(t.state(tid))
        announced = bridge.stats.announced
        # A retained "online" (left by an earlier HA) is not a birth: nothing is resent.
        await hub.publish(t.ha_status, "online", retain=True)
        mark = hub.mark()
        await hub.publish(t.ha_status, "offline")
        await hub.publish(t.ha_status, "online")
        assert (await hub.wait(t.discovery(tid), since=mark)).json()["cmps"]
        await hub.wait(t.state(tid), since=mark)
        await hub.wait(t.availability(tid), since=mark)
        assert bridge.stats.announced == announced + 1
        await hub.publish(t.ha_status, b"", retain=True)


async def test_broker_restart_mid_session(
    own_broker: Broker, profiles: dict[str, Profile]  # noqa: F811 - the fixture above
) -> None:
    rig = Rig(own_broker)
    try:
        owner = await rig.owner([profiles["shiatsu-aa55"]])
        bridge = await rig.bridge(owner)
        t, tid = rig.topics(), rig.tid(0)
        m = rig.massagers[0].model
        async with rig.hub() as hub:
            await hub.publish(t.set(tid), '{"intensity": 2, "heat": 1}')
            assert await eventually(lambda: m.running and m.heat == 1)
            running = state_of((await hub.wait(
                t.state(tid), lambda s: state_of(s.payload)["heat"] == 1)).payload)
        own_broker.restart()  # no persistence: every retained message is gone
        loop = asyncio.get_running_loop()
        back = loop.time()
        async with rig.hub() as hub:
            # Retained state, availability and discovery are back within 5 s.
            state = await hub.wait(t.state(tid), timeout=5)
            await hub.wait(t.availability(tid), timeout=5 - (loop.time() - back))
            await hub.wait(t.discovery(tid), timeout=5 - (loop.time() - back))
            assert (await hub.wait(t.bridge_state)).payload == b"online"
            assert bridge.stats.connects == 2
            data = state_of(state.payload)
            assert (data["power"], data["heat"]) == (True, 1)
            # The session went on: same session, its cap still counting down.
            timers = data["timers"]
            assert isinstance(timers, dict)
            assert timers["session_left_s"] <= running["timers"]["session_left_s"]  # type: ignore[index]
            # ... and the caps still hold.
            mark = hub.mark()
            await hub.publish(t.set(tid), '{"intensity": 9}')
            assert (await hub.wait(t.error(tid), since=mark)).json()["error"] == "refused"
            assert m.running and m.intensity == 2 and m.heat == 1
            await hub.publish(t.set(tid), '{"stop": true}')
            assert await eventually(lambda: not m.running)
    finally:
        await rig.close()


async def test_two_massagers_on_one_bridge_and_two_bridges_on_one_broker(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    owner_a = await rig.owner([profiles["shiatsu-aa55"], profiles["ems-v2"]])
    owner_b = await rig.owner([profiles["shiatsu-keys"]])
    async with rig.hub() as hub:
        bridge_a = await rig.bridge(owner_a, rig.settings("hostA"))
        bridge_b = await rig.bridge(owner_b, rig.settings("hostB"))
        ta, tb = rig.topics("hostA"), rig.topics("hostB")
        assert (await hub.wait(ta.bridge_state)).payload == b"online"
        assert (await hub.wait(tb.bridge_state)).payload == b"online"
        aa55, ems, keys = rig.tid(0), rig.tid(1), rig.tid(2)
        zone_a = (await hub.wait(ta.discovery(aa55))).json()["cmps"]
        zone_e = (await hub.wait(ta.discovery(ems))).json()["cmps"]
        config_k = (await hub.wait(tb.discovery(keys))).json()
        assert "zone" not in zone_a and "zone" in zone_e
        assert config_k["avty"][0]["t"] == tb.bridge_state

        await hub.publish(ta.set(ems), '{"intensity": 4, "zone": 3}')
        await hub.publish(tb.set(keys, "intensity"), "2")
        ms = [m.model for m in rig.massagers]
        assert await eventually(lambda: ms[1].running and ms[1].intensity == 4 and ms[1].zone == 3)
        assert await eventually(lambda: ms[2].running and ms[2].intensity == 2, timeout=15)
        assert not ms[0].running
        # Both stayed connected: distinct client ids, neither kicked the other off.
        assert bridge_a.stats.connects == bridge_b.stats.connects == 1
        await hub.publish(ta.set(ems, "stop"), "PRESS")
        await hub.publish(tb.set(keys, "stop"), "PRESS")
        assert await eventually(lambda: not ms[1].running and not ms[2].running, timeout=15)
        # Each bridge answers only for its own massagers (no false "unknown" errors).
        await hub.publish(tb.set(keys), '{"intensity": 99}')
        refusal = (await hub.wait(tb.error(keys))).json()
        assert refusal["error"] == "refused"
        await asyncio.sleep(0.2)
        assert len(hub.on(tb.error(keys))) == 1
        assert hub.on(ta.error(aa55)) == hub.on(ta.error(ems)) == []


async def test_a_massager_that_left_the_config_is_removed_from_home_assistant(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    owner = await rig.owner([profiles["shiatsu-aa55"]])
    t, other = rig.topics("hostA"), rig.topics("hostB")
    gone = {"dev": {"ids": ["footctl_gone"]}, "o": {"name": "footctl"}, "cmps": {},
            "avty": [{"t": t.bridge_state}, {"t": t.availability("gone")}]}
    theirs = {**gone, "avty": [{"t": other.bridge_state}]}
    async with rig.hub() as hub:
        await hub.publish(t.discovery("gone"), json.dumps(gone), retain=True)
        await hub.publish(t.state("gone"), "{}", retain=True)
        await hub.publish(t.discovery("theirs"), json.dumps(theirs), retain=True)
        bridge = await rig.bridge(owner)
        await hub.wait(t.discovery("gone"), lambda m: m.payload == b"")
        await hub.wait(t.state("gone"), lambda m: m.payload == b"")
        assert await eventually(lambda: bridge.stats.removed == ["gone"])
    async with rig.hub() as fresh:  # what a hub starting now finds retained
        await fresh.wait(t.discovery(rig.tid(0)))
        await fresh.wait(t.discovery("theirs"))
        assert fresh.on(t.discovery("gone")) == []
        await fresh.publish(t.discovery("theirs"), b"", retain=True)


async def test_password_auth_and_a_refused_wrong_password(
    tmp_path: Path, profiles: dict[str, Profile], caplog: pytest.LogCaptureFixture
) -> None:
    with running(tmp_path / "auth", users={"home": "s3cret-pw"}) as auth:
        rig = Rig(auth)
        try:
            good = rig.settings(username="home", password="s3cret-pw")
            bad = rig.settings("hostB", username="home", password="wrong-pw")
            assert (await check_broker(good)).ok
            refused = await check_broker(bad)
            assert (refused.ok, refused.error, refused.exit_code) == (False, "credentials", 2)
            anonymous = await check_broker(rig.settings())
            assert anonymous.error == "credentials"

            owner = await rig.owner([profiles["shiatsu-aa55"]])
            await rig.bridge(owner, good)
            intruder = await rig.bridge(owner, bad, wait=False)
            async with rig.hub(username="home", password="s3cret-pw") as hub:
                t, tid = rig.topics(), rig.tid(0)
                assert (await hub.wait(t.bridge_state)).payload == b"online"
                await hub.publish(t.set(tid, "intensity"), "2")
                m = rig.massagers[0].model
                assert await eventually(lambda: m.running and m.intensity == 2)
                await hub.publish(t.set(tid, "stop"), "PRESS")
                assert await eventually(lambda: not m.running)
                assert hub.on(rig.topics("hostB").bridge_state) == []
            assert intruder.stats.connects == 0  # kept retrying, never in, never crashed
            assert not intruder.connected.is_set()
        finally:
            await rig.close()
    assert "s3cret-pw" not in caplog.text and "wrong-pw" not in caplog.text
    assert "refused" in caplog.text or "Bad user name" in caplog.text or "Not authorized" in (
        caplog.text)


async def test_tls_with_a_test_ca(tmp_path: Path, profiles: dict[str, Profile]) -> None:
    ca = make_test_ca(tmp_path / "ca")
    with running(tmp_path / "tls", tls=ca) as tls:
        rig = Rig(tls)
        try:
            settings = rig.settings(tls=True, ca_file=ca.ca, protocol="5")
            assert (await check_broker(settings)).ok
            untrusted = await check_broker(rig.settings(tls=True))  # system CAs only
            assert (untrusted.ok, untrusted.error) == (False, "tls")
            plain = await check_broker(rig.settings(), timeout=0.5)  # mqtt:// to a TLS port
            assert not plain.ok

            owner = await rig.owner([profiles["shiatsu-aa55"]])
            await rig.bridge(owner, settings)
            t, tid = rig.topics(), rig.tid(0)
            hub = TlsHub(tls, ca.ca, [f"{rig.base}/#"])
            async with hub:
                await hub.wait(t.state(tid))
                await hub.publish(t.set(tid), '{"intensity": 3}')
                m = rig.massagers[0].model
                assert await eventually(lambda: m.running and m.intensity == 3)
                await hub.publish(t.set(tid), '{"stop": true}')
                assert await eventually(lambda: not m.running)
        finally:
            await rig.close()


async def test_the_lease_lapses_when_the_broker_goes_away_with_heat_on(
    own_broker: Broker, profiles: dict[str, Profile]  # noqa: F811 - the fixture above
) -> None:
    rig = Rig(own_broker)
    try:
        owner = await rig.owner([profiles["shiatsu-aa55"]])
        lease = 5.0  # the shortest lease the API allows
        await rig.bridge(owner, rig.settings(lease_s=lease))
        t, tid = rig.topics(), rig.tid(0)
        m = rig.massagers[0].model
        async with rig.hub() as hub:
            await hub.publish(t.set(tid), '{"intensity": 1, "heat": 1}')
            assert await eventually(lambda: m.running and m.heat == 1)
        loop = asyncio.get_running_loop()
        # While the broker is up the bridge renews: the massager outlives the lease.
        await asyncio.sleep(lease * 1.3)
        assert m.running and m.heat == 1
        own_broker.stop()
        gone = loop.time()
        assert await eventually(lambda: not m.running and m.heat == 0, timeout=lease + 5)
        assert loop.time() - gone <= lease + 2.5  # one renewal period of slack, plus the watch
        view = owner.snapshot()[0]
        assert view.end_reason == "heartbeat_missed"
    finally:
        await rig.close()


async def test_a_flood_of_commands_is_coalesced(rig: Rig, profiles: dict[str, Profile]) -> None:
    owner = await rig.owner([profiles["ems-v2"]])
    async with rig.hub() as hub:
        await rig.bridge(owner)
        t, tid = rig.topics(), rig.tid(0)
        await hub.wait(t.state(tid))
        mark = hub.mark()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(60):
            await hub.publish(t.set(tid), json.dumps({"intensity": 1 + i % 10, "zone": i % 6}))
        await hub.publish(t.set(tid), '{"intensity": 7}')
        m = rig.massagers[0].model
        assert await eventually(lambda: m.running and m.intensity == 7 and m.zone == 59 % 6)
        await hub.wait(t.state(tid), lambda s: state_of(s.payload)["intensity"] == 7, since=mark)
        elapsed = loop.time() - started
        states = hub.on(t.state(tid), since=mark)
        # A burst, then at most STATE_RATE_PER_S per massager.
        assert len(states) <= STATE_BURST + elapsed * STATE_RATE_PER_S + 1, (len(states), elapsed)
        assert hub.on(t.error(tid), since=mark) == []
        await hub.publish(t.set(tid), '{"stop": true}')
        assert await eventually(lambda: not m.running)


async def test_the_bridge_stops_promptly_after_its_owner_closed(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    """The daemon's order: the owner closes (everything off), then the bridge is
    cancelled. A cancel lost inside an aiomqtt publish once left the bridge waiting on
    the state stream forever, and the daemon never exited."""
    owner = await rig.owner([profiles["shiatsu-aa55"]])
    async with rig.hub() as hub:
        bridge = await rig.bridge(owner)
        t, tid = rig.topics(), rig.tid(0)
        await hub.publish(t.set(tid), '{"intensity": 2}')
        m = rig.massagers[0].model
        assert await eventually(lambda: m.running)
        await hub.publish(t.set(tid, "stop"), "PRESS")
        assert await eventually(lambda: not m.running)
        await asyncio.sleep(0.5)
        await owner.close()
        _bridge, task = rig.bridges[0]
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert task in done, "the bridge did not stop"
        await hub.wait(t.bridge_state, lambda msg: msg.payload == b"offline")
        off = await hub.wait(t.state(tid), lambda msg: state_of(msg.payload)["power"] is False)
        assert off is not None
        assert not bridge.connected.is_set()


async def test_a_cancel_lost_inside_an_mqtt_call_is_raised_again(rig: Rig) -> None:
    """Python 3.11's asyncio.wait_for (aiomqtt awaits acknowledgements with it) drops a
    cancel that arrives together with the answer; the bridge raises it again."""
    bridge = MqttBridge(cast(Controller, object()), rig.settings())

    async def lossy() -> int:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # the cancel lands here and is dropped, as wait_for did
        return 1

    task = asyncio.create_task(bridge._call(lossy()))
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_broker_that_is_down_blocks_nothing_and_its_return_is_noticed(
    own_broker: Broker, profiles: dict[str, Profile]  # noqa: F811 - the fixture above
) -> None:
    own_broker.stop()
    rig = Rig(own_broker)
    try:
        owner = await rig.owner([profiles["shiatsu-aa55"]])
        bridge = await rig.bridge(owner, wait=False)
        await asyncio.sleep(1.0)  # a few failed attempts
        assert bridge.stats.connects == 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await owner.request(SetRequest(intensity=2))
        assert isinstance(reply, Reply)
        assert loop.time() - started < 2.0  # the owner does not wait on the broker
        await owner.request(StopRequest())
        await asyncio.sleep(2.5)  # the backoff is at its cap now
        own_broker.start()
        back = loop.time()
        async with rig.hub() as hub:
            t, tid = rig.topics(), rig.tid(0)
            await hub.wait(t.discovery(tid), timeout=5)
            await hub.wait(t.availability(tid), timeout=5 - (loop.time() - back))
            state = await hub.wait(t.state(tid), timeout=5 - (loop.time() - back))
            assert state_of(state.payload)["power"] is False
    finally:
        await rig.close()


class NoDescribe:
    """An owner that cannot describe its massagers (an older owner behind a socket)."""

    def __init__(self, owner: Controller) -> None:
        self.owner = owner

    async def request(self, request: Request) -> Reply | ErrorReply:
        if isinstance(request, DescribeRequest):
            return ErrorReply(error="usage", message="describe is not served by this owner")
        return await self.owner.request(request)

    def subscribe(self, device_id: str | None = None) -> Stream:
        return self.owner.subscribe(device_id)

    def snapshot(self) -> list[DeviceView]:
        return self.owner.snapshot()


async def test_without_capabilities_no_discovery_but_state_and_commands_work(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    owner = await rig.owner([profiles["shiatsu-aa55"]])
    async with rig.hub() as hub:
        bridge = MqttBridge(NoDescribe(owner), rig.settings())
        task = asyncio.create_task(bridge.run())
        rig.bridges.append((bridge, task))
        await asyncio.wait_for(bridge.connected.wait(), 10)
        t, tid = rig.topics(), rig.tid(0)
        await hub.wait(t.state(tid))
        await hub.publish(t.set(tid, "intensity"), "2")
        m = rig.massagers[0].model
        assert await eventually(lambda: m.running and m.intensity == 2)
        await hub.publish(t.set(tid, "stop"), "PRESS")
        assert await eventually(lambda: not m.running)
        assert hub.on(t.discovery(tid)) == []
        assert bridge.stats.announced == 0


async def test_the_bedtime_program_starts_from_an_automation(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    owner = await rig.owner([profiles["shiatsu-aa55"]])
    async with rig.hub() as hub:
        await rig.bridge(owner)
        t, tid = rig.topics(), rig.tid(0)
        m = rig.massagers[0].model
        first = state_of((await hub.wait(t.state(tid))).payload)
        assert first["selected_program"] == "wind-down"

        # An automation publishes the program by name ...
        await hub.publish(t.set(tid), '{"program": "quick-relax"}')
        running = await hub.wait(t.state(tid), lambda s: state_of(s.payload)["program"]
                                 == "quick-relax")
        data = state_of(running.payload)
        assert data["step"] is not None and data["time_left_s"] is not None
        assert await eventually(lambda: m.running)
        await hub.publish(t.set(tid, "stop"), "PRESS")
        assert await eventually(lambda: not m.running)
        await hub.wait(t.state(tid), lambda s: state_of(s.payload)["program"] is None)

        # ... or selects one and presses the start button, as a dashboard would.
        mark = hub.mark()
        await hub.publish(t.set(tid, "selected_program"), "no-heat")
        await hub.wait(t.state(tid), lambda s: state_of(s.payload)["selected_program"]
                       == "no-heat", since=mark)
        await hub.publish(t.set(tid, "start"), "PRESS")
        await hub.wait(t.state(tid), lambda s: state_of(s.payload)["program"] == "no-heat",
                       since=mark)
        assert await eventually(lambda: m.running and m.heat == 0)
        await hub.publish(t.set(tid, "selected_program"), "no-such-program")
        error = (await hub.wait(t.error(tid), since=mark)).json()
        assert "no-such-program" in error["message"]
        await hub.publish(t.set(tid), '{"stop": true}')
        assert await eventually(lambda: not m.running)
