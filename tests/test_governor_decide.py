"""SafetyGovernor decisions: refuse or clamp with a reason, never pass a cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession, Target
from footctl.device.transport.ble import Radio
from footctl.errors import ExitCode, SafetyRefused, UsageError
from footctl.safety.governor import Request, SafetyGovernor
from footctl.safety.limits import Caps, Limits


def governor(profile: Profile, caps: Caps | None = None) -> SafetyGovernor:
    session = DeviceSession(profile, Radio("unit"))
    return SafetyGovernor(session, Limits.compute(profile, caps or Caps()))


def test_within_limits_passes_through(profiles: dict[str, Profile]) -> None:
    gov = governor(profiles["shiatsu-aa55"])
    d = gov.decide(Request(intensity=3, heat=1, mode="rolling"))
    assert d.target == Target(running=True, intensity=3, heat=1, mode="rolling")
    assert d.notes == ()


def test_heat_above_temperature_cap_is_refused_with_reason(profiles: dict[str, Profile]) -> None:
    gov = governor(profiles["ems-v2"])
    with pytest.raises(SafetyRefused) as info:
        gov.decide(Request(heat=3))
    assert info.value.reason == "heat_above_cap"
    assert "44" in info.value.message and "42" in info.value.message
    assert info.value.exit_code == ExitCode.REFUSED


def test_clamp_mode_clamps_heat_and_says_so(profiles: dict[str, Profile]) -> None:
    gov = governor(profiles["ems-v2"], Caps(clamp=True))
    d = gov.decide(Request(heat=3))
    assert d.target.heat == 2
    assert any("clamped" in n for n in d.notes)


def test_no_heat_refuses_every_heat_level(profiles: dict[str, Profile]) -> None:
    gov = governor(profiles["shiatsu-aa55"], Caps(no_heat=True, clamp=True))
    with pytest.raises(SafetyRefused) as info:
        gov.decide(Request(heat=1))
    assert info.value.reason == "no_heat"
    assert gov.decide(Request(heat=0)).target.heat == 0


def test_intensity_past_the_hardware_range_is_refused_even_when_clamping(
    profiles: dict[str, Profile],
) -> None:
    gov = governor(profiles["shiatsu-aa55"], Caps(clamp=True))
    with pytest.raises(SafetyRefused) as info:
        gov.decide(Request(intensity=9))
    assert info.value.reason == "intensity_above_cap"
    assert "5" in info.value.message


def test_user_intensity_cap_refuses_or_clamps(profiles: dict[str, Profile]) -> None:
    with pytest.raises(SafetyRefused) as info:
        governor(profiles["shiatsu-aa55"], Caps(intensity=3)).decide(Request(intensity=4))
    assert "your cap is 3" in info.value.message
    d = governor(profiles["shiatsu-aa55"], Caps(intensity=3, clamp=True)).decide(
        Request(intensity=4)
    )
    assert d.target.intensity == 3


def test_unknown_mode_and_zone_are_usage_errors(profiles: dict[str, Profile]) -> None:
    gov = governor(profiles["shiatsu-aa55"])
    with pytest.raises(UsageError) as info:
        gov.decide(Request(mode="tickle"))
    assert "kneading" in str(info.value)
    with pytest.raises(UsageError):
        gov.decide(Request(zone=1))
    ems = governor(profiles["ems-v2"])
    assert ems.decide(Request(zone=5)).target.zone == 5
    with pytest.raises(UsageError):
        ems.decide(Request(zone=6))


def test_off_request_is_always_accepted(profiles: dict[str, Profile]) -> None:
    gov = governor(profiles["ems-v2"], Caps(no_heat=True))
    assert gov.decide(Request(power=False)).target == Target(running=False)


@given(
    pid=st.sampled_from(["ems-v2", "shiatsu-aa55", "shiatsu-keys"]),
    intensity=st.none() | st.integers(-5, 40),
    heat=st.none() | st.integers(0, 6),
    temperature=st.floats(30, 50),
    max_intensity=st.none() | st.integers(0, 25),
    clamp=st.booleans(),
    no_heat=st.booleans(),
)
def test_no_approved_target_exceeds_any_limit(
    profiles: dict[str, Profile],
    pid: str,
    intensity: int | None,
    heat: int | None,
    temperature: float,
    max_intensity: int | None,
    clamp: bool,
    no_heat: bool,
) -> None:
    profile = profiles[pid]
    caps = Caps(temperature_c=temperature, intensity=max_intensity, clamp=clamp, no_heat=no_heat)
    gov = governor(profile, caps)
    try:
        target = gov.decide(Request(intensity=intensity, heat=heat)).target
    except SafetyRefused:
        return
    if target.heat:
        assert not no_heat
        celsius = profile.capabilities.heat_celsius(target.heat)
        assert celsius is not None
        assert celsius <= min(temperature, 45.0)
    if target.intensity is not None:
        assert target.intensity <= profile.capabilities.intensity.max
        if max_intensity is not None:
            assert target.intensity <= max(max_intensity, profile.capabilities.intensity.min)


@pytest.mark.parametrize(
    "fields",
    [
        {"intensity": float("nan")},
        {"intensity": float("inf")},
        {"intensity": 2.5},
        {"intensity": "3"},
        {"intensity": True},
        {"heat": float("nan")},
        {"heat": True},
        {"zone": 1.0},
        {"mode": 3},
        {"power": 1},
        {"unattended": "yes"},
    ],
)
def test_values_of_the_wrong_type_are_refused_at_the_edge(
    profiles: dict[str, Profile], fields: dict[str, object]
) -> None:
    """NaN compared false with every cap and passed them; a bool is an int in Python.
    Whatever a source sends, only whole-number levels get through (issue #9)."""
    gov = governor(profiles["ems-v2"])
    with pytest.raises(UsageError):
        gov.decide(Request(source="mqtt", **fields))  # type: ignore[arg-type]


def test_a_value_outside_the_massagers_range_says_what_to_ask_for(
    profiles: dict[str, Profile],
) -> None:
    """A new user's first hour: `set --intensity 0` and `set --heat 2` on a one-level
    massager were refused without saying which values it takes."""
    gov = governor(profiles["shiatsu-aa55"])
    with pytest.raises(SafetyRefused) as low:
        gov.decide(Request(intensity=0))
    assert low.value.reason == "intensity_out_of_range"
    assert low.value.advice == "ask for 1-5"
    with pytest.raises(SafetyRefused) as hot:
        gov.decide(Request(heat=2))
    assert hot.value.reason == "heat_out_of_range"
    assert hot.value.advice == "ask for heat 1 or less"
