"""Local control sockets: the guardian's and the daemon's.

A command that leaves a massager running stays in the foreground as its guardian;
the daemon holds the massagers for good. Other footctl processes reach either through
a Unix socket (mode 0600, in the user's runtime dir) speaking JSON lines, so
``footctl stop`` from another terminal is carried out by the process that holds the
BLE connection.

Three guards, each enough on its own against another local user: the 0700 runtime
dir, the 0600 socket, and the peer's uid (``SO_PEERCRED``) checked on every
connection. A malformed request gets an error reply, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from footctl.config import runtime_dir
from footctl.errors import DeviceUnavailable, FootctlError, UsageError

if TYPE_CHECKING:
    from footctl.safety.decide import Request
    from footctl.safety.governor import SafetyGovernor
    from footctl.state import DeviceState

_LOG = logging.getLogger(__name__)

# A request line larger than this is not a footctl client.
MAX_REQUEST_BYTES = 64 * 1024

# A guardian answers in milliseconds (a stop waits for the device's confirmation,
# which is bounded by the session's confirm timeout); past this it is hung.
CLIENT_TIMEOUT_S = 15.0

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

# struct ucred { pid_t pid; uid_t uid; gid_t gid; } as Linux returns it for SO_PEERCRED.
_UCRED = struct.Struct("3i")


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket, or None where the
    platform cannot tell (no ``SO_PEERCRED``)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    data = sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size)
    _pid, uid, _gid = _UCRED.unpack(data)
    return int(uid)


def peer_allowed(uid: int | None, own_uid: int) -> bool:
    """Only our own user may drive our massagers. An unknown peer (no ``SO_PEERCRED``)
    is let through: the 0600 socket in a 0700 directory already keeps others out."""
    return uid is None or uid == own_uid


def error_reply(kind: str, message: str, exit_code: int = 2) -> dict[str, Any]:
    """An error answer in the shape every client understands."""
    return {"ok": False, "error": kind, "message": message, "exit_code": exit_code}


def socket_path(address: str, base: Path | None = None) -> Path:
    """The guardian socket for one device address."""
    safe = re.sub(r"[^0-9A-Za-z]", "", address).lower() or "device"
    return (base or runtime_dir()) / f"guardian-{safe}.sock"


def find_guardians(base: Path | None = None) -> list[Path]:
    """Guardian sockets present in the runtime dir."""
    directory = base or runtime_dir()
    if not directory.is_dir():
        return []
    return sorted(directory.glob("guardian-*.sock"))


class ControlServer:
    """Serves JSON-line requests on a Unix socket to ``handler``, for our user only.

    ``own_uid`` is the uid allowed to connect (default: ours); tests pass another to
    see a connection refused.
    """

    def __init__(self, path: Path, handler: Handler, *, own_uid: int | None = None) -> None:
        self.path = path
        self._handler = handler
        self._own_uid = os.getuid() if own_uid is None else own_uid
        self._server: asyncio.Server | None = None
        self.rejected = 0

    async def start(self) -> None:
        """Create the socket (0600 in a 0700 directory). It is bound and listening
        under a temporary name first, then renamed into place, so a client never finds
        a socket nobody listens on yet (and removes it as stale)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(staging), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old_umask)
        os.chmod(staging, stat.S_IRUSR | stat.S_IWUSR)
        os.replace(staging, self.path)

    async def close(self) -> None:
        """Stop serving and remove the socket."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else None
            if not peer_allowed(uid, self._own_uid):
                self.rejected += 1
                _LOG.warning("control socket %s: refused a connection from uid %s", self.path, uid)
                await self._send(writer, error_reply("forbidden", "not your footctl", 1))
                return
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # a line past MAX_REQUEST_BYTES
                    await self._send(writer, error_reply("usage", "request too long"))
                    return
                if not line:
                    return
                await self._send(writer, await self._answer(line))
        except ConnectionError as exc:
            _LOG.debug("control client: %s", exc)
        finally:
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(json.dumps(reply, default=str).encode() + b"\n")
        await writer.drain()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError as exc:  # not JSON, or not UTF-8
            return error_reply("usage", f"not JSON: {exc}")
        try:
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise UsageError("a request is a JSON object with a 'cmd' string")
            return await self._handler(request)
        except FootctlError as exc:
            return {"ok": False, "exit_code": exc.exit_code, **exc.to_dict()}
        except Exception as exc:
            # A bug in a handler must not take the socket (or the daemon) down.
            _LOG.exception("control request %r failed", line[:200])
            return error_reply("internal", f"{type(exc).__name__}: {exc}", 1)


GuardianServer = ControlServer


async def ask(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Send one request to a guardian and return its reply."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_REQUEST_BYTES)
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
    finally:
        writer.close()
    reply = json.loads(line) if line else {"ok": False, "message": "guardian closed"}
    if not isinstance(reply, dict):
        return {"ok": False, "message": "malformed guardian reply"}
    return reply


async def ask_holder(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """:func:`ask`, with a hung or vanished holder (daemon or guardian) as a
    FootctlError the CLI can show on one line."""
    try:
        return await ask(path, request)
    except TimeoutError as exc:
        raise DeviceUnavailable(
            f"the footctl process holding the massager did not answer within "
            f"{CLIENT_TIMEOUT_S:g} s ({path})",
            advice="it may be hung; 'systemctl --user restart footctl' or end that process",
        ) from exc
    except (OSError, ValueError) as exc:
        raise DeviceUnavailable(f"lost the footctl process holding the massager: {exc}") from exc


# A client waits this long for a change to be confirmed. A rise in intensity climbs
# one level per ramp step (10 s by default), so a big rise takes longer than anyone
# should wait at a prompt: the client then gets the state so far and the ramp goes on
# in the process that holds the massager.
REPLY_BUDGET_S = 8.0

_background: set[asyncio.Task[Any]] = set()


def _log_outcome(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        _LOG.warning("change continued in the background failed: %s", task.exception())


async def submit_for_client(
    governor: SafetyGovernor, request: Request
) -> tuple[DeviceState, tuple[str, ...]]:
    """Submit ``request`` for a socket client: the confirmed state and the notes, or,
    if the ramp takes longer than :data:`REPLY_BUDGET_S`, the state so far with a
    note, while the ramp goes on. A refusal is raised as usual."""
    task = asyncio.ensure_future(governor.submit(request))
    done, _ = await asyncio.wait({task}, timeout=REPLY_BUDGET_S)
    if task in done:
        state, decision = task.result()
        return state, decision.notes
    _background.add(task)
    task.add_done_callback(_log_outcome)
    target = governor.desired.intensity
    note = (
        f"ramping to intensity {target}: one level every {governor.limits.ramp_step_s:g} s; "
        "it goes on after this reply ('footctl status' shows it)"
    )
    return governor.session.state, (note,)


async def reachable_guardian(address: str | None, base: Path | None = None) -> Path | None:
    """A live guardian socket for ``address`` (or the only one, if no address is
    given). Stale sockets left by a killed guardian are removed."""
    candidates = [socket_path(address, base)] if address else find_guardians(base)
    live: list[Path] = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            reply = await ask(path, {"cmd": "ping"})
        except (OSError, TimeoutError, ValueError):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if reply.get("ok"):
            live.append(path)
    return live[0] if len(live) == 1 else None


def daemon_socket_path(base: Path | None = None) -> Path:
    """The daemon's control socket."""
    return (base or runtime_dir()) / "daemon.sock"


async def reachable_daemon(base: Path | None = None) -> Path | None:
    """The daemon's socket if a daemon answers on it; a stale socket left by a killed
    daemon is removed."""
    path = daemon_socket_path(base)
    if not path.exists():
        return None
    try:
        reply = await ask(path, {"cmd": "ping"})
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    except (OSError, TimeoutError, ValueError):
        return None
    return path if reply.get("ok") else None
