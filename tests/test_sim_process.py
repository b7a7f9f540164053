"""``footctl sim`` as its own process: banner, control port, an app-side central over TCP."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner

from footctl.device.codec import decode_status, encode
from footctl.device.profile.schema import Profile
from footctl.state import Command
from footctl.virtual import radio_for_link
from footctl.virtual.peripheral import VirtualMassager
from footctl.virtual.sim import SimControl, SimRequestError, run_sim

BANNER = re.compile(
    r'^footctl sim: (?P<id>[a-z0-9_-]+) "(?P<name>[^"]+)" (?P<address>[0-9A-F:]{17}) '
    r"control (?P<control>127\.0\.0\.1:\d+) link (?P<link>127\.0\.0\.1:\d+)\n$"
)
START_TIMEOUT_S = 10.0


class Sim:
    """A running sim process and what its banner said."""

    def __init__(self, proc: subprocess.Popen[str], match: re.Match[str]) -> None:
        self.proc = proc
        self.match = match
        self.link = match["link"]
        self.control = SimControl(match["control"])

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=5)


def start_sim(profile_id: str, tmp_path: Path, *extra: str) -> Sim:
    proc = subprocess.Popen(
        [sys.executable, "-m", "footctl.virtual.sim", profile_id, *extra],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / f"sim-{profile_id}.err", "w"),  # noqa: SIM115
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = BANNER.match(line)
    if match is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"bad banner {line!r}: {(tmp_path / f'sim-{profile_id}.err').read_text()}")
    return Sim(proc, match)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    s = start_sim("shiatsu-aa55", tmp_path, "--log-frames")
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def raw_lines(address: str, payload: bytes, answers: int) -> list[dict[str, object]]:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(payload)
        stream = sock.makefile("rb")
        out = [json.loads(stream.readline()) for _ in range(answers)]
        stream.close()
    return out


# --------------------------------------------------------------------- the process


def test_banner_and_state(sim: Sim, profiles: dict[str, Profile]) -> None:
    profile = profiles["shiatsu-aa55"]
    assert sim.match["id"] == "shiatsu-aa55"
    assert sim.match["name"] == profile.advertisement.local_name
    state = sim.control.request({"cmd": "state"})
    assert state["running"] is False
    assert state["heat"] == 0
    assert state["mode"] == "kneading"
    assert state["connected"] is False
    assert state["address"] == sim.match["address"]
    assert sim.stop() == 0


async def test_app_central_over_tcp_drives_the_sim(
    sim: Sim, profiles: dict[str, Profile], tmp_path: Path
) -> None:
    profile = profiles["shiatsu-aa55"]
    radio = await radio_for_link(sim.link)
    try:
        device = await BleakScanner.find_device_by_name(
            profile.advertisement.local_name, timeout=3.0, backend=radio.scanner_backend
        )
        assert device is not None
        assert device.address == sim.match["address"]
        lost = asyncio.Event()
        client = BleakClient(device, lambda _c: lost.set(), backend=radio.client_backend)
        await client.connect()
        reports: asyncio.Queue[bytes] = asyncio.Queue()
        assert profile.gatt.notify is not None
        await client.start_notify(profile.gatt.notify, lambda _c, d: reports.put_nowait(bytes(d)))
        for command in (Command("power", 1), Command("intensity", 4), Command("heat", 1)):
            await client.write_gatt_char(
                profile.gatt.write, encode(profile, command), response=True
            )
        async with asyncio.timeout(2):
            while (report := decode_status(profile, await reports.get())).heat != 1:
                pass
        assert report.intensity == 4
        control = sim.control
        state = await asyncio.to_thread(control.request, {"cmd": "state"})
        assert (state["running"], state["intensity"], state["heat"]) == (True, 4, 1)
        assert state["connected"] is True
        frames = (await asyncio.to_thread(control.request, {"cmd": "frames", "last": 2}))["frames"]
        assert [(f["command"], f["value"], f["outcome"]) for f in frames] == [
            ("intensity", 4, "applied"),
            ("heat", 1, "applied"),
        ]
        # out of range through the control port
        await asyncio.to_thread(control.request, {"cmd": "drop"})
        async with asyncio.timeout(2):
            await lost.wait()
        await asyncio.to_thread(control.request, {"cmd": "reboot"})
        await asyncio.to_thread(control.request, {"cmd": "restore"})
        start = time.perf_counter()
        await client.connect()
        reconnect = time.perf_counter() - start
        assert reconnect < 1.0
        await client.write_gatt_char(profile.gatt.write, encode(profile, Command("query")))
        state = await asyncio.to_thread(control.request, {"cmd": "state"})
        assert state["running"] is False
        await client.disconnect()
    finally:
        await radio.close()
    assert sim.stop() == 0
    log = (tmp_path / "sim-shiatsu-aa55.err").read_text()
    assert "aa550201" in log  # --log-frames wrote the power-on frame to stderr


def test_bad_control_input_gets_error_lines(sim: Sim) -> None:
    answers = raw_lines(
        sim.match["control"],
        b'not json\n[1, 2]\n{"cmd": "fly"}\n{"cmd": "fault", "name": "mute", "value": 3}\n'
        b'{"cmd": "frames", "last": -1}\n\xff\xfe\n{"cmd": "ping"}\n',
        7,
    )
    assert [a["ok"] for a in answers] == [False] * 6 + [True]
    assert "unknown cmd" in str(answers[2]["error"])
    with pytest.raises(SimRequestError, match="rogue_heat"):
        sim.control.request({"cmd": "fault", "name": "rogue_heat", "value": 9})
    answer = sim.control.request({"cmd": "fault", "name": "mute", "value": True})
    assert answer["faults"]["mute"] is True
    # a huge line and an abrupt hang-up do not end the process
    host, _, port = sim.match["control"].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"x" * 200_000)
    assert sim.control.request({"cmd": "ping"})["ok"] is True
    assert sim.proc.poll() is None
    assert sim.stop(signal.SIGINT) == 0


def test_unknown_profile_exits_with_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "footctl.virtual.sim", "no-such-profile"],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 2
    assert "no-such-profile" in proc.stderr
    assert proc.stdout == ""


# --------------------------------------------------------------------- in process


async def test_run_sim_in_process_cleans_up_on_cancel(profiles: dict[str, Profile]) -> None:
    out = io.StringIO()
    ready: asyncio.Future[VirtualMassager] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_sim(profiles["shiatsu-keys"], out=out, ready=ready.set_result))
    massager = await asyncio.wait_for(ready, 5)
    match = BANNER.match(out.getvalue())
    assert match is not None
    assert match["address"] == massager.address
    control = SimControl(match["control"])
    state = await asyncio.to_thread(control.request, {"cmd": "state"})
    assert state["name"] == "FMK-300"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError):
        await asyncio.to_thread(control.request, {"cmd": "state"})
