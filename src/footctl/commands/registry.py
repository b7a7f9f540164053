"""Registration of the convenience commands: ``completion``, ``config show|check``,
``doctor``, ``devices add`` and ``schedule skip|pause|resume``.

The parser calls :func:`register` (and :func:`add_schedule_actions` on the
``schedule`` parser); :func:`run_registered` runs the chosen handler before the
config file is loaded, so ``config check`` can report a broken one. Only the standard
library is imported here: each handler module is imported when its command runs, so
``footctl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from footctl.cli import Output

# The attribute of the parsed arguments naming the handler, "module:function".
HANDLER = "footctl_handler"

SHELLS = ("bash", "zsh", "fish")


def _handled_by(parser: argparse.ArgumentParser, target: str) -> None:
    parser.set_defaults(**{HANDLER: f"footctl.commands.{target}"})


def register(sub: Any) -> None:
    """Add the convenience commands to the top-level subparsers ``sub``."""
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh, fish)",
                       description="Print a completion script. bash: "
                       "'source <(footctl completion bash)'; zsh: the same in ~/.zshrc; fish: "
                       "'footctl completion fish > ~/.config/fish/completions/footctl.fish'.")
    p.add_argument("shell", choices=SHELLS)
    _handled_by(p, "completion:main")

    p = sub.add_parser("config", help="the configuration: show the effective caps, check the file")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    cs = csub.add_parser(
        "show",
        help="effective caps (with where each value comes from and its valid range) "
        "and every path footctl uses",
    )
    cs.add_argument("--profile", metavar="PROFILE_ID", default=argparse.SUPPRESS,
                    help="also the limits on this massager (its range, your caps, the ceilings)")
    _handled_by(cs, "config_cmd:show")
    cc = csub.add_parser(
        "check",
        help="check the config file, its [[devices]] profiles and schedules, and the "
        "program and profile files (exit 2 on a problem)",
    )
    _handled_by(cc, "config_cmd:check")

    p = sub.add_parser(
        "doctor",
        help="check Python, the Bluetooth adapter and stack, permissions, the daemon, the broker",
    )
    _handled_by(p, "doctor:main")

    p = sub.add_parser("devices", help="the massagers in the config file's [[devices]]")
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    da = dsub.add_parser("add", help="scan, and write a massager into [[devices]]")
    da.add_argument("address", nargs="?", metavar="ADDRESS",
                    help="which one (default: the strongest signal with a known profile)")
    da.add_argument("--name", metavar="NAME", help="a name to use with --device (bedroom)")
    da.add_argument("--profile", metavar="PROFILE_ID", default=argparse.SUPPRESS,
                    help="its profile, if the scan cannot tell")
    da.add_argument("--timeout", type=float, default=5.0, metavar="S", help="scan time (5 s)")
    _handled_by(da, "devices_cmd:add")


def add_schedule_actions(ssub: Any) -> None:
    """Add ``skip``, ``pause`` and ``resume`` to the ``schedule`` subparsers."""
    p = ssub.add_parser("skip", help="skip tonight's scheduled starts")
    p.add_argument("when", choices=("tonight",), help="which night (tonight)")
    _handled_by(p, "schedule_control:skip")
    p = ssub.add_parser("pause", help="pause every schedule until 'schedule resume'")
    _handled_by(p, "schedule_control:pause")
    p = ssub.add_parser("resume", help="resume paused schedules (and undo skipped nights)")
    _handled_by(p, "schedule_control:resume")


async def run_registered(args: argparse.Namespace, out: Output) -> int | None:
    """Run the registered handler the arguments name; None if they name none."""
    target = getattr(args, HANDLER, None)
    if target is None:
        return None
    module_name, function = str(target).split(":")
    handler = getattr(importlib.import_module(module_name), function)
    result = handler(args, out)
    if inspect.isawaitable(result):
        result = await result
    return int(result)
