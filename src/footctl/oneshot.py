"""A device command (``status``, ``on``, ``off``, ``stop``, ``set``, ``watch``) that
found no owner for its massager: this process becomes its short-lived owner
(:func:`footctl.app.open_owner`).

The owner's socket is served before the first connect, so ``footctl stop``,
``status`` and a second command reach this process while it connects or ramps; a
stop from elsewhere voids the request it is waiting on. If the massager is left
running, the process stays in the foreground as its owner (:func:`guard`) until the
session ends, Ctrl-C/SIGTERM (everything off, then exit), or a stop. A stop sent
from here names every massager whose off it could not confirm (exit 3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

from footctl.app import open_owner, progress_printer, request_for
from footctl.client import Printer, held_by, try_owners, unconfirmed
from footctl.config import Config
from footctl.control.api import ErrorReply, Reply, Request, StateEvent, error_reply
from footctl.control.owner import (
    CONNECT_TIMEOUT_S,
    REPLY_BUDGET_S,
    STOP_TIMEOUT_S,
    Held,
    Owner,
)
from footctl.errors import DeviceUnavailable, ExitCode, FootctlError, SafetyRefused
from footctl.render import emit
from footctl.safety.markers import MarkerStore
from footctl.safety.watchdog import LoopWatchdog

if TYPE_CHECKING:
    from footctl.cli import Output

# A stop from elsewhere that voided this command's request may still be being written
# (up to the owner's STOP_TIMEOUT_S): this command waits that long and this much more
# for it to settle (confirmed, or owed) before it goes its way.
STOP_SETTLE_MARGIN_S = 1.0


def _running(held: Held) -> bool:
    return (
        held.governor.desired.running or held.session.state.running or held.program_running
    )


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(model.model_dump_json())
    return data


async def device_command(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Carry out a device command as this process's own owner of the massager."""
    request = request_for(args)
    printer = Printer(out.as_json)
    unloadable: list[dict[str, Any]] = []
    if request.kind == "stop" and not args.simulate and not args.link:
        config, unloadable = _without_unloadable(args, config)
        if unloadable and not config.devices:
            return printer.stop_result({"ok": True, "devices": [], "notes": []}, unloadable,
                                       "direct", retry="nothing was sent to it")
    async with contextlib.AsyncExitStack() as stack:
        try:
            owner = await _open_or_nothing(stack, args, config, out, request.kind)
        except DeviceUnavailable:
            # Not found: another command may have just taken it (a connected massager no
            # longer advertises) and now serves it: go through that one.
            routed = await _retry_through_owners(args, printer)
            if routed is None:
                raise
            return routed
        if owner is None:
            return ExitCode.OK  # a stop with nothing running anywhere
        # Served before the first connect, not after the first reply: a connect or a
        # ramp can take a minute, and a 'footctl stop' from anywhere must reach this
        # massager meanwhile (issue: a one-shot set outlived every stop sent to it).
        served = await serve_early(owner)
        targets = owner.targets(args.device) if args.device or request.kind in (
            "stop", "status", "watch") else [owner.pick(None)]
        if request.kind == "stop":
            return await _stop_here(owner, targets, request, out, unloadable)
        if request.kind in ("status", "watch"):
            results = await asyncio.gather(
                *(owner.ensure_connected(h) for h in targets), return_exceptions=True
            )
            failed = [r for r in results if isinstance(r, FootctlError)]
            if failed:
                raise failed[0]
        if request.kind == "watch":
            return await _watch_here(owner, args.device, served=served is not None)
        epochs = [h.stop_epoch for h in targets]
        reply = await owner.request(request)
        if any(h.stop_epoch != e for h, e in zip(targets, epochs, strict=True)):
            # A stop from elsewhere came while this waited (connect, ramp): it wins, and
            # the command says so rather than printing the state as its own success.
            if isinstance(reply, Reply):
                reply = error_reply(_stopped_meanwhile(), args.device)
            await _deliver_owed_stop(served, targets, out)
        if isinstance(reply, ErrorReply) and reply.exit_code == ExitCode.UNREACHABLE:
            routed = await _through_holder(args, owner, targets, printer, stack)
            if routed is not None:
                return routed
        code = printer.reply(_dump(reply), "direct")
        if code != ExitCode.OK:
            return code
        held = [h for h in owner.held if _running(h) and not h.spec.simulated]
        if held:
            return await guard(owner, out, served=served is not None)
        return ExitCode.OK


class Served:
    """``owner``'s socket, served by this one-shot command; it knows when no stop
    from elsewhere is in flight (``stops_settled``)."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.stops = 0
        self.stops_settled = asyncio.Event()
        self.stops_settled.set()

    async def handle(self, request: Request) -> Reply | ErrorReply:
        """Answer a request from the socket as the owner does, counting stops."""
        if request.kind != "stop":
            return await self.owner.request(request)
        self.stops += 1
        self.stops_settled.clear()
        try:
            return await self.owner.request(request)
        finally:
            self.stops -= 1
            if not self.stops:
                self.stops_settled.set()


async def serve_early(owner: Owner) -> Served | None:
    """Serve ``owner-<pid>.sock`` now (stop, status and commands from elsewhere reach
    this process while it connects or ramps), unless every massager is virtual and
    lives in this process only (nobody else can reach those)."""
    if all(h.spec.simulated for h in owner.held):
        return None
    # Requests from elsewhere get an answer within the budget while a ramp goes on,
    # as the daemon gives; so does this command (the ramp goes on under guard()).
    owner.reply_budget_s = REPLY_BUDGET_S
    served = Served(owner)
    await owner.serve(handler=served.handle)
    return served


async def _deliver_owed_stop(
    served: Served | None, targets: list[Held], out: Output
) -> None:
    """A stop from elsewhere reached this command while it was still connecting: the
    off is owed (the stopping command said so), and this process writes it as soon as
    the connect it has under way lands, before it exits; at most one connect's time."""
    # The stop itself is still being tried (up to its own budget) when this command's
    # request wakes up: let it settle, confirmed or owed, so its sender gets an answer.
    if served is not None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S + STOP_SETTLE_MARGIN_S):
                await served.stops_settled.wait()
    owed = [h for h in targets if h.stop_owed and h.connect_task is not None]
    if not owed:
        return
    if not out.as_json:
        print("footctl: a stop came while connecting: writing everything off first",
              file=sys.stderr, flush=True)
    tasks = [asyncio.shield(h.connect_task) for h in owed if h.connect_task is not None]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CONNECT_TIMEOUT_S + STOP_TIMEOUT_S):
            await asyncio.gather(*tasks, return_exceptions=True)
    for held in owed:
        if held.stop_owed:
            print(f"footctl: {held.name}: the owed off could not be written (not reached); "
                  "nothing was switched on by this command", file=sys.stderr, flush=True)


def _stopped_meanwhile() -> SafetyRefused:
    return SafetyRefused(
        "superseded_by_stop",
        "a stop from elsewhere came while this was connecting or ramping: everything is off",
        advice="send it again if you still want it",
    )


async def _open_or_nothing(
    stack: contextlib.AsyncExitStack,
    args: argparse.Namespace,
    config: Config,
    out: Output,
    kind: str,
) -> Owner | None:
    """:func:`open_owner`; for a ``stop`` that names no massager when no owner runs and
    none can be found, None (nothing to stop is not an error)."""
    if kind != "stop" or args.device or args.simulate or args.link or config.devices:
        return await open_owner(stack, args, config, progress_printer(args, out))
    if not out.as_json:
        print("footctl: no footctl owner is running; looking for a massager to switch off",
              file=sys.stderr, flush=True)
    try:
        return await open_owner(stack, args, config, progress_printer(args, out))
    except DeviceUnavailable as exc:
        left_on = [m.address for m in MarkerStore().orphaned()]
        if left_on:  # a crashed run left one on: that is not "nothing running"
            raise DeviceUnavailable(
                f"a footctl run that died left {', '.join(left_on)} on, and it cannot be "
                f"reached to switch it off ({exc.message})",
                advice="switch it off by hand, or run 'footctl stop' again in range",
            ) from exc
        text = f"nothing running: {exc.message.removeprefix('no massager: ')}"
        out.result({"ok": True, "devices": [], "notes": [text], "via": "direct"}, text)
        return None


# What a stop says it could not do for a massager whose profile does not load.
_FIX_PROFILE = ("fix its profile file ('footctl config check' lists every problem), or "
                "switch it off by hand")


def _without_unloadable(
    args: argparse.Namespace, config: Config
) -> tuple[Config, list[dict[str, Any]]]:
    """For a stop: the configured massagers whose profile loads, and each other one as
    not confirmed, with why. One broken profile file must not keep the off from every
    other massager (a stop needs no valid configuration)."""
    from footctl.device.profile.loader import get_profile  # noqa: PLC0415 - stop only

    dirs = list(config.profile_dirs)
    kept, skipped = [], []
    for dev in config.devices:
        try:
            get_profile(dev.profile, dirs)
        except FootctlError as exc:
            skipped.append({"device": dev.name or dev.address, "device_id": dev.address,
                            "owed": False, "advice": _FIX_PROFILE,
                            "reason": f"its profile {dev.profile!r} does not load: {exc}"})
            continue
        kept.append(dev)
    if args.device:
        wanted = args.device.lower()
        skipped = [m for m in skipped
                   if wanted in (str(m["device"]).lower(), str(m["device_id"]).lower())]
        if skipped:  # the one named is the one that cannot be loaded
            kept = []
    if not skipped:
        return config, []
    return config.model_copy(update={"devices": kept}), skipped


async def _stop_here(
    owner: Owner, targets: list[Held], request: Request, out: Output,
    unloadable: list[dict[str, Any]] | None = None,
) -> int:
    """Stop ``targets`` from this process; each one whose off is not confirmed (and
    each configured one whose profile does not load: ``unloadable``) is named
    (stderr, and ``unconfirmed`` with ``--json``), exit 3."""
    results = await asyncio.gather(
        *(owner.ensure_connected(h) for h in targets), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, FootctlError)]
    if failed and len(failed) == len(results):
        # Reached none: each one named with its reason (and the fix), exit 3.
        missed = [{"device": h.name, "device_id": h.device_id, "owed": False,
                   "reason": r.message, "advice": r.advice}
                  for h, r in zip(targets, results, strict=True)
                  if isinstance(r, FootctlError)]
        return Printer(out.as_json).stop_result(
            {"ok": True, "devices": [], "notes": []}, missed + list(unloadable or []),
            "direct", retry="nothing was sent to it")
    reply = await owner.request(request)
    data = _dump(reply)
    if not isinstance(reply, Reply):
        return Printer(out.as_json).error(data)
    # This process ends after the stop: what it could not confirm is not owed by anyone.
    why = {m["device"]: m["reason"] for m in unconfirmed(data)}
    why.update({h.name: str(r) for h, r in zip(targets, results, strict=True)
                if isinstance(r, FootctlError)})
    missed = [{"device": h.name, "device_id": h.device_id, "owed": False,
               "reason": why.get(h.name, "no answer")}
              for h in targets if h.stop_owed or h.name in why] + list(unloadable or [])
    notes = [n for n in data.get("notes", [])
             if not any(n.startswith(f"{m['device']}: ") for m in missed)]
    return Printer(out.as_json).stop_result(
        {**data, "notes": notes}, missed, "direct",
        retry="this command ends, so nothing retries it: run 'footctl stop' again",
    )


async def _through_holder(
    args: argparse.Namespace,
    owner: Owner,
    targets: list[Held],
    printer: Printer,
    stack: contextlib.AsyncExitStack,
) -> int | None:
    """This command could not connect: if another footctl holds the massager (it
    started at the same moment and won the connection), go through that owner
    instead (nothing was written here); None if none does."""
    if args.simulate or any(h.ever_connected for h in targets):
        return None
    holders = await asyncio.to_thread(held_by, [h.address for h in targets], owner.pid)
    if not holders:
        return None
    await stack.aclose()  # let go of the radio before talking to the holder
    code = await _retry_through_owners(args, printer)
    if code is not None:
        return code
    return printer.error({
        "error": "device_unavailable", "exit_code": ExitCode.UNREACHABLE,
        "message": f"footctl pid {holders[0]} holds this massager but did not answer",
        "advice": "'footctl status' shows who holds what",
    })


async def _retry_through_owners(args: argparse.Namespace, printer: Printer) -> int | None:
    """The command through a live owner that now holds its massager (it started at the
    same moment as this one and won the connection); None if none does."""
    if args.simulate or args.command not in ("on", "off", "stop", "set", "status"):
        return None
    return await asyncio.to_thread(try_owners, args, printer)


async def _watch_here(owner: Owner, device: str | None, *, served: bool) -> int:
    if not served:
        await owner.serve()
    stream = owner.subscribe(device)
    try:
        while True:
            for view in await stream.get():
                emit(StateEvent(seq=view.seq, device=view).model_dump_json())
    finally:
        stream.close()


async def guard(owner: Owner, out: Output, *, served: bool = False) -> int:
    """Stay the owner while a massager runs: serve the socket, enforce the caps,
    until every session has ended."""
    owner.reply_budget_s = REPLY_BUDGET_S  # clients get an answer while a ramp goes on
    if not served:
        await owner.serve()
    if not out.as_json:
        print(
            "holding the session: caps are enforced while this runs; "
            "Ctrl-C or 'footctl stop' ends it",
            file=sys.stderr,
            flush=True,
        )
    dog = LoopWatchdog(min(h.governor.limits.heartbeat_s for h in owner.held))
    dog.start()
    stream = owner.hub.subscribe(current=False)
    try:
        while any(_running(h) for h in owner.held):
            await stream.get()
    finally:
        stream.close()
        dog.stop()
    reasons = [h.governor.end_reason or "stopped" for h in owner.held]
    if not out.as_json:
        print(f"session ended: {', '.join(reasons)}", file=sys.stderr)
    if any(h.governor.fault is not None for h in owner.held) or "heartbeat_missed" in reasons:
        return ExitCode.REFUSED  # ended by a safety action, not by the user or a cap
    return ExitCode.OK


__all__ = ["Served", "device_command", "guard", "serve_early"]
