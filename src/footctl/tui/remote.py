"""A :class:`~footctl.control.port.Controller` over an owner's control socket (the
daemon's): how the TUI talks to massagers another process holds.

Each request has a connection of its own, so a stop never waits behind a slow
``set``; the state stream is one ``watch`` connection whose events are coalesced
here as the StateHub coalesces them (at most one pending view per massager), so a
slow terminal never makes the owner buffer for us.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from footctl.control.api import (
    DeviceView,
    ErrorReply,
    Reply,
    Request,
    Source,
    StateEvent,
    WatchRequest,
)
from footctl.errors import DeviceUnavailable

_LOG = logging.getLogger(__name__)

# An owner answers within its reply budget (8 s, longer for a stop on a dropped
# link); past this it is hung, and the request fails rather than freeze a key.
REQUEST_TIMEOUT_S = 20.0
# Longest line we read: a reply carrying every massager's view (the owner's own
# limit for what it sends is far below).
MAX_LINE_BYTES = 4 * 1024 * 1024

_ANSWER = TypeAdapter[Reply | ErrorReply](Reply | ErrorReply)


class SocketController:
    """The control API of the owner serving ``path``."""

    def __init__(
        self, path: Path | str, *, source: Source = "tui", timeout: float = REQUEST_TIMEOUT_S
    ) -> None:
        self.path = Path(path)
        self.source: Source = source
        self.timeout = timeout
        self._latest: dict[str, DeviceView] = {}

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_unix_connection(str(self.path), limit=MAX_LINE_BYTES)
        except OSError as exc:
            raise DeviceUnavailable(
                f"cannot reach the owner at {self.path}: {exc}",
                advice="is `footctl daemon` still running?",
            ) from exc

    async def request(self, request: Request) -> Reply | ErrorReply:
        """Send one request, wait for its reply."""
        reader, writer = await self._open()
        try:
            writer.write(request.model_dump_json(exclude_none=True).encode() + b"\n")
            async with asyncio.timeout(self.timeout):
                await writer.drain()
                line = await reader.readline()
        except TimeoutError as exc:
            raise DeviceUnavailable(f"no answer from the owner within {self.timeout:g} s") from exc
        finally:
            writer.close()
        if not line:
            raise DeviceUnavailable("the owner closed the connection without answering")
        try:
            answer = _ANSWER.validate_json(line)
        except ValidationError as exc:
            raise DeviceUnavailable(f"the owner sent a malformed reply: {exc}") from exc
        if isinstance(answer, Reply):
            for view in answer.devices:
                self._remember(view)
        return answer

    def subscribe(self, device_id: str | None = None) -> SocketStream:
        """The owner's state stream (``watch``), each massager's current view first."""
        return SocketStream(self, device_id)

    def snapshot(self) -> list[DeviceView]:
        """The latest view of each massager seen so far (on a stream or in a reply)."""
        return list(self._latest.values())

    def _remember(self, view: DeviceView) -> None:
        old = self._latest.get(view.device_id)
        if old is None or view.seq >= old.seq:
            self._latest[view.device_id] = view


class SocketStream:
    """One ``watch`` connection, coalesced: :meth:`get` returns the latest view of
    each massager that changed since the last call."""

    def __init__(self, controller: SocketController, device_id: str | None) -> None:
        self._controller = controller
        self.device_id = device_id
        self._pending: dict[str, DeviceView] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.error: str | None = None

    async def _read(self) -> None:
        c = self._controller
        try:
            reader, writer = await c._open()
        except DeviceUnavailable as exc:
            self.error = exc.message
            return
        try:
            watch = WatchRequest(source=c.source, device=self.device_id)
            writer.write(watch.model_dump_json(exclude_none=True).encode() + b"\n")
            await writer.drain()
            while line := await reader.readline():
                data = json.loads(line)
                if data.get("ok") is False:
                    self.error = str(data.get("message", "the owner refused to stream"))
                    return
                event = StateEvent.model_validate_json(line)
                c._remember(event.device)
                self._pending[event.device.device_id] = event.device
                self._ready.set()
        except (OSError, ValueError, ValidationError) as exc:
            self.error = f"the state stream broke: {exc}"
        finally:
            writer.close()

    async def get(self) -> list[DeviceView]:
        """Wait for changes; ``[]`` once the stream has ended (see :attr:`error`)."""
        if self._task is None and not self.closed:
            self._task = asyncio.create_task(self._read(), name="footctl.tui.watch")
            self._task.add_done_callback(lambda _t: self._ready.set())
        while not self._pending and not self.closed:
            if self._task is not None and self._task.done():
                return []
            self._ready.clear()
            await self._ready.wait()
        views = list(self._pending.values())
        self._pending.clear()
        return views

    def close(self) -> None:
        """Hang up."""
        self.closed = True
        self._ready.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
