"""Shared helpers for the safety suites: a fake clock, an event loop that runs on it,
and a scripted fake link in front of a :class:`MassagerModel`.

The stateful safety test drives the REAL DeviceSession, SafetyGovernor and codec; only
the radio is replaced by :class:`FakeLink`, which hands each written frame to the
device model (``MassagerModel.receive``: ``codec.decode_command`` and apply) and
delivers the model's status (``MassagerModel.status_frame``: ``codec.encode_status``
with the notification faults applied) back to ``session.on_notify`` from
``loop.call_soon``, the way a notification arrives.

Time: :class:`VirtualTimeLoop` is an asyncio loop whose ``time()`` is a
:class:`FakeClock`. When nothing is ready to run, instead of waiting it moves the
clock straight to the next timer. So everything that waits on the loop
(``asyncio.sleep``, ``asyncio.timeout``: the session's confirmation timeouts and
re-sends, the reconnect backoff, the governor's ramp and its watch loop) runs in
fake time, in order, and minutes of fake time cost milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from footctl.config import Config
from footctl.control.owner import DeviceSpec, Owner
from footctl.device.codec import encode_status
from footctl.device.profile.schema import Profile
from footctl.device.session import SCAN_TIMEOUT_S, DeviceSession
from footctl.device.transport.ble import Radio
from footctl.errors import DeviceUnavailable, TransportError
from footctl.journal import Journal
from footctl.safety.markers import MarkerStore
from footctl.state import Report
from footctl.virtual.model import FrameRecord, MassagerModel

T = TypeVar("T")

__all__ = [
    "ADDRESS",
    "FAST_TMP",
    "FakeClock",
    "FakeLink",
    "FakeLinks",
    "FakeMassager",
    "VirtualTimeLoop",
    "build_owner",
    "dead_pid",
    "eventually",
    "is_off_frame",
    "mark_journal_dead",
    "mark_owner_dead",
    "without_auto_off",
]

#: The address the fake massager answers on.
ADDRESS = "C0:FF:EE:00:00:01"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Time passes at once (for rigs on a real-time loop, like the virtual link's)."""
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


async def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``predicate()`` on the running loop until it is true or ``timeout`` passes
    (for rigs on a real link, where frames and notifications are in flight)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return bool(predicate())


class Deadlock(RuntimeError):
    """The virtual-time loop has nothing to run and no timer to wait for."""


class Livelock(RuntimeError):
    """Tasks keep the virtual-time loop busy without ever letting time pass: in real
    time that is a CPU spin that starves everything else on the loop."""


#: Loop iterations without fake time moving (beyond BUSY_PASS_S each) before we call it
#: a livelock.
LIVELOCK_ITERATIONS = 200_000

#: Fake time one busy pass of the loop costs (see _FastForwardSelector.select).
BUSY_PASS_S = 1e-9


class _FastForwardSelector(selectors.DefaultSelector):
    """A selector that never blocks: with nothing ready it moves the fake clock to the
    next timer (the loop asks for exactly that timeout) and returns no events.

    The tests do no real I/O on this loop, so it never polls the OS either.
    """

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.on_idle: Callable[[], None] | None = None
        self.busy = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            # Real time never stands still: each pass of a busy loop costs at least a
            # nanosecond. (Without this a timer due within the loop's clock resolution
            # ran "now" again and again and the deadline it raced never came: a stop's
            # re-send loop spun forever in virtual time, never in real time.)
            self.clock.advance(BUSY_PASS_S)
            self.busy += 1
            if self.busy > LIVELOCK_ITERATIONS:
                self.busy = 0
                if os.environ.get("FOOTCTL_LIVELOCK_DEBUG"):
                    for task in asyncio.all_tasks():
                        task.print_stack(limit=6)
                raise Livelock(f"{LIVELOCK_ITERATIONS} loop iterations and no time passed")
            return []
        self.busy = 0
        if self.on_idle is not None:
            self.on_idle()  # "settle" mode: stop instead of letting time pass
            return []
        if timeout is None:
            raise Deadlock("virtual time: nothing is ready and no timer is pending")
        self.clock.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a :class:`FakeClock` (see the module docstring).

    ``run(coro)`` runs a coroutine to completion, letting fake time pass while it
    waits; ``settle()`` runs whatever is ready *without* letting time pass.
    """

    def __init__(self, clock: FakeClock) -> None:
        self._ff = _FastForwardSelector(clock)
        super().__init__(self._ff)
        self.clock = clock

    def time(self) -> float:
        return self.clock.now

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion (fake time passes while it waits)."""
        return self.run_until_complete(coro)

    def settle(self) -> None:
        """Run every callback and task that can run now; time does not move."""
        self._ff.on_idle = self.stop
        try:
            self.run_forever()
        finally:
            self._ff.on_idle = None


def without_auto_off(profile: Profile) -> Profile:
    """``profile`` for a device without its own auto-off: the worst case, where only
    footctl's caps stand between the feet and the heater (the shipped profiles all
    switch off after 15 min, which would hide a cap the governor fails to enforce)."""
    caps = profile.capabilities.model_copy(update={"auto_off_minutes": None})
    return profile.model_copy(update={"capabilities": caps})


# --- the device side -------------------------------------------------------------------


class FakeMassager:
    """A :class:`MassagerModel` in (fake) radio range, with at most one connection.

    ``listeners`` are told about each delivered status frame; ``frame_listeners`` about
    each frame the device received (after the model handled it).
    """

    def __init__(self, profile: Profile, model: MassagerModel) -> None:
        self.profile = profile
        self.model = model
        self.in_range = True
        self.connection: FakeLink | None = None
        self.connects = 0
        self.notifications = 0
        self.report_listeners: list[Callable[[bytes], None]] = []
        self.frame_listeners: list[Callable[[FrameRecord], None]] = []
        self.connect_listeners: list[Callable[[], None]] = []
        self._pending = False
        self._frames: dict[Report, bytes] = {}
        # Set while a link is connected: the periodic status sleeps on it otherwise
        # (ticking through hours of fake time with nobody connected was a tenth of a
        # long run).
        self.linked = asyncio.Event()
        model.subscribe(self.notify_soon)  # a device tells its subscriber about changes
        status = profile.status
        self.interval = (
            status.interval_seconds
            if status is not None and profile.capabilities.reports_status
            else None
        )

    @property
    def connected(self) -> bool:
        """True while a link is connected to this device."""
        return self.connection is not None

    def notify_soon(self) -> None:
        """Send a status notification from the loop (coalesced, like the real one)."""
        if self._pending or self.connection is None or self.interval is None:
            return
        self._pending = True
        asyncio.get_running_loop().call_soon(self._deliver)

    def _deliver(self) -> None:
        self._pending = False
        link = self.connection
        if link is None or link.session is None:
            return
        frame = self.status_frame()
        if frame is None:
            return
        self.notifications += 1
        for listener in list(self.report_listeners):
            listener(frame)
        link.session.on_notify(frame)

    def status_frame(self) -> bytes | None:
        """``model.status_frame()``, with the encoding of a fault-free report reused: a
        periodic status repeats the same report, and encoding (CRCs) is the hot spot of
        a long run."""
        model = self.model
        if model.garbage or model.truncate or model.mute or self.interval is None:
            return model.status_frame()
        report = model.report()
        frame = self._frames.get(report)
        if frame is None:
            frame = self._frames[report] = encode_status(self.profile, report)
        return frame

    async def status_loop(self) -> None:
        """The periodic status a subscribed central receives (run it as a task)."""
        if self.interval is None:
            return
        while True:
            if self.connection is None:
                await self.linked.wait()
            await asyncio.sleep(self.interval)
            if self.connection is not None:
                self.notify_soon()

    def receive(self, data: bytes) -> FrameRecord:
        """One written frame: decode and apply (faults allowing), then answer."""
        record = self.model.receive(data)
        for listener in list(self.frame_listeners):
            listener(record)
        if record.outcome in ("applied", "ignored") and not self.model.ignore_writes:
            self.notify_soon()
        return record

    def drop(self) -> None:
        """Go out of range: the connection dies (the central is told), no reconnects."""
        self.in_range = False
        link, self.connection = self.connection, None
        self.linked.clear()
        if link is not None:
            link.lost()

    def back(self) -> None:
        """Come back in range: a connect succeeds again."""
        self.in_range = True


class SessionLike:
    """What the fake link calls on the controller side (a DeviceSession)."""

    def on_notify(self, data: bytes) -> None:  # pragma: no cover - protocol
        """A notification arrived."""

    def on_link_lost(self) -> None:  # pragma: no cover - protocol
        """The link dropped."""


class FakeLink:
    """One controller's connection to a :class:`FakeMassager` (the ``Link`` protocol)."""

    def __init__(self, device: FakeMassager) -> None:
        self.device = device
        self.session: Any = None  # a DeviceSession, set before attach
        self._connected = False
        self.dead = False  # the process that owned this link is gone
        self.writes = 0

    @property
    def is_connected(self) -> bool:
        """True while the link is up."""
        return self._connected

    async def connect(self) -> None:
        """(Re)connect; fails while the device is out of range or another link holds it."""
        if self.dead:
            raise TransportError("this link's process is gone")
        if not self.device.in_range:
            raise DeviceUnavailable(f"{ADDRESS}: out of range (fake link)")
        if self.device.connection not in (None, self):
            raise DeviceUnavailable(f"{ADDRESS}: already connected to another central")
        self.device.connection = self
        self.device.linked.set()
        self._connected = True
        self.device.connects += 1
        for listener in list(self.device.connect_listeners):
            listener()
        await asyncio.sleep(0)

    async def write(self, data: bytes) -> None:
        """Write one frame; a link that is down raises TransportError."""
        if not self._connected or self.device.connection is not self:
            raise TransportError(f"{ADDRESS}: not connected (fake link)")
        self.writes += 1
        self.device.receive(bytes(data))
        await asyncio.sleep(0)  # a write round trip lets others run

    async def disconnect(self) -> None:
        """Disconnect on purpose (no callback)."""
        self._connected = False
        if self.device.connection is self:
            self.device.connection = None
            self.device.linked.clear()

    def lost(self) -> None:
        """The device went away under us: tell the session (from the loop)."""
        was = self._connected
        self._connected = False
        if was and not self.dead and self.session is not None:
            self.session.on_link_lost()

    def kill(self) -> None:
        """The owning process died: the device sees the connection end; nobody is told."""
        self.dead = True
        self._connected = False
        if self.device.connection is self:
            self.device.connection = None
            self.device.linked.clear()


# --- the owner, as deployed, on the fake radio -------------------------------------------

#: Where the stateful test keeps each example's journal and markers: a RAM disk if the
#: machine has one (a journal write is an fsync on a disk; the file is thrown away).
FAST_TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None

#: How often a fake scan looks whether the massager advertises (a real one advertises
#: every 20-100 ms).
SCAN_POLL_S = 0.05


class FakeLinks:
    """The ``connect`` an :class:`Owner` takes: how its sessions (and its crash recovery's)
    reach the :class:`FakeMassager`. Like ``DeviceSession.connect`` it scans until the
    massager advertises (in range, no other central connected), for at most the scan
    timeout, then connects a :class:`FakeLink` and attaches the session to it. Every
    link it made dies with the process (:meth:`kill`)."""

    def __init__(self, device: FakeMassager, *, scan_timeout: float = SCAN_TIMEOUT_S) -> None:
        self.device = device
        self.scan_timeout = scan_timeout
        self.links: list[FakeLink] = []
        #: Told ``(session)`` just before a link connects (the test tells recovery apart).
        self.before_connect: Callable[[DeviceSession], None] | None = None
        self.after_connect: Callable[[DeviceSession], None] | None = None

    async def __call__(self, session: DeviceSession) -> None:
        if session.connected:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.scan_timeout
        device = self.device
        while not (device.in_range and device.connection is None):
            if loop.time() >= deadline:
                raise DeviceUnavailable(f"{ADDRESS} not found within {self.scan_timeout:g} s")
            await asyncio.sleep(SCAN_POLL_S)
        link = FakeLink(device)
        link.session = session
        self.links.append(link)
        if self.before_connect is not None:
            self.before_connect(session)
        try:
            await link.connect()
        finally:
            if self.after_connect is not None:
                self.after_connect(session)
        await session.attach(link, ADDRESS)

    def kill(self) -> None:
        """The process died: each of its links ends without telling anyone."""
        for link in self.links:
            link.kill()


def build_owner(
    profile: Profile,
    config: Config,
    links: FakeLinks,
    *,
    clock: Callable[[], float],
    wall: Callable[[], datetime],
    markers: MarkerStore,
    journal: Journal,
) -> Owner:
    """One massager's owner built the way the daemon builds it (``footctl.daemon``):
    the config's caps, a real journal (the cooldown's last session end), crash markers,
    the monotonic and wall clocks; only the radio is the fake one (``links``), on a
    radio that is not virtual, so the governor keeps the design's floors. Open it
    with ``await owner.open()`` (crash recovery, connect, the watch and tick tasks)."""
    spec = DeviceSpec(profile, ADDRESS)
    return Owner(
        config,
        [(spec, Radio("fake link"))],
        journal=journal,
        markers=markers,
        clock=clock,
        sleep=asyncio.sleep,
        wall=wall,
        connect=links,
    )


def mark_journal_dead(path: Path) -> int:
    """Rewrite the journal's open rows as if their process had died (as
    :func:`mark_owner_dead` does for markers); returns how many."""
    db = sqlite3.connect(path)
    try:
        with db:
            cur = db.execute(
                "UPDATE sessions SET pid = ? WHERE ended_at IS NULL", (dead_pid(),)
            )
        return cur.rowcount
    finally:
        db.close()


# --- frames ----------------------------------------------------------------------------

_OFF = {("stop", None), ("power", 0), ("heat", 0), ("press_power", None), ("press_heat", None)}
_HEAT_OFF = {("stop", None), ("heat", 0), ("press_heat", None), ("power", 0), ("press_power", None)}


def is_off_frame(record: FrameRecord, *, heat_first: bool = False) -> bool:
    """True if ``record`` is a frame that switches something off.

    With ``heat_first``, a frame that powers the motor off before the heat is off
    only counts where it takes the heat with it in one frame (``stop``, ``power 0``
    on absolute devices; a key-press device's power key while heat is on does too)."""
    pair = (record.command, record.value)
    return pair in (_HEAT_OFF if heat_first else _OFF)


# --- markers ---------------------------------------------------------------------------


@cache
def dead_pid() -> int:
    """The pid of a process that has exited (so a marker naming it is orphaned)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def mark_owner_dead(store: MarkerStore) -> int:
    """Rewrite every marker as if its writer had died; returns how many there were."""
    count = 0
    for path in sorted(store.directory.glob("*.json")) if store.directory.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            data["pid"] = dead_pid()
            path.write_text(json.dumps(data), encoding="utf-8")
            count += 1
    return count


# --- speed --------------------------------------------------------------------------------


@contextlib.contextmanager
def memoized_codec() -> Iterator[None]:
    """Memoize the codec's pure functions while a long run repeats the same frames (the
    periodic status, keepalives, the same few commands): checksums and field parsing were
    the largest share of the stateful test's time. Keyed on the profile's id and the
    bytes or command; errors (garbled frames) are never cached. Crash recovery's profile
    lookup too (see below)."""
    from footctl.device import codec
    from footctl.virtual import model as model_module

    def memo(fn: Callable[..., Any]) -> Callable[..., Any]:
        table: dict[tuple[Any, ...], Any] = {}

        def wrapper(profile: Any, arg: Any, **kwargs: Any) -> Any:
            # Keyword arguments (a v2 profile's endpoint) are part of the key.
            key = (profile.id, arg, *sorted(kwargs.items()))
            hit = table.get(key)
            if hit is None:
                hit = table[key] = fn(profile, arg, **kwargs)
            return hit

        return wrapper

    targets = [
        (codec, "decode_status"),
        (codec, "encode"),
        (model_module, "decode_command"),
        (model_module, "encode_status"),
    ]
    saved = [(module, name, getattr(module, name)) for module, name in targets]
    for module, name, fn in saved:
        setattr(module, name, memo(fn))
    # Crash recovery finds a marker's profile by id, and that parsed every profile file
    # (0.7 s a restart: the largest share once the test ran through the owner). The
    # files do not change during a run.
    from footctl import devices

    load_profile = devices.get_profile
    profiles: dict[tuple[str, tuple[Path, ...]], Profile] = {}

    def get_profile(profile_id: str, extra_dirs: list[Path] | None = None) -> Profile:
        key = (profile_id, tuple(extra_dirs or ()))
        hit = profiles.get(key)
        if hit is None:
            hit = profiles[key] = load_profile(profile_id, extra_dirs)
        return hit

    saved.append((devices, "get_profile", load_profile))
    devices.get_profile = get_profile  # type: ignore[assignment]
    try:
        yield
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)
