"""The virtual massager's behaviour, on a fake clock: no radio, no sleeping."""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from footctl.device.codec import decode_status, encode
from footctl.device.profile.schema import CommandName, Profile
from footctl.state import Command
from footctl.virtual.model import AMBIENT_CELSIUS, MassagerModel


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def model_for(profile: Profile, clock: Clock) -> MassagerModel:
    return MassagerModel(profile, now=clock, rng=random.Random(7))


def on(m: MassagerModel) -> None:
    name: CommandName = "power" if "power" in m.profile.commands else "press_power"
    m.apply(Command(name, 1 if name == "power" else None))
    assert m.running


# --------------------------------------------------------------------- absolute


def test_power_on_starts_low_in_first_mode(profiles: dict[str, Profile], clock: Clock) -> None:
    m = model_for(profiles["ems-v2"], clock)
    assert not m.running
    assert m.apply(Command("power", 1))
    assert m.running
    assert m.intensity == 0
    assert m.mode == "kneading"
    assert m.heat == 0
    assert not m.apply(Command("power", 1))  # already on: no change, no reset


def test_absolute_commands_set_values(profiles: dict[str, Profile], clock: Clock) -> None:
    m = model_for(profiles["ems-v2"], clock)
    on(m)
    m.apply(Command("intensity", 7))
    m.apply(Command("heat", 2))
    m.apply(Command("mode", 6))
    m.apply(Command("zone", 3))
    r = m.report()
    assert (r.running, r.intensity, r.heat, r.mode, r.zone) == (True, 7, 2, "shiatsu", 3)


def test_power_off_turns_motor_and_heat_off(profiles: dict[str, Profile], clock: Clock) -> None:
    m = model_for(profiles["shiatsu-aa55"], clock)
    on(m)
    m.apply(Command("intensity", 4))
    m.apply(Command("heat", 1))
    m.apply(Command("power", 0))
    assert not m.running
    assert m.heat == 0
    assert m.intensity == 1
    on(m)
    m.apply(Command("heat", 1))
    m.apply(Command("stop"))
    assert not m.running
    assert m.heat == 0


@pytest.mark.parametrize(
    "command",
    [Command("intensity", 3), Command("heat", 1), Command("mode", 2)],
)
def test_settings_while_off_are_ignored(
    profiles: dict[str, Profile], clock: Clock, command: Command
) -> None:
    m = model_for(profiles["shiatsu-aa55"], clock)
    assert not m.apply(command)
    assert not m.running
    assert m.heat == 0
    assert m.intensity == 1
    assert m.mode == "kneading"


@pytest.mark.parametrize(
    "command",
    [
        Command("intensity", 20),
        Command("intensity", -1),
        Command("heat", 4),
        Command("mode", 8),
        Command("zone", 6),
        Command("timer", 0),
        Command("timer", 61),
        Command("power", 2),
        Command("query"),
    ],
)
def test_out_of_range_is_ignored(
    profiles: dict[str, Profile], clock: Clock, command: Command
) -> None:
    m = model_for(profiles["ems-v2"], clock)
    on(m)
    m.apply(Command("intensity", 5))
    before = m.state()
    assert not m.apply(command)
    assert m.state() == before


def test_heat_wire_codes_map_to_levels(profiles: dict[str, Profile], clock: Clock) -> None:
    profile = profiles["ems-v2"]
    caps = profile.capabilities.model_copy(
        update={
            "heat_levels": [
                level.model_copy(update={"code": 0x10 + level.level})
                for level in profile.capabilities.heat_levels
            ]
        }
    )
    m = model_for(profile.model_copy(update={"capabilities": caps}), clock)
    on(m)
    assert not m.apply(Command("heat", 2))  # a level number is not a wire code here
    assert m.apply(Command("heat", 0x12))
    assert m.heat == 2


# --------------------------------------------------------------------- keys


def test_keys_power_toggles_and_others_need_power(
    profiles: dict[str, Profile], clock: Clock
) -> None:
    m = model_for(profiles["shiatsu-keys"], clock)
    assert not m.apply(Command("press_mode"))
    assert not m.apply(Command("press_intensity_up"))
    assert not m.apply(Command("press_heat"))
    assert m.apply(Command("press_power"))
    assert m.running
    assert m.intensity == 1
    assert m.mode == "kneading"
    m.apply(Command("press_heat"))
    assert m.apply(Command("press_power"))
    assert not m.running
    assert m.heat == 0


def test_keys_cycle_and_clamp(profiles: dict[str, Profile], clock: Clock) -> None:
    m = model_for(profiles["shiatsu-keys"], clock)
    on(m)
    modes = [m.mode]
    for _ in range(3):
        m.apply(Command("press_mode"))
        modes.append(m.mode)
    assert modes == ["kneading", "rolling", "air", "kneading"]
    for _ in range(10):
        m.apply(Command("press_intensity_up"))
    assert m.intensity == 6
    assert not m.apply(Command("press_intensity_up"))
    for _ in range(10):
        m.apply(Command("press_intensity_down"))
    assert m.intensity == 1
    heats = [m.heat]
    for _ in range(3):
        m.apply(Command("press_heat"))
        heats.append(m.heat)
    assert heats == [0, 1, 0, 1]


def test_press_heat_cycles_through_every_level(profiles: dict[str, Profile], clock: Clock) -> None:
    # ems-v2 has three levels; key presses cycle 0 -> 1 -> 2 -> 3 -> 0
    m = model_for(profiles["ems-v2"], clock)
    on(m)
    seen = []
    for _ in range(5):
        m.apply(Command("press_heat"))
        seen.append(m.heat)
    assert seen == [1, 2, 3, 0, 1]


# --------------------------------------------------------------------- time


def test_auto_off_after_profile_minutes(profiles: dict[str, Profile], clock: Clock) -> None:
    m = model_for(profiles["shiatsu-aa55"], clock)
    on(m)
    m.apply(Command("heat", 1))
    changes: list[int] = []
    m.subscribe(lambda: changes.append(m.version))
    assert m.next_event_at() == pytest.approx(clock.t + 15 * 60)
    clock.advance(15 * 60 - 1)
    m.tick()
    assert m.running
    assert m.timer_minutes_left == 1
    clock.advance(2)
    m.tick()
    assert not m.running
    assert m.heat == 0
    assert len(changes) == 1
    assert m.next_event_at() is None


def test_timer_command_sets_the_auto_off(profiles: dict[str, Profile], clock: Clock) -> None:
    m = model_for(profiles["ems-v2"], clock)
    on(m)
    m.apply(Command("timer", 2))
    assert m.report().timer == 2
    clock.advance(61)
    assert m.report().timer == 1
    clock.advance(60)
    assert m.report().running is False
    assert m.report().timer == 0


def test_thermal_curve_reaches_95_percent_in_60_s(
    profiles: dict[str, Profile], clock: Clock
) -> None:
    m = model_for(profiles["ems-v2"], clock)
    on(m)
    m.apply(Command("heat", 3))  # 44 C
    rise = 44.0 - AMBIENT_CELSIUS
    clock.advance(30)
    m.tick()
    halfway = (m.temperature - AMBIENT_CELSIUS) / rise
    assert 0.70 < halfway < 0.82  # 1 - sqrt(0.05) = 0.776
    clock.advance(30)
    m.tick()
    assert (m.temperature - AMBIENT_CELSIUS) / rise == pytest.approx(0.95, abs=0.002)
    # step size does not matter: one big tick equals many small ones
    other = model_for(profiles["ems-v2"], clock)
    on(other)
    other.apply(Command("heat", 3))
    for _ in range(600):
        clock.advance(0.1)
        other.tick()
    assert other.temperature == pytest.approx(m.temperature, abs=1e-6)
    # heat off: back towards skin temperature
    other.apply(Command("heat", 0))
    clock.advance(60)
    other.tick()
    assert other.temperature == pytest.approx(AMBIENT_CELSIUS + 0.05 * (44 - 30), abs=0.05)


def test_auto_off_mid_tick_cools_from_the_off_time(
    profiles: dict[str, Profile], clock: Clock
) -> None:
    m = model_for(profiles["shiatsu-aa55"], clock)
    on(m)
    m.apply(Command("heat", 1))
    clock.advance(15 * 60 + 60)  # one long gap: heated for 15 min, then cooled 60 s
    m.tick()
    assert not m.running
    assert m.temperature == pytest.approx(AMBIENT_CELSIUS + 0.05 * 10, abs=0.01)


# --------------------------------------------------------------------- reports


@pytest.mark.parametrize("profile_id", ["ems-v2", "shiatsu-aa55", "shiatsu-keys"])
def test_report_round_trips_and_carries_only_status_fields(
    profiles: dict[str, Profile], clock: Clock, profile_id: str
) -> None:
    profile = profiles[profile_id]
    m = model_for(profile, clock)
    on(m)
    if profile.capabilities.command_style == "absolute":
        m.apply(Command("heat", profile.capabilities.heat_levels[-1].wire))
    else:
        m.apply(Command("press_heat"))
    clock.advance(17)
    report = m.report()
    assert profile.status is not None
    for name in ("running", "intensity", "heat", "mode", "zone", "timer", "battery", "temperature"):
        assert (getattr(report, name) is None) == (name not in profile.status.fields), name
    frame = m.status_frame()
    assert frame is not None
    assert decode_status(profile, frame) == report


def test_report_temperature_is_what_the_wire_carries(
    profiles: dict[str, Profile], clock: Clock
) -> None:
    m = model_for(profiles["shiatsu-aa55"], clock)
    on(m)
    m.apply(Command("heat", 1))
    clock.advance(13.3)
    t = m.report().temperature
    assert t is not None
    assert t == int(t)
    assert 30 < t < 40


# --------------------------------------------------------------------- frames and faults


def test_receive_logs_every_frame(
    profiles: dict[str, Profile], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    profile = profiles["shiatsu-aa55"]
    m = MassagerModel(profile, now=clock, frame_logger=logging.getLogger("test.frames"))
    with caplog.at_level(logging.INFO, logger="test.frames"):
        ok = m.receive(encode(profile, Command("power", 1)))
        bad = m.receive(b"\xaa\x55\x02\x01\x01\x00")
        big = m.receive(encode(profile, Command("power", 0)) * 5, max_size=20)
        ign = m.receive(encode(profile, Command("intensity", 9)))
    assert (ok.outcome, ok.command, ok.value) == ("applied", "power", 1)
    assert bad.outcome == "error"
    assert bad.error
    assert "checksum" in bad.error
    assert big.outcome == "oversize"
    assert m.running
    assert ign.outcome == "ignored"
    assert list(m.frames) == [ok, bad, big, ign]
    assert len(caplog.records) == 4
    assert "aa550201" in caplog.records[0].getMessage()


def test_frame_log_is_bounded(profiles: dict[str, Profile], clock: Clock) -> None:
    profile = profiles["shiatsu-aa55"]
    m = MassagerModel(profile, now=clock, frame_log_size=10)
    for _ in range(25):
        m.receive(b"junk")
    assert len(m.frames) == 10


def test_mute_and_ignore_writes(profiles: dict[str, Profile], clock: Clock) -> None:
    profile = profiles["shiatsu-aa55"]
    m = model_for(profile, clock)
    m.set_fault("ignore_writes", True)
    assert m.receive(encode(profile, Command("power", 1))).outcome == "ignored"
    assert not m.running
    assert m.status_frame() is not None
    m.set_fault("ignore_writes", False)
    m.set_fault("mute", True)
    assert m.receive(encode(profile, Command("power", 1))).outcome == "muted"
    assert not m.running
    assert m.status_frame() is None


def test_garbage_and_truncate_break_frames(profiles: dict[str, Profile], clock: Clock) -> None:
    profile = profiles["ems-v2"]
    m = model_for(profile, clock)
    good = m.status_frame()
    assert good is not None
    m.garbage = True
    for _ in range(50):
        frame = m.status_frame()
        assert frame is not None
        assert len(frame) == len(good)
        assert frame != good
    m.garbage = False
    m.truncate = True
    for _ in range(50):
        frame = m.status_frame()
        assert frame is not None
        assert 0 < len(frame) < len(good)
        assert good.startswith(frame)


def test_rogue_heat_is_stuck_and_overheats(profiles: dict[str, Profile], clock: Clock) -> None:
    profile = profiles["shiatsu-aa55"]
    m = model_for(profile, clock)
    m.set_fault("rogue_heat", 1)
    m.set_fault("rogue_celsius", 50)
    assert m.report().heat == 1  # even while off
    on(m)
    m.apply(Command("heat", 0))
    m.apply(Command("power", 0))
    clock.advance(60)
    assert m.report().heat == 1
    t = m.report().temperature
    assert t is not None
    assert t > 48
    m.set_fault("rogue_heat", None)
    assert m.report().heat == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("mute", 1),
        ("slow_seconds", -1),
        ("slow_seconds", True),
        ("rogue_heat", 2),
        ("rogue_heat", "1"),
        ("nope", True),
    ],
)
def test_bad_fault_values_raise(
    profiles: dict[str, Profile], clock: Clock, name: str, value: object
) -> None:
    with pytest.raises(ValueError, match="fault"):
        model_for(profiles["shiatsu-aa55"], clock).set_fault(name, value)


# --------------------------------------------------------------------- properties


COMMANDS: list[CommandName] = [
    "power",
    "intensity",
    "heat",
    "mode",
    "zone",
    "timer",
    "stop",
    "query",
    "press_power",
    "press_mode",
    "press_intensity_up",
    "press_intensity_down",
    "press_heat",
]


@given(
    profile_id=st.sampled_from(["ems-v2", "shiatsu-aa55", "shiatsu-keys"]),
    steps=st.lists(
        st.tuples(
            st.sampled_from(COMMANDS),
            st.one_of(st.integers(0, 7), st.integers(-2, 300)),
            st.floats(0, 400, allow_nan=False),
        ),
        max_size=40,
    ),
)
def test_any_command_sequence_keeps_the_device_consistent(
    profiles: dict[str, Profile], profile_id: str, steps: list[tuple[CommandName, int, float]]
) -> None:
    profile = profiles[profile_id]
    caps = profile.capabilities
    clock = Clock()
    m = model_for(profile, clock)
    hottest = max([h.celsius for h in caps.heat_levels], default=AMBIENT_CELSIUS)
    for name, value, dt in steps:
        m.apply(Command(name, value))
        clock.advance(dt)
        m.tick()
        assert m.intensity in caps.intensity
        assert 0 <= m.heat <= caps.max_heat_level
        assert m.running or m.heat == 0
        assert AMBIENT_CELSIUS - 1e-9 <= m.temperature <= hottest + 1e-9
        left = m.seconds_left
        assert left is None or left <= max(60 * 60, 60 * (caps.auto_off_minutes or 0))
        assert decode_status(profile, encode_status_of(m)) == m.report()


def encode_status_of(m: MassagerModel) -> bytes:
    frame = m.status_frame()
    assert frame is not None
    return frame
