"""One massager an owner holds: how its session and governor are built (the one
place), its serialized request path, and what the owner knows of it as a
:class:`~footctl.control.api.DeviceView`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from footctl.config import Config
from footctl.control.api import (
    DeviceView,
    LinkState,
    ProgramView,
    RunView,
    Settings,
    Source,
    Timers,
)
from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession
from footctl.device.transport.ble import Radio
from footctl.journal_hooks import JournalHooks
from footctl.programs.runner import ProgramRunner, RunResult
from footctl.safety.governor import SafetyGovernor
from footctl.safety.limits import Limits
from footctl.safety.markers import MarkerStore

if TYPE_CHECKING:
    from footctl.journal import Journal


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
    journal: Journal | None,
    hooks: JournalHooks | None,
    markers: MarkerStore | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    scan_timeout: float = 10.0,
    on_progress: Callable[[str], None] | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> tuple[DeviceSession, SafetyGovernor]:
    """The one way a session and its governor are built: limits from the config's
    caps, the cooldown from the journal's last session end, crash markers (not for
    a simulated massager, which dies with us), the journal's hooks."""
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
        last_session_end=_last_end_from(journal),
        wall_clock=wall_clock,
    )
    if hooks is not None:
        hooks.attach(governor)
    return session, governor


def _last_end_from(journal: Journal | None) -> Callable[[str], float | None] | None:
    if journal is None:
        return None

    def last_end(address: str) -> float | None:
        ended = journal.last_session_end(address.upper())
        return ended.timestamp() if ended is not None else None

    return last_end


class Held:
    """One massager the owner holds, with its serialized request path."""

    def __init__(
        self, spec: DeviceSpec, radio: Radio, session: DeviceSession, governor: SafetyGovernor,
        name: str,
    ) -> None:
        self.spec = spec
        self.radio = radio
        self.session = session
        self.governor = governor
        self.name = name
        # Stable for the owner's life: the address if configured, else the name.
        self.device_id = (spec.address or name).upper()
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
        self.unsubscribe: list[Callable[[], None]] = []
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
    """What the journal calls a held massager (as the journal hooks write it)."""
    return held.address.upper() or held.spec.profile.id


def _round(value: float | None) -> float | None:
    return None if value is None else float(round(value))


def _api_source(source: str) -> Source:
    known: dict[str, Source] = {
        "cli": "cli", "tui": "tui", "mqtt": "mqtt", "schedule": "schedule", "program": "program",
    }
    return known.get(source, "cli")


def view_of(held: Held, owner_pid: int) -> DeviceView:
    """Everything the owner knows of one massager, now. Built without validation
    (``model_construct``): these are the owner's own values, typed by mypy and
    checked by a test, and this runs on every change of every massager."""
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
    t = gov.timers()
    progress = held.runner.progress if held.program_running and held.runner else None
    program = None
    if progress is not None and held.runner is not None:
        program = ProgramView.model_construct(
            program=progress.program, source=_api_source(held.runner.source),
            step=progress.step, steps=progress.steps, step_name=progress.step_name,
            step_left_s=float(round(progress.step_left_s)),
            left_s=float(round(progress.left_s)), paused=progress.paused,
        )
    last = held.last_result
    running = gov.desired.running or s.running
    return DeviceView.model_construct(
        device_id=held.device_id,
        address=held.address,
        name=held.name,
        profile=held.spec.profile.id,
        simulated=held.spec.simulated,
        radio=held.radio.label,
        link=link,
        reported=Settings.model_construct(
            power=s.running, intensity=s.intensity, heat=s.heat,
            heat_celsius=caps.heat_celsius(s.heat), mode=s.mode, zone=s.zone,
        ),
        assumed=s.assumed,
        temperature=None if s.temperature is None else float(s.temperature),
        timer_minutes=s.timer,
        desired=Settings.model_construct(
            power=d.running, intensity=d.intensity, heat=d.heat or 0,
            heat_celsius=caps.heat_celsius(d.heat or 0), mode=d.mode, zone=d.zone,
        ),
        program=program,
        timers=Timers.model_construct(
            session_left_s=_round(t.session_left_s), heat_left_s=_round(t.heat_left_s)
        ),
        session_source=_api_source(gov.source) if running and gov.source else None,
        last_refusal=held.last_refusal,
        fault=gov.fault,
        end_reason=gov.end_reason,
        last_run=None if last is None else RunView.model_construct(
            program=last.program, source=last.source, end_reason=last.end_reason,
            steps_run=last.steps_run, steps=last.steps,
            elapsed_s=float(round(last.elapsed_s, 1)), notes=tuple(last.notes),
        ),
        owner_pid=owner_pid,
    )

def view_key(held: Held) -> tuple[object, ...]:
    """Everything a view is made of, cheaply: session states and targets are
    frozen and replaced on each change, so identity tells."""
    gov = held.governor
    t = gov.timers()
    task = held.connect_task
    return (
        held.session.state, gov.desired, gov.fault, gov.end_reason, gov.source,
        held.ever_connected, task is not None and not task.done(),
        held.runner.progress if held.program_running and held.runner else None,
        held.last_result, held.last_refusal,
        _round(t.session_left_s), _round(t.heat_left_s),
    )
