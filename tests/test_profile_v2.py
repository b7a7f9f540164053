"""Profile schema version 2: loading, load errors, the codec's new command kinds and
checksum operations, lint and the round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from footctl.device import codec
from footctl.device.profile.lint import lint
from footctl.device.profile.loader import find_profiles, load_profile_text
from footctl.device.profile.roles import Role, carrier, role_of
from footctl.device.profile.roundtrip import round_trip
from footctl.device.profile.schema import Checksum, Profile
from footctl.errors import CodecError, ProfileError
from footctl.state import Command, Report

PROFILES = find_profiles()
V2_SHIPPED = ["aircomp-duo", "aircomp-mini", "keys-table", "shiatsu-nodes", "stepper-blind"]

BASE = """
schema_version = 2
id = "tiny2"
name = "tiny version-2 device"

[advertisement]
local_name = "TINY2"
service_uuids = ["FFE0"]

[gatt]
service = "FFE0"
write = "FFE1"
mtu = 23
{gatt}

[capabilities]
command_style = "settings"
reports_status = false
intensity = {{ min = 1, max = 3 }}
modes = [{{ name = "kneading", code = 1 }}]
{caps}

[framing]
{framing}

[settings.power]
style = "table"
values = {{ "0" = "off", "1" = "on" }}

[settings.intensity]
{intensity}

[commands.off]
raw = "C0 00"

[commands.on]
raw = "C0 01"

[commands.up]
raw = "C1 01"

[commands.down]
raw = "C1 02"

{more}
"""

STEP = 'style = "step"\nup = "up"\ndown = "down"'


def tiny2(
    *, intensity: str = STEP, more: str = "", caps: str = "", gatt: str = "", framing: str = ""
) -> Profile:
    return load_profile_text(
        BASE.format(intensity=intensity, more=more, caps=caps, gatt=gatt, framing=framing)
    )


def load_error(**kw: str) -> str:
    with pytest.raises(ProfileError) as info:
        tiny2(**kw)
    return str(info.value)


# --- the shipped set ---------------------------------------------------------------------


def test_five_version_2_profiles_ship_one_per_device_class() -> None:
    for pid in V2_SHIPPED:
        assert PROFILES[pid].schema_version == 2
    caps = {pid: PROFILES[pid].capabilities for pid in V2_SHIPPED}
    # two independent chambers and optional heat
    assert [c.name for c in caps["aircomp-duo"].chambers] == ["feet", "calves"]
    assert PROFILES["aircomp-duo"].settings["zone"].style == "bits"
    # two intensity levels and gentle heat
    assert (caps["aircomp-mini"].intensity.min, caps["aircomp-mini"].intensity.max) == (1, 2)
    assert [h.celsius for h in caps["aircomp-mini"].heat_levels] == [38]
    # kneading and rolling nodes, heat about 40 C, adjustable intensity
    nodes = caps["shiatsu-nodes"].nodes
    assert nodes is not None and nodes.kneading and nodes.rolling
    assert {"kneading", "rolling"} <= caps["shiatsu-nodes"].families()
    assert [h.celsius for h in caps["shiatsu-nodes"].heat_levels] == [40]
    # only toggles and per-value keys
    styles = {s.style for s in PROFILES["keys-table"].settings.values()}
    assert styles == {"toggle", "table"}
    # no status, only steps (and fixed on/off frames)
    blind = PROFILES["stepper-blind"]
    assert not blind.capabilities.reports_status
    assert {s.style for s in blind.settings.values()} == {"table", "step", "cycle"}


@pytest.mark.parametrize("pid", sorted(PROFILES))
def test_every_shipped_profile_lints_clean_and_round_trips(pid: str) -> None:
    profile = PROFILES[pid]
    assert [str(f) for f in lint(profile)] == []
    result = round_trip(profile)
    assert result.ok, result.to_dict()
    checked = {r.capability for r in result.results}
    assert {"commands", "power"} <= checked
    # a one-level massager has no intensity to round-trip (E2)
    levels = profile.capabilities.intensity
    assert ("intensity" in checked) == (levels.min < levels.max)
    if profile.status is not None:
        assert "status" in checked
    for setting in profile.settings:
        assert setting in checked or setting == "power"


# --- the new command kinds ------------------------------------------------------------------


def test_raw_text_and_sequence_commands() -> None:
    more = """
[commands.hello]
text = "HI {value}\\r\\n"

[commands.start]
sequence = ["on", { wait = 0.5 }, { send = "hello", value = 42 }, "up"]
"""
    p = tiny2(more=more)
    assert codec.encode(p, Command("on")) == bytes.fromhex("c0 01")
    assert codec.encode(p, Command("hello", 42)) == b"HI 42\r\n"
    assert codec.decode_command(p, b"HI 7\r\n") == Command("hello", 7)
    with pytest.raises(CodecError, match="no command"):
        codec.decode_command(p, b"HI x\r\n")
    writes = codec.writes(p, Command("start"))
    assert [type(w).__name__ for w in writes] == ["Write", "Pause", "Write", "Write"]
    assert writes[1] == codec.Pause(0.5)
    assert [w.frame for w in writes if isinstance(w, codec.Write)] == [
        bytes.fromhex("c0 01"), b"HI 42\r\n", bytes.fromhex("c1 01"),
    ]
    with pytest.raises(CodecError, match="sequence"):
        codec.encode(p, Command("start"))


def test_repeat_sends_a_held_key_several_times() -> None:
    more = '[commands.held]\nraw = "D0"\nrepeat = { count = 3, every = 0.1 }\n'
    writes = codec.writes(tiny2(more=more), Command("held"))
    assert [w.frame if isinstance(w, codec.Write) else w.seconds for w in writes] == [
        b"\xd0", 0.1, b"\xd0", 0.1, b"\xd0",
    ]


def test_endpoints_by_uuid_and_handle() -> None:
    gatt = 'endpoints = { keys = { uuid = "FFE3" }, legacy = { handle = 0x2A } }'
    more = '[commands.lamp]\nraw = "C0 01"\nendpoint = "legacy"\n'
    p = tiny2(gatt=gatt, more=more)
    assert p.gatt.endpoints["legacy"].specifier == 0x2A
    assert p.gatt.endpoints["keys"].specifier == "0000ffe3-0000-1000-8000-00805f9b34fb"
    # the same bytes are a different command on another characteristic
    assert codec.decode_command(p, bytes.fromhex("c0 01")) == Command("on")
    assert codec.decode_command(p, bytes.fromhex("c0 01"), endpoint="legacy") == Command("lamp")
    assert codec.writes(p, Command("lamp"))[0] == codec.Write(
        bytes.fromhex("c0 01"), "lamp", "legacy"
    )


def test_write_characteristic_by_handle() -> None:
    text = BASE.format(intensity=STEP, more="", caps="", gatt="", framing="").replace(
        'write = "FFE1"', "write_handle = 0x0010"
    )
    p = load_profile_text(text)
    assert p.gatt.write is None and p.gatt.write_specifier == 0x10


@pytest.mark.parametrize(
    ("params", "data", "expected"),
    [
        # sum 0x1DD -> invert (16-bit) 0xFE22 -> mask 0x0FFF = 0x0E22
        ({"algorithm": "sum", "width": 16, "ops": ["invert", "mask"], "mask": 0x0FFF},
         b"123456789", 0x0E22),
        # mask first: 0x1DD & 0x0FF = 0xDD -> invert 16-bit = 0xFF22
        ({"algorithm": "sum", "width": 16, "ops": ["mask", "invert"], "mask": 0x0FF},
         b"123456789", 0xFF22),
        # two's complement of the 8-bit sum
        ({"algorithm": "sum", "ops": ["negate"]}, b"\x20\x01", 0xDF),
        # a 12-bit sum, written in two bytes
        ({"algorithm": "sum", "width": 12}, bytes([0xFF] * 20), (0xFF * 20) & 0xFFF),
        # a 4-bit xor
        ({"algorithm": "xor", "width": 4}, b"\x1f\x02", 0x0D),
    ],
)
def test_checksum_operations_in_order_and_widths(
    params: dict[str, object], data: bytes, expected: int
) -> None:
    cs = Checksum.model_validate(params)
    assert codec.checksum_value(cs, data) == expected
    assert cs.size == (cs.resolved_width() + 7) // 8


def test_checksum_widths_past_16_bits_need_a_crc_or_32() -> None:
    with pytest.raises(ValueError, match="1 to 16"):
        Checksum.model_validate({"algorithm": "sum", "width": 24})
    with pytest.raises(ValueError, match="ops"):
        Checksum.model_validate({"preset": "crc16-ccitt", "ops": ["invert"]})


def test_unframed_status() -> None:
    status = """
[status]
framed = false
match = "ED"
length = 4
[status.fields]
running = { offset = 1 }
intensity = { offset = 2 }
timer = { offset = 3 }
"""
    text = BASE.format(intensity=STEP, more=status, caps="", gatt='notify = "FFE2"', framing="")
    p = load_profile_text(text.replace("reports_status = false", "reports_status = true"))
    report = Report(running=True, intensity=2, timer=9)
    assert codec.encode_status(p, report) == bytes.fromhex("ed 01 02 09")
    assert codec.decode_status(p, bytes.fromhex("ed 01 02 09")) == report
    with pytest.raises(CodecError, match="status"):
        codec.decode_status(p, bytes.fromhex("ee 01 02 09"))
    with pytest.raises(CodecError, match="status"):
        codec.decode_status(p, bytes.fromhex("ed 01 02"))


# --- roles: what a frame does to its setting -----------------------------------------------


def test_roles_of_table_step_and_sequence_frames() -> None:
    more = """
[commands.release]
raw = "00"

[commands.up_held]
sequence = ["up", { wait = 0.2 }, "release"]

[commands.down_held]
sequence = ["down", { wait = 0.2 }, "release"]
"""
    p = tiny2(intensity='style = "step"\nup = "up_held"\ndown = "down_held"', more=more)
    assert role_of(p, Command("on")) == Role("power", "set", 1)
    # the key carries the sequence's effect; the shared release frame carries none
    assert carrier(p, "up_held") == "up"
    assert role_of(p, Command("up")) == Role("intensity", "up")
    assert role_of(p, Command("release")) is None


# --- load errors -------------------------------------------------------------------------


def test_two_commands_with_the_same_frame_are_a_load_error() -> None:
    message = load_error(more='[commands.other]\nraw = "C1 01"\n')
    assert "ambiguous (up, other)" in message


def test_a_command_may_not_belong_to_two_settings() -> None:
    mode = '[settings.mode]\nstyle = "cycle"\nkey = "up"\n'
    caps = 'modes = [{ name = "kneading", code = 1 }, { name = "rolling", code = 2 }]'
    text = BASE.format(intensity=STEP, more=mode, caps="", gatt="", framing="").replace(
        'modes = [{ name = "kneading", code = 1 }]', caps
    )
    with pytest.raises(ProfileError, match="used by settings intensity and mode"):
        load_profile_text(text)


@pytest.mark.parametrize(
    ("intensity", "more", "caps", "needle"),
    [
        ('style = "table"\nvalues = { "1" = "up", "7" = "down" }', "", "", "'7' is not"),
        ('style = "step"\nup = "up"', "", "", "needs down"),
        ('style = "step"\nup = "up"\ndown = "nope"', "", "", "no command 'nope'"),
        ('style = "toggle"\nkey = "up"\norder = ["1"]', "", "", "exactly two"),
        (STEP + '\nkey = "up"', "", "", "takes no key"),
        (STEP, '[commands.loop]\nsequence = ["loop2"]\n[commands.loop2]\nsequence = ["loop"]\n',
         "", "contains itself"),
        (STEP, '[settings.heat]\nstyle = "toggle"\nkey = "on2"\n[commands.on2]\nraw = "E0"\n',
         "heat_levels = [{ level = 1, celsius = 38 }, { level = 2, celsius = 41 }]",
         "heat toggle flips off/on"),
        (STEP, '[commands.bad]\nraw = "E0"\ncode = 0x01\n', "", "exactly one of"),
        (STEP, '[commands.x]\nraw = "E0"\nendpoint = "nope"\n', "", "no endpoint 'nope'"),
    ],
)
def test_version_2_load_errors(intensity: str, more: str, caps: str, needle: str) -> None:
    assert needle in load_error(intensity=intensity, more=more, caps=caps)


def test_version_1_files_may_not_use_version_2_fields() -> None:
    from footctl.device.profile.loader import shipped_dir

    text = (shipped_dir() / "shiatsu-aa55.toml").read_text(encoding="utf-8")
    with pytest.raises(ProfileError, match="need schema_version = 2"):
        load_profile_text(text.replace("[commands.query]\ncode = 0x05", "[commands.query]\n"
                                       "code = 0x05\nmoves = true"))
    with pytest.raises(ProfileError, match="need schema_version = 2"):
        load_profile_text(text + '\n[connection]\nwake = "query"\n')


# --- lint ------------------------------------------------------------------------------------


def codes(profile: Profile) -> dict[str, str]:
    return {f.code: f.severity for f in lint(profile)}


def test_lint_refuses_a_profile_that_moves_furniture() -> None:
    p = tiny2(more='[commands.head_up]\nraw = "D1 01"\nmoves = true\n')
    found = [f for f in lint(p) if f.code == "moves"]
    assert found and found[0].severity == "error" and found[0].where == "commands.head_up"


AMBIGUOUS = """
[commands.set]
code = 0x10
body = [{ arg = "u16be" }]

[commands.other]
code = 0x10
body = [FIXED]
"""


def test_lint_finds_ambiguous_templates() -> None:
    # "other" with an argument byte then 00 can equal set(n * 256): ambiguous templates
    more = AMBIGUOUS.replace("FIXED", '{ arg = "u8" }, { const = "00" }')
    p = load_profile_text(BASE.format(intensity=STEP, more=more, caps="", gatt="",
                                      framing='header = "A5"'))
    found = [f for f in lint(p) if f.code == "ambiguous"]
    assert found and found[0].severity == "error"
    assert {f.where for f in found} <= {"commands.set", "commands.other"}
    # constants that differ from every argument position keep them apart
    apart = AMBIGUOUS.replace("FIXED", '{ const = "05" }')
    p = load_profile_text(BASE.format(intensity=STEP, more=apart, caps="", gatt="",
                                      framing='header = "A5"'))
    assert "ambiguous" not in codes(p)


def test_lint_finds_values_that_cannot_be_encoded() -> None:
    p = tiny2(intensity='style = "table"\nvalues = { "1" = "up", "2" = "down" }')
    found = [f for f in lint(p) if f.code == "unencodable"]
    assert found and "intensity 3" in found[0].message and found[0].severity == "warning"


def test_lint_finds_a_local_name_too_long_for_the_advert() -> None:
    p = tiny2()
    assert "advert" not in codes(p)
    long_name = load_profile_text(
        BASE.format(intensity=STEP, more="", caps="", gatt="", framing="").replace(
            'local_name = "TINY2"', 'local_name = "A-VERY-LONG-MASSAGER-NAME"'
        ).replace('service_uuids = ["FFE0"]',
                  'service_uuids = ["6e400001-b5a3-f393-e0a9-e50e24dcca9e"]')
    )
    assert codes(long_name)["advert"] == "warning"


def test_lint_finds_status_fields_sharing_bits_and_missing_commands() -> None:
    status = """
[status]
code = 0x90
length = 2
[status.fields]
running = { offset = 0, mask = 0x03 }
heat = { offset = 0, mask = 0x02 }
intensity = { offset = 1 }
"""
    text = BASE.format(intensity=STEP, more=status, caps="", gatt="", framing="")
    p = load_profile_text(text)
    assert codes(p)["status-layout"] == "error"
    timer = tiny2(caps="timer_values = [10, 20]")
    found = [f for f in lint(timer) if f.code == "missing"]
    assert found and found[0].where == "settings.timer" and found[0].severity == "error"


def test_lint_asks_for_hardware_tested_when_a_source_is_given() -> None:
    source = (
        'source = { repository = "x/y", path = "a.py", commit = "abcdef1", license = "MIT" }\n'
    )
    text = BASE.format(intensity=STEP, more="", caps="", gatt="", framing="")
    p = load_profile_text(source + text)
    assert codes(p)["provenance"] == "warning"
    assert "provenance" not in codes(load_profile_text(source + "hardware_tested = false\n" + text))


# --- the round trip catches what the virtual device does differently -------------------------


def test_round_trip_reports_a_setting_the_device_cannot_reach() -> None:
    # a cycle whose order leaves out intensity 2: the planner refuses it, with the reason
    p = tiny2(intensity='style = "cycle"\nkey = "up"\norder = ["1", "3"]')
    result = round_trip(p)
    assert not result.ok
    problems = result.result("intensity").problems
    assert any("intensity 2" in x and "never reaches" in x for x in problems)
    assert result.result("power").ok


# --- power that is the intensity level; a massager with one level ----------------------

LEVEL_POWERED = """
schema_version = 2
id = "level-powered"
name = "runs while its level is above 0"

[advertisement]
local_name = "LVL"

[gatt]
service = "FFE0"
write = "FFE1"

[capabilities]
command_style = "settings"
reports_status = false
intensity = { min = 1, max = 10 }
modes = [{ name = "kneading", code = 1 }]

[settings.power]
style = "level"

[settings.intensity]
style = "absolute"
command = "level"

[commands.level]
text = "LVL {value}\\n"
"""


def test_power_that_is_the_intensity_level() -> None:
    from footctl.device import planner
    from footctl.state import DeviceState

    p = load_profile_text(LEVEL_POWERED)
    off = DeviceState(address="", profile_id=p.id)
    on = planner.plan(p, off, running=True, intensity=3)
    assert [(s.command.name, s.command.value) for s in on.steps if s.command] == [
        ("level", 1), ("level", 3),
    ]
    stop = planner.plan_off(p, on.steps[-1].believed)
    assert [(s.command.name, s.command.value) for s in stop.steps if s.command] == [("level", 0)]
    assert round_trip(p).ok, round_trip(p).to_dict()
    assert role_of(p, Command("level", 0)) == Role("intensity", "set", 0)


def test_a_massager_with_one_level_needs_no_intensity_setting() -> None:
    text = BASE.format(intensity=STEP, more="", caps="", gatt="", framing="").replace(
        "intensity = { min = 1, max = 3 }", "intensity = { min = 2, max = 2 }"
    ).replace('[settings.intensity]\nstyle = "step"\nup = "up"\ndown = "down"', "")
    text = text.replace('[commands.up]\nraw = "C1 01"', "").replace(
        '[commands.down]\nraw = "C1 02"', ""
    )
    p = load_profile_text(text)
    assert "intensity" not in p.settings
    result = round_trip(p)
    assert result.ok, result.to_dict()
    with pytest.raises(ProfileError, match=r"needs settings\.intensity"):
        load_profile_text(text.replace("min = 2, max = 2", "min = 1, max = 2"))


def test_profile_check_refuses_a_profile_that_moves_a_bed(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(BASE.format(intensity=STEP, more="", caps="", gatt="", framing=""))
    bed = tmp_path / "bed.toml"
    bed.write_text(BASE.format(intensity=STEP, caps="", gatt="", framing="",
                               more='[commands.head_up]\nraw = "D1 01"\nmoves = true\n'))
    ok = subprocess.run([sys.executable, "-m", "footctl.cli", "profile", "check", str(good)],
                        capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "footctl.cli", "--json", "profile", "check",
                          str(bed)], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert "moves furniture" in bad.stderr and "commands.head_up" in bad.stderr
    (row,) = json.loads(bad.stdout)["files"]
    assert row["ok"] is False and row["lint"][0]["code"] == "moves"


LEVEL_STATUS = LEVEL_POWERED.replace("reports_status = false", "reports_status = true").replace(
    'write = "FFE1"', 'write = "FFE1"\nnotify = "FFE2"'
) + """
[status]
framed = false
match = "AA"
length = 2
[status.fields]
intensity = { offset = 1 }
"""


def test_level_powered_status_reports_off_as_level_0() -> None:
    p = load_profile_text(LEVEL_STATUS)
    assert codec.decode_status(p, bytes.fromhex("aa 00")) == Report(running=False, intensity=0)
    assert codec.decode_status(p, bytes.fromhex("aa 03")) == Report(running=True, intensity=3)
    result = round_trip(p)
    assert result.ok, result.to_dict()


STEP_POWERED = LEVEL_POWERED.replace(
    '[settings.intensity]\nstyle = "absolute"\ncommand = "level"',
    '[settings.intensity]\nstyle = "step"\nup = "up"\ndown = "down"',
).replace('[commands.level]\ntext = "LVL {value}\\n"',
          '[commands.up]\nraw = "04 02 00 00 08 00"\n\n[commands.down]\nraw = "04 02 00 80 00 00"')


def test_no_on_key_only_steps_from_zero() -> None:
    from footctl.device import planner
    from footctl.state import DeviceState

    p = load_profile_text(STEP_POWERED)
    off = DeviceState(address="", profile_id=p.id)
    on = planner.plan(p, off, running=True, intensity=3)
    assert [s.command.name for s in on.steps if s.command] == ["up", "up", "up"]
    stop = planner.plan_off(p, on.steps[-1].believed)
    assert [s.command.name for s in stop.steps if s.command] == ["down", "down", "down"]
    assert not stop.steps[-1].believed.running
    result = round_trip(p)
    assert result.ok, result.to_dict()


def test_a_stop_on_a_stepped_level_device_that_is_off_presses_nothing() -> None:
    from footctl.device import planner
    from footctl.state import DeviceState

    p = load_profile_text(STEP_POWERED)
    off = DeviceState(address="", profile_id=p.id, intensity=3)
    assert planner.plan_off(p, off).steps == ()
