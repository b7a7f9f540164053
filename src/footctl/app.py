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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from footctl.config import Config, config_path, load_config
from footctl.errors import DeviceUnavailable, ExitCode, FootctlError, ProfileError, UsageError
from footctl.guardian import GuardianServer, ask, reachable_guardian, socket_path
from footctl.profile.loader import find_profiles, get_profile, load_profile
from footctl.profile.schema import Profile
from footctl.safety.governor import Decision, Request, SafetyGovernor
from footctl.safety.limits import Limits
from footctl.safety.markers import Marker, MarkerStore
from footctl.safety.watchdog import LoopWatchdog
from footctl.session import DeviceSession, Target
from footctl.state import DeviceState
from footctl.transport.ble import Radio, scan

if TYPE_CHECKING:
    from footctl.cli import Output

DEVICE_COMMANDS = ("status", "on", "off", "stop", "set")

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
        results.append({"file": str(path), "ok": True, "id": profile.id})
    text = "\n".join(
        f"{r['file']}: ok ({r['id']})" if r["ok"] else f"{r['file']}: invalid" for r in results
    )
    out.result({"ok": not failed, "files": results}, text)
    return ExitCode.USAGE if failed else ExitCode.OK


# --- radios -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_radio(args: argparse.Namespace, config: Config) -> AsyncIterator[Radio]:
    """The radio for this run: in-process virtual massager, a sim process, or Bluetooth."""
    if args.simulate:
        from footctl.virtual import radio_for_world
        from footctl.virtual.link import VirtualWorld
        from footctl.virtual.peripheral import VirtualMassager

        profile = get_profile(args.simulate, list(config.profile_dirs))
        world = VirtualWorld()
        massager = await VirtualMassager.create(world, profile)
        vradio = await radio_for_world(world)
        try:
            yield Radio("virtual link", vradio.scanner_backend, vradio.client_backend)
        finally:
            await vradio.close()
            await massager.close()
            await world.close()
    elif args.link:
        from footctl.virtual import radio_for_link

        try:
            vradio = await radio_for_link(args.link)
        except OSError as exc:
            raise DeviceUnavailable(
                f"no footctl sim at {args.link}: {exc.strerror or exc}",
                advice="start one with 'footctl sim PROFILE_ID' and pass the address it prints",
            ) from exc
        try:
            yield Radio(f"link {args.link}", vradio.scanner_backend, vradio.client_backend)
        finally:
            await vradio.close()
    else:
        yield Radio()


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


def _resolve_profile(args: argparse.Namespace, config: Config) -> Profile | None:
    dirs = list(config.profile_dirs)
    if args.simulate:
        return get_profile(args.simulate, dirs)
    if args.profile:
        return get_profile(args.profile, dirs)
    if args.device:
        for dev in config.devices:
            if args.device.lower() in (dev.address.lower(), (dev.name or "").lower()):
                return get_profile(dev.profile, dirs)
    if len(config.devices) == 1 and not args.device:
        return get_profile(config.devices[0].profile, dirs)
    return None


async def _find_profile_by_scan(
    args: argparse.Namespace, config: Config, radio: Radio, progress: Any
) -> tuple[Profile, str]:
    profiles = find_profiles(list(config.profile_dirs))
    want = args.device.lower() if args.device else None

    def wanted(s: Any) -> bool:
        if s.profile is None:
            return False
        return want is None or want in (s.address.lower(), (s.name or "").lower())

    progress(f"scanning {radio.label} for a known massager...")
    seen = await scan(radio, profiles, args.scan_timeout, until=wanted)
    for s in seen:
        if wanted(s) and s.profile is not None:
            return s.profile, s.address
    raise DeviceUnavailable(
        f"no known massager found within {args.scan_timeout:g} s ({len(seen)} device(s) seen)",
        advice="switch it on, or name it with --device and --profile; 'footctl scan' shows why "
        "each device matched no profile",
    )


@dataclass
class _Outcome:
    state: DeviceState
    notes: tuple[str, ...] = ()


def _payload(gov: SafetyGovernor, outcome: _Outcome, via: str) -> dict[str, Any]:
    state = outcome.state.to_dict()
    state["heat_celsius"] = gov.profile.capabilities.heat_celsius(outcome.state.heat)
    return {
        "ok": True,
        "via": via,
        "profile": gov.profile.id,
        "device": state,
        "timers": gov.timers().to_dict(),
        "notes": list(outcome.notes),
        "end_reason": gov.end_reason,
        "fault": gov.fault,
    }


def _text(payload: dict[str, Any]) -> str:
    d = payload["device"]
    who = f"{d['name'] or payload['profile']} ({d['address']})"
    if not d["running"]:
        body = "off" + (f", heat {d['heat']}" if d["heat"] else "")
    else:
        heat = f"heat {d['heat']}" + (f" ({d['heat_celsius']:g} C)" if d["heat_celsius"] else "")
        body = f"on, intensity {d['intensity']}, {heat}, mode {d['mode']}"
        if d.get("zone") is not None:
            body += f", zone {d['zone']}"
    if d.get("temperature") is not None:
        body += f", {d['temperature']:.1f} C measured"
    if d.get("assumed"):
        body += " [assumed: the device reports no status]"
    timers = payload["timers"]
    caps = []
    if timers["session_left_s"] is not None:
        caps.append(f"session {_mmss(timers['session_left_s'])} left")
    if timers["heat_left_s"] is not None:
        caps.append(f"heat {_mmss(timers['heat_left_s'])} left")
    line = f"{who}: {body}" + (f" - {', '.join(caps)}" if caps else "")
    for note in payload.get("notes", []):
        line += f"\nnote: {note}"
    return line


def _mmss(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


async def _via_guardian(args: argparse.Namespace, out: Output) -> int | None:
    if args.simulate:
        return None
    path = await reachable_guardian(args.device)
    if path is None:
        return None
    request: dict[str, Any] = {"cmd": args.command}
    if args.command == "set":
        request.update(
            intensity=args.intensity, heat=args.heat, mode=args.mode, zone=args.zone
        )
    reply = await ask(path, request)
    if not reply.get("ok"):
        message = str(reply.get("message", "refused"))
        if reply.get("advice"):
            message += f" ({reply['advice']})"
        out.error({k: v for k, v in reply.items() if k != "ok"}, message)
        return int(reply.get("exit_code", ExitCode.OTHER))
    reply["via"] = "guardian"
    out.result(reply, _text(reply) + "\n(via the guardian process holding the connection)")
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

    async with open_radio(args, config) as radio:
        profile = _resolve_profile(args, config)
        address = args.device
        if profile is None:
            profile, address = await _find_profile_by_scan(args, config, radio, progress)
        is_address = address is not None and address.count(":") == 5
        session = DeviceSession(
            profile,
            radio,
            address=address if is_address else None,
            name=None if is_address else address,
            scan_timeout=args.scan_timeout,
            on_progress=progress,
        )
        # An in-process virtual massager dies with us: no marker to recover from.
        markers = None if radio_is_inprocess(args) else MarkerStore()
        governor = SafetyGovernor(
            session,
            Limits.compute(profile, config.caps.to_caps()),
            markers=markers,
            on_progress=progress,
        )
        if request is not None and not request.is_off:
            governor.decide(request)  # refuse before scanning, not after
        if markers is not None:
            await recover_after_crash(radio, config, markers, progress)
        try:
            await session.connect()
            outcome = await _act(governor, request)
            payload = _payload(governor, outcome, "direct")
            out.result(payload, _text(payload))
            if governor.desired.running and not radio_is_inprocess(args):
                return await _guard(governor, out)
            return ExitCode.OK
        finally:
            if governor.desired.running or session.state.running:
                await governor.shutdown("exit")
            await session.close()


# Looking for a device a crashed run left on: long enough for a nearby massager to
# advertise a few times, short enough not to hold up the command the user asked for.
RECOVERY_SCAN_S = 5.0


async def recover_after_crash(
    radio: Radio, config: Config, markers: MarkerStore, progress: Any
) -> list[Marker]:
    """Turn off every device a dead footctl run left mid-session; returns those done."""
    done: list[Marker] = []
    for marker in markers.orphaned():
        try:
            profile = get_profile(marker.profile_id, list(config.profile_dirs))
        except UsageError:
            continue
        print(
            f"footctl: the run that started a session on {marker.address} (pid {marker.pid}) "
            "died; turning that massager off first",
            file=sys.stderr,
            flush=True,
        )
        session = DeviceSession(
            profile, radio, address=marker.address, scan_timeout=RECOVERY_SCAN_S,
            on_progress=progress,
        )
        try:
            await session.connect()
            await session.all_off()
        except FootctlError as exc:
            print(
                f"footctl: could not reach {marker.address} to turn it off: {exc}; "
                "will try again next time",
                file=sys.stderr,
            )
            continue
        finally:
            await session.close()
        markers.clear(marker.address)
        _LOG.warning("%s: recovered_after_crash (pid %d)", marker.address, marker.pid)
        done.append(marker)
    return done


def radio_is_inprocess(args: argparse.Namespace) -> bool:
    """True when the virtual massager lives and dies with this process."""
    return bool(args.simulate)


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
            state, decision = await gov.submit(req)
            return _payload(gov, _Outcome(state, decision.notes), "guardian")
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


__all__ = ["Decision", "Target", "run_command"]
