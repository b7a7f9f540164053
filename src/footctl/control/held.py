"""One massager an owner holds: how its session and governor are built (the one
place), its serialized request path, and what the owner knows of it as a
:class:`~footctl.control.api.DeviceView`."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypedDict

from footctl.config import Config
from footctl.control.api import (
    DeviceView,
    LinkState,
    ProgramView,
    RunView,
    SessionEvent,
    SessionPhase,
    SessionSource,
    Settings,
    Timers,
)
from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession
from footctl.device.transport.ble import Radio
from footctl.journal_hooks import FLUSH_S
from footctl.programs.runner import ProgramRunner, RunResult
from footctl.safety.governor import SafetyGovernor
from footctl.safety.limits import Limits, cooldown_left_s
from footctl.safety.markers import MarkerStore

if TYPE_CHECKING:
    from footctl.journal import Journal
    from footctl.programs.runner import Progress

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSpec:
    """A massager an owner holds: its profile, address or name if known, and the
    radio it is reached through (``radio`` is that radio's label)."""

    profile: Profile
    address: str | None = None
    name: str | None = None
    simulated: bool = False


def build_governed(
    spec: DeviceSpec,
    radio: Radio,
    config: Config,
    *,
    last_session_end: Callable[[str], float | None] | None,
    markers: MarkerStore | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    scan_timeout: float = 10.0,
    on_progress: Callable[[str], None] | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> tuple[DeviceSession, SafetyGovernor]:
    """The one way a session and its governor are built: limits from the config's
    caps, the cooldown from ``last_session_end`` (the journal's, through
    :class:`SessionEnds`), crash markers (not for a simulated massager, which dies
    with us). The journal hears of its sessions through the owner's hub."""
    is_address = spec.address is not None and spec.address.count(":") == 5
    session = DeviceSession(
        spec.profile,
        radio,
        address=spec.address if is_address else None,
        name=spec.name if not is_address else None,
        scan_timeout=scan_timeout,
        on_progress=on_progress,
    )
    governor = SafetyGovernor(
        session,
        Limits.compute(spec.profile, config.caps.to_caps()),
        clock=clock,
        sleep=sleep,
        markers=None if spec.simulated else markers,
        on_progress=on_progress,
        last_session_end=last_session_end,
        wall_clock=wall_clock,
    )
    return session, governor


# --- session events: the governor's sessions, told to the hub ------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


def device_key(governor: SafetyGovernor) -> str:
    """What the journal calls this governor's massager: its address in capitals (as
    scanners report it, whatever the config's spelling), else its profile id."""
    return governor.session.state.address.upper() or governor.profile.id


class SessionEnds:
    """When the last session on each massager ended (wall-clock seconds), for the
    cooldown: the later of the journal's word and the last end this owner saw. So
    the cooldown holds at once after an end, before (or even if never) the journal
    has written it. Without a journal there is no record, and no cooldown."""

    def __init__(self, journal: Journal | None, settle: Callable[[], None] = lambda: None) -> None:
        self.journal = journal
        self._settle = settle
        self._ends: dict[str, float | None] = {}

    def __call__(self, device: str) -> float | None:
        """The governor's ``last_session_end``: read from the journal each time (once
        per new session), after every event published before it is written."""
        if self.journal is None:
            return None
        key = device.upper()
        self._settle()
        ended = self.journal.last_session_end(key)
        self._note(key, None if ended is None else ended.timestamp())
        return self._ends[key]

    def cached(self, device: str) -> float | None:
        """As :meth:`__call__`, from memory once the journal was read (for the views,
        built on every change: no SQL there)."""
        key = device.upper()
        if key not in self._ends:
            return self(key)
        return self._ends[key]

    def ended(self, device: str, at: float) -> None:
        """This owner saw a session on ``device`` end at ``at``."""
        self._note(device.upper(), at)

    def _note(self, key: str, at: float | None) -> None:
        old = self._ends.get(key)
        self._ends[key] = at if old is None else old if at is None else max(old, at)


class SessionPublisher:
    """One massager's governed sessions as :class:`SessionEvent` (a governor
    ``SessionHooks``): started and ended from the governor, a running program's name
    and steps from :meth:`follow`, and the peak heat and seconds of heat every
    :data:`~footctl.journal_hooks.FLUSH_S` while a session runs, so a crash leaves
    them in the journal. Never raises into the governor: a failure here is logged
    and the massager is still driven safely."""

    def __init__(
        self,
        governor: SafetyGovernor,
        device_id: str,
        emit: Callable[[SessionEvent], None],
        *,
        wall: Callable[[], datetime] = _utc_now,
        pid: int = 0,
        ends: SessionEnds | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.governor = governor
        self.device_id = device_id
        self._emit = emit
        self._wall = wall
        self._pid = pid
        self.ends = ends
        self._sleep = sleep
        self.number = 0  # sessions started here so far
        self.running = False
        self.source: SessionSource = "cli"
        self.program: str | None = None
        self.steps_run = 0
        # When the session started, on the wall clock (for people) and on the monotonic
        # clock (for its length: a wall clock moved by NTP or by hand in between made
        # durations wrong, even negative).
        self._started_wall: datetime | None = None
        self._started_mono: float | None = None
        self._flusher: asyncio.Task[None] | None = None

    # SessionHooks

    def session_started(self, governor: SafetyGovernor, source: str) -> None:
        """The governor switched the massager on: a new session."""
        try:
            self.number += 1
            self.running = True
            self.source = api_source(source)
            self._started_wall = self._wall()
            self._started_mono = governor.monotonic()
            self._publish("started", self._started_wall)
            self._start_flushing()
        except Exception:
            _LOG.exception("session start not published")

    def session_ended(self, governor: SafetyGovernor, reason: str) -> None:
        """The session ended: its totals are final."""
        if not self.running:
            return
        try:
            self.running = False
            self._stop_flushing()
            at = self._wall()
            if self._started_wall is not None and self._started_mono is not None:
                # The end is the start plus the length measured on the monotonic clock.
                elapsed = max(0.0, governor.monotonic() - self._started_mono)
                at = self._started_wall + timedelta(seconds=elapsed)
            if self.ends is not None:
                self.ends.ended(device_key(governor), at.timestamp())
            self._publish("ended", at, reason=reason, heat_s=governor.heat_seconds)
        except Exception:
            _LOG.exception("session end not published")

    # programs

    def follow(self, progress: Progress) -> None:
        """A program runs here: its name (the runner reports before its first request,
        so the session's start has it) and the steps as they come."""
        self.program = progress.program
        if progress.step is not None and progress.step > self.steps_run:
            self.steps_run = progress.step
            if self.running:
                self._progress()

    def forget(self) -> None:
        """The program is over: later sessions here are not its own."""
        self.program = None
        self.steps_run = 0

    def close(self) -> None:
        """Stop the periodic progress (the owner is closing)."""
        self._stop_flushing()

    # the events

    def _publish(
        self, phase: SessionPhase, at: datetime, *, reason: str | None = None,
        heat_s: float | None = None,
    ) -> None:
        gov = self.governor
        self._emit(SessionEvent.model_construct(
            phase=phase, device_id=self.device_id, number=self.number,
            journal_device=device_key(gov), profile=gov.profile.id, source=self.source,
            simulated=gov.session.radio.virtual, program=self.program,
            steps_run=self.steps_run, peak_heat=gov.peak_heat,
            heat_s=gov.session_heat_seconds() if heat_s is None else heat_s,
            at=at, reason=reason, owner_pid=self._pid,
        ))

    def _progress(self) -> None:
        try:
            self._publish("progress", self._wall())
        except Exception:
            _LOG.exception("session progress not published")

    def _start_flushing(self) -> None:
        self._stop_flushing()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous test): the end carries the totals
            return
        self._flusher = loop.create_task(
            self._flush_while_running(), name=f"footctl[{self.device_id}].session-progress"
        )

    def _stop_flushing(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None

    async def _flush_while_running(self) -> None:
        while self.running:
            await self._sleep(FLUSH_S)
            if self.running:
                self._progress()


def _drop(_event: SessionEvent) -> None:
    return None


class Held:
    """One massager the owner holds, with its serialized request path. Its
    governor's sessions are told to ``emit`` (the owner's hub) as
    :class:`SessionEvent`."""

    def __init__(
        self, spec: DeviceSpec, radio: Radio, session: DeviceSession, governor: SafetyGovernor,
        name: str, *, emit: Callable[[SessionEvent], None] = _drop,
        wall: Callable[[], datetime] = _utc_now, pid: int = 0, ends: SessionEnds | None = None,
    ) -> None:
        self.spec = spec
        self.radio = radio
        self.session = session
        self.governor = governor
        self.name = name
        # Stable for the owner's life: the address if configured, else the name.
        self.device_id = (spec.address or name).upper()
        self.wall = wall
        self.sessions = SessionPublisher(governor, self.device_id, emit, wall=wall, pid=pid,
                                         ends=ends)
        self._unhook = governor.add_hooks(self.sessions)
        self.lock = asyncio.Lock()
        self.stop_epoch = 0
        self._stopped = asyncio.Event()
        self.connect_task: asyncio.Task[None] | None = None
        self.ever_connected = False
        self.link_up = asyncio.Event()  # set while the session's link is up
        self.stop_owed = False
        self.runner: ProgramRunner | None = None
        self.task: asyncio.Task[None] | None = None
        self.last_result: RunResult | None = None
        self.last_refusal: str | None = None
        self.unsubscribe: list[Callable[[], None]] = [self._unhook]
        self.view_key: tuple[object, ...] | None = None  # what the last view was made of

    @property
    def address(self) -> str:
        """The massager's address ("" until found)."""
        return self.session.state.address or self.spec.address or ""

    @property
    def program_running(self) -> bool:
        """True while a program runs here."""
        return self.task is not None and not self.task.done()

    def matches(self, wanted: str) -> bool:
        """True if ``wanted`` names this massager exactly (address, id or name)."""
        w = wanted.lower()
        names = (self.device_id, self.address, self.name, self.spec.name,
                 self.session.state.name)
        return any(n and n.lower() == w for n in names)

    def stop_signal(self) -> asyncio.Event:
        """Set by the next stop (an event per stop, so each waiter sees its own)."""
        return self._stopped

    def note_stop(self) -> None:
        """A stop arrived: every request queued or waiting before it is void."""
        self.stop_epoch += 1
        old, self._stopped = self._stopped, asyncio.Event()
        old.set()


def journal_key(held: Held) -> str:
    """What the journal calls a held massager (as its session events name it)."""
    return held.address.upper() or held.spec.profile.id


def _round(value: float | None) -> float | None:
    return None if value is None else float(round(value))


# The governor's session sources, as the API reports them: the source of the request
# that started the session (the owner's requests passed the edge, a program runner's is
# program or schedule), or the governor's own "device" (the massager's own button).
_API_SOURCES: dict[str, SessionSource] = {
    "cli": "cli", "tui": "tui", "mqtt": "mqtt", "schedule": "schedule", "program": "program",
    "device": "device",
}
# Nothing else reaches the governor through an owner. A governor driven without one (a
# test rig or a bench calling it with a request of its own) may name anything; its
# sessions are still reported and journaled (a session's end starts the cooldown, so
# dropping it would be the unsafe side), as the nearest thing: a request by hand.
_UNKNOWN_SOURCE: SessionSource = "cli"


def api_source(source: str) -> SessionSource:
    """The API's source for a governor session source (any other, logged, as ``cli``:
    see :data:`_UNKNOWN_SOURCE`)."""
    known = _API_SOURCES.get(source)
    if known is None:
        _LOG.warning("session source %r is not the control API's: reported as %r",
                     source, _UNKNOWN_SOURCE)
        return _UNKNOWN_SOURCE
    return known


# A view is built on every change of every massager, and the reply to a request waits
# for one: its parts are memoized by value (frozen models, so one object serves every
# view with the same values; ``typed`` keeps True apart from 1 and 40 from 40.0), and
# the view is a copy of the massager's fixed fields with the rest filled in, a third
# of what ``model_construct`` of every field costs. A few hundred entries cover every
# combination a massager goes through in a night many times over.
_MEMO_SIZE = 512


@functools.lru_cache(maxsize=_MEMO_SIZE, typed=True)
def _settings(
    power: bool, intensity: int | None, heat: int, heat_celsius: float | None,
    mode: str | None, zone: int | None,
) -> Settings:
    return Settings.model_construct(
        power=power, intensity=intensity, heat=heat, heat_celsius=heat_celsius, mode=mode,
        zone=zone,
    )


@functools.lru_cache(maxsize=_MEMO_SIZE, typed=True)
def _timers(
    session_left_s: float | None, heat_left_s: float | None, lease_left_s: float | None,
    cooldown_left_s: float | None,
) -> Timers:
    return Timers.model_construct(
        session_left_s=session_left_s, heat_left_s=heat_left_s, lease_left_s=lease_left_s,
        cooldown_left_s=cooldown_left_s,
    )


@functools.lru_cache(maxsize=_MEMO_SIZE, typed=True)
def _fixed(
    device_id: str, name: str, profile: str, simulated: bool, radio: str, owner_pid: int
) -> DeviceView:
    """What never changes in a massager's views (the rest is filled in per view)."""
    return DeviceView.model_construct(
        device_id=device_id, address="", name=name, profile=profile, simulated=simulated,
        radio=radio, owner_pid=owner_pid,
    )


class _Changing(TypedDict):
    """The fields of a view filled in per view: typed here, so mypy checks what
    ``model_copy`` sets (it takes any mapping)."""

    address: str
    link: LinkState
    reported: Settings
    assumed: bool
    temperature: float | None
    timer_minutes: int | None
    desired: Settings
    program: ProgramView | None
    timers: Timers
    session_source: SessionSource | None
    last_refusal: str | None
    fault: str | None
    end_reason: str | None
    last_run: RunView | None
    seq: int


# Seconds left on the session cap, the heat dose, the soonest lease, the cooldown.
Timers4 = tuple[float | None, float | None, float | None, float | None]


def view_of(
    held: Held, owner_pid: int, seq: int = 0, timers: Timers4 | None = None
) -> DeviceView:
    """Everything the owner knows of one massager, now (``seq``: the number the hub
    will give it; ``timers``: :func:`timers_of`, if the caller has them already).
    Built without validation (``model_construct`` and ``model_copy``): these are the
    owner's own values, typed by mypy (``_Changing``) and checked by a test, and this
    runs on every change of every massager."""
    s = held.session.state
    gov = held.governor
    caps = held.spec.profile.capabilities
    link: LinkState
    if s.connected:
        link = "connected"
    elif held.connect_task is not None and not held.connect_task.done():
        link = "connecting"
    else:
        link = "lost" if held.ever_connected else "idle"
    d = gov.desired
    session_left, heat_left, lease_left, cooldown_left = (
        timers_of(held) if timers is None else timers
    )
    progress = held.runner.progress if held.program_running and held.runner else None
    program = None
    if progress is not None and held.runner is not None:
        program = ProgramView.model_construct(
            program=progress.program,
            # (the owner starts a runner as "program", or "schedule" for a schedule's run)
            source="schedule" if held.runner.source == "schedule" else "program",
            step=progress.step, steps=progress.steps, step_name=progress.step_name,
            step_left_s=float(round(progress.step_left_s)),
            left_s=float(round(progress.left_s)), paused=progress.paused,
        )
    last = held.last_result
    running = gov.desired.running or s.running
    fixed = _fixed(held.device_id, held.name, held.spec.profile.id, held.spec.simulated,
                   held.radio.label, owner_pid)
    changing: _Changing = {
        "address": held.address,
        "link": link,
        "reported": _settings(
            s.running, s.intensity, s.heat, caps.heat_celsius(s.heat), s.mode, s.zone
        ),
        "assumed": s.assumed,
        "temperature": None if s.temperature is None else float(s.temperature),
        "timer_minutes": s.timer,
        "desired": _settings(
            d.running, d.intensity, d.heat or 0, caps.heat_celsius(d.heat or 0), d.mode, d.zone
        ),
        "program": program,
        "timers": _timers(session_left, heat_left, lease_left, cooldown_left),
        # (The publisher's: the governor keeps no request source for a session the
        # massager's own button started.)
        "session_source": held.sessions.source if running and held.sessions.running else None,
        "last_refusal": held.last_refusal,
        "fault": gov.fault,
        "end_reason": gov.end_reason,
        "last_run": None if last is None else RunView.model_construct(
            program=last.program, source=last.source, end_reason=last.end_reason,
            steps_run=last.steps_run, steps=last.steps,
            elapsed_s=float(round(last.elapsed_s, 1)), notes=tuple(last.notes),
        ),
        "seq": seq,
    }
    return fixed.model_copy(update=changing)


def view_key(held: Held, timers: Timers4 | None = None) -> tuple[object, ...]:
    """Everything a view is made of, cheaply: session states and targets are
    frozen and replaced on each change, so identity tells (``timers``: as for
    :func:`view_of`)."""
    gov = held.governor
    task = held.connect_task
    return (
        held.session.state, gov.desired, gov.fault, gov.end_reason,
        held.sessions.running and held.sessions.source,
        held.ever_connected, task is not None and not task.done(),
        held.runner.progress if held.program_running and held.runner else None,
        held.last_result, held.last_refusal, *(timers_of(held) if timers is None else timers),
    )


# The cooldown runs for half an hour while nothing else changes: counted in whole
# minutes (rounded up) in the view, a watcher or the MQTT broker gets a view a minute
# then, not one a second.
COOLDOWN_VIEW_STEP_S = 60.0


def timers_of(held: Held) -> Timers4:
    """Seconds left (whole) on the session cap, the heat dose, the soonest remote
    lease, and the cooldown before a new session may start (in whole minutes,
    rounded up); None: not running."""
    gov = held.governor
    t = gov.timers()
    cooldown = cooldown_left(held)
    if cooldown is not None:
        cooldown = math.ceil(cooldown / COOLDOWN_VIEW_STEP_S) * COOLDOWN_VIEW_STEP_S
    return (_round(t.session_left_s), _round(t.heat_left_s), _round(gov.lease_left_s()),
            cooldown)


def cooldown_left(held: Held) -> float | None:
    """Seconds before a new session may start on ``held`` after its last one (None
    while it runs, once the feet have rested, or with no journal to tell)."""
    gov = held.governor
    ends = held.sessions.ends
    if (ends is None or ends.journal is None or gov.limits.cooldown_s <= 0
            or gov.desired.running or held.session.state.running):
        return None
    ended = ends.cached(journal_key(held))
    if ended is None:
        return None
    left = cooldown_left_s(held.wall().timestamp(), ended, gov.limits.cooldown_s)
    return left if left > 0 else None
