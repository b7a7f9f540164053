"""The scan request of the control API (issue #8): refused at the edge when malformed,
answered by an in-process Owner from every radio it holds, and by the daemon over its
socket to ``footctl scan --json`` (the thin client, no BLE stack in that process)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from footctl.config import Config
from footctl.control.api import (
    MAX_SCAN_S,
    MIN_SCAN_S,
    ErrorReply,
    Reply,
    ScanRequest,
    parse_request,
)
from footctl.control.owner import DeviceSpec, Owner
from footctl.device.profile.schema import Profile
from footctl.device.transport.ble import Radio
from footctl.errors import UsageError
from footctl.virtual import radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.peripheral import VirtualMassager

# --- the model, at the edge ----------------------------------------------------------

GOOD: list[dict[str, Any]] = [
    {"kind": "scan"},
    {"kind": "scan", "seconds": MIN_SCAN_S},
    {"kind": "scan", "seconds": MAX_SCAN_S},
    {"kind": "scan", "seconds": 3, "source": "tui"},  # an int is a number of seconds
    {"kind": "scan", "seconds": 2.5, "profile": "ems-v2"},
]

# Each malformed request, and the field the refusal must name.
BAD: list[tuple[dict[str, Any], str]] = [
    ({"kind": "scan", "seconds": True}, "seconds"),  # a bool is not a duration
    ({"kind": "scan", "seconds": False}, "seconds"),
    ({"kind": "scan", "seconds": math.nan}, "seconds"),
    ({"kind": "scan", "seconds": math.inf}, "seconds"),
    ({"kind": "scan", "seconds": -math.inf}, "seconds"),
    ({"kind": "scan", "seconds": 0}, "seconds"),
    ({"kind": "scan", "seconds": MIN_SCAN_S / 2}, "seconds"),
    ({"kind": "scan", "seconds": MAX_SCAN_S + 0.001}, "seconds"),
    ({"kind": "scan", "seconds": "5"}, "seconds"),  # no strings for numbers
    ({"kind": "scan", "seconds": None}, "seconds"),
    ({"kind": "scan", "profile": ""}, "profile"),
    ({"kind": "scan", "profile": "x" * 65}, "profile"),
    ({"kind": "scan", "profile": 7}, "profile"),
    ({"kind": "scan", "device": "m0"}, "device"),  # extra fields are refused, not ignored
    ({"kind": "scan", "intensity": 1}, "intensity"),
    ({"kind": "scan", "source": "nobody"}, "source"),
    ({"kind": "scan", "v": 2}, "v"),
]


@pytest.mark.parametrize("data", GOOD, ids=repr)
def test_a_well_formed_scan_request_passes(data: dict[str, Any]) -> None:
    request = parse_request(data)
    assert isinstance(request, ScanRequest)
    assert MIN_SCAN_S <= request.seconds <= MAX_SCAN_S


@pytest.mark.parametrize(("data", "field"), BAD, ids=repr)
def test_a_malformed_scan_request_is_refused_at_the_edge(data: dict[str, Any], field: str) -> None:
    for line in (data, json.dumps(data).encode()):  # a decoded object, and a JSON line
        with pytest.raises(UsageError) as caught:
            parse_request(line)
        assert caught.value.exit_code == 2
        assert f"scan.{field}:" in caught.value.message, caught.value.message


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans())
def test_seconds_pass_only_within_the_range(seconds: float) -> None:
    data = {"kind": "scan", "seconds": seconds}
    inside = (
        not isinstance(seconds, bool) and math.isfinite(seconds)
        and MIN_SCAN_S <= seconds <= MAX_SCAN_S
    )
    if inside:
        request = parse_request(data)
        assert isinstance(request, ScanRequest) and request.seconds == seconds
    else:
        with pytest.raises(UsageError):
            parse_request(data)


# --- an owner answers from its radios --------------------------------------------------


class Rig:
    """Virtual massagers on one link; an Owner holding the first ``held`` of them."""

    def __init__(self) -> None:
        self.world = VirtualWorld()
        self.massagers: list[VirtualMassager] = []
        self.owner: Owner | None = None
        self.closers: list[Any] = []

    async def build(self, profiles: list[Profile], held: int, *, connect: bool = True) -> Owner:
        specs = []
        for i, profile in enumerate(profiles):
            m = await VirtualMassager.create(self.world, profile)
            self.massagers.append(m)
            specs.append(DeviceSpec(profile, m.address, f"m{i}", simulated=True))
        vradio = await radio_for_world(self.world)
        self.closers.append(vradio.close)
        radio = Radio("virtual", vradio.scanner_backend, vradio.client_backend)
        self.owner = Owner(Config(), [(s, radio) for s in specs[:held]], scan_timeout=5.0)
        await self.owner.open(connect=connect)
        return self.owner

    async def close(self) -> None:
        if self.owner is not None:
            await self.owner.close()
        for close in self.closers:
            await close()
        for m in self.massagers:
            await m.close()
        await self.world.close()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    yield r
    await r.close()


def ok(reply: Reply | ErrorReply) -> Reply:
    assert isinstance(reply, Reply), reply
    return reply


async def test_an_owner_answers_a_scan_with_what_its_radio_hears(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    owner = await rig.build(
        [profiles["shiatsu-aa55"], profiles["ems-v2"], profiles["keys-table"]], held=1,
        connect=False,  # the held one keeps advertising, so the scan hears it too
    )
    reply = ok(await owner.request(ScanRequest(source="tui", seconds=1.0)))
    by_address = {s.address: s for s in reply.seen}
    addresses = [m.address for m in rig.massagers]
    assert set(addresses) <= set(by_address), (addresses, by_address)
    mine, ems, keys = (by_address[a] for a in addresses)
    assert (mine.held, mine.device_id, mine.profile) == (True, owner.held[0].device_id,
                                                          "shiatsu-aa55")
    assert (ems.held, ems.device_id, ems.profile) == (False, None, "ems-v2")
    assert (keys.held, keys.profile) == (False, "keys-table")
    assert {s.radio for s in reply.seen} == {"virtual"}
    assert all(s.rssi == -50 for s in reply.seen)  # the virtual radio's fixed RSSI
    assert [v.device_id for v in reply.devices] == [owner.held[0].device_id]
    # listening drove nothing
    assert not any(m.model.running for m in rig.massagers)


async def test_a_profile_filter_keeps_what_that_profile_recognises(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    owner = await rig.build([profiles["shiatsu-aa55"], profiles["ems-v2"]], held=1)
    reply = ok(await owner.request(ScanRequest(seconds=1.0, profile="ems-v2")))
    assert [(s.address, s.profile) for s in reply.seen] == [(rig.massagers[1].address, "ems-v2")]
    unknown = await owner.request(ScanRequest(seconds=1.0, profile="no-such-profile"))
    assert isinstance(unknown, ErrorReply) and unknown.exit_code == 2
