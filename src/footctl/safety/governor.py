"""The SafetyGovernor: the one path from every command source to a DeviceSession.

It turns a :class:`Request` into a :class:`Target` within the effective limits
(refusing or clamping with a reason), runs the heat and session timers on the
monotonic clock, and owns the fail-safe actions: heat off when the heat cap
expires, everything off when the session cap expires, on shutdown, and when a
link comes back after a cap expired while the device was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from footctl.errors import FootctlError, SafetyRefused, UsageError
from footctl.profile.schema import Profile
from footctl.safety.limits import Limits
from footctl.session import DeviceSession, Target
from footctl.state import DeviceState

_LOG = logging.getLogger(__name__)

# How often the watchdog looks at the timers. Caps are minutes long; a second of
# slack is far below any cap and keeps the loop cheap.
WATCH_INTERVAL_S = 0.5

# The everything-off write on shutdown gets its own budget, so a hung link cannot
# keep the process (and the heat) alive.
SHUTDOWN_OFF_TIMEOUT_S = 5.0

SOURCES = ("cli", "tui", "mqtt", "schedule", "program", "daemon")


@dataclass(frozen=True)
class Request:
    """What a command source asks for. ``None`` leaves a field as it is."""

    source: str = "cli"
    power: bool | None = None
    intensity: int | None = None
    heat: int | None = None
    mode: str | None = None
    zone: int | None = None

    @property
    def is_off(self) -> bool:
        """True if this asks to switch off."""
        return self.power is False


@dataclass(frozen=True)
class Decision:
    """The approved target and any notes on what was clamped."""

    target: Target
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timers:
    """Seconds left on each running cap (``None`` when not running)."""

    session_left_s: float | None
    heat_left_s: float | None

    def to_dict(self) -> dict[str, float | None]:
        """A JSON-ready view."""
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 1)

        return {"session_left_s": r(self.session_left_s), "heat_left_s": r(self.heat_left_s)}


class SafetyGovernor:
    """Caps, timers and fail-safes for one device."""

    def __init__(
        self,
        session: DeviceSession,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.profile: Profile = session.profile
        self.limits = limits
        self._clock = clock
        self.desired = Target(running=False)
        self._session_started: float | None = None
        self._heat_started: float | None = None
        self._heat_locked = False
        self._pending_off = False
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.events: list[tuple[float, str]] = []
        self._unsubscribe = session.register_callback(self._observe)
        self._unlink = session.register_link_callback(self._link_changed)
        self._tasks: set[asyncio.Task[None]] = set()

    # --- deciding ------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        """The target for ``request`` within the limits; raises SafetyRefused or
        UsageError with the reason."""
        if request.is_off:
            return Decision(Target(running=False))
        caps = self.profile.capabilities
        lim = self.limits
        notes: list[str] = []
        base = self.desired if self.desired.running else Target(running=True)

        intensity = request.intensity
        if intensity is not None:
            if intensity < lim.intensity_min:
                raise SafetyRefused(
                    "intensity_out_of_range",
                    f"intensity {intensity} is below this massager's minimum {lim.intensity_min}",
                )
            if intensity > lim.intensity_max:
                why = (
                    f"this massager's range ends at {caps.intensity.max}"
                    if lim.intensity_max == caps.intensity.max
                    else f"your cap is {lim.intensity_max}"
                )
                if not lim.clamp or intensity > caps.intensity.max:
                    raise SafetyRefused(
                        "intensity_above_cap",
                        f"intensity {intensity} refused: {why}",
                        advice=f"ask for {lim.intensity_max} or less",
                    )
                notes.append(f"intensity {intensity} clamped to {lim.intensity_max} ({why})")
                intensity = lim.intensity_max

        heat = request.heat
        if heat is not None and heat > 0:
            if lim.no_heat:
                raise SafetyRefused(
                    "no_heat",
                    "heat refused: the no_heat medical setting forbids heat from every source",
                )
            if heat > caps.max_heat_level:
                raise SafetyRefused(
                    "heat_out_of_range",
                    f"heat {heat} refused: this massager's heat levels are 0-{caps.max_heat_level}",
                )
            if self._heat_locked:
                raise SafetyRefused(
                    "heat_cap_reached",
                    f"heat refused: heat already ran for its cap of "
                    f"{lim.heat_s / 60:g} min in this session",
                    advice="let the feet cool down and start a new session later",
                )
            if heat > lim.heat_max:
                if not lim.clamp or lim.heat_max == 0:
                    raise SafetyRefused(
                        "heat_above_cap",
                        f"heat {heat} refused: {lim.heat_max_reason}",
                        advice=f"ask for heat {lim.heat_max} or less" if lim.heat_max else None,
                    )
                notes.append(f"heat {heat} clamped to {lim.heat_max} ({lim.heat_max_reason})")
                heat = lim.heat_max

        mode = request.mode
        if mode is not None and caps.mode_named(mode) is None:
            names = ", ".join(m.name for m in caps.modes)
            raise UsageError(f"no mode {mode!r} on {self.profile.id}", advice=f"modes: {names}")
        zone = request.zone
        if zone is not None and (caps.zones is None or zone not in caps.zones):
            raise UsageError(
                f"zone {zone} is not available on {self.profile.id}",
                advice=(
                    f"zones: {caps.zones.min}-{caps.zones.max}"
                    if caps.zones
                    else "this massager has no zones"
                ),
            )

        target = Target(
            running=True,
            intensity=intensity if intensity is not None else base.intensity,
            heat=heat if heat is not None else base.heat,
            mode=mode if mode is not None else base.mode,
            zone=zone if zone is not None else base.zone,
        )
        return Decision(target, tuple(notes))

    # --- acting ----------------------------------------------------------------

    async def submit(self, request: Request) -> tuple[DeviceState, Decision]:
        """Decide, then drive the device and wait for its confirmation."""
        if request.is_off:
            return await self.stop(source=request.source), Decision(Target(running=False))
        decision = self.decide(request)
        if self.ended.is_set() or self._session_started is None:  # a new session
            self.ended.clear()
            self.end_reason = None
        self.desired = decision.target
        now = self._clock()
        if self._session_started is None:
            self._session_started = now
        if decision.target.heat and self._heat_started is None:
            self._heat_started = now
        if not decision.target.heat:
            self._heat_started = None
        self._log(f"{request.source}: {decision.target}")
        # On failure the desired state stays: it is within the caps, and a returning
        # link re-asserts it (or sends off, if a cap expired meanwhile).
        state = await self.session.apply(decision.target)
        return state, decision

    async def stop(self, *, source: str = "cli", reason: str = "stopped") -> DeviceState:
        """Everything off. Never deduplicated, never rate-limited."""
        self.desired = Target(running=False)
        # Recorded before writing: the device's confirmation may end the session first.
        if self.end_reason is None:
            self.end_reason = reason
        self._log(f"{source}: stop ({reason})")
        try:
            state = await self.session.all_off()
        except FootctlError:
            self._pending_off = True
            raise
        self._pending_off = False
        self._end(reason)
        return state

    def _end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self._session_started = None
        self._heat_started = None
        self._heat_locked = False
        self.ended.set()

    def _log(self, message: str) -> None:
        self.events.append((self._clock(), message))
        _LOG.info("governor[%s]: %s", self.profile.id, message)

    # --- timers ------------------------------------------------------------------

    def timers(self) -> Timers:
        """Seconds left on the session and heat caps."""
        now = self._clock()
        session = heat = None
        if self._session_started is not None:
            session = max(0.0, self._session_started + self.limits.session_s - now)
        if self._heat_started is not None:
            heat = max(0.0, self._heat_started + self.limits.heat_s - now)
        return Timers(session, heat)

    def _observe(self, state: DeviceState) -> None:
        """Start timers for what the device reports even if we did not ask for it."""
        now = self._clock()
        if state.running and self._session_started is None and not self.ended.is_set():
            self._session_started = now
            self._log("device reports running: session timer started")
        if state.heat and self._heat_started is None and not self.ended.is_set():
            self._heat_started = now
            self._log("device reports heat: heat timer started")
        if not state.heat and not state.assumed and not self.desired.heat:
            self._heat_started = None
        if (
            not state.running
            and not state.assumed
            and self._session_started is not None
            and not self.desired.running
        ):
            self._end(self.end_reason or "stopped")

    def _link_changed(self, connected: bool) -> None:
        if not connected:
            self._log("link lost; caps keep counting")
            return
        task = asyncio.get_running_loop().create_task(
            self._after_reconnect(), name=f"footctl[{self.session.state.address}].reassert"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_reconnect(self) -> None:
        expired = self._expired()
        if self._pending_off or expired:
            reason = "cap_expired_while_away" if expired else self.end_reason or "stopped"
            self._log(f"link back: sending everything off first ({reason})")
            with contextlib.suppress(FootctlError):
                await self.stop(source="governor", reason=reason)
            return
        if self.desired.running:
            self._log("link back in time: re-asserting the desired state")
            with contextlib.suppress(FootctlError):
                await self.session.apply(self.desired)

    def _expired(self) -> str | None:
        t = self.timers()
        if t.session_left_s is not None and t.session_left_s <= 0:
            return "session_cap"
        if t.heat_left_s is not None and t.heat_left_s <= 0:
            return "heat_cap"
        return None

    async def enforce(self) -> None:
        """Act on expired caps now: heat off at the heat cap, everything off at the
        session cap. While the link is down the off is owed and sent on return."""
        expired = self._expired()
        if expired is None:
            return
        if not self.session.connected:
            self._pending_off = True
            return
        if expired == "session_cap":
            self._log("session cap reached: everything off")
            self.end_reason = "session_cap"
            await self.stop(source="governor", reason="session_cap")
            return
        self._log("heat cap reached: heat off")
        self._heat_locked = True
        self._heat_started = None
        self.desired = dataclasses.replace(self.desired, heat=0)
        try:
            await self.session.apply(self.desired)
        except FootctlError:
            await self.stop(source="governor", reason="heat_cap")

    async def watch(self) -> None:
        """Enforce the caps until the session ends (run as a named task)."""
        while True:
            try:
                await self.enforce()
            except FootctlError as exc:
                _LOG.warning("enforcing caps: %s (retrying)", exc)
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def shutdown(self, reason: str = "shutdown") -> None:
        """Everything off under its own timeout; used in ``finally`` on every exit path."""
        for task in list(self._tasks):
            task.cancel()
        if not self.session.connected:
            return
        try:
            async with asyncio.timeout(SHUTDOWN_OFF_TIMEOUT_S):
                await self.stop(source="governor", reason=reason)
        except (FootctlError, TimeoutError) as exc:
            _LOG.error("could not confirm everything off on %s: %s", reason, exc)
        finally:
            self._unsubscribe()
            self._unlink()
