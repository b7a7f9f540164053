"""What a newcomer found driving virtual massagers from the README alone
(FINDINGS.md), each through the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from cli_rig import CLI_TIMEOUT_S, footctl, footctl_argv, one_json, use_config

SHIPPED = Path(__file__).resolve().parent.parent / "device_profiles" / "shiatsu-aa55.toml"


def broken_profile(directory: Path) -> Path:
    """A copy of a shipped profile as 'mine', with a misspelt field on line 1."""
    directory.mkdir(parents=True, exist_ok=True)
    text = SHIPPED.read_text().replace('id = "shiatsu-aa55"', 'id = "mine"')
    path = directory / "mine.toml"
    path.write_text("mtuu = 23\n" + text)
    return path


def two_massagers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, good: bool) -> Path:
    profile = broken_profile(tmp_path / "profiles")
    bedroom = ('[[devices]]\nname = "bedroom"\nprofile = "shiatsu-aa55"\n'
               'address = "C2:81:56:37:5E:29"\nsimulate = true\n') if good else ""
    use_config(tmp_path, monkeypatch,
               f"profile_dirs = [{str(profile.parent)!r}]\n" + bedroom
               + '[[devices]]\nname = "kitchen"\nprofile = "mine"\n'
               'address = "C2:81:56:37:5E:2A"\nsimulate = true\n')
    return profile


# --- stop: one broken profile file does not keep the others from being stopped ---------


def test_stop_reaches_the_other_massagers_when_one_profile_file_is_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = two_massagers(tmp_path, monkeypatch, good=True)
    proc = footctl("stop")
    # bedroom is switched off; kitchen cannot be (its profile does not load): named,
    # with the file, line and field, and exit 3 as for any off not confirmed.
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert "bedroom" in proc.stdout and "off" in proc.stdout, proc.stdout
    assert "kitchen: everything off NOT confirmed" in proc.stderr, proc.stderr
    assert f"{profile}:1: mtuu" in proc.stderr, proc.stderr
    data = one_json(footctl("--json", "stop"))
    assert data["exit_code"] == 3
    assert [m["device"] for m in data["unconfirmed"]] == ["kitchen"]
    assert [d["name"] for d in data["devices"]] == ["bedroom"]


def test_stop_names_the_massager_whose_profile_file_is_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = two_massagers(tmp_path, monkeypatch, good=False)
    proc = footctl("stop")
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert "kitchen" in proc.stderr and "NOT confirmed" in proc.stderr, proc.stderr
    assert f"{profile}:1: mtuu" in proc.stderr, proc.stderr
    assert "nothing running" not in proc.stdout + proc.stderr


def test_a_stop_that_reaches_no_massager_names_each_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real massager (no radio here, or none in range): the off is not confirmed.
    use_config(tmp_path, monkeypatch,
               '[[devices]]\nname = "bedroom"\nprofile = "shiatsu-aa55"\n'
               'address = "F0:F0:00:00:00:01"\n')
    proc = footctl("--scan-timeout", "1", "stop")
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "bedroom: everything off NOT confirmed (" in proc.stderr, proc.stderr
    data = one_json(footctl("--scan-timeout", "1", "--json", "stop"))
    assert data["exit_code"] == 3
    [missed] = data["unconfirmed"]
    assert missed["device"] == "bedroom" and missed["device_id"] == "F0:F0:00:00:00:01"
    assert missed["reason"] and missed["advice"], missed


# --- the night limit says what counts --------------------------------------------------


def test_the_night_limit_says_programs_run_by_hand_count_too() -> None:
    from footctl.schedule import within_night_limit

    check = within_night_limit(2, 2)
    assert not check.allowed and check.reason == "night_limit"
    # Two 'footctl run' by hand used the night up: the message must not tell the user
    # that what they did by hand does not count.
    assert "by hand do not count" not in check.message
    assert "programs started by hand" in check.message and "count too" in check.message


# --- help: each command says what it does, and where the MQTT bridge runs ---------------


def test_each_commands_help_says_what_it_does() -> None:
    daemon = footctl("daemon", "--help")
    assert daemon.returncode == 0
    assert "hold the massagers, run the schedules" in daemon.stdout, daemon.stdout
    mqtt = footctl("mqtt", "--help")
    assert "footctl daemon --mqtt URL" in mqtt.stdout, mqtt.stdout
    top = footctl("--help")
    assert "the MQTT bridge (Home Assistant)" not in top.stdout  # it only checks a broker


# --- the daemon's first line says whether it bridges to MQTT ---------------------------


def test_the_daemons_first_line_names_the_mqtt_broker() -> None:
    # A broker nobody listens on: the bridge keeps retrying in the background, and the
    # daemon says where it bridges to (a newcomer otherwise cannot tell from its log).
    daemon = subprocess.Popen(
        footctl_argv("daemon", "--simulate", "shiatsu-aa55", "--mqtt", "mqtt://127.0.0.1:9"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert daemon.stderr is not None
        ready = daemon.stderr.readline()
        assert "footctl daemon: holding shiatsu-aa55" in ready, ready
        assert "MQTT mqtt://127.0.0.1:9" in ready, ready
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=CLI_TIMEOUT_S) == 143
        daemon.communicate()


# --- history and rate say that sessions on virtual massagers were left out --------------


def test_history_and_rate_say_virtual_sessions_were_left_out() -> None:
    from footctl.config import journal_path
    from footctl.journal import Journal

    journal_path().parent.mkdir(parents=True, exist_ok=True)
    with Journal(journal_path()) as journal:
        sid = journal.start_session("C2:81:56:37:5E:29", source="cli", simulated=True)
        journal.end_session(sid, "stopped")
    history = footctl("history")
    assert history.returncode == 0
    assert "1 on virtual massagers: --include-simulated" in history.stdout, history.stdout
    rate = footctl("rate", "4")
    assert rate.returncode == 2
    assert "(1 on virtual massagers did)" in rate.stderr, rate.stderr
    assert "--include-simulated" in rate.stderr
    assert footctl("rate", "4", "--include-simulated").returncode == 0


# --- 'footctl stop' from another terminal reaches a program run on --simulate -----------

TWO_MINUTES = """\
name = "two-minutes"
description = "long enough to be stopped"
[[steps]]
duration = "2m"
mode = "kneading"
intensity = 1
heat = 1
"""


def test_stop_from_another_terminal_ends_a_simulated_run(tmp_path: Path) -> None:
    programs = Path(os.environ["FOOTCTL_PROGRAM_DIR"])
    programs.mkdir(parents=True, exist_ok=True)
    (programs / "two-minutes.toml").write_text(TWO_MINUTES)
    run = subprocess.Popen(
        footctl_argv("--simulate", "shiatsu-aa55", "--json", "run", "two-minutes"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert run.stderr is not None
        line = run.stderr.readline()
        while "step 1/1" not in line:
            assert line, "no progress line"
            line = run.stderr.readline()
        stop = footctl("--json", "stop")
        assert stop.returncode == 0, stop.stderr
        data = one_json(stop)
        assert data["via"] == f"owner {run.pid}", data
        assert [d["reported"]["power"] for d in data["devices"]] == [False], data
        assert run.wait(timeout=CLI_TIMEOUT_S) == 0
        assert run.stdout is not None
        assert json.loads(run.stdout.read())["end_reason"] == "stopped"
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate()


# --- devices add shows that it scans ---------------------------------------------------


def test_devices_add_says_it_is_scanning() -> None:
    proc = footctl("--simulate", "ems-v2", "devices", "add", "--name", "x", "--timeout", "1")
    assert proc.returncode == 0, proc.stderr
    assert "scanning virtual link for 1 s..." in proc.stderr, proc.stderr
    quiet = footctl("--simulate", "ems-v2", "--json", "devices", "add", "--name", "y",
                    "--timeout", "1")
    assert quiet.returncode == 0 and "scanning" not in quiet.stderr, quiet.stderr


# --- watch says so when the owner it watches goes away ----------------------------------


def test_watch_ends_with_exit_3_and_a_reason_when_the_daemon_goes_away() -> None:
    daemon = subprocess.Popen(footctl_argv("daemon", "--simulate", "shiatsu-aa55"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher: subprocess.Popen[str] | None = None
    try:
        assert daemon.stderr is not None
        assert "footctl daemon: holding" in daemon.stderr.readline()
        watcher = subprocess.Popen(footctl_argv("watch"), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert watcher.stdout is not None
        assert json.loads(watcher.stdout.readline())["event"] == "state"
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=CLI_TIMEOUT_S) == 143
        _out, err = watcher.communicate(timeout=CLI_TIMEOUT_S)
        assert watcher.returncode == 3, err
        assert "owner went away" in err, err
    finally:
        for proc in (watcher, daemon):
            if proc is not None and proc.poll() is None:
                proc.kill()
        daemon.communicate()


def test_device_help_says_a_profile_id_names_a_massager_too() -> None:
    # --device shiatsu-aa55 picks the massager of that profile (Owner.pick): say so.
    assert "profile id" in footctl("status", "--help").stdout


def test_a_negative_level_is_a_usage_error_about_the_flag() -> None:
    for flag in ("--intensity", "--heat", "--zone"):
        proc = footctl("--simulate", "shiatsu-aa55", "set", flag, "-1")
        assert proc.returncode == 2, proc.stderr
        assert f"argument {flag}: '-1': a level must be" in proc.stderr, proc.stderr
        assert "Input should be" not in proc.stderr  # the API's wording, not the flag's
