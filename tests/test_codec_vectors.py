"""Byte-exact codec tests: the vector files in tests/vectors/ and small purpose-built profiles.

The expected bytes are worked out independently of footctl.device.codec (by hand for the xor8
and inverted-sum8 profiles, with the bitwise CRC below for the CRC ones), and every
vector's checksum is re-checked here by an independent implementation.
"""

from __future__ import annotations

import tomllib
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

from footctl.device import codec
from footctl.device.profile.loader import find_profiles, load_profile_text
from footctl.device.profile.schema import Checksum, Profile
from footctl.errors import CodecError
from footctl.state import Command, Report
from test_bed_profiles_vectors import BED_LAYOUTS

VECTOR_DIR = Path(__file__).parent / "vectors"
PROFILES = find_profiles()


# --- independent checksums --------------------------------------------------------


def _reflect(value: int, bits: int) -> int:
    return int(f"{value:0{bits}b}"[::-1], 2)


def crc_bitwise(
    data: bytes, *, poly: int, init: int, refin: bool, refout: bool, xorout: int, width: int = 16
) -> int:
    """A plain bit-at-a-time Rocksoft-model CRC, written without the crc package."""
    top = 1 << (width - 1)
    full = (1 << width) - 1
    reg = init
    for byte in data:
        b = _reflect(byte, 8) if refin else byte
        reg ^= b << (width - 8)
        for _ in range(8):
            reg = ((reg << 1) ^ poly) & full if reg & top else (reg << 1) & full
    if refout:
        reg = _reflect(reg, width)
    return reg ^ xorout


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    return crc_bitwise(data, poly=0x1021, init=0xFFFF, refin=False, refout=False, xorout=0)


def crc16_modbus(data: bytes) -> int:
    return crc_bitwise(data, poly=0x8005, init=0xFFFF, refin=True, refout=True, xorout=0)


def independent_checksum_ok(profile_id: str, frame: bytes) -> bool:
    """Check a shipped-profile frame's checksum without footctl.device.codec."""
    if profile_id == "ems-v2":  # CRC BE over everything before it, then 0D 0A
        return crc16_ccitt_false(frame[:-4]) == int.from_bytes(frame[-4:-2], "big")
    if profile_id == "shiatsu-aa55":  # xor8 over everything before it
        return reduce(lambda a, b: a ^ b, frame[:-1], 0) == frame[-1]
    if profile_id == "shiatsu-keys":  # inverted sum8 over everything before it
        return (~sum(frame[:-1]) & 0xFF) == frame[-1]
    if profile_id in INDEPENDENT:
        return INDEPENDENT[profile_id](frame)
    raise AssertionError(f"no independent checksum for {profile_id}")


def _aircomp_duo(frame: bytes) -> bool:
    """16-bit sum after the 2-byte header, inverted, masked to 12 bits, big-endian."""
    return ((~sum(frame[2:-2]) & 0xFFFF) & 0x0FFF) == int.from_bytes(frame[-2:], "big")


def _no_checksum(frame: bytes) -> bool:
    """Fixed frames without a checksum: nothing to re-check."""
    return bool(frame)


def _shiatsu_nodes(frame: bytes) -> bool:
    """Two's complement of the 8-bit sum after the 2-byte header."""
    return (-sum(frame[2:-1]) & 0xFF) == frame[-1]


def _keys_table(frame: bytes) -> bool:
    """Text commands end CR LF; status frames (4B 53 ...) end in xor8 of every byte before."""
    if frame.startswith(b"\x4b\x53"):
        return reduce(lambda a, b: a ^ b, frame[:-1], 0) == frame[-1]
    return frame.endswith(b"\r\n") and frame.isascii()


INDEPENDENT = {
    "aircomp-duo": _aircomp_duo,
    "aircomp-mini": _no_checksum,
    "shiatsu-nodes": _shiatsu_nodes,
    "keys-table": _keys_table,
    "stepper-blind": _no_checksum,
}

# The adjustable-bed profiles (issue #14): each family's frame layout, written from
# docs/bed-protocols.md without footctl.device.codec.
INDEPENDENT.update(BED_LAYOUTS)


def test_bitwise_crc_matches_published_check_values() -> None:
    # Guards the reference implementation itself.
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_modbus(b"123456789") == 0x4B37
    assert crc_bitwise(b"123456789", poly=0x1021, init=0, refin=False, refout=False, xorout=0) == (
        0x31C3
    )


# --- the vector files ---------------------------------------------------------------


def _load_vectors() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(VECTOR_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert data["profile"] == path.stem, f"{path} names profile {data['profile']}"
        out[path.stem] = data
    return out


VECTORS = _load_vectors()


def _cases(section: str) -> list[Any]:
    cases = []
    for pid, data in VECTORS.items():
        for i, entry in enumerate(data.get(section, [])):
            label = entry.get("name") or entry.get("why") or entry["hex"]
            cases.append(pytest.param(pid, entry, id=f"{pid}-{section}{i}-{label}"))
    return cases


def test_every_shipped_profile_has_vectors() -> None:
    assert set(VECTORS) == set(PROFILES)
    for pid, data in VECTORS.items():
        assert data.get("command"), pid
        assert bool(data.get("status")) == (PROFILES[pid].status is not None), pid
        assert data.get("bad"), pid


def test_every_command_has_a_vector() -> None:
    for pid, data in VECTORS.items():
        covered = {entry["name"] for entry in data["command"]}
        covered |= {entry["name"] for entry in data.get("sequence", [])}
        assert covered == set(PROFILES[pid].commands), pid


@pytest.mark.parametrize(("pid", "entry"), _cases("sequence"))
def test_sequence_vector(pid: str, entry: dict[str, Any]) -> None:
    profile = PROFILES[pid]
    writes = codec.writes(profile, Command(entry["name"]))
    frames = [w.frame.hex(" ") for w in writes if isinstance(w, codec.Write)]
    waits = [w.seconds for w in writes if isinstance(w, codec.Pause)]
    assert frames == entry["frames"]
    assert waits == entry["waits"]
    # A sequence is never one frame.
    with pytest.raises(CodecError, match="sequence"):
        codec.encode(profile, Command(entry["name"]))


@pytest.mark.parametrize(("pid", "entry"), _cases("command"))
def test_command_vector(pid: str, entry: dict[str, Any]) -> None:
    profile = PROFILES[pid]
    expected = bytes.fromhex(entry["hex"])
    command = Command(entry["name"], entry.get("value"))
    assert independent_checksum_ok(pid, expected), "the vector's own checksum is wrong"
    assert codec.encode(profile, command) == expected
    endpoint = profile.commands[command.name].endpoint
    assert codec.decode_command(profile, expected, endpoint=endpoint) == command


@pytest.mark.parametrize(("pid", "entry"), _cases("status"))
def test_status_vector(pid: str, entry: dict[str, Any]) -> None:
    profile = PROFILES[pid]
    frame = bytes.fromhex(entry["hex"])
    report = Report(**entry["expect"])
    assert independent_checksum_ok(pid, frame), "the vector's own checksum is wrong"
    assert codec.decode_status(profile, frame) == report
    assert codec.encode_status(profile, report) == frame


@pytest.mark.parametrize(("pid", "entry"), _cases("bad"))
def test_bad_frame(pid: str, entry: dict[str, Any]) -> None:
    profile = PROFILES[pid]
    frame = bytes.fromhex(entry["hex"])
    if "valid" in entry["why"]:
        # Only the property named in `why` is wrong: the checksum is right.
        assert independent_checksum_ok(pid, frame)
    decode = codec.decode_status if entry["kind"] == "status" else codec.decode_command
    with pytest.raises(CodecError, match=entry.get("match")) as info:
        decode(profile, frame)
    assert pid in str(info.value)
    if entry["kind"] == "command":
        for endpoint in profile.gatt.endpoints:  # nor on any other characteristic
            with pytest.raises(CodecError):
                codec.decode_command(profile, frame, endpoint=endpoint)


@pytest.mark.parametrize(("pid", "entry"), _cases("bad_encode"))
def test_bad_encode(pid: str, entry: dict[str, Any]) -> None:
    profile = PROFILES[pid]
    with pytest.raises(CodecError) as info:
        codec.encode(profile, Command(entry["name"], entry.get("value")))
    message = str(info.value)
    assert pid in message
    assert entry["name"] in message


def test_max_write_size_is_mtu_less_three() -> None:
    for profile in PROFILES.values():
        assert codec.max_write_size(profile) == profile.gatt.mtu - 3
    big = PROFILES["ems-v2"].model_copy(
        update={"gatt": PROFILES["ems-v2"].gatt.model_copy(update={"mtu": 247})}
    )
    assert codec.max_write_size(big) == 244


def test_parse_frame_gives_code_and_body() -> None:
    profile = PROFILES["ems-v2"]
    frame = codec.parse_frame(
        profile, bytes.fromhex("79 68 0b 00 01 11 06 87 72 0d 0a"), to_device=True
    )
    assert frame == codec.Frame(code=0x11, body=b"\x06")
    built = codec.build_frame(profile, 0x90, bytes(7), to_device=False)
    assert built == bytes.fromhex("79 68 11 00 02 90 00 00 00 00 00 00 00 24 57 0d 0a")
    with pytest.raises(CodecError, match="direction"):
        codec.parse_frame(profile, built, to_device=True)


# --- checksum_value against published check values ------------------------------------

CHECK = b"123456789"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"preset": "crc16-ccitt"}, 0x29B1),
        ({"preset": "crc16-xmodem"}, 0x31C3),
        ({"preset": "crc16-modbus"}, 0x4B37),
        # CRC-16/ARC and CRC-32 (ISO-HDLC) by parameters.
        ({"algorithm": "crc", "poly": 0x8005, "refin": True, "refout": True}, 0xBB3D),
        (
            {
                "algorithm": "crc", "width": 32, "poly": 0x04C11DB7, "init": 0xFFFFFFFF,
                "refin": True, "refout": True, "xorout": 0xFFFFFFFF,
            },
            0xCBF43926,
        ),
        # CRC-8/SMBUS
        ({"algorithm": "crc", "width": 8, "poly": 0x07}, 0xF4),
        # explicit parameters override the preset's: ccitt with init 0 is xmodem
        ({"preset": "crc16-ccitt", "init": 0}, 0x31C3),
        # 0x31 + ... + 0x39 = 0x1DD; 0x31 ^ ... ^ 0x39 = 0x31
        ({"preset": "sum8"}, 0xDD),
        ({"preset": "xor8"}, 0x31),
        ({"preset": "inverted-sum8"}, 0x22),
        ({"algorithm": "sum", "width": 16}, 0x01DD),
        ({"algorithm": "sum", "width": 16, "invert": True}, 0xFE22),
        ({"algorithm": "sum", "mask": 0x7F}, 0x5D),
        ({"algorithm": "xor", "width": 16}, 0x0031),
    ],
)
def test_checksum_check_values(params: dict[str, Any], expected: int) -> None:
    assert codec.checksum_value(Checksum.model_validate(params), CHECK) == expected


def test_crc_agrees_with_bitwise_reference() -> None:
    ccitt = Checksum(preset="crc16-ccitt")
    modbus = Checksum(preset="crc16-modbus")
    for n in range(40):
        data = bytes((i * 37 + n * 11) & 0xFF for i in range(n))
        assert codec.checksum_value(ccitt, data) == crc16_ccitt_false(data)
        assert codec.checksum_value(modbus, data) == crc16_modbus(data)


# --- small profiles for the framing variants ------------------------------------------

COMMANDS = """
[commands.power]
code = 0x01
body = [{ arg = "u8" }]

[commands.intensity]
code = 0x03
body = [{ const = "00 00" }, { arg = "u16be" }]

[commands.mode]
code = 0x04
body = [{ arg = "u16le", add = 0x100 }]

[commands.heat]
code = 0x05
body = [{ const = "C0" }, { arg = "u8", add = -1 }]
"""

STATUS = """
[status]
code = 0x80
length = 4

[status.fields]
running = { offset = 0, mask = 0x80 }
mode = { offset = 0, mask = 0x70, map = { "1" = 0, "2" = 7 } }
intensity = { offset = 0, mask = 0x0F }
heat = { offset = 1 }
temperature = { offset = 2, width = 2, byteorder = "little", scale = 0.5 }
"""


def tiny(framing: str, *, status: str = "", commands: str = COMMANDS) -> Profile:
    """A minimal absolute-style profile with the given [framing] body."""
    text = f"""
schema_version = 1
id = "tiny"
name = "tiny test device"

[advertisement]
local_name = "TINY"

[gatt]
service = "FFE0"
write = "FFE1"
notify = "FFE2"
mtu = 185

[capabilities]
command_style = "absolute"
reports_status = {"true" if status else "false"}
intensity = {{ min = 0, max = 10 }}
modes = [{{ name = "a", code = 0 }}, {{ name = "b", code = 7 }}]
heat_levels = [
  {{ level = 1, celsius = 38, code = 0x10 }},
  {{ level = 2, celsius = 42, code = 0x20 }},
]

[framing]
{framing}
{commands}
{status}
"""
    return load_profile_text(text)


LENGTH_NO_CS = 'header = "A5"\ntrailer = "EE"\ndirection = { to_device = 0x01, to_app = 0x02 }\n'


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        # A5 | len | 01 (dir) | 01 (code) | 01 (body) | EE: 6 bytes, 7 with a 2-byte length
        ("{ width = 1, covers = 'frame' }", "a5 06 01 01 01 ee"),
        ("{ width = 1, covers = 'rest' }", "a5 04 01 01 01 ee"),  # dir, code, body, trailer
        ("{ width = 1, covers = 'payload' }", "a5 03 01 01 01 ee"),  # dir, code, body
        ("{ width = 1, covers = 'body' }", "a5 01 01 01 01 ee"),
        ("{ width = 1, covers = 'frame', adjust = -1 }", "a5 05 01 01 01 ee"),
        ("{ width = 1, covers = 'body', adjust = 2 }", "a5 03 01 01 01 ee"),
        ("{ width = 2, byteorder = 'big', covers = 'rest' }", "a5 00 04 01 01 01 ee"),
        ("{ width = 2, covers = 'frame', adjust = 3 }", "a5 0a 00 01 01 01 ee"),
    ],
)
def test_length_covers_and_adjust(length: str, expected: str) -> None:
    profile = tiny(LENGTH_NO_CS + f"length = {length}\n")
    frame = bytes.fromhex(expected)
    assert codec.encode(profile, Command("power", 1)) == frame
    assert codec.decode_command(profile, frame) == Command("power", 1)
    # The same frame with one more body byte must fail on the length field.
    longer = frame[:-1] + b"\x00" + frame[-1:]
    with pytest.raises(CodecError, match="length"):
        codec.parse_frame(profile, longer, to_device=True)


def test_length_counts_the_checksum() -> None:
    profile = tiny(
        'header = "A5"\nlength = { width = 1, covers = "rest" }\nchecksum = { preset = "sum8" }'
    )
    # A5 | 03 (code, body, checksum) | 01 | 01 | A5 + 03 + 01 + 01 = AA
    assert codec.encode(profile, Command("power", 1)) == bytes.fromhex("a5 03 01 01 aa")


def test_length_that_does_not_fit_is_an_error() -> None:
    profile = tiny('header = "A5"\nlength = { width = 1, covers = "body", adjust = 255 }')
    with pytest.raises(CodecError, match="length"):
        codec.encode(profile, Command("power", 1))


def test_crc_with_start_and_stop_before() -> None:
    profile = tiny(
        'header = "AA BB"\nchecksum = { preset = "crc16-ccitt", start = 2, stop_before = 1 }'
    )
    frame = codec.encode(profile, Command("power", 7))
    # Covers the code byte only: from offset 2 up to (checksum position 4) - 1.
    assert frame[:4] == bytes.fromhex("aa bb 01 07")
    assert frame[4:] == crc16_ccitt_false(b"\x01").to_bytes(2, "big")
    assert frame[4:] == bytes.fromhex("f1 d1")
    # The excluded bytes (header, argument) do not affect the checksum...
    assert codec.encode(profile, Command("power", 8))[4:] == frame[4:]
    # ...and the covered one does.
    tampered = frame[:2] + b"\x02" + frame[3:]
    with pytest.raises(CodecError, match="checksum"):
        codec.parse_frame(profile, tampered, to_device=True)


def test_crc16_modbus_little_endian_is_the_classic_modbus_frame() -> None:
    # Modbus RTU "read 10 holding registers from 0 on slave 1": 01 03 00 00 00 0A C5 CD.
    profile = tiny('header = "01"\nchecksum = { preset = "crc16-modbus", byteorder = "little" }')
    frame = codec.encode(profile, Command("intensity", 10))
    assert frame == bytes.fromhex("01 03 00 00 00 0a c5 cd")
    assert crc16_modbus(frame[:-2]).to_bytes(2, "little") == frame[-2:]
    assert codec.decode_command(profile, frame) == Command("intensity", 10)


@pytest.mark.parametrize(
    ("checksum", "tail"),
    [
        # FF + FF + 01 + FF = 0x2FE
        ("{ algorithm = 'sum', width = 16 }", "02 fe"),
        ("{ algorithm = 'sum', width = 16, byteorder = 'little' }", "fe 02"),
        ("{ algorithm = 'sum', width = 16, invert = true }", "fd 01"),
        ("{ preset = 'sum8' }", "fe"),
        ("{ preset = 'inverted-sum8' }", "01"),
        ("{ algorithm = 'sum', width = 32 }", "00 00 02 fe"),
    ],
)
def test_sum_widths_and_byteorder(checksum: str, tail: str) -> None:
    profile = tiny(f'header = "FF FF"\nchecksum = {checksum}')
    frame = codec.encode(profile, Command("power", 0xFF))
    assert frame == bytes.fromhex("ff ff 01 ff " + tail)
    assert codec.decode_command(profile, frame) == Command("power", 0xFF)


def test_arg_formats_and_add() -> None:
    profile = tiny('header = "A5"')
    # u16be after two const bytes
    assert codec.encode(profile, Command("intensity", 0x1234)) == bytes.fromhex("a5 03 00 00 12 34")
    # u16le with add 0x100: 7 + 0x100 = 0x0107
    assert codec.encode(profile, Command("mode", 7)) == bytes.fromhex("a5 04 07 01")
    assert codec.decode_command(profile, bytes.fromhex("a5 04 07 01")) == Command("mode", 7)
    # u8 with add -1 after a const byte
    assert codec.encode(profile, Command("heat", 0x20)) == bytes.fromhex("a5 05 c0 1f")
    assert codec.decode_command(profile, bytes.fromhex("a5 05 c0 1f")) == Command("heat", 0x20)
    with pytest.raises(CodecError, match="heat"):
        codec.encode(profile, Command("heat", 0))  # 0 - 1 does not fit a u8
    with pytest.raises(CodecError, match="mode"):
        codec.encode(profile, Command("mode", 0xFF00))  # + 0x100 overflows a u16
    with pytest.raises(CodecError, match="no command"):
        codec.decode_command(profile, bytes.fromhex("a5 05 c1 1f"))  # const byte differs
    with pytest.raises(CodecError, match="tiny"):
        codec.encode(profile, Command("zone", 1))


def test_status_mask_map_scale_and_width() -> None:
    profile = tiny('header = "A5"\nchecksum = { preset = "sum8" }', status=STATUS)
    report = Report(running=True, mode="b", intensity=9, heat=2, temperature=40.5)
    # byte 0: 0x80 (running) | 2 << 4 (mode b -> code 7 -> raw 2) | 9 = 0xA9
    # byte 1: heat level 2 -> wire 0x20; bytes 2-3: 40.5 / 0.5 = 81 = 0x0051 LE
    # sum8: A5 + 80 + A9 + 20 + 51 = 0x23F -> 3F
    frame = bytes.fromhex("a5 80 a9 20 51 00 3f")
    assert codec.encode_status(profile, report) == frame
    assert codec.decode_status(profile, frame) == report
    # Fields left None are 0 on the wire (raw 0, before the map): A5 + 80 = 0x125 -> 25.
    assert codec.encode_status(profile, Report()) == bytes.fromhex("a5 80 00 00 00 00 25")
    with pytest.raises(CodecError, match="mode"):  # raw mode 0 is not in the map
        codec.decode_status(profile, bytes.fromhex("a5 80 00 00 00 00 25"))
    zero = codec.decode_status(profile, bytes.fromhex("a5 80 10 00 00 00 35"))
    assert zero == Report(running=False, mode="a", intensity=0, heat=0, temperature=0.0)


def test_status_errors() -> None:
    profile = tiny('header = "A5"\nchecksum = { preset = "sum8" }', status=STATUS)
    # mode raw 3 is not in the map: A5 + 80 + 30 = 0x155 -> 55
    with pytest.raises(CodecError, match="mode"):
        codec.decode_status(profile, bytes.fromhex("a5 80 30 00 00 00 55"))
    # heat wire 0x30 is no level: A5 + 80 + 10 + 30 = 0x165 -> 65
    with pytest.raises(CodecError, match="heat"):
        codec.decode_status(profile, bytes.fromhex("a5 80 10 30 00 00 65"))
    with pytest.raises(CodecError, match="intensity"):
        codec.encode_status(profile, Report(intensity=16))  # does not fit the 4-bit mask
    with pytest.raises(CodecError, match="mode"):
        codec.encode_status(profile, Report(mode="zzz"))
    with pytest.raises(CodecError, match="heat"):
        codec.encode_status(profile, Report(heat=3))


def test_profile_without_status() -> None:
    profile = tiny('header = "A5"')
    assert profile.status is None
    with pytest.raises(CodecError, match="status"):
        codec.decode_status(profile, bytes.fromhex("a5 80 00 00 00 00"))
    with pytest.raises(CodecError, match="status"):
        codec.encode_status(profile, Report())


def test_ambiguous_commands_are_reported() -> None:
    commands = COMMANDS + '\n[commands.stop]\ncode = 0x07\n\n[commands.query]\ncode = 0x07\n'
    profile = tiny('header = "A5"', commands=commands)
    assert codec.encode(profile, Command("stop")) == codec.encode(profile, Command("query"))
    with pytest.raises(CodecError, match="ambiguous"):
        codec.decode_command(profile, bytes.fromhex("a5 07"))
