"""MQTT bridge latency: a ``set`` published by a plain MQTT client -> the bridge -> the
owner and governor -> the write to a virtual massager -> its new state published by
the bridge -> received by the client; against a plain publish/subscribe round trip
(the same client publishes to a topic it subscribes to) on the same broker, measured
interleaved in the same run (one round trip right before each command).

The client runs in its own process, as Home Assistant would; the bridge, the owner
and the virtual massagers share the daemon's event loop. The bridge coalesces state
to a burst of 5 then 5 per second per massager; the commands go round-robin over
several massagers, each paced below that rate, so what is measured is the path, not
the rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from footctl.config import CapsConfig, Config
from footctl.control.owner import DeviceSpec, Owner
from footctl.device.profile.loader import find_profiles
from footctl.device.transport.ble import Radio
from footctl.mqtt.bridge import MqttBridge
from footctl.mqtt.settings import BrokerSettings
from footctl.mqtt.topics import Topics, topic_id
from footctl.virtual import radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.peripheral import VirtualMassager

MASSAGERS = 4
# One command every PACE_S, round-robin: each massager gets one every 0.6 s (two state
# messages each: what was written, then the device's confirmation), within its budget.
PACE_S = 0.15
PROFILE = "shiatsu-aa55"
_THIS = str(Path(__file__).resolve())


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p90 and p99 (milliseconds) and the count."""
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))], 4)

    return {"median": round(statistics.median(ordered), 4), "p90": pct(0.9), "p99": pct(0.99),
            "n": len(ordered)}


def mosquitto() -> str | None:
    """The mosquitto binary, if installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


@contextlib.contextmanager
def broker(binary: str) -> Any:
    """A throwaway mosquitto on a free loopback port; yields the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory() as d:
        conf = Path(d) / "mosquitto.conf"
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 f"log_dest file {d}/mosquitto.log"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            yield port
        finally:
            proc.terminate()
            proc.wait(5)


async def bench_mqtt(commands: int) -> dict[str, Any]:
    """p99 of set -> state published over ``commands`` commands, and the round trip."""
    binary = mosquitto()
    if binary is None:
        return {"skipped": "mosquitto is not installed (scripts/test installs it)"}
    profile = find_profiles()[PROFILE]
    with broker(binary) as port:
        world = VirtualWorld()
        massagers = [await VirtualMassager.create(world, profile) for _ in range(MASSAGERS)]
        vradio = await radio_for_world(world)
        radio = Radio("virtual", vradio.scanner_backend, vradio.client_backend)
        specs = [DeviceSpec(profile, m.address, f"m{i}", simulated=True)
                 for i, m in enumerate(massagers)]
        # The ramp (one level per 10 s) is a safety rule, not latency: off here.
        config = Config(caps=CapsConfig(intensity_step_seconds=0, cooldown_minutes=0))
        owner = Owner(config, [(s, radio) for s in specs])
        await owner.open()
        bridge = MqttBridge(owner, BrokerSettings("127.0.0.1", port, base_topic="bench",
                                                  discovery_prefix="habench", host_id="bench"))
        bridge_task = asyncio.create_task(bridge.run())
        try:
            await asyncio.wait_for(bridge.connected.wait(), 10)
            # The client measures from its own process, as a hub would: the bridge has
            # the daemon's event loop to itself, and the round trip is timed by the
            # same client on the same broker.
            tids = [topic_id(m.address) for m in massagers]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, _THIS, "client", str(port),
                json.dumps(tids), str(commands), stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"the bench client failed ({proc.returncode})")
            result: dict[str, Any] = json.loads(out)
            return result
        finally:
            bridge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bridge_task
            await owner.close()
            await vradio.close()
            for m in massagers:
                await m.close()
            await world.close()


async def _measure(port: int, topics: Topics, tids: list[str], commands: int) -> dict[str, Any]:
    """The hub's side (run in its own process): round trips and set -> state."""
    loop = asyncio.get_running_loop()
    waiting: dict[str, tuple[object, asyncio.Future[float]]] = {}
    rt_topic = "bench/roundtrip"

    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe([(rt_topic, 0), *((topics.state(t), 0) for t in tids)])

        async def read() -> None:
            async for m in client.messages:
                now = time.perf_counter()
                key = m.topic.value
                entry = waiting.get(key)
                if entry is None:
                    continue
                want, fut = entry
                payload = m.payload if isinstance(m.payload, bytes) else b""
                got: object = payload
                if key != rt_topic:
                    got = json.loads(payload).get("intensity")
                if got == want and not fut.done():
                    fut.set_result(now)

        async def until(topic: str, want: object, send: Any) -> float:
            fut: asyncio.Future[float] = loop.create_future()
            waiting[topic] = (want, fut)
            t0 = time.perf_counter()
            await send()
            t1 = await asyncio.wait_for(fut, 10)
            del waiting[topic]
            return (t1 - t0) * 1e3

        reader = asyncio.create_task(read())
        try:
            levels = dict.fromkeys(tids, 2)
            for tid in tids:
                await until(topics.state(tid), 2, lambda t=tid: client.publish(
                    topics.set(t), '{"intensity": 2}'))
            await asyncio.sleep(1.0)
            rt_ms: list[float] = []
            set_ms: list[float] = []
            for i in range(commands):
                payload = str(i).encode()
                rt_ms.append(await until(rt_topic, payload, lambda p=payload: client.publish(
                    rt_topic, p)))
                tid = tids[i % len(tids)]
                levels[tid] = 3 if levels[tid] == 2 else 2
                set_ms.append(await until(topics.state(tid), levels[tid],
                                          lambda t=tid, n=levels[tid]: client.publish(
                                              topics.set(t, "intensity"), str(n))))
                await asyncio.sleep(PACE_S)
            for tid in tids:
                await client.publish(topics.set(tid, "stop"), "PRESS")
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader
    s, r = summary(set_ms), summary(rt_ms)
    return {
        "set_to_state_ms": s,
        "pubsub_round_trip_ms": r,
        "ratio_p99": round(s["p99"] / r["p99"], 2),
        "ratio_median": round(s["median"] / r["median"], 2),
        "massagers": len(tids),
        "profile": PROFILE,
        "pace_s": PACE_S,
    }


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "client":
    _result = asyncio.run(_measure(int(sys.argv[2]), Topics("bench", "bench", "habench"),
                                   json.loads(sys.argv[3]), int(sys.argv[4])))
    print(json.dumps(_result))
