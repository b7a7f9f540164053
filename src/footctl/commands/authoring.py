"""The profile-authoring commands (issue #12): ``explore``, ``sniff`` and ``profile test``.

``explore`` and ``sniff`` reach any device through the same radio as every other command
(a real adapter, ``--simulate`` or ``--link``), with raw GATT access from
:mod:`footctl.device.transport.gatt_probe`; ``profile test`` runs
:func:`footctl.device.profile.roundtrip.round_trip` on a file. The arguments are in
:mod:`footctl.cli_authoring`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import tomllib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from footctl.commands.held_elsewhere import find_unheld, refuse_if_held
from footctl.commands.skeleton import is_standard, pick_endpoints, render_skeleton, short_uuid
from footctl.config import Config
from footctl.device import codec
from footctl.device.profile.base import normalize_uuid, parse_hex
from footctl.device.profile.loader import get_profile, load_profile
from footctl.device.profile.roundtrip import CapabilityResult, RoundTrip, round_trip
from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession
from footctl.device.transport.ble import Radio
from footctl.device.transport.gatt_probe import (
    CharacteristicInfo,
    GattDump,
    Probe,
)
from footctl.devices import open_radio
from footctl.errors import (
    CodecError,
    DeviceUnavailable,
    ExitCode,
    FootctlError,
    UsageError,
)
from footctl.safety.markers import MarkerStore
from footctl.state import Command, Report

if TYPE_CHECKING:
    from footctl.cli import Output

__all__ = ["dispatch", "explore", "profile_test", "sniff"]

Progress = Callable[[str], None]


async def dispatch(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Run one authoring command and return its exit code."""
    if args.command == "explore":
        return await explore(args, config, out)
    if args.command == "sniff":
        return await sniff(args, config, out)
    return profile_test(args, out)


def _progress(args: argparse.Namespace, out: Output) -> Progress:
    """Progress lines on stderr (a terminal, or -v), never on stdout."""
    show = (not out.as_json and sys.stderr.isatty()) or args.verbose > 0

    def progress(message: str) -> None:
        if show:
            print(message, file=sys.stderr, flush=True)

    return progress


# --- explore ---------------------------------------------------------------------


def _value_text(value: bytes | None, error: str | None) -> str:
    if error is not None:
        return f"({error})"
    if value is None:
        return ""
    text = value.hex(" ")
    if value and all(32 <= b < 127 for b in value):
        text += f'  "{value.decode()}"'
    return text


def _uuid_text(uuid: str) -> str:
    from bleak.uuids import uuidstr_to_str  # noqa: PLC0415 - bleak only when used

    short = short_uuid(uuid)
    described = uuidstr_to_str(uuid)
    if described and described not in ("Unknown", "Vendor specific"):
        return f"{short} {described}"
    return short


# Column widths of the explore table (a long SIG name is cut to fit).
_UUID_COLUMN = 44
_PROPERTIES_COLUMN = 32


def _row(handle: str, indent: int, uuid: str, properties: str, value: str) -> str:
    name = (" " * indent + uuid)[: _UUID_COLUMN - 1]
    return f"{handle:<8}{name:<{_UUID_COLUMN}}{properties:<{_PROPERTIES_COLUMN}}{value}".rstrip()


def explore_table(dump: GattDump) -> str:
    """The dump as a table: one row per service, characteristic and descriptor."""
    ep = pick_endpoints(dump)
    head = (
        f"{dump.name or '(no name)'}  {dump.address}  {dump.rssi} dBm  MTU {dump.mtu}"
        + (f"  advertises {', '.join(short_uuid(u) for u in dump.service_uuids)}"
           if dump.service_uuids else "")
        + (f"  manufacturer {', '.join(f'0x{m:04X}' for m in dump.manufacturer_ids)}"
           if dump.manufacturer_ids else "")
    )
    rows = [head, _row("handle", 0, "uuid", "properties", "value")]
    for service in dump.services:
        note = ""
        if ep is not None and service is ep.service:
            note = "<- the skeleton's service"
        elif is_standard(service):
            note = "(standard)"
        rows.append(_row(f"0x{service.handle:04x}", 0, _uuid_text(service.uuid), "service", note))
        for c in service.characteristics:
            role = ""
            if ep is not None and c is ep.write:
                role = "<- write"
            elif ep is not None and c is ep.notify:
                role = "<- notify"
            value = "  ".join(t for t in (_value_text(c.value, c.error), role) if t)
            rows.append(_row(f"0x{c.handle:04x}", 2, _uuid_text(c.uuid),
                             ", ".join(c.properties), value))
            for d in c.descriptors:
                rows.append(_row(f"0x{d.handle:04x}", 4, _uuid_text(d.uuid), "descriptor",
                                 _value_text(d.value, d.error)))
    return "\n".join(rows)


def _write_new(path: Path, text: str) -> None:
    """Write ``text`` to a new file (an existing one is never overwritten)."""
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc


async def explore(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Connect and dump every service, characteristic, descriptor and readable value,
    as a table (or ``--toml``: the profile skeleton); ``--output`` writes the skeleton."""
    progress = _progress(args, out)
    output = Path(args.output) if args.output else None
    if output is not None and output.exists():
        raise UsageError(f"{output} exists", advice="give a new file name; it is never overwritten")
    owners = await refuse_if_held(args)
    async with open_radio(args, config) as radio:
        seen = await find_unheld(radio, args, progress, owners)
        progress(f"connecting to {seen.address}...")
        async with Probe(radio, seen) as probe:
            progress("discovering services" + ("" if args.no_read else " and reading values"))
            dump = await probe.dump(read_values=not args.no_read)
    skeleton = render_skeleton(dump, command=f"footctl explore {args.target}")
    if output is not None:
        _write_new(output, skeleton)
        progress(f"profile skeleton written to {output}")
    ep = pick_endpoints(dump)
    endpoints = None if ep is None else {
        "service": ep.service.uuid,
        "write": ep.write.uuid,
        "write_handle": ep.write.handle,
        "notify": None if ep.notify is None else ep.notify.uuid,
        "notify_handle": None if ep.notify is None else ep.notify.handle,
    }
    data = {"ok": True, "device": dump.to_dict(), "endpoints": endpoints, "skeleton": skeleton}
    out.result(data, skeleton if args.toml else explore_table(dump))
    return ExitCode.OK


# --- sniff -------------------------------------------------------------------------


def _decoder(args: argparse.Namespace, config: Config) -> Profile | None:
    """The profile to decode through: ``--profile`` as a file or an id, else none."""
    spec = getattr(args, "profile", None)
    if not spec:
        return None
    path = Path(spec)
    if spec.endswith(".toml") or path.exists():
        return load_profile(path)
    return get_profile(spec, list(config.profile_dirs))


def _frames(texts: list[str]) -> list[bytes]:
    frames = []
    for text in texts:
        try:
            frame = parse_hex(text)
        except ValueError as exc:
            raise UsageError(
                f"--write {text!r}: {exc}", advice="write bytes as hex: 'aa 55 01'"
            ) from None
        if not frame:
            raise UsageError(f"--write {text!r}: no bytes")
        frames.append(frame)
    return frames


def _find_char(dump: GattDump, spec: str | int) -> CharacteristicInfo | None:
    if isinstance(spec, int):
        return next((c for c in dump.characteristics() if c.handle == spec), None)
    return next((c for c in dump.characteristics() if c.uuid.lower() == spec), None)


def _parse_char_spec(text: str) -> str | int:
    """``0x0010`` or ``16`` is a handle; ``FFF1`` or a 128-bit UUID is a UUID."""
    t = text.strip().lower()
    if t.startswith("0x") or t.isdigit():
        try:
            return int(t, 0)
        except ValueError:
            pass
    try:
        return normalize_uuid(text)
    except ValueError as exc:
        raise UsageError(f"--to {text!r}: not a UUID or a handle ({exc})") from None


def _write_target(
    args: argparse.Namespace, dump: GattDump, profile: Profile | None
) -> tuple[CharacteristicInfo, bool]:
    """Where ``--write`` frames go, and whether with response."""
    if args.to:
        target = _find_char(dump, _parse_char_spec(args.to))
        if target is None:
            raise UsageError(f"--to {args.to}: no such characteristic on {dump.address}",
                             advice="'footctl explore' lists them")
    elif profile is not None:
        target = _find_char(dump, profile.gatt.write_specifier)
        if target is None:
            raise UsageError(
                f"{dump.address} has no write characteristic "
                f"{profile.gatt.write_specifier} of profile {profile.id}",
                advice="give --to, or check --profile",
            )
    else:
        ep = pick_endpoints(dump)
        if ep is None:
            raise UsageError(f"{dump.address}: no vendor characteristic to write to",
                             advice="name one with --to (see 'footctl explore')")
        target = ep.write
    if not target.writable:
        raise UsageError(f"characteristic {short_uuid(target.uuid)} is not writable "
                         f"({', '.join(target.properties)})")
    response = "write" in target.properties
    if profile is not None and not args.to and "write-without-response" in target.properties:
        response = response and profile.gatt.write_with_response
    return target, response


def _report_text(report: Report) -> str:
    parts = []
    for key, value in vars(report).items():
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"{key}={'on' if value else 'off'}")
        else:
            parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return "status " + (" ".join(parts) or "(no fields)")


def _decode(profile: Profile | None, data: bytes, *, to_device: bool) -> tuple[Any, str]:
    """(JSON value, text) of a frame decoded through ``profile``."""
    if profile is None:
        return None, ""
    try:
        if to_device:
            cmd: Command = codec.decode_command(profile, data)
            text = cmd.name if cmd.value is None else f"{cmd.name} {cmd.value}"
            return {"command": cmd.name, "value": cmd.value}, text
        report = codec.decode_status(profile, data)
    except CodecError as exc:
        return {"error": exc.message}, f"? {exc.message}"
    fields = {k: v for k, v in vars(report).items() if v is not None}
    return {"status": fields}, _report_text(report)


class _Printer:
    """One line per event: text (and the log file), or JSON lines with --json."""

    def __init__(self, out: Output, log: IO[str] | None, profile: Profile | None) -> None:
        self.out = out
        self.log = log
        self.profile = profile
        self.start = time.monotonic()
        self.counts = {"notify": 0, "write": 0}

    def event(self, kind: str, char: CharacteristicInfo, data: bytes, extra: str = "") -> None:
        now = datetime.now().astimezone()
        elapsed = time.monotonic() - self.start
        decoded, text = _decode(self.profile, data, to_device=kind == "write")
        self.counts[kind] += 1
        arrow = "->" if kind == "write" else "<-"
        line = (
            f"{now.strftime('%H:%M:%S.%f')[:-3]} {elapsed:+8.3f}s {arrow} "
            f"{short_uuid(char.uuid):<6} {data.hex(' ')}"
            + (f"  {text}" if text else "") + (f"  ({extra})" if extra else "")
        )
        if self.out.as_json:
            record = {
                "event": kind, "time": now.isoformat(timespec="milliseconds"),
                "elapsed_s": round(elapsed, 3), "characteristic": char.uuid,
                "handle": char.handle, "hex": data.hex(" "), "decoded": decoded,
            }
            print(json.dumps(record, sort_keys=True), flush=True)
        else:
            print(line, flush=True)
        if self.log is not None:
            self.log.write(line + "\n")
            self.log.flush()


async def _switch_off(
    args: argparse.Namespace, radio: Radio, address: str, profile: Profile | None,
    progress: Progress, markers: MarkerStore | None,
) -> None:
    """Frames written outside the safety governor may have left the massager running:
    switch it off through an ordinary session (with ``--profile``), or say so."""
    if profile is None:
        print(
            f"footctl: frames were written to {address} outside the safety governor; it may "
            f"still be running: switch it off (footctl --device {address} --profile ID stop, "
            "or its own button)",
            file=sys.stderr, flush=True,
        )
        return
    progress(f"switching {address} off (frames were written outside the safety governor)")
    session = DeviceSession(
        profile, radio, address=address, scan_timeout=args.scan_timeout, on_progress=progress
    )
    try:
        await session.connect()
        await session.all_off()
    except FootctlError as exc:
        print(f"footctl: could not switch {address} off: {exc}; switch it off by hand"
              + (" (the next footctl run tries again)" if markers is not None else ""),
              file=sys.stderr, flush=True)
        return
    finally:
        await session.close()
    if markers is not None:
        markers.clear(address)


def _open_log(name: str) -> IO[str]:
    """The ``--log`` file, opened for appending (the caller closes it)."""
    try:
        return Path(name).open("a", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot open {name}: {exc.strerror or exc}") from exc


async def _until_end(duration: float | None, lost: asyncio.Event) -> str:
    """Wait for the duration, the link to drop, or Ctrl-C (which ends the sniff
    normally: the interrupt is what the user asked for, not an error)."""
    try:
        if duration is None:
            await lost.wait()
        else:
            try:
                await asyncio.wait_for(lost.wait(), duration)
            except TimeoutError:
                return "duration"
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling() == 0:
            raise
        task.uncancel()
        return "interrupted"
    return "link_lost"


async def sniff(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Subscribe to every notifying characteristic and print what arrives; send the
    ``--write`` frames after subscribing."""
    progress = _progress(args, out)
    profile = _decoder(args, config)
    frames = _frames(args.frames)
    owners = await refuse_if_held(args)
    log = _open_log(args.log) if args.log else None
    printer = _Printer(out, log, profile)
    reason = "interrupted"
    # A crash after a raw write leaves a marker, so the next footctl run turns the
    # massager off first (an in-process virtual massager dies with us: none needed).
    markers = MarkerStore() if profile is not None and not args.simulate else None
    try:
        async with open_radio(args, config) as radio:
            seen = await find_unheld(radio, args, progress, owners)
            lost = asyncio.Event()
            progress(f"connecting to {seen.address}...")
            try:
                async with Probe(radio, seen, on_disconnect=lost.set) as probe:
                    dump = await probe.dump(read_values=False)
                    target = _write_target(args, dump, profile) if frames else None
                    chars = [c for c in dump.characteristics() if c.notifies]
                    for char in chars:
                        await probe.subscribe(
                            char, lambda c, data: printer.event("notify", c, data)
                        )
                    names = ", ".join(short_uuid(c.uuid) for c in chars) or "nothing"
                    until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
                    progress(f"subscribed to {names}; listening {until}")
                    printer.start = time.monotonic()
                    if frames and markers is not None and profile is not None:
                        markers.write(seen.address, profile.id, "sniff")
                    for i, frame in enumerate(frames):
                        assert target is not None
                        char, response = target
                        if i:
                            await asyncio.sleep(args.write_gap)
                        # shown as it is sent: a device answers before the write returns
                        printer.event("write", char, frame,
                                      "with response" if response else "without response")
                        await probe.write(char, frame, response=response)
                    reason = await _until_end(args.duration, lost)
            finally:
                # whatever ended the sniff (the link too), raw writes are undone
                if printer.counts["write"]:
                    await _switch_off(args, radio, seen.address, profile, progress, markers)
    finally:
        if log is not None:
            log.close()
    counts = printer.counts
    summary = {"ok": reason != "link_lost", "event": "end", "reason": reason,
               "notifications": counts["notify"], "writes": counts["write"]}
    text = f"{reason}: {counts['notify']} notification(s), {counts['write']} write(s)"
    if reason == "link_lost":
        raise DeviceUnavailable(f"{seen.address}: link lost while sniffing ({text})")
    if out.as_json:
        print(json.dumps(summary, sort_keys=True), flush=True)
    else:
        print(text, file=sys.stderr, flush=True)
    return ExitCode.OK


# --- profile test ------------------------------------------------------------------


def _vector_problems(profile: Profile, path: Path) -> dict[str, tuple[int, list[str]]]:
    """Cases checked and problems found in a byte-vector file, by capability."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: {exc}") from exc
    if data.get("profile", profile.id) != profile.id:
        # Vectors of the device a new profile was written from are the point: a note only.
        print(f"footctl: {path} names profile {data['profile']!r}; checking them against "
              f"{profile.id!r}", file=sys.stderr)
    out: dict[str, tuple[int, list[str]]] = {}

    def add(capability: str, problem: str | None) -> None:
        checked, problems = out.get(capability, (0, []))
        out[capability] = (checked + 1, problems + ([problem] if problem else []))

    for entry in data.get("command", []):
        name, value = entry.get("name"), entry.get("value")
        label = f"vector {name}" + ("" if value is None else f"={value}")
        try:
            want = parse_hex(entry["hex"])
            got = codec.encode(profile, Command(str(name), value))
        except (KeyError, ValueError, CodecError) as exc:
            add("commands", f"{label}: {getattr(exc, 'message', exc)}")
            continue
        add("commands", None if got == want else
            f"{label}: encodes as {got.hex(' ')}, the vector says {want.hex(' ')}")
    for entry in data.get("status", []):
        label = f"vector {entry.get('hex', '?')}"
        try:
            frame = parse_hex(entry["hex"])
            want_report = Report(**entry.get("expect", {}))
            got_report = codec.decode_status(profile, frame)
        except (KeyError, ValueError, TypeError, CodecError) as exc:
            add("status", f"{label}: {getattr(exc, 'message', exc)}")
            continue
        add("status", None if got_report == want_report else
            f"{label}: decodes as {_report_text(got_report)}, the vector says "
            f"{_report_text(want_report)}")
    return out


def _with_vectors(result: RoundTrip, vectors: dict[str, tuple[int, list[str]]]) -> RoundTrip:
    rows = list(result.results)
    for capability, (checked, problems) in vectors.items():
        for i, row in enumerate(rows):
            if row.capability == capability:
                rows[i] = CapabilityResult(
                    capability, row.checked + checked, row.problems + tuple(problems)
                )
                break
        else:
            rows.append(CapabilityResult(capability, checked, tuple(problems)))
    return RoundTrip(result.profile_id, tuple(rows))


def profile_test(args: argparse.Namespace, out: Output) -> int:
    """Round-trip every command and status field of a profile file through the codec
    and the virtual massager model; exit 2 if any capability fails."""
    path = Path(args.file)
    profile = load_profile(path)
    try:
        result = round_trip(profile)
    except FootctlError as exc:
        result = RoundTrip(profile.id, (CapabilityResult("round trip", 0, (str(exc),)),))
    if args.vectors:
        result = _with_vectors(result, _vector_problems(profile, Path(args.vectors)))
    lines = [f"{path}: profile {profile.id}"]
    for row in result.results:
        mark = "ok  " if row.ok else "FAIL"
        lines.append(f"  {mark} {row.capability:<10} {row.checked} checked")
        lines += [f"         - {p}" for p in row.problems]
    failed = [r.capability for r in result.results if not r.ok]
    lines.append("all capabilities round-trip" if not failed else f"failed: {', '.join(failed)}")
    out.result({**result.to_dict(), "file": str(path), "failed": failed}, "\n".join(lines))
    return ExitCode.OK if result.ok else ExitCode.USAGE
