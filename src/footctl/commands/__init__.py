"""CLI handlers for bedtime programs, schedules, the journal and the daemon.

Each module holds one family of commands; :func:`dispatch` picks the handler. Heavy
imports stay inside the handlers so ``footctl --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from footctl.errors import UsageError

if TYPE_CHECKING:
    from footctl.cli import Output
    from footctl.config import Config


async def dispatch(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Run one of the commands of issue 4 and return its exit code."""
    command = args.command
    if command in ("run", "program"):
        from footctl.commands import programs

        if command == "run":
            return await programs.run(args, config, out)
        if args.program_command == "list":
            return programs.list_(out)
        return programs.check(args, config, out)
    if command == "schedule":
        from footctl.commands import schedule

        return schedule.show(args, config, out)
    if command in ("history", "rate"):
        from footctl.commands import history

        return history.history(args, out) if command == "history" else history.rate(args, out)
    if command in ("daemon", "service"):
        from footctl.commands import service

        if command == "daemon":
            return await service.daemon(args, config, out)
        return service.install(args, out)
    raise UsageError(f"unknown command {command!r}")
