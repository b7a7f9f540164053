"""A bridge on a real mosquitto, an Owner with virtual massagers behind it, and a plain
aiomqtt client in the place of the home-automation hub."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiomqtt

from footctl.config import CapsConfig, Config
from footctl.control.owner import DeviceSpec, Owner
from footctl.device.profile.schema import Profile
from footctl.device.transport.ble import Radio
from footctl.mqtt.bridge import MqttBridge
from footctl.mqtt.settings import BrokerSettings
from footctl.mqtt.topics import Topics, topic_id
from footctl.virtual import radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.peripheral import VirtualMassager
from mqtt_broker import Broker

_IDS = itertools.count(1)
# The ramp (one level per 10 s) and the cooldown are safety rules tested elsewhere;
# here they would only make the tests wait.
FAST_CAPS = CapsConfig(intensity_step_seconds=0, cooldown_minutes=0)


def unique_topics() -> tuple[str, str]:
    """A base topic and a discovery prefix no other test uses (one shared broker)."""
    n = next(_IDS)
    return f"ft{n}", f"ha{n}"


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Hub:
    """A plain MQTT client: records every message on its subscriptions."""

    broker: Broker
    filters: list[str]
    username: str | None = None
    password: str | None = None
    messages: list[Msg] = field(default_factory=list)
    client: aiomqtt.Client | None = None
    _task: asyncio.Task[None] | None = None
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Hub:
        self.client = aiomqtt.Client("127.0.0.1", self.broker.port, username=self.username,
                                     password=self.password)
        await self.client.__aenter__()
        await self.client.subscribe([(f, 1) for f in self.filters])
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        if self.client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self.client.__aexit__(None, None, None)

    async def _read(self) -> None:
        assert self.client is not None
        async for m in self.client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            self.messages.append(Msg(m.topic.value, payload, m.retain))
            self._new.set()

    async def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=1, retain=retain)

    def mark(self) -> int:
        """Where the messages received so far end (for ``wait(since=...)``)."""
        return len(self.messages)

    async def wait(
        self, topic: str, predicate: Callable[[Msg], bool] = lambda _m: True, *,
        since: int = 0, timeout: float = 10.0,
    ) -> Msg:
        """The first message on ``topic`` (from index ``since``) that matches."""
        async with asyncio.timeout(timeout):
            i = since
            while True:
                while i < len(self.messages):
                    m = self.messages[i]
                    i += 1
                    if m.topic == topic and predicate(m):
                        return m
                self._new.clear()
                await self._new.wait()

    def on(self, topic: str, since: int = 0) -> list[Msg]:
        """Every message received on ``topic``."""
        return [m for m in self.messages[since:] if m.topic == topic]


class Rig:
    """Virtual massagers, an Owner, and bridges in front of it."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.base, self.prefix = unique_topics()
        self.world = VirtualWorld()
        self.massagers: list[VirtualMassager] = []
        self.owners: list[Owner] = []
        self.bridges: list[tuple[MqttBridge, asyncio.Task[None]]] = []
        self._closers: list[Callable[[], Any]] = []

    def settings(self, host_id: str = "hostA", **changes: Any) -> BrokerSettings:
        base = BrokerSettings(host="127.0.0.1", port=self.broker.port, base_topic=self.base,
                              discovery_prefix=self.prefix, host_id=host_id)
        return replace(base, **changes)

    def topics(self, host_id: str = "hostA") -> Topics:
        return Topics(self.base, host_id, self.prefix)

    async def owner(self, profiles: list[Profile], config: Config | None = None) -> Owner:
        specs = []
        for profile in profiles:
            m = await VirtualMassager.create(self.world, profile)
            self.massagers.append(m)
            specs.append(DeviceSpec(profile, m.address, f"{profile.id}-{len(self.massagers)}",
                                    simulated=True))
        vradio = await radio_for_world(self.world)
        self._closers.append(vradio.close)
        radio = Radio("virtual", vradio.scanner_backend, vradio.client_backend)
        owner = Owner(config or Config(caps=FAST_CAPS), [(s, radio) for s in specs],
                      scan_timeout=5.0)
        await owner.open()
        self.owners.append(owner)
        return owner

    async def bridge(self, owner: Owner, settings: BrokerSettings | None = None, *,
                     wait: bool = True) -> MqttBridge:
        bridge = MqttBridge(owner, settings or self.settings())
        task = asyncio.create_task(bridge.run(), name="test bridge")
        self.bridges.append((bridge, task))
        if wait:
            async with asyncio.timeout(10):
                await bridge.connected.wait()
        return bridge

    def hub(self, **kwargs: Any) -> Hub:
        return Hub(self.broker, [f"{self.base}/#", f"{self.prefix}/#"], **kwargs)

    def tid(self, index: int) -> str:
        return topic_id(self.massagers[index].address)

    async def close(self) -> None:
        for _bridge, task in self.bridges:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for owner in self.owners:
            await owner.close()
        for closer in self._closers:
            await closer()
        for m in self.massagers:
            await m.close()
        await self.world.close()
