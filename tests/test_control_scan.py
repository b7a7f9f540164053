"""The scan request of the control API (issue #8): refused at the edge when malformed,
answered by an in-process Owner from every radio it holds (the daemon over its socket:
tests/test_scan_e2e.py)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import test_control_owner
from footctl.control.api import (
    MAX_SCAN_S,
    MIN_SCAN_S,
    ErrorReply,
    ScanRequest,
    parse_request,
)
from footctl.control.owner import Owner
from footctl.device.profile.schema import Profile
from footctl.errors import UsageError
from footctl.virtual.peripheral import VirtualMassager
from test_control_owner import Rig, ok

# Virtual massagers and an Owner holding them: test_control_owner's rig.
rig = test_control_owner.rig

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


async def held_and_strangers(rig: Rig, held: Profile, *others: Profile,
                             connect: bool = True) -> Owner:
    """An owner holding a massager of ``held``; massagers of ``others`` on the same
    virtual link that nobody holds (closed with the rig)."""
    owner = await rig.build([held], connect=connect)
    for profile in others:
        rig.massagers.append(await VirtualMassager.create(rig.world, profile))
    return owner


async def test_an_owner_answers_a_scan_with_what_its_radio_hears(
    rig: Rig, profiles: dict[str, Profile]
) -> None:
    owner = await held_and_strangers(
        rig, profiles["shiatsu-aa55"], profiles["ems-v2"], profiles["keys-table"],
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
    owner = await held_and_strangers(rig, profiles["shiatsu-aa55"], profiles["ems-v2"])
    reply = ok(await owner.request(ScanRequest(seconds=1.0, profile="ems-v2")))
    assert [(s.address, s.profile) for s in reply.seen] == [(rig.massagers[1].address, "ems-v2")]
    unknown = await owner.request(ScanRequest(seconds=1.0, profile="no-such-profile"))
    assert isinstance(unknown, ErrorReply) and unknown.exit_code == 2
