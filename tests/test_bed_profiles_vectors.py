"""The adjustable-bed massage profiles (``device_profiles/bed-*.toml``, issue #14).

* Every bed frame in ``tests/vectors/bed-*.toml`` is checked here against its family's
  layout by code written from ``docs/bed-protocols.md``, without footctl.device.codec
  (:data:`BED_LAYOUTS`; test_codec_vectors.py uses them as its independent check).
* ``[[sequence]]`` vectors (a key and its release, an init handshake, an off made of several
  frames) are compared with :func:`footctl.device.codec.writes`, waits included.
* Every bed profile names its source (repository, file, commit), says it is untested on
  hardware, and declares no command that moves the bed; ``profile check`` refuses one that
  does.
* The variants whose source has no massage off (``device_profiles/no-off/``) are not shipped:
  their only stop is a blind toggle. They load, their vectors hold, and lint says why.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

from footctl import cli
from footctl.device import codec
from footctl.device.profile.lint import lint
from footctl.device.profile.loader import find_profiles, load_profile
from footctl.device.profile.roundtrip import round_trip
from footctl.device.profile.schema import Profile
from footctl.errors import CodecError
from footctl.state import Command

ROOT = Path(__file__).resolve().parent.parent
VECTOR_DIR = Path(__file__).parent / "vectors"
PROFILE_DIR = ROOT / "device_profiles"
NO_OFF_DIR = PROFILE_DIR / "no-off"
SHIPPED = find_profiles()
BED_IDS = sorted(pid for pid in SHIPPED if pid.startswith("bed-"))
# Not shipped: the source has no massage off for these variants (see the module docstring).
NO_OFF: dict[str, Profile] = {p.stem: load_profile(p) for p in sorted(NO_OFF_DIR.glob("*.toml"))}
NO_OFF_IDS = sorted(NO_OFF)
PROFILES: dict[str, Profile] = {**{pid: SHIPPED[pid] for pid in BED_IDS}, **NO_OFF}
ALL_IDS = sorted(PROFILES)

SOURCE_REPOSITORY = "kristofferR/ha-adjustable-bed"
SOURCE_COMMIT = "933786624f9f630fddea1c3dba8015e03422794f"

# The families issue #14 asks for, and the profiles that carry each (a family missing here
# is listed, with the reason, in device_profiles/README.md).
FAMILY_PROFILES: dict[str, tuple[str, ...]] = {
    "keeson": (
        "bed-keeson-base", "bed-keeson-okin", "bed-keeson-ksbt-raw", "bed-keeson-ksbt-cr",
        "bed-keeson-ksbt04c", "bed-keeson-purple-plus", "bed-keeson-sino",
        "bed-keeson-sleep-harmony", "bed-keeson-harmony-i5",
    ),
    "okin_7byte": ("bed-okin-7byte-nectar", "bed-okin-7byte-nordic"),
    "okin_uuid": ("bed-okin-uuid-rf-touch",),
    "okin_cb24": ("bed-okin-cb24-legacy", "bed-okin-cb24-new"),
    "richmat": (
        "bed-richmat-single", "bed-richmat-wilinke", "bed-richmat-prefix55",
        "bed-richmat-prefixaa",
    ),
    "leggett_gen2": ("bed-leggett-gen2",),
    "leggett_wilinke": ("bed-leggett-wilinke",),
    "reverie": ("bed-reverie",),
    "linak": ("bed-linak",),
    "jiecang": ("bed-jiecang",),
    "motosleep": (
        "bed-motosleep-hhc", "bed-motosleep-raw", "bed-motosleep-hhc-zero",
        "bed-motosleep-raw-zero",
    ),
    "jensen": ("bed-jensen",),
}


# --- independent frame layouts (from docs/bed-protocols.md, not from footctl.device.codec) ---


def _sum8(data: bytes) -> int:
    return sum(data) & 0xFF


def _inverted_sum8(data: bytes) -> int:
    return ~sum(data) & 0xFF


def _xor8(data: bytes) -> int:
    return reduce(lambda a, b: a ^ b, data, 0)


def _linak(f: bytes) -> bool:
    return len(f) == 2 and f[1] == 0x00


def _wilinke_like(header: bytes) -> Callable[[bytes], bool]:
    def check(f: bytes) -> bool:
        return len(f) == 5 and f[:3] == header and f[4] == _sum8(f[:4])

    return check


def _okin_7byte_nordic(f: bytes) -> bool:
    if f in (bytes.fromhex("09050a23050000"), bytes.fromhex("5a0b00a5")):
        return True
    return len(f) == 7 and f[:4] == b"\x5a\x01\x03\x10" and f[4] in (0x30, 0x40) and f[6] == 0xA5


def _okin_7byte(f: bytes) -> bool:
    return len(f) == 7 and f[:5] == b"\x5a\x01\x03\x10\x30" and f[6] == 0xA5


def _jensen(f: bytes) -> bool:
    massage = f[:1] == b"\x12" and f[3:] == b"\x00\x00\x00"
    unlock_or_query = f[:1] in (b"\x1e", b"\x0a") and f[5:] == b"\x00"
    return len(f) == 6 and (massage or unlock_or_query)


def _okin_uuid(f: bytes) -> bool:
    return len(f) == 6 and f[:2] == b"\x04\x02"


def _okin_cb24(f: bytes) -> bool:
    key = len(f) == 7 and f[:2] == b"\x05\x02" and f[6] == 0x00
    level = len(f) == 5 and f[:2] == b"\x03\x03" and f[2] in (2, 3, 4) and f[4] == 0x00
    return key or level


def _okin_cb24_new(f: bytes) -> bool:
    return len(f) == 7 and f[:6] == bytes.fromhex("2a0000020101")


def _jiecang(f: bytes) -> bool:
    return (
        len(f) >= 6
        and f[:2] == b"\xf1\xf1"
        and f[-1] == 0x7E
        and f[3] == len(f) - 6  # the length byte counts the body
        and f[-2] == _sum8(f[2:-2])  # code, length and body; not the F1 F1 header
    )


def _reverie(f: bytes) -> bool:
    return len(f) >= 2 and f[0] == 0x55 and f[-1] == _xor8(f[:-1])


def _keeson_sino(f: bytes) -> bool:
    return len(f) == 8 and f[:3] == b"\xe5\xfe\x16" and f[-1] == _inverted_sum8(f[:-1])


def _keeson_sleep_harmony(f: bytes) -> bool:
    return len(f) == 7 and f[:2] == b"\x04\x02" and f[-1] == _inverted_sum8(f[:-1])


def _keeson_le(header: bytes) -> Callable[[bytes], bool]:
    def check(f: bytes) -> bool:
        return len(f) == 8 and f[:3] == header and f[-1] == _inverted_sum8(f[:-1])

    return check


def _keeson_ksbt(f: bytes) -> bool:
    return len(f) == 6 and f[:2] == b"\x04\x02"


def _keeson_zero_tail(header: bytes) -> Callable[[bytes], bool]:
    def check(f: bytes) -> bool:
        return len(f) == 7 and f[:2] == header and f[6] == 0x00

    return check


def _keeson_base_i5(f: bytes) -> bool:
    return (
        len(f) == 9 and f[:3] == b"\xe6\xfe\x16" and f[7] == 0x00
        and f[-1] == _inverted_sum8(f[:-1])
    )


def _motosleep_wrapped(f: bytes) -> bool:
    return len(f) == 6 and f[:3] == b"$#$" and f[4:] == b"R\r" and f[3:4].isalpha()


def _motosleep_raw(f: bytes) -> bool:
    return len(f) == 2 and f[:1] == b"$" and f[1:].isalpha()


def _richmat_single(f: bytes) -> bool:
    return len(f) == 1


def _ascii_text(f: bytes) -> bool:
    return bool(f) and all(0x20 <= b < 0x7F for b in f)


BED_LAYOUTS: dict[str, Callable[[bytes], bool]] = {
    "bed-linak": _linak,
    "bed-leggett-wilinke": _wilinke_like(b"\x6e\x01\x00"),
    "bed-okin-7byte-nordic": _okin_7byte_nordic,
    "bed-okin-7byte-nectar": _okin_7byte,
    "bed-jensen": _jensen,
    "bed-motosleep-hhc": _motosleep_wrapped,
    "bed-motosleep-raw": _motosleep_raw,
    "bed-okin-uuid-rf-touch": _okin_uuid,
    "bed-okin-cb24-legacy": _okin_cb24,
    "bed-okin-cb24-new": _okin_cb24_new,
    "bed-jiecang": _jiecang,
    "bed-reverie": _reverie,
    "bed-keeson-sino": _keeson_sino,
    "bed-keeson-sleep-harmony": _keeson_sleep_harmony,
    "bed-keeson-base": _keeson_le(b"\xe5\xfe\x16"),
    "bed-keeson-okin": _keeson_le(b"\xe6\xfe\x16"),
    "bed-keeson-ksbt-raw": _keeson_ksbt,
    "bed-keeson-ksbt-cr": _keeson_zero_tail(b"\x05\x02"),
    "bed-keeson-ksbt04c": _keeson_sleep_harmony,
    "bed-keeson-purple-plus": _keeson_zero_tail(b"\x04\x02"),
    "bed-keeson-harmony-i5": _keeson_base_i5,
    "bed-motosleep-hhc-zero": _motosleep_wrapped,
    "bed-motosleep-raw-zero": _motosleep_raw,
    "bed-richmat-single": _richmat_single,
    "bed-richmat-wilinke": _wilinke_like(b"\x6e\x01\x00"),
    "bed-richmat-prefix55": _wilinke_like(b"\x55\x01\x00"),
    "bed-richmat-prefixaa": _wilinke_like(b"\xaa\x01\x00"),
    "bed-leggett-gen2": _ascii_text,
}


def test_layout_checks_reject_what_they_should() -> None:
    # The checks must be able to fail: a wrong checksum, header, length or trailer.
    assert _keeson_sino(bytes.fromhex("e5fe1610000010e6"))
    assert not _keeson_sino(bytes.fromhex("e5fe1610000010e7"))
    assert _jiecang(bytes.fromhex("f1f1100108197e"))
    assert not _jiecang(bytes.fromhex("f1f11001081a7e"))
    assert not _jiecang(bytes.fromhex("f1f1100208197e"))
    assert _reverie(bytes.fromhex("553560"))
    assert not _reverie(bytes.fromhex("553561"))
    assert _wilinke_like(b"\x6e\x01\x00")(bytes.fromhex("6e010047b6"))
    assert not _wilinke_like(b"\x6e\x01\x00")(bytes.fromhex("6e010047b7"))
    assert not _wilinke_like(b"\x55\x01\x00")(bytes.fromhex("6e010047b6"))
    assert _keeson_sleep_harmony(bytes.fromhex("0402000000 00f9"))
    assert not _keeson_sleep_harmony(bytes.fromhex("0402000000 00f8"))
    assert not _linak(bytes.fromhex("8001"))
    assert _keeson_le(b"\xe5\xfe\x16")(bytes.fromhex("e5fe160001000005"))
    assert not _keeson_le(b"\xe6\xfe\x16")(bytes.fromhex("e5fe160001000005"))
    assert not _keeson_base_i5(bytes.fromhex("e6fe16000100000105"))
    assert _motosleep_wrapped(b"$#$IR\r")
    assert not _motosleep_wrapped(b"$#$IR\n")
    assert not _ascii_text(b"MVI 1:0\r")
    assert _jensen(bytes.fromhex("120003000000"))
    assert not _jensen(bytes.fromhex("120003000001"))
    assert not _okin_7byte(bytes.fromhex("5a0103104060a5"))


# --- the vector files ---------------------------------------------------------------------


def _vector_path(pid: str) -> Path:
    return VECTOR_DIR / ("no-off" if pid in NO_OFF else "") / f"{pid}.toml"


def _profile_path(pid: str) -> Path:
    return (NO_OFF_DIR if pid in NO_OFF else PROFILE_DIR) / f"{pid}.toml"


def _vectors(pid: str) -> dict[str, Any]:
    return tomllib.loads(_vector_path(pid).read_text(encoding="utf-8"))


def _sequence_cases() -> list[Any]:
    cases = []
    for pid in ALL_IDS:
        for entry in _vectors(pid).get("sequence", []):
            cases.append(pytest.param(pid, entry, id=f"{pid}-{entry['name']}"))
    return cases


def test_there_is_a_bed_profile_for_every_family() -> None:
    for family, ids in FAMILY_PROFILES.items():
        for pid in ids:
            assert pid in PROFILES, f"{family}: {pid} is missing"
    listed = {pid for ids in FAMILY_PROFILES.values() for pid in ids}
    assert listed == set(ALL_IDS), "a bed profile is not listed under its family"


@pytest.mark.parametrize("pid", ALL_IDS)
def test_every_bed_profile_has_a_layout_check_and_vectors(pid: str) -> None:
    assert pid in BED_LAYOUTS
    data = _vectors(pid)
    assert data["profile"] == pid
    named = {e["name"] for e in data.get("command", [])} | {
        e["name"] for e in data.get("sequence", [])
    }
    assert named == set(PROFILES[pid].commands)
    for entry in data["command"]:
        assert BED_LAYOUTS[pid](bytes.fromhex(entry["hex"])), entry


@pytest.mark.parametrize(("pid", "entry"), _sequence_cases())
def test_sequence_vector_in_order(pid: str, entry: dict[str, Any]) -> None:
    # test_codec_vectors checks the frames and the waits; here: each frame fits the family
    # layout, and the waits sit between the frames where the source sleeps (frame, wait,
    # frame, ...; a trailing wait after the last frame where the source sleeps after it).
    frames = [bytes.fromhex(f) for f in entry["frames"]]
    waits = [float(w) for w in entry["waits"]]
    for frame in frames:
        assert BED_LAYOUTS[pid](frame), frame.hex(" ")
    expected: list[bytes | float] = []
    for i, frame in enumerate(frames):
        expected.append(frame)
        if i < len(waits):
            expected.append(waits[i])
    got: list[bytes | float] = [
        step.frame if isinstance(step, codec.Write) else step.seconds
        for step in codec.writes(PROFILES[pid], Command(entry["name"]))
    ]
    assert got == expected


@pytest.mark.parametrize("pid", ALL_IDS)
def test_the_virtual_bed_takes_every_frame(pid: str) -> None:
    # What `footctl profile test` runs: every command through the virtual massager generated
    # from the profile, and every setting's values reached and read back.
    result = round_trip(PROFILES[pid])
    assert result.ok, result.to_dict()
    checked = {r.capability for r in result.results}
    assert {"commands", "power"} <= checked
    # a bed without intensity keys has one level and no intensity setting
    assert ("intensity" in checked) == ("intensity" in PROFILES[pid].settings)
    assert ("intensity" in PROFILES[pid].settings) == (
        PROFILES[pid].capabilities.intensity.min < PROFILES[pid].capabilities.intensity.max
    )


# --- provenance and motion ---------------------------------------------------------------


@pytest.mark.parametrize("pid", ALL_IDS)
def test_bed_profile_names_its_source_and_is_untested(pid: str) -> None:
    profile = PROFILES[pid]
    text = _profile_path(pid).read_text(encoding="utf-8")
    assert profile.source is not None
    assert profile.source.repository == SOURCE_REPOSITORY
    assert profile.source.commit == SOURCE_COMMIT
    assert profile.source.path.startswith("custom_components/adjustable_bed/beds/")
    assert profile.source.license == "MIT"
    assert profile.source.functions
    assert profile.hardware_tested is False
    assert "UNTESTED ON HARDWARE" in text
    assert "untested on hardware" in profile.description


@pytest.mark.parametrize("pid", ALL_IDS)
def test_bed_profile_declares_no_moving_command(pid: str) -> None:
    profile = PROFILES[pid]
    moving = [name for name, cmd in profile.commands.items() if cmd.moves]
    assert moving == []
    for name in profile.commands:
        for word in ("motor", "move", "preset", "flat", "memory", "position"):
            assert word not in name, f"{pid}: command {name!r} sounds like motion"


# --- the variants without an off (not shipped) ---------------------------------------------


def _no_off_cases(section: str) -> list[Any]:
    return [
        pytest.param(pid, e, id=f"{pid}-{e.get('name') or e['why']}")
        for pid in NO_OFF_IDS
        for e in _vectors(pid).get(section, [])
    ]


def test_the_variants_without_an_off_are_not_shipped() -> None:
    assert NO_OFF_IDS, "device_profiles/no-off is empty"
    for pid in NO_OFF_IDS:
        assert pid not in SHIPPED
        profile = NO_OFF[pid]
        assert "stop" not in profile.commands
        assert profile.settings["power"].style == "toggle"
        assert "NO MASSAGE OFF" in _profile_path(pid).read_text(encoding="utf-8")
        # lint says exactly why they are not shipped, and nothing else
        assert [f.code for f in lint(profile)] == ["blind-toggle"]


@pytest.mark.parametrize(("pid", "entry"), _no_off_cases("command"))
def test_no_off_command_vector(pid: str, entry: dict[str, Any]) -> None:
    profile = NO_OFF[pid]
    frame = bytes.fromhex(entry["hex"])
    command = Command(entry["name"], entry.get("value"))
    assert BED_LAYOUTS[pid](frame)
    assert codec.encode(profile, command) == frame
    assert codec.decode_command(profile, frame) == command


@pytest.mark.parametrize(("pid", "entry"), _no_off_cases("bad"))
def test_no_off_bad_frame(pid: str, entry: dict[str, Any]) -> None:
    frame = bytes.fromhex(entry["hex"])
    if "valid" in entry["why"]:
        assert BED_LAYOUTS[pid](frame)
    with pytest.raises(CodecError, match=entry.get("match")):
        codec.decode_command(NO_OFF[pid], frame)


@pytest.mark.parametrize(("pid", "entry"), _no_off_cases("sequence"))
def test_no_off_sequence_vector(pid: str, entry: dict[str, Any]) -> None:
    writes = codec.writes(NO_OFF[pid], Command(entry["name"]))
    assert [w.frame.hex(" ") for w in writes if isinstance(w, codec.Write)] == entry["frames"]
    assert [w.seconds for w in writes if isinstance(w, codec.Pause)] == entry["waits"]


def _with_a_moving_command(pid: str) -> str:
    text = _profile_path(pid).read_text(encoding="utf-8")
    first = next(iter(PROFILES[pid].commands))
    marker = f"[commands.{first}]"
    assert marker in text
    return text.replace(marker, f"{marker}\nmoves = true", 1)


@pytest.mark.parametrize("pid", ["bed-linak", "bed-keeson-sino", "bed-leggett-gen2"])
def test_profile_check_refuses_a_bed_profile_that_moves_the_bed(
    pid: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["profile", "check", str(PROFILE_DIR / f"{pid}.toml")]) == 0
    moving = tmp_path / f"{pid}.toml"
    moving.write_text(_with_a_moving_command(pid), encoding="utf-8")
    code = cli.main(["profile", "check", str(moving)])
    assert code != 0
    assert "move" in capsys.readouterr().err.lower()
