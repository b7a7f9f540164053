"""A CLI command that found no owner for its massager becomes one: a short-lived
:class:`~footctl.control.owner.Owner` in this process.

It carries out the command through the same control API as any source. If the
massager is left running (a real one, or one on a ``--link``), the process stays
in the foreground as its owner, serving ``owner-<pid>.sock`` so ``footctl stop``
and ``status`` from elsewhere reach it, and enforcing the caps until the session
ends, Ctrl-C/SIGTERM (everything off, then exit), or a stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from footctl.cli_authoring import is_authoring
from footctl.client import Printer
from footctl.config import Config, config_path, load_config
from footctl.control.api import ErrorReply, Reply, Request, error_reply, parse_request
from footctl.control.owner import DeviceSpec, Held, Owner
from footctl.control.radios import open_radios
from footctl.device.profile.loader import find_profiles, get_profile, load_profile
from footctl.device.profile.schema import Profile
from footctl.device.transport.ble import Radio, scan
from footctl.devices import find_profile_by_scan, open_radio
from footctl.errors import (
    DeviceUnavailable,
    ExitCode,
    FootctlError,
    ProfileError,
    SafetyRefused,
)
from footctl.safety.watchdog import LoopWatchdog

if TYPE_CHECKING:
    from footctl.cli import Output

NEW_COMMANDS = ("run", "program", "schedule", "history", "rate", "daemon", "service")

_LOG = logging.getLogger(__name__)

# Exit codes for an owner ended by a signal, as shells report them (128 + signal).
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}

# A stop from elsewhere that voided this command's request may still be being written
# (up to the owner's STOP_TIMEOUT_S): this command waits that long and this much more
# for it to settle (confirmed, or owed) before it goes its way.
STOP_SETTLE_MARGIN_S = 1.0


def run_command(args: argparse.Namespace, out: Output) -> int:
    """Run one CLI command to completion and return its exit code."""
    try:
        return asyncio.run(_main(args, out))
    except KeyboardInterrupt:
        return SIGNAL_EXIT[signal.SIGINT]


async def _main(args: argparse.Namespace, out: Output) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if received:
            return  # the first one is being handled: everything off, then exit
        received.append(sig)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await _dispatch(args, out)
    except asyncio.CancelledError:
        if received:
            if not out.as_json:
                print(f"footctl: {received[0].name}: everything off, exiting", file=sys.stderr)
            return SIGNAL_EXIT[received[0]]
        raise
    except FootctlError as exc:
        out.error({**exc.to_dict(), "exit_code": exc.exit_code}, str(exc))
        return exc.exit_code


def command_config(args: argparse.Namespace) -> Config:
    """The config file; for a stop, a broken one is a warning, not a reason to send
    nothing."""
    try:
        return load_config(config_path(args.config))
    except FootctlError as exc:
        if args.command not in ("stop", "off"):
            raise
        print(f"footctl: {exc}; stopping with the defaults", file=sys.stderr, flush=True)
        return Config()


async def _dispatch(args: argparse.Namespace, out: Output) -> int:
    from footctl.commands.registry import run_registered

    registered = await run_registered(args, out)  # issue 13's commands: before the config
    if registered is not None:
        return registered
    command = args.command
    config = command_config(args)
    if is_authoring(args):
        # explore, sniff, profile test (issue 12)
        from footctl.commands.authoring import dispatch as authoring

        return await authoring(args, config, out)
    if command == "profiles":
        return _profiles(config, out)
    if command == "profile":
        return _profile_check([Path(f) for f in args.files], out)
    if command == "sim":
        from footctl.control.radios import expand_simulate
        from footctl.virtual.sim import run_sim_many

        dirs = list(config.profile_dirs)
        profiles = [get_profile(p, dirs) for p in expand_simulate(args.profile_ids)]
        await run_sim_many(
            profiles, port=args.port, control_port=args.control_port, frame_log=args.log_frames
        )
        return ExitCode.OK
    if command == "mqtt":
        from footctl.mqtt.check import mqtt_command

        return await mqtt_command(args.mqtt, config.mqtt, out)
    if command == "scan":
        return await _scan(args, config, out)
    if command == "tui":
        from footctl.tui.launch import run_tui

        return await run_tui(args, config, out)
    if command in NEW_COMMANDS:
        # Bedtime programs, schedules, the journal and the daemon.
        from footctl.commands import dispatch

        return await dispatch(args, config, out)
    return await _device_command(args, config, out)


# --- profiles -------------------------------------------------------------------


def _profile_summary(p: Profile) -> dict[str, Any]:
    caps = p.capabilities
    return {
        "id": p.id,
        "name": p.name,
        "command_style": caps.command_style,
        "reports_status": caps.reports_status,
        "intensity": {"min": caps.intensity.min, "max": caps.intensity.max},
        "heat_levels": [{"level": h.level, "celsius": h.celsius} for h in caps.heat_levels],
        "modes": [m.name for m in caps.modes],
        "zones": None if caps.zones is None else {"min": caps.zones.min, "max": caps.zones.max},
        "auto_off_minutes": caps.auto_off_minutes,
        "keepalive_seconds": caps.keepalive_seconds,
    }


def _profiles(config: Config, out: Output) -> int:
    profiles = find_profiles(list(config.profile_dirs))
    rows = [_profile_summary(p) for p in profiles.values()]
    lines = []
    for r in rows:
        heat = ", ".join(f"{h['level']}={h['celsius']:g}C" for h in r["heat_levels"]) or "none"
        lines.append(
            f"{r['id']:<14} {r['command_style']:<8} intensity {r['intensity']['min']}-"
            f"{r['intensity']['max']}, heat {heat}, modes {', '.join(r['modes'])}"
        )
    out.result({"ok": True, "profiles": rows}, "\n".join(lines))
    return ExitCode.OK


def _profile_check(files: list[Path], out: Output) -> int:
    results: list[dict[str, Any]] = []
    failed = False
    for path in files:
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            failed = True
            results.append({"file": str(path), "ok": False, **exc.to_dict()})
            for problem in exc.problems:
                print(f"footctl: {problem}", file=sys.stderr)
            continue
        from footctl.device.profile.lint import lint

        findings = lint(profile)  # errors (a profile that moves a bed...) fail the check
        for finding in findings:
            print(f"footctl: {path}: {finding}", file=sys.stderr)
        errors = any(f.severity == "error" for f in findings)
        failed = failed or errors
        lint_rows = [f.to_dict() for f in findings]
        results.append({"file": str(path), "ok": not errors, "id": profile.id, "lint": lint_rows})
    text = "\n".join(
        f"{r['file']}: ok ({r['id']})" if r["ok"] else f"{r['file']}: invalid" for r in results
    )
    out.result({"ok": not failed, "files": results}, text)
    return ExitCode.USAGE if failed else ExitCode.OK


# --- radios -------------------------------------------------------------------------


async def _scan(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Scan here (no owner holds the radio): the same rows as an owner's answer."""
    dirs = list(config.profile_dirs)
    # --profile: only what that profile recognises, as a ScanRequest's filter does
    profiles = {args.profile: get_profile(args.profile, dirs)} if args.profile else (
        find_profiles(dirs))
    async with open_radio(args, config) as radio:
        if not out.as_json and sys.stderr.isatty():
            print(f"scanning {radio.label} for {args.timeout:g} s...", file=sys.stderr)
        seen = [s for s in await scan(radio, profiles, args.timeout)
                if not args.profile or s.profile is not None]
    rows = [{**s.to_dict(), "radio": radio.label, "held": False, "device_id": None}
            for s in seen]
    lines = [
        f"{s.address}  {s.rssi:>4} dBm  {s.name or '(no name)':<12} "
        + (s.profile.id if s.profile else f"no profile: {s.reason}")
        for s in seen
    ] or ["no devices seen"]
    out.result({"ok": True, "devices": rows, "via": "direct"}, "\n".join(lines))
    return ExitCode.OK


# --- becoming the owner ---------------------------------------------------------------


def progress_printer(args: argparse.Namespace, out: Output) -> Any:
    """Progress on stderr (scan, connect, ramp steps): every message on a terminal or
    with -v, throttled lines when stderr is a log (journald, a file); none under
    --json unless -v asks."""
    from footctl.progress import progress_printer as printer

    return printer(out.as_json, args.verbose)


async def open_owner(
    stack: contextlib.AsyncExitStack,
    args: argparse.Namespace,
    config: Config,
    progress: Any,
    *,
    connect: bool = False,
) -> Owner:
    """This process as the owner (:meth:`Owner.open_in`) of the massagers the
    command names: ``--simulate`` ones, those on ``--link``, ``--device`` with
    ``--profile``, the configured ones, or the first known one a Bluetooth scan
    finds. Closed (everything off) by ``stack``."""
    dirs = list(config.profile_dirs)
    extra: list[DeviceSpec] = []
    if not args.simulate and not args.link and args.profile:
        extra = [DeviceSpec(get_profile(args.profile, dirs), args.device, None)]
    devices = await open_radios(
        stack, config,
        simulate=[args.simulate] if args.simulate else [],
        link=args.link,
        link_profile=args.profile if args.link else None,
        link_device=args.device if args.link else None,
        use_config_devices=not extra,
        extra=extra,
    )
    if not devices:
        radio = Radio()
        try:
            profile, address = await find_profile_by_scan(args, config, radio, progress)
        except (OSError, DeviceUnavailable) as exc:
            # No Bluetooth stack (which the transport reports as DeviceUnavailable), or
            # nothing found: say first what the user named and who holds what.
            raise await _nothing_named(args, exc) from exc
        devices = [(DeviceSpec(profile, address), radio)]
    return await Owner.open_in(
        stack, config, devices, connect=connect, scan_timeout=args.scan_timeout,
        on_progress=progress,
        reply_budget_s=None,  # a one-shot command reports the confirmed state
    )


async def _nothing_named(args: argparse.Namespace, exc: Exception) -> DeviceUnavailable:
    """No owner holds what the command names, none is configured, and Bluetooth found
    nothing (or is not there): the error names the massager asked for and lists the
    ones the running owners hold."""
    from footctl.client import live_owners

    owners = await asyncio.to_thread(live_owners)
    held = sorted({str(v.get("name")) for o in owners for v in o.devices})
    what = f"no massager named {args.device!r}" if args.device else "no massager"
    if isinstance(exc, DeviceUnavailable):
        reason = exc.message.removeprefix("bluetooth: ")
    else:
        reason = f"Bluetooth is not reachable ({exc.strerror or exc})" if isinstance(
            exc, OSError) else str(exc)
    where = (f"the running footctl holds {', '.join(held)}" if held
             else "no footctl owner is running")
    return DeviceUnavailable(
        f"{what}: {where}, none is configured, and Bluetooth: {reason}",
        advice=("--device " + " | ".join(held)) if held and args.device else
        "add it to [[devices]], or use --simulate/--link for a virtual one",
    )


def request_for(args: argparse.Namespace) -> Request:
    """The command as a control API request, validated here, at the edge."""
    command = args.command
    data: dict[str, Any] = {"source": "cli"}
    if args.device:
        data["device"] = args.device
    if command in ("off", "stop"):
        data["kind"] = "stop"
    elif command == "on":
        data["kind"] = "on"
    elif command == "set":
        data["kind"] = "set"
        for field in ("intensity", "heat", "mode", "zone"):
            if getattr(args, field) is not None:
                data[field] = getattr(args, field)
    elif command == "run":
        data.update(kind="run", program=args.program)
    elif command == "watch" or getattr(args, "follow", False):
        data["kind"] = "watch"
    else:
        data["kind"] = "status"
    return parse_request(data)


def _running(held: Held) -> bool:
    return (
        held.governor.desired.running or held.session.state.running or held.program_running
    )


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(model.model_dump_json())
    return data


async def _device_command(args: argparse.Namespace, config: Config, out: Output) -> int:
    request = request_for(args)
    printer = Printer(out.as_json)
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
            return await _stop_here(owner, targets, request, out)
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
    from footctl.control.owner import REPLY_BUDGET_S

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
    from footctl.control.owner import CONNECT_TIMEOUT_S, STOP_TIMEOUT_S

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
        from footctl.safety.markers import MarkerStore

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


async def _stop_here(
    owner: Owner, targets: list[Held], request: Request, out: Output
) -> int:
    """Stop ``targets`` from this process; each one whose off is not confirmed is named
    (stderr, and ``unconfirmed`` with ``--json``), exit 3."""
    results = await asyncio.gather(
        *(owner.ensure_connected(h) for h in targets), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, FootctlError)]
    if failed and len(failed) == len(results):
        raise failed[0]  # reached none: exit 3 with what is missing
    reply = await owner.request(request)
    data = _dump(reply)
    if not isinstance(reply, Reply):
        return Printer(out.as_json).error(data)
    from footctl.client import unconfirmed

    # This process ends after the stop: what it could not confirm is not owed by anyone.
    why = {m["device"]: m["reason"] for m in unconfirmed(data)}
    why.update({h.name: str(r) for h, r in zip(targets, results, strict=True)
                if isinstance(r, FootctlError)})
    missed = [{"device": h.name, "device_id": h.device_id, "owed": False,
               "reason": why.get(h.name, "no answer")}
              for h in targets if h.stop_owed or h.name in why]
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
    from footctl.client import held_by

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
    from footctl.client import try_owners

    if args.simulate or args.command not in ("on", "off", "stop", "set", "status"):
        return None
    return await asyncio.to_thread(try_owners, args, printer)


async def _watch_here(owner: Owner, device: str | None, *, served: bool) -> int:
    from footctl.control.api import StateEvent
    from footctl.render import emit

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
    from footctl.control.owner import REPLY_BUDGET_S

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


__all__ = ["guard", "open_owner", "request_for", "run_command"]
