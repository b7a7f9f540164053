"""The bridge from the command line: ``footctl mqtt check`` and ``footctl daemon --mqtt``
in their own processes, against a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from cli_rig import footctl
from footctl.mqtt.topics import Topics
from mqtt_broker import Broker, broker, running  # noqa: F401 - fixtures
from mqtt_rig import Hub, Msg

pytestmark = pytest.mark.e2e


def test_mqtt_check_says_whether_the_broker_is_reachable_and_the_credentials_work(
    tmp_path: Path, broker: Broker  # noqa: F811 - the fixture above
) -> None:
    ok = footctl("--json", "mqtt", "check", "--mqtt", broker.url)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    with running(tmp_path / "auth", users={"home": "pw-good"}) as auth:
        url = f"mqtt://home@127.0.0.1:{auth.port}"
        bad = footctl("mqtt", "check", env={"FOOTCTL_MQTT_URL": url,
                                            "FOOTCTL_MQTT_PASSWORD": "pw-bad"})
        assert bad.returncode == 2
        assert "refused the credentials" in bad.stderr and "pw-bad" not in bad.stderr
        port = auth.port
    down = footctl("mqtt", "check", "--mqtt", f"mqtt://127.0.0.1:{port}")
    assert down.returncode == 3 and "not reachable" in down.stderr
    nothing = footctl("mqtt", "check")
    assert nothing.returncode == 2 and "no MQTT broker configured" in nothing.stderr


async def test_the_daemon_bridges_its_massagers(
    broker: Broker, tmp_path: Path  # noqa: F811 - the fixture above
) -> None:
    base = "cli1"
    config = tmp_path / "daemon.toml"
    config.write_text(f'[caps]\nintensity_step_seconds = 0\n[mqtt]\nbase_topic = "{base}"\n'
                      f'discovery_prefix = "hacli1"\nhost_id = "clihost"\n')
    topics = Topics(base, "clihost", "hacli1")
    async with Hub(broker, [f"{base}/#", "hacli1/#"]) as hub:
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "footctl.cli", "--config", str(config), "daemon",
            "--simulate", "shiatsu-aa55", "--mqtt", broker.url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            await hub.wait(topics.bridge_state, lambda m: m.payload == b"online", timeout=30)
            state = await _any_state(hub, base)
            tid = state.topic.split("/")[1]
            await hub.wait(topics.discovery(tid))
            mark = hub.mark()
            await hub.publish(topics.set(tid), '{"intensity": 2}')
            on = await hub.wait(topics.state(tid),
                                lambda m: json.loads(m.payload)["intensity"] == 2, since=mark)
            assert json.loads(on.payload)["power"] is True
        finally:
            daemon.send_signal(signal.SIGTERM)
            _out, err = await asyncio.wait_for(daemon.communicate(), 30)
        assert daemon.returncode == 128 + signal.SIGTERM, err.decode()
        await hub.wait(topics.bridge_state, lambda m: m.payload == b"offline")
        await hub.wait(topics.availability(tid), lambda m: m.payload == b"offline")
        off = hub.on(topics.state(tid))[-1]
        assert json.loads(off.payload)["power"] is False


async def _any_state(hub: Hub, base: str) -> Msg:
    """The first state message of any massager under ``base``."""
    async with asyncio.timeout(30):
        while True:
            for m in hub.messages:
                parts = m.topic.split("/")
                if len(parts) == 3 and parts[0] == base and parts[2] == "state" and (
                    parts[1] != "bridge"
                ):
                    return m
            await asyncio.sleep(0.02)
