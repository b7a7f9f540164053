"""The CLI of issue 4 in subprocesses: programs, schedules, history and rating, the
systemd unit, ``run`` (in-process and over a sim link, with Ctrl-C) and the daemon
answering the device commands.

The environment comes from conftest (temp config, state, data, runtime and program
dirs); each test writes the config and programs it needs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from cli_rig import CLI_TIMEOUT_S, footctl, footctl_argv, one_json, wait_until
from footctl.commands.service import unit_text
from footctl.virtual.sim import SimControl

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]

# A fast ramp keeps the program's first seconds short; cooldown 0 lets a test run twice.
FAST = "[caps]\nintensity_step_seconds = 0.05\ncooldown_minutes = 0\n"

# 15 s: a warm step, then a pulsed one (5 s on, 5 s off): the shortest the schema allows.
TINY = """
name = "tiny"
description = "a fast test program"
[[steps]]
name = "warm"
duration = 5
mode = "kneading"
intensity = 2
heat = 1
[[steps]]
name = "pulse"
duration = 10
mode = "rolling"
intensity = 3
pulse = { on_s = 5, off_s = 5 }
"""

# Long enough to be interrupted.
LONG = TINY.replace('name = "tiny"', 'name = "long"').replace("duration = 10", "duration = 600")


@pytest.fixture
def env() -> dict[str, str]:
    """A fast config where conftest's FOOTCTL_CONFIG points, and the test programs in its
    program dir; every CLI run inherits this environment (returned for Popen)."""
    Path(os.environ["FOOTCTL_CONFIG"]).write_text(FAST)
    programs = Path(os.environ["FOOTCTL_PROGRAM_DIR"])
    programs.mkdir(parents=True, exist_ok=True)
    (programs / "tiny.toml").write_text(TINY)
    (programs / "long.toml").write_text(LONG)
    return dict(os.environ)


# --- programs ----------------------------------------------------------------------


def test_program_list_shows_shipped_and_user_programs(env: dict[str, str]) -> None:
    data = one_json(footctl("--json", "program", "list"))
    by_name = {p["name"]: p for p in data["programs"]}
    assert {"wind-down", "quick-relax", "no-heat", "tiny", "long"} <= set(by_name)
    assert by_name["wind-down"]["shipped"] and not by_name["tiny"]["shipped"]
    assert by_name["wind-down"]["duration_s"] == 15 * 60 and by_name["wind-down"]["progressive"]
    assert by_name["no-heat"]["max_heat"] == 0
    text = footctl("program", "list").stdout
    assert "quick-relax" in text and "10:00" in text


def test_program_check_ok_refused_and_clamped(env: dict[str, str], tmp_path: Path) -> None:
    ok = footctl("--json", "program", "check", "wind-down", "--simulate", "shiatsu-aa55")
    assert ok.returncode == 0, ok.stderr
    data = one_json(ok)
    assert data["ok"] and data["refused"] == [] and len(data["steps"]) == 4
    # ems-v2 has no "rolling" mode: step 2 runs the first fallback family it has, and
    # the check says so (issue #12: the shipped programs run on ems-v2)
    adapted = footctl("--simulate", "ems-v2", "--json", "program", "check", "wind-down")
    assert adapted.returncode == 0, adapted.stderr
    data = one_json(adapted)
    assert data["ok"] and data["refused"] == []
    step2 = [f for f in data["steps"][1]["findings"] if f["field"] == "mode"]
    assert step2 and step2[0]["action"] == "adapted" and "'rolling'" in step2[0]["reason"]
    # a step no mode of the device can do is refused, with the modes it has, exit 4
    squeeze = tmp_path / "squeeze.toml"
    squeeze.write_text('name = "squeeze"\n[[steps]]\nduration = "2m"\nmode = "compression"\n'
                       "intensity = 2\n")
    bad = footctl("--simulate", "ems-v2", "--json", "program", "check", str(squeeze))
    assert bad.returncode == 4, bad.stderr
    data = one_json(bad)
    assert data["ok"] is False
    assert [(f["step"], f["field"]) for f in data["refused"]] == [(1, "mode")]
    assert "refused" in bad.stderr
    text = footctl("--simulate", "ems-v2", "program", "check", str(squeeze)).stdout
    assert "REFUSED" in text and "can do none of compression" in text
    # with clamp and a lower cap, the over-cap steps are lowered instead
    clamp = tmp_path / "clamp.toml"
    clamp.write_text(FAST + "max_intensity = 2\nclamp = true\n")
    lowered = footctl("--json", "program", "check", "quick-relax", "--profile", "shiatsu-aa55",
                      env={"FOOTCTL_CONFIG": str(clamp)})
    assert lowered.returncode == 0, lowered.stderr
    data = one_json(lowered)
    assert data["refused"] == [] and {f["step"] for f in data["clamped"]} == {1, 2}
    # a scheduled start lowers heat to the unattended level, and says so
    hot = tmp_path / "hot.toml"
    hot.write_text('name = "hot"\n[[steps]]\nduration = "2m"\nmode = "kneading"\n'
                   "intensity = 2\nheat = 2\n")
    sched = one_json(footctl("--json", "program", "check", str(hot), "--scheduled",
                             "--simulate", "ems-v2"))
    assert sched["clamped"][0]["field"] == "heat" and "asleep" in sched["clamped"][0]["reason"]
    assert footctl("program", "check", "wind-down").returncode == 2  # which massager?


# --- schedules -------------------------------------------------------------------


def test_schedule_next_in_local_time(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "sched.toml"
    config.write_text(
        FAST
        + '[[schedules]]\nkind = "weekly"\ndays = ["mon", "wed"]\nat = "22:00"\n'
        'program = "wind-down"\ntz = "Europe/Berlin"\n'
        '[[schedules]]\nkind = "bedtime"\nbedtime = "23:30"\nlead_minutes = 45\n'
        'days = ["sat"]\nprogram = "quick-relax"\ntz = "Europe/Berlin"\n'
    )
    run_env = {"FOOTCTL_CONFIG": str(config), "TZ": "Europe/Berlin"}
    data = one_json(footctl("--json", "schedule", "next", "--count", "6", env=run_env))
    starts = data["starts"]
    assert len(starts) == 6
    assert [s["at"] for s in starts] == sorted(s["at"] for s in starts)
    for s in starts:
        day, clock = s["local"].split()[0], s["local"].split()[2]
        assert (day, clock, s["program"]) in {
            ("Mon", "22:00", "wind-down"), ("Wed", "22:00", "wind-down"),
            ("Sat", "22:45", "quick-relax"),
        }, s
    assert {s["program"] for s in starts} == {"wind-down", "quick-relax"}
    listed = one_json(footctl("--json", "schedule", "list", env=run_env))["schedules"]
    assert [s["kind"] for s in listed] == ["weekly", "bedtime"]
    assert "45 min before bedtime 23:30" in listed[1]["description"]
    text = footctl("schedule", "next", "--count", "2", env=run_env).stdout
    assert len(text.strip().splitlines()) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[schedules]]\nkind = "weekly"\nat = "25:00"\nprogram = "x"\n')
    assert footctl("schedule", "list", env={"FOOTCTL_CONFIG": str(bad)}).returncode == 2


# --- run, history, rate -------------------------------------------------------------


def test_run_simulated_program_then_history_and_rate(env: dict[str, str]) -> None:
    assert one_json(footctl("--json", "history"))["sessions"] == []
    assert footctl("rate", "4").returncode == 2  # nothing to rate yet
    proc = footctl("--simulate", "shiatsu-aa55", "--json", "run", "tiny")
    assert proc.returncode == 0, proc.stderr
    result = one_json(proc)
    assert (result["via"], result["end_reason"], result["steps_run"]) == ("direct", "completed", 2)
    # progress on stderr: each step's name and the time left
    assert "step 1/2 warm" in proc.stderr and "step 2/2 pulse" in proc.stderr
    assert "left" in proc.stderr
    # Sessions on virtual massagers are shown only when asked for.
    assert one_json(footctl("--json", "history", "--days", "1"))["sessions"] == []
    sessions = one_json(
        footctl("--json", "history", "--days", "1", "--include-simulated")
    )["sessions"]
    (row,) = sessions
    assert (row["source"], row["program"], row["end_reason"], row["peak_heat"]) == (
        "program", "tiny", "completed", 1,
    )
    rated = one_json(
        footctl("--json", "rate", "4", "--note", "asleep fast", "--include-simulated")
    )
    assert (rated["session"]["rating"], rated["session"]["note"]) == (4, "asleep fast")
    table = footctl("history", "--include-simulated").stdout
    assert "tiny" in table and "asleep fast" in table and "completed" in table
    plot = footctl("history", "--plot", "--include-simulated")
    assert plot.returncode == 0 and "minutes" in plot.stdout


def test_run_refused_program_exits_4_before_moving(env: dict[str, str], tmp_path: Path) -> None:
    squeeze = tmp_path / "squeeze.toml"
    squeeze.write_text('name = "squeeze"\n[[steps]]\nduration = "2m"\nmode = "compression"\n'
                       "intensity = 2\n")
    proc = footctl("--simulate", "ems-v2", "--json", "run", str(squeeze))
    assert proc.returncode == 4, proc.stderr
    assert one_json(proc)["reason"] == "program_refused"
    assert one_json(footctl("--json", "history"))["sessions"] == []


def test_ctrl_c_during_run_stops_the_massager(
    env: dict[str, str], sim_aa55: tuple[str, SimControl]
) -> None:
    link, ctl = sim_aa55
    run = subprocess.Popen(
        footctl_argv("--link", link, "run", "long"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert run.stderr is not None
        wait_until(lambda: ctl.request({"cmd": "state"})["running"], what="the program to start")
        line = run.stderr.readline()
        while "step 1/2" not in line:
            line = run.stderr.readline()
            assert line, "no progress line"
        # the progress line can come before the device confirmed step 1's heat
        wait_until(lambda: ctl.request({"cmd": "state"})["heat"] == 1, what="step 1's heat")
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=CLI_TIMEOUT_S) == 130
    finally:
        if run.poll() is None:
            run.kill()
    state = ctl.request({"cmd": "state"})
    assert state["running"] is False and state["heat"] == 0
    (row,) = one_json(footctl("--json", "history", "--include-simulated"))["sessions"]
    assert (row["program"], row["end_reason"]) == ("long", "stopped")


# --- the systemd unit --------------------------------------------------------------


def test_service_install_prints_and_writes_the_unit(env: dict[str, str], tmp_path: Path) -> None:
    printed = footctl("service", "install", "--print")
    assert printed.returncode == 0
    unit = printed.stdout
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "NotifyAccess=main"):
        assert line in unit.splitlines()
    exec_line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    assert exec_line.endswith(" daemon")
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    written = one_json(footctl("--json", "service", "install", env=xdg))
    path = tmp_path / "xdg" / "systemd" / "user" / "footctl.service"
    assert written["path"] == str(path) and path.read_text() == written["unit"]
    # the shipped unit is the same text, for a footctl in ~/.local/bin
    assert (ROOT / "contrib" / "footctl.service").read_text() == unit_text()


# --- the daemon -------------------------------------------------------------------------


def test_device_commands_and_run_go_through_the_daemon(env: dict[str, str]) -> None:
    daemon = subprocess.Popen(
        footctl_argv("daemon", "--simulate", "shiatsu-aa55"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert daemon.stderr is not None
        ready = daemon.stderr.readline()
        assert "footctl daemon: holding" in ready, ready
        status = one_json(footctl("--json", "status"))
        assert status["via"] == "daemon" and status["device"]["link"] == "connected"
        assert "(via daemon)" in footctl("status").stdout
        changed = one_json(footctl("--json", "set", "--intensity", "2"))
        assert changed["via"] == "daemon" and changed["device"]["reported"]["intensity"] == 2
        stopped = one_json(footctl("--json", "stop"))
        assert stopped["via"] == "daemon" and stopped["device"]["reported"]["power"] is False
        ran = footctl("--json", "run", "tiny")
        assert ran.returncode == 0, ran.stderr
        result = one_json(ran)
        assert (result["via"], result["end_reason"]) == ("daemon", "completed")
        assert "step 2/2 pulse" in ran.stderr
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=CLI_TIMEOUT_S) == 143
    finally:
        if daemon.poll() is None:
            daemon.kill()
    sessions = one_json(footctl("--json", "history", "--include-simulated"))["sessions"]
    assert [(s["source"], s["end_reason"]) for s in sessions] == [
        ("cli", "stopped"), ("program", "completed"),
    ]
    # with the daemon gone, the CLI goes direct again
    assert one_json(footctl("--simulate", "shiatsu-aa55", "--json", "status"))["via"] == (
        "direct"
    )
