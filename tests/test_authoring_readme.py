"""The worked example of device_profiles/README.md ("Adding a device") holds: its
profile passes ``profile check`` and ``profile test``, its top is what ``explore`` writes
for the stand-in device, its captured frames decode as the text says, and a status field
too narrow for the commands fails ``profile test`` naming ``status``."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

from footctl.cli import main
from footctl.commands.skeleton import FILL_IN_LINE
from footctl.device import codec
from footctl.device.profile.loader import load_profile_text
from footctl.state import Command, Report

README = Path(__file__).resolve().parents[1] / "device_profiles" / "README.md"
MARKER = "<!-- worked-example-profile"


@functools.cache
def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Adding a device")
    return text[start : text.index("\n## ", start + 1)]


def example_profile() -> str:
    after = section()[section().index(MARKER):]
    match = re.search(r"```toml\n(.*?)```", after, re.S)
    assert match is not None
    return match.group(1)


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "fm-aa55.toml"
    path.write_text(example_profile(), encoding="utf-8")
    return path


def test_the_example_profile_checks_and_round_trips(
    profile_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["profile", "check", str(profile_file)]) == 0
    capsys.readouterr()
    assert main(["--json", "profile", "test", str(profile_file)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert [r["capability"] for r in data["results"]] == [
        "commands", "status", "power", "intensity", "mode", "heat"
    ]
    # the README shows the text output: the same capabilities and counts
    for r in data["results"]:
        assert f"  ok   {r['capability']:<10} {r['checked']} checked" in section()


def test_the_example_starts_with_what_explore_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--simulate", "shiatsu-aa55", "explore", "FM-AA55", "--toml"]) == 0
    skeleton = capsys.readouterr().out

    def settings(text: str) -> list[str]:
        lines = [line.split(" #")[0].rstrip() for line in text.splitlines()]
        return [line for line in lines if line and not line.startswith("#")]

    top = settings(skeleton.split(FILL_IN_LINE)[0])
    example = settings(example_profile())
    assert example[: len(top)] == top
    assert example[len(top)] == "[capabilities]"


def test_the_captured_frames_decode_as_the_text_says() -> None:
    profile = load_profile_text(example_profile())
    lines = re.findall(r"(->|<-) (FFF1|FFF4) +((?:[0-9a-f]{2} )+[0-9a-f]{2})", section())
    writes = [bytes.fromhex(h) for arrow, _, h in lines if arrow == "->"]
    statuses = [bytes.fromhex(h) for arrow, _, h in lines if arrow == "<-"]
    assert len(writes) >= 6 and len(statuses) >= 6
    for frame in writes + statuses:
        xor = 0
        for b in frame[:-1]:
            xor ^= b
        assert xor == frame[-1], frame.hex(" ")  # "the checksum is xor8", by hand
    said = [("query", None), ("power", 1), ("intensity", 3), ("mode", 2), ("heat", 1),
            ("power", 0)]
    assert [codec.decode_command(profile, w) for w in writes[:6]] == [
        Command(n, v) for n, v in said
    ]
    # after power on, intensity 3, mode 2 (rolling), heat on: the status says so
    assert codec.decode_status(profile, bytes.fromhex("aa 55 06 85 01 02 03 01 1e 63")) == (
        Report(running=True, mode="rolling", intensity=3, heat=1, temperature=30.0)
    )
    for frame in statuses:
        codec.decode_status(profile, frame)


def test_a_status_field_too_narrow_for_the_commands_fails_status(
    profile_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = profile_file.read_text()
    narrow = "intensity = { offset = 2, mask = 0x03 }"
    assert narrow in section()
    profile_file.write_text(text.replace("intensity = { offset = 2 }", narrow))
    assert main(["profile", "check", str(profile_file)]) == 0  # it loads and lints clean
    capsys.readouterr()
    assert main(["profile", "test", str(profile_file)]) == 2
    out = capsys.readouterr().out
    assert "  FAIL status     5 checked" in out
    assert "status field 'intensity' value 5 does not fit" in out
    assert out.splitlines()[-1] == "failed: status"
    for ok in ("commands", "power", "intensity", "mode", "heat"):
        assert f"  ok   {ok:<10}" in out
