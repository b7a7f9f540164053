"""Run a program through the safety governor, following its timeline.

The runner is one more command source: every setpoint of :func:`expand` becomes a
:class:`Request` (``source="program"``, or ``"schedule"`` for an unattended start),
so the governor's caps, ramp, heat rules and fail-safes apply as to any other
source. Before the first write, :func:`assess` says which steps the caps would clamp
and which they refuse; a refused program does not start.

Pulse pauses. A timeline setpoint with ``running=False`` (the off phase of a pulse)
is NOT a stop: on most massagers power-off also cuts heat and resets the mode, and for
the governor a stop ends the session (and its journal row). A pause therefore runs
the rollers at the device's lowest intensity (0 where the device has it, otherwise
its gentlest level), with heat and mode unchanged. Coming back from a pause the
governor's ramp applies as always (one level per ``intensity_step_seconds``), so a
pulse is a swell rather than a hammer.

Whatever happens - the program ends, is cancelled (Ctrl-C, ``footctl stop``), or
fails - the runner sends everything off in ``finally``, under its own timeout.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Literal

from footctl.control.api import RunView
from footctl.device.profile.schema import Profile
from footctl.errors import FootctlError, SafetyRefused
from footctl.programs.check import check_against_limits
from footctl.programs.intent import resolve
from footctl.programs.model import Program
from footctl.programs.timeline import TimedSetpoint, expand
from footctl.safety.decide import Request
from footctl.safety.governor import SHUTDOWN_OFF_TIMEOUT_S, SafetyGovernor
from footctl.safety.limits import Limits

_LOG = logging.getLogger(__name__)

# Progress is reported, and the heartbeat renewed, at least this often. A second is
# fine-grained for a display counting down minutes and far inside the 60 s heartbeat.
PROGRESS_INTERVAL_S = 1.0

# A link that stays down this long mid-program ends the program: the steps it would
# have run are gone, and the governor owes the everything-off for when it returns.
LINK_LOST_GIVE_UP_S = 60.0

INTENSITY_FIELDS = ("intensity", "ramp.to_intensity", "ramp.from_intensity")


# --- before the start: what the caps will do to each step ----------------------------


@dataclass(frozen=True)
class Finding:
    """One step (1-based; None: the whole program) the caps clamp or refuse."""

    step: int | None
    field: str
    action: Literal["clamped", "refused", "adapted"]
    reason: str

    def __str__(self) -> str:
        where = f"step {self.step}" if self.step is not None else "program"
        return f"{where}: {self.action}: {self.reason}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return asdict(self)


@dataclass(frozen=True)
class Assessment:
    """What the caps do to a program on one device, before it starts."""

    program: str
    findings: tuple[Finding, ...]
    resolved: Program | None = None  # the program as it runs on this device

    @property
    def refused(self) -> list[Finding]:
        """Findings that keep the program from starting."""
        return [f for f in self.findings if f.action == "refused"]

    @property
    def clamped(self) -> list[Finding]:
        """Findings the governor will lower, with the reason."""
        return [f for f in self.findings if f.action == "clamped"]

    def raise_if_refused(self) -> None:
        """Raise SafetyRefused listing every refused step."""
        if self.refused:
            raise SafetyRefused(
                "program_refused",
                f"program {self.program!r} refused: " + "; ".join(map(str, self.refused)),
                advice="'footctl program check' shows every step; lower the step, or your "
                "caps allow it",
            )


def assess(
    program: Program,
    profile: Profile,
    limits: Limits,
    *,
    unattended: bool = False,
    completed_nights: int = 0,
) -> Assessment:
    """Every step of ``program`` that the caps of ``limits`` on ``profile`` clamp or
    refuse, decided as the governor would (clamping only where ``limits.clamp``
    allows it). Unattended heat above the unattended level is lowered, never refused.
    A program longer than the session cap, or heated past the heat cap, is refused:
    the governor would end it half-way.

    The program is first made concrete for the device (:func:`resolve`: mode families
    and relative intensities); each change is an ``adapted`` finding, and a step the
    device has no mode for is refused with the modes and families it has."""
    caps = profile.capabilities
    resolution = resolve(program, profile)
    asked = program
    program = resolution.program
    problems = check_against_limits(
        program,
        max_intensity=limits.intensity_max,
        max_heat=limits.heat_max,
        max_session_s=limits.session_s,
        no_heat=limits.no_heat,
        max_heat_s=limits.heat_s,
        heat_weights=limits.heat_weights,
        modes={m.name for m in caps.modes},
        completed_nights=completed_nights,
    )
    findings: list[Finding] = []
    for p in problems:
        text = str(p).split(": ", 1)[1]
        if (
            p.field in INTENSITY_FIELDS
            and limits.clamp
            and isinstance(p.asked, int)
            and p.asked <= caps.intensity.max
        ):
            findings.append(
                Finding(p.step, p.field, "clamped", f"{text}; runs at {limits.intensity_max}")
            )
        elif (
            p.field == "heat"
            and isinstance(p.asked, int)
            and not limits.no_heat
            and limits.clamp
            and limits.heat_max > 0
            and p.asked <= caps.max_heat_level
        ):
            findings.append(
                Finding(p.step, "heat", "clamped", f"{text}; runs at heat {limits.heat_max}")
            )
        elif p.field == "mode":
            why = next(
                (a.reason for a in resolution.unplayable if a.step == p.step),
                f"{profile.id} has no mode {p.asked!r} (modes: {p.cap})",
            )
            findings.append(Finding(p.step, "mode", "refused", why))
        elif p.field == "heat" and caps.max_heat_level == 0 and not limits.no_heat:
            findings.append(Finding(p.step, "heat", "refused",
                                    f"asks heat {p.asked}; {profile.id} has no heater"))
        else:
            findings.append(Finding(p.step, p.field, "refused", text))
    flagged = {(f.step, f.field) for f in findings}
    for number, step in enumerate(program.steps, start=1):
        low = step.intensity if step.ramp is None else min(step.ramp.levels)
        if low is not None and low < limits.intensity_min:
            findings.append(
                Finding(
                    number, "intensity", "refused",
                    f"asks {low}, below this massager's minimum {limits.intensity_min}",
                )
            )
        if step.zone is not None and (caps.zones is None or step.zone not in caps.zones):
            findings.append(
                Finding(number, "zone", "refused", f"zone {step.zone} is not on {profile.id}")
            )
        heat = min(step.heat, limits.heat_max) if limits.clamp else step.heat
        if (
            unattended
            and (number, "heat") not in flagged
            and heat > 0
            and heat > limits.unattended_heat_level
        ):
            findings.append(
                Finding(
                    number, "heat", "clamped",
                    f"heat {heat} lowered to {limits.unattended_heat_level}: a scheduled "
                    "program may run while you are asleep",
                )
            )
    findings += [
        Finding(a.step, a.field, "adapted", a.reason) for a in resolution.adaptations if a.ok
    ]
    findings.sort(key=lambda f: (f.step or 0, f.field))
    return Assessment(asked.name, tuple(findings), program)


# --- while it runs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a running program is. ``step`` is 1-based (None once it is over)."""

    program: str
    step: int | None
    steps: int
    step_name: str
    elapsed_s: float
    total_s: float
    step_left_s: float
    paused: bool

    @property
    def left_s(self) -> float:
        """Seconds until the program ends."""
        return max(0.0, self.total_s - self.elapsed_s)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        out = asdict(self)
        for key in ("elapsed_s", "total_s", "step_left_s"):
            out[key] = round(out[key], 1)
        out["left_s"] = round(self.left_s, 1)
        return out


class RunResult(RunView):
    """How a run ended: ``end_reason`` is ``completed`` or the governor's reason.

    The fields are the control API's :class:`~footctl.control.api.RunView` (one
    definition); this adds what the runner's callers ask of a result."""

    @property
    def completed(self) -> bool:
        """True if every step ran."""
        return self.end_reason == "completed"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        out: dict[str, object] = self.model_dump()
        out["completed"] = self.completed
        out["elapsed_s"] = round(self.elapsed_s, 1)
        return out


class ProgramRunner:
    """Follows one program's timeline through ``governor``.

    ``source`` defaults to ``"schedule"`` for an ``unattended`` run, else ``"program"``.
    ``clock``/``sleep`` are injectable so a test runs a 15-minute program in moments.
    """

    def __init__(
        self,
        governor: SafetyGovernor,
        program: Program,
        *,
        completed_nights: int = 0,
        unattended: bool = False,
        source: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.governor = governor
        self.asked = program
        # The program as it runs on this massager: modes by family, relative intensities.
        program = resolve(program, governor.profile).program
        self.program = program
        self.unattended = unattended
        self.source = source or ("schedule" if unattended else "program")
        self.completed_nights = completed_nights
        self._clock = clock
        self._sleep = sleep
        self._on_progress = on_progress or (lambda _p: None)
        self.timeline = expand(program, completed_nights)
        self._offsets = [s.offset_s for s in self.timeline]
        self.assessment = assess(
            self.asked,
            governor.profile,
            governor.limits,
            unattended=unattended,
            completed_nights=completed_nights,
        )
        self.steps_run = 0
        self.notes: list[str] = [str(f) for f in self.assessment.clamped]
        first = program.steps[0]
        # Until the first setpoint: about to start step 1 (a status asked between the
        # start and the first write sees the program, not nothing).
        self.progress: Progress | None = Progress(
            program.name, 1, len(program.steps), first.label, 0.0, program.duration_s,
            first.duration_s, False,
        )
        self.result: RunResult | None = None
        #: Clock time of the program's offset 0 (set when :meth:`run` starts).
        self.started_at: float | None = None
        self._heat_off = False
        self._link_down_since: float | None = None
        # True once our first request started the governed session: from then on an
        # ended governor session means this run was ended (cap, fault, stop).
        self._live = False

    async def run(self) -> RunResult:
        """Run the program to its end (or until stopped); everything off afterwards."""
        self.assessment.raise_if_refused()
        reason = "error"
        self.started_at = t0 = self._clock()
        try:
            reason = await self._follow(t0)
        except asyncio.CancelledError:
            reason = "stopped"
            raise
        finally:
            await self._stop(reason)
            self.result = self._result(reason)
        return self.result

    def _result(self, reason: str) -> RunResult:
        ended = self.governor.end_reason if self._live and reason != "completed" else None
        elapsed = self._clock() - (self.started_at or self._clock())
        return RunResult(
            program=self.program.name,
            source=self.source,
            end_reason=ended or reason,
            steps_run=self.steps_run,
            steps=len(self.program.steps),
            elapsed_s=float(elapsed),
            notes=tuple(self.notes),
        )

    async def _stop(self, reason: str) -> None:
        try:
            async with asyncio.timeout(SHUTDOWN_OFF_TIMEOUT_S):
                await self.governor.stop(source=self.source, reason=reason)
        except (FootctlError, TimeoutError) as exc:
            # The governor keeps the off owed and sends it when the link is back.
            _LOG.error("program %s: everything off not confirmed: %s", self.program.name, exc)

    def _emit(self, index: int, offset: float) -> None:
        setpoint = self.timeline[index]
        total = self.program.duration_s
        if setpoint.step is None:
            progress = Progress(self.program.name, None, len(self.program.steps), "done",
                                total, total, 0.0, False)
        else:
            step_end = sum(s.duration_s for s in self.program.steps[: setpoint.step])
            progress = Progress(
                self.program.name,
                setpoint.step,
                len(self.program.steps),
                self.program.steps[setpoint.step - 1].label,
                min(offset, total),
                total,
                max(0.0, step_end - offset),
                not setpoint.running,
            )
        self.progress = progress
        try:
            self._on_progress(progress)
        except Exception:
            _LOG.exception("program progress callback failed")

    async def _follow(self, t0: float) -> str:
        index = -1
        while True:
            offset = self._clock() - t0
            current = max(0, bisect.bisect_right(self._offsets, offset) - 1)
            if current != index:
                index = current
                setpoint = self.timeline[index]
                self._emit(index, offset)
                if setpoint.step is None:
                    return "completed"
                if self._live and self.governor.ended.is_set():
                    return self.governor.end_reason or "stopped"
                await self._apply(setpoint)
                self._live = True
                self.steps_run = max(self.steps_run, setpoint.step)
            if self._live and self.governor.ended.is_set():
                return self.governor.end_reason or "stopped"
            lost = self._link_lost_for()
            if lost is not None and lost > LINK_LOST_GIVE_UP_S:
                self.notes.append(f"link lost for {lost:.0f} s at step {self.steps_run}")
                return "link_lost"
            self.governor.heartbeat()
            self._emit(index, self._clock() - t0)
            wait = min(self._offsets[index + 1] - (self._clock() - t0), PROGRESS_INTERVAL_S)
            if wait > 0:
                await self._sleep(wait)

    def _link_lost_for(self) -> float | None:
        if self.governor.session.connected:
            self._link_down_since = None
            return None
        if self._link_down_since is None:
            self._link_down_since = self._clock()
        return self._clock() - self._link_down_since

    def _request(self, setpoint: TimedSetpoint) -> Request:
        intensity = setpoint.intensity if setpoint.running else self.governor.limits.intensity_min
        return Request(
            source=self.source,
            power=True,
            intensity=intensity,
            heat=0 if self._heat_off else setpoint.heat,
            mode=setpoint.mode,
            zone=setpoint.zone,
            unattended=self.unattended,
        )

    async def _apply(self, setpoint: TimedSetpoint) -> None:
        request = self._request(setpoint)
        try:
            await self.governor.submit(request)
        except SafetyRefused as exc:
            if exc.reason == "heat_cap_reached" and request.heat:
                # Heat already ran for its cap: the program goes on without heat.
                self._heat_off = True
                self.notes.append(f"step {setpoint.step}: heat off for the rest: {exc.message}")
                await self.governor.submit(self._request(setpoint))
            elif not (self._live and self.governor.ended.is_set()):
                raise  # (a stop that overtook this request ended the run: not an error)
        except FootctlError as exc:
            if self.governor.session.connected:
                raise
            # Link trouble: the governor keeps the desired state and re-asserts it when
            # the link is back (or sends everything off, if a cap expired meanwhile).
            self.notes.append(f"step {setpoint.step}: not confirmed ({exc}); link down")
            _LOG.warning("program %s step %s: %s", self.program.name, setpoint.step, exc)
