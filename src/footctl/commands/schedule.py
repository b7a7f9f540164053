"""``footctl schedule list`` and ``footctl schedule next``: the schedules in the
config file and their next starts, in local time."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from footctl.config import Config
from footctl.errors import ExitCode, UsageError
from footctl.programs.loader import default_user_dir, scan_programs
from footctl.schedule import local_zone, night_of
from footctl.scheduler import (
    Controls,
    audit_config,
    default_state_path,
    describe,
    next_running,
    read_controls,
    upcoming,
)

if TYPE_CHECKING:
    from footctl.cli import Output

# `schedule next` shows at most this many starts: a year of nightly starts is no use.
MAX_COUNT = 100

NO_SCHEDULES = "no schedules (add [[schedules]] to the config file; see README.md, 'Schedules')"


def show(args: argparse.Namespace, config: Config, out: Output) -> int:
    """``schedule list`` or ``schedule next``: the starts that will really run, with
    those held by ``schedule pause`` or ``skip tonight`` marked as such."""
    now = datetime.now(UTC)
    zone = local_zone()
    schedules = list(config.schedules)
    controls = read_controls(default_state_path())
    if args.schedule_command == "list":
        return _list(config, now, zone, controls, out)
    if not 1 <= args.count <= MAX_COUNT:
        raise UsageError(f"--count must be 1 to {MAX_COUNT}")
    starts = []
    lines = [PAUSED] if controls.paused else []
    for u in upcoming(schedules, now, args.count):
        held = controls.holds(u.at, zone)
        starts.append({**u.to_dict(zone), "held": held})
        lines.append(
            f"{u.to_dict(zone)['local']}  {u.schedule.program}"
            + (f" on {u.schedule.device}" if u.schedule.device else "")
            + (f"  (will not run: {_held_word(controls, u.at, zone)})" if held else "")
        )
    out.result({"ok": True, "paused": controls.paused, "starts": starts},
               "\n".join(lines) if starts else NO_SCHEDULES)
    return ExitCode.OK


PAUSED = "paused: no scheduled starts until 'footctl schedule resume'"


def _held_word(controls: Controls, at: datetime, zone: tzinfo) -> str:
    """Why a start is held, in a word or two."""
    if controls.paused:
        return "paused"
    return f"skipped, night of {night_of(at, zone):%a %Y-%m-%d}"


def _list(config: Config, now: datetime, zone: tzinfo, controls: Controls, out: Output) -> int:
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    for index, s in enumerate(config.schedules):
        nxt = upcoming([s], now, 1)
        real = next_running([s], now, controls, zone)
        when = str(real.to_dict(zone)["local"]) if real else "none while paused" if (
            controls.paused and nxt) else "never"
        if nxt and (real is None or real.at != nxt[0].at):
            when += f" ({nxt[0].to_dict(zone)['local']}: {_held_word(controls, nxt[0].at, zone)})"
        lines.append(f"{index}: {describe(s)} - next {when}")
        rows.append(
            {
                "index": index,
                "kind": s.kind,
                "program": s.program,
                "device": s.device,
                "tz": s.tz,
                "missed_start_grace_minutes": s.missed_start_grace_minutes,
                "description": describe(s),
                "next": real.to_dict(zone) if real else None,
                "next_as_scheduled": nxt[0].to_dict(zone) if nxt else None,
                "next_held": controls.holds(nxt[0].at, zone) if nxt else None,
            }
        )
    if controls.paused:
        lines.append(PAUSED)
    tonight = night_of(now, zone)
    if tonight in controls.skip_nights:
        lines.append(f"tonight ({tonight:%a %Y-%m-%d}) skipped")
    # Found now rather than at start time, at night, when nobody reads the log.
    for skipped in scan_programs(default_user_dir()).problems:
        print(f"footctl: warning: skipped an invalid program file: {skipped}",
              file=sys.stderr, flush=True)
    problems = audit_config(config, now, quiet=True)
    for problem in problems:
        label = "error" if problem.error else "warning"
        print(f"footctl: {label}: {problem}", file=sys.stderr, flush=True)
    failed = any(p.error for p in problems)
    out.result(
        {"ok": not failed, "schedules": rows, "problems": [p.to_dict() for p in problems],
         "paused": controls.paused, "tonight_skipped": tonight in controls.skip_nights},
        "\n".join(lines) or NO_SCHEDULES,
    )
    return ExitCode.USAGE if failed else ExitCode.OK
