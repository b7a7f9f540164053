"""A massage session on each virtual adjustable bed (issue #14), through the real governor.

Each test runs the bed's virtual massager (generated from its profile) behind the bleak
backend on the virtual link, footctl's DeviceSession and SafetyGovernor (fake clock, a
one-second ramp step), and plays: start foot massage, raise intensity two levels, pick a
pattern (where the profile has patterns), stop. The frames the virtual bed received must be
exactly the expected ones, in order, at the expected (fake) times: the family's own waits
(a key's release 0.2 s later, the init frames 0.1 s apart) and the governor's ramp (one
press or one level per second).

The expected frames are written as the profile's command names; their bytes come from the
byte-vector files (tests/vectors/bed-*.toml), which are checked against the public
implementation's frames and an independent layout check elsewhere.
"""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest

from footctl.device.profile.loader import find_profiles, load_profile
from footctl.device.profile.schema import Profile
from footctl.safety.governor import Request
from footctl.safety.limits import Caps
from safety_harness import eventually
from virtual_rig import Bench, BenchFactory

VECTOR_DIR = Path(__file__).parent / "vectors"
NO_OFF_DIR = Path(__file__).resolve().parent.parent / "device_profiles" / "no-off"

# The shipped bed profiles, and the variants without an off (device_profiles/no-off/).
BEDS: dict[str, Profile] = {
    pid: p for pid, p in find_profiles().items() if pid.startswith("bed-")
} | {p.stem: load_profile(p) for p in sorted(NO_OFF_DIR.glob("*.toml"))}

# The governor's ramp in these tests: one level (one press on a step device) per second.
RAMP_STEP_S = 1.0

# (command, value, seconds after the first frame) for each frame the bed must receive.
Expected = list[tuple[str, int | None, float]]

# Frames of a sleep_harmony key: the key, then its release 0.2 s later (the source's
# _SLEEP_HARMONY_RELEASE_DELAY_SECONDS).
RELEASE_S = 0.2

SESSIONS: dict[str, Expected] = {
    "bed-linak": [
        ("massage_foot_toggle", None, 0.0),
        ("massage_foot_up", None, 1.0),
        ("massage_foot_up", None, 2.0),
        ("stop", None, 2.0),
    ],
    "bed-leggett-wilinke": [
        ("massage_foot_toggle", None, 0.0),
        # the bed's own timer as a backstop: the longest it offers within the session cap
        ("massage_timer_30", None, 0.0),
        ("massage_foot_up", None, 1.0),
        ("massage_foot_up", None, 2.0),
        ("stop", None, 2.0),
    ],
    "bed-okin-7byte-nordic": [
        ("init_1", None, 0.0),
        ("init_2", None, 0.1),
        ("massage_toggle", None, 0.2),
        ("massage_intensity_up", None, 1.2),
        ("massage_intensity_up", None, 2.2),
        ("massage_2", None, 2.2),
        ("stop", None, 2.2),
    ],
    "bed-okin-uuid-rf-touch": [
        ("massage_foot_toggle", None, 0.0),
        ("massage_foot_up", None, 1.0),
        ("massage_foot_up", None, 2.0),
        ("massage_mode2", None, 2.0),
        ("stop", None, 2.0),
    ],
    "bed-okin-cb24-legacy": [
        ("massage_toggle", None, 0.0),
        ("massage_foot_level", 2, 1.0),
        ("massage_foot_level", 3, 2.0),
        ("stop", None, 2.0),
    ],
    "bed-okin-cb24-new": [
        ("massage_on", None, 0.0),
        ("massage_foot_2", None, 1.0),
        ("massage_foot_3", None, 2.0),
        ("massage_mode_2", None, 2.0),
        ("massage_off", None, 2.0),
    ],
    "bed-jiecang": [
        ("massage_start", None, 0.0),
        ("leg_level", 2, 1.0),
        ("leg_level", 3, 2.0),
        ("back_off", None, 2.0),
        ("leg_level", 0, 2.0),
    ],
    "bed-reverie": [  # power is the foot level: on = level 1, off = stop massage
        ("foot_level", 1, 0.0),
        ("foot_level", 2, 1.0),
        ("foot_level", 3, 2.0),
        ("wave_1", None, 2.0),
        ("stop", None, 2.0),
    ],
    "bed-jensen": [  # PIN unlock and config query on connect; power is the foot level
        ("pin_unlock", None, 0.0),
        ("config_read", None, 0.0),
        ("foot_level", 1, 0.0),
        ("foot_level", 2, 1.0),
        ("foot_level", 3, 2.0),
        ("foot_level", 0, 2.0),
    ],
    "bed-motosleep-hhc": [  # one intensity level: on, then off
        ("massage_foot_toggle", None, 0.0),
        ("massage_off", None, 0.0),
    ],
    "bed-motosleep-raw": [
        ("massage_foot_toggle", None, 0.0),
        ("massage_off", None, 0.0),
    ],
    "bed-okin-7byte-nectar": [
        ("massage_on", None, 0.0),
        ("massage_off", None, 0.0),
    ],
    "bed-keeson-sino": [
        ("head_1", None, 0.0),
        ("foot_level", 1, 0.0),
        ("foot_level", 2, 1.0),
        ("foot_level", 3, 2.0),
        ("wave_2", None, 2.0),
        ("head_0", None, 2.0),
        ("foot_level", 0, 2.0),
    ],
    "bed-keeson-sleep-harmony": [
        ("key_massage_step", None, 0.0),
        ("release", None, RELEASE_S),
        ("key_foot_up", None, RELEASE_S + 1.0),
        ("release", None, 2 * RELEASE_S + 1.0),
        ("key_foot_up", None, 2 * RELEASE_S + 2.0),
        ("release", None, 3 * RELEASE_S + 2.0),
        ("key_all_stop", None, 3 * RELEASE_S + 2.0),
        ("release", None, 4 * RELEASE_S + 2.0),
    ],
    "bed-leggett-gen2": [  # power is the foot level (MVI 1:<level>)
        ("get_state", None, 0.0),
        ("foot_level", 1, 0.0),
        ("foot_level", 2, 1.0),
        ("foot_level", 3, 2.0),
        ("massage_mode", 1, 2.0),
        ("head_off", None, 2.0),
        ("foot_level", 0, 2.0),
        ("channel_2_off", None, 2.0),
        ("channel_3_off", None, 2.0),
    ],
}
for _pid in ("bed-keeson-base", "bed-keeson-okin", "bed-keeson-ksbt-raw", "bed-keeson-ksbt-cr",
             "bed-keeson-ksbt04c"):
    # No off in the source: power is the toggle, pressed again to stop.
    SESSIONS[_pid] = [
        ("massage_toggle", None, 0.0),
        ("massage_foot_up", None, 1.0),
        ("massage_foot_up", None, 2.0),
        ("massage_toggle", None, 2.0),
    ]
SESSIONS["bed-keeson-purple-plus"] = [  # each key followed at once by its release
    ("key_toggle", None, 0.0),
    ("release", None, 0.0),
    ("key_foot_up", None, 1.0),
    ("release", None, 1.0),
    ("key_foot_up", None, 2.0),
    ("release", None, 2.0),
    ("key_toggle", None, 2.0),
    ("release", None, 2.0),
]
SESSIONS["bed-keeson-harmony-i5"] = SESSIONS["bed-keeson-sleep-harmony"]
for _pid in ("bed-motosleep-hhc-zero", "bed-motosleep-raw-zero"):
    # No off key on PanelZero: the foot on/off key is pressed again to stop.
    SESSIONS[_pid] = [
        ("massage_foot_toggle", None, 0.0),
        ("massage_foot_up", None, 1.0),
        ("massage_foot_up", None, 2.0),
        ("massage_foot_toggle", None, 2.0),
    ]
for _pid in ("bed-richmat-single", "bed-richmat-wilinke", "bed-richmat-prefix55",
             "bed-richmat-prefixaa"):
    SESSIONS[_pid] = [
        ("massage_toggle", None, 0.0),
        ("massage_foot_2", None, 1.0),
        ("massage_foot_3", None, 2.0),
        ("massage_foot_off", None, 2.0),
        ("massage_head_off", None, 2.0),
    ]


def _vector_hex(pid: str, name: str, value: int | None) -> str:
    """The bytes of ``name`` (with ``value``) from the profile's byte-vector file."""
    path = VECTOR_DIR / f"{pid}.toml"
    if not path.exists():
        path = VECTOR_DIR / "no-off" / f"{pid}.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for entry in data["command"]:
        if entry["name"] == name and entry.get("value") == value:
            return str(entry["hex"]).replace(" ", "")
    raise AssertionError(f"{pid}: no vector for {name} {value}")


async def _received(bed: Bench, count: int) -> list[tuple[str, float]]:
    """The frames the bed received (hex, fake time), once ``count`` have arrived (a write
    without response may still be in flight when the governor returns)."""
    await eventually(lambda: len(bed.massager.frames) >= count, timeout=5.0)
    await asyncio.sleep(0.05)  # and nothing more behind them
    return [(f.hex, f.time) for f in bed.massager.frames]


def test_every_bed_has_a_session() -> None:
    assert set(SESSIONS) == set(BEDS)


@pytest.mark.parametrize("pid", sorted(SESSIONS))
async def test_session_start_raise_two_pick_a_pattern_stop(
    bench_factory: BenchFactory, pid: str
) -> None:
    profile = BEDS[pid]
    bed = await bench_factory(profile, Caps(ramp_step_s=RAMP_STEP_S), session_on_clock=True)
    low = profile.capabilities.intensity.min

    await bed.governor.submit(Request(power=True, intensity=low))  # start foot massage
    assert await eventually(lambda: bed.model.running)
    if profile.capabilities.intensity.max >= low + 2:  # raise two levels (where it has them)
        await bed.governor.submit(Request(intensity=low + 2))
        assert await eventually(lambda: bed.model.intensity == low + 2)
    if "mode" in profile.settings:  # pick a pattern
        pattern = profile.capabilities.modes[1].name
        await bed.governor.submit(Request(mode=pattern))
        assert await eventually(lambda: bed.model.mode == pattern)
    await bed.governor.stop()
    assert await eventually(lambda: not bed.model.running)

    expected = SESSIONS[pid]
    got = await _received(bed, len(expected))
    assert [h for h, _ in got] == [_vector_hex(pid, n, v) for n, v, _ in expected]
    if profile.gatt.write_with_response:
        # Each write is confirmed before the next step, so the bed's clock shows the waits.
        start = got[0][1]
        assert [round(t - start, 6) for _, t in got] == [t for _, _, t in expected]


@pytest.mark.parametrize("pid", sorted(SESSIONS))
async def test_session_timer_switches_the_bed_off(bench_factory: BenchFactory, pid: str) -> None:
    profile = BEDS[pid]
    bed = await bench_factory(profile, Caps(ramp_step_s=0, session_s=600), session_on_clock=True)
    await bed.governor.submit(Request(power=True, intensity=profile.capabilities.intensity.min))
    assert await eventually(lambda: bed.model.running)
    before = len(bed.massager.frames)
    bed.clock.now += 601  # past the 10-minute session cap
    await bed.governor.enforce()
    assert await eventually(lambda: not bed.model.running, timeout=5.0)
    assert bed.governor.ended.is_set()
    # What was written after the cap is exactly the profile's off.
    off = SESSIONS[pid][-_off_length(pid):]
    got = await _received(bed, before + len(off))
    assert [h for h, _ in got[before:]] == [_vector_hex(pid, n, v) for n, v, _ in off]


def _off_length(pid: str) -> int:
    """How many frames the profile's off takes (the tail of its session)."""
    return {
        "bed-jiecang": 2,
        "bed-keeson-sino": 2,
        "bed-keeson-sleep-harmony": 2,
        "bed-keeson-harmony-i5": 2,
        "bed-keeson-purple-plus": 2,
        "bed-leggett-gen2": 4,
        "bed-richmat-single": 2,
        "bed-richmat-wilinke": 2,
        "bed-richmat-prefix55": 2,
        "bed-richmat-prefixaa": 2,
    }.get(pid, 1)


@pytest.mark.parametrize("pid", ["bed-linak", "bed-okin-cb24-legacy", "bed-keeson-sleep-harmony"])
async def test_intensity_cap_holds_on_a_bed(bench_factory: BenchFactory, pid: str) -> None:
    profile = BEDS[pid]
    low = profile.capabilities.intensity.min
    caps = Caps(ramp_step_s=0, intensity=low + 1, clamp=True)
    bed = await bench_factory(profile, caps, session_on_clock=True)
    await bed.governor.submit(Request(power=True, intensity=low))
    await bed.governor.submit(Request(intensity=low + 2))  # asks past the cap: clamped
    assert await eventually(lambda: bed.model.intensity == low + 1)
    await asyncio.sleep(0.05)
    assert bed.model.intensity == low + 1  # and no further
    await bed.governor.stop()
    assert await eventually(lambda: not bed.model.running)
