"""``footctl schedule list`` and ``footctl schedule next``: the schedules in the
config file and their next starts, in local time."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from footctl.config import Config
from footctl.errors import ExitCode, UsageError
from footctl.schedule import local_zone, night_of
from footctl.scheduler import (
    audit_config,
    default_state_path,
    describe,
    read_controls,
    upcoming,
)

if TYPE_CHECKING:
    from footctl.cli import Output

# `schedule next` shows at most this many starts: a year of nightly starts is no use.
MAX_COUNT = 100

NO_SCHEDULES = "no schedules (add [[schedules]] to the config file; see README.md, 'Schedules')"


def show(args: argparse.Namespace, config: Config, out: Output) -> int:
    """``schedule list`` or ``schedule next``."""
    now = datetime.now(UTC)
    zone = local_zone()
    schedules = list(config.schedules)
    if args.schedule_command == "list":
        rows: list[dict[str, Any]] = []
        lines: list[str] = []
        for index, s in enumerate(schedules):
            nxt = upcoming([s], now, 1)
            when = nxt[0].to_dict(zone)["local"] if nxt else "never"
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
                    "next": nxt[0].to_dict(zone) if nxt else None,
                }
            )
        controls = read_controls(default_state_path())
        if controls.paused:
            lines.append("paused: no scheduled starts until 'footctl schedule resume'")
        tonight = night_of(now, zone)
        if tonight in controls.skip_nights:
            lines.append(f"tonight ({tonight:%a %Y-%m-%d}) skipped")
        # Found now rather than at start time, at night, when nobody reads the log.
        problems = audit_config(config, now)
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
    if not 1 <= args.count <= MAX_COUNT:
        raise UsageError(f"--count must be 1 to {MAX_COUNT}")
    starts = [u.to_dict(zone) for u in upcoming(schedules, now, args.count)]
    lines = [
        f"{s['local']}  {s['program']}" + (f" on {s['device']}" if s["device"] else "")
        for s in starts
    ]
    out.result({"ok": True, "starts": starts}, "\n".join(lines) or NO_SCHEDULES)
    return ExitCode.OK
