"""The virtual massager honours the version-2 schema: toggles, tables, cycles, counted
steps, chambers, sequences, waits after power-on and wake frames."""

from __future__ import annotations

from footctl.device import codec
from footctl.device.profile.loader import find_profiles, load_profile_text, shipped_dir
from footctl.state import Command
from footctl.virtual.model import MassagerModel

PROFILES = find_profiles()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def model(pid: str) -> tuple[MassagerModel, Clock]:
    clock = Clock()
    m = MassagerModel(PROFILES[pid], now=clock)
    m.link_up()
    return m, clock


def send(m: MassagerModel, name: str, value: int | None = None) -> list[str]:
    """Write every frame of a command as the session would; the outcomes."""
    out = []
    for w in codec.writes(m.profile, Command(name, value)):
        if isinstance(w, codec.Write):
            out.append(m.receive(w.frame, endpoint=w.endpoint).outcome)
    return out


def test_toggle_keys_flip_and_power_off_cuts_heat() -> None:
    m, _ = model("aircomp-mini")
    send(m, "wake")
    send(m, "heat_key")
    assert (m.running, m.heat) == (False, 0)  # off: every key but power is ignored
    send(m, "power_key")
    send(m, "heat_key")
    assert (m.running, m.heat) == (True, 1)
    send(m, "heat_key")
    assert m.heat == 0
    send(m, "heat_key")
    send(m, "power_key")
    assert (m.running, m.heat) == (False, 0)
    assert m.presses == {"heat": 3, "power": 2}


def test_a_sleeping_device_ignores_everything_until_its_wake_frame() -> None:
    m, clock = model("aircomp-mini")
    assert send(m, "power_key") == ["ignored"] and not m.running
    assert send(m, "wake") == ["applied"]
    assert send(m, "power_key") == ["applied"] and m.running
    # idle past wake_idle_seconds: asleep again
    clock.t += 61
    assert send(m, "level_high") == ["ignored"] and m.intensity == 1
    send(m, "wake")
    send(m, "level_high")
    assert m.intensity == 2
    # a new connection: asleep until woken
    m.link_up()
    assert send(m, "level_low") == ["ignored"]


def test_per_value_keys_set_their_value() -> None:
    m, clock = model("keys-table")
    send(m, "hello")
    send(m, "key_power")
    clock.t += 1.0  # ready_seconds
    for name, mode in (("key_roll", "rolling"), ("key_tap", "tapping"), ("key_knead", "kneading")):
        send(m, name)
        assert m.mode == mode
    send(m, "key_l4")
    send(m, "key_t20")
    assert (m.intensity, m.timer_choice, m.timer_minutes_left) == (4, 20, 20)


def test_commands_right_after_power_on_are_ignored_until_the_device_is_ready() -> None:
    m, clock = model("keys-table")
    send(m, "hello")
    send(m, "key_power")
    assert send(m, "key_roll") == ["ignored"] and m.mode == "kneading"
    clock.t += 0.99
    assert send(m, "key_roll") == ["ignored"]
    clock.t += 0.02
    assert send(m, "key_roll") == ["applied"] and m.mode == "rolling"


def test_keys_go_to_their_own_characteristic() -> None:
    m, _ = model("keys-table")
    send(m, "hello")
    frame = codec.encode(m.profile, Command("key_power"))
    assert m.receive(frame).outcome == "error"  # not on the default write characteristic
    assert m.receive(frame, endpoint="keys").outcome == "applied" and m.running


def test_step_keys_count_and_stop_at_the_ends() -> None:
    m, _ = model("stepper-blind")
    send(m, "power_on")
    assert m.intensity == 1
    for _ in range(4):
        send(m, "up")
    assert m.intensity == 5
    for _ in range(20):
        send(m, "up")
    assert m.intensity == 9  # no wrap
    assert send(m, "to_lowest") == ["applied"] * 8
    assert m.intensity == 1
    assert m.presses["intensity"] == 4 + 20 + 8


def test_cycle_key_walks_the_modes_and_wraps() -> None:
    m, _ = model("shiatsu-nodes")
    send(m, "power_key")
    seen = []
    for _ in range(4):
        send(m, "mode_key")
        seen.append(m.mode)
    assert seen == ["roll", "knead-roll", "knead", "roll"]


def test_compression_chambers_run_independently() -> None:
    m, _ = model("aircomp-duo")
    send(m, "power", 1)
    assert m.zone == 3  # both chambers after power-on
    send(m, "feet_key")
    assert m.zone == 2  # calves only
    send(m, "calves_key")
    send(m, "feet_key")
    assert m.zone == 1  # feet only
    report = m.report()
    assert report.zone == 1
    assert codec.decode_status(m.profile, codec.encode_status(m.profile, report)).zone == 1


def test_the_device_timer_ends_the_session() -> None:
    m, clock = model("aircomp-duo")
    send(m, "power", 1)
    send(m, "timer_10")
    clock.t += 10 * 60 - 1
    m.tick()
    assert m.running
    clock.t += 2
    m.tick()
    assert not m.running and m.report().running is False


def test_a_sequence_key_with_a_shared_release_frame() -> None:
    # The frame that carries a sequence's effect is its own key, not the shared release.
    text = (shipped_dir() / "stepper-blind.toml").read_text(encoding="utf-8")
    text = text.replace('up = "up"', 'up = "up_held"').replace(
        "[commands.up]", '[commands.release]\nraw = "C1 00"\n\n'
        '[commands.up_held]\nsequence = ["up", { wait = 0.2 }, "release"]\n\n[commands.up]'
    )
    p = load_profile_text(text)
    clock = Clock()
    m = MassagerModel(p, now=clock)
    send(m, "power_on")
    assert send(m, "up_held") == ["applied", "ignored"]
    assert m.intensity == 2

