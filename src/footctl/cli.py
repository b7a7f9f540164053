"""The ``footctl`` command line.

Only the standard library is imported at module level so ``--help`` stays fast;
each command imports what it needs. Exit codes: 0 ok, 2 usage/bad input,
3 device not found/unreachable, 4 refused by safety, 1 other.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from footctl.cli_authoring import add_authoring_commands

LINK_ENV = "FOOTCTL_LINK"


def _int_arg(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="footctl",
        description="Drive heated shiatsu foot massagers over Bluetooth LE, safely.",
        epilog="Exit codes: 0 ok, 1 other error, 2 bad input, 3 device unreachable, "
        "4 refused by safety.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--simulate",
        metavar="PROFILE_ID",
        help="run a virtual massager of this profile inside this process and use it",
    )
    where.add_argument(
        "--link",
        metavar="ADDRESS",
        default=os.environ.get(LINK_ENV),
        help=f"reach virtual massagers served by 'footctl sim' at HOST:PORT (env {LINK_ENV})",
    )
    parser.add_argument("--device", metavar="ADDRESS_OR_NAME", help="which massager to use")
    parser.add_argument("--profile", metavar="PROFILE_ID", help="the profile of --device")
    parser.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    parser.add_argument("--config", metavar="FILE", help="config file (env FOOTCTL_CONFIG)")
    parser.add_argument(
        "--scan-timeout", type=float, default=10.0, metavar="S", help="how long to look (10 s)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("scan", help="list devices in range and the profile each matches")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="scan time (5 s)")
    sub.add_parser("status", help="connection and reported state")
    sub.add_parser("on", help="start massage (leaves you in the foreground as its guardian)")
    sub.add_parser("off", help="everything off (same as stop)")
    sub.add_parser("stop", help="everything off: motor and heat; always sent")
    p = sub.add_parser("set", help="set intensity, heat, mode or zone (switches on)")
    p.add_argument("--intensity", type=_int_arg, metavar="N")
    p.add_argument("--heat", type=_int_arg, metavar="N", help="heat level, 0 = off")
    p.add_argument("--mode", metavar="NAME")
    p.add_argument("--zone", type=_int_arg, metavar="N")
    sub.add_parser("profiles", help="the profiles found, with their capabilities")
    p = sub.add_parser("profile", help="profile tools")
    psub = p.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    pc = psub.add_parser("check", help="validate profile files")
    pc.add_argument("files", nargs="+", metavar="FILE")
    add_authoring_commands(sub, psub)  # explore, sniff, profile test (issue 12)
    _add_issue4_commands(sub)
    p = sub.add_parser("sim", help="run a virtual massager as its own process")
    p.add_argument("profile_id", metavar="PROFILE_ID")
    p.add_argument("--port", type=int, default=0, help="link port (default: any free port)")
    p.add_argument("--control-port", type=int, default=0, help="control port (default: any)")
    p.add_argument("--log-frames", action="store_true", help="log every frame received")
    return parser


def _device_flags(p: argparse.ArgumentParser) -> None:
    """--simulate/--device/--profile after the command too (``program check X
    --simulate ems-v2``); SUPPRESS keeps the global flag when they are not given."""
    p.add_argument("--simulate", metavar="PROFILE_ID", default=argparse.SUPPRESS,
                   help="a virtual massager of this profile, in this process")
    p.add_argument("--device", metavar="ADDRESS_OR_NAME", default=argparse.SUPPRESS,
                   help="which massager")
    p.add_argument("--profile", metavar="PROFILE_ID", default=argparse.SUPPRESS,
                   help="the profile of --device")


def _add_issue4_commands(sub: Any) -> None:
    """Programs, schedules, the journal, the daemon and its systemd unit."""
    p = sub.add_parser(
        "run", help="run a program now (progress on stderr; Ctrl-C stops the massager)"
    )
    p.add_argument("program", metavar="PROGRAM", help="a program name or a .toml file")
    _device_flags(p)
    p = sub.add_parser("program", help="bedtime programs: list, check")
    psub = p.add_subparsers(dest="program_command", metavar="ACTION", required=True)
    psub.add_parser("list", help="the shipped programs and yours")
    pc = psub.add_parser(
        "check", help="each step as the caps of a massager treat it (exit 4 if refused)"
    )
    pc.add_argument("program", metavar="PROGRAM", help="a program name or a .toml file")
    pc.add_argument("--scheduled", action="store_true",
                    help="as a scheduled start: heat lowered to the unattended level")
    _device_flags(pc)
    p = sub.add_parser("schedule", help="when programs start: list, next")
    ssub = p.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    ssub.add_parser("list", help="the schedules in the config file")
    sn = ssub.add_parser("next", help="the next starts of all schedules, in local time")
    sn.add_argument("--count", type=_int_arg, default=5, metavar="N", help="how many (5)")
    p = sub.add_parser("history", help="past sessions from the journal")
    p.add_argument("--days", type=float, default=14.0, metavar="N", help="how far back (14)")
    p.add_argument("--plot", action="store_true", help="minutes per night and rating, drawn")
    p = sub.add_parser("rate", help="rate last night's sleep (1-5) on the latest session")
    p.add_argument("rating", type=_int_arg, metavar="N")
    p.add_argument("--note", metavar="TEXT")
    p = sub.add_parser(
        "daemon", help="hold the massagers, run the schedules, serve the control socket"
    )
    _device_flags(p)
    p = sub.add_parser("service", help="the systemd user unit for the daemon")
    vsub = p.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    vi = vsub.add_parser("install", help="write ~/.config/systemd/user/footctl.service")
    vi.add_argument("--print", action="store_true", help="print the unit instead of writing it")


class Output:
    """Prints results: one JSON object with --json, human text otherwise."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def result(self, data: dict[str, Any], text: str) -> None:
        """Print a command's result."""
        if self.as_json:
            print(json.dumps(data, sort_keys=True), flush=True)
        else:
            print(text, flush=True)

    def error(self, data: dict[str, Any], text: str) -> None:
        """Print an error: JSON on stdout with --json, one line on stderr always."""
        if self.as_json:
            print(json.dumps({"ok": False, **data}, sort_keys=True), flush=True)
        print(f"footctl: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``footctl`` command."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.verbose < 2:
        # Bumble logs link-level chatter (e.g. late packets after a disconnect) as warnings.
        logging.getLogger("bumble").setLevel(logging.ERROR)
    out = Output(args.json)
    from footctl.app import run_command  # heavy imports only after --help

    return run_command(args, out)


if __name__ == "__main__":
    sys.exit(main())
