"""footctl benchmarks: codec speed, the session path over the virtual link, and the
control plane (bench/control.py: client startup, sets through an owner's socket, many
massagers, the idle daemon), and the MQTT bridge (bench/mqtt_bridge.py: set -> state
published vs a pub/sub round trip on the same broker).

Every number is a median (with p90) of repeated measurements taken in one run, and
the interesting ones are ratios of two paths measured side by side (session `set`
vs a raw bleak write round trip), so a noisy shared machine shifts both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from footctl import codec
from footctl.profile.loader import find_profiles
from footctl.profile.schema import Profile
from footctl.safety.governor import Request, SafetyGovernor
from footctl.safety.limits import Caps, Limits
from footctl.session import DeviceSession
from footctl.state import Command, Report
from footctl.transport.ble import Radio
from footctl.virtual import radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.peripheral import VirtualMassager


def summary(samples: list[float]) -> dict[str, float]:
    """Median and p90 in microseconds or milliseconds as given."""
    ordered = sorted(samples)
    return {
        "median": round(statistics.median(ordered), 4),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 4),
        "n": len(ordered),
    }


def bench_codec(profile: Profile, rounds: int) -> dict[str, Any]:
    command = (
        Command("intensity", profile.capabilities.intensity.max)
        if profile.capabilities.command_style == "absolute"
        else Command("press_intensity_up")
    )
    status = codec.encode_status(profile, Report(running=True, intensity=2, heat=0,
                                                 mode=profile.capabilities.modes[0].name))
    enc: list[float] = []
    dec: list[float] = []
    batch = 200
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(batch):
            codec.encode(profile, command)
        t1 = time.perf_counter()
        for _ in range(batch):
            codec.decode_status(profile, status)
        t2 = time.perf_counter()
        enc.append((t1 - t0) / batch * 1e6)
        dec.append((t2 - t1) / batch * 1e6)
    return {"encode_us": summary(enc), "decode_status_us": summary(dec)}


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return (time.perf_counter() - t0) * 1e3


async def bench_link(profile: Profile, rounds: int) -> dict[str, Any]:
    world = VirtualWorld()
    massager = await VirtualMassager.create(world, profile)
    vradio = await radio_for_world(world)
    radio = Radio("virtual link", vradio.scanner_backend, vradio.client_backend)
    connect_ms: list[float] = []
    set_ms: list[float] = []
    stop_ms: list[float] = []
    raw_ms: list[float] = []
    reconnect_ms: list[float] = []
    caps = profile.capabilities
    try:
        for i in range(rounds):
            session = DeviceSession(profile, radio)
            connect_ms.append(await timed(session.connect))
            # The ramp (10 s per level) is a safety rule, not protocol latency: off here.
            gov = SafetyGovernor(session, Limits.compute(profile, Caps(ramp_step_s=0.0)))
            level = caps.intensity.min + 1 + (i % 2)
            set_ms.append(await timed(lambda g=gov, n=level: g.submit(Request(intensity=n))))
            # Raw round trip on the same link, for the ratio.
            link = session._link
            assert link is not None
            frame = codec.encode(profile, Command("query"))
            # A raw round trip: one query frame written, the next notification received.
            async def round_trip(w=link.write, f=frame, s=session) -> None:
                before = s.state.reports
                await w(f)
                await s._wait_report(before, 5.0)

            raw_ms.append(await timed(round_trip))
            if i % 5 == 0:
                t0 = time.perf_counter()
                await massager.drop()
                await massager.restore()
                await session._wait_for(lambda s=session: s.connected, 10.0)
                reconnect_ms.append((time.perf_counter() - t0) * 1e3)
            stop_ms.append(await timed(gov.stop))
            await session.close()
    finally:
        await vradio.close()
        await massager.close()
        await world.close()
    set_median = statistics.median(set_ms)
    return {
        "connect_ms": summary(connect_ms),
        "set_confirmed_ms": summary(set_ms),
        "stop_confirmed_ms": summary(stop_ms),
        "raw_query_round_trip_ms": summary(raw_ms),
        "reconnect_after_drop_ms": summary(reconnect_ms),
        "ratio_set_to_raw_round_trip": round(set_median / statistics.median(raw_ms), 2),
    }


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench-results/bench.json")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--only", choices=("session", "control", "mqtt"), default=None,
                        help="run one family of benchmarks")
    parser.add_argument("--process-rounds", type=int, default=30,
                        help="runs of each process (status, --help, python -c pass)")
    parser.add_argument("--samples", type=int, default=300, help="sets through the socket")
    parser.add_argument("--idle-seconds", type=float, default=60.0,
                        help="how long the idle daemons are watched")
    parser.add_argument("--mqtt-commands", type=int, default=300,
                        help="MQTT set -> state published, this many commands (0: skip)")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "rounds": args.rounds,
        "profiles": {},
    }
    for pid, profile in sorted(find_profiles().items()):
        if args.only in ("control", "mqtt"):
            break
        entry = bench_codec(profile, args.rounds)
        entry.update(await bench_link(profile, args.rounds))
        results["profiles"][pid] = entry
        print(f"{pid}: {json.dumps(entry)}", file=sys.stderr)
    if args.only in (None, "control"):
        import control  # bench/control.py, beside this file

        results["control"] = await control.run_all(
            args.process_rounds, args.samples, args.idle_seconds
        )
        print(f"control: {json.dumps(results['control'])}", file=sys.stderr)
    if args.only in (None, "mqtt") and args.mqtt_commands > 0:
        from mqtt_bridge import bench_mqtt  # bench/mqtt_bridge.py, beside this file

        results["mqtt"] = await bench_mqtt(args.mqtt_commands)
        print(f"mqtt: {json.dumps(results['mqtt'])}", file=sys.stderr)
    results["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out = Path(args.out)
    await asyncio.to_thread(out.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(out.write_text, json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
