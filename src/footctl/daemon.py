"""The daemon: an :class:`~footctl.control.owner.Owner` that lives until signalled,
with the scheduler as one more source, serving ``daemon.sock``.

It turns off what a crashed run left on before anything else (the owner's start),
logs what would go wrong with the schedules (:func:`footctl.scheduler.audit_config`),
checks the schedules on its wall clock, and starts due programs as unattended runs
(heat at most the unattended level) through the owner, like any source.

Scheduled starts follow the missed-start policy of :func:`footctl.schedule.due`
(skipped starts are journaled as ``skipped``), and :func:`footctl.schedule.may_start`
with the journal for the cooldown and the sessions-per-night limit (a start that may
not happen is journaled as ``refused``, with the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal, Unpack

from footctl.config import Config
from footctl.control.api import (
    ErrorReply,
    Reply,
    Request,
    SchedulesRequest,
    ScheduleView,
    parse_request,
)
from footctl.control.owner import DeviceSpec, Held, Owner, Tuning, journal_key
from footctl.control.server import ControlServer
from footctl.device.transport.ble import Radio
from footctl.errors import ExitCode, FootctlError, UsageError
from footctl.journal import Journal
from footctl.programs.runner import ProgramRunner
from footctl.safety.markers import MarkerStore
from footctl.schedule import local_zone
from footctl.scheduler import (
    Due,
    ScheduleProblem,
    Scheduler,
    audit_config,
    describe,
    schedule_key,
    upcoming,
)

_LOG = logging.getLogger(__name__)

# The scheduler looks at the clock at least this often. Short enough that a start is
# at most this late (far inside the 1 min minimum grace); after the machine wakes from
# sleep, the next look comes within this time too (asyncio's monotonic clock does
# not count the time asleep).
SCHEDULER_TICK_S = 15.0


class Daemon:
    """The long-running owner of the massagers, the scheduler and the socket: an open
    :class:`Owner` (made by :meth:`open_in`, as every owner is) with a journal."""

    def __init__(
        self,
        owner: Owner,
        *,
        socket_path: Path | str,
        state_path: Path | None = None,
        own_uid: int | None = None,
    ) -> None:
        if owner.journal is None:
            raise UsageError("the daemon needs the journal (cooldown, nights, skipped starts)")
        self.owner = owner
        self.config = owner.config
        self.journal: Journal = owner.journal
        self._wall = owner.wall
        self.program_dir = None if owner.program_dir is None else Path(owner.program_dir)
        self.scheduler = Scheduler(list(self.config.schedules), state_path)
        self.server = ControlServer(socket_path, self.request, self.owner.subscribe,
                                    own_uid=own_uid)

    @classmethod
    async def open_in(
        cls,
        stack: contextlib.AsyncExitStack,
        config: Config,
        devices: Sequence[tuple[DeviceSpec, Radio]],
        *,
        socket_path: Path | str,
        state_path: Path | None = None,
        own_uid: int | None = None,
        journal: Journal | Literal["user"] = "user",
        markers: MarkerStore | Literal["auto"] | None = "auto",
        program_dir: Path | Literal["user"] | None = "user",
        **tuning: Unpack[Tuning],
    ) -> Daemon:
        """The daemon over an owner made the one way (:meth:`Owner.open_in`, the
        journal required): crash recovery and the links first. Serve and schedule
        with :meth:`start`; ``stack`` closes it."""
        owner = await Owner.open_in(
            stack, config, devices, journal=journal, require_journal=True, markers=markers,
            program_dir=program_dir, **tuning,
        )
        daemon = cls(owner, socket_path=socket_path, state_path=state_path, own_uid=own_uid)
        stack.push_async_callback(daemon.close)
        return daemon

    @property
    def devices(self) -> list[Held]:
        """The massagers held."""
        return self.owner.held

    @property
    def healthy(self) -> bool:
        """False if a background task died (the systemd watchdog then stops pinging)."""
        return self.owner.healthy

    # --- lifecycle ---------------------------------------------------------------

    async def start(self, *, scheduler_loop: bool = True) -> None:
        """Check the schedules, then serve and schedule (the owner is open: crash
        recovery and the links came first)."""
        self.audit()
        await self.server.start()
        if scheduler_loop:
            self.owner.spawn(self._scheduler_loop(), "footctl.scheduler")

    async def close(self) -> None:
        """Everything off on every massager, then disconnect and remove the socket."""
        await self.server.close()
        await self.owner.close()

    async def request(self, request: Request) -> Reply | ErrorReply:
        """The owner's control API, plus the schedules."""
        if isinstance(request, SchedulesRequest):
            return Reply(schedules=self.schedules(), owner_pid=self.owner.pid, daemon=True)
        reply = await self.owner.request(request)
        return reply.model_copy(update={"daemon": True}) if isinstance(reply, Reply) else reply

    def audit(self) -> list[ScheduleProblem]:
        """Check the schedules now, not at night (unknown programs and massagers,
        starts the cooldown or the night limit would refuse), and log what is found."""
        try:
            # The massagers held (with --simulate, not the config's) are what a
            # schedule's device may name: its name, its address, its profile id.
            held = {key: h.device_id for h in self.owner.held
                    for key in (h.name, h.device_id, h.spec.profile.id)}
            problems = audit_config(self.config, self._wall(), self.program_dir, held=held)
        except (FootctlError, OSError, ValueError) as exc:
            _LOG.warning("schedules not checked: %s", exc)
            return []
        for problem in problems:
            if problem.error:
                _LOG.error("%s; this schedule will not start", problem)
            else:
                _LOG.warning("%s", problem)
        return problems

    # --- the scheduler -------------------------------------------------------------

    async def _scheduler_loop(self) -> None:
        while True:
            try:
                await self.check_schedules()
            except Exception:
                _LOG.exception("scheduler pass failed")
            await asyncio.sleep(SCHEDULER_TICK_S)

    def device_for(self, wanted: str | None) -> Held | None:
        """The massager ``wanted`` names (the first one when None)."""
        if wanted is None:
            return self.owner.held[0]
        try:
            return self.owner.pick(wanted)
        except FootctlError:
            return None

    async def check_schedules(self) -> list[ProgramRunner]:
        """One scheduler pass at the wall clock's now: record skipped starts, start
        what is due. Returns the runners started."""
        now = self._wall()
        started: list[ProgramRunner] = []
        for item in self.scheduler.check(now):
            held = self.device_for(item.schedule.device)
            key = journal_key(held) if held else item.schedule.device or "unknown"
            grace = item.schedule.missed_start_grace_minutes
            for missed in item.decision.skipped:
                late = (now - missed).total_seconds() / 60
                note = f"missed start: {late:.0f} min late (grace {grace:g} min)"
                self._not_run(item, key, "skipped", missed, note)
            if item.decision.action == "start":
                runner = await self._scheduled_start(item, held, key)
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
        self, item: Due, held: Held | None, key: str
    ) -> ProgramRunner | None:
        """Ask the owner to run the schedule's program, as any source does (a
        ``run`` request with source ``schedule``: unattended, the schedule's zone);
        a refusal or an unreachable massager is journaled from the error reply."""
        at = item.decision.scheduled
        if held is None:
            self._not_run(item, key, "refused", at, f"no massager named {item.schedule.device!r}")
            return None
        try:
            request = parse_request({
                "kind": "run", "source": "schedule", "device": held.device_id,
                "program": item.schedule.program,
                **({"tz": item.schedule.tz} if item.schedule.tz else {}),
            })
        except FootctlError as exc:
            self._not_run(item, key, "refused", at, str(exc))
            return None
        _LOG.info("schedule %s (%s): due at %s; starting it on %s (unattended)",
                  item.index, item.schedule.program, _local(at), held.name)
        reply = await self.owner.request(request)
        if isinstance(reply, Reply):
            _LOG.info("schedule %s (%s): started on %s", item.index, item.schedule.program,
                      held.name)
            self.owner.spawn(self._log_end(item, held), f"footctl[{held.name}].schedule-end")
            return held.runner
        reason, note = not_run_of(reply)
        self._not_run(item, key, reason, at, note)
        return None

    async def _log_end(self, item: Due, held: Held) -> None:
        """Log how a scheduled program ended (journald then shows why the massager
        went off, as it shows why it came on)."""
        result = await self.owner.wait_program(held)
        if result is None:
            _LOG.info("schedule %s (%s): ended on %s", item.index, item.schedule.program,
                      held.name)
            return
        _LOG.info("schedule %s (%s): ended on %s: %s after %d of %d step(s), %.1f min",
                  item.index, item.schedule.program, held.name, result.end_reason,
                  result.steps_run, result.steps, result.elapsed_s / 60)

    def schedules(self) -> tuple[ScheduleView, ...]:
        """The schedules, their next starts and when each was last checked."""
        now = self._wall()
        zone = local_zone()
        rows = []
        for index, s in enumerate(self.scheduler.schedules):
            nxt = upcoming([s], now, 1)
            last = self.scheduler.last_checked.get(schedule_key(index, s))
            rows.append(ScheduleView(
                index=index, description=describe(s), program=s.program, device=s.device,
                next_at=nxt[0].at.isoformat() if nxt else None,
                next_local=str(nxt[0].to_dict(zone)["local"]) if nxt else None,
                last_checked=last.isoformat() if last else None,
            ))
        return tuple(rows)


def _local(at: datetime | None) -> str:
    """A start time for the log, in the local zone (what the user wrote schedules in)."""
    return "now" if at is None else f"{at.astimezone(local_zone()):%a %Y-%m-%d %H:%M %Z}"


def not_run_of(reply: ErrorReply) -> tuple[str, str]:
    """How the journal records a scheduled start the owner answered with ``reply``:
    ``skipped`` if the massager could not be reached, else ``refused``; and the note
    (the governor's reason first, as ``cooldown: ...``)."""
    message = reply.message + (f" ({reply.advice})" if reply.advice else "")
    if reply.exit_code == ExitCode.UNREACHABLE:
        return "skipped", f"massager unreachable: {message}"
    return "refused", f"{reply.reason}: {message}" if reply.reason else message
