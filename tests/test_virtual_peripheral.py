"""The virtual massager on the virtual link, driven through the real bleak API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from footctl.device.codec import decode_status, encode, max_write_size
from footctl.device.profile.schema import Profile
from footctl.errors import CodecError
from footctl.state import Command, Report
from footctl.virtual import VirtualRadio, VirtualWorld
from footctl.virtual.model import MassagerModel
from footctl.virtual.peripheral import VirtualMassager, advertising_data

PROFILE_IDS = ["ems-v2", "shiatsu-aa55", "shiatsu-keys"]


@dataclass
class Link:
    """A connected, subscribed bleak client and the reports it received."""

    profile: Profile
    massager: VirtualMassager
    client: BleakClient
    raw: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    lost: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self, command: Command, *, response: bool | None = None) -> None:
        if response is None:
            response = self.profile.gatt.write_with_response
        await self.client.write_gatt_char(
            self.profile.gatt.write, encode(self.profile, command), response=response
        )

    async def report_where(self, check: Callable[[Report], bool], timeout: float = 1.0) -> Report:
        async with asyncio.timeout(timeout):
            while True:
                report = decode_status(self.profile, await self.raw.get())
                if check(report):
                    return report

    def drain(self) -> None:
        while not self.raw.empty():
            self.raw.get_nowait()


async def scan_for(
    radio: VirtualRadio, name: str, timeout: float = 2.0
) -> tuple[BLEDevice, AdvertisementData] | None:
    found: asyncio.Future[tuple[BLEDevice, AdvertisementData]] = (
        asyncio.get_running_loop().create_future()
    )

    def seen(device: BLEDevice, adv: AdvertisementData) -> None:
        if adv.local_name == name and not found.done():
            found.set_result((device, adv))

    async with BleakScanner(seen, backend=radio.scanner_backend):
        try:
            async with asyncio.timeout(timeout):
                return await found
        except TimeoutError:
            return None


async def connect(radio: VirtualRadio, massager: VirtualMassager) -> Link:
    hit = await scan_for(radio, massager.name)
    assert hit is not None, f"{massager.name} not found"
    link_holder: list[Link] = []
    client = BleakClient(
        hit[0],
        lambda _c: link_holder[0].lost.set() if link_holder else None,
        backend=radio.client_backend,
        timeout=2.0,
    )
    await client.connect()
    link = Link(massager.profile, massager, client)
    link_holder.append(link)
    assert massager.profile.gatt.notify is not None
    await client.start_notify(
        massager.profile.gatt.notify, lambda _ch, data: link.raw.put_nowait(bytes(data))
    )
    return link


LinkTo = Callable[..., Awaitable[Link]]


@pytest.fixture
async def link_to(world: VirtualWorld, radio: VirtualRadio) -> AsyncIterator[LinkTo]:
    """``await link_to(profile, model=None)``: a virtual massager of ``profile`` and a
    connected, subscribed bleak link to it; after the test the link is disconnected (if
    it still stands) and the massager closed."""
    opened: list[Link] = []

    async def open_link(profile: Profile, model: MassagerModel | None = None) -> Link:
        massager = await VirtualMassager.create(world, profile, model=model)
        link = await connect(radio, massager)
        opened.append(link)
        return link

    yield open_link
    for link in opened:
        if link.client.is_connected:
            await link.client.disconnect()
        await link.massager.close()


def power_on(profile: Profile) -> Command:
    return Command("power", 1) if "power" in profile.commands else Command("press_power")


def fast_status(profile: Profile, interval: float) -> Profile:
    assert profile.status is not None
    status = profile.status.model_copy(update={"interval_seconds": interval})
    return profile.model_copy(update={"status": status})


# --------------------------------------------------------------------- advertising


@pytest.mark.parametrize("profile_id", PROFILE_IDS)
def test_advert_fits_legacy_31_bytes(profiles: dict[str, Profile], profile_id: str) -> None:
    data = advertising_data(profiles[profile_id])
    assert len(data) <= 31
    assert profiles[profile_id].advertisement.local_name.encode() in data


def test_long_name_with_128_bit_uuid_is_shortened(profiles: dict[str, Profile]) -> None:
    profile = profiles["shiatsu-keys"]
    adv = profile.advertisement.model_copy(
        update={
            "local_name": "A-Very-Long-Massager-Name",
            "service_uuids": ["6e400001-b5a3-f393-e0a9-e50e24dcca9e"],
        }
    )
    data = advertising_data(profile.model_copy(update={"advertisement": adv}))
    assert len(data) <= 31
    assert b"A-Ve" in data  # 31 - flags 3 - uuid 18 - manufacturer 4 - header 2
    assert b"A-Very-Long-Massager-Name" not in data


@pytest.mark.parametrize("profile_id", PROFILE_IDS)
async def test_scan_finds_massager_by_name_uuid_and_manufacturer(
    world: VirtualWorld, radio: VirtualRadio, profiles: dict[str, Profile], profile_id: str
) -> None:
    profile = profiles[profile_id]
    massager = await VirtualMassager.create(world, profile)
    hit = await scan_for(radio, profile.advertisement.local_name)
    assert hit is not None
    device, adv = hit
    assert device.address == massager.address
    assert adv.service_uuids == profile.advertisement.service_uuids[:1]
    if profile.advertisement.manufacturer_id is not None:
        assert profile.advertisement.manufacturer_id in adv.manufacturer_data
    await massager.close()


# --------------------------------------------------------------------- commands


@pytest.mark.parametrize("profile_id", PROFILE_IDS)
async def test_write_changes_model_and_notifies(
    link_to: LinkTo, profiles: dict[str, Profile], profile_id: str
) -> None:
    profile = profiles[profile_id]
    link = await link_to(profile)
    massager = link.massager
    assert link.client.mtu_size == profile.gatt.mtu
    await link.write(power_on(profile))
    report = await link.report_where(lambda r: r.running is True)
    assert massager.model.running
    assert report.intensity == profile.capabilities.intensity.min
    assert report == massager.model.report()
    frames = massager.frames
    assert frames[-1].outcome == "applied"
    assert frames[-1].command == power_on(profile).name


# (profile, commands, the report field to wait for, the report then, the last frame's
# outcome): an absolute-command device (the last, out-of-range, command is ignored) and a
# key-press device.
SEQUENCES = {
    "absolute": (
        "ems-v2",
        [
            Command("power", 1),
            Command("mode", 3),
            Command("intensity", 9),
            Command("heat", 2),
            Command("zone", 4),
            Command("intensity", 99),  # out of range: ignored
        ],
        ("zone", 4),
        {"running": True, "mode": "scraping", "intensity": 9, "heat": 2, "zone": 4},
        "ignored",
    ),
    "keys": (
        "shiatsu-keys",
        [
            Command(key)
            for key in ("press_power", "press_mode", "press_mode", "press_intensity_up",
                        "press_heat")
        ],
        ("heat", 1),
        {"running": True, "mode": "air", "intensity": 2, "heat": 1},
        "applied",
    ),
}


@pytest.mark.parametrize("sequence", sorted(SEQUENCES))
async def test_command_sequence_then_every_query_is_answered(
    link_to: LinkTo, profiles: dict[str, Profile], sequence: str
) -> None:
    profile_id, commands, (until, value), expected, last_outcome = SEQUENCES[sequence]
    link = await link_to(profiles[profile_id])
    for command in commands:
        await link.write(command)
    report = await link.report_where(lambda r: getattr(r, until) == value)
    assert {name: getattr(report, name) for name in expected} == expected
    assert link.massager.frames[-1].outcome == last_outcome
    # every query is answered with a notification (speed is measured in scripts/bench)
    for _ in range(30):
        link.drain()
        await link.write(Command("query"))
        report = await link.report_where(lambda _r: True)
        assert {name: getattr(report, name) for name in expected} == expected


@pytest.mark.parametrize("response", [True, False])
async def test_oversize_write_is_refused(
    link_to: LinkTo,
    profiles: dict[str, Profile],
    response: bool,
) -> None:
    profile = profiles["shiatsu-aa55"]
    link = await link_to(profile)
    massager = link.massager
    too_big = encode(profile, Command("power", 1)) + bytes(max_write_size(profile))
    if response:
        with pytest.raises(BleakError):
            await link.client.write_gatt_char(profile.gatt.write, too_big, response=True)
    else:
        await link.client.write_gatt_char(profile.gatt.write, too_big, response=False)
        await link.write(Command("query"), response=True)  # in order: the big one came first
    assert massager.oversize_writes == 1
    assert massager.frames[0].outcome == "oversize"
    assert not massager.model.running


async def test_garbled_write_is_logged_and_ignored(
    link_to: LinkTo, profiles: dict[str, Profile]
) -> None:
    profile = profiles["shiatsu-aa55"]
    link = await link_to(profile)
    massager = link.massager
    frame = bytearray(encode(profile, Command("power", 1)))
    frame[-1] ^= 0xFF
    await link.client.write_gatt_char(profile.gatt.write, bytes(frame), response=True)
    assert massager.frames[-1].outcome == "error"
    assert not massager.model.running


# --------------------------------------------------------------------- status stream


async def test_periodic_status_while_subscribed(
    link_to: LinkTo, profiles: dict[str, Profile]
) -> None:
    profile = fast_status(profiles["shiatsu-aa55"], 0.05)
    link = await link_to(profile)
    link.drain()
    await asyncio.sleep(0.5)
    # ~10 at 50 ms; the bounds only say "periodic, not a flood" (a loaded machine sends fewer)
    assert 2 <= link.raw.qsize() <= 15


async def test_auto_off_is_notified(
    link_to: LinkTo, profiles: dict[str, Profile]
) -> None:
    profile = fast_status(profiles["ems-v2"], 0.1)
    now = [100.0]
    model = MassagerModel(profile, now=lambda: now[0])
    link = await link_to(profile, model)
    await link.write(Command("power", 1))
    await link.write(Command("heat", 1))
    await link.report_where(lambda r: r.heat == 1)
    now[0] += 15 * 60 + 1
    report = await link.report_where(lambda r: r.running is False, timeout=0.5)
    assert report.heat == 0


# --------------------------------------------------------------------- faults


async def test_mute_sends_nothing_and_ignores_writes(
    link_to: LinkTo, profiles: dict[str, Profile]
) -> None:
    profile = profiles["ems-v2"]
    link = await link_to(profile)
    massager = link.massager
    await asyncio.sleep(0.05)
    massager.model.mute = True
    link.drain()
    await link.write(Command("power", 1))
    await link.write(Command("query"))
    await asyncio.sleep(0.1)
    assert link.raw.empty()
    assert not massager.model.running
    assert massager.frames[-1].outcome == "muted"


async def test_garbage_notifications_do_not_decode(
    link_to: LinkTo, profiles: dict[str, Profile]
) -> None:
    profile = profiles["ems-v2"]
    link = await link_to(profile)
    massager = link.massager
    await asyncio.sleep(0.05)
    massager.model.garbage = True
    link.drain()
    for _ in range(5):
        await link.write(Command("query"))
    await asyncio.sleep(0.05)
    assert link.raw.qsize() >= 5
    while not link.raw.empty():
        with pytest.raises(CodecError):
            decode_status(profile, link.raw.get_nowait())


async def test_slow_device_answers_late(
    link_to: LinkTo, profiles: dict[str, Profile]
) -> None:
    profile = profiles["ems-v2"]
    link = await link_to(profile)
    massager = link.massager
    massager.model.slow_seconds = 0.2
    start = time.perf_counter()
    await link.write(Command("power", 1))  # with response: the response waits too
    assert time.perf_counter() - start >= 0.19
    assert massager.model.running


# --------------------------------------------------------------------- range and reboot


async def test_drop_and_restore(
    link_to: LinkTo, radio: VirtualRadio, profiles: dict[str, Profile]
) -> None:
    profile = profiles["shiatsu-aa55"]
    link = await link_to(profile)
    massager = link.massager
    await link.write(power_on(profile))
    await link.report_where(lambda r: r.running is True)
    assert massager.connected
    await massager.drop()
    async with asyncio.timeout(1.0):
        await link.lost.wait()
    assert not massager.connected
    assert massager.dropped
    assert await scan_for(radio, massager.name, timeout=0.3) is None
    assert massager.model.running  # out of range is not off
    await massager.restore()
    again = await connect(radio, massager)
    await again.write(Command("query"), response=True)
    report = await again.report_where(lambda r: r.running is True)
    assert report.intensity == profile.capabilities.intensity.min
    await again.client.disconnect()


async def test_reboot_turns_off_and_drops_the_link(
    link_to: LinkTo, radio: VirtualRadio, profiles: dict[str, Profile]
) -> None:
    profile = profiles["shiatsu-keys"]
    link = await link_to(profile)
    massager = link.massager
    await link.write(Command("press_power"))
    await link.report_where(lambda r: r.running is True)
    await massager.reboot()
    async with asyncio.timeout(1.0):
        await link.lost.wait()
    assert not massager.model.running
    again = await connect(radio, massager)
    await again.write(Command("query"))
    assert (await again.report_where(lambda _r: True)).running is False
    await again.client.disconnect()
