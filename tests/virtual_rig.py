"""Rigs on the virtual link shared by the test modules.

- ``add_echo``: a tiny peripheral (service fff0) whose writes on fff1 come back as
  notifications on fff4, with a read-only characteristic fff2; for the link and the
  bleak backend, below any massager.
- ``Bench``: one virtual massager behind the bleak backend, a real DeviceSession and a
  real SafetyGovernor, the governor and the massager's model on one fake clock.

The ``world``, ``radio`` and ``bench_factory`` fixtures live in conftest.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bumble import att
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession
from footctl.device.transport.ble import Radio
from footctl.safety.governor import SafetyGovernor
from footctl.safety.limits import Caps, Limits
from footctl.virtual import VirtualRadio, radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.model import FrameRecord, MassagerModel
from footctl.virtual.peripheral import VirtualMassager
from safety_harness import FakeClock

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


# --------------------------------------------------------------------- massager + governor

# Where the fake clock starts: any value well past zero, so "seconds ago" never goes negative.
CLOCK_START_S = 5000.0


@dataclass
class Bench:
    """A virtual massager behind a real DeviceSession and SafetyGovernor."""

    world: VirtualWorld
    massager: VirtualMassager
    vradio: VirtualRadio
    session: DeviceSession
    governor: SafetyGovernor
    clock: FakeClock

    @property
    def model(self) -> MassagerModel:
        return self.massager.model

    def acted(self) -> list[FrameRecord]:
        """Frames the device acted on, queries left out."""
        return [f for f in self.massager.frames if f.outcome == "applied" and f.command != "query"]

    async def close(self) -> None:
        await self.session.close()
        await self.vradio.close()
        await self.massager.close()
        await self.world.close()


BenchFactory = Callable[..., Awaitable[Bench]]


async def open_bench(profile: Profile, caps: Caps, *, session_on_clock: bool = False) -> Bench:
    """A connected Bench of ``profile`` under ``caps``.

    ``session_on_clock``: the session's own waits (inside key sequences) run on the fake
    clock too, so the device's frame times show them exactly.
    """
    clock = FakeClock(CLOCK_START_S)
    world = VirtualWorld()
    model = MassagerModel(profile, now=clock)
    massager = await VirtualMassager.create(world, profile, model=model)
    vradio = await radio_for_world(world)
    radio = Radio("virtual link", vradio.scanner_backend, vradio.client_backend)
    sleep = clock.sleep if session_on_clock else asyncio.sleep
    session = DeviceSession(profile, radio, scan_timeout=5.0, sleep=sleep)
    limits = Limits.compute(profile, caps)
    governor = SafetyGovernor(session, limits, clock=clock, sleep=clock.sleep)
    await session.connect()
    return Bench(world, massager, vradio, session, governor, clock)
