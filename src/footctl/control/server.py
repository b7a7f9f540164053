"""An owner's control socket: the control API as JSON lines on a Unix socket.

One request line, one reply line (see :mod:`footctl.control.api`); a ``watch``
request turns the connection into a stream of ``StateEvent`` lines, the current
state of each massager first, until the client closes. Every line is validated
with :func:`footctl.control.api.parse_request`; a malformed one gets an error reply
and the connection stays usable.

Bad clients: a connection that sends nothing for :data:`IDLE_TIMEOUT_S` is closed;
at most :data:`MAX_CONNECTIONS` are open, and when a new one comes past that the
longest-idle one is closed to make room, so a flood of idle connections never keeps
a stop out. When every open connection is busy (watchers, scans), a new one is still
read: a ``stop`` on it is served, anything else is answered ``busy``. Each connection
is served on its own: a stop never waits behind another client's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from footctl.control.api import (
    MAX_REQUEST_BYTES,
    ErrorReply,
    Reply,
    Request,
    StateEvent,
    StopRequest,
    WatchRequest,
    error_reply,
    parse_request,
)
from footctl.control.port import Stream
from footctl.control.sockets import peer_allowed, peer_uid
from footctl.errors import FootctlError

_LOG = logging.getLogger(__name__)

# A client that sends nothing for this long is gone or hostile; footctl's own
# clients send their request at once. Long enough for a person typing into socat.
IDLE_TIMEOUT_S = 30.0

# Open connections at most: a dozen terminals, the TUI, the MQTT bridge and a few
# watchers fit with room to spare; past it the longest-idle one makes room.
MAX_CONNECTIONS = 64

# Past the cap with nothing idle to close: how long a new connection may take to send
# its line (only a stop is served on it). footctl's client sends at once.
OVER_CAP_WAIT_S = 2.0

# Closing: a request in flight (a stop being confirmed) gets this long to answer.
CLOSE_GRACE_S = 3.0

# Writing one line to a client that stopped reading: past this it is dropped.
WRITE_TIMEOUT_S = 10.0

Handler = Callable[[Request], Awaitable[Reply | ErrorReply]]
Subscribe = Callable[[str | None], Stream]


class _Conn:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.busy = False  # answering a request or streaming
        self.last = time.monotonic()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.timed_out = False  # closed for sending nothing for the idle timeout


class ControlServer:
    """Serves the control API on ``path`` to ``handler`` (and ``subscribe`` for
    ``watch``), for our own user only (``own_uid``; tests pass another)."""

    def __init__(
        self,
        path: Path | str,
        handler: Handler,
        subscribe: Subscribe,
        *,
        own_uid: int | None = None,
        idle_timeout: float = IDLE_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.path = Path(path)
        self._handler = handler
        self._subscribe = subscribe
        self._own_uid = os.getuid() if own_uid is None else own_uid
        self._idle = idle_timeout
        self._max = max_connections
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._inflight = 0  # requests being answered
        self._settled = asyncio.Event()  # set while none is
        self.rejected = 0
        self.evicted = 0

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
                self._serve, path=str(staging), limit=MAX_REQUEST_BYTES, backlog=256
            )
        finally:
            os.umask(old_umask)
        os.chmod(staging, stat.S_IRUSR | stat.S_IWUSR)
        os.replace(staging, self.path)

    async def close(self) -> None:
        """Stop serving, let requests in flight answer (briefly), hang up on every
        client, remove the socket."""
        if self._server is not None:
            self._server.close()
        if self._inflight:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_GRACE_S):
                    await self._settled.wait()
        for conn in list(self._conns):
            conn.writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @property
    def connections(self) -> int:
        """Open connections now."""
        return len(self._conns)

    def _make_room(self) -> bool:
        idle = [c for c in self._conns if not c.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.last)
        self._conns.discard(oldest)
        oldest.writer.close()
        self.evicted += 1
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else None
            if not peer_allowed(uid, self._own_uid):
                self.rejected += 1
                _LOG.warning("control socket %s: refused a connection from uid %s", self.path, uid)
                await self._send(writer, _error("forbidden", "not your footctl", 1))
                return
            if len(self._conns) >= self._max and not self._make_room():
                await self._over_cap(reader, writer)
                return
            self._conns.add(conn)
            self._watch_idle(conn)
            await self._loop(conn, reader)
        except (ConnectionError, TimeoutError) as exc:
            _LOG.debug("control client: %s", exc)
        finally:
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
            self._conns.discard(conn)
            writer.close()

    async def _over_cap(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Every connection is busy: serve a stop anyway (a stop is never kept out by
        other clients), answer anything else ``busy``."""
        try:
            async with asyncio.timeout(OVER_CAP_WAIT_S):
                line = await reader.readline()
            request = parse_request(line)
        except (TimeoutError, ValueError, FootctlError):
            request = None
        if isinstance(request, StopRequest):
            await self._send(writer, await self._answer(request))
            return
        await self._send(writer, _error("busy", "too many connections; only a stop is served", 1))
    def _watch_idle(self, conn: _Conn) -> None:
        """Close ``conn`` once it has sent nothing for the idle timeout while not busy.
        One timer per connection, looked at when it fires and moved on if the client
        spoke meanwhile: a request costs no timer of its own (an ``asyncio.timeout``
        around every read was a timer scheduled and cancelled per request)."""
        loop = asyncio.get_running_loop()

        def check() -> None:
            left = conn.last + self._idle - time.monotonic()
            if conn.busy or left > 0:
                conn.idle_timer = loop.call_later(left if left > 0 else self._idle, check)
                return
            conn.idle_timer = None
            conn.timed_out = True
            conn.writer.close()  # the pending read sees the end of the stream

        conn.idle_timer = loop.call_later(self._idle, check)

    async def _loop(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line past MAX_REQUEST_BYTES
                await self._send(conn.writer, _error("usage", "request too long", 2))
                return
            if not line or conn.timed_out:
                return
            if not line.strip():
                continue
            conn.busy = True
            try:
                try:
                    request = parse_request(line)
                except FootctlError as exc:
                    await self._send(conn.writer, error_reply(exc))
                    continue
                if isinstance(request, WatchRequest):
                    await self._watch(conn, reader, request)
                    return
                self._inflight += 1
                self._settled.clear()
                try:
                    await self._answer_to(conn, request)
                finally:
                    self._inflight -= 1
                    if not self._inflight:
                        self._settled.set()
            finally:
                conn.busy = False
                conn.last = time.monotonic()

    async def _answer_to(self, conn: _Conn, request: Request) -> None:
        await self._send(conn.writer, await self._answer(request))

    async def _answer(self, request: Request) -> Reply | ErrorReply:
        try:
            return await self._handler(request)
        except Exception as exc:
            # A bug in a handler must not take the socket (or the owner) down.
            _LOG.exception("control request %r failed", request)
            return error_reply(exc)

    async def _watch(
        self, conn: _Conn, reader: asyncio.StreamReader, request: WatchRequest
    ) -> None:
        try:
            stream = self._subscribe(request.device)
        except FootctlError as exc:
            await self._send(conn.writer, error_reply(exc, request.device))
            return

        async def client_gone() -> None:
            while await reader.read(1024):
                pass  # a watcher has nothing more to say; EOF ends the stream

        gone = asyncio.ensure_future(client_gone())
        try:
            while not gone.done():
                getter = asyncio.ensure_future(stream.get())
                await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return
                views = getter.result()
                if not views:
                    return
                for view in views:
                    event = StateEvent(seq=view.seq, device=view)
                    await self._send(conn.writer, event)
        finally:
            gone.cancel()
            stream.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, message: Reply | ErrorReply | StateEvent) -> None:
        # The serializer's bytes as they are (model_dump_json gives a str to encode again).
        writer.write(message.__pydantic_serializer__.to_json(message) + b"\n")
        if writer.transport.get_write_buffer_size():  # the client is slow to read
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await writer.drain()


def _error(kind: str, message: str, exit_code: int) -> ErrorReply:
    return ErrorReply(error=kind, message=message, exit_code=exit_code)
