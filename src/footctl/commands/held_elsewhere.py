"""``explore`` and ``sniff`` against a massager another footctl holds.

A massager answers one connection at a time, and a connected one no longer
advertises: raw GATT access to a massager an owner (the daemon, a command holding a
session, the TUI) holds cannot work, and must not fight that owner's governor. So
these commands first ask the running owners (:mod:`footctl.client`, standard
library only) and refuse at once, naming the owner and how to end it, instead of
failing deep in the transport.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from footctl.device.transport.ble import Radio, Seen
from footctl.device.transport.gatt_probe import find_device
from footctl.errors import DeviceUnavailable

if TYPE_CHECKING:
    from footctl.client import OwnerInfo

__all__ = ["find_unheld", "owners_on_radio", "refuse_if_held"]

# The unit `footctl service install` writes: how a user stops the daemon.
DAEMON_UNIT = "footctl"

Owners = list[tuple["OwnerInfo", list[dict[str, Any]]]]


async def owners_on_radio(args: argparse.Namespace) -> Owners:
    """The running owners holding massagers on the radio this command would use,
    with those massagers; none for ``--simulate`` (a virtual world of this
    process's own, which nobody else reaches)."""
    if args.simulate:
        return []
    from footctl.client import live_owners  # noqa: PLC0415

    radio = f"link {args.link}" if args.link else "bluetooth"
    found = []
    for owner in await asyncio.to_thread(live_owners):
        views = [v for v in owner.devices if v.get("radio") == radio]
        if views:
            found.append((owner, views))
    return found


def _pid(owner: OwnerInfo) -> str:
    return str(next((v["owner_pid"] for v in owner.devices if v.get("owner_pid")), "PID"))


def owner_text(owner: OwnerInfo) -> str:
    """Which footctl it is: daemon or not, its pid and its socket."""
    kind = "the footctl daemon" if owner.daemon else "another footctl"
    return f"{kind} (pid {_pid(owner)}, socket {owner.path})"


def release_advice(owner: OwnerInfo) -> str:
    """How to make ``owner`` let go of its massagers."""
    if owner.daemon:
        return (f"stop the daemon first with 'systemctl --user stop {DAEMON_UNIT}' or "
                f"'kill {_pid(owner)}', then run this again; 'footctl stop' only switches "
                "the massager off")
    return ("end that owner first: 'footctl stop' ends a command holding a session, q "
            f"quits the TUI, or 'kill {_pid(owner)}'; then run this again")


async def refuse_if_held(args: argparse.Namespace) -> Owners:
    """DeviceUnavailable (exit 3) if an owner holds the massager ``args.target``
    names (its address, id or name; a glob on the name) on this command's radio;
    else the owners holding others there (for :func:`find_unheld`)."""
    from footctl.client import names_of  # noqa: PLC0415 - stdlib only

    owners = await owners_on_radio(args)
    want = str(args.target).lower()
    for owner, views in owners:
        for view in views:
            name = str(view.get("name") or "").lower()
            if want in names_of(view) or (name and fnmatch.fnmatchcase(name, want)):
                raise DeviceUnavailable(
                    f"{args.target} is held by {owner_text(owner)} as {view.get('name')!r}; "
                    f"{args.command} needs the device to itself",
                    advice=release_advice(owner),
                )
    return owners


async def find_unheld(
    radio: Radio, args: argparse.Namespace, progress: Callable[[str], None], owners: Owners
) -> Seen:
    """:func:`~footctl.device.transport.gatt_probe.find_device`; when nothing
    answers to the target while owners hold massagers on this radio, the error says
    so (a held massager does not advertise, and the name it advertises may not be
    the one its owner calls it by)."""
    try:
        return await find_device(radio, args.target, args.scan_timeout, progress)
    except DeviceUnavailable as exc:
        if not owners:
            raise
        held = "; ".join(
            f"{owner_text(o)} holds {', '.join(str(v.get('name')) for v in views)}"
            for o, views in owners
        )
        raise DeviceUnavailable(
            f"{exc.message}; {held}, and a held massager does not advertise",
            advice=f"if it is one of those, {release_advice(owners[0][0])}",
        ) from exc
