"""Control-plane benchmarks, each a pair measured side by side in one run:

* ``client_status``: ``footctl status`` answered by a running daemon vs ``python -c pass``
  (wall time of a whole process, interleaved runs);
* ``help``: ``footctl --help`` vs ``python -c pass``;
* ``set_via_socket``: a confirmed one-level ``set`` through an owner's control socket
  vs a raw write/notify round trip on the same virtual link (median, p99);
* ``set_16_vs_1``: the same ``set`` with 16 massagers held vs 1 (p99);
* ``daemon_idle``: the daemon's CPU share and RSS over an idle period, with 1 and 16
  virtual massagers (Bumble in the process), and with one real-radio massager
  (configured, out of reach: no Bumble loaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from footctl.config import Config
from footctl.control.owner import DeviceSpec, Owner
from footctl.device import codec
from footctl.device.profile.loader import find_profiles
from footctl.device.transport.ble import Radio
from footctl.state import Command
from footctl.virtual import radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.peripheral import VirtualMassager

ROOT = Path(__file__).resolve().parents[1]
FOOTCTL = [sys.executable, "-m", "footctl.cli"]
SCRIPT = Path(sys.executable).parent / "footctl"


def stats(samples: list[float]) -> dict[str, float]:
    """Median, p90 and p99 (ms), and the count."""
    s = sorted(samples)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))], 3)

    return {"median": round(statistics.median(s), 3), "p90": q(0.9), "p99": q(0.99), "n": len(s)}


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FOOTCTL_RUNTIME_DIR=str(tmp / "run"), FOOTCTL_DATA_DIR=str(tmp / "data"),
        FOOTCTL_STATE_DIR=str(tmp / "state"), FOOTCTL_CONFIG=str(tmp / "config.toml"),
    )
    return env


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return (time.perf_counter() - t0) * 1e3


def _start_daemon(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*FOOTCTL, *args, "daemon"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for _ in range(20):
        line = proc.stderr.readline()
        if "holding" in line:
            return proc
    proc.kill()
    raise RuntimeError(f"daemon did not start: {line}")


def bench_processes(rounds: int) -> dict[str, Any]:
    """``footctl status`` (daemon running) and ``--help`` vs ``python -c pass``."""
    tmp = Path(tempfile.mkdtemp(prefix="fb-"))
    env = _env(tmp)
    daemon = _start_daemon(env, "--simulate", "shiatsu-aa55")
    try:
        script = [str(SCRIPT)] if SCRIPT.exists() else FOOTCTL
        base, status, helps = [], [], []
        for _ in range(3):  # warm the page cache
            _wall([sys.executable, "-c", "pass"], env)
            _wall([*script, "status"], env)
        for _ in range(rounds):
            base.append(_wall([sys.executable, "-c", "pass"], env))
            status.append(_wall([*script, "status"], env))
            helps.append(_wall([*script, "--help"], env))
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)
    b = statistics.median(base)
    return {
        "python_c_pass_ms": stats(base),
        "client_status_ms": stats(status),
        "help_ms": stats(helps),
        "ratio_status_to_python": round(statistics.median(status) / b, 2),
        "ratio_help_to_python": round(statistics.median(helps) / b, 2),
        "command": " ".join(Path(c).name for c in script),
    }


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: dict[str, Any]) -> dict[str, Any]:
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    reply: dict[str, Any] = json.loads(await reader.readline())
    return reply


# The client of the socket benchmark: its own process (as the CLI, the TUI and the
# MQTT bridge are), a blocking socket; for each line on stdin (a device name and a
# level) one confirmed set, its latency in ms on stdout, then the perf_counter times
# (CLOCK_MONOTONIC, the owner's clock too) it started, had written the request, had
# read the reply line and had parsed it, and the reply's size (bench/set_breakdown.py
# reads those).
CLIENT = r"""
import json, socket, sys, time
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
stream = sock.makefile("rb")
for line in sys.stdin:
    name, level = line.split()
    t0 = time.perf_counter()
    sock.sendall(json.dumps({"v": 1, "kind": "set", "device": name,
                             "intensity": int(level)}).encode() + b"\n")
    sent = time.perf_counter()
    raw = stream.readline()
    read = time.perf_counter()
    reply = json.loads(raw)
    end = time.perf_counter()
    assert reply["ok"], reply
    print((end - t0) * 1e3, t0, sent, read, end, len(raw), flush=True)
"""


async def _set_in_process(client: asyncio.subprocess.Process, name: str, level: int) -> float:
    assert client.stdin is not None
    assert client.stdout is not None
    client.stdin.write(f"{name} {level}\n".encode())
    await client.stdin.drain()
    line = await client.stdout.readline()
    if not line:
        raise RuntimeError("the benchmark client died")
    return float(line.split()[0])


async def _set_on_loop(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str, level: int
) -> float:
    t0 = time.perf_counter()
    reply = await _ask(reader, writer, {"kind": "set", "device": name, "intensity": level})
    ms = (time.perf_counter() - t0) * 1e3
    if not reply["ok"]:
        raise RuntimeError(reply)
    return ms


async def _set_latencies(
    count: int, samples: int, *, process: bool = True
) -> dict[str, list[float]]:
    """Confirmed one-level sets through the socket on ``count`` massagers, sent by a
    client process (``process``) or a client on the owner's own event loop, and raw
    write/notify round trips on the same link in this process, interleaved one for
    one."""
    profile = find_profiles()["shiatsu-aa55"]
    tmp = Path(tempfile.mkdtemp(prefix="fb-"))
    world = VirtualWorld()
    massagers = [await VirtualMassager.create(world, profile) for _ in range(count)]
    vradio = await radio_for_world(world)
    radio = Radio("virtual", vradio.scanner_backend, vradio.client_backend)
    # The ramp (one level per 10 s) is a safety rule, not latency: off here.
    config = Config.model_validate({"caps": {"intensity_step_seconds": 0}})
    specs = [(DeviceSpec(profile, m.address, f"m{i}", simulated=True), radio)
             for i, m in enumerate(massagers)]
    owner = Owner(config, specs, scan_timeout=5.0)
    via: list[float] = []
    raw: list[float] = []
    try:
        await owner.open()
        server = await owner.serve(tmp / "o.sock")
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, str(server.path),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert client.stdin is not None
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        low = profile.capabilities.intensity.min
        frame = codec.encode(profile, Command("query"))
        for i in range(samples):
            held = owner.held[i % count]
            level = low + 1 + (i // count) % 2  # one level up or down each time
            if process:
                via.append(await _set_in_process(client, held.name, level))
            else:
                via.append(await _set_on_loop(reader, writer, held.name, level))
            session = held.session
            link = session._link
            assert link is not None
            before = session.state.reports
            t0 = time.perf_counter()
            await link.write(frame)
            await session._wait_report(before, 5.0)
            raw.append((time.perf_counter() - t0) * 1e3)
        writer.close()
        client.stdin.close()
        await client.wait()
    finally:
        await owner.close()
        await vradio.close()
        for m in massagers:
            await m.close()
        await world.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"set_via_socket_ms": via, "raw_round_trip_ms": raw}


# The set benchmarks run in this many alternating blocks (1 massager, 16, 1 with the
# client on the owner's loop, again...), so load on a shared machine falls on all alike.
BLOCKS = 3

SHAPES: dict[str, tuple[int, bool]] = {  # name: (massagers held, client in its own process)
    "one": (1, True),
    "sixteen": (16, True),
    "loop": (1, False),
}

# What each figure of bench_sets() measures, written into the JSON beside the figures.
SET_DEFINITIONS: dict[str, str] = {
    "set_via_socket_ms": (
        "wall time, in a client process of its own (a blocking Unix socket, as the CLI), "
        "of one confirmed one-level set (intensity up or down by one, no ramp): the request "
        "line written, read by the owner's control socket, validated at the edge "
        "(pydantic, strict), Owner.request, the SafetyGovernor, the DeviceSession, the "
        "codec, the write on the virtual (Bumble) link, the massager's notification, "
        "the state confirmed, the view published, the reply line read and parsed by the "
        "client"
    ),
    "raw_round_trip_ms": (
        "wall time, in the owner's process, of a query frame written on the same "
        "session's link and the next notification received by that session (the "
        "virtual massager answers every command with one); one after every set, "
        "alternated one for one on the same link"
    ),
    "ratio_set_to_raw_median": (
        "one_massager: median of set_via_socket_ms / median of raw_round_trip_ms"
    ),
    "ratio_set_to_raw_p99": "one_massager: p99 of set_via_socket_ms / p99 of raw_round_trip_ms",
    "ratio_set_to_raw_median_client_on_owner_loop": (
        "as ratio_set_to_raw_median, with the client on the owner's own event loop "
        "(no second process: the cost of the process hop is the difference)"
    ),
    "ratio_p99_16_to_1": (
        "p99 of set_via_socket_ms with 16 massagers held (sets spread over them) / "
        "p99 with 1"
    ),
}


async def bench_sets(samples: int, shapes: tuple[str, ...] = tuple(SHAPES)) -> dict[str, Any]:
    """``set`` through the socket vs raw, with 1 and with 16 massagers (``shapes``:
    which of :data:`SHAPES`; ``samples`` per shape, in :data:`BLOCKS` blocks)."""
    runs: dict[str, dict[str, list[float]]] = {}
    per_block = max(1, samples // BLOCKS)
    for _ in range(BLOCKS):
        for name in shapes:
            count, process = SHAPES[name]
            got = await _set_latencies(count, per_block, process=process)
            into = runs.setdefault(name, {"set_via_socket_ms": [], "raw_round_trip_ms": []})
            for key, values in got.items():
                into[key].extend(values)
    figures = {n: {k: stats(v) for k, v in runs[n].items()} for n in shapes}
    out: dict[str, Any] = {"samples_per_shape": samples}
    one, sixteen, loop = (figures.get(n) for n in ("one", "sixteen", "loop"))
    if one is not None:
        out["one_massager"] = one
        out["ratio_set_to_raw_median"] = round(
            one["set_via_socket_ms"]["median"] / one["raw_round_trip_ms"]["median"], 2)
        out["ratio_set_to_raw_p99"] = round(
            one["set_via_socket_ms"]["p99"] / one["raw_round_trip_ms"]["p99"], 2)
    if sixteen is not None:
        out["sixteen_massagers"] = sixteen
    if loop is not None:
        out["one_massager_client_on_owner_loop"] = loop
        out["ratio_set_to_raw_median_client_on_owner_loop"] = round(
            loop["set_via_socket_ms"]["median"] / loop["raw_round_trip_ms"]["median"], 2)
    if one is not None and sixteen is not None:
        out["ratio_p99_16_to_1"] = round(
            sixteen["set_via_socket_ms"]["p99"] / one["set_via_socket_ms"]["p99"], 2)
    out["definitions"] = {
        k: v for k, v in SET_DEFINITIONS.items() if k in out or k.endswith("_ms")
    }
    return out


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def bench_idle(seconds: float) -> dict[str, Any]:
    """Three daemons side by side, idle for ``seconds``: CPU share and RSS."""
    shapes = {
        "virtual_1": ["--simulate", "shiatsu-aa55"],
        "virtual_16": ["--simulate", "shiatsu-aa55*16"],
        "real_radio_1": [],
    }
    tmps: list[Path] = []
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, args in shapes.items():
            tmp = Path(tempfile.mkdtemp(prefix="fb-"))
            tmps.append(tmp)
            env = _env(tmp)
            if not args:  # a configured massager out of reach: the Bluetooth path
                (tmp / "config.toml").write_text(
                    '[[devices]]\naddress = "F0:F0:00:00:00:01"\nprofile = "shiatsu-aa55"\n')
            procs[name] = _start_daemon(env, *args)
        time.sleep(2.0)  # settle after start (connects, first reports)
        start = {n: (_cpu_s(p.pid), time.monotonic()) for n, p in procs.items()}
        time.sleep(seconds)
        out: dict[str, Any] = {}
        for name, proc in procs.items():
            cpu0, t0 = start[name]
            share = (_cpu_s(proc.pid) - cpu0) / (time.monotonic() - t0) * 100
            modules = "bumble loaded" if name != "real_radio_1" else "no bumble"
            out[name] = {"cpu_percent": round(share, 2), "rss_mib": _rss_mib(proc.pid),
                         "note": modules}
        out["seconds"] = seconds
        return out
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)


async def run_all(rounds: int, samples: int, idle_s: float) -> dict[str, Any]:
    """Every control-plane benchmark."""
    return {
        "processes": await asyncio.to_thread(bench_processes, rounds),
        "sets": await bench_sets(samples),
        "daemon_idle": await asyncio.to_thread(bench_idle, idle_s),
    }


if __name__ == "__main__":
    import argparse
    import logging

    logging.basicConfig(level=logging.ERROR)  # as bench/run.py
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument(
        "--only-sets", nargs="*", choices=tuple(SHAPES), default=None, metavar="SHAPE",
        help="only the set benchmarks, of these shapes (none named: all three); "
        "'--only-sets one' is the set-vs-raw figure alone",
    )
    a = parser.parse_args()
    if a.only_sets is not None:
        result = asyncio.run(bench_sets(a.samples, tuple(a.only_sets) or tuple(SHAPES)))
    else:
        result = asyncio.run(run_all(a.rounds, a.samples, a.idle_seconds))
    print(json.dumps(result, indent=2))
