"""The thin CLI client: talk to running owners over their control sockets.

Standard library only (no bleak, Bumble or pydantic): ``footctl status`` against a
running daemon costs about what starting Python costs. The owner validates every
request (:func:`footctl.control.api.parse_request`); this side only builds the
JSON lines and prints the replies.

Which owner: every live socket in the runtime dir (the daemon's and each
short-lived owner's) says which massagers it holds (``ping``). ``--device`` picks
the massager so named, ``--link`` those on that link; ``stop`` with neither goes to
every massager of every owner. When no owner holds what the command names, the
caller starts an owner of its own (:mod:`footctl.app`).
"""

from __future__ import annotations

import _socket  # the C module: socket.py (with enum and selectors) costs startup time
import os
import sys

from footctl.control import wire
from footctl.control.sockets import owner_sockets
from footctl.render import emit, reply_text, view_text

TYPE_CHECKING = False  # typing costs the client milliseconds; mypy reads this as True
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

# An owner answers a ping in milliseconds and a stop within its confirm budget (a few
# seconds, longer while the link is down); past this it is hung.
CLIENT_TIMEOUT_S = 20.0
# Pinging a socket to see who is there: a live owner answers at once.
PING_TIMEOUT_S = 3.0
# Longest reply line we read.
MAX_REPLY_BYTES = 4 * 1024 * 1024

OK, OTHER, USAGE, UNREACHABLE = 0, 1, 2, 3
SIGINT_EXIT = 130


class ClientError(Exception):
    """An owner could not be reached or answered nonsense."""


class OwnerInfo:
    """A live owner: its socket and the massagers it holds (DeviceView dicts)."""

    def __init__(self, path: str, devices: list[dict[str, Any]], daemon: bool) -> None:
        self.path = path
        self.devices = devices
        self.daemon = daemon


class _Conn:
    """One connection to an owner: send a request line, read reply lines."""

    def __init__(self, path: str, timeout: float | None) -> None:
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.buf = b""
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        except BaseException:
            self.sock.close()
            raise

    def send(self, request: dict[str, Any]) -> None:
        self.sock.sendall(wire.dumps({"v": 1, "source": "cli", **request}).encode() + b"\n")

    def read(self) -> dict[str, Any]:
        """The next line as a JSON object; ClientError at the end or on nonsense."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ClientError("the owner closed the connection")
            self.buf += chunk
            if len(self.buf) > MAX_REPLY_BYTES:
                raise ClientError("reply too long")
        line, _, self.buf = self.buf.partition(b"\n")
        data = wire.loads(line)
        if not isinstance(data, dict):
            raise ClientError("malformed reply")
        return data

    def close(self) -> None:
        self.sock.close()


def call(path: str, request: dict[str, Any], timeout: float = CLIENT_TIMEOUT_S) -> dict[str, Any]:
    """Send one request, return the reply (a dict)."""
    conn = _Conn(path, timeout)
    try:
        conn.send(request)
        return conn.read()
    finally:
        conn.close()


def stream(path: str, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Send a ``watch`` request; yield each event until the owner goes away."""
    conn = _Conn(path, CLIENT_TIMEOUT_S)
    try:
        conn.send(request)
        conn.sock.settimeout(None)
        while True:
            try:
                yield conn.read()
            except ClientError:
                return
    finally:
        conn.close()


def live_owners(base: str | None = None) -> list[OwnerInfo]:
    """Every owner that answers a ping; sockets nobody listens on (a killed owner)
    are removed."""
    found = []
    for path in owner_sockets(base):
        try:
            reply = call(path, {"kind": "ping"}, PING_TIMEOUT_S)
        except (ConnectionRefusedError, FileNotFoundError):
            try:  # noqa: SIM105 - contextlib costs the client startup time
                os.unlink(path)
            except OSError:
                pass
            continue
        except (OSError, ValueError, ClientError):
            continue  # alive but hung, or not ours: leave it be
        if reply.get("ok"):
            found.append(OwnerInfo(path, list(reply.get("devices", [])), bool(reply.get("daemon"))))
    return found


def names_of(view: dict[str, Any]) -> set[str]:
    """Every name a massager answers to (lower case)."""
    names = {str(view.get(k) or "").lower() for k in ("device_id", "address", "name")}
    names.discard("")
    return names


def select(
    owners: list[OwnerInfo], device: str | None, link: str | None
) -> list[tuple[OwnerInfo, dict[str, Any]]]:
    """The massagers of ``owners`` that ``--device`` / ``--link`` name (all if neither)."""
    out = []
    for owner in owners:
        for view in owner.devices:
            if link is not None and view.get("radio") != f"link {link}":
                continue
            if device is not None and device.lower() not in names_of(view):
                continue
            out.append((owner, view))
    if device is not None and not out:
        # A profile id names a massager if exactly one of that profile is held.
        by_profile = [
            (o, v) for o in owners for v in o.devices
            if str(v.get("profile", "")).lower() == device.lower()
            and (link is None or v.get("radio") == f"link {link}")
        ]
        if len(by_profile) == 1:
            return by_profile
    return out


class Printer:
    """One JSON object per outcome with ``--json``; text otherwise (errors on stderr)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def reply(self, reply: dict[str, Any], via: str) -> int:
        """Print an owner's reply; its exit code."""
        if not reply.get("ok"):
            return self.error(reply)
        devices = reply.get("devices", [])
        out = {**reply, "via": via}
        if len(devices) == 1:
            out["device"] = devices[0]
        if self.as_json:
            emit(wire.dumps(out, sort_keys=True))
        else:
            emit(reply_text(reply) + f"\n(via {via})")
        return OK

    def stop_result(
        self, reply: dict[str, Any], missed: list[dict[str, Any]], via: str, retry: str
    ) -> int:
        """Print a stop's outcome; each massager in ``missed`` (its off not confirmed)
        is named on stderr and listed as ``unconfirmed``: exit 3 if any."""
        if not missed:
            return self.reply(reply, via)
        out = {**reply, "ok": False, "error": "device_unavailable", "exit_code": UNREACHABLE,
               "unconfirmed": missed, "via": via,
               "message": "everything off not confirmed on " + ", ".join(
                   str(m["device"]) for m in missed)}
        if self.as_json:
            emit(wire.dumps(out, sort_keys=True))
        elif reply.get("devices"):  # reached none: the lines below say it all
            emit(reply_text(reply) + f"\n(via {via})")
        for m in missed:
            then = (f"owed: footctl pid {m['owner_pid']} writes it first when the link "
                    "returns" if m.get("owed") else m.get("advice") or retry)
            print(f"footctl: {m['device']}: everything off NOT confirmed ({m['reason']}); "
                  f"{then}", file=sys.stderr, flush=True)
        return UNREACHABLE

    def error(self, reply: dict[str, Any]) -> int:
        """Print an error reply; its exit code."""
        code = int(reply.get("exit_code") or OTHER)
        if self.as_json:
            emit(wire.dumps({**reply, "ok": False, "exit_code": code}, sort_keys=True))
        message = str(reply.get("message", "failed"))
        if reply.get("advice"):
            message += f" ({reply['advice']})"
        print(f"footctl: {message}", file=sys.stderr, flush=True)
        return code


def _via(owner: OwnerInfo) -> str:
    stem = os.path.basename(owner.path).removesuffix(".sock").removeprefix("owner-")
    return "daemon" if owner.daemon else f"owner {stem}"


def _base_request(args: Any) -> dict[str, Any]:
    command = args.command
    if command in ("off", "stop"):
        return {"kind": "stop"}
    if command == "on":
        return {"kind": "on"}
    if command == "set":
        fields = {k: getattr(args, k) for k in ("intensity", "heat", "mode", "zone")}
        return {"kind": "set", **{k: v for k, v in fields.items() if v is not None}}
    if command == "run":
        program = args.program
        if program.endswith(".toml") or os.sep in program:
            program = os.path.abspath(program)  # the owner has its own working directory
        return {"kind": "run", "program": program}
    if command == "watch" or (command == "status" and getattr(args, "follow", False)):
        return {"kind": "watch"}
    return {"kind": "status"}


def try_owners(args: Any, printer: Printer) -> int | None:
    """Carry out a device command through the owners that hold its massager; None if
    none does (the caller then becomes the owner)."""
    if args.simulate:
        return None  # that massager lives in our own process
    device, link = args.device, args.link
    request = _base_request(args)
    owners = live_owners()
    if not owners:
        return None
    if request["kind"] == "stop" and device is None and link is None:
        return _stop_everywhere(owners, printer)
    chosen = select(owners, device, link)
    if not chosen:
        return None
    if request["kind"] == "stop":
        return _stop_chosen(chosen, printer)
    if request["kind"] == "status":
        # A ping's answer is the owner's state now: nothing more to ask.
        owners_used = {o.path for o, _ in chosen}
        via = _via(chosen[0][0]) if len(owners_used) == 1 else f"{len(owners_used)} owners"
        return printer.reply({"v": 1, "ok": True, "devices": [v for _, v in chosen],
                              "notes": []}, via)
    if request["kind"] == "watch":
        return watch_many([(o.path, v["device_id"] if device or link else None)
                           for o, v in chosen])
    if len(chosen) > 1:
        names = ", ".join(str(v.get("name")) for _, v in chosen)
        return printer.error({"error": "usage", "exit_code": USAGE,
                              "message": f"{len(chosen)} massagers are held ({names})",
                              "advice": "name one with --device"})
    owner, view = chosen[0]
    request["device"] = view["device_id"]
    try:
        reply = call(owner.path, request)
    except (OSError, ValueError, ClientError) as exc:
        return printer.error({"error": "unreachable", "exit_code": UNREACHABLE,
                              "message": f"lost the footctl owner at {owner.path}: {exc}"})
    if request["kind"] == "run" and reply.get("ok"):
        return follow_run(owner, view["device_id"], reply, printer)
    return printer.reply(reply, _via(owner))


def _stop_everywhere(owners: list[OwnerInfo], printer: Printer) -> int:
    return _stop_chosen([(o, None) for o in owners], printer)


def _stop_chosen(
    chosen: Sequence[tuple[OwnerInfo, dict[str, Any] | None]], printer: Printer
) -> int:
    """Stop each chosen massager (None: all an owner holds), every owner in parallel
    threads, so one hung owner never delays the others."""
    import concurrent.futures  # noqa: PLC0415

    def one(item: tuple[OwnerInfo, dict[str, Any] | None]) -> dict[str, Any]:
        owner, view = item
        request: dict[str, Any] = {"kind": "stop"}
        if view is not None:
            request["device"] = view["device_id"]
        try:
            return call(owner.path, request)
        except (OSError, ValueError, ClientError) as exc:
            return {"ok": False, "error": "unreachable", "exit_code": UNREACHABLE,
                    "message": f"{owner.path}: {exc}"}

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(chosen))) as pool:
        replies = list(pool.map(one, chosen))
    devices = [d for r in replies if r.get("ok") for d in r.get("devices", [])]
    notes = [n for r in replies if r.get("ok") for n in r.get("notes", [])]
    errors = [r for r in replies if not r.get("ok")]
    if errors and not devices:
        return printer.error(errors[0])
    missed = [m for r in replies if r.get("ok") for m in unconfirmed(r)]
    merged = {"v": 1, "ok": True, "devices": devices,
              "notes": [n for n in notes if not any(n.startswith(f"{m['device']}: ")
                                                    for m in missed)],
              "owners": len(replies), "errors": errors}
    for err in errors:
        print(f"footctl: {err.get('message')}", file=sys.stderr, flush=True)
    owners = list(dict.fromkeys(id(o) for o, _ in chosen))
    via = _via(chosen[0][0]) if len(owners) == 1 else f"{len(owners)} owners"
    code = printer.stop_result(merged, missed, via, retry="run 'footctl stop' again")
    return code if not errors else int(errors[0].get("exit_code") or OTHER)


def unconfirmed(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The massagers of an owner's stop reply whose off is owed, not confirmed (the
    reply's ``owed``: :class:`footctl.control.api.StopOwed`)."""
    pids = {str(v.get("device_id")): v.get("owner_pid") for v in reply.get("devices", [])}
    return [
        {"device": o.get("name"), "device_id": o.get("device_id"),
         "owner_pid": pids.get(str(o.get("device_id")), reply.get("owner_pid")), "owed": True,
         "reason": o.get("reason")}
        for o in reply.get("owed", [])
    ]


def held_by(addresses: Sequence[str], exclude_pid: int) -> list[int]:
    """The pids of the live owners (other than ``exclude_pid``) holding a massager
    at one of ``addresses``."""
    wanted = {a.lower() for a in addresses if a}
    return [
        int(v.get("owner_pid") or 0) for o in live_owners() for v in o.devices
        if str(v.get("address", "")).lower() in wanted and v.get("owner_pid") != exclude_pid
    ]


# --- scan through the owners (they hold the radios) -----------------------------------

# Besides its listening time, an owner answers a scan within this (as
# footctl.control.api.SCAN_MARGIN_S; a test checks they agree) ...
SCAN_MARGIN_S = 10.0
# ... and it refuses to listen longer than this (footctl.control.api.MAX_SCAN_S).
SCAN_MAX_S = 60.0


def try_scan(args: Any, printer: Printer) -> int | None:
    """``footctl scan`` through the running owners, which hold the radios (with
    ``--link``, those holding a massager on that link); None if there is none (the
    caller then scans itself). Every owner listens at once; what several heard is
    listed once, held first."""
    if args.simulate:
        return None  # a virtual world of our own: nobody else hears it
    owners = live_owners()
    if args.link is not None:
        owners = [o for o in owners
                  if any(v.get("radio") == f"link {args.link}" for v in o.devices)]
    if not owners:
        return None
    seconds = args.timeout
    request: dict[str, Any] = {"kind": "scan", "seconds": seconds}
    if args.profile:
        request["profile"] = args.profile
    # NaN or a length the owner refuses: it answers at once, with the reason.
    wait = SCAN_MARGIN_S + (seconds if 0 < seconds <= SCAN_MAX_S else 0.0)
    via = _via(owners[0]) if len(owners) == 1 else f"{len(owners)} owners"
    if not printer.as_json and sys.stderr.isatty():
        print(f"scanning through the {via} for {seconds:g} s (it holds the radio)...",
              file=sys.stderr, flush=True)
    import concurrent.futures  # noqa: PLC0415

    def one(owner: OwnerInfo) -> dict[str, Any]:
        try:
            return call(owner.path, request, wait)
        except (OSError, ValueError, ClientError) as exc:
            return {"ok": False, "error": "unreachable", "exit_code": UNREACHABLE,
                    "message": f"{owner.path}: no scan answer: {exc}"}

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(owners))) as pool:
        replies = list(pool.map(one, owners))
    answered = [r for r in replies if r.get("ok")]
    errors = [r for r in replies if not r.get("ok")]
    if not answered:
        return printer.error(errors[0])
    for err in errors:
        print(f"footctl: {err.get('message')}", file=sys.stderr, flush=True)
    best: dict[str, dict[str, Any]] = {}
    for row in (row for r in answered for row in r.get("seen", [])):
        key = str(row.get("address", "")).upper()
        old = best.get(key)
        if old is None or (bool(row.get("held")), row.get("rssi", -999)) > (
            bool(old.get("held")), old.get("rssi", -999)
        ):
            best[key] = row
    rows = sorted(best.values(), key=lambda r: -int(r.get("rssi") or -999))
    notes = [n for r in answered for n in r.get("notes", [])]
    out = {"ok": True, "devices": rows, "notes": notes, "via": via}
    emit(wire.dumps(out, sort_keys=True) if printer.as_json else scan_text(rows, notes, via))
    return OK


def scan_text(rows: list[dict[str, Any]], notes: list[str], via: str) -> str:
    """A scan's rows for people: address, RSSI, name, profile (or why none), held."""
    lines = [
        f"{r.get('address')}  {r.get('rssi'):>4} dBm  {r.get('name') or '(no name)':<12} "
        + (str(r["profile"]) if r.get("profile") else f"no profile: {r.get('reason')}")
        + (f"  (held: {r.get('device_id')})" if r.get("held") else "")
        for r in rows
    ] or ["no devices seen"]
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines) + f"\n(via {via})"


def watch_many(targets: list[tuple[str, str | None]]) -> int:
    """Print one JSON line per change of each target (an owner's socket and one of
    its massagers, or None for all it holds) until interrupted."""
    import threading  # noqa: PLC0415

    lock = threading.Lock()
    unique = list(dict.fromkeys(targets))
    if any(d is None for _, d in unique):  # a whole owner covers its massagers
        whole = {p for p, d in unique if d is None}
        unique = [(p, d) for p, d in unique if d is None or p not in whole]

    def follow(path: str, device: str | None) -> None:
        request: dict[str, Any] = {"kind": "watch"}
        if device is not None:
            request["device"] = device
        try:
            for event in stream(path, request):
                with lock:
                    emit(wire.dumps(event, sort_keys=True))
        except (OSError, ValueError):
            return

    threads = [threading.Thread(target=follow, args=t, daemon=True) for t in unique]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        return SIGINT_EXIT
    # Every stream ended without being interrupted: the owners went away (the daemon
    # stopped, a one-shot command ended). Say so; a script must not read it as success.
    print("footctl: the footctl owner went away; nothing left to watch "
          "('footctl status' shows what runs now)", file=sys.stderr, flush=True)
    return UNREACHABLE


# Exit codes of a program's end, as a refusal or an unreachable device.
SAFETY_ENDS = ("session_cap", "heat_cap", "heartbeat_missed", "over_temperature",
               "unexpected_heat", "cap_expired_while_away")


def run_exit_code(end_reason: str) -> int:
    """The exit code of a program run that ended with ``end_reason``."""
    if end_reason in ("completed", "stopped"):
        return OK
    if end_reason == "link_lost":
        return UNREACHABLE
    if end_reason in SAFETY_ENDS:
        return 4
    return OTHER


def follow_run(owner: OwnerInfo, device_id: str, reply: dict[str, Any], printer: Printer) -> int:
    """Follow a program an owner started: progress on stderr, Ctrl-C stops it."""
    path = owner.path
    print(f"running {reply.get('started')} in the footctl owner at {path}",
          file=sys.stderr, flush=True)
    for note in reply.get("notes", []):
        print(f"note: {note}", file=sys.stderr, flush=True)
    last_step = None
    try:
        for event in stream(path, {"kind": "watch", "device": device_id}):
            view = event.get("device")
            if not isinstance(view, dict):
                continue
            program = view.get("program")
            if isinstance(program, dict):
                if program.get("step") != last_step:
                    last_step = program.get("step")
                    print(view_text(view).splitlines()[-1], file=sys.stderr, flush=True)
                continue
            last = view.get("last_run")
            if isinstance(last, dict) and last.get("program") == reply.get("started"):
                out = {"ok": True, "via": _via(owner), **last}
                text = (f"{last['program']}: {last['end_reason']} after {last['steps_run']} of "
                        f"{last['steps']} steps")
                emit(wire.dumps(out, sort_keys=True) if printer.as_json else text)
                return run_exit_code(str(last["end_reason"]))
    except KeyboardInterrupt:
        try:  # noqa: SIM105 - contextlib costs the client startup time
            call(path, {"kind": "stop", "device": device_id})
        except (OSError, ValueError, ClientError):
            pass
        return SIGINT_EXIT
    return printer.error({"error": "unreachable", "exit_code": UNREACHABLE,
                          "message": "the owner went away before the program ended"})


def wait_for_socket(path: str, timeout: float) -> bool:
    """True once ``path`` answers a ping (tests and scripts)."""
    import time  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if call(path, {"kind": "ping"}, PING_TIMEOUT_S).get("ok"):
                return True
        except (OSError, ValueError, ClientError):
            pass
        time.sleep(0.05)
    return False
