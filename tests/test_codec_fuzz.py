"""Property tests of the codec over every shipped profile.

* decoding arbitrary bytes raises nothing but CodecError;
* encode/decode round-trip every command and every valid status report;
* a single changed byte in a valid frame is always detected.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from footctl.device import codec
from footctl.device.profile.loader import find_profiles
from footctl.device.profile.schema import IntRange, Profile, StatusField
from footctl.errors import CodecError
from footctl.state import Command, Report

PROFILES = find_profiles()
IDS = sorted(PROFILES)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decoders(profile: Profile, data: bytes) -> None:
    """Run every decoder on ``data``; CodecError is fine, anything else fails the test."""
    reasons: list[str] = []
    for call in (
        lambda: codec.decode_status(profile, data),
        lambda: codec.decode_command(profile, data),
        lambda: codec.parse_frame(profile, data, to_device=True),
        lambda: codec.parse_frame(profile, data, to_device=False),
    ):
        try:
            call()
        except CodecError as exc:
            reasons.append(str(exc))
    assert all(reasons), "every CodecError carries a reason"


def test_every_shipped_profile_is_fuzzed() -> None:
    assert {"ems-v2", "shiatsu-aa55", "shiatsu-keys", "aircomp-duo"} <= set(IDS)


# --- values a profile accepts ------------------------------------------------------------


def _range(r: IntRange | None, default_max: int = 0xFF) -> st.SearchStrategy[int]:
    return st.integers(r.min, r.max) if r is not None else st.integers(0, default_max)


def command_values(profile: Profile, name: str) -> st.SearchStrategy[int | None]:
    """Valid wire values for one command of ``profile``."""
    caps = profile.capabilities
    if not profile.commands[name].takes_arg:
        return st.none()
    if profile.is_v2:  # the setting whose absolute command this is
        name = next(s for s, v in profile.settings.items() if v.command == name)
    if name == "power":
        return st.sampled_from([0, 1])
    if name == "intensity":
        return _range(caps.intensity)
    if name == "heat":
        return st.sampled_from([0, *(h.wire for h in caps.heat_levels)])
    if name == "mode":
        return st.sampled_from([m.code for m in caps.modes])
    if name == "zone":
        return _range(caps.zones)
    if name == "timer":
        return _range(caps.timer_minutes)
    raise AssertionError(f"no values for {name}")


def commands(profile: Profile) -> st.SearchStrategy[Command]:
    frames = sorted(n for n, c in profile.commands.items() if c.sequence is None)
    return st.sampled_from(frames).flatmap(
        lambda name: command_values(profile, name).map(lambda v: Command(name, v))
    )


def _capacity(spec: StatusField) -> int:
    if spec.mask is not None:
        return spec.mask >> ((spec.mask & -spec.mask).bit_length() - 1)
    return (1 << (8 * spec.width)) - 1


def _bounded(r: IntRange | None, lo: int, cap: int) -> st.SearchStrategy[int]:
    low = r.min if r is not None else lo
    high = r.max if r is not None else cap
    return st.integers(low, min(high, cap))


def reports(profile: Profile) -> st.SearchStrategy[Report]:
    """Reports holding exactly the fields the profile's status carries, with valid values."""
    assert profile.status is not None
    caps = profile.capabilities
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, spec in profile.status.fields.items():
        cap = _capacity(spec)
        if name == "running":
            fields[name] = st.booleans()
        elif name == "heat":
            fields[name] = st.integers(0, caps.max_heat_level)
        elif name == "mode":
            fields[name] = st.sampled_from([m.name for m in caps.modes])
        elif name == "intensity":
            fields[name] = _bounded(caps.intensity, 0, cap)
        elif name == "zone":
            fields[name] = _bounded(caps.zones, 0, cap)
        elif name == "timer":  # minutes left: 0 when the timer has run out
            fields[name] = _bounded(None, 0, cap)
        elif name == "temperature":
            fields[name] = st.integers(0, cap).map(lambda raw, s=spec.scale: float(raw * s))
        else:  # battery, error
            fields[name] = st.integers(0, cap)
    return st.fixed_dictionaries(fields).map(lambda kw: Report(**kw))


def valid_frames(profile: Profile) -> st.SearchStrategy[tuple[bytes, bool]]:
    """A valid command (to device) or status (to app) frame, with its direction."""
    cmd = commands(profile).map(lambda c: (codec.encode(profile, c), True))
    if profile.status is None:
        return cmd
    status = reports(profile).map(lambda r: (codec.encode_status(profile, r), False))
    return st.one_of(cmd, status)


# --- no exception but CodecError ---------------------------------------------------------


@pytest.mark.parametrize("pid", IDS)
@FAST
@given(data=st.binary(max_size=48))
def test_arbitrary_bytes_raise_only_codec_error(pid: str, data: bytes) -> None:
    _decoders(PROFILES[pid], data)


@pytest.mark.parametrize("pid", IDS)
@FAST
@given(data=st.data())
def test_well_framed_arbitrary_bodies_raise_only_codec_error(pid: str, data: st.DataObject) -> None:
    # Valid header, length, direction and checksum around arbitrary code and body: this
    # reaches the command matching and status field decoding.
    profile = PROFILES[pid]
    code = data.draw(st.integers(0, 0xFF) | st.sampled_from(_codes(profile)), label="code")
    body = data.draw(st.binary(max_size=12), label="body")
    to_device = data.draw(st.booleans(), label="to_device")
    _decoders(profile, codec.build_frame(profile, code, body, to_device=to_device))


@pytest.mark.parametrize("pid", IDS)
@FAST
@given(data=st.data())
def test_mangled_valid_frames_raise_only_codec_error(pid: str, data: st.DataObject) -> None:
    profile = PROFILES[pid]
    frame, _ = data.draw(valid_frames(profile), label="frame")
    cut = data.draw(st.integers(0, len(frame)), label="cut")
    insert = data.draw(st.binary(max_size=4), label="insert")
    keep = data.draw(st.integers(0, len(frame)), label="keep")
    _decoders(profile, frame[:cut] + insert + frame[cut:][: max(0, keep - cut)])


def _codes(profile: Profile) -> list[int]:
    codes = [t.code for t in profile.commands.values() if t.code is not None]
    if profile.status is not None and profile.status.code is not None:
        codes.append(profile.status.code)
    return codes or [0]


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("pid", IDS)
def test_every_command_and_value_round_trips(pid: str) -> None:
    # Exhaustive over the (small) valid value sets rather than sampled.
    profile = PROFILES[pid]
    caps = profile.capabilities
    ranges: dict[str, list[int | None]] = {
        "power": [0, 1],
        "intensity": list(range(caps.intensity.min, caps.intensity.max + 1)),
        "heat": [0, *(h.wire for h in caps.heat_levels)],
        "mode": [m.code for m in caps.modes],
        "zone": list(range(caps.zones.min, caps.zones.max + 1)) if caps.zones else [],
        "timer": (
            list(range(caps.timer_minutes.min, caps.timer_minutes.max + 1))
            if caps.timer_minutes
            else []
        ),
    }
    checked = 0
    for name, template in profile.commands.items():
        if template.sequence is not None:
            continue  # a sequence is its commands' frames
        setting = name
        if profile.is_v2 and template.takes_arg:
            setting = next(s for s, v in profile.settings.items() if v.command == name)
        values = ranges[setting] if template.takes_arg else [None]
        assert values, f"{pid}: no valid values for {name}"
        seen: set[bytes] = set()
        for value in values:
            command = Command(name, value)
            frame = codec.encode(profile, command)
            assert len(frame) <= codec.max_write_size(profile)
            endpoint = template.endpoint
            assert codec.decode_command(profile, frame, endpoint=endpoint) == command
            seen.add(frame)
            checked += 1
        assert len(seen) == len(values), f"{pid}: {name} values collide on the wire"
    assert checked >= sum(1 for c in profile.commands.values() if c.sequence is None)


@pytest.mark.parametrize("pid", IDS)
@FAST
@given(data=st.data())
def test_command_round_trip(pid: str, data: st.DataObject) -> None:
    profile = PROFILES[pid]
    command = data.draw(commands(profile), label="command")
    endpoint = profile.commands[command.name].endpoint
    assert codec.decode_command(profile, codec.encode(profile, command), endpoint=endpoint) == (
        command
    )


WITH_STATUS = [pid for pid in IDS if PROFILES[pid].status is not None]


@pytest.mark.parametrize("pid", WITH_STATUS)
@FAST
@given(data=st.data())
def test_status_round_trip(pid: str, data: st.DataObject) -> None:
    profile = PROFILES[pid]
    report = data.draw(reports(profile), label="report")
    frame = codec.encode_status(profile, report)
    assert len(frame) <= codec.max_write_size(profile)
    assert codec.decode_status(profile, frame) == report
    # A status frame is not a command, and not a valid app->device frame.
    with pytest.raises(CodecError):
        codec.decode_command(profile, frame)


# --- corruption is detected --------------------------------------------------------------


CHECKSUMMED = [
    pid for pid in IDS
    if PROFILES[pid].framing.checksum is not None
    and all(c.kind in ("framed", "sequence") for c in PROFILES[pid].commands.values())
    and (PROFILES[pid].status is None or PROFILES[pid].status.framed)  # type: ignore[union-attr]
]


def test_checksummed_profiles_are_the_framed_ones() -> None:
    assert {"ems-v2", "shiatsu-aa55", "shiatsu-keys", "aircomp-duo"} <= set(CHECKSUMMED)


@pytest.mark.parametrize("pid", CHECKSUMMED)
@FAST
@given(data=st.data())
def test_single_byte_corruption_is_detected(pid: str, data: st.DataObject) -> None:
    profile = PROFILES[pid]
    cs = profile.framing.checksum
    assert cs is not None
    # The checksum covers every byte before it but (part of) the header, which is checked
    # as it is.
    assert cs.start <= len(profile.framing.header)
    assert cs.stop_before == 0
    # sum8, xor8 and CRC16 all change when exactly one covered byte changes, and here
    # the checksum covers every byte before it; the rest is header/trailer, checked as is.
    frame, to_device = data.draw(valid_frames(profile), label="frame")
    pos = data.draw(st.integers(0, len(frame) - 1), label="pos")
    new = data.draw(st.integers(0, 0xFF).filter(lambda b: b != frame[pos]), label="byte")
    corrupt = frame[:pos] + bytes([new]) + frame[pos + 1 :]
    with pytest.raises(CodecError):
        codec.parse_frame(profile, corrupt, to_device=to_device)
    decode = codec.decode_command if to_device else codec.decode_status
    with pytest.raises(CodecError):
        decode(profile, corrupt)
