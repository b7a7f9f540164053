"""A bleak backend over a Bumble central: the real bleak API on the virtual radio.

:func:`make_backend` builds a scanner class and a client class bound to one Bumble
central :class:`~bumble.device.Device`. Pass them to bleak as custom backends::

    scanner_cls, client_cls = make_backend(central)
    BleakScanner(callback, backend=scanner_cls)
    BleakClient(device, backend=client_cls)
    establish_connection(BleakClient, device, name, backend=client_cls)

Errors are bleak's: a connect that finds no device in time raises the built-in
``TimeoutError`` (what bleak's own backends raise and what bleak-retry-connector counts
as a timeout); a lost link or a refused connection raises ``BleakError``; an ATT error
response raises ``BleakGATTProtocolError``. A link dropping under an operation never
surfaces as ``CancelledError`` (Bumble cancels its pending request on disconnection);
only a real cancellation of the calling task does.

As with bleak's BlueZ, WinRT and CoreBluetooth backends, the disconnected callback runs
on every disconnection of an established connection, including one the caller asked
for with ``disconnect()``; it is scheduled with ``call_soon``, never called re-entrantly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import (
    AdvertisementData,
    AdvertisementDataCallback,
    BaseBleakScanner,
)
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bumble import att, core, hci
from bumble.core import AdvertisingData
from bumble.device import Advertisement, Connection, Device
from bumble.gatt_client import CharacteristicProxy, Client

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")

#: The ATT MTU the virtual central asks for (what BlueZ and Android commonly get).
REQUESTED_MTU = 247
#: bleak's default connect timeout when the caller passes none.
DEFAULT_TIMEOUT_S = 10.0
#: Extra time given to Bumble's own connect timeout before we abandon the attempt.
CONNECT_GRACE_S = 0.5
#: Bounds for housekeeping HCI exchanges (cancel, disconnect) so shutdown never hangs.
HOUSEKEEPING_TIMEOUT_S = 2.0

_UUID_LISTS = (
    AdvertisingData.Type.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
)
_SERVICE_DATA = (
    AdvertisingData.Type.SERVICE_DATA_16_BIT_UUID,
    AdvertisingData.Type.SERVICE_DATA_32_BIT_UUID,
    AdvertisingData.Type.SERVICE_DATA_128_BIT_UUID,
)


def bleak_uuid(value: core.UUID) -> str:
    """Bumble's UUID ("UUID-16:FFF0", upper case) in bleak's form (128-bit, lower)."""
    return str(uuid.UUID(bytes=value.to_bytes(force_128=True)[::-1]))


def address_text(address: hci.Address) -> str:
    """The address as bleak shows it: ``"AA:BB:CC:DD:EE:FF"`` without a type suffix."""
    return address.to_string(with_type_qualifier=False)


def advertisement_data(adv: Advertisement) -> AdvertisementData:
    """bleak's view of one Bumble advertisement."""
    data = adv.data
    name = data.get(AdvertisingData.Type.COMPLETE_LOCAL_NAME) or data.get(
        AdvertisingData.Type.SHORTENED_LOCAL_NAME
    )
    service_uuids: list[str] = []
    for ad_type in _UUID_LISTS:
        for raw in data.get_all(ad_type, raw=True):
            size = 2 if ad_type <= 0x03 else 4 if ad_type <= 0x05 else 16
            for item in AdvertisingData.uuid_list_to_objects(raw, size):
                text = bleak_uuid(item)
                if text not in service_uuids:
                    service_uuids.append(text)
    manufacturer_data: dict[int, bytes] = {}
    for company, payload in data.get_all(AdvertisingData.Type.MANUFACTURER_SPECIFIC_DATA):
        manufacturer_data[company] = bytes(payload)
    service_data: dict[str, bytes] = {}
    for ad_type in _SERVICE_DATA:
        for raw in data.get_all(ad_type, raw=True):
            size = {0x16: 2, 0x20: 4, 0x21: 16}[int(ad_type)]
            key = bleak_uuid(core.UUID.from_bytes(raw[:size]))
            service_data[key] = bytes(raw[size:])
    tx_power: int | None = None
    tx_raw = data.get(AdvertisingData.Type.TX_POWER_LEVEL, raw=True)
    if tx_raw:
        tx_power = int.from_bytes(tx_raw[:1], "little", signed=True)
    return AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer_data,
        service_data=service_data,
        service_uuids=service_uuids,
        tx_power=tx_power,
        rssi=adv.rssi,
        platform_data=(adv.address, adv),
    )


def _properties(bits: int) -> list[CharacteristicPropertyName]:
    return [name for bit, name in sorted(CHARACTERISTIC_PROPERTIES.items()) if bits & bit]


def _map_bumble_error(where: str, exc: BaseException) -> BaseException:
    """The bleak-side exception for a Bumble failure."""
    if isinstance(exc, att.ATT_Error):
        return BleakGATTProtocolError(exc.error_code)
    if isinstance(exc, core.TimeoutError | TimeoutError):
        return TimeoutError(f"{where}: timed out")
    return BleakError(f"{where}: {exc or type(exc).__name__}")


def _really_cancelled() -> bool:
    """True when the running task itself is being cancelled (not a Bumble future)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _Central:
    """Shared state of one Bumble central: scanning, connect serialisation, owners.

    There is one per central device (see :meth:`of`), however many backends use it.
    """

    @classmethod
    def of(cls, device: Device) -> _Central:
        """The shared state of ``device``, created on first use."""
        found = getattr(device, "_footctl_central", None)
        if isinstance(found, _Central):
            return found
        state = cls(device)
        setattr(device, "_footctl_central", state)  # noqa: B010 - Device has no slot for it
        return state

    def __init__(self, device: Device) -> None:
        self.device = device
        self.scan_listeners: list[Callable[[Advertisement], None]] = []
        self.scan_lock = asyncio.Lock()
        self.connect_lock = asyncio.Lock()
        self.owned: set[Connection] = set()
        self.known: dict[str, hci.Address] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)

    def _on_advertisement(self, adv: Advertisement) -> None:
        self.known[address_text(adv.address)] = adv.address
        for listener in list(self.scan_listeners):
            listener(adv)

    async def add_scanner(self, listener: Callable[[Advertisement], None]) -> None:
        async with self.scan_lock:
            if listener in self.scan_listeners:
                return
            if not self.scan_listeners:
                try:
                    async with asyncio.timeout(HOUSEKEEPING_TIMEOUT_S):
                        await self.device.start_scanning(filter_duplicates=False)
                except (core.BaseBumbleError, TimeoutError) as exc:
                    raise BleakError(f"cannot start scanning: {exc or 'no answer'}") from exc
            self.scan_listeners.append(listener)

    async def remove_scanner(self, listener: Callable[[Advertisement], None]) -> None:
        async with self.scan_lock:
            if listener not in self.scan_listeners:
                return
            self.scan_listeners.remove(listener)
            if not self.scan_listeners and self.device.is_scanning:
                try:
                    async with asyncio.timeout(HOUSEKEEPING_TIMEOUT_S):
                        await self.device.stop_scanning()
                except (core.BaseBumbleError, TimeoutError) as exc:
                    # the radio is gone (a remote sim died): nothing is scanning any more
                    _LOG.debug("stop scanning: %s", exc or "no answer")

    def peer_address(self, text: str) -> hci.Address:
        """The Bumble address (with its type) for an address string."""
        if (known := self.known.get(text.upper())) is not None:
            return known
        try:
            return hci.Address(text)  # random unless it ends in "/P"
        except (ValueError, core.BaseBumbleError) as exc:
            raise BleakError(f"not a Bluetooth address: {text!r}") from exc

    async def connect(self, peer: hci.Address, budget_s: float) -> Connection:
        """One LE connection attempt, serialised (the controller allows one at a time)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        async with asyncio.timeout(budget_s):
            await self.connect_lock.acquire()
        handed_over = False
        try:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            try:
                # Bumble times the attempt out itself (and cancels it in the
                # controller); the outer bound only guards against a controller that
                # never reports the cancellation (Bumble's stock one).
                async with asyncio.timeout(remaining + CONNECT_GRACE_S):
                    connection = await self.device.connect(
                        peer, transport=core.PhysicalTransport.LE, timeout=remaining
                    )
            except (asyncio.CancelledError, TimeoutError):
                # The controller may still be trying to connect: cancel that (and hang
                # up a connection that won the race) before anyone connects again.
                handed_over = True
                self._spawn(self._abort_connect(peer))
                raise
            self.owned.add(connection)
            return connection
        finally:
            if not handed_over:
                self.connect_lock.release()

    async def _abort_connect(self, peer: hci.Address) -> None:
        try:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(HOUSEKEEPING_TIMEOUT_S):
                    await self.device.send_sync_command(
                        hci.HCI_LE_Create_Connection_Cancel_Command()
                    )
            for _ in range(5):  # let a completed connection's events arrive
                await asyncio.sleep(0)
            for connection in list(self.device.connections.values()):
                if connection.peer_address == peer and connection not in self.owned:
                    _LOG.debug("hanging up orphan connection to %s", peer)
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(HOUSEKEEPING_TIMEOUT_S):
                            await connection.disconnect()
        finally:
            self.connect_lock.release()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def alive(self, connection: Connection) -> bool:
        """True while the host still knows ``connection``."""
        return self.device.connections.get(connection.handle) is connection


def make_backend(
    central: Device,
) -> tuple[type[BaseBleakScanner], type[BaseBleakClient]]:
    """bleak scanner and client backend classes that use ``central``."""
    shared = _Central.of(central)

    class VirtualBleakScanner(BaseBleakScanner):
        """Scans on the virtual radio."""

        def __init__(
            self,
            detection_callback: AdvertisementDataCallback | None = None,
            service_uuids: list[str] | None = None,
            scanning_mode: str = "active",
            **kwargs: Any,
        ) -> None:
            super().__init__(detection_callback, service_uuids)
            self._scanning_mode = scanning_mode

        async def start(self) -> None:
            self.seen_devices = {}
            await shared.add_scanner(self._on_advertisement)

        async def stop(self) -> None:
            await shared.remove_scanner(self._on_advertisement)

        def _on_advertisement(self, adv: Advertisement) -> None:
            data = advertisement_data(adv)
            if not self.is_allowed_uuid(data.service_uuids):
                return
            text = address_text(adv.address)
            device = self.create_or_update_device(text, text, data.local_name, adv.address, data)
            self.call_detection_callbacks(device, data)

    class VirtualBleakClient(BaseBleakClient):
        """A GATT client on the virtual radio."""

        def __init__(
            self,
            address_or_ble_device: BLEDevice | str,
            *,
            disconnected_callback: Callable[[], None] | None = None,
            timeout: float = DEFAULT_TIMEOUT_S,
            **kwargs: Any,
        ) -> None:
            super().__init__(
                address_or_ble_device,
                disconnected_callback=disconnected_callback,
                timeout=timeout,
            )
            self._peer_name: str | None = None
            if isinstance(address_or_ble_device, BLEDevice):
                self._peer_name = address_or_ble_device.name
                details = address_or_ble_device.details
                self._peer = (
                    details
                    if isinstance(details, hci.Address)
                    else shared.peer_address(address_or_ble_device.address)
                )
            else:
                self._peer = shared.peer_address(address_or_ble_device)
            self.address = address_text(self._peer)
            self._connection: Connection | None = None
            self._established = False
            self._ops: set[asyncio.Future[Any]] = set()
            self._subscribers: dict[int, Callable[[bytes], None]] = {}

        # ------------------------------------------------------------ state

        @property
        def name(self) -> str:
            return self._peer_name or self.address.replace(":", "-")

        @property
        def mtu_size(self) -> int:
            connection = self._connection
            return connection.att_mtu if connection is not None else att.ATT_DEFAULT_MTU

        @property
        def is_connected(self) -> bool:
            connection = self._connection
            return connection is not None and shared.alive(connection)

        def _live(self, what: str) -> Connection:
            connection = self._connection
            if connection is None or not shared.alive(connection):
                raise BleakError(f"{self.address}: {what}: not connected")
            return connection

        def _on_disconnection(self, connection: Connection, reason: int) -> None:
            shared.owned.discard(connection)
            if self._connection is not connection:
                return
            self._connection = None
            self._subscribers.clear()
            for op in list(self._ops):
                op.cancel()
            established, self._established = self._established, False
            _LOG.debug("%s: disconnected (reason 0x%02X)", self.address, reason)
            callback = self._disconnected_callback
            if established and callback is not None:
                asyncio.get_running_loop().call_soon(callback)

        async def _guard(self, what: str, make: Callable[[Client], Awaitable[_T]]) -> _T:
            """Run one GATT exchange; a link loss under it becomes a BleakError."""
            connection = self._live(what)
            op: asyncio.Future[_T] = asyncio.ensure_future(make(connection.gatt_client))
            self._ops.add(op)
            try:
                return await op
            except asyncio.CancelledError:
                if _really_cancelled():
                    raise
                raise BleakError(f"{self.address}: {what}: link lost") from None
            except core.BaseBumbleError as exc:
                raise _map_bumble_error(f"{self.address}: {what}", exc) from exc
            finally:
                self._ops.discard(op)

        # ------------------------------------------------------------ connection

        async def connect(self, pair: bool, **kwargs: Any) -> None:
            if self.is_connected:
                return
            timeout = float(kwargs.get("timeout") or self._timeout)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            where = f"{self.address}: connect"
            try:
                connection = await shared.connect(self._peer, timeout)
            except (TimeoutError, core.TimeoutError) as exc:
                raise TimeoutError(f"{where}: device not found within {timeout:g} s") from exc
            except core.BaseBumbleError as exc:
                raise BleakError(f"{where}: {exc}") from exc

            self._connection = connection
            connection.on(
                Connection.EVENT_DISCONNECTION,
                lambda reason: self._on_disconnection(connection, reason),
            )
            try:
                if not shared.alive(connection):
                    raise BleakError(f"{where}: the device ended the connection")
                async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                    await self._guard("MTU exchange", lambda c: c.request_mtu(REQUESTED_MTU))
                    self.services = await self._discover()
            except BaseException as exc:
                await self._hang_up(connection)
                if isinstance(exc, asyncio.CancelledError | BleakError):
                    raise
                if isinstance(exc, TimeoutError):
                    raise TimeoutError(f"{where}: service discovery timed out") from exc
                raise
            if not shared.alive(connection):
                raise BleakError(f"{where}: the device ended the connection")
            self._established = True
            _LOG.debug("%s: connected, MTU %d", self.address, connection.att_mtu)

        async def _discover(self) -> BleakGATTServiceCollection:
            services = await self._guard("service discovery", lambda c: c.discover_services())
            collection = BleakGATTServiceCollection()
            for service in services:
                await self._guard(
                    "characteristic discovery",
                    lambda c, s=service: c.discover_characteristics([], s),  # type: ignore[misc]
                )
                bleak_service = BleakGATTService(service, service.handle, bleak_uuid(service.uuid))
                collection.add_service(bleak_service)
                for proxy in service.characteristics:
                    await self._guard(
                        "descriptor discovery",
                        lambda c, p=proxy: c.discover_descriptors(p),  # type: ignore[misc]
                    )
                    characteristic = BleakGATTCharacteristic(
                        proxy,
                        proxy.handle,
                        bleak_uuid(proxy.uuid),
                        _properties(int(proxy.properties)),
                        lambda: self.mtu_size - 3,
                        bleak_service,
                    )
                    collection.add_characteristic(characteristic)
                    for descriptor in proxy.descriptors:
                        collection.add_descriptor(
                            BleakGATTDescriptor(
                                descriptor,
                                descriptor.handle,
                                bleak_uuid(descriptor.type),
                                characteristic,
                            )
                        )
            return collection

        async def _hang_up(self, connection: Connection) -> None:
            """Disconnect, bounded in time; never raises."""
            if shared.alive(connection):
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(HOUSEKEEPING_TIMEOUT_S):
                        await connection.disconnect()
            if self._connection is connection:
                self._on_disconnection(connection, hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR)

        async def disconnect(self) -> None:
            connection = self._connection
            if connection is None:
                return
            await asyncio.shield(self._hang_up(connection))

        async def pair(self, *args: Any, **kwargs: Any) -> None:
            raise NotImplementedError("the virtual radio does not pair")

        async def unpair(self) -> None:
            raise NotImplementedError("the virtual radio does not pair")

        # ------------------------------------------------------------ I/O

        async def read_gatt_char(
            self,
            characteristic: BleakGATTCharacteristic,
            *,
            use_cached: bool = False,
            **kwargs: Any,
        ) -> bytearray:
            handle = characteristic.handle
            value = await self._guard("read", lambda c: c.read_value(handle))
            return bytearray(value)

        async def read_gatt_descriptor(
            self,
            descriptor: BleakGATTDescriptor,
            *,
            use_cached: bool = False,
            **kwargs: Any,
        ) -> bytearray:
            handle = descriptor.handle
            value = await self._guard("read descriptor", lambda c: c.read_value(handle))
            return bytearray(value)

        async def write_gatt_char(
            self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
        ) -> None:
            handle, value = characteristic.handle, bytes(data)
            if not response:
                # A command: queued to the controller synchronously, nothing to await.
                connection = self._live("write")
                await connection.gatt_client.write_value(handle, value, with_response=False)
                return
            await self._guard("write", lambda c: c.write_value(handle, value, with_response=True))

        async def write_gatt_descriptor(
            self, descriptor: BleakGATTDescriptor, data: SizedBuffer
        ) -> None:
            handle, value = descriptor.handle, bytes(data)
            await self._guard(
                "write descriptor", lambda c: c.write_value(handle, value, with_response=True)
            )

        async def start_notify(
            self,
            characteristic: BleakGATTCharacteristic,
            callback: NotifyCallback,
            **kwargs: Any,
        ) -> None:
            proxy = characteristic.obj
            if not isinstance(proxy, CharacteristicProxy):
                raise BleakError(f"{characteristic} does not come from this connection")

            def received(value: bytes) -> None:
                callback(bytearray(value))

            old = self._subscribers.pop(characteristic.handle, None)
            if old is not None:
                await self._guard("unsubscribe", lambda c: c.unsubscribe(proxy, old))
            await self._guard("subscribe", lambda c: c.subscribe(proxy, received))
            self._subscribers[characteristic.handle] = received

        async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
            proxy = characteristic.obj
            subscriber = self._subscribers.pop(characteristic.handle, None)
            if subscriber is None or not isinstance(proxy, CharacteristicProxy):
                return
            await self._guard("unsubscribe", lambda c: c.unsubscribe(proxy, subscriber))

    return VirtualBleakScanner, VirtualBleakClient


__all__ = ["REQUESTED_MTU", "advertisement_data", "bleak_uuid", "make_backend"]
