"""Second pass over issue 13 ("a newcomer's first hour"): what the first pass left
wrong, each through the real CLI in a subprocess where it is about what ships."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli_rig import footctl, one_json, sim_process


def config_file() -> Path:
    return Path(os.environ["FOOTCTL_CONFIG"])


# --- devices add: a virtual massager is saved as one -----------------------------------


def test_devices_add_saves_a_simulated_massager_as_simulated() -> None:
    path = config_file()
    added = footctl("--simulate", "shiatsu-aa55", "--json", "devices", "add", "--name",
                    "bedroom", "--timeout", "1")
    assert added.returncode == 0, added.stderr
    assert one_json(added)["simulate"] is True
    assert "simulate = true" in path.read_text()
    status = footctl("--json", "--device", "bedroom", "status")
    assert status.returncode == 0, status.stderr


def test_devices_add_over_a_sim_link_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = config_file()
    with sim_process(tmp_path / "sim.log", "shiatsu-aa55") as (link, _control):
        proc = footctl("--link", link, "devices", "add", "--name", "bedroom",
                       "--timeout", "1")
    assert proc.returncode == 2, proc.stderr
    assert "cannot be saved" in proc.stderr and "--link" in proc.stderr
    assert not path.exists()


# --- the config file is strictly typed ---------------------------------------------------


def test_config_values_of_the_wrong_type_are_errors_with_file_line_and_field(
    tmp_path: Path,
) -> None:
    path = config_file()
    path.write_text(
        f"profile_dirs = [{str(tmp_path / 'profiles')!r}]\n"  # a path is a string: fine
        "[caps]\n"
        'max_heat_minutes = "15"\n'  # line 3: a string, not a number
        'clamp = "yes"\n'  # line 4
        "no_heat = 1\n"  # line 5: an integer, not a boolean
        "max_session_minutes = 12\n"  # an integer is a number: fine
        "[[schedules]]\n"
        'kind = "bedtime"\n'
        'bedtime = "22:30"\n'
        'lead_minutes = "45"\n'  # line 10
        'days = ["mon", "tue"]\n'  # an array of days: fine
        'program = "no-heat"\n'
    )
    proc = footctl("config", "check")
    assert proc.returncode == 2, proc.stdout
    assert f"{path}:3: caps.max_heat_minutes: " in proc.stdout
    assert "not the string '15'" in proc.stdout
    assert f"{path}:4: caps.clamp: " in proc.stdout
    assert f"{path}:5: caps.no_heat: " in proc.stdout
    assert f"{path}:10: schedules[0].lead_minutes: " in proc.stdout
    data = one_json(footctl("--json", "config", "check"))
    assert sorted((p["line"], p["field"]) for p in data["problems"]) == [
        (3, "caps.max_heat_minutes"), (4, "caps.clamp"), (5, "caps.no_heat"),
        (10, "schedules[0].lead_minutes"),
    ]
    # Nothing of a file with type errors is applied.
    shown = footctl("config", "show")
    assert shown.returncode == 2 and "caps.no_heat" in shown.stderr


# --- config check goes on past the errors ------------------------------------------------


def test_config_check_lists_second_round_problems_past_type_errors() -> None:
    path = config_file()
    path.write_text(
        "[caps]\n"
        'max_heat_minutes = "15"\n'  # line 2: a type error (first round)
        "[[devices]]\n"
        'address = "F0:F0:00:00:00:01"\n'
        'profile = "shiatsu-aa56"\n'  # line 5: no such profile
        'name = "bedroom"\n'
        "[[devices]]\n"
        'address = "F0:F0:00:00:00:02"\n'
        'profile = "shiatsu-aa55"\n'
        'name = "Bedroom"\n'  # line 10: the same name again
        "[[schedules]]\n"
        'kind = "weekly"\n'
        'at = "25:00"\n'  # line 13: not a time
        'program = "no-heat"\n'
        "[[schedules]]\n"  # line 15: schedules[1]
        'kind = "weekly"\n'
        'at = "22:00"\n'
        'program = "nada"\n'  # no such program
    )
    data = one_json(footctl("--json", "config", "check"))
    assert data["ok"] is False
    found = {(p["line"], p["field"]) for p in data["problems"]}
    assert found == {
        (2, "caps.max_heat_minutes"), (13, "schedules[0].at"), (5, "devices[0].profile"),
        (10, "devices[1].name"), (15, "schedules[1]"),
    }
    text = footctl("config", "check").stdout
    assert "no program 'nada'" in text and "'Bedroom' is also the name of devices[0]" in text


def test_a_schedule_naming_a_massager_with_no_devices_is_an_error() -> None:
    config_file().write_text(
        '[[schedules]]\nkind = "weekly"\nat = "22:00"\nprogram = "no-heat"\ndevice = "kitchen"\n'
    )
    check = footctl("config", "check")
    assert check.returncode == 2, check.stdout
    assert "schedules[0]: no massager 'kitchen'" in check.stdout
    listed = footctl("schedule", "list")
    assert listed.returncode == 2 and "no massager 'kitchen'" in listed.stderr


def test_the_daemons_audit_knows_the_massagers_it_holds() -> None:
    from datetime import UTC, datetime

    from footctl.config import Config
    from footctl.scheduler import audit_config

    config = Config.model_validate({"schedules": [
        {"kind": "weekly", "at": "22:00", "program": "no-heat", "device": "shiatsu-aa55"}]})
    now = datetime.now(UTC)
    assert [p.kind for p in audit_config(config, now)] == ["unknown_device"]
    assert audit_config(config, now, held={"shiatsu-aa55": "C4:00:00:00:00:01"}) == []


# --- settings below their floor: the value that applies, and why -------------------------


def test_config_shows_and_warns_about_settings_below_their_floor() -> None:
    path = config_file()
    path.write_text("[caps]\ncooldown_minutes = 0\nintensity_step_seconds = 0\n")
    check = footctl("--json", "config", "check")
    assert check.returncode == 0, check.stdout  # a warning, not an error
    warned = {(w["line"], w["field"]): w["reason"] for w in one_json(check)["warnings"]}
    assert set(warned) == {(2, "caps.cooldown_minutes"), (3, "caps.intensity_step_seconds")}
    assert "15 applies on a real radio" in warned[(2, "caps.cooldown_minutes")]
    assert "5 applies on a real radio" in warned[(3, "caps.intensity_step_seconds")]
    shown = one_json(footctl("--json", "config", "show", "--profile", "shiatsu-aa55"))
    rows = {r["setting"]: r for r in shown["caps"]}
    assert rows["cooldown_minutes"]["value"] == 0 and rows["cooldown_minutes"]["applies"] == 15
    assert rows["intensity_step_seconds"]["applies"] == 5
    assert rows["max_session_minutes"]["applies"] == rows["max_session_minutes"]["value"]
    limits = {r["limit"]: r for r in shown["limits"]["limits"]}
    assert limits["cooldown minutes"]["value"] == 15.0
    assert limits["cooldown minutes"]["source"] == "floor (real radio)"
    assert limits["ramp seconds/level"]["value"] == 5.0
    text = footctl("config", "show").stdout
    line = next(x for x in text.splitlines() if "cooldown_minutes" in x)
    assert "applies: 15 on a real radio" in line


# --- profile check: two things with one code on the wire ---------------------------------

SHIPPED_PROFILES = Path(__file__).resolve().parents[1] / "device_profiles"


def test_profile_check_finds_duplicate_mode_and_heat_codes(tmp_path: Path) -> None:
    text = (SHIPPED_PROFILES / "shiatsu-aa55.toml").read_text()
    mine = tmp_path / "dup.toml"
    mine.write_text(
        text.replace('{ name = "rolling", code = 2 }', '{ name = "rolling", code = 1 }')
        .replace("heat_levels = [{ level = 1, celsius = 40 }]",
                 "heat_levels = [{ level = 1, celsius = 40, code = 0 }]")
    )
    assert mine.read_text().count("code = 1 }") == 2 and "code = 0 }" in mine.read_text()
    lines = mine.read_text().splitlines()
    rolling = next(i for i, x in enumerate(lines, 1) if '"rolling"' in x)
    heat = next(i for i, x in enumerate(lines, 1) if x.startswith("heat_levels"))
    proc = footctl("profile", "check", str(mine))
    assert proc.returncode == 2, proc.stderr
    assert (f"{mine}:{rolling}: capabilities.modes.1.code: mode 'rolling' has code 0x01, "
            "as mode 'kneading' does") in proc.stderr
    assert f"{mine}:{heat}: capabilities.heat_levels.0.code: heat level 1 has code 0x00, " \
           "as heat off does" in proc.stderr


def test_two_chambers_on_one_key_do_not_load() -> None:
    from footctl.device.profile.loader import load_profile_text
    from footctl.errors import ProfileError

    text = (SHIPPED_PROFILES / "aircomp-duo.toml").read_text()
    assert load_profile_text(text).id == "aircomp-duo"
    bad = text.replace('calves = "calves_key"', 'calves = "feet_key"')
    with pytest.raises(ProfileError) as caught:
        load_profile_text(bad)
    assert "settings.zone" in str(caught.value) and "two chambers share one key" in str(
        caught.value)


# --- program check: adapted is not clamped; durations as a person reads them -------------

SHORT = """
name = "short"
[[steps]]
duration = "9m55s"
mode = "rolling"
intensity_percent = 60
[[steps]]
duration = "10m"
mode = "kneading"
intensity = 2
"""


def test_program_check_tells_adapted_from_clamped_like_its_json() -> None:
    programs = Path(os.environ["FOOTCTL_PROGRAM_DIR"])
    programs.mkdir(parents=True)
    (programs / "short.toml").write_text(SHORT)
    proc = footctl("program", "check", "short", "--simulate", "shiatsu-aa55")
    assert proc.returncode == 0, proc.stderr
    step1 = next(x for x in proc.stdout.splitlines() if x.startswith(" 1 "))
    assert step1.endswith("adapted") and "clamped" not in proc.stdout
    assert "runs as written" not in proc.stdout
    assert "1 step(s) adapted to shiatsu-aa55 (nothing lowered by the caps)" in proc.stdout
    data = one_json(footctl("--json", "program", "check", "short", "--simulate", "shiatsu-aa55"))
    assert data["clamped"] == [] and [f["step"] for f in data["adapted"]] == [1]
    config_file().write_text("[caps]\nmax_session_minutes = 15\n")
    refused = footctl("program", "check", "short", "--simulate", "shiatsu-aa55")
    assert refused.returncode == 4
    assert "asks 19 min 55 s, cap 15 min" in refused.stdout, refused.stdout


# --- schedule list / next: the starts that will really run ------------------------------


def test_schedule_list_and_next_show_what_skip_and_pause_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime, timedelta

    from footctl.schedule import night_of

    monkeypatch.setenv("TZ", "UTC")  # "tonight" is named in the local zone
    now = datetime.now(UTC)
    first = (now + timedelta(minutes=2)).replace(second=0, microsecond=0)
    config_file().write_text(
        f'[[schedules]]\nkind = "weekly"\nat = "{first:%H:%M}"\nprogram = "no-heat"\n'
        'tz = "UTC"\n'
    )
    assert footctl("schedule", "skip", "tonight").returncode == 0
    in_tonight = night_of(first, UTC) == night_of(now, UTC)
    expected = first + timedelta(days=1) if in_tonight else first
    (row,) = one_json(footctl("--json", "schedule", "list"))["schedules"]
    assert row["next_as_scheduled"]["at"] == first.isoformat()
    assert row["next"]["at"] == expected.isoformat()
    assert (row["next_held"] is not None) is in_tonight
    listed = footctl("schedule", "list").stdout
    assert f"next {expected:%a %Y-%m-%d %H:%M} UTC" in listed
    nexts = one_json(footctl("--json", "schedule", "next", "--count", "2"))["starts"]
    assert [s["held"] is not None for s in nexts] == [in_tonight, False]

    assert footctl("schedule", "pause").returncode == 0
    (row,) = one_json(footctl("--json", "schedule", "list"))["schedules"]
    assert row["next"] is None and "paused" in row["next_held"]
    assert "next none while paused" in footctl("schedule", "list").stdout
    text = footctl("schedule", "next", "--count", "5").stdout
    assert text.count("(will not run: paused)") == 5, text


# --- cosmetics: usage errors, help texts, warnings once, where a cap comes from -----------


def test_a_usage_error_shows_the_commands_usage_and_one_prefix() -> None:
    proc = footctl("set", "--intensity", "x")
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: footctl set "), proc.stderr
    assert "footctl: set: argument --intensity: 'x' is not a whole number" in proc.stderr
    assert "footctl: footctl" not in proc.stderr


@pytest.mark.parametrize(("command", "options"), [
    (["set"], ["--intensity N", "--mode NAME", "--zone N"]),
    (["rate"], ["N", "--note TEXT"]),
])
def test_every_option_of_set_and_rate_has_help(command: list[str], options: list[str]) -> None:
    lines = footctl(*command, "--help", check=True).stdout.splitlines()
    for option in options:
        # "  --mode NAME           massage mode ..." or the help on the next line
        index = next(i for i, x in enumerate(lines)
                     if x.startswith("  ") and x[2] != " " and x.strip().split("  ")[0] == option)
        same_line = lines[index].strip()[len(option):].strip()
        below = lines[index + 1] if index + 1 < len(lines) else ""
        next_line = below.strip() if below.startswith(" " * 20) else ""
        assert same_line or next_line, f"{option} has no help:\n" + "\n".join(lines)


def test_config_check_reports_an_invalid_program_file_once() -> None:
    programs = Path(os.environ["FOOTCTL_PROGRAM_DIR"])
    programs.mkdir(parents=True)
    (programs / "broken.toml").write_text(
        'name = "broken"\n[[steps]]\nduration = 60\nmode = "kneading"\nintensity = "x"\n'
    )
    proc = footctl("config", "check")
    assert proc.returncode == 2
    assert (proc.stdout + proc.stderr).count("broken.toml") == 1, (proc.stdout, proc.stderr)
    listed = footctl("schedule", "list")
    assert listed.stderr.count("broken.toml") == 1, listed.stderr
    assert "footctl: warning: skipped an invalid program file" in listed.stderr


def test_a_refusal_by_a_default_cap_does_not_cite_a_config_file() -> None:
    from datetime import UTC, datetime, timedelta

    from footctl.schedule import may_start

    now = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    default = may_start(now, now - timedelta(minutes=5), 30).message
    assert "cooldown_minutes = 30, the default" in default and "of the config file" not in default
    mine = may_start(now, now - timedelta(minutes=5), 20).message
    assert "cooldown_minutes = 20 in [caps] of the config file" in mine
    night = may_start(now, None, 30, sessions_tonight=2).message
    assert "max_sessions_per_night = 2, the default" in night
