"""The pure planner: how a wanted state becomes commands on a version-2 profile."""

from __future__ import annotations

import dataclasses

from footctl.device import planner
from footctl.device.profile.loader import find_profiles
from footctl.state import DeviceState

PROFILES = find_profiles()


def state(pid: str, **kw: object) -> DeviceState:
    base = DeviceState(address="", profile_id=pid, assumed=False, reports=1)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def names(plan: planner.Plan) -> list[str]:
    return [s.command.name if s.command else f"wait {s.pause:g}" for s in plan.steps]


# --- toggles -----------------------------------------------------------------------------


def test_a_toggle_is_pressed_only_when_the_state_differs() -> None:
    p = PROFILES["aircomp-mini"]
    on = state("aircomp-mini", running=True, intensity=1, heat=0)
    assert names(planner.plan(p, on, running=True, intensity=1)) == []
    assert names(planner.plan(p, on, running=True, heat=1)) == ["heat_key"]
    off = state("aircomp-mini", running=False)
    assert names(planner.plan(p, off, running=True, intensity=2)) == ["power_key"]  # then report


def test_a_stop_never_presses_power_on_a_device_that_is_off() -> None:
    p = PROFILES["aircomp-mini"]
    off = state("aircomp-mini", running=False)
    assert planner.plan_off(p, off).steps == ()
    on = state("aircomp-mini", running=True, heat=1)
    assert names(planner.plan_off(p, on)) == ["power_key"]
    # off, but the heater reported on: the heat key, not power
    assert names(planner.plan_off(p, state("aircomp-mini", running=False, heat=1))) == [
        "heat_key"
    ]


def test_a_re_sent_stop_never_presses_twice_on_a_stale_state() -> None:
    p = PROFILES["aircomp-mini"]
    on = state("aircomp-mini", running=True)
    first = planner.plan_off(p, on)
    assert names(first) == ["power_key"] and first.steps[0].press
    # no report since: the press is unconfirmed, and a second press could switch it on again
    again = planner.plan_off(p, on, unconfirmed={"power"})
    assert again.steps == () and again.refused is not None and "stale" in again.refused


def test_value_commands_are_always_sent_for_an_off() -> None:
    p = PROFILES["aircomp-duo"]
    off = state("aircomp-duo", running=False)
    assert names(planner.plan_off(p, off)) == ["heat_off", "power"]
    assert [s.command.value for s in planner.plan_off(p, off).steps if s.command] == [None, 0]


# --- counting presses without status ----------------------------------------------------


def test_a_level_of_n_is_n_presses_from_power_on() -> None:
    p = PROFILES["stepper-blind"]
    off = state("stepper-blind", running=False, assumed=True, reports=0)
    plan = planner.plan(p, off, running=True, intensity=5, mode="vibration")
    assert names(plan) == ["power_on", "mode_next", "mode_next", "up", "up", "up", "up"]
    assert plan.presses == 6
    assert plan.steps[-1].believed.intensity == 5
    # and back down from the believed level: counted, never re-sent
    down = planner.plan(p, plan.steps[-1].believed, running=True, intensity=2)
    assert names(down) == ["down", "down", "down"]


def test_an_unknown_level_is_made_known_by_the_reset_sequence() -> None:
    p = PROFILES["stepper-blind"]
    unknown = state("stepper-blind", running=True, intensity=None, mode="kneading", assumed=True)
    plan = planner.plan(p, unknown, running=True, intensity=3)
    assert names(plan) == ["to_lowest", "up", "up"]
    assert plan.refused is None


def test_an_unreachable_level_is_refused_with_the_reason() -> None:
    p = PROFILES["shiatsu-nodes"]
    # a step setting without a reset, whose level is unknown
    unknown = state("shiatsu-nodes", running=True, intensity=None, mode="knead")
    plan = planner.plan(p, unknown, running=True, intensity=3)
    assert plan.refused is not None
    assert "unknown" in plan.refused and "reset" in plan.refused
    assert plan.steps == ()
    # a value outside the setting
    assert "not one of its values" in (
        planner.plan(p, state("shiatsu-nodes", running=True, intensity=1), running=True,
                     intensity=9).refused or ""
    )


def test_with_status_one_press_per_plan() -> None:
    p = PROFILES["shiatsu-nodes"]
    on = state("shiatsu-nodes", running=True, intensity=1, mode="knead")
    plan = planner.plan(p, on, running=True, intensity=4, mode="knead-roll")
    assert names(plan) == ["mode_key"]  # the next plan starts from the report it causes
    again = planner.plan(p, on, running=True, mode="knead-roll", unconfirmed={"mode"})
    assert again.refused is not None and again.steps == ()


def test_chamber_bits_press_only_the_keys_that_differ() -> None:
    p = PROFILES["aircomp-duo"]
    both = state("aircomp-duo", running=True, intensity=1, mode="wave", zone=3, heat=0)
    assert names(planner.plan(p, both, running=True, zone=2)) == ["feet_key"]
    assert names(planner.plan(p, both, running=True, zone=3)) == []
    blind = dataclasses.replace(both, zone=None)
    assert "chambers" in (planner.plan(p, blind, running=True, zone=1).refused or "")


def test_a_wait_follows_power_on_where_the_device_needs_it() -> None:
    p = PROFILES["keys-table"]
    off = state("keys-table", running=False)
    plan = planner.plan(p, off, running=True, mode="rolling")
    assert names(plan) == ["key_power", "wait 1"]


def test_heat_goes_down_first_and_up_last() -> None:
    p = PROFILES["aircomp-duo"]
    warm = state("aircomp-duo", running=True, intensity=1, mode="wave", zone=3, heat=2)
    assert names(planner.plan(p, warm, running=True, intensity=3, heat=1)) == [
        "heat_low", "strength",
    ]
    cold = dataclasses.replace(warm, heat=0)
    assert names(planner.plan(p, cold, running=True, intensity=3, heat=1)) == [
        "strength", "heat_low",
    ]


def test_the_device_timer_is_set_once_not_chased_as_it_counts_down() -> None:
    p = PROFILES["aircomp-duo"]
    on = state("aircomp-duo", running=True, intensity=1, mode="wave", zone=3, timer=17)
    assert names(planner.plan(p, on, running=True, timer=20)) == ["timer_20"]
    assert names(planner.plan(p, on, running=True, timer=20, timer_set=20)) == []
    assert names(planner.plan(p, on, running=True, timer=30, timer_set=20)) == ["timer_30"]


def test_assumed_state_resends_value_commands_on_a_reporting_device() -> None:
    p = PROFILES["aircomp-duo"]
    on = state("aircomp-duo", running=True, intensity=2, mode="wave", zone=3)
    assert names(planner.plan(p, on, running=True, intensity=2)) == []
    assumed = dataclasses.replace(on, assumed=True)
    assert names(planner.plan(p, assumed, running=True, intensity=2)) == ["strength"]


def test_the_backstop_timer_is_the_longest_within_the_ceiling() -> None:
    assert planner.backstop_timer(PROFILES["aircomp-duo"], 45) == 30
    assert planner.backstop_timer(PROFILES["aircomp-duo"], 25) == 20
    assert planner.backstop_timer(PROFILES["aircomp-duo"], 5) == 10  # the shortest it has
    assert planner.backstop_timer(PROFILES["shiatsu-nodes"], 45) is None
