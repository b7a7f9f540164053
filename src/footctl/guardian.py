"""The guardian's local control socket.

A command that leaves a massager running stays in the foreground as its guardian.
Other footctl processes reach it through a Unix socket (mode 0600, in the user's
runtime dir) speaking JSON lines, so ``footctl stop`` from another terminal is
carried out by the process that holds the BLE connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from footctl.config import runtime_dir
from footctl.errors import FootctlError, UsageError

_LOG = logging.getLogger(__name__)

# A request line larger than this is not a footctl client.
MAX_REQUEST_BYTES = 64 * 1024

# A guardian answers in milliseconds (a stop waits for the device's confirmation,
# which is bounded by the session's confirm timeout); past this it is hung.
CLIENT_TIMEOUT_S = 15.0

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


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


class GuardianServer:
    """Serves requests for one guarded device."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Create the socket (0600 in a 0700 directory)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)

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
            while line := await reader.readline():
                reply = await self._answer(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            _LOG.debug("guardian client: %s", exc)
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise UsageError("a request is a JSON object with a 'cmd' string")
            return await self._handler(request)
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": "usage", "message": f"not JSON: {exc}"}
        except FootctlError as exc:
            return {"ok": False, "exit_code": exc.exit_code, **exc.to_dict()}


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
