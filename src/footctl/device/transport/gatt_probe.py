"""Raw GATT access for the authoring tools (``explore``, ``sniff``): any characteristic
of any device, with no profile.

The same :class:`~footctl.device.transport.ble.Radio` as every other command, so it works on
a real adapter and on the virtual link. bleak errors become footctl errors here.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakError

from footctl.device.transport.ble import (
    CONNECT_TIMEOUT_S,
    WRITE_TIMEOUT_S,
    Radio,
    Seen,
    disconnect_quietly,
    establish,
    scan,
)
from footctl.errors import DeviceUnavailable, TransportError

_LOG = logging.getLogger(__name__)

__all__ = [
    "CharacteristicInfo",
    "DescriptorInfo",
    "GattDump",
    "Probe",
    "ServiceInfo",
    "find_device",
]

Progress = Callable[[str], None]
Received = Callable[["CharacteristicInfo", bytes], None]


@dataclass(frozen=True)
class DescriptorInfo:
    """One descriptor and, if it could be read, its value."""

    uuid: str
    handle: int
    value: bytes | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (values as spaced hex)."""
        return {
            "uuid": self.uuid,
            "handle": self.handle,
            "value": None if self.value is None else self.value.hex(" "),
            "error": self.error,
        }


@dataclass(frozen=True)
class CharacteristicInfo:
    """One characteristic: properties as bleak names them (``write-without-response``)."""

    uuid: str
    handle: int
    service_uuid: str
    properties: tuple[str, ...]
    value: bytes | None = None
    error: str | None = None
    descriptors: tuple[DescriptorInfo, ...] = ()

    @property
    def readable(self) -> bool:
        """The device lets us read it."""
        return "read" in self.properties

    @property
    def writable(self) -> bool:
        """Writable, with or without response."""
        return "write" in self.properties or "write-without-response" in self.properties

    @property
    def notifies(self) -> bool:
        """It can notify or indicate."""
        return "notify" in self.properties or "indicate" in self.properties

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "uuid": self.uuid,
            "handle": self.handle,
            "properties": list(self.properties),
            "value": None if self.value is None else self.value.hex(" "),
            "error": self.error,
            "descriptors": [d.to_dict() for d in self.descriptors],
        }


@dataclass(frozen=True)
class ServiceInfo:
    """One primary service and its characteristics, in handle order."""

    uuid: str
    handle: int
    characteristics: tuple[CharacteristicInfo, ...]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "uuid": self.uuid,
            "handle": self.handle,
            "characteristics": [c.to_dict() for c in self.characteristics],
        }


@dataclass(frozen=True)
class GattDump:
    """What a scan and a connection showed of one device."""

    address: str
    name: str | None
    rssi: int
    service_uuids: tuple[str, ...]
    manufacturer_ids: tuple[int, ...]
    mtu: int
    services: tuple[ServiceInfo, ...]

    def characteristics(self) -> list[CharacteristicInfo]:
        """Every characteristic of every service, in handle order."""
        return [c for s in self.services for c in s.characteristics]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "address": self.address,
            "name": self.name,
            "rssi": self.rssi,
            "advertised_service_uuids": list(self.service_uuids),
            "manufacturer_ids": list(self.manufacturer_ids),
            "mtu": self.mtu,
            "services": [s.to_dict() for s in self.services],
        }


def _matches(who: str, seen: Seen) -> bool:
    want = who.lower()
    if seen.address.lower() == want:
        return True
    name = (seen.name or "").lower()
    return bool(name) and (name == want or fnmatch.fnmatchcase(name, want))


async def find_device(radio: Radio, who: str, timeout: float, progress: Progress) -> Seen:
    """Scan until a device whose address or advertised name is ``who`` (an fnmatch
    glob on the name is allowed) shows up; DeviceUnavailable (exit 3) if none does."""
    progress(f"scanning {radio.label} for {who} (up to {timeout:g} s)...")
    seen = await scan(radio, {}, timeout, until=lambda s: _matches(who, s))
    for s in seen:
        if _matches(who, s):
            progress(f"found {s.address} ({s.name or 'no name'}, {s.rssi} dBm)")
            return s
    names = ", ".join(f"{s.address} {s.name or '(no name)'}" for s in seen[:5]) or "none"
    raise DeviceUnavailable(
        f"no device {who!r} seen within {timeout:g} s (seen: {names})",
        advice="check the address or name with 'footctl scan', or give --scan-timeout longer",
    )


@dataclass
class Probe:
    """A connection to any device, for reading, subscribing and writing raw bytes.

    Use as ``async with Probe(radio, seen) as probe:``; disconnects on exit."""

    radio: Radio
    seen: Seen
    timeout: float = CONNECT_TIMEOUT_S
    on_disconnect: Callable[[], None] | None = None
    _client: BleakClient | None = field(default=None, init=False)
    _chars: dict[int, BleakGATTCharacteristic] = field(default_factory=dict, init=False)
    _closing: bool = field(default=False, init=False)

    async def __aenter__(self) -> Probe:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    @property
    def client(self) -> BleakClient:
        """The connected bleak client."""
        if self._client is None or not self._client.is_connected:
            raise TransportError(f"{self.seen.address}: not connected")
        return self._client

    def _disconnected(self, _client: BleakClient) -> None:
        if not self._closing:
            _LOG.warning("%s: link lost", self.seen.address)
            if self.on_disconnect is not None:
                self.on_disconnect()

    async def connect(self) -> None:
        """Connect (with bleak-retry-connector's retries) and discover every service."""
        # A fresh discovery, never the OS's cache: explore shows what is there now.
        self._client = await establish(
            self.radio, self.seen.device, self.seen.name or self.seen.address,
            timeout=self.timeout, on_disconnect=self._disconnected, use_services_cache=False,
            advice="move closer, and make sure no phone app holds the connection",
        )  # fmt: skip
        self._chars = {
            c.handle: c for s in self._client.services for c in s.characteristics
        }

    async def disconnect(self) -> None:
        """Disconnect on purpose; never raises."""
        self._closing = True
        client, self._client = self._client, None
        if client is None:
            return
        await disconnect_quietly(client, self.seen.address)

    async def _read(self, what: str, coro: Any) -> tuple[bytes | None, str | None]:
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                return bytes(await coro), None
        except TimeoutError:
            return None, f"{what}: no answer within {WRITE_TIMEOUT_S:g} s"
        except BleakError as exc:
            return None, f"{what}: {exc}"

    async def dump(self, *, read_values: bool = True) -> GattDump:
        """Every service, characteristic and descriptor; with ``read_values``, the
        value of every readable characteristic and of every descriptor."""
        client = self.client
        services: list[ServiceInfo] = []
        for service in sorted(client.services, key=lambda s: s.handle):
            chars: list[CharacteristicInfo] = []
            for char in sorted(service.characteristics, key=lambda c: c.handle):
                value: bytes | None = None
                error: str | None = None
                if read_values and "read" in char.properties:
                    value, error = await self._read("read", client.read_gatt_char(char))
                descriptors: list[DescriptorInfo] = []
                for desc in sorted(char.descriptors, key=lambda d: d.handle):
                    dvalue: bytes | None = None
                    derror: str | None = None
                    if read_values:
                        dvalue, derror = await self._read(
                            "read descriptor", client.read_gatt_descriptor(desc)
                        )
                    descriptors.append(DescriptorInfo(desc.uuid, desc.handle, dvalue, derror))
                chars.append(CharacteristicInfo(
                    char.uuid, char.handle, service.uuid, tuple(char.properties),
                    value, error, tuple(descriptors),
                ))
            services.append(ServiceInfo(service.uuid, service.handle, tuple(chars)))
        seen = self.seen
        return GattDump(
            seen.address, seen.name, seen.rssi, tuple(seen.service_uuids),
            tuple(seen.manufacturer_ids), client.mtu_size, tuple(services),
        )

    def _char(self, info: CharacteristicInfo) -> BleakGATTCharacteristic:
        char = self._chars.get(info.handle)
        if char is None:
            raise TransportError(f"{self.seen.address}: no characteristic at {info.handle:#06x}")
        return char

    async def subscribe(self, info: CharacteristicInfo, received: Received) -> None:
        """Subscribe to one characteristic's notifications (or indications)."""

        def on_data(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            received(info, bytes(data))

        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self.client.start_notify(self._char(info), on_data)
        except (BleakError, TimeoutError) as exc:
            raise TransportError(
                f"{self.seen.address}: subscribe to {info.uuid} failed: {exc}"
            ) from exc

    async def write(self, info: CharacteristicInfo, data: bytes, *, response: bool) -> None:
        """Write raw bytes to one characteristic."""
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self.client.write_gatt_char(self._char(info), data, response=response)
        except TimeoutError as exc:
            raise TransportError(
                f"{self.seen.address}: write not answered within {WRITE_TIMEOUT_S:g} s"
            ) from exc
        except BleakError as exc:
            raise TransportError(f"{self.seen.address}: write failed: {exc}") from exc
