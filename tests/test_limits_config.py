"""Effective limits and the config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from footctl.config import Config, load_config
from footctl.device.profile.schema import Profile
from footctl.errors import ConfigError
from footctl.safety import limits as L
from footctl.safety.limits import Caps, Limits


def test_default_caps_allow_only_heat_levels_at_or_below_42c(profiles: dict[str, Profile]) -> None:
    ems = Limits.compute(profiles["ems-v2"], Caps())
    # ems-v2 levels: 38, 41, 44 C -> 44 C is above the 42 C default cap
    assert ems.heat_max == 2
    assert "44" in ems.heat_max_reason
    aa55 = Limits.compute(profiles["shiatsu-aa55"], Caps())
    assert aa55.heat_max == 1


def test_no_heat_forbids_every_level(profiles: dict[str, Profile]) -> None:
    lim = Limits.compute(profiles["ems-v2"], Caps(no_heat=True))
    assert lim.heat_max == 0
    assert "no_heat" in lim.heat_max_reason


def test_user_intensity_cap_is_min_of_profile_and_cap(profiles: dict[str, Profile]) -> None:
    p = profiles["shiatsu-aa55"]
    assert Limits.compute(p, Caps(intensity=3)).intensity_max == 3
    assert Limits.compute(p, Caps(intensity=99)).intensity_max == p.capabilities.intensity.max


def test_caps_never_pass_ceilings(profiles: dict[str, Profile]) -> None:
    lim = Limits.compute(
        profiles["ems-v2"], Caps(session_s=10_000, heat_s=10_000, temperature_c=60)
    )
    assert lim.session_s == L.CEILING_SESSION_S
    assert lim.heat_s == L.CEILING_HEAT_S
    assert lim.temperature_c == L.CEILING_TEMPERATURE_C
    assert lim.heat_max == 3  # 44 C is under the 45 C ceiling


def test_missing_config_gives_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "nope.toml")
    assert cfg == Config()
    assert cfg.caps.to_caps().session_s == L.DEFAULT_SESSION_S


def test_config_may_raise_caps_up_to_the_ceiling(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[caps]\nmax_session_minutes = 45\nmax_temperature_c = 44.5\n")
    caps = load_config(path).caps.to_caps()
    assert caps.session_s == 45 * 60
    assert caps.temperature_c == 44.5


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[caps]\nmax_session_minutes = 46\n", "caps.max_session_minutes"),
        ("[caps]\nmax_heat_minutes = 31\n", "caps.max_heat_minutes"),
        ("[caps]\nmax_temperature_c = 46\n", "caps.max_temperature_c"),
        ("[caps]\nmax_sesion_minutes = 10\n", "caps.max_sesion_minutes"),
        ("[[devices]]\naddress = 'AA'\n", "devices[0].profile"),
        # Issue #9, 6: unattended heat could be raised to any level.
        ("[caps]\nunattended_heat_level = 2\n", "caps.unattended_heat_level"),
        ("[caps]\nheartbeat_seconds = 0\n", "caps.heartbeat_seconds"),
        ("[caps]\nheartbeat_seconds = 601\n", "caps.heartbeat_seconds"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    """A value past a design ceiling, or a misspelt or missing key, is exit 2 naming
    the file and the field."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert field in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 2


def test_floors_hold_whatever_the_config_says(profiles: dict[str, Profile]) -> None:
    """Issue #9, 6: a ramp of 0 s and a cooldown of 0 min disabled both; on a real radio
    the governor applies the floors (the virtual massager may run faster)."""
    loose = Limits.compute(
        profiles["ems-v2"], Caps(ramp_step_s=0, cooldown_s=0, heartbeat_s=10_000)
    ).with_floors()
    assert loose.ramp_step_s == L.FLOOR_RAMP_STEP_S
    assert loose.cooldown_s == L.FLOOR_COOLDOWN_S
    assert loose.heartbeat_s == L.CEILING_HEARTBEAT_S
    raised = Limits.compute(profiles["ems-v2"], Caps(unattended_heat_level=3))
    assert raised.unattended_heat_level == 1
