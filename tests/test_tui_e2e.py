"""The TUI as a person uses it: `footctl tui --simulate` in a real terminal (tmux,
80x24: keys in, screen read back with capture-pane), and the TUI and the CLI acting
on one massager through the daemon, each seeing the other's change."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_rig import footctl, one_json, use_config, wait_until
from footctl.client import wait_for_socket
from footctl.control.sockets import daemon_socket_path
from footctl.tui.app import FootctlTui
from footctl.tui.remote import SocketController
from safety_harness import eventually

pytestmark = pytest.mark.e2e

FOOTCTL = str(Path(sys.executable).with_name("footctl"))
# No ramp wait and no cooldown: each step lands at once (the caps have their own tests).
FAST_CONFIG = "[caps]\nintensity_step_seconds = 0\ncooldown_minutes = 0\n"
# Starting Python, Textual and a virtual massager on a loaded 2-core machine.
START_TIMEOUT_S = 30.0


@pytest.fixture
def fast_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_config(tmp_path, monkeypatch, FAST_CONFIG)


def cli(*args: str) -> dict[str, Any]:
    """``footctl --json ARGS`` to completion: its one JSON object (exit 0 or the test fails)."""
    return one_json(footctl("--json", *args, check=True))


class Tmux:
    """One tmux server of our own (-L), one 80x24 session."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, check=True,
            timeout=10,
        ).stdout  # fmt: skip

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "tui")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "tui", *keys)

    def until(self, text: str, timeout: float = 15.0) -> str:
        return str(wait_until(lambda: text in (s := self.screen()) and s, timeout, repr(text)))


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/test installs it)")
    t = Tmux(f"footctl-test-{os.getpid()}")
    yield t
    subprocess.run(["tmux", "-L", t.name, "kill-server"], capture_output=True, check=False)


def test_tui_simulate_under_tmux(tmux: Tmux, fast_config: Path, tmp_path: Path) -> None:
    env = " ".join(
        f"{k}={os.environ[k]}"
        for k in ("FOOTCTL_CONFIG", "FOOTCTL_STATE_DIR", "FOOTCTL_RUNTIME_DIR",
                  "FOOTCTL_DATA_DIR", "FOOTCTL_PROGRAM_DIR")
    )  # fmt: skip
    done = tmp_path / "exit-code"
    command = (
        f"env {env} TERM=xterm-256color {FOOTCTL} tui --simulate shiatsu-aa55; echo $? > {done}"
    )
    tmux.run("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", command)
    screen = tmux.until("link connected", START_TIMEOUT_S)
    assert "power OFF" in screen and "s stop" in screen and "q quit" in screen
    # The TUI's owner serves its socket: the CLI in another terminal sees the massager.
    (view,) = cli("status")["devices"]
    assert view["reported"]["power"] is False
    tmux.keys("Space")
    tmux.until("power ON")
    assert cli("status")["devices"][0]["reported"]["power"] is True
    tmux.keys("+")
    tmux.until("2/5")
    assert cli("status")["devices"][0]["reported"]["intensity"] == 2
    tmux.keys("h")
    tmux.until("heat 1 (40 C)")
    tmux.keys("j")  # a dialog open, and stop still stops
    tmux.until("journal: last 14 days")
    tmux.keys("s")
    tmux.until("power OFF")
    status = cli("status")["devices"][0]["reported"]
    assert (status["power"], status["heat"]) == (False, 0)
    tmux.keys("Space")
    tmux.until("power ON")
    tmux.keys("q")  # quit switches off what it owns
    wait_until(done.exists, 20, "the TUI to exit")
    assert done.read_text().strip() == "0"


@pytest.fixture
def daemon(fast_config: Path, tmp_path: Path) -> Iterator[str]:
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [FOOTCTL, "daemon", "--simulate", "shiatsu-aa55"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        path = daemon_socket_path()
        assert wait_for_socket(path, START_TIMEOUT_S), (tmp_path / "daemon.log").read_text()
        yield path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def test_tui_and_cli_through_the_daemon_see_each_other(daemon: str) -> None:
    app = FootctlTui(SocketController(daemon), owns_devices=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await eventually(lambda: any(v.link == "connected" for v in app.views.values()), 20)
        (device,) = app.views
        await pilot.press("space")  # the TUI switches on ...
        assert await eventually(lambda: app.views[device].reported.power, 15)
        status = cli("status")  # ... and the CLI, through the daemon, sees it
        assert status["devices"][0]["reported"]["power"] is True
        assert status["devices"][0]["session_source"] == "tui"
        cli("set", "--intensity", "3")  # the CLI changes it ...
        assert await eventually(lambda: app.views[device].reported.intensity == 3, 15)
        await pilot.pause()  # ... and the TUI's screen shows it
        assert await eventually(lambda: "3/5" in _text(app), 5)
        await pilot.press("s")  # the TUI's stop, seen by the CLI
        assert await eventually(lambda: not app.views[device].reported.power, 15)
        assert cli("status")["devices"][0]["reported"]["power"] is False
        await pilot.press("q")  # not the owner: leaves without touching the daemon
    assert cli("status")["devices"][0]["link"] == "connected"


def _text(app: FootctlTui) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)
