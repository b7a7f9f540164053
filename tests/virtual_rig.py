"""Rigs on the virtual link shared by the test modules.

- ``add_echo``: a tiny peripheral (service fff0) whose writes on fff1 come back as
  notifications on fff4, with a read-only characteristic fff2; for the link and the
  bleak backend, below any massager.

The ``world`` and ``radio`` fixtures live in conftest.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bumble import att
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from footctl.virtual.link import VirtualWorld

# --------------------------------------------------------------------- the echo peripheral

SERVICE = "0000fff0-0000-1000-8000-00805f9b34fb"
WRITE = "0000fff1-0000-1000-8000-00805f9b34fb"
READ_ONLY = "0000fff2-0000-1000-8000-00805f9b34fb"
NOTIFY = "0000fff4-0000-1000-8000-00805f9b34fb"
CCCD = "00002902-0000-1000-8000-00805f9b34fb"
ECHO_NAME = "Echo"
REJECTED = b"\xff\xff"  # the echo answers this write with an ATT error


@dataclass
class Echo:
    """The echo peripheral and what it received."""

    device: Device
    received: list[bytes] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        return self.device.random_address.to_string(with_type_qualifier=False)


async def add_echo(world: VirtualWorld, name: str = ECHO_NAME) -> Echo:
    """An advertising echo peripheral on ``world``."""
    device = await world.add_peripheral_device(name)
    echo = Echo(device)
    echo.gate.set()
    notify = Characteristic(
        NOTIFY, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b""
    )

    async def on_write(_connection: Connection, value: bytes) -> None:
        echo.entered.set()
        if value == REJECTED:
            raise att.ATT_Error(error_code=0x03, message="write not permitted")
        await echo.gate.wait()  # tests close the gate to keep a write in flight
        echo.received.append(bytes(value))
        await device.notify_subscribers(notify, bytes(value))

    write: Characteristic[bytes] = Characteristic(
        WRITE,
        Characteristic.Properties.WRITE | Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
        Characteristic.WRITEABLE,
        CharacteristicValue(write=on_write),
    )
    read_only = Characteristic(
        READ_ONLY, Characteristic.Properties.READ, Characteristic.READABLE, b"\x2a\x01"
    )
    device.add_service(Service(SERVICE, [write, read_only, notify]))
    advertising = AdvertisingData(
        [
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.COMPLETE_LOCAL_NAME, name.encode()),
            (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, UUID("FFF0").to_bytes()),
            (AdvertisingData.MANUFACTURER_SPECIFIC_DATA, b"\x34\x12hi"),
            (AdvertisingData.TX_POWER_LEVEL, bytes([0xF8])),  # -8 dBm
        ]
    )
    await device.start_advertising(
        advertising_data=bytes(advertising),
        auto_restart=True,
        advertising_interval_min=20,
        advertising_interval_max=20,
    )
    return echo
