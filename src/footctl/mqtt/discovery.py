"""Home Assistant device-based discovery: one retained config per massager on
``<prefix>/device/footctl_<id>/config`` with ``dev`` (the massager), ``o`` (footctl)
and ``cmps`` (its controls and sensors), abbreviated as Home Assistant documents.

Every control and range comes from the massager's capabilities after the caps
(:class:`footctl.control.api.DeviceCaps`): a massager without heat (or under
``no_heat``) gets no heat control, the intensity number ends at the capped maximum,
the zone number exists only where the profile has zones. Every entity is available
only while both this host's bridge and the massager's availability say ``online``.
An empty retained payload on the same topic removes the device from Home Assistant.
"""

from __future__ import annotations

import re
from typing import Any

from footctl import __version__
from footctl.control.api import DeviceCaps, DeviceView
from footctl.mqtt.topics import Topics, topic_id

# The origin (``o``) names footctl and its version; Home Assistant's origin schema
# also takes an optional support URL, which footctl leaves out: the project publishes
# none (pyproject.toml has no [project.urls]), and a made-up one would send users nowhere.
ORIGIN_NAME = "footctl"
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")

# The value templates read the state JSON (payloads.state_payload). A null renders
# as "None", which Home Assistant's number, select and sensor take as "unknown".
ON_OFF_POWER = "{{ 'ON' if value_json.power else 'OFF' }}"
ON_OFF_HEATING = "{{ 'ON' if value_json.heat else 'OFF' }}"
ON_OFF_LINK = "{{ 'ON' if value_json.link == 'connected' else 'OFF' }}"
HEAT_OPTION = "{{ 'off' if not value_json.heat else value_json.heat | string }}"
# Home Assistant keeps at most 255 characters of a sensor's state.
REFUSAL = "{{ (value_json.last_refusal or value_json.fault or 'none')[:255] }}"


def heat_options(caps: DeviceCaps) -> list[str]:
    """The heat select's options: ``off`` and each level allowed under the caps."""
    return ["off", *(str(h.level) for h in caps.heat_levels)]


def _select(
    name: str, icon: str, command_topic: str, options: list[str], value_template: str
) -> dict[str, Any]:
    """A Home Assistant ``select`` component (abbreviated keys): the mode, heat and
    program pickers."""
    return {
        "p": "select", "name": name, "ic": icon,
        "cmd_t": command_topic, "ops": options, "val_tpl": value_template,
    }


def _number(
    name: str,
    icon: str,
    command_topic: str,
    value_template: str,
    bounds: tuple[int, int],
    mode: str,
) -> dict[str, Any]:
    """A Home Assistant ``number`` component (abbreviated keys) in whole steps from
    ``bounds[0]`` to ``bounds[1]``: the intensity and zone controls."""
    return {
        "p": "number", "name": name, "ic": icon,
        "cmd_t": command_topic, "val_tpl": value_template,
        "min": bounds[0], "max": bounds[1], "step": 1, "mode": mode,
    }


def discovery_config(
    view: DeviceView, caps: DeviceCaps, topics: Topics, *, version: str = __version__
) -> dict[str, Any]:
    """The device-based discovery payload of one massager."""
    tid = topic_id(view.device_id)
    uid = topics.object_id(tid)

    def cmd(field: str) -> str:
        return topics.set(tid, field)

    cmps: dict[str, dict[str, Any]] = {
        "power": {
            "p": "switch", "name": "Power", "ic": "mdi:foot-print",
            "cmd_t": cmd("power"), "val_tpl": ON_OFF_POWER, "pl_on": "ON", "pl_off": "OFF",
        },
        "stop": {
            "p": "button", "name": "Stop", "ic": "mdi:stop-circle",
            "cmd_t": cmd("stop"), "pl_prs": "PRESS",
        },
        "temperature": {
            "p": "sensor", "name": "Temperature", "dev_cla": "temperature",
            "unit_of_meas": "°C", "stat_cla": "measurement",
            "val_tpl": "{{ value_json.temperature }}",
        },
        "time_left": {
            "p": "sensor", "name": "Time left", "dev_cla": "duration", "unit_of_meas": "s",
            "val_tpl": "{{ value_json.time_left_s }}",
        },
        "link": {
            "p": "binary_sensor", "name": "Link", "dev_cla": "connectivity",
            "ent_cat": "diagnostic", "val_tpl": ON_OFF_LINK,
        },
        "last_refusal": {
            "p": "sensor", "name": "Last refusal", "ic": "mdi:alert-circle-outline",
            "ent_cat": "diagnostic", "val_tpl": REFUSAL,
        },
    }
    if caps.intensity_max > caps.intensity_min:
        # A massager with one level (or capped to one) has nothing to set: HA's number
        # needs min < max, so it gets no intensity control at all.
        cmps["intensity"] = _number(
            "Intensity", "mdi:gauge", cmd("intensity"), "{{ value_json.intensity }}",
            (caps.intensity_min, caps.intensity_max), "slider",
        )
    if caps.modes:
        cmps["mode"] = _select(
            "Mode", "mdi:format-list-bulleted", cmd("mode"), list(caps.modes),
            "{{ value_json.mode }}",
        )
    if caps.heat_levels:
        cmps["heat"] = _select(
            "Heat", "mdi:heat-wave", cmd("heat"), heat_options(caps), HEAT_OPTION
        )
        cmps["heating"] = {
            "p": "binary_sensor", "name": "Heating", "dev_cla": "heat",
            "val_tpl": ON_OFF_HEATING,
        }
    if caps.zone_min is not None and caps.zone_max is not None and caps.zone_max > caps.zone_min:
        cmps["zone"] = _number(
            "Zone", "mdi:target", cmd("zone"), "{{ value_json.zone }}",
            (caps.zone_min, caps.zone_max), "box",
        )
    if caps.programs:
        cmps["program"] = _select(
            "Program", "mdi:playlist-play", cmd("selected_program"), list(caps.programs),
            "{{ value_json.selected_program }}",
        )
        cmps["start_program"] = {
            "p": "button", "name": "Start program", "ic": "mdi:play-circle",
            "cmd_t": cmd("start"), "pl_prs": "PRESS",
        }
    for key, comp in cmps.items():
        comp["uniq_id"] = f"{uid}_{key}"
    device: dict[str, Any] = {
        "ids": [uid],
        "name": view.name,
        "mf": "footctl",
        "mdl": caps.profile_name or view.profile,
        "mdl_id": view.profile,
        "sw": version,
    }
    if _MAC.match(view.address) and not view.simulated:
        device["cns"] = [["bluetooth", view.address.lower()]]
    return {
        "dev": device,
        "o": {"name": ORIGIN_NAME, "sw": version},
        "avty": [{"t": topics.bridge_state}, {"t": topics.availability(tid)}],
        "avty_mode": "all",
        "stat_t": topics.state(tid),
        "qos": 1,
        "cmps": cmps,
    }


def is_ours(config: dict[str, Any], topics: Topics) -> bool:
    """True if a retained discovery config was published by this host's bridge (its
    availability names our bridge topic): only those may be removed by us."""
    avty = config.get("avty", config.get("availability"))
    if not isinstance(avty, list):
        return False
    return any(
        isinstance(a, dict) and a.get("t", a.get("topic")) == topics.bridge_state for a in avty
    )
