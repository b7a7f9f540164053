"""Home Assistant discovery payloads for every shipped profile, checked against Home
Assistant's schema for each platform (tests/ha_schema.py), with every value template
parsed and rendered against real state payloads."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import SHIPPED
from footctl.control.api import (
    DeviceCaps,
    DeviceView,
    ProgramView,
    Settings,
    Timers,
    device_caps,
)
from footctl.device.profile.schema import Profile
from footctl.mqtt.discovery import discovery_config, heat_options, is_ours
from footctl.mqtt.payloads import state_payload
from footctl.mqtt.topics import Topics, topic_id
from footctl.safety.limits import Caps, Limits
from ha_schema import check_component, check_rendered, expand_device_discovery, render

TOPICS = Topics("footctl", "hostA", "homeassistant")
PROGRAMS = ("no-heat", "quick-relax", "wind-down")


def caps_for(profile: Profile, caps: Caps | None = None) -> DeviceCaps:
    limits = Limits.compute(profile, caps or Caps())
    return device_caps("F0:F0:00:00:00:01", profile, limits, PROGRAMS)


def view_for(profile: Profile, **changes: Any) -> DeviceView:
    base = DeviceView(device_id="F0:F0:00:00:00:01", address="F0:F0:00:00:00:01",
                      name="bedroom", profile=profile.id)
    return base.model_copy(update=changes)


def sample_states(profile: Profile) -> list[dict[str, Any]]:
    """Idle, running with heat and a program, link lost, unknown values."""
    caps = profile.capabilities
    top = caps.intensity.max
    heat = caps.heat_levels[0].level if caps.heat_levels else 0
    running = view_for(
        profile, link="connected", rssi=-50, assumed=False, temperature=39.5,
        reported=Settings(power=True, intensity=top, heat=heat, mode=caps.modes[-1].name,
                          zone=caps.zones.max if caps.zones else None),
        program=ProgramView(program="wind-down", source="mqtt", step=2, steps=4,
                            step_name="warm", step_left_s=30.0, left_s=600.0),
        timers=Timers(session_left_s=900.0, heat_left_s=600.0),
        last_refusal="heat_above_cap: " + "x" * 400,
    )
    return [
        state_payload(view_for(profile), "wind-down"),
        state_payload(view_for(profile, link="lost", fault="over_temperature"), None),
        state_payload(running, "quick-relax"),
    ]


@pytest.mark.parametrize("profile_id", SHIPPED)
def test_discovery_matches_home_assistant_schema(
    profiles: dict[str, Profile], profile_id: str
) -> None:
    profile = profiles[profile_id]
    config = discovery_config(view_for(profile), caps_for(profile), TOPICS, version="9.9")
    top, comps = expand_device_discovery(config)
    for cid, comp in comps.items():
        check_component(cid, comp)
    for state in sample_states(profile):
        for cid, comp in comps.items():
            if "value_template" in comp:
                check_rendered(cid, comp, render(comp, state))
    uids = [c["unique_id"] for c in comps.values()]
    assert len(set(uids)) == len(uids)
    assert top["availability_mode"] == "all"
    assert [a["topic"] for a in top["availability"]] == [
        "footctl/bridge/hostA/state", "footctl/f0f000000001/availability"]
    assert top["origin"] == {"name": "footctl", "sw_version": "9.9"}
    assert top["device"]["identifiers"] == ["footctl_f0f000000001"]
    assert top["device"]["model_id"] == profile_id
    assert is_ours(config, TOPICS)
    assert not is_ours(config, Topics("footctl", "hostB"))


@pytest.mark.parametrize("profile_id", SHIPPED)
def test_controls_follow_profile_and_caps(profiles: dict[str, Profile], profile_id: str) -> None:
    profile = profiles[profile_id]
    caps = profile.capabilities
    comps = discovery_config(view_for(profile), caps_for(profile), TOPICS)["cmps"]
    expected = {"power", "mode", "stop", "temperature", "time_left", "link",
                "last_refusal", "program", "start_program"}
    levels = caps.intensity.max - caps.intensity.min + 1
    if levels > 1:
        expected.add("intensity")
    if caps.heat_levels:
        expected |= {"heat", "heating"}
    if caps.zones is not None:
        expected.add("zone")
        assert (comps["zone"]["min"], comps["zone"]["max"]) == (caps.zones.min, caps.zones.max)
    assert set(comps) == expected
    assert comps["mode"]["ops"] == [m.name for m in caps.modes]
    assert comps["program"]["ops"] == list(PROGRAMS)
    if levels > 1:
        assert comps["intensity"]["min"] == caps.intensity.min
        assert comps["intensity"]["max"] == caps.intensity.max

    capped = caps_for(profile, Caps(intensity=caps.intensity.min + 1, no_heat=True))
    comps = discovery_config(view_for(profile), capped, TOPICS)["cmps"]
    if levels > 1:
        assert comps["intensity"]["max"] == caps.intensity.min + 1
    # capped to its lowest level, a massager has no intensity to set
    lowest = caps_for(profile, Caps(intensity=caps.intensity.min))
    assert "intensity" not in discovery_config(view_for(profile), lowest, TOPICS)["cmps"]
    assert "heat" not in comps and "heating" not in comps


def test_heat_options_stop_at_the_temperature_cap(profiles: dict[str, Profile]) -> None:
    ems = profiles["ems-v2"]  # levels at 38, 41 and 44 C; the default cap is 42 C
    assert heat_options(caps_for(ems)) == ["off", "1", "2"]
    assert heat_options(caps_for(ems, Caps(temperature_c=40))) == ["off", "1"]
    comps = discovery_config(view_for(ems), caps_for(ems), TOPICS)["cmps"]
    assert comps["heat"]["ops"] == ["off", "1", "2"]


def test_templates_render_the_state() -> None:
    profile_id = "shiatsu-aa55"
    from footctl.device.profile.loader import find_profiles

    profile = find_profiles()[profile_id]
    _top, comps = expand_device_discovery(
        discovery_config(view_for(profile), caps_for(profile), TOPICS))
    idle, lost, running = sample_states(profile)
    assert render(comps["power"], idle) == "OFF"
    assert render(comps["power"], running) == "ON"
    assert render(comps["intensity"], running) == "5"
    assert render(comps["intensity"], idle) == "None"
    assert render(comps["heat"], running) == "1"
    assert render(comps["heat"], idle) == "off"
    assert render(comps["heating"], running) == "ON"
    assert render(comps["mode"], running) == "combined"
    assert render(comps["temperature"], running) == "39.5"
    assert render(comps["temperature"], idle) == "None"
    assert render(comps["time_left"], running) == "600.0"
    assert render(comps["link"], running) == "ON"
    assert render(comps["link"], lost) == "OFF"
    assert render(comps["last_refusal"], idle) == "none"
    assert render(comps["last_refusal"], lost) == "over_temperature"
    assert len(render(comps["last_refusal"], running)) == 255
    assert render(comps["program"], running) == "quick-relax"
    assert comps["start_program"]["command_topic"] == "footctl/f0f000000001/set/start"


def test_topic_ids_are_safe() -> None:
    assert topic_id("F0:F0:00:00:00:01") == "f0f000000001"
    assert topic_id("Bedroom Left!") == "bedroomleft"
    assert topic_id("bridge") == "bridge_"
    assert TOPICS.parse_set("footctl/abc/set") == ("abc", None)
    assert TOPICS.parse_set("footctl/abc/set/intensity") == ("abc", "intensity")
    assert TOPICS.parse_set("footctl/abc/state") is None
    assert TOPICS.parse_set("other/abc/set") is None
    assert TOPICS.parse_discovery("homeassistant/device/footctl_abc/config") == "footctl_abc"
