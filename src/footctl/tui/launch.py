"""``footctl tui``: find or become the owner, then run the app.

With a daemon running (and no ``--simulate`` or ``--link``), the TUI is its client:
quitting leaves the daemon's massagers as they are (under the TUI's lease, which
then runs out). Otherwise this process becomes the owner of the massagers it opens,
exactly as a one-shot CLI command does, and serves its control socket so
``footctl stop`` from another terminal reaches them; quitting, SIGTERM or SIGHUP (a
dropped SSH session) switch everything off before the process ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from footctl.config import Config, state_dir
from footctl.errors import ExitCode

if TYPE_CHECKING:
    from footctl.cli import Output
    from footctl.control.owner import Held, Owner
    from footctl.tui.app import FootctlTui

_LOG = logging.getLogger(__name__)

# Logs go here while the TUI has the terminal (a line on stderr would tear the screen).
LOG_FILE = "tui.log"


async def run_tui(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Run the TUI until the user quits; 0, or the error's exit code."""
    del out  # the screen is the output
    from footctl.tui.app import FootctlTui  # noqa: PLC0415 - Textual only for this command
    from footctl.tui.dialogs import scan_via  # noqa: PLC0415

    _log_to_file()
    daemon = None if (args.simulate or args.link) else await _daemon_socket()
    if daemon is not None:
        await daemon_app(daemon).run_async()
        return ExitCode.OK

    from footctl.app import open_owner  # noqa: PLC0415 - bleak, Bumble: only as the owner
    from footctl.control.owner import REPLY_BUDGET_S  # noqa: PLC0415
    from footctl.safety.watchdog import LoopWatchdog  # noqa: PLC0415

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    # A closed terminal (SSH dropped) must not kill us before everything is off:
    # cancel, and the owner's close below switches everything off.
    loop.add_signal_handler(signal.SIGHUP, task.cancel)
    async with contextlib.AsyncExitStack() as stack:
        owner = await open_owner(stack, args, config, _LOG.info, connect=False)
        owner.reply_budget_s = REPLY_BUDGET_S  # keys get an answer while a ramp goes on
        await owner.serve()
        for held in owner.held:  # the screen comes up at once; links follow
            owner.spawn(_connect(owner, held), f"footctl[{held.name}].tui-connect")
        dog = LoopWatchdog(min(h.governor.limits.heartbeat_s for h in owner.held))
        dog.start()
        stack.callback(dog.stop)
        app = FootctlTui(
            owner,
            owns_devices=True,
            via="this process (the owner)",
            scanner=scan_via(owner),
        )
        await app.run_async()
    return ExitCode.OK


async def _connect(owner: Owner, held: Held) -> None:
    from footctl.errors import FootctlError  # noqa: PLC0415

    try:
        await owner.ensure_connected(held)
    except FootctlError as exc:
        _LOG.warning("%s: not connected: %s", held.name, exc)


def daemon_app(path: Path | str) -> FootctlTui:
    """The TUI as a client of the daemon serving ``path``: its keys, its state
    stream and its scans (``r``) all go over the socket."""
    from footctl.tui.app import FootctlTui  # noqa: PLC0415 - Textual only for this command
    from footctl.tui.dialogs import scan_via  # noqa: PLC0415
    from footctl.tui.remote import SocketController  # noqa: PLC0415

    remote = SocketController(path)
    return FootctlTui(remote, owns_devices=False, via=f"daemon {path}", scanner=scan_via(remote))


async def _daemon_socket() -> Path | None:
    """The daemon's socket if a daemon answers on it."""
    from footctl.client import live_owners  # noqa: PLC0415 - stdlib only

    owners = await asyncio.to_thread(live_owners)
    return next((Path(o.path) for o in owners if o.daemon), None)


def _log_to_file() -> None:
    """Move logging off the terminal into ``tui.log`` in the state dir."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            root.removeHandler(handler)
    path = state_dir() / LOG_FILE
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(file_handler)
