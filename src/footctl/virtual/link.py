"""The virtual radio: Bumble controllers on one in-process link.

A :class:`VirtualWorld` owns one :class:`bumble.link.LocalLink`. Every virtual device
(a simulated massager, the app's central) gets its own controller on that link and a
Bumble :class:`~bumble.device.Device` on top of it. The world can also simulate going
out of range (:meth:`VirtualWorld.drop` / :meth:`VirtualWorld.restore`), refuse
connections, and hand a fresh controller to another process over TCP
(:func:`serve_controller_tcp`), so a separate app process can run its Bumble host
over ``tcp-client:HOST:PORT``.

Two faults of Bumble's virtual controller are fixed here (see DESIGN.md):

* on LE Create Connection Cancel it never sends the failing LE Connection Complete
  event, so ``Device.connect(timeout=...)`` never returns and the next connect fails
  with COMMAND_DISALLOWED;
* it has no supervision timeout, so "out of range" is simulated by signalling the
  disconnection to both sides and moving the controller onto an empty link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Literal

from bumble import hci, ll
from bumble.controller import Controller
from bumble.device import Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink, PacketParser

_LOG = logging.getLogger(__name__)

# What a real link reports when the peer stops answering (supervision timeout).
OUT_OF_RANGE_REASON = hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR
# What a peripheral that does not want us says.
REFUSED_REASON = hci.HCI_ErrorCode.CONNECTION_REJECTED_DUE_TO_LIMITED_RESOURCES_ERROR
# What the link says when the host of a controller went away (its process died).
HOST_GONE_REASON = hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR

RefuseMode = Literal["reject", "hide"]


class VirtualController(Controller):
    """Bumble's virtual controller with the fixes and fault switches footctl needs."""

    #: ``None``: normal. ``"reject"``: advertise, but terminate every incoming
    #: connection at once (the central sees connect, then disconnect). ``"hide"``:
    #: stop sending advertisements, so connection attempts time out.
    refuse: RefuseMode | None = None

    def on_hci_le_create_connection_cancel_command(
        self, _command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        """Cancel a pending connection and report it, as a real controller does.

        Bumble's controller answers the command but never sends the LE Connection
        Complete event with status Unknown Connection Identifier, which leaves the
        pending connection (and ``Device.connect``) hanging forever.
        """
        pending = self.pending_le_connection
        if pending is not None:
            self.pending_le_connection = None
            # The Command Complete for this command is queued after we return; the
            # event must follow it, so schedule it one loop turn later.
            asyncio.get_running_loop().call_soon(self._send_connection_cancelled, pending)
        # Answer SUCCESS even when nothing is pending: if the connection completed
        # just before the cancel, Device.connect still returns that connection.
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def _send_connection_cancelled(
        self,
        pending: hci.HCI_LE_Create_Connection_Command
        | hci.HCI_LE_Extended_Create_Connection_Command,
    ) -> None:
        self.send_hci_packet(
            hci.HCI_LE_Connection_Complete_Event(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                connection_handle=0,
                role=hci.Role.CENTRAL,
                peer_address_type=pending.peer_address_type,
                peer_address=pending.peer_address,
                connection_interval=0,
                peripheral_latency=0,
                supervision_timeout=0,
                central_clock_accuracy=0,
            )
        )

    def send_advertising_pdu(self, packet: ll.AdvertisingPdu) -> None:
        """Send advertisements unless hidden (connection requests still go out)."""
        if self.refuse == "hide" and isinstance(packet, ll.AdvInd | ll.AdvExtInd):
            return
        super().send_advertising_pdu(packet)

    def on_le_connect_ind(self, packet: ll.ConnectInd) -> None:
        """Accept an incoming connection, or reject it at once when refusing."""
        if self.refuse is None:
            super().on_le_connect_ind(packet)
            return
        if self.refuse == "hide":
            return
        # "reject": our host never hears of it; the central's controller has already
        # reported the connection to its host, so tell it that we terminated it.
        central = self.link.find_le_controller(packet.initiator_address)
        if central is None:
            return
        connection = central.le_connections.get(packet.advertiser_address)
        if connection is not None:
            central.on_le_disconnected(connection, REFUSED_REASON)

    def sever_all(self, reason: int, *, tell_own_host: bool = True) -> int:
        """End every LE connection of this controller, telling the peers at once.

        Returns how many connections were ended.
        """
        count = 0
        for peer_address, connection in list(self.le_connections.items()):
            peer = self.link.find_le_controller(peer_address)
            if peer is not None and peer is not self:
                peer_connection = peer.le_connections.get(connection.self_address)
                if peer_connection is not None:
                    peer.on_le_disconnected(peer_connection, reason)
            if tell_own_host:
                self.on_le_disconnected(connection, reason)
            else:
                self.le_connections.pop(peer_address, None)
            count += 1
        return count

    def go_silent(self) -> None:
        """Stop everything this controller does on its own (its host is gone)."""
        self.le_legacy_advertiser.stop()
        for advertising_set in self.advertising_sets.values():
            advertising_set.stop()
        self.le_scan_enable = False
        self.pending_le_connection = None

    def move_to(self, link: LocalLink) -> None:
        """Leave the current link and join ``link``."""
        with contextlib.suppress(KeyError):
            self.link.remove_controller(self)
        self.link = link
        link.add_controller(self)


def new_link() -> LocalLink:
    """A new, empty link."""
    # LocalLink.__init__ lacks a return annotation in Bumble 0.0.236.
    return LocalLink()  # type: ignore[no-untyped-call]


def random_static_address(taken: set[str]) -> str:
    """A random static address (two top bits set) not in ``taken``."""
    while True:
        raw = bytearray(secrets.token_bytes(6))
        raw[0] |= 0xC0  # most significant byte first in the string form
        text = ":".join(f"{b:02X}" for b in raw)
        if text not in taken and text != "FF:FF:FF:FF:FF:FF":
            return text


class VirtualWorld:
    """One virtual radio neighbourhood: a link, its devices, and fault switches."""

    def __init__(self) -> None:
        self.link = new_link()
        self._controllers: dict[int, VirtualController] = {}
        self._devices: list[Device] = []
        self._addresses: set[str] = set()
        self._limbo: dict[int, LocalLink] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._count = 0

    # ----------------------------------------------------------------- devices

    def new_address(self) -> str:
        """A fresh random static address, unique in this world."""
        address = random_static_address(self._addresses)
        self._addresses.add(address)
        return address

    def new_controller(self, name: str) -> VirtualController:
        """A new controller on this world's link (no host attached yet)."""
        self._count += 1
        return VirtualController(f"{name}#{self._count}", link=self.link)

    async def _add_device(self, name: str, address: str | None) -> Device:
        if address is None:
            address = self.new_address()
        else:
            address = address.upper()
            self._addresses.add(address)
        controller = self.new_controller(name)
        host = Host(controller, AsyncPipeSink(controller))
        device = Device(name=name, address=hci.Address(address), host=host)
        await device.power_on()
        self._controllers[id(device)] = controller
        self._devices.append(device)
        return device

    async def add_peripheral_device(self, name: str, address: str | None = None) -> Device:
        """A powered-on Bumble device with its own controller on the link.

        The caller adds GATT services and starts advertising on it.
        """
        return await self._add_device(name, address)

    async def add_central_device(self, name: str = "footctl-central") -> Device:
        """A powered-on Bumble device to scan and connect from."""
        return await self._add_device(name, None)

    def controller_of(self, device: Device) -> VirtualController:
        """The controller under ``device``."""
        try:
            return self._controllers[id(device)]
        except KeyError:
            raise ValueError(f"{device.name} is not a device of this world") from None

    # ----------------------------------------------------------------- faults

    def is_dropped(self, device: Device) -> bool:
        """True while ``device`` is out of range."""
        return id(device) in self._limbo

    async def drop(self, device: Device) -> None:
        """Take ``device`` out of range: its links die, nobody hears it any more."""
        if self.is_dropped(device):
            return
        controller = self.controller_of(device)
        ended = controller.sever_all(OUT_OF_RANGE_REASON)
        limbo = new_link()
        controller.move_to(limbo)
        self._limbo[id(device)] = limbo
        _LOG.debug("%s out of range (%d link(s) ended)", device.name, ended)
        await asyncio.sleep(0)

    async def restore(self, device: Device) -> None:
        """Bring ``device`` back in range; it is heard (and connectable) again."""
        if self._limbo.pop(id(device), None) is None:
            return
        self.controller_of(device).move_to(self.link)
        _LOG.debug("%s back in range", device.name)
        await asyncio.sleep(0)

    async def refuse_connections(
        self, device: Device, refuse: bool, *, how: RefuseMode = "reject"
    ) -> None:
        """Make ``device`` refuse connections (or accept them again).

        ``how="reject"``: it keeps advertising but terminates each connection at once
        (bleak sees a connect then a disconnect, so each attempt fails quickly).
        ``how="hide"``: it stops advertising, so connection attempts time out.
        """
        controller = self.controller_of(device)
        controller.refuse = how if refuse else None
        await asyncio.sleep(0)

    # ----------------------------------------------------------------- life

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` when the world closes (servers, radios)."""
        self._closers.append(closer)

    async def close(self) -> None:
        """Stop servers, end every link and silence every controller."""
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            try:
                await closer()
            except Exception:  # a failing closer must not stop the others
                _LOG.exception("closing the virtual world")
        for controller in self._controllers.values():
            controller.sever_all(HOST_GONE_REASON)
            controller.go_silent()
            # whatever the hosts still do (auto-restarted advertising) goes nowhere
            controller.move_to(new_link())
        for device in self._devices:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await device.host.flush()
        self._controllers.clear()
        self._devices.clear()
        self._limbo.clear()
        await asyncio.sleep(0)


# --------------------------------------------------------------------- TCP


class _ControllerClient(asyncio.Protocol):
    """One app process on TCP: a fresh controller on the world's link for it."""

    def __init__(self, world: VirtualWorld, clients: set[_ControllerClient]) -> None:
        self._world = world
        self._clients = clients
        self._transport: asyncio.Transport | None = None
        self.controller: VirtualController | None = None
        self._parser: PacketParser | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        controller = self._world.new_controller("tcp")
        controller.host = self  # packets to the host go to the socket
        self.controller = controller
        self._parser = PacketParser(controller)
        self._clients.add(self)
        _LOG.debug("controller client connected: %s", transport.get_extra_info("peername"))

    def on_packet(self, packet: bytes) -> None:
        """Controller -> host: write to the socket."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(packet)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            return
        try:
            self._parser.feed_data(data)
        except Exception:
            _LOG.warning("bad HCI data from controller client; closing it")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()

    def _release(self) -> None:
        controller, self.controller = self.controller, None
        self._clients.discard(self)
        self._parser = None
        if controller is None:
            return
        # The app's host is gone: its connections end as if it had closed them, and
        # its controller leaves the link so nobody hears it.
        ended = controller.sever_all(HOST_GONE_REASON, tell_own_host=False)
        controller.go_silent()
        controller.host = None
        controller.move_to(new_link())  # off the link: removing it alone is not enough
        _LOG.debug("controller client gone (%d link(s) ended)", ended)

    def close(self) -> None:
        """Hang up on the client and free its controller."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._release()


async def serve_controller_tcp(
    world: VirtualWorld, host: str = "127.0.0.1", port: int = 0
) -> tuple[str, Callable[[], Awaitable[None]]]:
    """Serve controllers on ``world``'s link over TCP (H4 framing).

    Each client connection (a Bumble host opened with ``tcp-client:HOST:PORT``) gets a
    new controller on the link; when the client goes away its connections are ended
    on the link (the peers see a disconnect) and its controller is removed, so a new
    client can connect at any time. Bumble's own ``tcp-server:`` transport shares one
    parser between clients and never tells the controller a client left, hence this.

    Returns the address to give to ``tcp-client:`` (``"127.0.0.1:PORT"``) and an async
    closer.
    """
    clients: set[_ControllerClient] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _ControllerClient(world, clients), host, port)
    sockets = server.sockets
    bound_port = sockets[0].getsockname()[1] if sockets else port
    closed = False

    async def close() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        server.close()
        for client in list(clients):
            client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)

    world.on_close(close)
    return f"{host}:{bound_port}", close


__all__ = [
    "HOST_GONE_REASON",
    "OUT_OF_RANGE_REASON",
    "REFUSED_REASON",
    "RefuseMode",
    "VirtualController",
    "VirtualWorld",
    "serve_controller_tcp",
]
