"""Registration of the convenience commands: ``completion``, ``config show|check``,
``doctor``, ``devices add`` and ``schedule skip|pause|resume``.

The CLI's parser calls :func:`register` with its ``add`` (and
:func:`add_schedule_actions` on the ``schedule`` parser); :func:`run_registered` runs
the chosen handler before the config file is loaded, so ``config check`` can report a
broken one. Only the standard
library is imported here: each handler module is imported when its command runs, so
``footctl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from footctl.cli import Output

# The attribute of the parsed arguments naming the handler, "module:function".
HANDLER = "footctl_handler"

SHELLS = ("bash", "zsh", "fish")


def _handled_by(parser: Any, target: str) -> None:
    parser.set_defaults(**{HANDLER: f"footctl.commands.{target}"})


def register(add: Any) -> None:
    """Add the convenience commands through the CLI's ``add(name, help, target)``
    (which gives each the global flags; ``--profile`` among them names the massager
    of ``config show`` and ``devices add``)."""
    p = add("completion", "print a shell completion script (bash, zsh, fish)")
    p.add_argument("shell", choices=SHELLS, help="bash: 'source <(footctl completion bash)'; "
                   "zsh: the same in ~/.zshrc; fish: 'footctl completion fish > "
                   "~/.config/fish/completions/footctl.fish'")
    _handled_by(p, "completion:main")

    p = add("config", "the configuration: show the effective caps, check the file")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    cs = add(
        "show",
        "effective caps (with where each value comes from and its valid range) and every "
        "path footctl uses; with --profile, also the limits on that massager",
        csub,
    )
    _handled_by(cs, "config_cmd:show")
    cc = add(
        "check",
        "check the config file, its [[devices]] profiles and schedules, and the "
        "program and profile files (exit 2 on a problem)",
        csub,
    )
    _handled_by(cc, "config_cmd:check")

    p = add(
        "doctor",
        "check Python, the Bluetooth adapter and stack, permissions, the daemon, the broker",
    )
    _handled_by(p, "doctor:main")

    p = add("devices", "the massagers in the config file's [[devices]]")
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    da = add("add", "scan, and write a massager into [[devices]] (--profile if the scan "
             "cannot tell)", dsub)
    da.add_argument("address", nargs="?", metavar="ADDRESS",
                    help="which one (default: the strongest signal with a known profile)")
    da.add_argument("--name", metavar="NAME", help="a name to use with --device (bedroom)")
    da.add_argument("--timeout", type=float, default=5.0, metavar="S", help="scan time (5 s)")
    _handled_by(da, "devices_cmd:add")


def add_schedule_actions(add: Any, ssub: Any) -> None:
    """Add ``skip``, ``pause`` and ``resume`` to the ``schedule`` subparsers ``ssub``."""
    p = add("skip", "skip tonight's scheduled starts", ssub)
    p.add_argument("when", choices=("tonight",), help="which night (tonight)")
    _handled_by(p, "schedule_control:skip")
    p = add("pause", "pause every schedule until 'schedule resume'", ssub)
    _handled_by(p, "schedule_control:pause")
    p = add("resume", "resume paused schedules (and undo skipped nights)", ssub)
    _handled_by(p, "schedule_control:resume")


async def run_registered(args: argparse.Namespace, out: Output) -> int | None:
    """Run the registered handler the arguments name; None if they name none."""
    target = getattr(args, HANDLER, None)
    if target is None:
        return None
    module_name, function = str(target).split(":")
    handler = getattr(importlib.import_module(module_name), function)
    result = handler(args, out)
    import inspect  # noqa: PLC0415 (only when a registered command runs)

    if inspect.isawaitable(result):
        result = await result
    return int(result)
