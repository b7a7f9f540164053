"""Scanning and raw GATT access while a daemon holds the radio (issue #8), with real
processes: a `footctl sim` serving two virtual massagers on one link, and a daemon
holding one of them. `footctl scan` and the TUI's devices dialog ask the daemon (it
owns the radio); `explore` and `sniff` of the held massager are refused at once,
naming the daemon."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from footctl.client import SCAN_MARGIN_S, SCAN_MAX_S, wait_for_socket
from footctl.control import api
from footctl.control.sockets import daemon_socket_path
from footctl.tui.dialogs import DevicePicker
from footctl.tui.launch import daemon_app
from safety_harness import eventually

pytestmark = pytest.mark.e2e

# Starting Python and the virtual massagers on a loaded 2-core machine.
START_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 60.0


@dataclass
class Bench:
    link: str
    held: str  # the address of the massager the daemon holds (shiatsu-aa55)
    free: str  # the one nobody holds (ems-v2)
    daemon_pid: int
    socket: str


def footctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "footctl.cli", *args], capture_output=True, text=True,
        timeout=CLI_TIMEOUT_S, check=False,
    )


def one_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    data: dict[str, Any] = json.loads(lines[0])
    return data


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, log: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "footctl.cli", *args], stdout=subprocess.PIPE,
            stderr=(tmp_path / log).open("w"), text=True,
        )
        procs.append(proc)
        return proc

    try:
        sim = start("sim", "shiatsu-aa55", "ems-v2", log="sim.err")
        assert sim.stdout is not None
        first = sim.stdout.readline()  # footctl sim: id "NAME" ADDR, ... link HOST:PORT
        assert first.startswith("footctl sim:"), (tmp_path / "sim.err").read_text()
        link = first.split()[-1]
        held, free = (part.split()[0].rstrip(",") for part in first.split('"')[2::2])
        daemon = start("--link", link, "--device", "shiatsu-aa55", "daemon", log="daemon.err")
        path = daemon_socket_path()
        assert wait_for_socket(path, START_TIMEOUT_S), (tmp_path / "daemon.err").read_text()
        status = one_json(footctl("--json", "status"))
        assert status["device"]["address"] == held
        yield Bench(link, held, free, daemon.pid, path)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_the_client_waits_as_long_as_the_owner_may_take() -> None:
    assert (SCAN_MARGIN_S, SCAN_MAX_S) == (api.SCAN_MARGIN_S, api.MAX_SCAN_S)


def test_footctl_scan_json_is_answered_by_the_daemon(bench: Bench) -> None:
    for flags in ([], ["--link", bench.link]):
        data = one_json(footctl(*flags, "--json", "scan", "--timeout", "1"))
        assert data["ok"] is True and data["via"] == "daemon", data
        rows = {row["address"]: row for row in data["devices"]}
        free = rows[bench.free]
        assert (free["profile"], free["held"], free["radio"]) == (
            "ems-v2", False, f"link {bench.link}")
        assert free["rssi"] == -50 and free["reason"] == "matched profile ems-v2"
        assert bench.held not in rows  # held and connected: it no longer advertises
    refused = footctl("--json", "scan", "--timeout", "0.1")  # below the range: exit 2
    assert refused.returncode == 2 and one_json(refused)["error"] == "usage"


def test_scan_imports_no_ble_stack_when_the_daemon_answers(bench: Bench) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "footctl.cli", "scan", "--timeout", "1"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert bench.free in proc.stdout and "(via daemon)" in proc.stdout
    modules = [line.split("|")[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")]
    assert "footctl.client" in modules
    heavy = [m for m in modules if m.split(".")[0] in ("bleak", "bumble", "pydantic")]
    assert heavy == []


async def test_the_tui_devices_dialog_lists_what_the_daemon_scan_returned(
    bench: Bench,
) -> None:
    app = daemon_app(bench.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await eventually(lambda: any(v.link == "connected" for v in app.views.values()),
                                20)
        await pilot.press("d")
        assert isinstance(app.screen, DevicePicker)
        await pilot.press("r")

        def shown() -> str:
            strips = app.screen._compositor.render_strips()
            return "\n".join("".join(seg.text for seg in strip) for strip in strips)

        assert await eventually(lambda: bench.free in shown(), 20), shown()
        in_range = shown().split("in range:", 1)[1]
        assert "ems-v2" in in_range and bench.held not in in_range
        await pilot.press("q")


@pytest.mark.parametrize("command", [
    ["explore", "{held}"],
    ["sniff", "shiatsu-aa55", "--duration", "1"],
])
def test_explore_and_sniff_of_a_held_massager_name_the_daemon(
    bench: Bench, command: list[str]
) -> None:
    args = [a.format(held=bench.held) for a in command]
    proc = footctl("--link", bench.link, "--scan-timeout", "2", "--json", *args)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    data = one_json(proc)
    assert data["error"] == "unreachable"
    assert f"held by the footctl daemon (pid {bench.daemon_pid}, socket {bench.socket})" in (
        data["message"])
    assert "systemctl --user stop footctl" in data["advice"]
    assert proc.stderr.count("\n") == 1 and "held by the footctl daemon" in proc.stderr
    status = one_json(footctl("--json", "status"))["device"]  # the daemon is untouched
    assert (status["address"], status["link"]) == (bench.held, "connected")
