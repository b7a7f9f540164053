"""The StateHub: the latest state of every massager an owner holds, and a stream of
its changes for whoever watches (the socket's ``watch``, the TUI, the MQTT bridge,
the journal).

Publishing never waits on a subscriber. Each subscription keeps at most one pending
view per massager: a subscriber that falls behind skips intermediate states and gets
the latest, so a slow terminal or a stalled broker cannot slow the device path.
Within one massager, views arrive in ``seq`` order (never an older one after a
newer one).

Session events (a session started, moved on, ended) are another matter: the journal
writes its rows from them, so :meth:`StateHub.sessions` streams every one, in order,
never coalesced. Emitting one costs an append per listener; it never waits either.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from footctl.control.api import DeviceView, SessionEvent


class Subscription:
    """One subscriber's coalesced stream. Call it (or :meth:`close`) to unsubscribe."""

    def __init__(self, hub: StateHub, device_id: str | None) -> None:
        self._hub = hub
        self.device_id = device_id
        self._pending: dict[str, DeviceView] = {}
        self._ready = asyncio.Event()
        self.closed = False
        self.skipped = 0  # views replaced before this subscriber read them

    def _offer(self, view: DeviceView) -> None:
        if self.device_id is not None and view.device_id != self.device_id:
            return
        if view.device_id in self._pending:
            self.skipped += 1
        self._pending[view.device_id] = view
        self._ready.set()

    async def get(self) -> list[DeviceView]:
        """Wait for at least one change; every massager's latest view since the last
        call (one per massager). Raises :class:`asyncio.CancelledError` only if the
        caller is cancelled; after :meth:`close` returns ``[]``."""
        while not self._pending and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        views = list(self._pending.values())
        self._pending.clear()
        return views

    def __aiter__(self) -> AsyncIterator[DeviceView]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[DeviceView]:
        while not self.closed:
            for view in await self.get():
                yield view

    def close(self) -> None:
        """Unsubscribe; a waiting :meth:`get` returns ``[]``."""
        if not self.closed:
            self.closed = True
            self._hub._subs.discard(self)
            self._ready.set()

    def __call__(self) -> None:
        self.close()


class SessionStream:
    """Every :class:`SessionEvent` since it was opened, in order, none dropped (the
    journal's subscription). Call it (or :meth:`close`) to unsubscribe."""

    def __init__(self, hub: StateHub) -> None:
        self._hub = hub
        self._pending: deque[SessionEvent] = deque()
        self._ready = asyncio.Event()
        self.closed = False

    def _offer(self, event: SessionEvent) -> None:
        self._pending.append(event)
        self._ready.set()

    def take(self) -> list[SessionEvent]:
        """The events pending now, oldest first (without waiting)."""
        events = list(self._pending)
        self._pending.clear()
        return events

    async def get(self) -> list[SessionEvent]:
        """Wait for at least one event; every event since the last call, oldest first.
        After :meth:`close` returns what is left, then ``[]``."""
        while not self._pending and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        return self.take()

    def close(self) -> None:
        """Unsubscribe; a waiting :meth:`get` returns."""
        if not self.closed:
            self.closed = True
            self._hub._session_streams.discard(self)
            self._ready.set()

    def __call__(self) -> None:
        self.close()


class StateHub:
    """Latest :class:`DeviceView` per massager, with coalesced subscriptions, and
    the session events, with lossless ones."""

    def __init__(self) -> None:
        self._latest: dict[str, DeviceView] = {}
        self._subs: set[Subscription] = set()
        self._listeners: list[Callable[[DeviceView], None]] = []
        self._session_streams: set[SessionStream] = set()

    def next_seq(self, device_id: str) -> int:
        """The ``seq`` the massager's next published view gets."""
        old = self._latest.get(device_id)
        return 1 if old is None else old.seq + 1

    def publish(self, view: DeviceView) -> DeviceView | None:
        """Record ``view`` as the massager's latest if anything but ``seq`` changed;
        it gets the next ``seq`` (a view built with :meth:`next_seq` is kept as it
        is, not copied). Returns the published view, or None if unchanged."""
        old = self._latest.get(view.device_id)
        seq = old.seq if old is not None else 0
        if old is not None and _same_but_seq(view, old):
            return None
        if view.seq != seq + 1:
            view = view.model_copy(update={"seq": seq + 1})
        self._latest[view.device_id] = view
        for sub in list(self._subs):
            sub._offer(view)
        for listener in list(self._listeners):
            listener(view)
        return view

    def forget(self, device_id: str) -> None:
        """A massager left the owner."""
        self._latest.pop(device_id, None)

    def latest(self, device_id: str) -> DeviceView | None:
        """The massager's latest view."""
        return self._latest.get(device_id)

    def snapshot(self) -> list[DeviceView]:
        """Every massager's latest view."""
        return list(self._latest.values())

    def subscribe(self, device_id: str | None = None, *, current: bool = True) -> Subscription:
        """A coalesced stream of changes of ``device_id`` (or of all massagers).
        With ``current``, each massager's present view is pending at once. The
        returned subscription is also the unsubscribe function."""
        sub = Subscription(self, device_id)
        self._subs.add(sub)
        if current:
            for view in self._latest.values():
                sub._offer(view)
        return sub

    def listen(self, listener: Callable[[DeviceView], None]) -> Callable[[], None]:
        """Call ``listener`` synchronously on every change (for cheap, non-blocking
        listeners in the owner's own process, such as the journal); returns the
        unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: SessionEvent) -> None:
        """Hand a session event to every :meth:`sessions` stream (never waits)."""
        for stream in list(self._session_streams):
            stream._offer(event)

    def sessions(self) -> SessionStream:
        """A lossless stream of the session events emitted from now on."""
        stream = SessionStream(self)
        self._session_streams.add(stream)
        return stream


def _same_but_seq(a: DeviceView, b: DeviceView) -> bool:
    """``a == b`` but for ``seq``, without copying either: what pydantic's ``==``
    compares for two models of one type without extra or private attributes (their
    field values), with ``seq`` left out. Part of every publish."""
    if type(a) is not type(b):
        return False
    fa, fb = a.__dict__, b.__dict__
    return fa.keys() == fb.keys() and all(k == "seq" or v == fb[k] for k, v in fa.items())
