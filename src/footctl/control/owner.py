"""The Owner: the one process-local holder of massagers. Each is built by
:func:`footctl.control.held.build_governed`, the only place that builds a
DeviceSession and its SafetyGovernor.

Every command source (the CLI through the socket, the TUI, the MQTT bridge, the
scheduler, a program) hands the owner a validated :mod:`footctl.control.api`
request; the owner answers with a :class:`~footctl.control.api.Reply` or an
:class:`~footctl.control.api.ErrorReply` and publishes every change of every
massager to its :class:`~footctl.control.hub.StateHub`, and every session's start,
progress and end (:class:`~footctl.control.api.SessionEvent`, never dropped): the
journal writes its rows from those (:class:`~footctl.journal_hooks.JournalRecorder`).

Per massager, requests are serialized; a stop is not: it preempts a pending
connect or apply, a request queued behind it never runs, and what it could not
write yet (the link is down) is written first when the link returns.

In-process use (the MQTT bridge, the TUI, tests)::

    from footctl.config import Config
    from footctl.control.api import SetRequest, StopRequest
    from footctl.control.owner import Owner

    async with Owner.start(Config(), simulate=["shiatsu-aa55"]) as owner:
        stream = owner.subscribe()            # current view of each massager first
        reply = await owner.request(SetRequest(source="mqtt", intensity=2))
        views = await stream.get()            # the latest view of each that changed
        await owner.request(StopRequest(source="mqtt"))
        stream.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

from footctl.config import Config
from footctl.control.api import (
    DescribeRequest,
    DeviceView,
    ErrorReply,
    LeaseRequest,
    PingRequest,
    ReleaseRequest,
    Reply,
    Request,
    RunRequest,
    ScanRequest,
    ScanResult,
    SetRequest,
    StatusRequest,
    StopOwed,
    StopRequest,
    WatchRequest,
    device_caps,
    error_reply,
)
from footctl.control.held import (
    DeviceSpec,
    Held,
    SessionEnds,
    _utc_now,
    build_governed,
    cooldown_left,
    journal_key,
    timers_of,
    view_key,
    view_of,
)
from footctl.control.hub import StateHub, Subscription
from footctl.device.session import DeviceSession
from footctl.device.transport.ble import Radio
from footctl.errors import DeviceUnavailable, FootctlError, SafetyRefused, UsageError
from footctl.journal_hooks import JournalRecorder, recover_journal
from footctl.programs.runner import ProgramRunner, Progress, RunResult
from footctl.safety.decide import Request as GovRequest
from footctl.safety.markers import MarkerStore
from footctl.schedule import local_zone, may_start

if TYPE_CHECKING:
    from footctl.control.server import ControlServer
    from footctl.journal import Journal
    from footctl.programs.model import Program

_LOG = logging.getLogger(__name__)

# Connecting for a request: a massager may need a few advertising intervals, a real
# one a few seconds; past this the request fails (exit 3) and the owner tries again
# on the next request.
CONNECT_TIMEOUT_S = 30.0

# A client waits this long for a change to be confirmed. A rise in intensity climbs
# one level per ramp step (10 s by default), so a big rise takes longer than anyone
# should wait at a prompt: the reply then carries the state so far and the ramp goes
# on in the owner.
REPLY_BUDGET_S = 8.0

# Safety timers are published rounded to whole seconds, once a second while a
# massager runs (and while its cooldown runs, which the view counts in minutes):
# often enough for a countdown, rare enough to cost nothing.
TICK_S = 1.0

# Changes a massager reports are published this long after the first of them, all at
# once: a write and its confirming notification make one view, built after the
# round trip rather than inside it. Far below what a person or a hub can notice.
PUBLISH_DELAY_S = 0.01

# The everything-off of a stop is re-sent until confirmed for this long (the
# session's own budget); an answer to the client comes no later than this.
STOP_TIMEOUT_S = 6.0




class Tuning(TypedDict, total=False):
    """How an owner runs, as :class:`Owner` takes it (the clocks tests inject, the scan
    time, progress lines, the reply budget): :meth:`Owner.open_in` and
    :meth:`footctl.daemon.Daemon.open_in` pass it through as it is."""

    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    wall: Callable[[], datetime] | None
    scan_timeout: float
    on_progress: Callable[[str], None] | None
    reply_budget_s: float | None


class Owner:
    """Holds any number of massagers; implements :class:`footctl.control.port.Controller`.

    Made by :meth:`open_in` (the user's journal and markers, crash recovery, the
    links), or :meth:`start` (radios opened too); tests build it directly with their
    own parts, then :meth:`open` / :meth:`close`.
    """

    def __init__(
        self,
        config: Config,
        devices: Sequence[tuple[DeviceSpec, Radio]],
        *,
        journal: Journal | None = None,
        markers: MarkerStore | None = None,
        program_dir: os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall: Callable[[], datetime] | None = None,
        scan_timeout: float = 10.0,
        on_progress: Callable[[str], None] | None = None,
        reply_budget_s: float | None = REPLY_BUDGET_S,
        connect: Callable[[DeviceSession], Awaitable[None]] = DeviceSession.connect,
    ) -> None:
        if not devices:
            raise UsageError(
                "no massager to hold",
                advice="add [[devices]] to the config file, or pass --simulate PROFILE_ID",
            )
        self.config = config
        self.journal = journal
        self.markers = markers
        self.program_dir = program_dir
        self.hub = StateHub()
        # How long a request waits for a long ramp before replying with the state so
        # far (None: until confirmed, as a one-shot command does).
        self.reply_budget_s = reply_budget_s
        self._clock = clock
        self._sleep = sleep
        # The wall clock of session events and program starts (the journal's, if any).
        self.wall = wall or (journal.now if journal is not None else _utc_now)
        # How a session reaches its massager (crash recovery's too): scan, then bleak.
        # The stateful safety test puts its scripted link here, and nothing else.
        self._connect_session = connect
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._servers: list[ControlServer] = []
        self._dirty: set[Held] = set()
        self.pid = os.getpid()
        # --- session events: the journal listens to the hub -------------------------
        self.recorder = JournalRecorder(journal) if journal is not None else None
        if self.recorder is not None:
            self.recorder.listen(self.hub)
        self._ends = SessionEnds(journal, self.settle_journal)
        # ----------------------------------------------------------------------------
        self.held: list[Held] = []
        names: set[str] = set()
        for spec, radio in devices:
            session, governor = build_governed(
                spec, radio, config, last_session_end=self._ends if journal else None,
                markers=markers, clock=clock, sleep=sleep, scan_timeout=scan_timeout,
                on_progress=on_progress, wall_clock=lambda: self.wall().timestamp(),
            )
            name = spec.name or spec.profile.id
            if name.lower() in names:
                name = f"{name}-{len(self.held) + 1}"
            names.add(name.lower())
            held = Held(spec, radio, session, governor, name, emit=self.hub.emit,
                        wall=self.wall, pid=self.pid, ends=self._ends)
            held.unsubscribe.append(session.register_callback(self._publisher(held)))
            held.unsubscribe.append(session.register_link_callback(self._linker(held)))
            self.held.append(held)

    def _publisher(self, held: Held) -> Callable[[object], None]:
        def changed(_what: object) -> None:
            self.publish_soon(held)

        return changed

    def publish_soon(self, held: Held) -> None:
        """Publish ``held``'s view shortly, once however many changes come before it:
        the device path (a write, its notification) never waits for a view."""
        if held in self._dirty:
            return
        self._dirty.add(held)
        if len(self._dirty) == 1:
            asyncio.get_running_loop().call_later(PUBLISH_DELAY_S, self._flush)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for held in dirty:
            self.publish(held)

    def _linker(self, held: Held) -> Callable[[bool], None]:
        def changed(up: bool) -> None:
            if up:
                held.link_up.set()
            else:
                held.link_up.clear()
            self.publish(held)

        return changed

    # --- building -------------------------------------------------------------------

    @classmethod
    async def open_in(
        cls,
        stack: contextlib.AsyncExitStack,
        config: Config,
        devices: Sequence[tuple[DeviceSpec, Radio]],
        *,
        journal: Journal | Literal["user"] | None = "user",
        require_journal: bool = False,
        markers: MarkerStore | Literal["auto"] | None = "auto",
        program_dir: os.PathLike[str] | Literal["user"] | None = "user",
        connect: bool = True,
        **tuning: Unpack[Tuning],
    ) -> Owner:
        """The one way an owner is made, whatever starts it (a one-shot command, the
        TUI, the daemon, :meth:`start`): the user's journal (``"user"``; if it cannot
        be opened a warning, or :class:`~footctl.journal.JournalError` with
        ``require_journal``), crash markers when a real massager is held
        (``"auto"``), the user's program directory; then crash recovery and, with
        ``connect``, the links (:meth:`open`). ``stack`` closes it: everything off,
        then the journal it opened; ``tuning`` goes to :class:`Owner` as it is. (Tests
        build ``Owner(...)`` with their own parts.)"""
        if journal == "user":
            from footctl.config import journal_path  # noqa: PLC0415
            from footctl.journal import Journal as JournalFile  # noqa: PLC0415
            from footctl.journal_hooks import open_journal  # noqa: PLC0415

            journal = JournalFile(journal_path()) if require_journal else open_journal()
            if journal is not None:
                stack.callback(journal.close)
        if markers == "auto":
            markers = MarkerStore() if any(not spec.simulated for spec, _ in devices) else None
        if program_dir == "user":
            from footctl.programs.loader import default_user_dir  # noqa: PLC0415

            program_dir = default_user_dir()
        owner = cls(config, devices, journal=journal, markers=markers, program_dir=program_dir,
                    **tuning)
        stack.push_async_callback(owner.close)
        await owner.open(connect=connect)
        return owner

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        config: Config | None = None,
        *,
        simulate: Sequence[str] = (),
        link: str | None = None,
        link_profile: str | None = None,
        use_config_devices: bool = True,
        journal: bool = True,
        connect: bool = True,
        scan_timeout: float = 10.0,
    ) -> AsyncIterator[Owner]:
        """An open owner (:meth:`open_in`) for ``simulate`` (profile ids, ``"id*N"``
        for N of one; virtual massagers in this process), massagers on a ``footctl
        sim`` ``link`` (with ``link_profile``, else those the config names), and the
        config's ``[[devices]]`` (``simulate = true`` ones are virtual too); with
        ``journal``, the user's. On exit: everything off, then disconnect."""
        from footctl.control.radios import open_radios  # noqa: PLC0415 - Bumble when used

        config = config or Config()
        async with contextlib.AsyncExitStack() as stack:
            devices = await open_radios(
                stack, config, simulate=simulate, link=link, link_profile=link_profile,
                use_config_devices=use_config_devices,
            )
            yield await cls.open_in(
                stack, config, devices, journal="user" if journal else None,
                connect=connect, scan_timeout=scan_timeout,
            )

    async def open(self, *, connect: bool = True) -> None:
        """Crash recovery, then connect each massager and start its safety watch."""
        await self._recover()
        for held in self.held:
            self.publish(held)
        if connect:
            results = await asyncio.gather(
                *(self.ensure_connected(h) for h in self.held), return_exceptions=True
            )
            for held, result in zip(self.held, results, strict=True):
                if isinstance(result, BaseException):
                    _LOG.warning("%s: not connected yet: %s", held.name, result)
        for held in self.held:
            self.spawn(held.governor.watch(), f"footctl[{held.name}].watch")
        self.spawn(self._tick(), "footctl.owner.tick")
        if self.recorder is not None:
            self.spawn(self.recorder.run(), "footctl.journal")

    def settle_journal(self) -> None:
        """Write every session event published so far (before reading the journal)."""
        if self.recorder is not None:
            self.recorder.settle()

    async def _recover(self) -> None:
        from footctl.devices import recover_after_crash  # noqa: PLC0415 - avoids a cycle

        real = [h for h in self.held if not h.spec.simulated]
        if self.markers is not None and real:
            await recover_after_crash(
                real[0].radio, self.config, self.markers, lambda m: _LOG.info("%s", m),
                self.journal, connect=self._connect_session,
            )
            for held in real:  # what recovery could not confirm off is owed
                held.governor.adopt_unrecovered()
        elif self.journal is not None:
            recover_journal(self.journal, turned_off=(), still_owed=())

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a named background task of this owner."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def serve(self, path: Path | None = None, *, handler: Any = None) -> ControlServer:
        """Serve the control API on a Unix socket (default ``owner-<pid>.sock`` in the
        runtime dir, where ``footctl stop`` finds it) until :meth:`close`."""
        from footctl.control.server import ControlServer  # noqa: PLC0415
        from footctl.control.sockets import owner_socket_path  # noqa: PLC0415

        server = ControlServer(path or owner_socket_path(), handler or self.request,
                               self.subscribe)
        await server.start()
        self._servers.append(server)
        return server

    @property
    def healthy(self) -> bool:
        """False if a background task died (the systemd watchdog then stops pinging)."""
        return all(not t.done() for t in self._tasks)

    async def close(self) -> None:
        """Everything off on every massager, then disconnect. A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            await server.close()
        for task in list(self._tasks):
            task.cancel()
        for held in self.held:
            if held.connect_task is not None:
                held.connect_task.cancel()
        await asyncio.gather(*(self._close_one(h) for h in self.held), return_exceptions=True)
        for held in self.held:
            held.sessions.close()
        self.settle_journal()  # the ends of the sessions just closed

    async def _close_one(self, held: Held) -> None:
        if held.task is not None:
            held.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, FootctlError):
                await held.task
        try:
            await held.governor.shutdown("shutdown")
            await held.session.close()
        finally:
            for unsubscribe in held.unsubscribe:
                unsubscribe()

    # --- the state stream -----------------------------------------------------------

    def publish(self, held: Held) -> DeviceView:
        """Publish ``held``'s view to the hub (if it changed); its latest view."""
        timers = timers_of(held)  # once: the key and the view are made of the same
        key = view_key(held, timers)
        latest = self.hub.latest(held.device_id)
        if latest is not None and key == held.view_key:
            return latest
        held.view_key = key
        view = view_of(held, self.pid, self.hub.next_seq(held.device_id), timers)
        return self.hub.publish(view) or self.hub.latest(view.device_id) or view

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for held in self.held:
                if held.governor.desired.running or held.session.state.running or (
                    held.program_running or cooldown_left(held) is not None
                ):
                    self.publish(held)

    def subscribe(self, device_id: str | None = None) -> Subscription:
        """Changes of one massager (or all), each massager's current view first."""
        if device_id is not None:
            device_id = self.pick(device_id).device_id
        return self.hub.subscribe(device_id)

    def snapshot(self) -> list[DeviceView]:
        """Every massager's latest view."""
        return [self.publish(h) for h in self.held]

    # --- finding a massager -----------------------------------------------------------

    def pick(self, wanted: str | None) -> Held:
        """The massager ``wanted`` names (the only one when None). A name that matches
        nothing is :class:`DeviceUnavailable` (exit 3)."""
        if wanted is None:
            if len(self.held) == 1:
                return self.held[0]
            raise UsageError(
                f"this owner holds {len(self.held)} massagers; name one",
                advice="--device " + " | ".join(h.name for h in self.held),
            )
        found = [h for h in self.held if h.matches(wanted)]
        if not found:
            found = [h for h in self.held if h.spec.profile.id.lower() == wanted.lower()]
        if len(found) == 1:
            return found[0]
        names = ", ".join(h.name for h in self.held)
        if not found:
            raise DeviceUnavailable(f"no massager named {wanted!r} here",
                                    advice=f"the massagers here: {names}")
        raise UsageError(f"{wanted!r} names {len(found)} massagers", advice=f"one of {names}")

    def targets(self, wanted: str | None) -> list[Held]:
        """``wanted``'s massager, or every one when None (stop)."""
        return list(self.held) if wanted is None else [self.pick(wanted)]

    # --- connecting -------------------------------------------------------------------

    async def _connect(self, held: Held) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self._connect_session(held.session)
        except TimeoutError as exc:
            raise DeviceUnavailable(
                f"{held.name}: no connection within {CONNECT_TIMEOUT_S:g} s"
            ) from exc
        except OSError as exc:  # no Bluetooth stack reachable (no D-Bus, no adapter)
            raise DeviceUnavailable(
                f"{held.name}: Bluetooth is not reachable ({exc.strerror or exc})",
                advice="check that Bluetooth is on",
            ) from exc
        finally:
            self.publish(held)
        held.ever_connected = True
        held.link_up.set()
        if held.stop_owed:
            # A stop came while we were connecting: it is the first thing written.
            await self._send_stop(held, "governor")

    def _connecting(self, held: Held) -> asyncio.Task[None]:
        task = held.connect_task
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(
                self._connect(held), name=f"footctl[{held.name}].connect"
            )
            task.add_done_callback(_consume)
            held.connect_task = task
            self.publish(held)
        return task

    async def ensure_connected(self, held: Held, epoch: int | None = None) -> None:
        """Connect if the link is not up (a session reconnects by itself after a
        drop). With ``epoch``, a stop arriving meanwhile voids the wait:
        :class:`SafetyRefused` ``superseded_by_stop``."""
        if held.session.connected:
            return
        if held.ever_connected:
            # The session's own reconnect loop is on it: wait for the link to return.
            waiter: asyncio.Future[Any] = asyncio.ensure_future(held.link_up.wait())
            waiter.add_done_callback(_consume)
        else:
            waiter = self._connecting(held)
        stopped = asyncio.ensure_future(held.stop_signal().wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, stopped}, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
            if held.ever_connected:
                waiter.cancel()
        if epoch is not None and held.stop_epoch != epoch:
            raise _superseded()
        if not done:
            raise DeviceUnavailable(f"{held.name}: no connection within {CONNECT_TIMEOUT_S:g} s",
                                    advice="it may be out of range or switched off")
        if waiter in done and not held.ever_connected:
            waiter.result()
        elif waiter not in done:
            raise _superseded()

    # --- requests ---------------------------------------------------------------------

    async def request(self, request: Request) -> Reply | ErrorReply:
        """Carry out one validated request; refusals and failures come back as an
        :class:`ErrorReply` (with the CLI's exit code)."""
        device = getattr(request, "device", None)
        try:
            return await self._dispatch(request)
        except FootctlError as exc:
            if isinstance(exc, SafetyRefused) and device is not None:
                with contextlib.suppress(FootctlError):
                    held = self.pick(device)
                    held.last_refusal = f"{exc.reason}: {exc.message}"
                    self.publish(held)
            return error_reply(exc, device)

    async def _dispatch(self, request: Request) -> Reply:
        # A set first: the request a person or a hub sends most, on the latency path.
        if isinstance(request, SetRequest):
            held = self.pick(request.device)
            gov_request = GovRequest(
                source=request.source, power=True, intensity=request.intensity,
                heat=request.heat, mode=request.mode, zone=request.zone,
                # A request that says a schedule sent it may find the user asleep: the
                # unattended heat limit, as for a scheduled program (a set with
                # source "schedule" got attended heat; found by the stateful test
                # through the control API).
                unattended=request.source == "schedule",
            )
            clamped = await self.submit(held, gov_request)
            # submit() published the view a moment ago (nothing ran since): reply with it.
            view = self.hub.latest(held.device_id) or self.publish(held)
            return Reply(devices=(view,), notes=clamped, owner_pid=self.pid)
        if isinstance(request, PingRequest):
            return self._reply(self.held)
        if isinstance(request, StatusRequest):
            if request.device is None:
                return self._reply(self.held)
            return self._reply([self.pick(request.device)])
        if isinstance(request, StopRequest):
            targets = self.targets(request.device)
            owed = [o for o in await asyncio.gather(*(self.stop(h, request.source)
                                                    for h in targets)) if o is not None]
            reply = self._reply(targets, tuple(o.note for o in owed))
            return reply.model_copy(update={"owed": tuple(owed)}) if owed else reply
        if isinstance(request, LeaseRequest):
            for held in self.targets(request.device):
                held.governor.lease(request.source, request.seconds)
            return self._reply(self.targets(request.device))
        if isinstance(request, ReleaseRequest):
            for held in self.targets(request.device):
                held.governor.release(request.source)
            return self._reply(self.targets(request.device))
        if isinstance(request, RunRequest):
            held = self.pick(request.device)
            from footctl.programs.loader import get_program  # noqa: PLC0415

            program = get_program(request.program, _as_path(self.program_dir))
            scheduled = request.source == "schedule"
            runner = await self.start_program(
                held, program, unattended=scheduled,
                source="schedule" if scheduled else "program", zone=request.zone(),
            )
            reply = self._reply([held], tuple(runner.notes))
            return reply.model_copy(update={"started": runner.program.name})
        if isinstance(request, DescribeRequest):
            from footctl.programs.loader import list_programs  # noqa: PLC0415

            names = [f.program.name for f in list_programs(_as_path(self.program_dir))]
            targets = self.targets(request.device)
            caps = tuple(device_caps(h.device_id, h.spec.profile, h.governor.limits, names)
                         for h in targets)
            return self._reply(targets).model_copy(update={"caps": caps})
        if isinstance(request, ScanRequest):
            seen, scan_notes = await self.scan(request)
            return self._reply(self.held, scan_notes).model_copy(update={"seen": seen})
        if isinstance(request, WatchRequest):
            raise UsageError("watch is a stream: use subscribe() (or the socket)")
        raise UsageError(f"{request.kind} is not served by this owner",
                         advice="schedules are the daemon's")

    async def scan(self, request: ScanRequest) -> tuple[tuple[ScanResult, ...], tuple[str, ...]]:
        """Listen on every radio this owner holds massagers on, all at once, for
        ``request.seconds``: what each heard, strongest first, the profile that
        recognises it (:func:`footctl.device.profile.match.match_profile`) and whether
        it is held here; and a note per radio that could not scan (all failing is
        the first one's error). No massager is driven."""
        from footctl.device.profile.loader import find_profiles, get_profile  # noqa: PLC0415
        from footctl.device.transport.ble import scan  # noqa: PLC0415

        dirs = list(self.config.profile_dirs)
        if request.profile is None:
            profiles = find_profiles(dirs)
        else:  # only what this one recognises; an unknown id is exit 2
            profiles = {request.profile: get_profile(request.profile, dirs)}
        radios = list({h.radio: None for h in self.held})
        heard = await asyncio.gather(
            *(scan(r, profiles, request.seconds) for r in radios), return_exceptions=True
        )
        failed = [e for e in heard if isinstance(e, BaseException)]
        for exc in failed:  # a radio's FootctlError is a note; anything else a bug
            if len(failed) == len(heard) or not isinstance(exc, FootctlError):
                raise exc
        held = {h.address.upper(): h.device_id for h in self.held if h.address}
        results = [
            ScanResult(
                address=s.address, name=s.name, rssi=s.rssi,
                service_uuids=tuple(s.service_uuids), manufacturer_ids=tuple(s.manufacturer_ids),
                profile=s.profile.id if s.profile else None, reason=s.reason, radio=radio.label,
                held=s.address.upper() in held, device_id=held.get(s.address.upper()),
            )
            for radio, seen in zip(radios, heard, strict=True)
            if not isinstance(seen, BaseException)
            for s in seen
            if request.profile is None or s.profile is not None
        ]
        notes = tuple(f"{r.label}: not scanned: {e}" for r, e in zip(radios, heard, strict=True)
                      if isinstance(e, BaseException))
        return tuple(sorted(results, key=lambda r: -r.rssi)), notes

    def _reply(self, held: Sequence[Held], notes: tuple[str, ...] = ()) -> Reply:
        return Reply(devices=tuple(self.publish(h) for h in held), notes=notes,
                     owner_pid=self.pid)

    async def submit(self, held: Held, request: GovRequest) -> tuple[str, ...]:
        """Serialized per massager: refused before connecting if the caps say no; a
        stop arriving while it waits (its turn, or the connect) voids it."""
        epoch = held.stop_epoch
        if held.program_running:
            # Whatever source the request names: a program's steps go to the governor from
            # its runner, never through here. (A set that said source "program" got past
            # this during a scheduled program and set attended heat over it; found by the
            # 10,000-example soak.)
            assert held.runner is not None
            raise SafetyRefused("busy", f"{held.name}: program {held.runner.program.name} "
                                "is running", advice="'footctl stop' ends it first")
        if not held.session.connected:
            held.governor.decide(request)  # refuse before connecting, not after
        async with held.lock:
            if held.stop_epoch != epoch:
                raise _superseded()
            await self.ensure_connected(held, epoch)
            if held.stop_epoch != epoch:
                raise _superseded()
            held.last_refusal = None
            notes = await self._submit_within_budget(held, request)
        self.publish(held)
        return notes

    async def _submit_within_budget(self, held: Held, request: GovRequest) -> tuple[str, ...]:
        gov = held.governor
        if self.reply_budget_s is None or request.intensity is None or gov.limits.ramp_step_s <= 0:
            # Nothing to ramp: the answer comes as soon as the device confirms.
            _state, decision = await gov.submit(request)
            return decision.notes
        task = asyncio.ensure_future(gov.submit(request))
        done, _ = await asyncio.wait({task}, timeout=self.reply_budget_s)
        if task in done:
            _state, decision = task.result()
            return decision.notes
        task.add_done_callback(_consume)
        return (
            f"ramping to intensity {gov.desired.intensity}: one level every "
            f"{gov.limits.ramp_step_s:g} s; it goes on after this reply "
            "('footctl watch' shows it)",
        )

    async def stop(self, held: Held, source: str = "cli") -> StopOwed | None:
        """Everything off now; the running program ends. Never waits behind another
        request. Returns what is owed if the off is not confirmed yet (it is then
        written first when the link returns)."""
        held.note_stop()
        owed = None
        try:
            await self._send_stop(held, source)
        except FootctlError as exc:
            held.stop_owed = True
            owed = StopOwed(device_id=held.device_id, name=held.name, reason=exc.message)
            if not held.session.connected and not held.ever_connected:
                self._connecting(held)
        finally:
            task = held.task
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, FootctlError):
                    await task
            self.publish(held)
        return owed

    async def _send_stop(self, held: Held, source: str) -> None:
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await held.governor.stop(source=source, reason="stopped")
        except TimeoutError as exc:
            raise DeviceUnavailable("no answer from the massager") from exc
        held.stop_owed = False

    # --- programs ---------------------------------------------------------------------

    def start_check(self, held: Held, now: datetime, zone: object = None) -> None:
        """Raise SafetyRefused if a program may not start now: busy, cooldown since
        the last session, or the night's session limit."""
        if held.program_running:
            raise SafetyRefused("busy", f"{held.name}: a program is running",
                                advice="'footctl stop' ends it")
        if held.governor.desired.running or held.session.state.running:
            raise SafetyRefused("busy", f"{held.name}: the massager is running",
                                advice="'footctl stop' ends it")
        if self.journal is None:
            return
        self.settle_journal()
        tz = zone if isinstance(zone, tzinfo) else local_zone()
        check_start_limits(self.journal, self.config, journal_key(held), now, tz,
                           cooldown_minutes=held.governor.limits.cooldown_s / 60)

    async def start_program(
        self,
        held: Held,
        program: Program,
        *,
        unattended: bool,
        source: str,
        now: datetime | None = None,
        zone: object = None,
    ) -> ProgramRunner:
        """Check, connect and start ``program`` in the background; its runner.
        Refusals (busy, cooldown, night limit, caps) raise before anything moves."""
        epoch = held.stop_epoch
        now = now or self.wall()
        self.start_check(held, now, zone)
        gov = held.governor
        nights = 0
        if self.journal is not None:
            from datetime import tzinfo  # noqa: PLC0415

            nights = self.journal.completed_nights(
                program.name, journal_key(held), zone=zone if isinstance(zone, tzinfo) else None
            )
        def on_progress(p: Progress) -> None:
            held.sessions.follow(p)
            self.publish(held)

        runner = ProgramRunner(
            gov, program, completed_nights=nights, unattended=unattended, source=source,
            clock=self._clock, sleep=self._sleep, on_progress=on_progress,
        )
        runner.assessment.raise_if_refused()
        async with held.lock:
            await self.ensure_connected(held, epoch)
            if held.stop_epoch != epoch:
                raise _superseded()
            held.runner = runner
            held.task = asyncio.get_running_loop().create_task(
                self._run(held, runner), name=f"footctl[{held.name}].program"
            )
        _LOG.info("%s: program %s started (%s)", held.name, program.name, source)
        self.publish(held)
        return runner

    async def _run(self, held: Held, runner: ProgramRunner) -> None:
        try:
            await runner.run()
        except FootctlError as exc:
            _LOG.error("%s: program %s failed: %s", held.name, runner.program.name, exc)
        finally:
            held.sessions.forget()
            held.last_result = runner.result
            held.task = None
            self.publish(held)

    async def wait_program(self, held: Held) -> RunResult | None:
        """Wait for the running program (if any) to end; its result."""
        task = held.task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return held.last_result


def check_start_limits(
    journal: Journal,
    config: Config,
    device: str,
    now: datetime | None = None,
    zone: tzinfo | None = None,
    *,
    cooldown_minutes: float | None = None,
) -> None:
    """Refuse (SafetyRefused) a program start on ``device`` within the cooldown after
    its last session (of any source), or past the night's program starts
    (``max_sessions_per_night`` counts program and schedule starts only: sessions by
    hand have their own budget, the cooldown). ``cooldown_minutes``: the cooldown the
    massager's governor applies (the config's, raised to the design's floor on a real
    radio); the config's as written if not given."""
    at = now or journal.now()
    check = may_start(
        at,
        journal.last_session_end(device),
        config.caps.cooldown_minutes if cooldown_minutes is None else cooldown_minutes,
        sessions_tonight=len(journal.sessions_in_night(at, device=device, zone=zone)),
        max_sessions_per_night=config.caps.max_sessions_per_night,
    )
    if not check.allowed:
        raise SafetyRefused(check.reason or "refused", check.message)


def _as_path(value: os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


def _superseded() -> SafetyRefused:
    return SafetyRefused(
        "superseded_by_stop", "a stop came first; this request was dropped",
        advice="send it again if you still want it",
    )


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a background task's outcome (so asyncio does not log it as lost)."""
    if not task.cancelled() and task.exception() is not None:
        name = task.get_name() if isinstance(task, asyncio.Task) else "background"
        _LOG.info("%s: %s", name, task.exception())


__all__ = ["DeviceSpec", "Held", "Owner", "Tuning", "build_governed", "journal_key"]
