"""Issue 13, "a newcomer's first hour": each item through the real CLI in a subprocess
where it is about the CLI, else through the module that holds it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cli_rig import CLI_TIMEOUT_S, footctl, one_json, start_owner, wait_until
from footctl.journal_hooks import FLUSH_S
from footctl.virtual.sim import SimControl


def config_file() -> Path:
    return Path(os.environ["FOOTCTL_CONFIG"])


# --- 1. config errors: every problem, with file, line and field ----------------------


def test_config_errors_list_every_problem_with_file_line_and_field() -> None:
    path = config_file()
    path.write_text(
        "[caps]\n"
        "max_session_minutes = 99\n"  # line 2: past the ceiling
        "no_heat = false\n"
        "max_heet_minutes = 5\n"  # line 4: misspelt
        "\n"
        "[[schedules]]\n"
        'kind = "weekly"\n'
        'at = "25:00"\n'  # line 8: not a time
        'program = "wind-down"\n'
    )
    proc = footctl("schedule", "list")
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:2: caps.max_session_minutes" in proc.stderr
    assert f"{path}:4: caps.max_heet_minutes: unknown field" in proc.stderr
    assert f"{path}:8: schedules[0].at" in proc.stderr
    assert "Traceback" not in proc.stderr
    data = one_json(footctl("--json", "schedule", "list"))
    assert [(p["line"], p["field"]) for p in data["problems"]] == [
        (2, "caps.max_session_minutes"), (4, "caps.max_heet_minutes"), (8, "schedules[0].at"),
    ]


def test_unknown_device_profile_names_the_config_file_and_line() -> None:
    path = config_file()
    path.write_text('[[devices]]\naddress = "F0:F0:00:00:00:01"\nprofile = "shiatsu-aa56"\n')
    proc = footctl("program", "check", "wind-down")
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:3: devices[0].profile: no profile 'shiatsu-aa56'" in proc.stderr
    assert "shiatsu-aa55" in proc.stderr  # the known ones, to pick from


# --- 2. one bad program or profile file is skipped, the rest go on ----------------------


def test_one_bad_program_file_does_not_break_the_others() -> None:
    user_dir = Path(os.environ["FOOTCTL_PROGRAM_DIR"])
    user_dir.mkdir(parents=True)
    (user_dir / "broken.toml").write_text(
        'name = "broken"\n[[steps]]\nduration = 60\nmode = "kneading"\nintensity = "x"\n'
    )
    (user_dir / "mine.toml").write_text(
        'name = "mine"\n[[steps]]\nduration = 60\nmode = "kneading"\nintensity = 1\n'
    )
    proc = footctl("program", "list")
    assert proc.returncode == 0, proc.stderr
    assert "wind-down" in proc.stdout and "mine" in proc.stdout
    assert f"{user_dir / 'broken.toml'}:5" in proc.stderr
    check = footctl("program", "check", "no-heat", "--profile", "shiatsu-aa55")
    assert check.returncode == 0, check.stderr
    asked = footctl("program", "check", "broken", "--profile", "shiatsu-aa55")
    assert asked.returncode == 2
    assert "broken.toml:5: step 1: intensity" in asked.stderr


def test_one_bad_profile_file_does_not_break_the_others(tmp_path: Path) -> None:
    extra = tmp_path / "profiles"
    extra.mkdir()
    (extra / "mine.toml").write_text('schema_version = 1\nid = "mine"\nnmae = "typo"\n')
    proc = footctl("profiles", env={"FOOTCTL_PROFILE_DIR": str(extra)})
    assert proc.returncode == 0, proc.stderr
    assert "shiatsu-aa55" in proc.stdout
    assert f"{extra / 'mine.toml'}:3" in proc.stderr
    asked = footctl("program", "check", "no-heat", "--profile", "mine",
                    env={"FOOTCTL_PROFILE_DIR": str(extra)})
    assert asked.returncode == 2
    assert "mine.toml:3: nmae: unknown field" in asked.stderr


# --- 3. schedules checked when listing: unknown programs and devices, collisions -------


def test_schedule_list_reports_unknown_program_and_device_and_collisions() -> None:
    config_file().write_text(
        '[caps]\ncooldown_minutes = 30\n'
        '[[devices]]\naddress = "F0:F0:00:00:00:01"\nprofile = "shiatsu-aa55"\nname = "bedroom"\n'
        '[[schedules]]\nkind = "weekly"\nat = "22:00"\nprogram = "wind-dwon"\n'
        '[[schedules]]\nkind = "weekly"\nat = "22:00"\nprogram = "no-heat"\ndevice = "kitchen"\n'
        '[[schedules]]\nkind = "weekly"\nat = "21:00"\nprogram = "quick-relax"\n'
        '[[schedules]]\nkind = "weekly"\nat = "21:30"\nprogram = "no-heat"\ndevice = "bedroom"\n'
    )
    proc = footctl("schedule", "list")
    assert proc.returncode == 2, proc.stderr
    assert "schedule 0: no program 'wind-dwon'" in proc.stderr
    assert "schedule 1: no massager 'kitchen'" in proc.stderr
    # quick-relax (10 min) at 21:00 + 30 min cooldown: the 21:30 start is refused.
    assert "schedule 3: starts 30 min after schedule 2" in proc.stderr
    assert "cooldown_minutes = 30" in proc.stderr
    data = one_json(footctl("--json", "schedule", "list"))
    kinds = {(p["schedule"], p["kind"]) for p in data["problems"]}
    assert kinds == {(0, "unknown_program"), (1, "unknown_device"), (3, "cooldown_collision")}


def test_schedule_list_of_good_schedules_is_quiet() -> None:
    config_file().write_text(
        '[[schedules]]\nkind = "weekly"\nat = "21:00"\nprogram = "quick-relax"\n'
        '[[schedules]]\nkind = "weekly"\nat = "21:41"\nprogram = "no-heat"\n'
    )
    proc = footctl("schedule", "list")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_audit_finds_more_starts_in_a_night_than_the_limit() -> None:
    from datetime import UTC, datetime

    from footctl.schedule import parse_schedule
    from footctl.scheduler import audit_schedules

    schedules = [
        parse_schedule({"kind": "weekly", "at": at, "program": "p", "tz": "UTC"})
        for at in ("19:00", "21:00", "23:00")
    ]
    problems = audit_schedules(
        schedules, programs={"p": 600.0}, devices=None, default_device=None,
        cooldown_minutes=30, max_sessions_per_night=2, now=datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert [(p.index, p.kind) for p in problems] == [(2, "night_limit")]
    assert "max_sessions_per_night = 2" in problems[0].message


# --- 4. program starts and manual sessions have separate budgets ------------------------


def test_manual_sessions_do_not_use_up_the_program_starts_of_the_night(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from footctl.config import Config
    from footctl.control.owner import check_start_limits
    from footctl.errors import SafetyRefused
    from footctl.journal import Journal

    now = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    with Journal(tmp_path / "j.sqlite3", clock=lambda: now) as journal:
        for hours_ago in (3, 2):  # two quick tests by hand this evening
            sid = journal.start_session("DEV", source="manual", at=now - timedelta(hours=hours_ago))
            journal.end_session(sid, "stopped", at=now - timedelta(hours=hours_ago, minutes=-2))
        check_start_limits(journal, Config(), "DEV")  # the bedtime program may start
        for hours_ago in (5, 4):  # two program starts: the night's budget
            sid = journal.start_session("DEV", source="program", program="no-heat",
                                        at=now - timedelta(hours=hours_ago))
            journal.end_session(sid, "completed", at=now - timedelta(hours=hours_ago, minutes=-12))
        with pytest.raises(SafetyRefused) as info:
            check_start_limits(journal, Config(), "DEV")
    assert info.value.reason == "night_limit"
    assert "max_sessions_per_night = 2" in info.value.message


def test_a_cooldown_refusal_names_its_setting() -> None:
    from datetime import UTC, datetime, timedelta

    from footctl.schedule import may_start

    now = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    check = may_start(now, now - timedelta(minutes=5), 30)
    assert check.reason == "cooldown"
    assert "cooldown_minutes = 30" in check.message


# --- 5. crash recovery journals the heat the session had -------------------------------


# Long enough for a few journal flushes (FLUSH_S) after the heat came on.
HEATED_S = 3 * FLUSH_S


def test_sigkilled_heated_session_is_journaled_with_its_heat(
    sim_aa55: tuple[str, SimControl],
) -> None:
    link, ctl = sim_aa55
    guardian = start_owner(link, "set", "--heat", "1")
    assert guardian.stdout is not None
    guardian.stdout.readline()
    assert ctl.request({"cmd": "state"})["heat"] == 1
    time.sleep(HEATED_S)
    guardian.kill()  # SIGKILL: no chance to write the session's end
    guardian.wait(timeout=CLI_TIMEOUT_S)
    wait_until(lambda: not ctl.request({"cmd": "state"})["connected"], what="the crash")
    recovered = footctl("--link", link, "status")
    assert recovered.returncode == 0 and "died" in recovered.stderr, recovered.stderr
    history = one_json(footctl("--json", "history", "--include-simulated"))
    [row] = [r for r in history["sessions"] if r["ended_by"] == "recovered_after_crash"]
    assert row["peak_heat"] == 1
    assert row["heat_s"] >= HEATED_S - FLUSH_S - 1.0  # at most one flush (and the ramp) lost


# --- 6. sessions on virtual massagers are kept apart ------------------------------------


def test_virtual_massager_sessions_stay_out_of_history_and_rating() -> None:
    ran = footctl("--simulate", "shiatsu-aa55", "set", "--intensity", "2")
    assert ran.returncode == 0, ran.stderr
    plain = one_json(footctl("--json", "history"))
    assert plain["sessions"] == [] and plain["nights"] == []
    shown = one_json(footctl("--json", "history", "--include-simulated"))
    [row] = shown["sessions"]
    assert row["simulated"] is True and row["source"] == "cli"
    rated = footctl("rate", "4")
    assert rated.returncode == 2, rated.stdout
    assert "no session" in rated.stderr


# --- 7. no Bluetooth stack: say what is missing, exit 3 ---------------------------------


@pytest.mark.parametrize("command", [["scan", "--timeout", "1"], ["status"], ["stop"],
                                     ["run", "no-heat"]])
def test_no_bluetooth_stack_is_exit_3_with_advice(tmp_path: Path, command: list[str]) -> None:
    config_file().write_text(
        '[[devices]]\naddress = "F0:F0:00:00:00:01"\nprofile = "shiatsu-aa55"\n'
    )
    nowhere = f"unix:path={tmp_path / 'no-system-bus'}"
    proc = footctl(*command, env={"DBUS_SYSTEM_BUS_ADDRESS": nowhere})
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "no Bluetooth stack" in proc.stderr
    assert "BlueZ" in proc.stderr and "--simulate" in proc.stderr


# --- 8. progress when stderr is not a terminal -----------------------------------------


def test_set_logs_its_ramp_when_stderr_is_not_a_terminal() -> None:
    config_file().write_text("[caps]\nintensity_step_seconds = 1\n")
    proc = footctl("--simulate", "shiatsu-aa55", "set", "--intensity", "3")
    assert proc.returncode == 0, proc.stderr
    ramp = [line for line in proc.stderr.splitlines() if "ramping intensity" in line]
    # Two ramp steps 1 s apart: the first is logged, the second is within the interval.
    assert ramp == ["ramping intensity: 1 of 3, next step in 1 s"], proc.stderr


def test_program_progress_is_logged_within_a_long_step_off_a_terminal() -> None:
    import io

    from footctl.commands.programs import PROGRAM_LOG_INTERVAL_S, ProgressLine
    from footctl.programs.runner import Progress

    now = [0.0]
    stream = io.StringIO()
    line = ProgressLine(stream, clock=lambda: now[0])
    step_s = 2.5 * PROGRAM_LOG_INTERVAL_S
    for second in range(int(step_s)):  # one long step, progress every second
        now[0] = float(second)
        line(Progress("long", 1, 2, "warm", float(second), 2 * step_s, step_s - second, False))
    now[0] = step_s
    line(Progress("long", 2, 2, "cool", step_s, 2 * step_s, step_s, False))
    logged = stream.getvalue().splitlines()
    assert len(logged) == 4, logged  # at 0 s, 60 s, 120 s, and the step change
    assert "step 2/2" in logged[-1]


# --- 9. reconnect when the device is heard again, not on a backoff timer ---------------


async def test_reconnect_goes_when_the_device_advertises_not_on_a_timer(
    profiles: dict[str, Any],
) -> None:
    import asyncio

    from footctl.device.session import DeviceSession
    from footctl.device.transport.ble import Radio
    from footctl.virtual import radio_for_world
    from footctl.virtual.link import VirtualWorld
    from footctl.virtual.peripheral import VirtualMassager

    profile = profiles["shiatsu-aa55"]
    world = VirtualWorld()
    massager = await VirtualMassager.create(world, profile)
    vradio = await radio_for_world(world)
    radio = Radio("virtual link", vradio.scanner_backend, vradio.client_backend)
    timers: list[float] = []

    async def timer_that_never_fires(delay: float) -> None:
        timers.append(delay)
        await asyncio.Event().wait()

    session = DeviceSession(profile, radio, sleep=timer_that_never_fires)
    try:
        await session.connect()
        await massager.drop()
        assert await session._wait_for(lambda: not session.connected, 5.0)
        await asyncio.sleep(0.5)  # away for a while: the device is not heard
        assert not session.connected
        await massager.restore()
        # Heard again -> connected, with no backoff timer in the way (the timer here
        # never fires; a generous bound only keeps a broken build from hanging).
        assert await session._wait_for(lambda: session.connected, 10.0)
        assert timers == []
    finally:
        await session.close()
        await vradio.close()
        await massager.close()
        await world.close()


# --- 10. conveniences ---------------------------------------------------------------------


def test_bash_completion_completes_commands_actions_and_options(tmp_path: Path) -> None:
    proc = footctl("completion", "bash")
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "footctl.bash"
    script.write_text(proc.stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        shell = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
                 '_footctl; printf "%s\\n" "${COMPREPLY[@]}"')
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S, check=True)
        return done.stdout.split()

    assert complete("footctl", "sch") == ["schedule"]
    assert complete("footctl", "--json", "program", "c") == ["check"]
    assert "tonight" in complete("footctl", "schedule", "skip", "")
    assert {"--intensity", "--heat", "--mode", "--zone"} <= set(complete("footctl", "set", "--"))


@pytest.mark.parametrize(("shell", "marker"), [("zsh", "bashcompinit"),
                                               ("fish", "complete -c footctl")])
def test_zsh_and_fish_completion_scripts(shell: str, marker: str) -> None:
    proc = footctl("completion", shell)
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout
    assert "doctor" in proc.stdout and "schedule" in proc.stdout


def test_config_show_gives_each_cap_its_source_and_range_and_every_path() -> None:
    path = config_file()
    path.write_text("[caps]\nmax_session_minutes = 15\n")
    proc = footctl("config", "show", "--profile", "ems-v2")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if "max_session_minutes" in x)
    assert "15.0" in line and f"{path}:2" in line and "valid: > 0, <= 45" in line
    line = next(x for x in proc.stdout.splitlines() if "max_sessions_per_night" in x)
    assert "default" in line and "valid: >= 1, <= 4" in line
    data = one_json(footctl("--json", "config", "show"))
    where = {row["what"]: row["path"] for row in data["paths"]}
    assert where["journal"] == str(Path(os.environ["FOOTCTL_DATA_DIR"]) / "journal.sqlite3")
    assert where["config file"] == str(path)
    assert "limits on ems-v2" in proc.stdout


def test_config_check_lists_every_problem_and_passes_a_good_file() -> None:
    path = config_file()
    path.write_text(
        '[[devices]]\naddress = "F0:F0:00:00:00:01"\nprofile = "nope"\n'
        '[[schedules]]\nkind = "weekly"\nat = "22:00"\nprogram = "nada"\n'
    )
    proc = footctl("config", "check")
    assert proc.returncode == 2
    assert f"{path}:3: devices[0].profile: no profile 'nope'" in proc.stdout
    assert f"{path}:4: schedules[0]: no program 'nada'" in proc.stdout
    path.write_text('[[schedules]]\nkind = "weekly"\nat = "22:00"\nprogram = "no-heat"\n')
    good = footctl("config", "check")
    assert good.returncode == 0, good.stdout
    assert "no problems found" in good.stdout


def test_doctor_names_the_missing_bluetooth_stack(tmp_path: Path) -> None:
    nowhere = f"unix:path={tmp_path / 'no-system-bus'}"
    proc = footctl("--json", "doctor", env={"DBUS_SYSTEM_BUS_ADDRESS": nowhere})
    assert proc.returncode == 1
    checks = {c["name"]: c for c in one_json(proc)["checks"]}
    assert checks["python"]["status"] == "ok"
    assert checks["bluetooth stack"]["status"] == "fail"
    assert "BlueZ" in checks["bluetooth stack"]["advice"]
    assert checks["daemon"]["status"] == "warn"  # none runs here


def test_schedule_pause_skip_and_resume_hold_the_daemons_starts() -> None:
    from datetime import UTC, datetime, timedelta

    from footctl.schedule import local_zone, night_of, parse_schedule
    from footctl.scheduler import Scheduler, default_state_path

    now = datetime.now(UTC)
    at = (now + timedelta(minutes=1)).strftime("%H:%M")
    schedule = parse_schedule({"kind": "weekly", "at": at, "program": "no-heat", "tz": "UTC"})
    due_at = now.replace(second=0, microsecond=0) + timedelta(minutes=1, seconds=30)

    def starts_after(*command: str) -> bool:
        if command:
            assert footctl("schedule", *command).returncode == 0
        scheduler = Scheduler([schedule], default_state_path())
        scheduler.last_checked.clear()  # as if new: only the controls on file count
        scheduler.check(now)
        return any(d.decision.action == "start" for d in scheduler.check(due_at))

    assert starts_after("pause") is False
    assert "paused" in footctl("schedule", "list").stdout
    assert starts_after("resume") is True
    # "tonight" is the night of now (local); a start just past noon is the next night's.
    next_night = night_of(due_at, local_zone()) != night_of(datetime.now(UTC), local_zone())
    assert starts_after("skip", "tonight") is next_night
    assert starts_after("resume") is True


def test_devices_add_writes_the_scanned_massager_into_the_config() -> None:
    path = config_file()
    path.write_text("# mine\n[caps]\nno_heat = true\n")
    proc = footctl("--simulate", "shiatsu-aa55", "--json", "devices", "add", "--name",
                   "bedroom", "--timeout", "1")
    assert proc.returncode == 0, proc.stderr
    added = one_json(proc)
    text = path.read_text()
    assert text.startswith("# mine\n[caps]\nno_heat = true\n")
    assert f'address = "{added["address"]}"' in text and 'profile = "shiatsu-aa55"' in text
    assert footctl("config", "check").returncode == 0
    again = footctl("--simulate", "shiatsu-aa55", "devices", "add", "--name", "bedroom",
                    "--timeout", "1")
    assert again.returncode == 2 and "already" in again.stderr
