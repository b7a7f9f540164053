"""The daemon: holds the massagers, runs the schedules, answers the control socket.

One :class:`Daemon` per user. For each configured massager it keeps a DeviceSession
behind a SafetyGovernor (whose ``watch()`` runs all the time, so caps hold for every
source), with the journal listening. It turns off what a crashed run left on before
anything else, checks the schedules on its wall clock, starts due programs as
unattended runs (heat at most the unattended level), and serves JSON-line requests
from other footctl processes on a 0600 Unix socket that only our own user may use.

Scheduled starts follow the missed-start policy of :func:`footctl.schedule.due`
(skipped starts are journaled as ``skipped``), and :func:`footctl.schedule.may_start`
with the journal for the cooldown and the sessions-per-night limit (a start that may
not happen is journaled as ``refused``, with the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from footctl.config import Config
from footctl.errors import DeviceUnavailable, FootctlError, SafetyRefused, UsageError
from footctl.guardian import ControlServer, submit_for_client
from footctl.journal import Journal
from footctl.journal_hooks import JournalHooks, device_key, recover_journal
from footctl.profile.schema import Profile
from footctl.programs.loader import get_program
from footctl.programs.model import Program
from footctl.programs.runner import ProgramRunner, RunResult
from footctl.render import state_payload
from footctl.safety.decide import Request
from footctl.safety.governor import SafetyGovernor
from footctl.safety.limits import Limits
from footctl.safety.markers import MarkerStore
from footctl.schedule import local_zone, may_start
from footctl.scheduler import Due, Scheduler, describe, schedule_key, upcoming
from footctl.session import DeviceSession
from footctl.transport.ble import Radio

_LOG = logging.getLogger(__name__)

# The scheduler looks at the clock at least this often. Short enough that a start is
# at most this late (far inside the 1 min minimum grace); after the machine wakes from
# sleep, the next look comes within this time too (asyncio's monotonic clock does
# not count the time asleep).
SCHEDULER_TICK_S = 15.0

# Connecting before a scheduled start: the massager may need a moment to advertise.
CONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DeviceSpec:
    """A massager the daemon holds: its profile, and its address or name if known."""

    profile: Profile
    address: str | None = None
    name: str | None = None


@dataclass
class Managed:
    """One held massager."""

    spec: DeviceSpec
    session: DeviceSession
    governor: SafetyGovernor
    runner: ProgramRunner | None = None
    task: asyncio.Task[None] | None = None
    last_result: RunResult | None = None

    @property
    def key(self) -> str:
        """The journal's name for this massager (as the journal hooks write it)."""
        return device_key(self.governor)

    @property
    def busy(self) -> str | None:
        """Why a new program may not start now, or None."""
        if self.task is not None and not self.task.done():
            return f"program {self.runner.program.name if self.runner else '?'} is running"
        if self.governor.desired.running or self.session.state.running:
            return "the massager is running"
        return None

    def matches(self, wanted: str) -> bool:
        """True if ``wanted`` names this massager (address, name or profile)."""
        w = wanted.lower()
        names = (self.spec.address, self.spec.name, self.session.state.address,
                 self.session.state.name, self.spec.profile.id)
        return any(n and n.lower() == w for n in names)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """The long-running owner of the massagers, the scheduler and the socket."""

    def __init__(
        self,
        config: Config,
        radio: Radio,
        devices: list[DeviceSpec],
        journal: Journal,
        *,
        socket_path: Path,
        state_path: Path | None = None,
        markers: MarkerStore | None = None,
        program_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall: Callable[[], datetime] = _utc_now,
        own_uid: int | None = None,
        scan_timeout: float = 10.0,
    ) -> None:
        if not devices:
            raise UsageError(
                "the daemon has no massager to hold",
                advice="add [[devices]] to the config file, or pass --simulate PROFILE_ID",
            )
        self.config = config
        self.radio = radio
        self.journal = journal
        self.hooks = JournalHooks(journal)
        self.markers = markers
        self.program_dir = program_dir
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self.scheduler = Scheduler(list(config.schedules), state_path)
        self.server = ControlServer(socket_path, self.handle, own_uid=own_uid)
        self.devices: list[Managed] = []
        for spec in devices:
            session = DeviceSession(
                spec.profile, radio, address=spec.address, name=spec.name,
                scan_timeout=scan_timeout,
            )
            governor = SafetyGovernor(
                session,
                Limits.compute(spec.profile, config.caps.to_caps()),
                clock=clock,
                sleep=sleep,
                markers=markers,
            )
            self.hooks.attach(governor)
            self.devices.append(Managed(spec, session, governor))
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------

    async def start(self, *, scheduler_loop: bool = True) -> None:
        """Recover after a crash, connect, then serve and schedule."""
        await self._recover()
        for managed in self.devices:
            try:
                await self.ensure_connected(managed)
            except FootctlError as exc:
                _LOG.warning("%s: not connected yet: %s", managed.key, exc)
            self._spawn(managed.governor.watch(), f"footctl[{managed.key}].watch")
        await self.server.start()
        if scheduler_loop:
            self._spawn(self._scheduler_loop(), "footctl.scheduler")

    async def _recover(self) -> None:
        from footctl.devices import recover_after_crash  # noqa: PLC0415 - avoids a cycle

        if self.markers is not None:
            await recover_after_crash(
                self.radio, self.config, self.markers, lambda m: _LOG.info("%s", m), self.journal
            )
            for managed in self.devices:  # what recovery could not confirm off is owed
                managed.governor.adopt_unrecovered()
        else:
            recover_journal(self.journal, turned_off=(), still_owed=())

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def healthy(self) -> bool:
        """False if a background task died (the systemd watchdog then stops pinging)."""
        return all(not t.done() for t in self._tasks)

    async def close(self) -> None:
        """Everything off on every massager, then disconnect and remove the socket.
        A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        await self.server.close()
        for task in list(self._tasks):
            task.cancel()
        for managed in self.devices:
            if managed.task is not None:
                managed.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, FootctlError):
                    await managed.task
            await managed.governor.shutdown("shutdown")
            await managed.session.close()

    async def ensure_connected(self, managed: Managed) -> None:
        """Connect if the link is not up (a session reconnects by itself after a drop)."""
        if managed.session.connected:
            return
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await managed.session.connect()
        except TimeoutError as exc:
            raise DeviceUnavailable(f"{managed.key}: no connection within "
                                    f"{CONNECT_TIMEOUT_S:g} s") from exc

    # --- the scheduler -------------------------------------------------------------

    async def _scheduler_loop(self) -> None:
        while True:
            try:
                await self.check_schedules()
            except Exception:
                _LOG.exception("scheduler pass failed")
            await asyncio.sleep(SCHEDULER_TICK_S)

    def device_for(self, wanted: str | None) -> Managed | None:
        """The massager ``wanted`` names (the first one when None)."""
        if wanted is None:
            return self.devices[0]
        return next((m for m in self.devices if m.matches(wanted)), None)

    async def check_schedules(self) -> list[ProgramRunner]:
        """One scheduler pass at the wall clock's now: record skipped starts, start
        what is due. Returns the runners started."""
        now = self._wall()
        started: list[ProgramRunner] = []
        for item in self.scheduler.check(now):
            managed = self.device_for(item.schedule.device)
            key = managed.key if managed else item.schedule.device or "unknown"
            grace = item.schedule.missed_start_grace_minutes
            for missed in item.decision.skipped:
                late = (now - missed).total_seconds() / 60
                note = f"missed start: {late:.0f} min late (grace {grace:g} min)"
                self._not_run(item, key, "skipped", missed, note)
            if item.decision.action == "start":
                runner = await self._scheduled_start(item, managed, key, now)
                if runner is not None:
                    started.append(runner)
        return started

    def _not_run(self, item: Due, key: str, reason: str, at: datetime | None, note: str) -> None:
        _LOG.warning("schedule %s (%s): %s: %s", item.index, item.schedule.program, reason, note)
        try:
            self.journal.record_not_run(
                key,
                "skipped" if reason == "skipped" else "refused",
                source="schedule",
                at=at or self._wall(),
                program=item.schedule.program,
                note=note,
            )
        except Exception:
            _LOG.exception("journal write failed")

    async def _scheduled_start(
        self, item: Due, managed: Managed | None, key: str, now: datetime
    ) -> ProgramRunner | None:
        at = item.decision.scheduled
        if managed is None:
            self._not_run(item, key, "refused", at, f"no massager named {item.schedule.device!r}")
            return None
        try:
            program = get_program(item.schedule.program, self.program_dir)
            return await self.start_program(
                managed, program, unattended=True, source="schedule", now=now,
                zone=item.schedule.zone(),
            )
        except DeviceUnavailable as exc:
            self._not_run(item, key, "skipped", at, f"massager unreachable: {exc}")
        except SafetyRefused as exc:
            self._not_run(item, key, "refused", at, f"{exc.reason}: {exc}")
        except FootctlError as exc:
            self._not_run(item, key, "refused", at, str(exc))
        return None

    # --- programs --------------------------------------------------------------------

    def start_check(self, managed: Managed, now: datetime, zone: tzinfo | None = None) -> None:
        """Raise SafetyRefused if a program may not start now: busy, cooldown since
        the last session, or the night's session limit (nights in ``zone``, default
        local)."""
        busy = managed.busy
        if busy is not None:
            raise SafetyRefused("busy", f"{managed.key}: {busy}",
                                advice="'footctl stop' ends it")
        caps = self.config.caps
        zone = zone or local_zone()
        check = may_start(
            now,
            self.journal.last_session_end(managed.key),
            caps.cooldown_minutes,
            sessions_tonight=len(
                self.journal.sessions_in_night(now, device=managed.key, zone=zone)
            ),
            max_sessions_per_night=caps.max_sessions_per_night,
        )
        if not check.allowed:
            raise SafetyRefused(check.reason or "refused", check.message)

    async def start_program(
        self,
        managed: Managed,
        program: Program,
        *,
        unattended: bool,
        source: str,
        now: datetime | None = None,
        zone: tzinfo | None = None,
    ) -> ProgramRunner:
        """Check, connect and start ``program`` in the background; returns its runner.
        Refusals (busy, cooldown, night limit, caps) raise before anything moves."""
        now = now or self._wall()
        self.start_check(managed, now, zone)
        gov = managed.governor
        nights = self.journal.completed_nights(program.name, managed.key, zone=zone)
        runner = ProgramRunner(
            gov,
            program,
            completed_nights=nights,
            unattended=unattended,
            source=source,
            clock=self._clock,
            sleep=self._sleep,
            on_progress=lambda p: self.hooks.follow(gov, p),
        )
        runner.assessment.raise_if_refused()
        await self.ensure_connected(managed)
        managed.runner = runner
        managed.task = asyncio.get_running_loop().create_task(
            self._run(managed, runner), name=f"footctl[{managed.key}].program"
        )
        _LOG.info("%s: program %s started (%s)", managed.key, program.name, source)
        return runner

    async def _run(self, managed: Managed, runner: ProgramRunner) -> None:
        try:
            await runner.run()
        except FootctlError as exc:
            _LOG.error("%s: program %s failed: %s", managed.key, runner.program.name, exc)
        finally:
            self.hooks.forget(managed.governor)
            managed.last_result = runner.result
            _LOG.info("%s: program %s ended: %s", managed.key, runner.program.name,
                      runner.result.end_reason if runner.result else "?")

    async def wait_program(self, managed: Managed) -> RunResult | None:
        """Wait for the running program (if any) to end; its result."""
        if managed.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await managed.task
        return managed.last_result

    async def stop(self, managed: Managed, source: str = "cli") -> None:
        """Everything off now, and end the program that was running."""
        try:
            await managed.governor.stop(source=source, reason="stopped")
        finally:
            task = managed.task
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # --- the control socket -------------------------------------------------------

    def _status(self, managed: Managed, notes: tuple[str, ...] = ()) -> dict[str, Any]:
        payload = state_payload(managed.governor, managed.session.state, "daemon", notes)
        running = managed.task is not None and not managed.task.done()
        progress = managed.runner.progress if running and managed.runner else None
        payload["program"] = progress.to_dict() if progress else None
        payload["last_run"] = managed.last_result.to_dict() if managed.last_result else None
        payload["pid"] = os.getpid()
        return payload

    def schedules(self) -> dict[str, Any]:
        """The schedules, their next starts and when each was last checked."""
        now = self._wall()
        zone = local_zone()
        rows = []
        for index, s in enumerate(self.scheduler.schedules):
            nxt = upcoming([s], now, 1)
            last = self.scheduler.last_checked.get(schedule_key(index, s))
            rows.append({
                "index": index, "description": describe(s), "program": s.program,
                "device": s.device,
                "next": nxt[0].to_dict(zone) if nxt else None,
                "last_checked": last.isoformat() if last else None,
            })
        return {"ok": True, "schedules": rows}

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (the socket's handler)."""
        cmd = request["cmd"]
        if cmd == "ping":
            return {"ok": True, "pid": os.getpid(), "devices": [m.key for m in self.devices]}
        if cmd == "schedule":
            return self.schedules()
        wanted = _field(request, "device", str)
        managed = self.device_for(wanted)
        if managed is None:
            names = ", ".join(m.key for m in self.devices)
            raise UsageError(f"the daemon holds no massager {wanted!r}", advice=f"it holds {names}")
        if cmd == "status":
            return self._status(managed)
        if cmd in ("stop", "off"):
            await self.stop(managed)
            return self._status(managed)
        if cmd in ("on", "set"):
            if managed.task is not None and not managed.task.done():
                raise SafetyRefused("busy", f"{managed.key}: {managed.busy}",
                                    advice="'footctl stop' ends the program first")
            req = Request(
                source="cli", power=True, intensity=_field(request, "intensity", int),
                heat=_field(request, "heat", int), mode=_field(request, "mode", str),
                zone=_field(request, "zone", int),
            )
            managed.governor.decide(req)
            await self.ensure_connected(managed)
            state, notes = await submit_for_client(managed.governor, req)
            return state_payload(managed.governor, state, "daemon", notes)
        if cmd == "run":
            name = _field(request, "program", str)
            if not name:
                raise UsageError("run needs a 'program'")
            runner = await self.start_program(
                managed, get_program(name, self.program_dir), unattended=False, source="program"
            )
            status = self._status(managed, tuple(runner.notes))
            status["started"] = runner.program.name
            return status
        raise UsageError(f"unknown command {cmd!r}",
                         advice="status, set, on, off, stop, run, schedule, ping")


def _field(request: dict[str, Any], name: str, kind: type[int] | type[str]) -> Any:
    """A request field of the given type (or None); a wrong type is a usage error."""
    value = request.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise UsageError(f"{name!r} must be {'a whole number' if kind is int else 'a string'}")
    return value
