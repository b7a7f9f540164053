"""The virtual link: devices on a Bumble link, out-of-range, refusals, and TCP controllers."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bumble import core, hci
from bumble.controller import Controller
from bumble.device import Connection, Device
from bumble.host import Host
from bumble.transport.common import AsyncPipeSink

from footctl.virtual import (
    VirtualRadio,
    VirtualWorld,
    open_remote_central,
    radio_for_link,
    radio_for_world,
    serve_controller_tcp,
)
from footctl.virtual.link import HOST_GONE_REASON, OUT_OF_RANGE_REASON, new_link
from virtual_rig import NOTIFY, WRITE, add_echo


def text(address: hci.Address) -> str:
    return address.to_string(with_type_qualifier=False)


async def heard(radio: VirtualRadio, seconds: float = 0.1) -> set[str]:
    async with BleakScanner(backend=radio.scanner_backend) as scanner:
        await asyncio.sleep(seconds)
        return {d.address for d in scanner.discovered_devices}


def disconnected(connection: Connection) -> asyncio.Future[int]:
    """A future resolved with the reason when ``connection`` ends."""
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    def on_disconnection(reason: int) -> None:
        if not future.done():
            future.set_result(reason)

    connection.once(Connection.EVENT_DISCONNECTION, on_disconnection)
    return future


# --------------------------------------------------------------------- devices


async def test_devices_get_unique_static_addresses(world: VirtualWorld) -> None:
    devices = [await world.add_peripheral_device(f"P{i}") for i in range(5)]
    devices.append(await world.add_central_device())
    addresses = {d.random_address for d in devices}
    assert len(addresses) == 6
    for device in devices:
        assert device.random_address.is_static
        assert device.powered_on
    chosen = await world.add_peripheral_device("Named", "C1:22:33:44:55:66")
    assert text(chosen.random_address) == "C1:22:33:44:55:66"


async def test_controller_fix_connect_timeout_returns_and_next_connect_works(
    world: VirtualWorld,
) -> None:
    echo = (await add_echo(world)).device
    central = await world.add_central_device()
    await world.drop(echo)
    # Stock Bumble would hang here for ever: the outer timeout would then raise the
    # built-in TimeoutError, not Bumble's, and fail the test.
    with pytest.raises(core.TimeoutError):
        async with asyncio.timeout(5.0):
            await central.connect(echo.random_address, timeout=0.1)
    await world.restore(echo)
    connection = await central.connect(echo.random_address, timeout=1.0)
    assert connection.peer_address == echo.random_address
    await connection.disconnect()


async def test_stock_bumble_controller_still_hangs_on_connect_timeout() -> None:
    """Documents why VirtualController exists (bumble is pinned; revisit on upgrade)."""
    link = new_link()
    controller = Controller("stock", link=link)
    central = Device(
        name="c", address=hci.Address("C0:00:00:00:00:01"),
        host=Host(controller, AsyncPipeSink(controller)),
    )
    await central.power_on()
    attempt = asyncio.create_task(
        central.connect(hci.Address("C0:00:00:00:00:02"), timeout=0.05)
    )
    done, _ = await asyncio.wait({attempt}, timeout=0.3)
    assert not done, "Bumble now reports cancelled connections; VirtualController may go"
    attempt.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await attempt


# --------------------------------------------------------------------- range


async def test_drop_ends_the_link_on_both_sides_and_silences_the_device(
    world: VirtualWorld,
) -> None:
    echo = (await add_echo(world)).device
    radio = await radio_for_world(world)
    central = radio.central
    connection = await central.connect(echo.random_address, timeout=1.0)
    await asyncio.sleep(0.01)
    (peripheral_side,) = echo.connections.values()
    central_lost, peripheral_lost = disconnected(connection), disconnected(peripheral_side)

    await world.drop(echo)
    assert world.is_dropped(echo)
    assert await asyncio.wait_for(central_lost, 0.1) == OUT_OF_RANGE_REASON
    assert await asyncio.wait_for(peripheral_lost, 0.1) == OUT_OF_RANGE_REASON
    assert text(echo.random_address) not in await heard(radio)

    await world.restore(echo)
    assert text(echo.random_address) in await heard(radio)
    await radio.close()


async def test_refuse_hide_makes_the_device_invisible(world: VirtualWorld) -> None:
    echo = (await add_echo(world)).device
    radio = await radio_for_world(world)
    await world.refuse_connections(echo, True, how="hide")
    assert text(echo.random_address) not in await heard(radio)
    await world.refuse_connections(echo, False)
    assert text(echo.random_address) in await heard(radio)
    await radio.close()


async def test_refuse_reject_ends_each_connection_without_telling_the_peripheral(
    world: VirtualWorld,
) -> None:
    echo = (await add_echo(world)).device
    central = await world.add_central_device()
    peripheral_connections: list[Connection] = []
    echo.on(Device.EVENT_CONNECTION, peripheral_connections.append)
    await world.refuse_connections(echo, True)
    connection = await central.connect(echo.random_address, timeout=1.0)
    lost = disconnected(connection)
    if connection.handle in central.connections:
        await asyncio.wait_for(lost, 0.1)
    assert not central.connections
    assert peripheral_connections == []


# --------------------------------------------------------------------- TCP


async def _echo_round_trip(radio: VirtualRadio, device: BLEDevice, payload: bytes) -> bytes:
    client = BleakClient(device, backend=radio.client_backend, timeout=2.0)
    await client.connect()
    got: asyncio.Queue[bytearray] = asyncio.Queue()
    await client.start_notify(NOTIFY, lambda _c, data: got.put_nowait(data))
    await client.write_gatt_char(WRITE, payload, response=True)
    return bytes(await asyncio.wait_for(got.get(), 1.0))


async def test_tcp_controller_end_to_end_and_a_second_client_after_the_first(
    world: VirtualWorld,
) -> None:
    echo = (await add_echo(world)).device
    address, close = await serve_controller_tcp(world)
    assert address.startswith("127.0.0.1:")

    first = await radio_for_link(address)
    device = await BleakScanner.find_device_by_name(
        "Echo", timeout=2.0, backend=first.scanner_backend
    )
    assert device is not None
    assert await _echo_round_trip(first, device, b"one") == b"one"
    (peripheral_side,) = echo.connections.values()
    peripheral_lost = disconnected(peripheral_side)

    await first.close()  # like the app process going away
    assert await asyncio.wait_for(peripheral_lost, 1.0) == HOST_GONE_REASON

    second = await radio_for_link(address)
    device = await BleakScanner.find_device_by_name(
        "Echo", timeout=2.0, backend=second.scanner_backend
    )
    assert device is not None
    assert await _echo_round_trip(second, device, b"two") == b"two"
    await second.close()
    await close()


async def test_tcp_client_sees_the_link_drop_when_the_server_goes(world: VirtualWorld) -> None:
    await add_echo(world)
    address, close = await serve_controller_tcp(world)
    radio = await radio_for_link(address)
    device = await BleakScanner.find_device_by_name(
        "Echo", timeout=2.0, backend=radio.scanner_backend
    )
    assert device is not None
    lost = asyncio.Event()
    client = BleakClient(device, lambda _c: lost.set(), backend=radio.client_backend, timeout=2.0)
    await client.connect()
    await close()  # like the sim process going away
    await asyncio.wait_for(lost.wait(), 1.0)
    assert not client.is_connected
    await radio.close()


async def test_remote_central_is_a_powered_bumble_device(world: VirtualWorld) -> None:
    address, close = await serve_controller_tcp(world)
    central, close_central = await open_remote_central(address)
    assert central.powered_on
    assert central.random_address.is_static
    await close_central()
    await close()


async def test_remote_central_needs_a_server() -> None:
    with pytest.raises(ConnectionError):
        await open_remote_central("127.0.0.1:1")
