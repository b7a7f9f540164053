"""Command payloads (validated once, strictly) and broker settings."""

from __future__ import annotations

import pytest

from footctl.config import MqttConfig
from footctl.errors import ConfigError
from footctl.mqtt.payloads import (
    MAX_PAYLOAD_BYTES,
    Apply,
    MalformedCommand,
    Run,
    Select,
    Stop,
    parse_json_command,
    parse_raw_command,
)
from footctl.mqtt.settings import PASSWORD_ENV, URL_ENV, parse_broker_url, resolve


@pytest.mark.parametrize(
    ("payload", "command"),
    [
        (b'{"intensity": 3, "heat": 1}', Apply(intensity=3, heat=1)),
        (b'{"mode": "rolling", "zone": 2}', Apply(mode="rolling", zone=2)),
        (b'{"power": true}', Apply()),
        (b'{"power": true, "intensity": 2}', Apply(intensity=2)),
        (b'{"power": false}', Stop()),
        (b'{"stop": true}', Stop()),
        (b'{"program": "wind-down"}', Run("wind-down")),
        (b'{"start": true}', Run(None)),
        (b'{"selected_program": "quick-relax"}', Select("quick-relax")),
        (b' {"heat": 0} ', Apply(heat=0)),
    ],
)
def test_json_commands(payload: bytes, command: object) -> None:
    assert parse_json_command(payload) == command


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"", "JSON object"),
        (b"not json", "JSON object"),
        (b"[1, 2]", "JSON object"),
        (b"3", "JSON object"),
        (b'{"intensity": 3', "Invalid JSON"),
        (b'{"intensity": NaN}', "intensity"),
        (b'{"intensity": Infinity}', "intensity"),
        (b'{"intensity": 3.0}', "intensity"),
        (b'{"intensity": "3"}', "intensity"),
        (b'{"intensity": true}', "intensity"),
        (b'{"intensity": -1}', "intensity"),
        (b'{"intensity": 256}', "intensity"),
        (b'{"heat": 16}', "heat"),
        (b'{"mode": ""}', "mode"),
        (b'{"mode": 1}', "mode"),
        (b'{"volume": 3}', "volume"),
        (b'{"stop": false}', "stop"),
        (b'{"stop": true, "intensity": 3}', "one command at a time"),
        (b'{"program": "wind-down", "heat": 1}', "one command at a time"),
        (b'{"power": false, "heat": 1}', "one command at a time"),
        (b"{}", "nothing to do"),
        (b'{"power": null}', "nothing to do"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"mode": "' + b"k" * MAX_PAYLOAD_BYTES + b'"}', "too large"),
    ],
)
def test_malformed_json_commands(payload: bytes, why: str) -> None:
    with pytest.raises(MalformedCommand, match=why):
        parse_json_command(payload)


@pytest.mark.parametrize(
    ("field", "payload", "command"),
    [
        ("intensity", b"3", Apply(intensity=3)),
        ("zone", b"0", Apply(zone=0)),
        ("heat", b"off", Apply(heat=0)),
        ("heat", b"2", Apply(heat=2)),
        ("mode", b"kneading", Apply(mode="kneading")),
        ("power", b"ON", Apply()),
        ("power", b"OFF", Stop()),
        ("stop", b"PRESS", Stop()),
        ("stop", b"", Stop()),
        ("start", b"PRESS", Run(None)),
        ("program", b"wind-down", Run("wind-down")),
        ("selected_program", b"no-heat", Select("no-heat")),
    ],
)
def test_raw_commands(field: str, payload: bytes, command: object) -> None:
    assert parse_raw_command(field, payload) == command


@pytest.mark.parametrize(
    ("field", "payload", "why"),
    [
        ("intensity", b"3.0", "whole number"),
        ("intensity", b"nan", "whole number"),
        ("intensity", b"-1", "whole number"),
        ("intensity", b"1e3", "whole number"),
        ("intensity", b"999", "less than or equal"),
        ("heat", b"hot", "level or 'off'"),
        ("power", b"maybe", "ON or OFF"),
        ("stop", b"later", "PRESS"),
        ("volume", b"3", "unknown field"),
        ("mode", b"", "mode"),
        ("mode", b"\xc3", "UTF-8"),
        ("mode", b"x" * (MAX_PAYLOAD_BYTES + 1), "too large"),
    ],
)
def test_malformed_raw_commands(field: str, payload: bytes, why: str) -> None:
    with pytest.raises(MalformedCommand, match=why):
        parse_raw_command(field, payload)


def test_merging_keeps_earlier_fields_under_later_ones() -> None:
    merged = Apply(intensity=3, heat=1).merged(Apply(intensity=2, mode="rolling"))
    assert merged == Apply(intensity=2, heat=1, mode="rolling")


# --- settings ---------------------------------------------------------------------------


def test_broker_urls() -> None:
    url = parse_broker_url("mqtt://home@broker.lan")
    assert (url.host, url.port, url.tls, url.username) == ("broker.lan", 1883, False, "home")
    url = parse_broker_url("mqtts://127.0.0.1:9999")
    assert (url.host, url.port, url.tls, url.username) == ("127.0.0.1", 9999, True, None)
    assert parse_broker_url("mqtts://h").port == 8883
    for bad in ("http://h", "mqtt://", "mqtt://h:99999", "mqtt://u:secret@h", "mqtt://h/x"):
        with pytest.raises(ConfigError) as info:
            parse_broker_url(bad)
        assert "secret" not in str(info.value)


def test_flag_over_environment_over_file() -> None:
    section = MqttConfig(url="mqtt://file-host", username="u", password="from-file",
                         host_id="hostA")
    assert resolve(None, None, {}) is None
    s = resolve(section, None, {})
    assert s is not None
    assert (s.host, s.username, s.password, s.client_id) == (
        "file-host", "u", "from-file", "footctl-hostA")
    env = {URL_ENV: "mqtt://env-user@env-host:1999", PASSWORD_ENV: "from-env"}
    s = resolve(section, None, env)
    assert s is not None
    assert (s.host, s.port, s.username, s.password) == ("env-host", 1999, "env-user", "from-env")
    s = resolve(section, "mqtts://flag-host", env)
    assert s is not None
    assert (s.host, s.port, s.tls) == ("flag-host", 8883, True)


def test_password_is_never_shown() -> None:
    s = resolve(MqttConfig(url="mqtt://u@h", password="hunter2"), None, {})
    assert s is not None
    assert "hunter2" not in repr(s)
    assert "hunter2" not in s.display()
    assert "hunter2" not in repr(MqttConfig(url="mqtt://u@h", password="hunter2"))
    with pytest.raises(ConfigError, match="without a user"):
        resolve(MqttConfig(url="mqtt://h"), None, {PASSWORD_ENV: "hunter2"})


@pytest.mark.parametrize("source", ["cli", "tui", "mqtt", "schedule", "program", "device"])
def test_the_state_payload_names_the_source_of_the_running_session(source: str) -> None:
    """``device``: the massager's own button started the session (before, a view could
    not say so, and the hub was told ``cli``)."""
    import json

    from footctl.control.api import DeviceView, Settings
    from footctl.mqtt.payloads import encode, state_payload

    view = DeviceView.model_validate_json(json.dumps({
        "device_id": "F0F000000001", "address": "F0:F0:00:00:00:01", "name": "bedroom",
        "profile": "shiatsu-aa55", "link": "connected", "session_source": source,
        "reported": Settings(power=True, intensity=1).model_dump(),
    }))
    payload = state_payload(view)
    assert payload["source"] == source
    assert json.loads(encode(payload))["source"] == source
