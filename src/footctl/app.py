"""What each CLI command does: build the radio, session and governor, act, print.

A command that leaves a real (or ``--link``) massager running stays in the
foreground as its guardian until a cap ends the session, Ctrl-C/SIGTERM (everything
off, then exit), or ``footctl stop`` from another terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from footctl.cli_authoring import is_authoring
from footctl.config import Config, config_path, load_config
from footctl.devices import (
    RECOVERY_SCAN_S,
    controlled_device,
    open_radio,
    radio_is_inprocess,
    recover_after_crash,
)
from footctl.errors import ExitCode, FootctlError, ProfileError, UsageError
from footctl.guardian import (
    GuardianServer,
    ask_holder,
    reachable_daemon,
    reachable_guardian,
    socket_path,
    submit_for_client,
)
from footctl.profile.loader import find_profiles, get_profile, load_profile
from footctl.profile.schema import Profile
from footctl.render import state_payload, state_text
from footctl.safety.governor import Decision, Request, SafetyGovernor
from footctl.safety.watchdog import LoopWatchdog
from footctl.session import Target
from footctl.state import DeviceState
from footctl.transport.ble import scan

if TYPE_CHECKING:
    from footctl.cli import Output

DEVICE_COMMANDS = ("status", "on", "off", "stop", "set")
NEW_COMMANDS = ("run", "program", "schedule", "history", "rate", "daemon", "service")

_LOG = logging.getLogger(__name__)

# Exit codes for a guardian ended by a signal, as shells report them (128 + signal).
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
        out.error(exc.to_dict(), str(exc))
        return exc.exit_code


async def _dispatch(args: argparse.Namespace, out: Output) -> int:
    command = args.command
    config = load_config(config_path(args.config))
    if is_authoring(args):
        # explore, sniff, profile test (issue 12)
        from footctl.commands.authoring import dispatch as authoring

        return await authoring(args, config, out)
    if command == "profiles":
        return _profiles(config, out)
    if command == "profile":
        return _profile_check([Path(f) for f in args.files], out)
    if command == "sim":
        from footctl.virtual.sim import run_sim

        profile = get_profile(args.profile_id, list(config.profile_dirs))
        await run_sim(
            profile, port=args.port, control_port=args.control_port, frame_log=args.log_frames
        )
        return ExitCode.OK
    if command == "scan":
        return await _scan(args, config, out)
    if command in NEW_COMMANDS:
        # Bedtime programs, schedules, the journal and the daemon (issue 4).
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
        from footctl.profile.lint import lint

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
    profiles = find_profiles(list(config.profile_dirs))
    async with open_radio(args, config) as radio:
        if not out.as_json and sys.stderr.isatty():
            print(f"scanning {radio.label} for {args.timeout:g} s...", file=sys.stderr)
        seen = await scan(radio, profiles, args.timeout)
    rows = [s.to_dict() for s in seen]
    lines = [
        f"{s.address}  {s.rssi:>4} dBm  {s.name or '(no name)':<12} "
        + (s.profile.id if s.profile else f"no profile: {s.reason}")
        for s in seen
    ] or ["no devices seen"]
    out.result({"ok": True, "devices": rows}, "\n".join(lines))
    return ExitCode.OK


# --- device commands ---------------------------------------------------------------


def _request(args: argparse.Namespace) -> Request | None:
    if args.command in ("off", "stop"):
        return Request(source="cli", power=False)
    if args.command == "on":
        return Request(source="cli", power=True)
    if args.command == "set":
        fields = (args.intensity, args.heat, args.mode, args.zone)
        if all(f is None for f in fields):
            raise UsageError("set needs at least one of --intensity, --heat, --mode, --zone")
        return Request(
            source="cli", power=True, intensity=args.intensity, heat=args.heat,
            mode=args.mode, zone=args.zone,
        )
    return None


@dataclass
class _Outcome:
    state: DeviceState
    notes: tuple[str, ...] = ()


def _payload(gov: SafetyGovernor, outcome: _Outcome, via: str) -> dict[str, Any]:
    return state_payload(gov, outcome.state, via, outcome.notes)


def _text(payload: dict[str, Any]) -> str:
    return state_text(payload)


async def _via_guardian(args: argparse.Namespace, out: Output) -> int | None:
    """Forward the command to the running daemon, else to a guardian holding the
    device; None if neither runs (or ``--simulate``: that massager is our own)."""
    if args.simulate:
        return None
    via, what = "daemon", "the footctl daemon"
    path = await reachable_daemon()
    if path is None:
        via, what = "guardian", "the guardian process holding the connection"
        path = await reachable_guardian(args.device)
    if path is None:
        return None
    request: dict[str, Any] = {"cmd": args.command}
    if via == "daemon" and args.device:
        request["device"] = args.device
    if args.command == "set":
        request.update(
            intensity=args.intensity, heat=args.heat, mode=args.mode, zone=args.zone
        )
    reply = await ask_holder(path, request)
    if not reply.get("ok"):
        message = str(reply.get("message", "refused"))
        if reply.get("advice"):
            message += f" ({reply['advice']})"
        out.error({k: v for k, v in reply.items() if k != "ok"}, message)
        return int(reply.get("exit_code", ExitCode.OTHER))
    reply["via"] = via
    out.result(reply, _text(reply) + f"\n(via {what})")
    return ExitCode.OK


async def _device_command(args: argparse.Namespace, config: Config, out: Output) -> int:
    forwarded = await _via_guardian(args, out)
    if forwarded is not None:
        return forwarded
    request = _request(args)
    show = (not out.as_json and sys.stderr.isatty()) or args.verbose > 0

    def progress(message: str) -> None:
        if show:
            print(message, file=sys.stderr, flush=True)

    def check(governor: SafetyGovernor) -> None:
        if request is not None and not request.is_off:
            governor.decide(request)  # refuse before connecting, not after

    async with controlled_device(args, config, progress, check=check) as dev:
        governor = dev.governor
        await dev.session.connect()
        outcome = await _act(governor, request)
        payload = _payload(governor, outcome, "direct")
        out.result(payload, _text(payload))
        if governor.desired.running and not dev.inprocess:
            return await _guard(governor, out)
        return ExitCode.OK


async def _act(gov: SafetyGovernor, request: Request | None) -> _Outcome:
    if request is None:
        return _Outcome(gov.session.state)
    if request.is_off:
        return _Outcome(await gov.stop(source=request.source))
    state, decision = await gov.submit(request)
    return _Outcome(state, decision.notes)


async def _guard(gov: SafetyGovernor, out: Output) -> int:
    """Hold the session, enforcing the caps, until it ends."""
    stop_requested = asyncio.Event()

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        if cmd == "ping":
            return {"ok": True}
        if cmd == "status":
            return _payload(gov, _Outcome(gov.session.state), "guardian")
        if cmd in ("stop", "off"):
            state = await gov.stop(source="cli", reason="stopped")
            stop_requested.set()
            return _payload(gov, _Outcome(state), "guardian")
        if cmd in ("on", "set"):
            req = Request(
                source="cli", power=True, intensity=request.get("intensity"),
                heat=request.get("heat"), mode=request.get("mode"), zone=request.get("zone"),
            )
            state, notes = await submit_for_client(gov, req)
            return _payload(gov, _Outcome(state, notes), "guardian")
        raise UsageError(f"unknown guardian command {cmd!r}")

    server = GuardianServer(socket_path(gov.session.state.address), handle)
    await server.start()
    if not out.as_json:
        print(
            "guarding the session: caps are enforced while this runs; "
            "Ctrl-C or 'footctl stop' ends it",
            file=sys.stderr,
            flush=True,
        )
    watcher = asyncio.create_task(gov.watch(), name=f"footctl[{gov.session.state.address}].watch")
    dog = LoopWatchdog(gov.limits.heartbeat_s)
    dog.start()
    try:
        await gov.ended.wait()
    finally:
        dog.stop()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await server.close()
    reason = gov.end_reason or "stopped"
    if not out.as_json:
        print(f"session ended: {reason}", file=sys.stderr)
    if gov.fault is not None or reason == "heartbeat_missed":
        return ExitCode.REFUSED  # ended by a safety action, not by the user or a cap
    return ExitCode.OK


__all__ = [
    "RECOVERY_SCAN_S",
    "Decision",
    "Target",
    "open_radio",
    "radio_is_inprocess",
    "recover_after_crash",
    "run_command",
]
