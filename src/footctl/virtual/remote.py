"""The app's side of the virtual radio: a Bumble central, and the bleak backends on it.

In one process the central sits on the world's link (:func:`radio_for_world`). In
the two-process shape the ``footctl sim`` process serves a controller over TCP
(:func:`footctl.virtual.link.serve_controller_tcp`) and the app runs its Bumble host
over ``tcp-client:HOST:PORT`` (:func:`radio_for_link`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner
from bumble import hci
from bumble.device import Device
from bumble.host import Host
from bumble.transport import open_transport

from footctl.virtual.bleak_backend import make_backend
from footctl.virtual.link import VirtualWorld, random_static_address

_LOG = logging.getLogger(__name__)

#: How long the app waits for the sim's controller to answer at start-up.
OPEN_TIMEOUT_S = 5.0

Closer = Callable[[], Awaitable[None]]


async def open_remote_central(
    address: str, *, name: str = "footctl-central"
) -> tuple[Device, Closer]:
    """A powered-on Bumble central over ``tcp-client:ADDRESS`` (``"HOST:PORT"``).

    Returns the device and an async closer that closes the transport.
    """
    spec = address if address.startswith("tcp-client:") else f"tcp-client:{address}"
    try:
        transport = await asyncio.wait_for(open_transport(spec), OPEN_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(f"cannot reach the virtual radio at {address}: {exc}") from exc
    host = Host(transport.source, transport.sink)
    device = Device(name=name, address=hci.Address(random_static_address(set())), host=host)
    try:
        await asyncio.wait_for(device.power_on(), OPEN_TIMEOUT_S)
    except BaseException:
        await transport.close()
        raise

    async def close() -> None:
        with contextlib.suppress(Exception):
            await transport.close()

    return device, close


@dataclass
class VirtualRadio:
    """The bleak backends a DeviceSession uses to reach virtual massagers."""

    scanner_backend: type[BaseBleakScanner]
    client_backend: type[BaseBleakClient]
    central: Device
    label: str = "virtual"
    _closer: Closer | None = field(default=None, repr=False)

    @property
    def virtual(self) -> bool:
        """Always True (mirrors ``footctl.device.transport.ble.Radio.virtual``)."""
        return True

    async def close(self) -> None:
        """Release the central (and its transport, if remote). Idempotent."""
        closer, self._closer = self._closer, None
        if closer is not None:
            await closer()


async def radio_for_world(world: VirtualWorld) -> VirtualRadio:
    """A new central on ``world``'s link, with bleak backends bound to it."""
    central = await world.add_central_device()
    scanner, client = make_backend(central)

    async def close() -> None:
        with contextlib.suppress(Exception):
            for connection in list(central.connections.values()):
                async with asyncio.timeout(1.0):
                    await connection.disconnect()

    return VirtualRadio(scanner, client, central, label="virtual", _closer=close)


async def radio_for_link(address: str) -> VirtualRadio:
    """A central over TCP to a ``footctl sim`` process serving controllers at ``address``."""
    central, closer = await open_remote_central(address)
    scanner, client = make_backend(central)
    return VirtualRadio(scanner, client, central, label=f"link {address}", _closer=closer)


__all__ = ["VirtualRadio", "open_remote_central", "radio_for_link", "radio_for_world"]
