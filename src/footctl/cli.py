"""The ``footctl`` command line.

Only the standard library is imported at module level so ``--help`` stays fast. A
device command first asks the running owners (the daemon, or another footctl
holding the massager) through :mod:`footctl.client`, which is standard library
only too (``scan`` too: an owner holds the radio, so it listens for us); only when
none holds the massager does this process become its owner
(:mod:`footctl.app`, with bleak, Bumble and pydantic). Exit codes: 0 ok, 2
usage/bad input, 3 device not found/unreachable, 4 refused by safety, 1 other.
"""

from __future__ import annotations

import os
import sys

from footctl import __version__

TYPE_CHECKING = False  # typing costs the client milliseconds; mypy reads this as True
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any, NoReturn

LINK_ENV = "FOOTCTL_LINK"

# Device commands a running owner can carry out for us.
CLIENT_COMMANDS = ("status", "on", "off", "stop", "set", "watch", "run")

# The TCP port range a link address may name.
MAX_PORT = 65535


class _UsageExit(Exception):
    """A command-line mistake (argparse's errors, raised instead of exiting), with
    the parser of the command it is about (whose usage line is the one to show)."""

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None) -> None:
        super().__init__(message)
        self.parser = parser


def _parser_class() -> type[argparse.ArgumentParser]:
    """argparse's parser, raising :class:`_UsageExit` instead of exiting (argparse is
    imported only when a command needs it: the client's fast path does without)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            # "footctl set: ..." would read "footctl: footctl set: ..." once printed.
            command = self.prog.removeprefix("footctl").strip()
            raise _UsageExit(f"{command}: {message}" if command else message, self)

    return _Parser


class _Unused:
    """Stands in for the parsers of commands other than the one being parsed."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to add."""

    def add_subparsers(self, *args: Any, **kwargs: Any) -> _Unused:
        """Nothing below."""
        return self

    def set_defaults(self, **kwargs: Any) -> None:
        """No defaults to set."""


def _int_arg(text: str) -> int:
    import argparse

    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _level_arg(text: str) -> int:
    """An intensity, heat level or zone: a whole number, 0 or more (the massager's own
    range is checked where it is known)."""
    import argparse

    value = _int_arg(text)
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a level must be greater than or equal to 0 (heat 0 is off)")
    return value


def _link_ok(text: str) -> bool:
    host, colon, port = text.rpartition(":")
    return bool(colon and host and port.isdigit() and 1 <= int(port) <= MAX_PORT)


def link_arg(text: str) -> str:
    """A ``footctl sim`` link address, HOST:PORT."""
    import argparse

    if not _link_ok(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:43210, as 'footctl sim' prints it)"
        )
    return text


def _global_flags(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The flags every command takes, before or after its name. On subcommands their
    default is SUPPRESS, so a flag given before the command is kept."""

    import argparse

    def d(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("--simulate", metavar="PROFILES", default=d(None),
                   help="virtual massagers in this process: ems-v2,shiatsu-aa55 or "
                   "shiatsu-aa55*16")
    p.add_argument("--link", metavar="HOST:PORT", type=link_arg, default=d(None),
                   help=f"massagers served by 'footctl sim' at HOST:PORT (env {LINK_ENV})")
    p.add_argument("--device", metavar="NAME", default=d(None),
                   help="which massager (address, name, or profile id)")
    p.add_argument("--profile", metavar="PROFILE_ID", default=d(None),
                   help="the profile of --device")
    p.add_argument("--json", action="store_true", default=d(False),
                   help="print one JSON object, nothing else")
    p.add_argument("--config", metavar="FILE", default=d(None),
                   help="config file (env FOOTCTL_CONFIG)")
    p.add_argument("--scan-timeout", type=float, default=d(10.0), metavar="S",
                   help="how long to look for a massager (10 s)")
    p.add_argument("-v", "--verbose", action="count", default=d(0), help="more logging")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs). With ``command``, only that
    command's subparser takes the global flags (the others would cost startup time
    and are not used); ``""`` for none (top-level help, usage errors)."""
    parser_class = _parser_class()
    parser = parser_class(
        prog="footctl",
        description="Drive heated shiatsu foot massagers over Bluetooth LE, safely.",
        epilog="Exit codes: 0 ok, 1 other error, 2 bad input, 3 device unreachable, "
        "4 refused by safety.",
    )
    parser.add_argument("--version", action="version", version=f"footctl {__version__}")
    _global_flags(parser, defaults=True)
    common = parser_class(add_help=False)
    _global_flags(common, defaults=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    current = [""]

    def add(name: str, help_: str, target: Any = sub) -> Any:
        if target is sub:
            current[0] = name
        if command and current[0] != command:
            return _Unused()  # another command: not needed to parse this one
        if command == "":  # top-level help or a usage error: names and help only
            return target.add_parser(name, help=help_, add_help=False)
        return target.add_parser(name, help=help_, description=help_, parents=[common])

    p = add("scan", "list devices in range and the profile each matches")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="scan time (5 s)")
    p = add("status", "connection and reported state of each massager")
    p.add_argument("--follow", action="store_true", help="one JSON line per change (= watch)")
    add("watch", "one JSON line per change of state, until interrupted")
    add("on", "start massage (a massager nobody else holds keeps this in the foreground)")
    add("off", "everything off (= stop)")
    add("stop", "everything off: every massager of every footctl, or the one named")
    p = add("set", "change intensity, heat, mode or zone")
    p.add_argument("--intensity", type=_level_arg, metavar="N",
                   help="massage intensity (the profile's range; raised one level at a time)")
    p.add_argument("--heat", type=_level_arg, metavar="N", help="heat level, 0 = off")
    p.add_argument("--mode", metavar="NAME",
                   help="massage mode by name ('footctl profiles' lists each device's)")
    p.add_argument("--zone", type=_level_arg, metavar="N",
                   help="zone (or air-chamber bit mask) where the device has zones")
    _more_commands(add)
    return parser


def _more_commands(add: Any) -> None:
    """Profiles, programs, schedules, the journal, the daemon, the sim and the
    conveniences of issue 13 (completion, config, doctor, devices)."""
    add("profiles", "the profiles found, with their capabilities")
    p = add("profile", "profile tools")
    psub = p.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    pc = add("check", "validate profile files", psub)
    pc.add_argument("files", nargs="+", metavar="FILE")
    from footctl.cli_authoring import add_authoring_commands

    add_authoring_commands(add, psub)  # explore, sniff, profile test
    p = add("run", "run a program now (progress on stderr; Ctrl-C stops the massager)")
    p.add_argument("program", metavar="PROGRAM", help="a program name or a .toml file")
    p = add("program", "bedtime programs: list, check")
    psub = p.add_subparsers(dest="program_command", metavar="ACTION", required=True)
    add("list", "the shipped programs and yours", psub)
    pc = add("check", "each step as the caps of a massager treat it (exit 4 if refused)", psub)
    pc.add_argument("program", metavar="PROGRAM", help="a program name or a .toml file")
    pc.add_argument("--scheduled", action="store_true",
                    help="as a scheduled start: heat lowered to the unattended level")
    p = add("schedule", "when programs start: list, next, skip, pause, resume")
    ssub = p.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    add("list", "the schedules in the config file", ssub)
    sn = add("next", "the next starts of all schedules, in local time", ssub)
    sn.add_argument("--count", type=_int_arg, default=5, metavar="N", help="how many (5)")
    from footctl.commands.registry import add_schedule_actions

    add_schedule_actions(add, ssub)  # skip tonight, pause, resume
    p = add("history", "past sessions from the journal")
    p.add_argument("--days", type=float, default=14.0, metavar="N", help="how far back (14)")
    p.add_argument("--plot", action="store_true", help="minutes per night and rating, drawn")
    p.add_argument("--include-simulated", action="store_true",
                   help="also sessions on virtual massagers (--simulate, footctl sim)")
    p = add("rate", "rate last night's sleep (1-5) on the latest session")
    p.add_argument("rating", type=_int_arg, metavar="N",
                   help="how well you slept, 1 (badly) to 5 (very well)")
    p.add_argument("--note", metavar="TEXT", help="a few words kept with the rating")
    p.add_argument("--include-simulated", action="store_true",
                   help="may rate a session on a virtual massager")
    p = add("daemon", "hold the massagers, run the schedules, serve the control socket")
    _mqtt_flag(p)
    p = add("mqtt", "check the MQTT broker (the bridge itself runs in 'footctl daemon "
            "--mqtt URL')")
    msub = p.add_subparsers(dest="mqtt_command", metavar="ACTION", required=True)
    _mqtt_flag(add("check", "is the broker reachable, and do the credentials work?", msub))
    add("tui", "terminal UI: each massager's state live, keys to drive it (s stops all)")
    p = add("service", "the systemd user unit for the daemon")
    vsub = p.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    vi = add("install", "write ~/.config/systemd/user/footctl.service", vsub)
    vi.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    p = add("sim", "run virtual massagers as their own process, on one link")
    p.add_argument("profile_ids", nargs="+", metavar="PROFILE_ID",
                   help="profiles (ems-v2 shiatsu-aa55, or ems-v2,shiatsu-aa55*3)")
    p.add_argument("--port", type=int, default=0, help="link port (default: any free port)")
    p.add_argument("--control-port", type=int, default=0, help="control port (default: any)")
    p.add_argument("--log-frames", action="store_true", help="log every frame received")
    from footctl.commands.registry import register

    register(add)  # completion, config, doctor, devices (issue 13)


def _mqtt_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mqtt", metavar="URL", default=None,
                   help="the MQTT broker, mqtt://[user@]host[:port] or mqtts://... (env "
                   "FOOTCTL_MQTT_URL; else [mqtt] url in the config; password in env "
                   "FOOTCTL_MQTT_PASSWORD)")


class Output:
    """Prints results: one JSON object with --json, human text otherwise."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def result(self, data: dict[str, Any], text: str) -> None:
        """Print a command's result."""
        import json

        from footctl.render import emit

        emit(json.dumps(data, sort_keys=True) if self.as_json else text)

    def error(self, data: dict[str, Any], text: str) -> None:
        """Print an error: JSON on stdout with --json, one line on stderr always."""
        if self.as_json:
            import json

            from footctl.render import emit

            emit(json.dumps({"ok": False, **data}, sort_keys=True))
        print(f"footctl: {text}", file=sys.stderr, flush=True)


def _usage(message: str, as_json: bool, advice: str | None = None) -> int:
    out = Output(as_json)
    data: dict[str, Any] = {"error": "usage", "message": message, "exit_code": 2}
    if advice:
        data["advice"] = advice
    out.error(data, message + (f" ({advice})" if advice else ""))
    return 2


def _check(args: argparse.Namespace) -> str | None:
    """Mistakes argparse cannot see; a message, or None."""
    if args.simulate and args.link:
        return "--simulate and --link exclude each other"
    missing = args.config and not os.path.exists(os.path.expanduser(args.config))
    if missing and args.command not in ("stop", "off"):  # stop needs no config file
        return f"--config {args.config}: no such file"
    if args.command == "set" and all(
        getattr(args, f) is None for f in ("intensity", "heat", "mode", "zone")
    ):
        return "set needs at least one of --intensity, --heat, --mode, --zone"
    return None


# Global flags that take a value: the token after one is not a command name.
_VALUE_FLAGS = ("--simulate", "--link", "--device", "--profile", "--config", "--scan-timeout")
_COMMANDS = frozenset((
    "scan", "status", "watch", "on", "off", "stop", "set", "profiles", "profile", "run",
    "program", "schedule", "history", "rate", "daemon", "mqtt", "service", "sim", "tui",
    "explore", "sniff", "completion", "config", "doctor", "devices",
))


def _command_in(argv: list[str]) -> str | None:
    """The command named in ``argv``, to build only its parser; None (the whole
    parser) when no known name is there, so a command missing from ``_COMMANDS``
    still parses instead of being reported as unknown."""
    for i, token in enumerate(argv):
        if token in _COMMANDS and (i == 0 or argv[i - 1] not in _VALUE_FLAGS):
            return token
    return None


# ``footctl --help``, as argparse formats it at 80 columns: printed without building
# the parser (tests/test_control_cli.py checks it is what argparse would print).
TOP_HELP = """\
usage: footctl [-h] [--version] [--simulate PROFILES] [--link HOST:PORT]
               [--device NAME] [--profile PROFILE_ID] [--json] [--config FILE]
               [--scan-timeout S] [-v]
               COMMAND ...

Drive heated shiatsu foot massagers over Bluetooth LE, safely.

positional arguments:
  COMMAND
    scan                list devices in range and the profile each matches
    status              connection and reported state of each massager
    watch               one JSON line per change of state, until interrupted
    on                  start massage (a massager nobody else holds keeps this
                        in the foreground)
    off                 everything off (= stop)
    stop                everything off: every massager of every footctl, or
                        the one named
    set                 change intensity, heat, mode or zone
    profiles            the profiles found, with their capabilities
    profile             profile tools
    explore             connect and list every service, characteristic,
                        descriptor and readable value, and a profile skeleton
    sniff               subscribe to every notifying characteristic and print
                        what arrives (optionally sending raw frames)
    run                 run a program now (progress on stderr; Ctrl-C stops
                        the massager)
    program             bedtime programs: list, check
    schedule            when programs start: list, next, skip, pause, resume
    history             past sessions from the journal
    rate                rate last night's sleep (1-5) on the latest session
    daemon              hold the massagers, run the schedules, serve the
                        control socket
    mqtt                check the MQTT broker (the bridge itself runs in
                        'footctl daemon --mqtt URL')
    tui                 terminal UI: each massager's state live, keys to drive
                        it (s stops all)
    service             the systemd user unit for the daemon
    sim                 run virtual massagers as their own process, on one
                        link
    completion          print a shell completion script (bash, zsh, fish)
    config              the configuration: show the effective caps, check the
                        file
    doctor              check Python, the Bluetooth adapter and stack,
                        permissions, the daemon, the broker
    devices             the massagers in the config file's [[devices]]

options:
  -h, --help            show this help message and exit
  --version             show program's version number and exit
  --simulate PROFILES   virtual massagers in this process: ems-v2,shiatsu-aa55
                        or shiatsu-aa55*16
  --link HOST:PORT      massagers served by 'footctl sim' at HOST:PORT (env
                        FOOTCTL_LINK)
  --device NAME         which massager (address, name, or profile id)
  --profile PROFILE_ID  the profile of --device
  --json                print one JSON object, nothing else
  --config FILE         config file (env FOOTCTL_CONFIG)
  --scan-timeout S      how long to look for a massager (10 s)
  -v, --verbose         more logging

Exit codes: 0 ok, 1 other error, 2 bad input, 3 device unreachable, 4 refused
by safety.
"""

# Commands the fast path (no argparse) understands, with --json, --device, --link.
_FAST_COMMANDS = ("status", "stop", "off", "watch", "on")


def _fast_args(argv: list[str]) -> Any:
    """The common client commands parsed without argparse (its import and parser
    cost more than the rest of ``footctl status``), or None: argparse decides."""
    import types  # already loaded by the interpreter

    ns: dict[str, Any] = {
        "simulate": None, "link": os.environ.get(LINK_ENV) or None, "device": None,
        "profile": None, "json": False, "config": None, "scan_timeout": 10.0, "verbose": 0,
        "command": None, "follow": False,
    }
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--json":
            ns["json"] = True
        elif token in ("--device", "--link") and i + 1 < len(argv):
            ns[token[2:]] = argv[i + 1]
            i += 1
        elif token == "--follow":
            ns["follow"] = True
        elif token in _FAST_COMMANDS and ns["command"] is None:
            ns["command"] = token
        else:
            return None
        i += 1
    if ns["command"] is None or (ns["follow"] and ns["command"] != "status"):
        return None
    if ns["link"] is not None and not _link_ok(ns["link"]):
        return None
    return types.SimpleNamespace(**ns)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``footctl`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["--help"], ["-h"]):
        print(TOP_HELP, end="")
        return 0
    fast = _fast_args(argv)
    if fast is not None:
        from footctl.client import Printer, try_owners

        code = try_owners(fast, Printer(fast.json))
        if code is not None:
            return code
    import argparse

    as_json = "--json" in argv
    parser = build_parser(_command_in(argv))
    try:
        args = parser.parse_args(argv)
        if args.link is None and os.environ.get(LINK_ENV):
            args.link = link_arg(os.environ[LINK_ENV])
    except _UsageExit as exc:
        if not as_json:
            (exc.parser or parser).print_usage(sys.stderr)
        return _usage(str(exc), as_json)
    except argparse.ArgumentTypeError as exc:
        return _usage(f"{LINK_ENV}: {exc}", as_json)
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    problem = _check(args)
    if problem is not None:
        return _usage(problem, args.json)
    if args.command in CLIENT_COMMANDS:
        from footctl.client import Printer, try_owners

        code = try_owners(args, Printer(args.json))
        if code is not None:
            return code
    if args.command == "scan":  # a running owner holds the radio: it listens for us
        from footctl.client import Printer, try_scan

        code = try_scan(args, Printer(args.json))
        if code is not None:
            return code
    import logging

    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.verbose < 2:
        # Bumble logs link-level chatter (e.g. late packets after a disconnect) as warnings.
        logging.getLogger("bumble").setLevel(logging.ERROR)
    from footctl.app import run_command

    return run_command(args, Output(args.json))


if __name__ == "__main__":
    sys.exit(main())
