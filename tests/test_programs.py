"""Programs: schema and errors, loading, progression, the setpoint timeline, cap checks."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from footctl.device.profile.loader import find_profiles
from footctl.device.profile.schema import Profile
from footctl.errors import ExitCode, UsageError
from footctl.programs import (
    Program,
    ProgramError,
    Step,
    check_against_limits,
    effective_intensity,
    expand,
    find_programs,
    get_program,
    list_programs,
    load_program,
    load_program_text,
    parse_duration,
    setpoint_at,
)
from footctl.programs.intent import resolve
from footctl.programs.loader import scan_programs
from footctl.safety.limits import Caps, Limits

SHIATSU = ("shiatsu-aa55", "shiatsu-keys")


def on_aa55(name: str) -> Program:
    """A shipped program (relative intensities, mode families) as it runs on the 1-5
    shiatsu-aa55, where 0/25/50 % are levels 1/2/3."""
    return resolve(find_programs()[name], find_profiles()["shiatsu-aa55"]).program


def program(steps: list[dict[str, Any]], **extra: Any) -> Program:
    return Program.model_validate({"name": "t", "steps": steps, **extra})


def line_of(text: str, marker: str) -> int:
    """1-based line of the line carrying ``marker`` (a TOML comment in the fixture)."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if marker in line)


# --- durations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 5 * 60), ("90s", 90), ("1m30s", 60 + 30), ("1h", 60 * 60), ("15min", 15 * 60),
     (45, 45), (2.5, 2.5)],
)  # fmt: skip
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5x", "", "m", "five minutes", True, None, "1.5m"])
def test_bad_durations_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


# --- shipped programs --------------------------------------------------------------


def test_the_three_shipped_programs_load() -> None:
    programs = find_programs()
    assert {"wind-down", "quick-relax", "no-heat"} <= set(programs)
    assert programs["wind-down"].duration_s == 15 * 60
    assert programs["quick-relax"].duration_s == 10 * 60


def test_wind_down_follows_the_bedtime_routine() -> None:
    steps = find_programs()["wind-down"].steps
    assert steps[0].mode == "kneading"
    assert steps[0].heat > 0
    assert steps[-1].heat == 0, "the feet shed heat in the last minutes"
    assert any(s.pulse is not None or s.mode != "kneading" for s in steps[1:-1])
    assert find_programs()["wind-down"].progression is not None


def test_no_heat_program_has_no_heat_anywhere() -> None:
    timeline = expand(on_aa55("no-heat"))
    assert all(s.heat == 0 for s in timeline)


@pytest.mark.parametrize("profile_id", SHIATSU)
@pytest.mark.parametrize("name", ["wind-down", "quick-relax", "no-heat"])
def test_shipped_programs_pass_default_caps(
    profiles: dict[str, Profile], profile_id: str, name: str
) -> None:
    profile = profiles[profile_id]
    limits = Limits.compute(profile, Caps())
    unattended = min(limits.heat_max, Caps().unattended_heat_level)
    problems = check_against_limits(
        resolve(find_programs()[name], profile).program,
        max_intensity=limits.intensity_max,
        max_heat=unattended,
        max_session_s=limits.session_s,
        no_heat=False,
        max_heat_s=limits.heat_s,
        modes=[m.name for m in profile.capabilities.modes],
    )
    assert problems == []


def test_no_heat_program_passes_the_medical_setting() -> None:
    p = on_aa55("no-heat")
    assert (
        check_against_limits(p, max_intensity=9, max_heat=0, max_session_s=3600, no_heat=True) == []
    )
    heated = on_aa55("wind-down")
    assert check_against_limits(
        heated, max_intensity=9, max_heat=3, max_session_s=3600, no_heat=True
    )


# --- validation errors with file, line, step and field ------------------------------

BROKEN = """\
name = "broken"

[[steps]]
duration = "1m"
mode = "kneading"
intensity = 2

[[steps]]
duration = "1m"
mode = "kneading"
intensity = 0  # <- step 2 intensity
heat = 1

[[steps]]
duration = "1m"
mode = "rolling"
intensity = 2
heet = 1  # <- step 3 typo

[[steps]]
duration = "5 minutes"  # <- step 4 duration
mode = "rolling"
intensity = 2
pulse = { on_s = 1, off_s = 15 }  # <- step 4 pulse
"""


def test_errors_list_file_step_field_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    with pytest.raises(ProgramError) as info:
        load_program(path)
    found = {(p.step, p.field): p for p in info.value.problems}
    assert set(found) == {(2, "intensity"), (3, "heet"), (4, "duration"), (4, "pulse.on_s")}
    assert found[(2, "intensity")].line == line_of(BROKEN, "step 2 intensity")
    assert found[(3, "heet")].line == line_of(BROKEN, "step 3 typo")
    assert "unknown field" in found[(3, "heet")].reason
    assert found[(4, "duration")].line == line_of(BROKEN, "step 4 duration")
    assert found[(4, "pulse.on_s")].line == line_of(BROKEN, "step 4 pulse")
    assert all(p.file == path for p in found.values())
    message = str(info.value)
    assert f"{path}:{line_of(BROKEN, 'step 2 intensity')}: step 2: intensity" in message


SUB_TABLE = """\
name = "sub"

[[steps]]
duration = 60
mode = "kneading"
intensity = 1

[steps.pulse]
off_s = 10
on_s = 2  # <- step 1 pulse on

[[steps]]
duration = 60
mode = "kneading"
intensity = 1

[steps.ramp]  # <- step 2 ramp
from_intensity = 1
"""


def test_errors_inside_a_step_sub_table_point_into_it() -> None:
    with pytest.raises(ProgramError) as info:
        load_program_text(SUB_TABLE)
    found = {(p.step, p.field): p.line for p in info.value.problems}
    assert found[(1, "pulse.on_s")] == line_of(SUB_TABLE, "step 1 pulse on")
    assert found[(2, "ramp.to_intensity")] == line_of(SUB_TABLE, "step 2 ramp")


def test_program_error_is_a_usage_error_with_details() -> None:
    with pytest.raises(ProgramError) as info:
        load_program_text('name = "x"\nsteps = []\n')
    err = info.value
    assert isinstance(err, UsageError)
    assert err.exit_code == ExitCode.USAGE
    problems = err.to_dict()["problems"]
    assert isinstance(problems, list)
    assert problems[0]["field"] == "steps"


def test_step_needs_exactly_one_of_intensity_and_ramp() -> None:
    text = (
        'name = "x"\n[[steps]]\nduration = 60\nmode = "kneading"\n'
        '[[steps]]  # <- here\nduration = 60\nmode = "kneading"\nintensity = 2\n'
        "ramp = { from_intensity = 1, to_intensity = 3 }\n"
    )
    with pytest.raises(ProgramError) as info:
        load_program_text(text)
    steps = sorted(p.step for p in info.value.problems if p.step is not None)
    assert steps == [1, 2]
    second = next(p for p in info.value.problems if p.step == 2)
    assert second.line == line_of(text, "<- here")
    assert "exactly one" in second.reason


def test_program_longer_than_the_ceiling_is_refused() -> None:
    steps = [{"duration": "30m", "mode": "kneading", "intensity": 1}] * 2
    with pytest.raises(ValueError, match="ceiling"):
        program(steps)


def test_progression_must_rise() -> None:
    text = (
        'name = "x"\n[progression]\nevery_nights = 2\nstart_intensity = 3\n'
        'max_intensity = 2\n[[steps]]\nduration = 60\nmode = "kneading"\nintensity = 2\n'
    )
    with pytest.raises(ProgramError) as info:
        load_program_text(text)
    (problem,) = info.value.problems
    assert problem.step is None
    assert problem.field == "progression"
    assert problem.line == line_of(text, "[progression]")


def test_toml_syntax_error_has_a_line() -> None:
    with pytest.raises(ProgramError) as info:
        load_program_text('name = "x"\n\n[[steps]\n')
    assert info.value.problems[0].line == 3


def test_name_must_match_file_name(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text('name = "mine"\n[[steps]]\nduration = 60\nmode = "kneading"\nintensity = 1\n')
    with pytest.raises(ProgramError, match="must match the file name"):
        load_program(path)


# --- loading: user programs win ---------------------------------------------------


def test_user_program_overrides_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "wind-down.toml").write_text(
        'name = "wind-down"\ndescription = "mine"\n'
        '[[steps]]\nduration = "5m"\nmode = "kneading"\nintensity = 1\n'
    )
    (tmp_path / "extra.toml").write_text(
        'name = "extra"\n[[steps]]\nduration = "5m"\nmode = "kneading"\nintensity = 1\n'
    )
    shipped = find_programs()
    found = {f.program.name: f for f in list_programs(tmp_path)}
    assert found["wind-down"].program.description == "mine"
    assert not found["wind-down"].shipped
    assert found["quick-relax"].shipped
    assert found["quick-relax"].program == shipped["quick-relax"]
    assert "extra" in found and "extra" not in shipped


def test_invalid_user_file_is_reported_by_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[[steps]]\nduration = 60\nmode = "Kneading!"\nintensity = 1\n')
    catalog = scan_programs(tmp_path)
    assert [p.file for p in catalog.problems] == [bad]
    assert catalog.problems[0].field == "mode"
    # Skipped, not fatal: the shipped programs are still there.
    assert "wind-down" in find_programs(tmp_path)
    with pytest.raises(ProgramError) as info:
        get_program("bad", tmp_path)
    assert [p.file for p in info.value.problems] == [bad]


def test_get_program_by_name_or_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        get_program("no-such-program")
    assert info.value.advice is not None
    assert "wind-down" in info.value.advice
    path = tmp_path / "here.toml"
    path.write_text('name = "here"\n[[steps]]\nduration = 60\nmode = "kneading"\nintensity = 4\n')
    assert get_program(str(path)).steps[0].intensity == 4
    assert get_program("quick-relax") == find_programs()["quick-relax"]


# --- progression -------------------------------------------------------------------

PROGRESSIVE = {"start_intensity": 1, "every_nights": 3, "max_intensity": 3}


def test_progression_adds_one_level_every_n_nights() -> None:
    p = program([{"duration": 60, "mode": "kneading", "intensity": 5}], progression=PROGRESSIVE)
    step = p.steps[0]
    got = [effective_intensity(p, step, n) for n in range(10)]
    assert got == [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]


def test_progression_never_raises_a_step_above_its_own_intensity() -> None:
    p = program([{"duration": 60, "mode": "kneading", "intensity": 2}], progression=PROGRESSIVE)
    assert effective_intensity(p, p.steps[0], 100) == 2


def test_without_progression_the_step_runs_as_written() -> None:
    p = program([{"duration": 60, "mode": "kneading", "ramp": {"from_intensity": 4,
                                                              "to_intensity": 2}}])  # fmt: skip
    assert effective_intensity(p, p.steps[0], 0) == 4
    with pytest.raises(ValueError, match="negative"):
        effective_intensity(p, p.steps[0], -1)


@given(
    start=st.integers(1, 5),
    rise=st.integers(0, 5),
    every=st.integers(1, 7),
    peak=st.integers(1, 10),
    nights=st.integers(0, 200),
)
def test_progression_is_gradual(start: int, rise: int, every: int, peak: int, nights: int) -> None:
    prog = {"start_intensity": start, "every_nights": every, "max_intensity": start + rise}
    p = program([{"duration": 60, "mode": "kneading", "intensity": peak}], progression=prog)
    step = p.steps[0]
    now, tomorrow = effective_intensity(p, step, nights), effective_intensity(p, step, nights + 1)
    assert tomorrow - now in (0, 1), "at most one level per night"
    assert now <= min(peak, start + rise)
    assert now >= min(start, peak)


# --- the timeline ------------------------------------------------------------------


def test_timeline_of_plain_steps_ends_all_off() -> None:
    p = program(
        [
            {"duration": "2m", "mode": "kneading", "intensity": 2, "heat": 1, "zone": 1},
            {"duration": "1m", "mode": "rolling", "intensity": 3},
        ]
    )
    timeline = expand(p)
    assert [(s.offset_s, s.step, s.mode, s.intensity, s.heat, s.zone) for s in timeline[:2]] == [
        (0.0, 1, "kneading", 2, 1, 1),
        (120.0, 2, "rolling", 3, 0, None),
    ]
    end = timeline[-1]
    assert (end.offset_s, end.step, end.running, end.heat, end.intensity) == (
        180.0,
        None,
        False,
        0,
        0,
    )


def test_pulse_follows_on_off_pattern() -> None:
    on, off, length = 30, 15, 100
    p = program([{"duration": length, "mode": "kneading", "intensity": 2, "heat": 1,
                  "pulse": {"on_s": on, "off_s": off}}])  # fmt: skip
    timeline = expand(p)
    for t in range(length):
        point = setpoint_at(timeline, t + 0.5)
        assert point.running == ((t % (on + off)) < on), t
        assert point.heat == 1, "heat is not pulsed"
    assert not setpoint_at(timeline, length + 1).running


@pytest.mark.parametrize(("start", "stop"), [(1, 3), (4, 1)])
def test_ramp_moves_one_level_per_equal_slice(start: int, stop: int) -> None:
    length = 120
    p = program([{"duration": length, "mode": "kneading",
                  "ramp": {"from_intensity": start, "to_intensity": stop}}])  # fmt: skip
    timeline = expand(p)
    levels = abs(stop - start) + 1
    slice_s = length / levels
    direction = 1 if stop > start else -1
    for t in range(length):
        expected = start + direction * int(t // slice_s)
        assert setpoint_at(timeline, t + 0.01).intensity == expected, t


def test_progression_caps_the_whole_timeline() -> None:
    wind_down = on_aa55("wind-down")
    assert {s.intensity for s in expand(wind_down, 0) if s.step} == {1}
    assert max(s.intensity for s in expand(wind_down, 1000)) == 3


step_strategy = st.fixed_dictionaries(
    {
        "duration": st.integers(5, 400),
        "mode": st.sampled_from(["kneading", "rolling"]),
        "heat": st.integers(0, 3),
    },
    optional={
        "pulse": st.fixed_dictionaries({"on_s": st.integers(5, 60), "off_s": st.integers(5, 60)}),
        "zone": st.integers(0, 3),
    },
).flatmap(
    lambda d: st.one_of(
        st.integers(1, 9).map(lambda i: {**d, "intensity": i}),
        st.tuples(st.integers(1, 9), st.integers(1, 9))
        .filter(lambda r: r[0] != r[1])
        .map(lambda r: {**d, "ramp": {"from_intensity": r[0], "to_intensity": r[1]}}),
    )
)


@given(steps=st.lists(step_strategy, min_size=1, max_size=5), nights=st.integers(0, 30))
def test_timeline_matches_the_steps(steps: list[dict[str, Any]], nights: int) -> None:
    p = program(steps, progression={"every_nights": 2, "max_intensity": 5})
    timeline = expand(p, nights)
    offsets = [s.offset_s for s in timeline]
    assert offsets == sorted(set(offsets)), "strictly increasing"
    assert timeline[-1].offset_s == pytest.approx(p.duration_s)
    assert timeline[-1].heat == 0 and not timeline[-1].running
    for a, b in itertools.pairwise(timeline):
        assert (a.step, a.intensity, a.running) != (b.step, b.intensity, b.running)
    start = 0.0
    for number, step in enumerate(p.steps, start=1):
        inside = [s for s in timeline if s.step == number]
        assert inside[0].offset_s == pytest.approx(start)
        assert all(start <= s.offset_s < start + step.duration_s for s in inside)
        assert all(s.heat == step.heat and s.mode == step.mode for s in inside)
        assert max(s.intensity for s in inside) == effective_intensity(p, step, nights)
        start += step.duration_s


# --- checks against caps -----------------------------------------------------------


def check(p: Program, **kw: Any) -> list[tuple[int | None, str, object, object]]:
    args: dict[str, Any] = {"max_intensity": 9, "max_heat": 3, "max_session_s": 3600.0,
                            "no_heat": False, **kw}  # fmt: skip
    return [(x.step, x.field, x.asked, x.cap) for x in check_against_limits(p, **args)]


def test_steps_above_caps_are_reported_with_step_field_and_cap() -> None:
    p = program(
        [
            {"duration": "5m", "mode": "kneading", "intensity": 2, "heat": 1},
            {"duration": "5m", "mode": "kneading", "intensity": 5, "heat": 2},
            {"duration": "5m", "mode": "air", "ramp": {"from_intensity": 1, "to_intensity": 6}},
        ]
    )
    assert check(p, max_intensity=4, max_heat=1) == [
        (2, "intensity", 5, 4),
        (2, "heat", 2, 1),
        (3, "ramp.to_intensity", 6, 4),
    ]
    assert check(p, max_session_s=600.0) == [(None, "duration", 900.0, 600.0)]
    assert check(p, modes=["kneading", "rolling"]) == [(3, "mode", "air", "kneading, rolling")]


def test_no_heat_refuses_every_heated_step() -> None:
    p = program(
        [
            {"duration": 60, "mode": "kneading", "intensity": 2, "heat": 1},
            {"duration": 60, "mode": "kneading", "intensity": 2},
            {"duration": 60, "mode": "kneading", "intensity": 2, "heat": 3},
        ]
    )
    assert check(p, no_heat=True) == [(1, "heat", 1, 0), (3, "heat", 3, 0)]


def test_heat_dose_across_steps_and_short_gaps() -> None:
    p = program(
        [
            {"duration": "10m", "mode": "kneading", "intensity": 2, "heat": 1},
            {"duration": "10m", "mode": "kneading", "intensity": 2, "heat": 1},
            {"duration": "2m", "mode": "kneading", "intensity": 2, "heat": 1},
            {"duration": "5m", "mode": "kneading", "intensity": 2},
            {"duration": "10m", "mode": "kneading", "intensity": 2, "heat": 1},
        ]
    )
    # A 5 min gap is shorter than the cool-down: it does not reset the dose, so the
    # program heats 32 min in all (safety/dose.py).
    assert check(p, max_heat_s=15 * 60.0) == [(2, "heat", 32 * 60.0, 15 * 60.0)]
    assert check(p, max_heat_s=22 * 60.0) == [(5, "heat", 32 * 60.0, 22 * 60.0)]
    assert check(p, max_heat_s=32 * 60.0) == []


def test_progressive_program_is_checked_at_its_peak_unless_told_the_night() -> None:
    p = program([{"duration": 60, "mode": "kneading", "intensity": 4}], progression=PROGRESSIVE)
    assert check(p, max_intensity=2) == [(1, "intensity", 3, 2)]
    assert check(p, max_intensity=2, completed_nights=0) == []


def test_problem_reads_well() -> None:
    p = program([{"duration": "20m", "mode": "kneading", "intensity": 2, "heat": 2}])
    problems = check_against_limits(
        p, max_intensity=5, max_heat=1, max_session_s=600, no_heat=False
    )
    text = [str(x) for x in problems]
    assert text == [
        "program: duration: asks 20 min, cap 10 min (longer than the session cap)",
        "step 1: heat: asks 2, cap 1 (above the heat cap)",
    ]
    assert problems[1].to_dict()["step"] == 1


def test_step_label_prefers_name() -> None:
    named = Step.model_validate(
        {"name": "warm", "duration": 60, "mode": "kneading", "intensity": 1}
    )
    unnamed = Step.model_validate({"duration": 60, "mode": "rolling", "intensity": 1})
    assert (named.label, unnamed.label) == ("warm", "rolling")
