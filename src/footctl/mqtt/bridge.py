"""The MQTT bridge: one more command source, written against
:class:`footctl.control.port.Controller` only.

It reads the owner's state stream and publishes each massager's state (retained,
coalesced: a burst, then at most :data:`STATE_RATE_PER_S` per massager),
availability and Home Assistant discovery; it turns command payloads into control-API
requests (source ``mqtt``), validated once in :mod:`footctl.mqtt.payloads`, and answers
refusals and malformed payloads on the error topic. While MQTT commands keep a
massager running it holds a lease on it, renewed only while the broker connection is
up: if the broker (or the bridge) goes away, the dead-man rule switches it off.

The broker being down never blocks the owner: the state stream coalesces while
nobody reads it, and the bridge reconnects with a capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import aiomqtt

from footctl.control.api import (
    DescribeRequest,
    DeviceCaps,
    DeviceView,
    ErrorReply,
    LeaseRequest,
    ReleaseRequest,
    Reply,
    Request,
    RunRequest,
    SetRequest,
    Source,
    StopRequest,
)
from footctl.control.port import Controller, Stream
from footctl.mqtt.discovery import discovery_config, is_ours
from footctl.mqtt.flow import Bucket, CommandLanes, Item
from footctl.mqtt.payloads import (
    Apply,
    Command,
    MalformedCommand,
    Run,
    Select,
    Stop,
    encode,
    error_payload,
    parse_json_command,
    parse_raw_command,
    state_payload,
)
from footctl.mqtt.settings import BrokerSettings
from footctl.mqtt.topics import AVAILABLE, NOT_AVAILABLE, Topics, topic_id

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

# Reconnect delays after a failed or lost connection; the last repeats. Capped at 2 s
# so state, availability and discovery are back within 5 s of the broker's return.
BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0)

# Every broker operation (connect, subscribe, a QoS 1 publish) fails past this.
BROKER_TIMEOUT_S = 5.0

# Saying goodbye (offline) on a clean shutdown may not hold the shutdown up longer.
GOODBYE_TIMEOUT_S = 2.0

# A lease is renewed this many times per lease period, so one lost renewal (a broker
# hiccup shorter than a third of the lease) does not switch a massager off.
RENEWALS_PER_LEASE = 3

# Incoming messages queued while the bridge is busy; past this aiomqtt drops them (a
# flood from one client must not grow the daemon's memory without bound).
MAX_QUEUED_INCOMING = 1000

# The program the start button runs until another is selected.
DEFAULT_PROGRAM = "wind-down"

SOURCE: Source = "mqtt"


@dataclass
class BridgeStats:
    """Counters for tests, the demo and the benchmark."""

    connects: int = 0
    states_published: int = 0
    commands: int = 0
    errors_published: int = 0
    announced: int = 0
    removed: list[str] = field(default_factory=list)


class MqttBridge:
    """Bridges one owner (any :class:`Controller`) to one broker."""

    def __init__(self, controller: Controller, settings: BrokerSettings) -> None:
        self.controller = controller
        self.settings = settings
        self.topics = Topics(settings.base_topic, settings.host_id, settings.discovery_prefix)
        self.stats = BridgeStats()
        self.connected = asyncio.Event()  # set once online and announced
        self._views: dict[str, DeviceView] = {}
        self._caps: dict[str, DeviceCaps] = {}
        self._tids: dict[str, str] = {}  # topic id -> device id
        self._selected: dict[str, str] = {}
        self._leased: set[str] = set()
        self._lanes = CommandLanes(self._execute, self._report)
        self._last_state: dict[str, bytes] = {}
        self._buckets: dict[str, Bucket] = {}
        self._client: aiomqtt.Client | None = None
        self._client_was_up = False
        self._sweeping = False
        self._closing = False

    # --- the connection loop ------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled: connect, announce, bridge; reconnect with backoff."""
        tls = await asyncio.to_thread(self.settings.tls_context)
        stream = self.controller.subscribe()
        attempt = 0
        last_error = ""
        try:
            while True:
                try:
                    await self._serve(stream, tls)
                except* aiomqtt.MqttError as group:
                    error = "; ".join(str(e) for e in group.exceptions)
                    if self.stats.connects and attempt == 0:
                        _LOG.warning("mqtt: lost %s: %s", self.settings.display(), error)
                    elif error != last_error:
                        _LOG.warning(
                            "mqtt: cannot connect to %s: %s (retrying)",
                            self.settings.display(), error,
                        )
                    last_error = error
                except* Exception as group:
                    # A bug here must not end the bridge (nor the daemon): log, go on.
                    _LOG.error("mqtt: bridge failed; reconnecting", exc_info=group)
                if self._client_was_up:
                    attempt = 0
                    last_error = ""
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
        finally:
            stream.close()
            self._lanes.cancel()
            await self._release_all()

    def _new_client(self, tls: ssl.SSLContext | None) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=s.client_id,
            protocol=(
                aiomqtt.ProtocolVersion.V5 if s.protocol == "5" else aiomqtt.ProtocolVersion.V311
            ),
            will=aiomqtt.Will(self.topics.bridge_state, NOT_AVAILABLE, qos=1, retain=True),
            keepalive=s.keepalive_s,
            tls_context=tls,
            timeout=BROKER_TIMEOUT_S,
            max_queued_incoming_messages=MAX_QUEUED_INCOMING,
            logger=logging.getLogger("footctl.mqtt.client"),
        )

    async def _serve(self, stream: Stream, tls: ssl.SSLContext | None) -> None:
        self._client_was_up = False
        client = self._new_client(tls)
        async with client:
            self._client = client
            self._client_was_up = True
            self.stats.connects += 1
            _LOG.info("mqtt: connected to %s as %s", self.settings.display(),
                      self.settings.client_id)
            try:
                async with asyncio.TaskGroup() as tg:
                    reader = tg.create_task(self._read(client), name="footctl.mqtt.read")
                    await self._announce(client)
                    tg.create_task(self._pump(client, stream), name="footctl.mqtt.state")
                    tg.create_task(self._renew_leases(), name="footctl.mqtt.lease")
                    await reader
            except asyncio.CancelledError:
                self._closing = True  # the cancel was delivered: goodbye may publish
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                        await self._goodbye(client)
                raise
            finally:
                self._client = None
                self.connected.clear()

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Subscribe, say online, and publish every massager's discovery, availability
        and state (on connect, and when Home Assistant comes online)."""
        t = self.topics
        filters = [(f, 1) for f in t.set_filters]
        if self.settings.discovery:
            filters.append((t.ha_status, 1))
        await self._call(client.subscribe(filters))
        await self._pub(client, t.bridge_state, AVAILABLE, qos=1, retain=True)
        await self._publish_all(client)
        if self.settings.discovery:
            # Retained configs of massagers that left our config: removed when they
            # arrive; the sync marker comes after them all.
            self._sweeping = True
            await self._call(client.subscribe([(t.discovery_filter, 1), (t.sync, 1)]))
            await self._pub(client, t.sync, "sync", qos=1)
        self.connected.set()

    async def _publish_all(self, client: aiomqtt.Client) -> None:
        views = self.controller.snapshot()
        await self._learn(views)
        for view in views:
            await self._publish_device(client, view)

    async def _learn(self, views: list[DeviceView]) -> None:
        """Record new massagers, and ask the owner what each can do."""
        new = [v for v in views if v.device_id not in self._caps]
        for view in views:
            self._views[view.device_id] = view
            self._tids[topic_id(view.device_id)] = view.device_id
        if not new:
            return
        reply = await self.controller.request(DescribeRequest(source=SOURCE))
        if isinstance(reply, ErrorReply):
            _LOG.warning("mqtt: the owner did not describe its massagers (%s); "
                         "no discovery for them", reply.message)
            return
        for caps in reply.caps:
            self._caps[caps.device_id] = caps
            if caps.device_id not in self._selected and caps.programs:
                self._selected[caps.device_id] = (
                    DEFAULT_PROGRAM if DEFAULT_PROGRAM in caps.programs else caps.programs[0]
                )

    async def _publish_device(self, client: aiomqtt.Client, view: DeviceView) -> None:
        tid = topic_id(view.device_id)
        caps = self._caps.get(view.device_id)
        if self.settings.discovery and caps is not None:
            config = discovery_config(view, caps, self.topics)
            await self._pub(client, self.topics.discovery(tid), encode(config), qos=1, retain=True)
            self.stats.announced += 1
        await self._pub(client, self.topics.availability(tid), AVAILABLE, qos=1, retain=True)
        await self._publish_state(client, view, force=True)

    async def _call(self, call: Awaitable[T]) -> T:
        """Await an aiomqtt call, and re-raise a cancellation it swallowed: on Python
        3.11 ``asyncio.wait_for`` (which aiomqtt awaits PUBACKs with) loses a cancel
        that arrives with the answer, and the task would then wait forever on the
        state stream, holding up the daemon's shutdown (found by scripts/demo)."""
        result = await call
        task = asyncio.current_task()
        if task is not None and task.cancelling() and not self._closing:
            raise asyncio.CancelledError
        return result

    async def _pub(
        self, client: aiomqtt.Client, topic: str, payload: str | bytes, *, qos: int = 0,
        retain: bool = False,
    ) -> None:
        await self._call(client.publish(topic, payload, qos=qos, retain=retain))

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        # The last state (everything off, when the owner is closing) may still be
        # waiting for its turn in the pump: it goes out now, before "offline".
        for view in self.controller.snapshot():
            await self._publish_state(client, view)
        for device_id in list(self._views):
            tid = topic_id(device_id)
            await self._pub(client, self.topics.availability(tid), NOT_AVAILABLE, qos=1,
                            retain=True)
        await self._pub(client, self.topics.bridge_state, NOT_AVAILABLE, qos=1, retain=True)

    # --- state out -------------------------------------------------------------------------

    async def _pump(self, client: aiomqtt.Client, stream: Stream) -> None:
        loop = asyncio.get_running_loop()
        pending: dict[str, DeviceView] = {}
        while True:
            wait = None
            if pending:
                now = loop.time()
                wait = max(0.0, min(self._bucket(d).ready_at(now) for d in pending) - now)
            views: list[DeviceView] = []
            try:
                async with asyncio.timeout(wait):
                    views = await stream.get()
                    if not views:
                        return  # the stream was closed: the owner is going away
            except TimeoutError:
                pass
            unknown = [v for v in views if v.device_id not in self._views]
            if unknown:
                await self._learn(unknown)
                for view in unknown:
                    await self._publish_device(client, view)
            for view in views:
                self._views[view.device_id] = view
                pending[view.device_id] = view
            now = loop.time()
            for device_id, view in list(pending.items()):
                data = self._state_bytes(view)
                if data == self._last_state.get(device_id):
                    del pending[device_id]  # nothing we show changed (seq, pid, ...)
                elif self._bucket(device_id).take(now):
                    del pending[device_id]
                    await self._send_state(client, device_id, data)

    def _bucket(self, device_id: str) -> Bucket:
        return self._buckets.setdefault(device_id, Bucket())

    def _state_bytes(self, view: DeviceView) -> bytes:
        return encode(state_payload(view, self._selected.get(view.device_id)))

    async def _publish_state(
        self, client: aiomqtt.Client, view: DeviceView, *, force: bool = False
    ) -> None:
        data = self._state_bytes(view)
        if force or self._last_state.get(view.device_id) != data:
            await self._send_state(client, view.device_id, data)

    async def _send_state(self, client: aiomqtt.Client, device_id: str, data: bytes) -> None:
        self._last_state[device_id] = data
        await self._pub(client, self.topics.state(topic_id(device_id)), data, retain=True)
        self.stats.states_published += 1

    # --- commands in -----------------------------------------------------------------------

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
            try:
                await self._on_message(client, message.topic.value, raw, retained=message.retain)
            except aiomqtt.MqttError:
                raise
            except Exception:
                _LOG.exception("mqtt: handling %s failed", message.topic.value)

    async def _on_message(
        self, client: aiomqtt.Client, topic: str, payload: bytes, *, retained: bool
    ) -> None:
        t = self.topics
        if topic == t.ha_status:
            if payload == AVAILABLE.encode() and not retained:
                _LOG.info("mqtt: Home Assistant is online: sending discovery and state again")
                await self._publish_all(client)
            return
        if topic == t.sync:
            if self._sweeping:
                self._sweeping = False
                await self._call(client.unsubscribe([t.discovery_filter, t.sync]))
            return
        oid = t.parse_discovery(topic)
        if oid is not None:
            if retained and self._sweeping:
                await self._sweep(client, topic, oid, payload)
            return
        parsed = t.parse_set(topic)
        if parsed is None:
            return
        tid, fieldname = parsed
        self.stats.commands += 1
        device_id = self._tids.get(tid)
        if retained:
            await self._error(client, tid, topic, payload, "malformed",
                              "a retained command is never carried out (it would run again "
                              "on every reconnect)", advice="publish commands without retain")
            return
        if device_id is None:
            # Not ours: another host's bridge on the same base topic may hold it, and
            # answering would put a false error beside its real answer.
            _LOG.debug("mqtt: %s: no massager %r here", topic, tid)
            return
        try:
            if fieldname is None:
                command = parse_json_command(payload)
            else:
                command = parse_raw_command(fieldname, payload)
        except MalformedCommand as exc:
            await self._error(client, tid, topic, payload, "malformed", str(exc),
                              device=device_id)
            return
        await self._command(client, device_id, command, payload, topic)

    async def _sweep(self, client: aiomqtt.Client, topic: str, oid: str, payload: bytes) -> None:
        """Remove a retained config of ours whose massager we no longer hold."""
        prefix = self.topics.object_id("")
        if not oid.startswith(prefix) or not payload:
            return
        tid = oid[len(prefix):]
        if tid in self._tids:
            return
        try:
            config = json.loads(payload)
        except ValueError:
            return
        if not isinstance(config, dict) or not is_ours(config, self.topics):
            return
        _LOG.info("mqtt: %s left the config: removing it from Home Assistant", tid)
        await self._pub(client, topic, b"", qos=1, retain=True)
        await self._pub(client, self.topics.state(tid), b"", qos=1, retain=True)
        await self._pub(client, self.topics.availability(tid), b"", qos=1, retain=True)
        self.stats.removed.append(tid)

    async def _command(
        self, client: aiomqtt.Client, device_id: str, command: Command, payload: bytes,
        topic: str,
    ) -> None:
        tid = topic_id(device_id)
        if isinstance(command, Select):
            programs = self._caps[device_id].programs if device_id in self._caps else ()
            if command.program not in programs:
                await self._error(client, tid, topic, payload, "malformed",
                                  f"no program {command.program!r} "
                                  f"(one of {', '.join(programs) or 'none'})", device=device_id)
                return
            self._selected[device_id] = command.program
            view = self._views.get(device_id)
            if view is not None:
                await self._publish_state(client, view)
            return
        self._lanes.submit(device_id, (command, payload, topic))

    def _request_for(self, device_id: str, command: Command) -> Request | str:
        if isinstance(command, Stop):
            return StopRequest(source=SOURCE, device=device_id)
        if isinstance(command, Run):
            program = command.program or self._selected.get(device_id)
            if program is None:
                return "no program selected, and none named"
            return RunRequest(source=SOURCE, device=device_id, program=program)
        assert isinstance(command, Apply)
        return SetRequest(
            source=SOURCE, device=device_id, kind="set" if command.changes else "on",
            intensity=command.intensity, heat=command.heat, mode=command.mode,
            zone=command.zone,
        )

    async def _execute(
        self, device_id: str, command: Command, payload: bytes, topic: str
    ) -> ErrorReply | None:
        """Carry out one command; its error reply, if any, is for the caller to
        publish (:meth:`_report`): a refusal of settings merged in the lane is tried
        payload by payload first."""
        del payload, topic  # what the command came as matters only for its answer
        request = self._request_for(device_id, command)
        reply: Reply | ErrorReply
        if isinstance(request, str):
            reply = ErrorReply(error="malformed", message=request, exit_code=2, device=device_id)
        else:
            try:
                reply = await self.controller.request(request)
            except Exception as exc:
                _LOG.exception("mqtt: %s on %s failed", request.kind, device_id)
                reply = ErrorReply(error="internal", message=f"{type(exc).__name__}: {exc}",
                                   device=device_id)
        if isinstance(reply, ErrorReply):
            return reply
        for view in reply.devices:
            self._views[view.device_id] = view
        if isinstance(command, Stop):
            self._leased.discard(device_id)
            return None
        self._leased.add(device_id)
        await self._lease(device_id)
        return None

    async def _report(self, device_id: str, item: Item, reply: ErrorReply) -> None:
        """Answer a refused or failed command on the error topic."""
        _command, payload, topic = item
        client = self._client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._error(client, topic_id(device_id), topic, payload, reply.error,
                                  reply.message, reason=reply.reason, advice=reply.advice,
                                  device=device_id)

    async def _error(
        self, client: aiomqtt.Client, tid: str, topic: str, payload: bytes, error: str,
        message: str, *, reason: str | None = None, advice: str | None = None,
        device: str | None = None,
    ) -> None:
        _LOG.info("mqtt: %s on %s: %s", error, topic, message)
        body = error_payload(error, message, topic=topic, payload=payload, reason=reason,
                             advice=advice, device=device)
        await self._pub(client, self.topics.error(tid), body, qos=1)
        self.stats.errors_published += 1

    # --- the lease ---------------------------------------------------------------------------

    async def _lease(self, device_id: str) -> None:
        # The owner's view of now, not the stream's latest: a lease on a massager that
        # is no longer running would outlive its session (nothing ends it), and the
        # request below reaches an in-process owner before anything else can run.
        view = next((v for v in self.controller.snapshot() if v.device_id == device_id), None)
        if view is None or not _running(view):
            self._leased.discard(device_id)
            # Gone idle: hand the lease back, so one renewed a moment before the
            # session ended cannot guard (and end) the next session of another source.
            await self._release(device_id)
            return
        reply = await self.controller.request(
            LeaseRequest(source=SOURCE, device=device_id, seconds=self.settings.lease_s)
        )
        if isinstance(reply, ErrorReply):
            _LOG.warning("mqtt: lease on %s refused: %s", device_id, reply.message)

    async def _release(self, device_id: str) -> None:
        reply = await self.controller.request(ReleaseRequest(source=SOURCE, device=device_id))
        if isinstance(reply, ErrorReply):
            _LOG.info("mqtt: release on %s: %s", device_id, reply.message)

    async def _release_all(self) -> None:
        """A clean shutdown (the bridge is cancelled): hand every lease back, so what
        MQTT started runs on under the owner's caps. A broker that goes away is not
        this: those leases lapse (the dead man)."""
        leased, self._leased = sorted(self._leased), set()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                for device_id in leased:
                    await self._release(device_id)

    async def _renew_leases(self) -> None:
        """Renew while connected (this task lives only as long as the connection)."""
        while True:
            await asyncio.sleep(self.settings.lease_s / RENEWALS_PER_LEASE)
            for device_id in list(self._leased):
                await self._lease(device_id)


def _running(view: DeviceView) -> bool:
    """A massager MQTT may be holding on: on, wanted on, or running a program."""
    return view.desired.power or view.reported.power or view.program is not None
