"""``footctl schedule skip tonight``, ``schedule pause`` and ``schedule resume``.

The controls live in the scheduler's state file (``scheduler.json`` in the state
dir); a running daemon reads them on its next pass (every 15 s), so nothing has to
be restarted.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from footctl.errors import ExitCode
from footctl.schedule import local_zone, night_of
from footctl.scheduler import Controls, default_state_path, read_controls, write_controls

if TYPE_CHECKING:
    from footctl.cli import Output


def _report(out: Output, controls: Controls, text: str) -> int:
    out.result({"ok": True, "state_file": str(default_state_path()), **controls.to_json()}, text)
    return ExitCode.OK


def skip(args: argparse.Namespace, out: Output) -> int:
    """Skip tonight's starts (the night runs from noon to noon)."""
    path = default_state_path()
    tonight = night_of(datetime.now(UTC), local_zone())
    controls = read_controls(path)
    controls = dataclasses.replace(controls, skip_nights=controls.skip_nights | {tonight})
    write_controls(path, controls)
    return _report(out, controls, f"tonight ({tonight:%a %Y-%m-%d}) skipped: no scheduled "
                   "program starts until tomorrow noon ('footctl schedule resume' undoes it)")


def pause(args: argparse.Namespace, out: Output) -> int:
    """Pause every schedule until ``schedule resume``."""
    path = default_state_path()
    controls = dataclasses.replace(read_controls(path), paused=True)
    write_controls(path, controls)
    return _report(out, controls, "schedules paused until 'footctl schedule resume'")


def resume(args: argparse.Namespace, out: Output) -> int:
    """Resume the schedules and undo skipped nights."""
    path = default_state_path()
    controls = Controls()
    write_controls(path, controls)
    return _report(out, controls, "schedules resumed")
