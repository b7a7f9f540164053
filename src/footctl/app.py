"""A CLI command that found no owner for its massager becomes one: a short-lived
:class:`~footctl.control.owner.Owner` in this process.

This module dispatches every command that runs here (not through an owner) and
opens the owner (:func:`open_owner`); the device commands themselves (serving
``owner-<pid>.sock`` from the start, so ``footctl stop`` from elsewhere reaches a
command still connecting or ramping, and holding the session while the massager
runs) are :mod:`footctl.oneshot`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from footctl.cli_authoring import is_authoring
from footctl.config import Config, config_path, load_config
from footctl.control.api import Request, parse_request
from footctl.control.owner import DeviceSpec, Owner
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
)

if TYPE_CHECKING:
    from footctl.cli import Output

NEW_COMMANDS = ("run", "program", "schedule", "history", "rate", "daemon", "service")

_LOG = logging.getLogger(__name__)

# Exit codes for an owner ended by a signal, as shells report them (128 + signal).
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


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
    from footctl.oneshot import device_command

    return await device_command(args, config, out)


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


__all__ = ["open_owner", "progress_printer", "request_for", "run_command"]
