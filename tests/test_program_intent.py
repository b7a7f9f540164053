"""Programs speak of intent: mode families with fallbacks and relative intensities,
resolved per device; every shipped program runs on every shipped profile that can do
what it asks, and the check explains every step a device cannot do."""

from __future__ import annotations

import pytest

from footctl.device.profile.loader import find_profiles
from footctl.programs import find_programs, load_program_text
from footctl.programs.intent import pick_mode, resolve
from footctl.programs.model import percent_to_level
from footctl.programs.runner import assess
from footctl.safety.limits import Caps, Limits

PROFILES = find_profiles()
PROGRAMS = find_programs()


@pytest.mark.parametrize(
    ("percent", "low", "high", "level"),
    [(0, 1, 5, 1), (25, 1, 5, 2), (50, 1, 5, 3), (100, 1, 5, 5), (0, 0, 19, 1),
     (50, 0, 19, 10), (25, 1, 2, 1), (50, 1, 2, 2), (100, 1, 6, 6)],
)
def test_percent_to_level(percent: int, low: int, high: int, level: int) -> None:
    assert percent_to_level(percent, low, high) == level


def test_a_mode_is_found_by_name_then_family_then_fallback() -> None:
    nodes = PROFILES["shiatsu-nodes"]
    assert pick_mode(nodes, "knead-roll", [])[0].name == "knead-roll"  # type: ignore[union-attr]
    mode, how = pick_mode(nodes, "rolling", [])
    assert mode is not None and mode.name == "roll" and how == "family"  # the pure one
    duo = PROFILES["aircomp-duo"]
    mode, how = pick_mode(duo, "rolling", ["kneading", "compression"])
    assert mode is not None and mode.name == "wave" and how == "fallback compression"
    mode, why = pick_mode(duo, "rolling", [])
    assert mode is None and "wave, squeeze" in why and "compression" in why


def test_resolve_makes_a_program_concrete_and_says_what_changed() -> None:
    program = load_program_text(
        'name = "x"\n[[steps]]\nduration = "2m"\nmode = "rolling"\n'
        'fallback = ["compression"]\nramp_percent = { from_percent = 0, to_percent = 100 }\n'
        '[[steps]]\nduration = "1m"\nmode = "kneading"\nintensity_percent = 50\n'
    )
    resolution = resolve(program, PROFILES["aircomp-duo"])
    first, second = resolution.program.steps
    assert first.mode == "wave" and first.ramp is not None and first.ramp.levels == (1, 3)
    assert [a.field for a in resolution.adaptations if a.step == 1] == ["mode", "ramp"]
    # kneading has no fallback here and the device no kneading mode: the step keeps what
    # it asked for (the cap check refuses it) and its level is still resolved
    assert second.mode == "kneading" and second.intensity == 2
    assert [a.step for a in resolution.unplayable] == [2]


def test_a_step_no_mode_can_do_is_refused_with_the_reason() -> None:
    program = load_program_text(
        'name = "x"\n[[steps]]\nduration = "2m"\nmode = "compression"\nintensity = 1\n'
    )
    profile = PROFILES["shiatsu-aa55"]
    assessment = assess(program, profile, Limits.compute(profile, Caps()))
    assert [(f.step, f.field) for f in assessment.refused] == [(1, "mode")]
    assert "can do none of compression" in assessment.refused[0].reason
    assert "kneading, rolling, combined" in assessment.refused[0].reason


@pytest.mark.parametrize("pid", sorted(PROFILES))
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_shipped_program_runs_where_the_device_can_do_it(pid: str, name: str) -> None:
    profile = PROFILES[pid]
    program = PROGRAMS[name]
    assessment = assess(program, profile, Limits.compute(profile, Caps()))
    asked = {kind for s in program.steps for kind in (s.mode, *s.fallback)}
    if not asked & (profile.capabilities.families() | {m.name for m in profile.capabilities.modes}):
        # a device with none of the kinds of massage the program asks for (a bed's vibration
        # motors, issue #14): refused, and every reason says which it lacks
        assert assessment.refused
        assert all(
            "can do none of" in f.reason or "has no heater" in f.reason
            for f in assessment.refused
        )
        return
    needs_heat = any(s.heat for s in program.steps)
    if needs_heat and profile.capabilities.max_heat_level == 0:
        # the one thing a shipped device cannot do: heat without a heater; explained
        assert assessment.refused
        assert all("has no heater" in f.reason for f in assessment.refused)
        return
    assert assessment.refused == [], [str(f) for f in assessment.refused]
    resolved = assessment.resolved
    assert resolved is not None
    for step in resolved.steps:
        assert profile.capabilities.mode_named(step.mode) is not None
        assert not step.relative
        assert profile.capabilities.intensity.min <= step.peak_intensity
        assert step.peak_intensity <= profile.capabilities.intensity.max


def test_the_shipped_programs_run_on_ems_v2_and_explain_the_substitution() -> None:
    profile = PROFILES["ems-v2"]
    for program in PROGRAMS.values():
        assessment = assess(program, profile, Limits.compute(profile, Caps()))
        assert not assessment.refused
    wind_down = assess(PROGRAMS["wind-down"], profile, Limits.compute(profile, Caps()))
    adapted = [f for f in wind_down.findings if f.action == "adapted" and f.field == "mode"]
    assert [f.step for f in adapted] == [2]
    assert "no mode 'rolling'" in adapted[0].reason and "kneading" in adapted[0].reason


def test_relative_steps_need_a_device_for_their_level() -> None:
    program = load_program_text(
        'name = "x"\n[[steps]]\nduration = "2m"\nmode = "kneading"\nintensity_percent = 40\n'
    )
    with pytest.raises(ValueError, match="resolve"):
        _ = program.steps[0].peak_intensity
    with pytest.raises(Exception, match="exactly one"):
        load_program_text(
            'name = "x"\n[[steps]]\nduration = "2m"\nmode = "kneading"\nintensity = 2\n'
            "intensity_percent = 40\n"
        )
