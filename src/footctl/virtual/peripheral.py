"""The virtual massager: a :class:`MassagerModel` behind a Bumble GATT server.

:meth:`VirtualMassager.create` puts a new peripheral on a :class:`VirtualWorld`'s link,
with the GATT layout and advertisement the profile describes:

* service ``gatt.service`` with a write characteristic ``gatt.write`` (both write and
  write-without-response are offered, to be lenient) and, if the profile reports
  status, a notify characteristic ``gatt.notify``;
* writes longer than the profile's MTU allows (``max_write_size``) are refused with an
  ATT error (or dropped, for write-without-response) and logged: Bumble's virtual radio
  carries any size, a cheap device does not;
* a status notification after every understood command (a ``query`` included), on
  every state change the device makes on its own (auto-off, reboot, a stuck heater) and
  every ``status.interval_seconds`` while a central is subscribed;
* the advertisement carries the local name, the first advertised service UUID (16-bit
  where it is one) and the manufacturer id, in a legacy 31-byte advert.

The model's radio faults are honoured here: ``slow_seconds`` delays acting on and
answering writes, ``mute`` stops notifications (writes are still acknowledged by the
radio, but nothing happens), ``garbage`` and ``truncate`` spoil notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bumble import att
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from footctl.device.codec import max_write_size
from footctl.device.profile.schema import Profile
from footctl.virtual.link import VirtualWorld
from footctl.virtual.model import FrameRecord, MassagerModel

__all__ = ["ADVERTISING_INTERVAL_MS", "VirtualMassager", "advertising_data"]

_LOG = logging.getLogger(__name__)

#: Advertising interval of virtual massagers (connect takes about one interval).
ADVERTISING_INTERVAL_MS = 20
#: Legacy advertising payload limit.
LEGACY_ADV_MAX = 31
#: Bound on housekeeping HCI exchanges so that close/reboot never hang.
HOUSEKEEPING_TIMEOUT_S = 2.0
_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"
# (UUID or handle, properties, value, is it the notify characteristic)
_Wanted = tuple[str | int, Characteristic.Properties, CharacteristicValue[bytes] | bytes, bool]


def _bumble_uuid(text: str) -> UUID:
    """A profile UUID (128-bit string) as Bumble's UUID, 16-bit where it is one."""
    if text.startswith("0000") and text.endswith(_BASE_UUID_TAIL):
        return UUID(text[4:8].upper())
    return UUID(text)


def advertising_data(profile: Profile) -> bytes:
    """The legacy advertisement for ``profile``: flags, service UUID, manufacturer data
    and the local name (shortened if it does not fit in 31 bytes)."""
    adv = profile.advertisement
    items: list[tuple[int, bytes]] = [(AdvertisingData.FLAGS, bytes([0x06]))]
    if adv.service_uuids:
        uuid = _bumble_uuid(adv.service_uuids[0])
        raw = uuid.to_bytes()
        kind = {
            2: AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
            4: AdvertisingData.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
        }.get(len(raw), AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS)
        items.append((kind, raw))
    if adv.manufacturer_id is not None:
        items.append(
            (AdvertisingData.MANUFACTURER_SPECIFIC_DATA, adv.manufacturer_id.to_bytes(2, "little"))
        )
    used = sum(2 + len(value) for _, value in items)
    name = adv.local_name.encode()
    room = LEGACY_ADV_MAX - used - 2
    if len(name) <= room:
        items.append((AdvertisingData.COMPLETE_LOCAL_NAME, name))
    elif room > 0:
        _LOG.warning(
            "profile %s: local name %r does not fit the 31-byte advert; shortened to %r",
            profile.id,
            adv.local_name,
            name[:room].decode(errors="ignore"),
        )
        items.append((AdvertisingData.SHORTENED_LOCAL_NAME, name[:room]))
    return bytes(AdvertisingData(items))


class VirtualMassager:
    """A simulated massager on a virtual link. Build it with :meth:`create`."""

    def __init__(
        self,
        world: VirtualWorld,
        profile: Profile,
        device: Device,
        model: MassagerModel,
    ) -> None:
        self.world = world
        self.profile = profile
        self.device = device
        self.model = model
        self.connections: list[Connection] = []
        #: Notifications sent (after faults), for tests and the sim's state.
        self.notifications_sent = 0
        self.oversize_writes = 0
        self._max_write = max_write_size(profile)
        self._status_interval = (
            profile.status.interval_seconds
            if profile.status is not None and profile.capabilities.reports_status
            else None
        )
        self._notify_char: Characteristic[bytes] | None = None
        self._write_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._notified_version = -1
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._closed = False

    # ------------------------------------------------------------------ building

    @classmethod
    async def create(
        cls,
        world: VirtualWorld,
        profile: Profile,
        address: str | None = None,
        *,
        model: MassagerModel | None = None,
        frame_logger: logging.Logger | None = None,
        advertising_interval_ms: float = ADVERTISING_INTERVAL_MS,
    ) -> VirtualMassager:
        """A powered-on, advertising virtual massager for ``profile`` on ``world``."""
        device = await world.add_peripheral_device(profile.advertisement.local_name, address)
        if model is None:
            model = MassagerModel(profile, now=time.monotonic, frame_logger=frame_logger)
        massager = cls(world, profile, device, model)
        massager._build_gatt()
        device.on(device.EVENT_CONNECTION, massager._on_connection)
        await device.start_advertising(
            advertising_data=advertising_data(profile),
            auto_restart=True,
            advertising_interval_min=advertising_interval_ms,
            advertising_interval_max=advertising_interval_ms,
        )
        massager._unsubscribe = model.subscribe(massager._kick.set)
        if massager._status_interval is not None:
            massager._task = asyncio.create_task(
                massager._status_loop(), name=f"virtual massager {profile.id} status"
            )
        _LOG.debug("virtual massager %s up at %s", profile.id, massager.address)
        return massager

    def _writer(self, endpoint: str | None) -> CharacteristicValue[bytes]:
        async def on_write(connection: Connection, value: bytes) -> None:
            await self._on_write(connection, value, endpoint)

        return CharacteristicValue(write=on_write)

    def _build_gatt(self) -> None:
        gatt = self.profile.gatt
        # The device's own MTU: a central negotiating 247 gets the profile's (23).
        self.device.gatt_server.max_mtu = gatt.mtu
        write_props = (
            Characteristic.Properties.WRITE | Characteristic.Properties.WRITE_WITHOUT_RESPONSE
        )
        notify = gatt.notify_specifier if self._status_interval is not None else None
        wanted: list[_Wanted]
        if notify is not None and notify == gatt.write_specifier:
            # One characteristic for both directions (some devices do that).
            wanted = [(
                gatt.write_specifier, write_props | Characteristic.Properties.NOTIFY,
                self._writer(None), True,
            )]
        else:
            wanted = [(gatt.write_specifier, write_props, self._writer(None), False)]
            if notify is not None:
                wanted.append((notify, Characteristic.Properties.NOTIFY, b"", True))
        for name, endpoint in gatt.endpoints.items():
            wanted.append((endpoint.specifier, write_props, self._writer(name), False))
        characteristics = self._place(wanted)
        self.device.add_service(Service(_bumble_uuid(gatt.service), characteristics))
        if self._notify_char is not None:
            self.device.on("characteristic_subscription", self._on_subscription)

    def _place(
        self,
        wanted: list[_Wanted],
    ) -> list[Characteristic[bytes]]:
        """Characteristics in handle order; one named by handle gets exactly that value
        handle (Bumble numbers attributes in order, so fillers pad the gap)."""
        by_handle = sorted((w for w in wanted if isinstance(w[0], int)), key=lambda w: w[0])
        by_uuid = [w for w in wanted if isinstance(w[0], str)]
        out: list[Characteristic[bytes]] = []
        handle = self.device.gatt_server.next_handle() + 1  # after the service declaration
        fillers = 0

        def make(
            spec: str,
            props: Characteristic.Properties,
            value: CharacteristicValue[bytes] | bytes,
            is_notify: bool,
        ) -> Characteristic[bytes]:
            pure_notify = is_notify and isinstance(value, bytes)
            perms = Characteristic.READABLE if pure_notify else Characteristic.WRITEABLE
            char: Characteristic[bytes] = Characteristic(_bumble_uuid(spec), props, perms, value)
            if is_notify:
                self._notify_char = char
            return char

        def size(props: Characteristic.Properties) -> int:
            # declaration + value (+ the CCCD of a notifying characteristic)
            return 3 if props & Characteristic.Properties.NOTIFY else 2

        for spec, props, value, is_notify in by_handle:
            assert isinstance(spec, int)
            gap = spec - 1 - handle
            if gap < 0 or gap == 1:
                raise ValueError(
                    f"profile {self.profile.id}: the virtual massager cannot place a "
                    f"characteristic at handle {spec:#06x}"
                )
            while gap > 0:
                # Fillers of 2 handles, or 3 (with a descriptor-bearing notify) for odd gaps.
                step = 3 if gap % 2 else 2
                filler_props = (
                    Characteristic.Properties.NOTIFY
                    if step == 3
                    else Characteristic.Properties.READ
                )
                out.append(Characteristic(
                    UUID(f"f00df00d-0000-4000-8000-{fillers:012x}"),
                    filler_props, Characteristic.READABLE, b"",
                ))
                fillers += 1
                gap -= step
                handle += step
            uuid = f"0000{spec:04x}-f00d-4000-8000-00805f9b34fb"  # a handle-only characteristic
            out.append(make(uuid, props, value, is_notify))
            handle += size(props)
        for spec, props, value, is_notify in by_uuid:
            assert isinstance(spec, str)
            out.append(make(spec, props, value, is_notify))
            handle += size(props)
        return out

    # ------------------------------------------------------------------ properties

    @property
    def address(self) -> str:
        """The massager's address as bleak shows it (``"C4:..."``)."""
        return str(self.device.random_address.to_string(with_type_qualifier=False))

    @property
    def name(self) -> str:
        """The advertised local name."""
        return self.profile.advertisement.local_name

    @property
    def frames(self) -> list[FrameRecord]:
        """Every frame received (bounded, oldest first)."""
        return list(self.model.frames)

    @property
    def connected(self) -> bool:
        """True while a central is connected."""
        return bool(self.connections)

    @property
    def dropped(self) -> bool:
        """True while out of range."""
        return self.world.is_dropped(self.device)

    # ------------------------------------------------------------------ events

    def _on_connection(self, connection: Connection) -> None:
        self.connections.append(connection)
        self.model.link_up()  # a device that needs a wake frame sleeps until it gets one
        _LOG.debug("%s: connected to %s", self.profile.id, connection.peer_address)

        def on_disconnection(reason: int) -> None:
            if connection in self.connections:
                self.connections.remove(connection)
            _LOG.debug("%s: disconnected (reason %#04x)", self.profile.id, reason)

        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)

    def _on_subscription(
        self,
        _connection: Connection,
        characteristic: Characteristic[bytes],
        notify_enabled: bool,
        _indicate_enabled: bool,
    ) -> None:
        if notify_enabled and characteristic is self._notify_char:
            self._kick.set()  # a real device tells a new subscriber its state soon

    async def _on_write(
        self, _connection: Connection, value: bytes, endpoint: str | None = None
    ) -> None:
        data = bytes(value)
        if len(data) > self._max_write:
            self.oversize_writes += 1
            self.model.receive(data, max_size=self._max_write, endpoint=endpoint)
            raise att.ATT_Error(
                error_code=att.ATT_INVALID_ATTRIBUTE_LENGTH_ERROR,
                message=f"{len(data)}-byte write, the device takes {self._max_write}",
            )
        async with self._write_lock:  # one frame at a time, in order, as a device does
            if self.model.slow_seconds > 0:
                await asyncio.sleep(self.model.slow_seconds)
            record = self.model.receive(data, endpoint=endpoint)
            if record.outcome in ("applied", "ignored") and not self.model.ignore_writes:
                # An answer to every understood command, a query included.
                await self.notify()

    # ------------------------------------------------------------------ status

    async def notify(self) -> bool:
        """Send a status notification to subscribers now (faults applied).

        Returns False if nothing was sent (muted, no status, nobody connected, closed).
        """
        if self._notify_char is None or self._closed or not self.connections:
            return False
        self.model.tick()
        self._notified_version = self.model.version
        frame = self.model.status_frame()
        if frame is None:
            return False
        try:
            await self.device.notify_subscribers(self._notify_char, frame)
        except Exception as exc:  # a link going down under us is not the device's problem
            _LOG.debug("%s: notification failed: %s", self.profile.id, exc)
            return False
        self.notifications_sent += 1
        return True

    async def _status_loop(self) -> None:
        interval = self._status_interval or 1.0
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            wait = interval - (loop.time() - last)
            deadline = self.model.next_event_at()
            if deadline is not None:
                wait = min(wait, deadline - self.model.now + 0.001)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), wait)
            self._kick.clear()
            self.model.tick()
            due = loop.time() - last >= interval
            if due or self.model.version != self._notified_version:
                try:
                    await self.notify()
                except Exception:  # keep the device alive whatever happens
                    _LOG.exception("%s: status loop", self.profile.id)
                last = loop.time()

    # ------------------------------------------------------------------ faults and life

    async def drop(self) -> None:
        """Go out of range: the link dies, the massager is no longer heard."""
        await self.world.drop(self.device)

    async def restore(self) -> None:
        """Come back in range (advertising again, connectable)."""
        await self.world.restore(self.device)

    async def reboot(self, *, disconnect: bool = True) -> None:
        """Power-cycle the device: state back to off; the link (if any) is lost."""
        self.model.reset()
        if disconnect:
            await self._disconnect_all()

    async def _disconnect_all(self) -> None:
        for connection in list(self.connections):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(HOUSEKEEPING_TIMEOUT_S):
                    await connection.disconnect()

    async def close(self) -> None:
        """Stop the status loop, advertising and links. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self.dropped:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(HOUSEKEEPING_TIMEOUT_S):
                    await self.device.stop_advertising()
            await self._disconnect_all()
