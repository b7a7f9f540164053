"""Home Assistant's MQTT discovery schema, as far as footctl's payloads use it.

Written from Home Assistant's own code (``homeassistant/components/mqtt/``:
``abbreviations.py``, ``schemas.py`` ``DEVICE_DISCOVERY_SCHEMA``, ``discovery.py``
``_merge_common_device_options``, and each platform's ``_PLATFORM_SCHEMA_BASE`` on top of
``MQTT_RW_SCHEMA`` / ``MQTT_RO_SCHEMA``) and its MQTT documentation: required keys,
types, value ranges, the device classes and units each platform accepts. A payload
that fails here would be dropped by Home Assistant with a warning in its log.
Templates are parsed and rendered with Jinja2, Home Assistant's template engine.
"""

from __future__ import annotations

import math
from typing import Any

import jinja2
import jinja2.sandbox

ABBREVIATIONS = {
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "avty_tpl": "availability_template", "cmd_t": "command_topic", "cmd_tpl": "command_template",
    "cmps": "components", "dev": "device", "dev_cla": "device_class", "en": "enabled_by_default",
    "ent_cat": "entity_category", "ic": "icon", "o": "origin", "ops": "options", "p": "platform",
    "pl_avail": "payload_available", "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off", "pl_on": "payload_on", "pl_prs": "payload_press",
    "stat_cla": "state_class", "stat_t": "state_topic", "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement", "val_tpl": "value_template", "t": "topic",
}
DEVICE_ABBREVIATIONS = {
    "ids": "identifiers", "cns": "connections", "mf": "manufacturer", "mdl": "model",
    "mdl_id": "model_id", "sw": "sw_version", "hw": "hw_version", "sn": "serial_number",
    "cu": "configuration_url", "sa": "suggested_area",
}
ORIGIN_ABBREVIATIONS = {"sw": "sw_version", "url": "support_url"}

# DEVICE_DISCOVERY_SCHEMA: MQTT_AVAILABILITY_SCHEMA plus these; no other keys.
DEVICE_LEVEL_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "payload_available", "payload_not_available", "device", "components", "origin",
    "state_topic", "command_topic", "qos", "encoding",
}
# schemas.SHARED_OPTIONS: inherited by every component unless it sets its own.
SHARED_OPTIONS = (
    "availability", "availability_mode", "availability_template", "availability_topic",
    "command_topic", "payload_available", "payload_not_available", "state_topic",
)
DEVICE_KEYS = set(DEVICE_ABBREVIATIONS.values()) | {"name", "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}

COMMON = {
    "platform", "unique_id", "name", "icon", "entity_category", "enabled_by_default",
    "availability", "availability_mode", "device", "origin", "qos", "encoding",
    "json_attributes_topic", "json_attributes_template", "object_id", "default_entity_id",
}
PLATFORMS: dict[str, dict[str, Any]] = {
    "switch": {"required": {"command_topic"}, "keys": {
        "command_topic", "state_topic", "value_template", "payload_on", "payload_off",
        "state_on", "state_off", "optimistic", "retain", "device_class"},
        "device_classes": {None, "outlet", "switch"}},
    "number": {"required": {"command_topic"}, "keys": {
        "command_topic", "command_template", "state_topic", "value_template", "min", "max",
        "step", "mode", "unit_of_measurement", "device_class", "optimistic", "retain",
        "payload_reset"}, "device_classes": None},
    "select": {"required": {"command_topic", "options"}, "keys": {
        "command_topic", "command_template", "state_topic", "value_template", "options",
        "optimistic", "retain"}, "device_classes": {None}},
    "button": {"required": {"command_topic"}, "keys": {
        "command_topic", "command_template", "payload_press", "retain", "device_class"},
        "device_classes": {None, "identify", "restart", "update"}},
    "sensor": {"required": {"state_topic"}, "keys": {
        "state_topic", "value_template", "device_class", "state_class", "unit_of_measurement",
        "expire_after", "force_update", "suggested_display_precision"},
        "device_classes": {None, "temperature", "duration", "signal_strength", "enum"}},
    "binary_sensor": {"required": {"state_topic"}, "keys": {
        "state_topic", "value_template", "device_class", "payload_on", "payload_off",
        "expire_after", "force_update", "off_delay"},
        "device_classes": {None, "connectivity", "heat", "running", "problem", "power"}},
}
UNITS = {"temperature": {"°C", "°F", "K"}, "duration": {"d", "h", "min", "s", "ms", "µs"},
         "signal_strength": {"dB", "dBm"}}
STATE_CLASSES = {None, "measurement", "total", "total_increasing"}
NUMERIC_SENSOR_CLASSES = {"temperature", "duration", "signal_strength"}
# Home Assistant's "None" payload resets a number, select or sensor to unknown.
PAYLOAD_NONE = "None"

_ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)


def _expand(data: dict[str, Any], table: dict[str, str]) -> dict[str, Any]:
    return {table.get(k, k): v for k, v in data.items()}


def _topic(value: object, *, wildcards: bool) -> None:
    assert isinstance(value, str) and value, f"bad topic {value!r}"
    assert "\0" not in value and len(value.encode()) <= 65535
    if not wildcards:
        assert "+" not in value and "#" not in value, f"wildcard in publish topic {value!r}"


def expand_device_discovery(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the device-level schema; return (device-level, {id: merged component})."""
    top = _expand(payload, ABBREVIATIONS)
    unknown = set(top) - DEVICE_LEVEL_KEYS
    assert not unknown, f"keys Home Assistant's device schema rejects: {unknown}"
    device = _expand(top["device"], DEVICE_ABBREVIATIONS)
    assert set(device) <= DEVICE_KEYS, set(device) - DEVICE_KEYS
    assert device.get("identifiers") or device.get("connections"), "device needs an identifier"
    assert all(isinstance(i, str) for i in device.get("identifiers", []))
    for conn in device.get("connections", []):
        assert isinstance(conn, list) and len(conn) == 2 and all(isinstance(c, str) for c in conn)
    origin = _expand(top["origin"], ORIGIN_ABBREVIATIONS)
    assert set(origin) <= ORIGIN_KEYS and isinstance(origin["name"], str) and origin["name"]
    assert str(origin.get("support_url", "https://x")).startswith(("http://", "https://"))
    avty = [_expand(a, ABBREVIATIONS) for a in top.get("availability", [])]
    for a in avty:
        assert set(a) <= {"topic", "payload_available", "payload_not_available",
                          "value_template"}, a
        _topic(a["topic"], wildcards=True)
    assert top.get("availability_mode", "latest") in {"all", "any", "latest"}
    assert top.get("qos", 0) in (0, 1, 2)
    if "state_topic" in top:
        _topic(top["state_topic"], wildcards=True)
    top["availability"], top["device"], top["origin"] = avty, device, origin
    comps: dict[str, dict[str, Any]] = {}
    assert isinstance(top["components"], dict) and top["components"]
    for cid, raw in top["components"].items():
        comp = _expand(raw, ABBREVIATIONS)
        for option in SHARED_OPTIONS:
            if option in top and option not in comp:
                comp[option] = top[option]
        comp["device"], comp["origin"] = device, origin
        comps[cid] = comp
    return top, comps


def check_component(cid: str, comp: dict[str, Any]) -> None:
    """One merged component against its platform's schema."""
    platform = comp.get("platform")
    assert platform in PLATFORMS, f"{cid}: unknown platform {platform!r}"
    rules = PLATFORMS[platform]
    assert isinstance(comp.get("unique_id"), str) and comp["unique_id"], f"{cid}: unique_id"
    missing = rules["required"] - set(comp)
    assert not missing, f"{cid}: missing {missing}"
    unknown = set(comp) - COMMON - rules["keys"] - set(SHARED_OPTIONS) - {"qos"}
    assert not unknown, f"{cid}: keys {platform} does not know: {unknown}"
    if "icon" in comp:
        assert ":" in comp["icon"], f"{cid}: icon must be prefix:name"
    assert comp.get("entity_category") in (None, "config", "diagnostic")
    if "command_topic" in comp:
        _topic(comp["command_topic"], wildcards=False)
    if "state_topic" in comp:
        _topic(comp["state_topic"], wildcards=True)
    classes = rules["device_classes"]
    if classes is not None:
        dc = comp.get("device_class")
        assert dc in classes, f"{cid}: device_class {dc}"
    if platform == "number":
        lo, hi = float(comp.get("min", 1)), float(comp.get("max", 100))
        assert lo < hi, f"{cid}: 'max' must be > 'min'"
        assert float(comp.get("step", 1)) >= 1e-3
        assert comp.get("mode", "auto") in {"auto", "box", "slider"}
    if platform == "select":
        ops = comp["options"]
        assert isinstance(ops, list) and ops and all(isinstance(o, str) for o in ops)
        assert len(set(ops)) == len(ops), f"{cid}: duplicate options"
    if platform == "sensor":
        dc = comp.get("device_class")
        assert comp.get("state_class") in STATE_CLASSES
        if dc in UNITS:
            assert comp.get("unit_of_measurement") in UNITS[dc], f"{cid}: unit for {dc}"
    if "value_template" in comp:
        _ENV.parse(comp["value_template"])  # raises on a template that does not parse


def render(comp: dict[str, Any], state: dict[str, Any]) -> str:
    """The component's value template applied to a state payload."""
    return str(_ENV.from_string(comp["value_template"]).render(value_json=state)).strip()


def check_rendered(cid: str, comp: dict[str, Any], value: str) -> None:
    """A rendered state is one Home Assistant accepts for the platform."""
    platform = comp["platform"]
    if platform in ("switch", "binary_sensor"):
        allowed = {comp.get("payload_on", "ON"), comp.get("payload_off", "OFF")}
        if platform == "switch":
            allowed = {comp.get("state_on", comp.get("payload_on", "ON")),
                       comp.get("state_off", comp.get("payload_off", "OFF"))}
        assert value in allowed, f"{cid}: {value!r} not in {allowed}"
    elif platform == "select":
        assert value in comp["options"] or value == PAYLOAD_NONE, f"{cid}: {value!r}"
    elif platform == "number":
        if value != PAYLOAD_NONE:
            number = float(value)
            assert math.isfinite(number)
            assert float(comp["min"]) <= number <= float(comp["max"]), f"{cid}: {number}"
    elif platform == "sensor":
        if comp.get("device_class") in NUMERIC_SENSOR_CLASSES and value != PAYLOAD_NONE:
            assert math.isfinite(float(value)), f"{cid}: {value!r} is not a number"
        assert len(value) <= 255
