"""The bleak backend over a Bumble central, driven through the real bleak API,
against the echo peripheral of virtual_rig (fff1 writes come back on fff4; fff2 is
read-only)."""

from __future__ import annotations

import asyncio

import bleak_retry_connector
import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError, BleakGATTProtocolError
from bumble import hci

from footctl.virtual import VirtualRadio, VirtualWorld
from virtual_rig import CCCD, NOTIFY, READ_ONLY, REJECTED, SERVICE, WRITE, Echo, add_echo
from virtual_rig import ECHO_NAME as NAME


@pytest.fixture
async def echo(world: VirtualWorld) -> Echo:
    return await add_echo(world)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bleak_retry_connector, "BLEAK_TIMEOUT", 0.3)


async def find(radio: VirtualRadio, name: str = NAME) -> BLEDevice:
    device = await BleakScanner.find_device_by_name(
        name, timeout=2.0, backend=radio.scanner_backend
    )
    assert device is not None, f"{name} not found"
    return device


async def connected(
    radio: VirtualRadio, device: BLEDevice, lost: asyncio.Event | None = None
) -> BleakClient:
    client = BleakClient(
        device,
        (lambda _c: lost.set()) if lost is not None else None,
        backend=radio.client_backend,
        timeout=2.0,
    )
    await client.connect()
    return client


async def held_write(client: BleakClient, echo: Echo) -> asyncio.Task[None]:
    """A write with response that the echo has received and holds unanswered (its gate
    closed) until the test opens the gate again."""
    echo.gate.clear()
    write = asyncio.create_task(client.write_gatt_char(WRITE, b"held", response=True))
    await asyncio.wait_for(echo.entered.wait(), 1.0)
    return write


# --------------------------------------------------------------------- scan


async def test_scan_reports_name_uuids_manufacturer_rssi(echo: Echo, radio: VirtualRadio) -> None:
    async with BleakScanner(backend=radio.scanner_backend) as scanner:
        await asyncio.sleep(0.1)
        found = scanner.discovered_devices_and_advertisement_data
    device, adv = found[echo.address]
    assert device.name == NAME
    assert adv.local_name == NAME
    assert adv.service_uuids == [SERVICE]
    assert adv.manufacturer_data == {0x1234: b"hi"}
    assert adv.tx_power == -8
    assert adv.rssi == -50
    # bleak-retry-connector must not mistake the device for a BlueZ one
    assert isinstance(device.details, hci.Address)
    assert device.details == echo.device.random_address


async def test_scan_filters_on_service_uuids(
    world: VirtualWorld, echo: Echo, radio: VirtualRadio
) -> None:
    other = "0000abcd-0000-1000-8000-00805f9b34fb"
    async with BleakScanner(service_uuids=[other], backend=radio.scanner_backend) as scanner:
        await asyncio.sleep(0.1)
        assert scanner.discovered_devices == []
    async with BleakScanner(service_uuids=[SERVICE], backend=radio.scanner_backend) as scanner:
        await asyncio.sleep(0.1)
        assert [d.address for d in scanner.discovered_devices] == [echo.address]


async def test_two_scanners_share_the_central(echo: Echo, radio: VirtualRadio) -> None:
    seen: list[str] = []
    first = BleakScanner(lambda d, _a: seen.append(d.address), backend=radio.scanner_backend)
    async with first, BleakScanner(backend=radio.scanner_backend) as second:
        await asyncio.sleep(0.05)
        assert second.discovered_devices
    assert echo.address in seen
    assert not radio.central.is_scanning


# --------------------------------------------------------------------- GATT


async def test_connect_discovers_services_characteristics_descriptors(
    echo: Echo, radio: VirtualRadio
) -> None:
    client = await connected(radio, await find(radio))
    try:
        assert client.is_connected
        assert client.mtu_size == 247
        service = client.services.get_service(SERVICE)
        assert service is not None
        write = service.get_characteristic(WRITE)
        notify = service.get_characteristic(NOTIFY)
        read_only = service.get_characteristic(READ_ONLY)
        assert write is not None
        assert notify is not None
        assert read_only is not None
        assert write.properties == ["write-without-response", "write"]
        assert notify.properties == ["notify"]
        assert read_only.properties == ["read"]
        assert [d.uuid for d in notify.descriptors] == [CCCD]
        assert notify.descriptors[0].handle > notify.handle
        assert write.service_handle == service.handle < write.handle
        assert write.max_write_without_response_size == 244
        # handles are the ATT value handles: reading by handle works
        assert await client.read_gatt_char(read_only.handle) == bytearray(b"\x2a\x01")
    finally:
        await client.disconnect()
    assert not client.is_connected


async def test_write_reaches_peripheral_and_notification_comes_back(
    echo: Echo, radio: VirtualRadio
) -> None:
    client = await connected(radio, await find(radio))
    got: asyncio.Queue[tuple[BleakGATTCharacteristic, bytearray]] = asyncio.Queue()
    await client.start_notify(NOTIFY, lambda c, data: got.put_nowait((c, data)))
    notify = client.services.get_characteristic(NOTIFY)
    assert notify is not None
    cccd = notify.descriptors[0]
    assert await client.read_gatt_descriptor(cccd.handle) == bytearray(b"\x01\x00")

    await client.write_gatt_char(WRITE, b"\x01\x02", response=True)
    char, data = await asyncio.wait_for(got.get(), 1.0)
    assert (char.uuid, data, type(data)) == (NOTIFY, bytearray(b"\x01\x02"), bytearray)

    await client.write_gatt_char(WRITE, b"nr", response=False)
    _, data = await asyncio.wait_for(got.get(), 1.0)
    assert data == bytearray(b"nr")
    assert echo.received == [b"\x01\x02", b"nr"]

    await client.stop_notify(NOTIFY)
    assert await client.read_gatt_descriptor(cccd.handle) == bytearray(b"\x00\x00")
    await client.write_gatt_char(WRITE, b"quiet", response=True)
    await asyncio.sleep(0.02)
    assert got.empty()
    await client.disconnect()


async def test_att_error_becomes_gatt_protocol_error(echo: Echo, radio: VirtualRadio) -> None:
    client = await connected(radio, await find(radio))
    with pytest.raises(BleakGATTProtocolError) as caught:
        await client.write_gatt_char(WRITE, REJECTED, response=True)
    assert caught.value.code == 0x03
    assert client.is_connected
    await client.disconnect()


async def test_pairing_is_not_supported(echo: Echo, radio: VirtualRadio) -> None:
    client = await connected(radio, await find(radio))
    with pytest.raises(NotImplementedError):
        await client.pair()
    await client.disconnect()


# --------------------------------------------------------------------- link loss


async def test_drop_fires_disconnected_callback_and_write_raises_bleak_error(
    world: VirtualWorld, echo: Echo, radio: VirtualRadio
) -> None:
    lost = asyncio.Event()
    client = await connected(radio, await find(radio), lost)
    await world.drop(echo.device)
    await asyncio.wait_for(lost.wait(), 0.5)
    assert not client.is_connected
    with pytest.raises(BleakError):
        await client.write_gatt_char(WRITE, b"x", response=True)
    with pytest.raises(BleakError):
        await client.write_gatt_char(WRITE, b"x", response=False)


async def test_drop_during_write_is_a_bleak_error_not_a_cancellation(
    world: VirtualWorld, echo: Echo, radio: VirtualRadio
) -> None:
    lost = asyncio.Event()
    client = await connected(radio, await find(radio), lost)
    write = await held_write(client, echo)
    await world.drop(echo.device)
    with pytest.raises(BleakError, match="link lost"):
        await asyncio.wait_for(write, 1.0)
    assert not write.cancelled()
    assert lost.is_set()
    echo.gate.set()


async def test_real_cancellation_of_the_caller_still_propagates(
    echo: Echo, radio: VirtualRadio
) -> None:
    client = await connected(radio, await find(radio))
    write = await held_write(client, echo)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    # a timeout around a write is a TimeoutError for the caller
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await client.write_gatt_char(WRITE, b"held", response=True)
    echo.gate.set()
    await client.disconnect()


async def test_connect_to_dropped_device_times_out_then_works_after_restore(
    world: VirtualWorld, echo: Echo, radio: VirtualRadio
) -> None:
    device = await find(radio)
    await world.drop(echo.device)
    client = BleakClient(device, backend=radio.client_backend, timeout=0.2)
    # Bumble alone would hang here for ever; the outer bound turns a hang into a failure
    try:
        async with asyncio.timeout(5.0):
            with pytest.raises(TimeoutError):
                await client.connect()
    except TimeoutError:
        pytest.fail("connect to a dropped device hung instead of timing out")
    await world.restore(echo.device)
    await client.connect()  # the controller is free again (no COMMAND_DISALLOWED)
    assert client.is_connected
    await client.disconnect()


async def test_connect_cancelled_by_caller_leaves_the_central_usable(
    world: VirtualWorld, echo: Echo, radio: VirtualRadio
) -> None:
    device = await find(radio)
    await world.drop(echo.device)
    client = BleakClient(device, backend=radio.client_backend, timeout=5.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await client.connect()
    await world.restore(echo.device)
    async with asyncio.timeout(1.0):
        await client.connect()
    assert client.is_connected
    await client.disconnect()


# --------------------------------------------------------------------- retry connector


async def test_establish_connection_connects(
    echo: Echo, radio: VirtualRadio, fast_retries: None
) -> None:
    device = await find(radio)
    client = await bleak_retry_connector.establish_connection(
        BleakClient, device, NAME, backend=radio.client_backend
    )
    assert client.is_connected
    await client.write_gatt_char(WRITE, b"ok", response=True)
    await client.disconnect()
    assert echo.received == [b"ok"]


async def test_establish_connection_reconnects_after_restore(
    world: VirtualWorld, echo: Echo, radio: VirtualRadio, fast_retries: None
) -> None:
    device = await find(radio)
    lost = asyncio.Event()
    client = await bleak_retry_connector.establish_connection(
        BleakClient, device, NAME, disconnected_callback=lambda _c: lost.set(),
        backend=radio.client_backend,
    )
    await world.drop(echo.device)
    await asyncio.wait_for(lost.wait(), 0.5)
    reconnect = asyncio.create_task(
        bleak_retry_connector.establish_connection(
            BleakClient, device, NAME, backend=radio.client_backend, max_attempts=5
        )
    )
    await asyncio.sleep(0.05)
    await world.restore(echo.device)
    again = await asyncio.wait_for(reconnect, 10.0)  # a hang guard, not a speed check
    await again.write_gatt_char(WRITE, b"back", response=True)
    assert echo.received[-1] == b"back"
    assert not client.is_connected
    await again.disconnect()


async def test_establish_connection_gives_up_on_a_refusing_device(
    world: VirtualWorld, echo: Echo, radio: VirtualRadio, fast_retries: None
) -> None:
    device = await find(radio)
    await world.refuse_connections(echo.device, True)
    with pytest.raises(BleakError):
        await asyncio.wait_for(  # a hang guard: it must give up, not retry forever
            bleak_retry_connector.establish_connection(
                BleakClient, device, NAME, backend=radio.client_backend, max_attempts=2
            ),
            10.0,
        )
    await world.refuse_connections(echo.device, False)
    client = await bleak_retry_connector.establish_connection(
        BleakClient, device, NAME, backend=radio.client_backend
    )
    assert client.is_connected
    await client.disconnect()


async def test_establish_connection_times_out_on_a_hidden_device(
    world: VirtualWorld, echo: Echo, radio: VirtualRadio, fast_retries: None
) -> None:
    device = await find(radio)
    await world.refuse_connections(echo.device, True, how="hide")
    with pytest.raises(bleak_retry_connector.BleakNotFoundError):
        await bleak_retry_connector.establish_connection(
            BleakClient, device, NAME, backend=radio.client_backend, max_attempts=2
        )
