"""The control plane with real processes: `footctl sim` processes serving virtual
massagers, short-lived owners (a one-shot command holding a massager) and the
daemon, reached by the thin CLI client. One test per bullet of issue #8, and the
first-hour CLI fixes of issue #13.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_rig import (
    CLI_TIMEOUT_S,
    FAST_RAMP,
    footctl,
    footctl_argv,
    one_json,
    read_sim_banner,
    use_config,
    wait_until,
)
from footctl.virtual.sim import SimControl

pytestmark = pytest.mark.e2e

@pytest.fixture(autouse=True)
def _fast_ramp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_config(tmp_path, monkeypatch, FAST_RAMP)


class Procs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str, stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
        n = len(self.procs)
        proc = subprocess.Popen(
            footctl_argv(*args), stdout=stdout,
            stderr=open(self.tmp / f"proc{n}.err", "w"),  # noqa: SIM115
            text=True,
        )
        self.procs.append(proc)
        return proc

    def sim(self, *profiles: str) -> tuple[str, SimControl]:
        return read_sim_banner(self.start("sim", *profiles))

    def owner(self, *args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
        """A one-shot command that stays the owner; its first JSON line."""
        proc = self.start("--json", *args)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, (self.tmp / f"proc{len(self.procs) - 1}.err").read_text()
        return proc, json.loads(line)

    def daemon(self, *args: str) -> subprocess.Popen[str]:
        proc = self.start(*args, "daemon", stdout=subprocess.DEVNULL)
        run = Path(os.environ["FOOTCTL_RUNTIME_DIR"]) / "daemon.sock"
        wait_until(lambda: run.exists() and footctl("status").returncode == 0, 30, "daemon")
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.close()


def state(ctl: SimControl, device: int = 0) -> dict[str, Any]:
    return ctl.request({"cmd": "state", "device": device})


# --- one owner; stop always arrives -------------------------------------------------


def test_two_owners_and_one_stop_reaches_both(procs: Procs) -> None:
    link_a, ctl_a = procs.sim("shiatsu-aa55")
    link_b, ctl_b = procs.sim("ems-v2")
    owner_a, _ = procs.owner("--link", link_a, "set", "--intensity", "2", "--heat", "1")
    owner_b, _ = procs.owner("--link", link_b, "on")
    assert state(ctl_a)["running"] and state(ctl_b)["running"]
    proc = footctl("--json", "stop")
    assert proc.returncode == 0, proc.stderr
    data = one_json(proc)
    assert {d["radio"] for d in data["devices"]} == {f"link {link_a}", f"link {link_b}"}
    assert not state(ctl_a)["running"] and state(ctl_a)["heat"] == 0
    assert not state(ctl_b)["running"]
    assert owner_a.wait(timeout=CLI_TIMEOUT_S) == 0
    assert owner_b.wait(timeout=CLI_TIMEOUT_S) == 0


def test_a_command_for_massager_b_never_reaches_the_owner_of_a(procs: Procs) -> None:
    link_a, ctl_a = procs.sim("shiatsu-aa55")
    link_b, ctl_b = procs.sim("shiatsu-aa55")
    procs.owner("--link", link_a, "set", "--intensity", "2")
    owner_b, first = procs.owner("--link", link_b, "set", "--intensity", "4")
    assert first["device"]["radio"] == f"link {link_b}"
    assert state(ctl_a)["intensity"] == 2  # untouched
    assert state(ctl_b)["running"] and state(ctl_b)["intensity"] == 4
    # --link (and --device) select exactly the massager named
    proc = footctl("--json", "--link", link_a, "stop")
    assert proc.returncode == 0, proc.stderr
    assert not state(ctl_a)["running"] and state(ctl_b)["running"]
    proc = footctl("--json", "--device", "nobody", "stop")
    assert proc.returncode == 3, proc.stderr
    assert one_json(proc)["ok"] is False
    assert state(ctl_b)["running"]
    assert footctl("stop").returncode == 0
    assert owner_b.wait(timeout=CLI_TIMEOUT_S) == 0


def test_stop_with_a_broken_config_file_still_stops(procs: Procs, tmp_path: Path) -> None:
    link, ctl = procs.sim("shiatsu-aa55")
    owner, _ = procs.owner("--link", link, "set", "--intensity", "1", "--heat", "1")
    broken = tmp_path / "broken.toml"
    broken.write_text("[caps\nmax_session_minutes = = 3\n")
    env = {"FOOTCTL_CONFIG": str(broken)}
    proc = footctl("stop", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not state(ctl)["running"] and state(ctl)["heat"] == 0
    assert owner.wait(timeout=CLI_TIMEOUT_S) == 0
    # with no owner at all, a broken config is a warning and the stop still goes out
    proc = footctl("--link", link, "stop", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "defaults" in proc.stderr


def test_a_stop_during_a_reconnect_is_not_undone_by_the_earlier_set(procs: Procs) -> None:
    link, ctl = procs.sim("shiatsu-aa55")
    procs.daemon("--link", link)
    ctl.request({"cmd": "drop"})
    wait_until(lambda: one_json(footctl("--json", "status"))["devices"][0]["link"] != "connected",
               what="the daemon to see the drop")
    pending = procs.start("--json", "set", "--intensity", "1", "--heat", "1")
    time.sleep(0.5)
    assert pending.poll() is None  # waiting for the link
    stop = footctl("--json", "stop")
    assert pending.wait(timeout=CLI_TIMEOUT_S) == 4
    assert pending.stdout is not None
    assert json.loads(pending.stdout.read())["reason"] == "superseded_by_stop"
    ctl.request({"cmd": "restore"})
    wait_until(lambda: state(ctl)["connected"], what="reconnect")
    time.sleep(1.5)  # the owner's re-assert, if any, would have happened by now
    assert not state(ctl)["running"] and state(ctl)["heat"] == 0
    # the link was down: the off was owed, not confirmed, and the stop said so
    assert stop.returncode == 3, stop.stderr
    assert one_json(stop)["unconfirmed"][0]["owed"] is True and "owed" in stop.stderr


def test_the_cooldown_holds_through_the_daemon(procs: Procs) -> None:
    procs.daemon("--simulate", "shiatsu-aa55")
    assert footctl("set", "--intensity", "1", "--heat", "1").returncode == 0
    assert footctl("stop").returncode == 0
    proc = footctl("--json", "set", "--heat", "1")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert one_json(proc)["reason"] == "cooldown"
    status = one_json(footctl("--json", "status"))
    assert status["devices"][0]["reported"]["power"] is False


# --- many massagers; watch -------------------------------------------------------------


def test_sixteen_massagers_in_one_daemon_and_a_drop_on_one(procs: Procs) -> None:
    link, ctl = procs.sim("shiatsu-aa55*16")
    procs.daemon("--link", link)
    status = one_json(footctl("--json", "status"))
    views = status["devices"]
    assert len(views) == 16 and all(v["link"] == "connected" for v in views)
    names = [v["name"] for v in views]
    for name in names:
        proc = footctl("--device", name, "set", "--intensity", "1")
        assert proc.returncode == 0, proc.stderr
    addresses = {v["name"]: v["address"] for v in views}
    sim_index = {m["address"]: m["index"] for m in ctl.request({"cmd": "list"})["massagers"]}
    dropped = names[5]
    ctl.request({"cmd": "drop", "device": sim_index[addresses[dropped]]})
    wait_until(lambda: next(v for v in one_json(footctl("--json", "status"))["devices"]
                            if v["name"] == dropped)["link"] != "connected", what="drop seen")
    assert footctl("--device", names[9], "stop").returncode == 0
    for name in names:
        s = state(ctl, sim_index[addresses[name]])
        assert s["running"] is (name not in (names[9],)), name
    views = {v["name"]: v for v in one_json(footctl("--json", "status"))["devices"]}
    assert all(views[n]["link"] == "connected" for n in names if n != dropped)
    ctl.request({"cmd": "restore", "device": sim_index[addresses[dropped]]})
    assert footctl("stop").returncode == 0
    assert not any(state(ctl, i)["running"] for i in range(16))


def test_watch_prints_each_change_in_order(procs: Procs) -> None:
    procs.daemon("--simulate", "shiatsu-aa55")
    watcher = procs.start("watch")
    assert watcher.stdout is not None
    first = json.loads(watcher.stdout.readline())
    assert first["event"] == "state" and first["device"]["reported"]["power"] is False
    assert footctl("set", "--intensity", "1").returncode == 0
    assert footctl("stop").returncode == 0
    events = [first]
    while not (events[-1]["device"]["desired"]["power"] is False and len(events) > 2
               and events[-1]["device"]["reported"]["power"] is False):
        events.append(json.loads(watcher.stdout.readline()))
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    powers = [e["device"]["reported"]["power"] for e in events]
    assert True in powers and powers.index(True) > 0 and powers[-1] is False
    watcher.send_signal(signal.SIGINT)
    assert watcher.wait(timeout=10) in (0, 130)


# --- a thin client -----------------------------------------------------------------------


def test_the_client_path_imports_no_ble_stack_and_no_pydantic(procs: Procs) -> None:
    procs.daemon("--simulate", "shiatsu-aa55")
    for args in (["status"], ["--help"], ["stop"]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "footctl.cli", *args],
            capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        modules = [line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                   if line.startswith("import time:")]
        assert "footctl.cli" in modules or "footctl" in modules
        heavy = [m for m in modules if m.split(".")[0] in ("bleak", "bumble", "pydantic")]
        assert heavy == [], (args, heavy)


# --- first-hour CLI fixes (issue #13) -----------------------------------------------------


def test_json_prints_exactly_one_object_for_usage_errors() -> None:
    for args in (["--json", "set"], ["--json", "frobnicate"], ["--json", "set", "--heat", "x"],
                 ["--json", "--link", "localhost", "status"], ["status", "--json", "--bogus"]):
        proc = footctl(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        data = one_json(proc)
        assert data["ok"] is False and data["error"] == "usage" and data["exit_code"] == 2


def test_global_flags_before_and_after_the_command() -> None:
    before = footctl("--simulate", "shiatsu-aa55", "--json", "status")
    after = footctl("status", "--simulate", "shiatsu-aa55", "--json")
    assert before.returncode == after.returncode == 0, (before.stderr, after.stderr)
    assert one_json(before)["devices"][0]["profile"] == "shiatsu-aa55"
    assert one_json(after)["devices"][0]["profile"] == "shiatsu-aa55"


def test_a_link_that_is_not_host_port_is_exit_2_with_the_form() -> None:
    for bad in ("localhost", "foo:bar", ":5", "h:70000"):
        proc = footctl("--link", bad, "status")
        assert proc.returncode == 2, (bad, proc.stderr)
        assert "HOST:PORT" in proc.stderr


def test_history_into_head_has_no_broken_pipe(tmp_path: Path) -> None:
    import sqlite3

    from footctl.journal import Journal

    path = Path(os.environ["FOOTCTL_DATA_DIR"]) / "journal.sqlite3"
    with Journal(path) as journal:
        row = journal.start_session("AA:BB:CC:DD:EE:FF", source="manual")
        journal.end_session(row, "stopped")
    # More rows than a pipe holds (64 KiB of table), so footctl is still writing when
    # head exits; doubled in one transaction each (a row per commit would take long).
    cols = ("started_at, ended_at, device, profile_id, source, program, steps_run, "
            "peak_heat, heat_s, end_reason, rating, note")
    with sqlite3.connect(path) as db:
        for _ in range(11):
            db.execute(f"INSERT INTO sessions ({cols}) SELECT {cols} FROM sessions")
    proc = subprocess.run(
        f"'{sys.executable}' -m footctl.cli history | head -2", shell=True,
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
    )
    assert len(proc.stdout.splitlines()) == 2
    assert "BrokenPipe" not in proc.stderr and "Traceback" not in proc.stderr


def test_set_heat_minus_one_is_exit_2_with_the_range() -> None:
    proc = footctl("--simulate", "ems-v2", "set", "--heat", "-1")
    assert proc.returncode == 2
    assert "greater than or equal to 0" in proc.stderr


def test_set_with_no_field_is_exit_2_everywhere(procs: Procs) -> None:
    assert footctl("set").returncode == 2
    assert footctl("--simulate", "ems-v2", "set").returncode == 2
    procs.daemon("--simulate", "ems-v2")
    assert footctl("set").returncode == 2


def test_an_unknown_device_is_exit_3() -> None:
    proc = footctl("--simulate", "ems-v2", "--device", "nobody", "status")
    assert proc.returncode == 3, proc.stderr


def test_a_missing_config_file_is_exit_2_and_version_prints() -> None:
    assert footctl("--config", "/no/such/file", "status").returncode == 2
    proc = footctl("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("footctl ")


def test_the_fast_help_is_what_argparse_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    from footctl.cli import TOP_HELP, build_parser

    monkeypatch.setenv("COLUMNS", "80")
    assert build_parser("").format_help() == TOP_HELP
    assert build_parser().format_help() == TOP_HELP
    proc = footctl("--help")
    assert proc.returncode == 0 and proc.stdout == TOP_HELP
