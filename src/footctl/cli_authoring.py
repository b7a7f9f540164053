"""Arguments of the profile-authoring commands (issue #12): ``explore``, ``sniff`` and
``profile test``. Standard library only, so ``footctl --help`` stays fast; the
handlers are in :mod:`footctl.commands.authoring`."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["AUTHORING_COMMANDS", "add_authoring_commands", "is_authoring"]

#: Top-level commands handled by footctl.commands.authoring (plus ``profile test``).
AUTHORING_COMMANDS = ("explore", "sniff")


def is_authoring(args: argparse.Namespace) -> bool:
    """True if the parsed command is one of the authoring commands."""
    if args.command in AUTHORING_COMMANDS:
        return True
    return args.command == "profile" and getattr(args, "profile_command", None) == "test"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration above 0")
    return value


def add_authoring_commands(add: Any, profile_sub: Any) -> None:
    """Add ``explore`` and ``sniff`` as commands and ``test`` as a ``profile`` action,
    through the CLI's ``add(name, help, target=commands)`` (which gives each the global
    flags: ``--simulate``, ``--link``, ``--profile``, ``--json``, ...)."""
    # ``profile test`` first: ``add`` files an action under the command added last.
    p = add(
        "test",
        "round-trip every command and status field through the codec and the "
        "virtual massager, per capability",
        profile_sub,
    )
    p.add_argument("file", metavar="FILE", help="the profile file")
    p.add_argument("--vectors", metavar="FILE",
                   help="also check byte vectors ([[command]] name/value/hex, [[status]] "
                   "hex/expect), as in tests/vectors/")

    p = add(
        "explore",
        "connect and list every service, characteristic, descriptor and readable "
        "value, and a profile skeleton",
    )
    p.add_argument("target", metavar="ADDRESS_OR_NAME",
                   help="the device's address or advertised name (a glob such as 'FM-*')")
    p.add_argument("--toml", action="store_true",
                   help="print only the profile skeleton (TOML), not the table")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="also write the profile skeleton to FILE (not overwritten)")
    p.add_argument("--no-read", action="store_true", help="do not read any value")

    p = add(
        "sniff",
        "subscribe to every notifying characteristic and print what arrives "
        "(optionally sending raw frames)",
    )
    p.add_argument("target", metavar="ADDRESS_OR_NAME",
                   help="the device's address or advertised name (a glob such as 'FM-*')")
    p.add_argument("--write", action="append", default=[], metavar="HEX", dest="frames",
                   help="a frame to send after subscribing ('aa 55 02 05 00 f8'); repeat "
                   "for several, sent in order")
    p.add_argument("--to", metavar="UUID_OR_HANDLE",
                   help="the characteristic to write to (default: the profile's write "
                   "characteristic, else the vendor service's first writable one)")
    p.add_argument("--write-gap", type=_positive, default=0.3, metavar="S",
                   help="seconds between two written frames (0.3)")
    # --profile (a global flag) names the profile to decode through: an id or a .toml file.
    p.add_argument("--log", metavar="FILE", help="also append every line to FILE")
    p.add_argument("--duration", type=_positive, metavar="S",
                   help="stop after S seconds (default: until Ctrl-C)")
