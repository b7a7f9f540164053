"""The bleak-facing transport: scan, connect, write, notify, disconnect.

The same code drives a real adapter (bleak's platform backend) and the virtual
link (a bleak backend over a Bumble central): only the :class:`Radio` differs.
bleak and Bumble errors are translated into footctl errors here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import bleak_retry_connector
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakError,
)
from bleak_retry_connector import BleakClientWithServiceCache

from footctl.device.profile.match import match_profile
from footctl.device.profile.schema import Profile
from footctl.errors import DeviceUnavailable, TransportError

_LOG = logging.getLogger(__name__)

# One GATT write or read: a healthy link answers in milliseconds; a device that has
# not answered in this long is gone, and we must not block a stop behind it.
WRITE_TIMEOUT_S = 3.0

# Connecting: bleak-retry-connector makes several attempts; this bounds them all.
CONNECT_TIMEOUT_S = 20.0

# bleak-retry-connector's own per-attempt timeout (20 s) is sized for BlueZ over D-Bus.
# Over the virtual link a connect takes ~20 ms, so a shorter attempt keeps retries brisk.
VIRTUAL_ATTEMPT_TIMEOUT_S = 2.0
# Attempts bleak-retry-connector makes within one connect: it backs off between them
# per error kind; more would outlast the overall connect timeout anyway.
CONNECT_ATTEMPTS = 3

# Disconnect should be quick; a hung disconnect must not hold up shutdown.
DISCONNECT_TIMEOUT_S = 3.0


# What to do when the platform's Bluetooth stack is missing, and the way round it.
INSTALL_BLUEZ = (
    "install BlueZ and start bluetoothd (Debian/Ubuntu: sudo apt install bluez; "
    "sudo systemctl enable --now bluetooth)"
)
USE_VIRTUAL = "or try a virtual massager with --simulate PROFILE_ID"
DOCTOR = "'footctl doctor' checks the rest"
# D-Bus error names that mean nobody answers for org.bluez: bluetoothd is not running.
_NO_BLUEZ = (
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
)


async def disconnect_quietly(client: BleakClient, address: str) -> None:
    """Disconnect on purpose within :data:`DISCONNECT_TIMEOUT_S`; a failure is only
    logged (the link is being given up either way)."""
    try:
        async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
            await client.disconnect()
    except (BleakError, TimeoutError) as exc:
        _LOG.debug("%s: disconnect: %s", address, exc)


def stack_unavailable(radio: Radio, exc: BaseException) -> DeviceUnavailable:
    """A missing or unusable Bluetooth stack, as a DeviceUnavailable (exit 3) saying
    what is missing and how to get it. On Linux bleak reaches BlueZ over the D-Bus
    system bus: no bus socket surfaces as FileNotFoundError/ConnectionRefusedError from
    dbus_fast, no bluetoothd as a ServiceUnknown D-Bus error."""
    what = radio.label
    if isinstance(exc, PermissionError):
        return DeviceUnavailable(
            f"{what}: not allowed to use Bluetooth: {exc}",
            advice="run as a user allowed on the D-Bus system bus (e.g. in group "
            f"'bluetooth'), {USE_VIRTUAL}",
        )
    if isinstance(exc, OSError):
        return DeviceUnavailable(
            f"{what}: no Bluetooth stack: the D-Bus system bus "
            f"({dbus_system_address()}) is not there ({exc.strerror or exc}), so BlueZ "
            "cannot be reached",
            advice=f"{INSTALL_BLUEZ}, {USE_VIRTUAL}; {DOCTOR}",
        )
    if isinstance(exc, BleakDBusError) and exc.dbus_error in _NO_BLUEZ:
        return DeviceUnavailable(
            f"{what}: no Bluetooth stack: BlueZ (bluetoothd) is not running",
            advice=f"{INSTALL_BLUEZ}, {USE_VIRTUAL}; {DOCTOR}",
        )
    if isinstance(exc, BleakBluetoothNotAvailableError):
        reason = exc.reason
        if reason == BleakBluetoothNotAvailableReason.POWERED_OFF:
            advice = f"switch it on ('bluetoothctl power on'), {USE_VIRTUAL}"
        elif reason in (
            BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM,
            BleakBluetoothNotAvailableReason.DENIED_BY_USER,
            BleakBluetoothNotAvailableReason.DENIED_BY_UNKNOWN,
        ):
            advice = f"allow this user to use Bluetooth (group 'bluetooth'), {USE_VIRTUAL}"
        else:
            advice = f"plug in a Bluetooth LE adapter, {USE_VIRTUAL}"
        return DeviceUnavailable(f"{what}: Bluetooth not available: {exc}", advice=advice)
    return DeviceUnavailable(
        f"cannot scan on {what}: {exc}",
        advice=f"check that Bluetooth is on, {USE_VIRTUAL} (or --link to a 'footctl sim')",
    )


def dbus_system_address() -> str:
    """Where the D-Bus system bus is expected (``$DBUS_SYSTEM_BUS_ADDRESS``, else the
    standard socket)."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/var/run/dbus/system_bus_socket")


class _StaleServices(Exception):
    """An expected endpoint is missing from the discovered services."""


@dataclass(frozen=True)
class Radio:
    """Which bleak backends to use. ``None`` means the platform's Bluetooth adapter."""

    label: str = "bluetooth"
    scanner_backend: type[BaseBleakScanner] | None = None
    client_backend: type[BaseBleakClient] | None = None

    @property
    def virtual(self) -> bool:
        """True for the virtual link."""
        return self.client_backend is not None


@dataclass(frozen=True)
class Seen:
    """One device seen while scanning."""

    device: BLEDevice
    name: str | None
    rssi: int
    service_uuids: list[str]
    manufacturer_ids: list[int]
    profile: Profile | None
    reason: str

    @property
    def address(self) -> str:
        """The device's address."""
        return self.device.address

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "address": self.address,
            "name": self.name,
            "rssi": self.rssi,
            "service_uuids": self.service_uuids,
            "manufacturer_ids": self.manufacturer_ids,
            "profile": self.profile.id if self.profile else None,
            "reason": self.reason,
        }


def _scanner(
    radio: Radio, callback: Callable[[BLEDevice, AdvertisementData], None]
) -> BleakScanner:
    if radio.scanner_backend is None:
        return BleakScanner(detection_callback=callback)
    return BleakScanner(detection_callback=callback, backend=radio.scanner_backend)


async def scan(
    radio: Radio,
    profiles: dict[str, Profile],
    timeout: float,
    *,
    until: Callable[[Seen], bool] | None = None,
    on_seen: Callable[[Seen], None] | None = None,
) -> list[Seen]:
    """Scan for ``timeout`` seconds (or until ``until`` says so) and match profiles."""
    seen: dict[str, Seen] = {}
    done = asyncio.Event()

    def detected(device: BLEDevice, adv: AdvertisementData) -> None:
        name = adv.local_name or device.name
        match = match_profile(
            profiles, name, list(adv.service_uuids), list(adv.manufacturer_data)
        )
        item = Seen(
            device, name, adv.rssi, list(adv.service_uuids), list(adv.manufacturer_data),
            match.profile, match.reason,
        )
        first = device.address not in seen
        seen[device.address] = item
        if first and on_seen is not None:
            on_seen(item)
        if until is not None and until(item):
            done.set()

    try:
        async with _scanner(radio, detected):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)
    except (BleakError, OSError) as exc:
        raise stack_unavailable(radio, exc) from exc
    return sorted(seen.values(), key=lambda s: -s.rssi)


# While a lost massager is watched for, a scan that saw nothing for this long gives way
# to one connect attempt anyway: some stacks report a device only once per scan (BlueZ
# filters repeated adverts), and a missed advert must not leave us waiting forever.
ADVERT_WATCH_S = 30.0


@runtime_checkable
class Watchable(Protocol):
    """A link that can watch for its device's advertisements while it is down."""

    async def wait_advertised(self, timeout: float) -> bool:
        """Scan until the device advertises (True) or ``timeout`` passes (False)."""


class Link(Protocol):
    """What a DeviceSession needs from a link (BleLink, or a scripted fake in tests)."""

    @property
    def is_connected(self) -> bool:
        """True while the link is up."""

    async def connect(self) -> None:
        """(Re)connect and subscribe."""

    async def write(self, data: bytes) -> None:
        """Write one frame."""

    async def disconnect(self) -> None:
        """Disconnect on purpose."""


async def establish(
    radio: Radio,
    device: BLEDevice,
    name: str,
    *,
    timeout: float,
    on_disconnect: Callable[[BleakClient], None],
    use_services_cache: bool,
    advice: str,
) -> BleakClientWithServiceCache:
    """Connect to ``device`` with bleak-retry-connector's retries, all within ``timeout``.

    A timeout is a DeviceUnavailable with ``advice``; a missing or unusable Bluetooth
    stack is :func:`stack_unavailable`; any other bleak error a DeviceUnavailable."""
    kwargs: dict[str, Any] = {}
    if radio.client_backend is not None:
        kwargs["backend"] = radio.client_backend
        # A module constant is the only knob bleak-retry-connector offers.
        bleak_retry_connector.BLEAK_TIMEOUT = VIRTUAL_ATTEMPT_TIMEOUT_S
    try:
        async with asyncio.timeout(timeout):
            return await bleak_retry_connector.establish_connection(
                BleakClientWithServiceCache,
                device,
                name,
                disconnected_callback=on_disconnect,
                max_attempts=CONNECT_ATTEMPTS,
                use_services_cache=use_services_cache,
                **kwargs,
            )
    except TimeoutError as exc:
        raise DeviceUnavailable(
            f"{device.address}: no connection within {timeout:g} s", advice=advice
        ) from exc
    except BleakError as exc:
        if isinstance(exc, BleakDBusError | BleakBluetoothNotAvailableError):
            raise stack_unavailable(radio, exc) from exc
        raise DeviceUnavailable(f"{device.address}: {exc}") from exc
    except OSError as exc:  # no D-Bus socket, or the sim's TCP link went away
        raise stack_unavailable(radio, exc) from exc


@dataclass
class BleLink:
    """One connection to one massager's write and notify characteristics."""

    radio: Radio
    profile: Profile
    device: BLEDevice
    on_notify: Callable[[bytes], None]
    on_disconnect: Callable[[], None]
    _client: BleakClient | None = field(default=None, init=False)
    _write_char: BleakGATTCharacteristic | None = field(default=None, init=False)
    _closing: bool = field(default=False, init=False)

    @property
    def is_connected(self) -> bool:
        """True while the link is up."""
        return self._client is not None and self._client.is_connected

    def _disconnected(self, _client: BleakClient) -> None:
        if self._closing:
            _LOG.debug("%s: disconnected (expected)", self.device.address)
            return
        _LOG.warning("%s: link lost (unexpected disconnect)", self.device.address)
        self.on_disconnect()

    async def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Connect, find the endpoints, and subscribe to notifications.

        If an endpoint is missing, the OS's service cache is probably stale (handles
        changed after a firmware update): clear it and try once more without it."""
        try:
            await self._connect_once(timeout, use_cache=True)
        except _StaleServices as exc:
            _LOG.warning(
                "%s: %s; clearing the service cache and retrying", self.device.address, exc
            )
            await self._connect_once(timeout, use_cache=False)

    async def _connect_once(self, timeout: float, *, use_cache: bool) -> None:
        self._closing = False
        client = await establish(
            self.radio, self.device, self.profile.name, timeout=timeout,
            on_disconnect=self._disconnected, use_services_cache=use_cache,
            advice="move closer to the massager, make sure it is switched on and "
            "not connected to a phone app",
        )  # fmt: skip
        self._client = client
        try:
            await self._setup(client)
        except _StaleServices:
            if use_cache:
                with contextlib.suppress(BleakError, TimeoutError):
                    await client.clear_cache()
                await self.disconnect()
                raise
            await self.disconnect()
            raise DeviceUnavailable(
                f"{self.device.address}: no {self.profile.id} endpoints after a fresh discovery",
                advice=f"is this really a {self.profile.id} device? check --profile",
            ) from None
        except BaseException:
            await self.disconnect()
            raise

    async def _setup(self, client: BleakClient) -> None:
        gatt = self.profile.gatt
        write = client.services.get_characteristic(gatt.write_specifier)
        if write is None:
            raise _StaleServices(f"no write characteristic {gatt.write_specifier}")
        self._write_char = write
        if gatt.notify_specifier is not None:
            notify = client.services.get_characteristic(gatt.notify_specifier)
            if notify is None:
                raise _StaleServices(f"no notify characteristic {gatt.notify_specifier}")

            def received(_char: BleakGATTCharacteristic, data: bytearray) -> None:
                self.on_notify(bytes(data))

            try:
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await client.start_notify(notify, received)
            except (BleakError, TimeoutError) as exc:
                raise TransportError(f"{self.device.address}: subscribe failed: {exc}") from exc

    async def write(self, data: bytes) -> None:
        """Write one frame to the write characteristic."""
        client, char = self._client, self._write_char
        if client is None or char is None or not client.is_connected:
            raise TransportError(f"{self.device.address}: not connected")
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await client.write_gatt_char(
                    char, data, response=self.profile.gatt.write_with_response
                )
        except TimeoutError as exc:
            raise TransportError(
                f"{self.device.address}: write not answered within {WRITE_TIMEOUT_S:g} s"
            ) from exc
        except BleakError as exc:
            raise TransportError(f"{self.device.address}: write failed: {exc}") from exc

    async def wait_advertised(self, timeout: float) -> bool:
        """Scan until this massager advertises again (True) or ``timeout`` passes
        (False): a device that advertises is back in range and connectable, so the
        reconnect can go at once instead of on a backoff timer. The fresh BLEDevice
        replaces the old one (a BlueZ device object may have been removed meanwhile)."""
        seen = asyncio.Event()
        address = self.device.address.lower()

        def detected(device: BLEDevice, _adv: AdvertisementData) -> None:
            if device.address.lower() == address and not seen.is_set():
                self.device = device
                seen.set()

        try:
            async with _scanner(self.radio, detected):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(seen.wait(), timeout)
        except (BleakError, OSError) as exc:
            raise stack_unavailable(self.radio, exc) from exc
        return seen.is_set()

    async def write_to(self, endpoint: str, data: bytes) -> None:
        """Write one frame to a named endpoint of the profile (``gatt.endpoints``)."""
        client = self._client
        spec = self.profile.gatt.endpoints[endpoint]
        if client is None or not client.is_connected:
            raise TransportError(f"{self.device.address}: not connected")
        char = client.services.get_characteristic(spec.specifier)
        if char is None:
            raise TransportError(f"{self.device.address}: no characteristic for {endpoint!r}")
        response = self.profile.gatt.write_with_response
        if spec.with_response is not None:
            response = spec.with_response
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await client.write_gatt_char(char, data, response=response)
        except TimeoutError as exc:
            raise TransportError(
                f"{self.device.address}: write not answered within {WRITE_TIMEOUT_S:g} s"
            ) from exc
        except BleakError as exc:
            raise TransportError(f"{self.device.address}: write failed: {exc}") from exc

    async def disconnect(self) -> None:
        """Disconnect on purpose (logged as expected)."""
        self._closing = True
        client, self._client = self._client, None
        if client is None:
            return
        await disconnect_quietly(client, self.device.address)
