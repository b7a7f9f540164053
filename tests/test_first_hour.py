"""Issue 13, "a newcomer's first hour": each item through the real CLI in a subprocess
where it is about the CLI, else through the module that holds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Wall-clock bound for one CLI run; generous because CI machines are shared.
CLI_TIMEOUT_S = 60.0


def footctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion in a subprocess (the test's isolated dirs apply)."""
    return subprocess.run(
        [sys.executable, "-m", "footctl.cli", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, **(env or {})},
        check=False,
    )


def one_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """stdout is exactly one JSON object."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout + proc.stderr
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


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
