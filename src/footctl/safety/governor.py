"""The SafetyGovernor: the one path from every command source to a DeviceSession.

It turns a :class:`Request` into a :class:`Target` within the effective limits
(refusing or clamping with a reason), raises intensity no faster than the ramp,
coalesces floods, runs the heat and session timers on the monotonic clock, and
owns the fail-safe actions: heat off when the heat cap expires or the device
reports heat it was not asked for or a temperature above the cap; everything off
when the session cap expires, when a controller heartbeat or a remote lease is
missed, on shutdown, and when a link comes back after a cap expired while away.

Leases: a remote source (MQTT, the TUI on a daemon) holds a running session with a
lease it renews; if it stops renewing, everything goes off (the dead man). A lease
guards a running session only: one that ran out while nothing ran is dropped when
the next session starts, the end of a session clears them all, and a source that
leaves on purpose releases its lease (:meth:`SafetyGovernor.release`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from footctl.device.session import DeviceSession, Target
from footctl.errors import ConfirmTimeout, FootctlError, SafetyRefused
from footctl.safety.decide import Decision, Request, decide
from footctl.safety.dose import HeatDose, level_weight
from footctl.safety.limits import Limits, cooldown_left_s, cooldown_words
from footctl.safety.markers import MarkerStore
from footctl.state import DeviceState

_LOG = logging.getLogger(__name__)

# How often the watchdog looks at the timers. Caps are minutes long; half a second
# of slack is far below any cap and keeps the loop cheap.
WATCH_INTERVAL_S = 0.5

# The everything-off write on shutdown gets its own budget, so a hung link cannot
# keep the process (and the heat) alive.
SHUTDOWN_OFF_TIMEOUT_S = 5.0

# A reported temperature this far above the cap is a fault, not sensor noise.
OVERTEMP_MARGIN_C = 1.0

# After we lower heat, the device may report the old level for a moment.
HEAT_SETTLE_S = 2.0

# After our own stop is confirmed, a device's notifications of earlier writes may still
# trail in (a confirmation by write response comes before them), reporting it running,
# even with heat. Within this long of a confirmed stop, such a report gets the off
# written again instead of starting a session of its own (which journaled a phantom
# "own button" session after every stop of a running program): if it was an echo the
# off changes nothing, if the device really came on the off ends it. A report of
# running after that re-sent off starts a supervised session as usual.
ECHO_WINDOW_S = 2.0

# How long a request waits, its link back, for the governor to look at the returned
# massager (the session's reconnect query and its report come first) before it gives up
# unwritten: the confirmation budget of one write.
RETURN_LOOK_TIMEOUT_S = 5.0

# The governor's last decisions, kept for diagnostics only (the log has them all; a
# test's failure report shows these): a list grew by every request and limit for as long
# as the daemon ran. A night's session logs a few dozen.
EVENTS_KEPT = 256

# The controller's own heartbeat source name.
CONTROLLER = "controller"

# Limits that switch everything off (the heat cap only switches heat off), in the order
# their reason is reported when several ran out together.
EVERYTHING_OFF = ("session_cap", "heartbeat_missed")

# Every governor alive in this process: the loop-stall watchdog switches them all off
# before it ends a stalled process (safety/watchdog.py).
_LIVE: weakref.WeakSet[SafetyGovernor] = weakref.WeakSet()


def live_governors() -> list[SafetyGovernor]:
    """The governors alive in this process."""
    return list(_LIVE)

__all__ = [
    "CONTROLLER",
    "Decision",
    "Request",
    "SafetyGovernor",
    "SessionHooks",
    "Timers",
    "live_governors",
]


class SessionHooks(Protocol):
    """Told when a governed session starts and ends (the journal implements this)."""

    def session_started(self, governor: SafetyGovernor, source: str) -> None:
        """A session started (first request that switched the device on)."""

    def session_ended(self, governor: SafetyGovernor, reason: str) -> None:
        """The session ended; ``governor.peak_heat`` and ``heat_seconds`` are final."""


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
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        markers: MarkerStore | None = None,
        on_progress: Callable[[str], None] | None = None,
        last_session_end: Callable[[str], float | None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        # Cooldown spans processes, so it needs a record (the journal) and the wall clock.
        self._last_session_end = last_session_end
        self._wall = wall_clock
        self.profile = session.profile
        # On a real radio, what a config could loosen stays within the design's floors
        # and ceilings (the ramp, the cooldown, the heartbeat); the virtual massager
        # may run faster for tests and demos.
        self.limits = limits if session.radio.virtual else limits.with_floors()
        self._clock = clock
        self._sleep = sleep
        self._markers = markers
        self._progress = on_progress or (lambda _m: None)
        self.desired = Target(running=False)
        self._session_started: float | None = None
        # The heat dose (safety/dose.py): it outlives a session; only a cool-down resets it.
        self._dose = HeatDose()
        self._heat_on_since: float | None = None  # heat seconds of this session (journal)
        self._heat_lowered_at: float | None = None
        self._last_raise_at: float | None = None
        self._heat_locked = False
        self._pending_off = False
        self._limit_stops = 0  # governor stops (caps, dead man, faults) being written
        # A stop of ours was confirmed at this time; and how far the off written again
        # after a report of running since has got (see ECHO_WINDOW_S): None (not
        # needed yet), "sending" (reports until it is confirmed are older), "sent".
        self._stopped_at: float | None = None
        self._echo: str | None = None
        self._recovery_owed = False
        # The device has reported running in this session, with the link up since.
        self._seen_running = False
        self._generation = 0
        self._submit_lock = asyncio.Lock()
        self._leases: dict[str, tuple[float, float]] = {}  # source -> (renewed at, seconds)
        self._lost_at: float | None = None
        self._ended_mono: float | None = None  # the last session's end seen here
        # Set unless the link dropped and its return has not been looked at yet
        # (_after_reconnect): until then nothing of a request is written (see submit and
        # _ramp_to).
        self._return_seen = asyncio.Event()
        self._return_seen.set()
        self.fault: str | None = None
        # A flagged fault is acted on once; it latches until the device reports a clean
        # heater again, then a new fault is flagged anew (it stayed latched forever, and a
        # massager that later heated on its own was ignored).
        self._fault_latched = False
        self._reported_running = False  # as last reported (not assumed), for the above
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.events: collections.deque[tuple[float, str]] = collections.deque(maxlen=EVENTS_KEPT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._hooks: list[SessionHooks] = []
        self.source: str | None = None
        self.peak_heat = 0
        self.heat_seconds = 0.0
        self._unsubscribe = session.register_callback(self._observe)
        self._unlink = session.register_link_callback(self._link_changed)
        _LIVE.add(self)

    # --- deciding ------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        """The target for ``request`` within the limits; raises SafetyRefused or
        UsageError with the reason. Pure: nothing is written."""
        heat_locked = self._heat_locked or self._dose.is_locked(self._clock())
        return decide(self.profile, self.limits, self.desired, request, heat_locked)

    def monotonic(self) -> float:
        """Now, on the monotonic clock every cap runs on (the journal measures a
        session's length with it)."""
        return self._clock()

    # --- session hooks (the journal listens here) -----------------------------------

    def add_hooks(self, hooks: SessionHooks) -> Callable[[], None]:
        """Be told when a session starts and ends; returns the unsubscribe function."""
        self._hooks.append(hooks)
        return lambda: self._hooks.remove(hooks)

    def _heat_level(self) -> int:
        """The heat level to count: the higher of what is asked and what the device
        reports (or is believed to run: while the link is down, the last known)."""
        return max(self.desired.heat or 0, self.session.state.heat)

    def _update_heat(self, now: float) -> None:
        """Follow the heat level in the dose and in this session's heat seconds."""
        level = self._heat_level()
        self._dose = self._dose.heating(now, level_weight(self.limits.heat_weights, level))
        if level and self._heat_on_since is None:
            self._heat_on_since = now
        elif not level and self._heat_on_since is not None:
            self.heat_seconds += max(0.0, now - self._heat_on_since)
            self._heat_on_since = None

    def session_heat_seconds(self) -> float:
        """Seconds of heat in this session so far, the heat that is on now included
        (``heat_seconds`` counts heat already switched off)."""
        if self._heat_on_since is None:
            return self.heat_seconds
        return self.heat_seconds + max(0.0, self._clock() - self._heat_on_since)

    @property
    def dose(self) -> HeatDose:
        """The heat dose so far (see safety/dose.py)."""
        return self._dose

    # --- heartbeat and leases ----------------------------------------------------

    def heartbeat(self, source: str = CONTROLLER) -> None:
        """The controlling loop is alive (call at least every ``heartbeat_s``)."""
        self._leases[source] = (self._clock(), self.limits.heartbeat_s)

    def lease(self, source: str, seconds: float | None = None) -> None:
        """A remote source (MQTT, a daemon client) renews its hold on the session for
        ``seconds`` (None: the heartbeat's length). See :meth:`release` for the rules."""
        self._leases[source] = (self._clock(), seconds or self.limits.heartbeat_s)

    def release(self, source: str) -> None:
        """``source`` hands its hold back: the session goes on under the caps and the
        controller's heartbeat, and no longer ends when that source stops renewing.

        What a lease guards: the session running now, or the next one if the lease is
        still live when it starts; nothing idle. So a lease already run out when a
        session starts (by a request or by the massager's own button) is dropped then:
        it guarded nothing (it used to switch the next session off at once as
        ``heartbeat_missed``, whoever started it; reported by the MQTT and TUI work).
        A live one goes on guarding the new session, and the end of a session clears
        every lease. A source that stops renewing a live lease (it died, hung, lost its
        broker) is the dead man: everything off. A source that leaves on purpose (the
        TUI's quit from a daemon, the MQTT bridge's clean shutdown) releases."""
        self._leases.pop(source, None)

    def lease_left_s(self) -> float | None:
        """Seconds before the soonest remote lease runs out (the controller's own
        heartbeat aside); None while no source holds one."""
        now = self._clock()
        left = [renewed + seconds - now for source, (renewed, seconds) in self._leases.items()
                if source != CONTROLLER]
        return max(0.0, min(left)) if left else None

    def _drop_lapsed_leases(self, now: float) -> None:
        """A session starts: leases that ran out while nothing ran guarded nothing."""
        self._leases = {
            s: (renewed, seconds)
            for s, (renewed, seconds) in self._leases.items()
            if now - renewed <= seconds
        }

    def _missed_lease(self) -> str | None:
        now = self._clock()
        for source, (renewed, seconds) in self._leases.items():
            if not now - renewed <= seconds:  # (a NaN lease counts as missed)
                return source
        return None

    # --- acting ----------------------------------------------------------------

    def _start_session(self, source: str) -> None:
        if self._session_started is None and self._markers is not None:
            address = self.session.state.address
            try:
                if address:
                    self._markers.write(address, self.profile.id, source)
            except OSError as exc:
                # Without its marker a crash could not be recovered: nothing starts.
                raise SafetyRefused(
                    "no_crash_marker",
                    f"the crash-recovery marker could not be written ({exc})",
                    advice="free some disk space or fix the state directory's permissions",
                ) from exc
        if self.ended.is_set() or self._session_started is None:
            self.ended.clear()
            self.end_reason = None
            self.fault = None
        now = self._clock()
        if self._session_started is None:
            self._drop_lapsed_leases(now)
            self._session_started = now
            self._last_raise_at = now  # power-on counts as the first step up
            self.source = source
            self.peak_heat = 0
            self.heat_seconds = 0.0
            for hooks in list(self._hooks):
                hooks.session_started(self, source)
        self.heartbeat()

    def _check_cooldown(self) -> None:
        """Refuse a new session within the cooldown after the last one ended."""
        address = self.session.state.address
        if self._last_session_end is None or not address or self.limits.cooldown_s <= 0:
            return
        ended = self._last_session_end(address)
        left = 0.0
        if ended is not None:
            # One rule with schedule.may_start: an end in the future (the wall clock moved
            # back) counts as just ended. Here it used to count as long ago, so the two
            # disagreed.
            left = cooldown_left_s(self._wall(), ended, self.limits.cooldown_s)
        if self._ended_mono is not None:
            # A session this process saw end: the monotonic clock knows how long the feet
            # rested. (The journal's end is its start plus its length, on the wall clock
            # of its start: set forward during a session, a new one 60 s after it ended
            # counted 31 min of rest; found probing the owner as deployed.)
            rested_mono = self._clock() - self._ended_mono
            left = max(left, self.limits.cooldown_s - rested_mono)
        if left > 0:
            message, advice = cooldown_words(left, self.limits.cooldown_s)
            raise SafetyRefused("cooldown", message, advice=advice)

    def _check_ending(self) -> None:
        """Refuse to extend a session whose cap or a lease has run out: it is being
        switched off, and a request must not supersede that off. (One did, and the massager
        ran on past a missed lease while the re-sent off waited; found by the
        10,000-example soak.)"""
        # Every limit, not the first that ran out: with the heat cap out too, the missed
        # lease went unnoticed and the request renewed the heartbeat (issue #9, 4).
        every = set(self._expired_all())
        if self._missed_lease() is not None:
            every.add("heartbeat_missed")  # even while the (unconfirmed) off shows it off
        expired = next((r for r in EVERYTHING_OFF if r in every), None)
        if expired is not None:
            what = "its time is up" if expired == "session_cap" else "a heartbeat was missed"
            raise SafetyRefused(
                expired,
                f"this session is ending ({what}); the massager is being switched off",
                advice="start a new session once it is off",
            )

    def _check_heater(self) -> None:
        """Refuse while the massager reports heat footctl did not ask for, or a
        temperature over the cap: its heater is out of our hands. (Starting a new session
        on such a device powered it on again right after a heat fault had switched it
        off; found by tests/test_safety_stateful.py.)"""
        state = self.session.state
        fault: str | None = None
        if self.fault is not None and self._fault_latched:
            # Not seen clean since the fault (its reports may be lost, the link down): the
            # heater is still suspect. (A request over a dropped link was accepted, cleared
            # the fault, and the stuck heater then went unflagged; found by the stateful
            # test as deployed.)
            fault = self.fault
        elif self.fault is not None and (self._pending_off or self._session_started is not None):
            # The session a heat fault ends has not ended: its off is in flight or owed
            # (the link is down, say). A new request must not supersede it: it did, and
            # the returning link re-asserted the session on the faulty heater (found by
            # the 10,000-example soak).
            fault = self.fault
        elif not state.assumed and state.connected:
            fault = self._heat_fault(state, self._clock())
            if fault is None and self.fault is not None and state.heat > (self.desired.heat or 0):
                # A heat fault is being handled (its heat-off is settling): still refuse.
                # Starting then pressed a key-press massager's keys while its heater was
                # stuck (found by the 10,000-example soak).
                fault = self.fault
        if fault is None:
            return
        what = (
            f"a temperature of {state.temperature:g} C"
            if fault == "over_temperature" and state.temperature is not None
            else f"heat {state.heat}, which footctl did not ask for"
        )
        raise SafetyRefused(
            fault,
            f"the massager reports {what}: its heater may be faulty",
            advice="unplug it and let it cool down; check the heater before using heat again",
        )

    def _allowed_intensity(self, wanted: int | None) -> int | None:
        """The highest intensity the ramp allows now, given what the device reports."""
        if wanted is None or self.limits.ramp_step_s <= 0:
            return wanted
        state = self.session.state
        if not state.running or (state.assumed and self.profile.capabilities.reports_status):
            # This step powers the massager on, at its lowest level: that is the step up
            # (powering on straight to a higher level, e.g. re-asserting after the device
            # switched itself off, was found by tests/test_safety_stateful.py). Or nobody
            # knows whether it runs (its reports are lost): an assumed "running" may be a
            # massager that switched off, and this step powers it on (found by the soak).
            return min(wanted, self.limits.intensity_min)
        current = state.intensity if state.intensity is not None else self.limits.intensity_min
        if wanted <= current:
            return wanted
        now = self._clock()
        if self._last_raise_at is not None and now - self._last_raise_at < self.limits.ramp_step_s:
            return current
        return current + 1

    async def submit(self, request: Request) -> tuple[DeviceState, Decision]:
        """Decide, then drive the device (stepping intensity up along the ramp) and
        wait for its confirmation. A newer request supersedes this one: a flood
        is coalesced to its latest request."""
        if request.is_off:
            return await self.stop(source=request.source), Decision(Target(running=False))
        decision = self.decide(request)
        if self._limit_stops:
            raise SafetyRefused(
                "session_ending",
                f"the session is being switched off ({self.end_reason or 'a limit'})",
                advice="wait until it is off, then start again",
            )
        if self._recovery_owed:
            raise SafetyRefused(
                "recovery_pending",
                "the last footctl run died while this massager was on, and it is not "
                "confirmed off yet",
                advice="footctl keeps switching it off; wait until it answers, or switch it "
                "off by hand",
            )
        self._check_heater()
        if self._session_started is None:
            self._check_cooldown()
        else:
            self._check_ending()
        self._generation += 1
        generation = self._generation
        async with self._submit_lock:
            if generation != self._generation:
                return self.session.state, decision  # coalesced: a newer request follows
            if not await self._return_looked_at(generation):
                return self.session.state, decision  # voided by what the return showed
            previous_heat = self.desired.heat or 0
            self._start_session(request.source)  # (may refuse: then nothing changed)
            self.desired = decision.target
            self._pending_off = False  # a new request supersedes an owed stop
            self._stopped_at = None  # reports of running are this request's now
            now = self._clock()
            if (decision.target.heat or 0) < previous_heat:
                self._heat_lowered_at = now
            self._update_heat(now)
            self.peak_heat = max(self.peak_heat, decision.target.heat or 0)
            self._log(f"{request.source}: {decision.target}")
            state = await self._ramp_to(decision.target, generation)
        return state, decision

    async def _return_looked_at(self, generation: int) -> bool:
        """Wait, the link back, until its return has been looked at (_after_reconnect,
        after the session's reconnect query): a massager that came back off (it rebooted:
        a power cut) ends the session there, and this request is then voided, never
        written. A request the owner held while the link was down went out the moment
        it returned, before the query, and powered the rebooted massager on again
        (found by the 10,000-example soak through the owner). True if the request may
        go on. A stop never waits here; an off owed on return is written first (its
        stop voids this request). On a link still down nothing is awaited: a write
        there fails as before."""
        if self._return_seen.is_set() or not self.session.connected:
            return True
        self._log("link back: the request waits until the returned massager is looked at")
        try:
            async with asyncio.timeout(RETURN_LOOK_TIMEOUT_S):
                await self._return_seen.wait()
        except TimeoutError:
            raise ConfirmTimeout(
                f"the massager's return was not looked at within {RETURN_LOOK_TIMEOUT_S:g} s; "
                "nothing was written",
                advice="it may have dropped again; try again once it is connected",
            ) from None
        return generation == self._generation

    async def _ramp_to(self, target: Target, generation: int) -> DeviceState:
        while True:
            allowed = self._allowed_intensity(target.intensity)
            step = (
                target if allowed == target.intensity
                else dataclasses.replace(target, intensity=allowed)
            )
            powering_on = not self.session.state.running
            before = None if powering_on else self.session.state.intensity
            # On failure the desired state stays: it is within the caps, and a
            # returning link re-asserts it (or sends off if a cap expired meanwhile).
            raising = powering_on or (
                allowed is not None and before is not None and allowed > before
            )
            try:
                state = await self.session.apply(step)
            finally:
                if raising:  # power-on counts as a step up
                    # Also when unconfirmed: the write may have landed. Counting only
                    # confirmed steps let the next one follow too soon when reports were
                    # lost (found by the 10,000-example soak).
                    self._last_raise_at = self._clock()
            if allowed == target.intensity or generation != self._generation:
                return state
            wait = self.limits.ramp_step_s
            self._progress(
                f"ramping intensity: {state.intensity} of {target.intensity}, "
                f"next step in {wait:g} s"
            )
            await self._sleep(wait)
            if generation != self._generation or not self.desired.running:
                return self.session.state
            if not self._return_seen.is_set():
                # The link dropped during the wait: its return decides (the massager may
                # come back off: a power cut). A step written first pressed power on a
                # massager that had rebooted, after a loop stall (found by the stateful
                # test through the owner). The desired state stays, to be re-asserted.
                return self.session.state
            if self._switched_itself_off():
                # A report during the last write (busy) showed it switched itself off or
                # rebooted: the next step must not power it on again (issue #9, 1).
                self._device_off()
                return self.session.state
            # A safety action (heat cap, heat fault) may have lowered the desired state
            # while we slept: go on from it, or the next step writes the old heat again
            # (found by tests/test_safety_stateful.py).
            target = self.desired
            self.heartbeat()

    def adopt_unrecovered(self) -> bool:
        """After crash recovery: if a dead run's marker for this massager is still there,
        recovery could not confirm it off (out of reach, or a key-press massager whose
        status is lost). The off is then owed here: ``enforce`` keeps sending it, and new
        sessions are refused until it lands (its success clears the dead run's marker).
        True if it was owed."""
        address = self.session.state.address.lower()
        if self._markers is None or not address:
            return False
        if not any(m.address.lower() == address for m in self._markers.orphaned()):
            return False
        self._recovery_owed = True
        self._pending_off = True
        self.end_reason = "recovered_after_crash"
        self._log("crash recovery not confirmed: everything off is owed")
        return True

    async def stop(self, *, source: str = "cli", reason: str = "stopped") -> DeviceState:
        """Everything off. Never deduplicated, never rate-limited, never queued
        behind other writes: it overtakes any request in flight."""
        self._generation += 1
        generation = self._generation
        self.desired = Target(running=False)
        # Recorded before writing: the device's confirmation may end the session first.
        if self.end_reason is None:
            self.end_reason = reason
        self._log(f"{source}: stop ({reason})")
        # A limit being acted on (a cap, the dead man, a fault): no request may supersede
        # that off while it is written (a program's next step, due at the same moment,
        # did, and drove a massager on again after heartbeat_missed; found by the soak).
        # Requests after it start a session of their own.
        limit = source == "governor"
        self._limit_stops += limit
        try:
            state = await self._off_or_owe(generation)
        finally:
            self._limit_stops -= limit
        self._recovery_owed = False
        if generation == self._generation:
            self._pending_off = False
            self._end(reason)
            self._stopped_at, self._echo = self._clock(), None
        # else a request came in while the off was confirmed: the session is its own now
        # (ending it here cleared the crash marker of a massager that request switched
        # on; found by tests/test_safety_stateful.py)
        return state

    async def _off_or_owe(self, generation: int) -> DeviceState:
        """Everything off, confirmed; an off not confirmed is owed (written first when
        the link returns) unless a newer request or stop took over meanwhile."""
        try:
            return await self.session.all_off()
        except FootctlError:
            if generation == self._generation:
                self._pending_off = True
            raise

    async def _resend_off(self) -> None:
        """The off again, after a report of running right after our stop (see
        ECHO_WINDOW_S); not confirmed: owed, as any stop."""
        try:
            await self._off_or_owe(self._generation)
        except FootctlError as exc:
            _LOG.warning("the off after a stop could not be written again: %s", exc)
        finally:
            self._echo = "sent"  # a report of running from now on is the device's own

    def _end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        if self._markers is not None and self.session.state.address:
            try:
                self._markers.clear(self.session.state.address)
            except OSError as exc:
                # The session still ends (a stale marker costs one needless recovery).
                _LOG.error("could not clear the crash marker: %s", exc)
        was_running = self._session_started is not None
        self._update_heat(self._clock())
        if was_running:
            self._ended_mono = self._clock()  # (for the cooldown, see _check_cooldown)
        self._session_started = None
        self._seen_running = False
        self._heat_locked = False
        self._leases.clear()
        self.ended.set()
        if was_running:
            for hooks in list(self._hooks):
                hooks.session_ended(self, self.end_reason or reason)

    def _log(self, message: str) -> None:
        self.events.append((self._clock(), message))
        _LOG.info("governor[%s]: %s", self.profile.id, message)

    def _spawn(self, coro: Awaitable[None], what: str) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(
            run(), name=f"footctl[{self.session.state.address}].{what}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- timers ------------------------------------------------------------------

    def timers(self) -> Timers:
        """Seconds left on the session and heat caps."""
        now = self._clock()
        session = heat = None
        if self._session_started is not None:
            session = max(0.0, self._session_started + self.limits.session_s - now)
        heat = self._dose.left(now, self.limits.heat_s)
        return Timers(session, heat)

    def _observe(self, state: DeviceState) -> None:
        """Follow what the device reports: start timers for what we did not ask for,
        and act at once on heat we did not ask for or a temperature over the cap."""
        now = self._clock()
        if (
            state.running
            and self._session_started is None
            and self._stopped_at is not None
            and state.connected
            and (self._echo == "sending"
                 or (self._echo is None and now - self._stopped_at < ECHO_WINDOW_S))
        ):
            if self._echo is None:
                self._echo = "sending"
                self._log("reports running right after the stop: the off is written again")
                self._spawn(self._resend_off(), "echo-off")
            return
        if (
            state.running
            and self._session_started is None
            and (not self.ended.is_set() or (state.connected and not state.assumed))
        ):
            # Also after a session ended: a massager that comes on by itself later is
            # supervised like any other (it was ignored once a session had ended).
            self._drop_lapsed_leases(now)
            self._session_started = now
            self._last_raise_at = now  # its power-on counts as the first step up
            self._log("device reports running: session timer started")
            address = self.session.state.address
            if self._markers is not None and address:
                try:  # supervised like any session: a crash now is recovered too
                    self._markers.write(address, self.profile.id, "device")
                except OSError as exc:
                    _LOG.error("could not write the crash marker: %s", exc)
            # Journaled like any session, so its end starts the cooldown: it was not, and
            # a request right after an own-button session ended started a new one at once
            # (found by the stateful test through the owner and its real journal).
            self.peak_heat = 0
            self.heat_seconds = 0.0
            for hooks in list(self._hooks):
                hooks.session_started(self, "device")
        self._update_heat(now)  # the dose counts reported heat too, asked for or not
        self.peak_heat = max(self.peak_heat, state.heat)
        if state.assumed or not state.connected:
            return
        fault = self._heat_fault(state, now)
        switched_on = state.running and not self._reported_running
        self._reported_running = state.running
        if fault is None and self._fault_latched and self._heater_clean(state):
            self._fault_latched = False  # the heater is back to normal: watch it anew
        elif self._fault_latched and switched_on:
            # Switched on (its own button) while its heater is still suspect (faulty, or
            # still hot from the fault): act again, everything off (found by the stateful
            # test as deployed).
            self._fault_latched = False
            fault = fault or self.fault
        if fault is not None and not self._fault_latched:
            self.fault = fault
            self._fault_latched = True
            self._log(f"{fault}: heat off at once")
            # Before anything else: an apply in flight must not write its remaining
            # frames (heat among them) after this (found by the soak).
            self.session.preempt()
            self._spawn(self._cut_heat(fault), "fault")
        if not state.running and self._session_started is not None and not self.desired.running:
            self._end(self.end_reason or "stopped")
        elif state.running and self.desired.running:
            self._seen_running = True
        elif self._switched_itself_off() and not self.session.busy:
            # It switched itself off (its own auto-off timer, a power cut) while the link
            # stayed up: the session is over; powering it on again would override the
            # device's own timer.
            self._device_off()

    def _switched_itself_off(self) -> bool:
        state = self.session.state
        return (
            not state.running
            and not state.assumed
            and state.connected
            and self.desired.running
            and self._seen_running
            and self._session_started is not None
        )

    def _device_off(self) -> None:
        self._log("the massager switched itself off: the session ends")
        self._generation += 1  # a ramp in progress stops here
        self.desired = Target(running=False)
        self._update_heat(self._clock())
        self._end("device_off")

    def _heater_clean(self, state: DeviceState) -> bool:
        """The device reports no heat beyond what is asked and a normal temperature."""
        hot = (
            state.temperature is not None
            and state.temperature > self.limits.temperature_c + OVERTEMP_MARGIN_C
        )
        return state.heat <= (self.desired.heat or 0) and not hot

    def _heat_fault(self, state: DeviceState, now: float) -> str | None:
        if (
            state.temperature is not None
            and state.heat
            and state.temperature > self.limits.temperature_c + OVERTEMP_MARGIN_C
        ):
            return "over_temperature"
        asked = self.desired.heat or 0
        if state.heat > asked:
            settling = (
                self._heat_lowered_at is not None and now - self._heat_lowered_at < HEAT_SETTLE_S
            )
            if not settling and not self.session.busy:
                return "unexpected_heat"
        return None

    async def _heat_off(self, reason: str) -> bool:
        """Heat off for the rest of the session; if that is not confirmed, everything
        off. True if heat is off and the massage may go on."""
        now = self._clock()
        if reason == "heat_cap":
            self._dose = self._dose.lock()  # until a cool-down has passed
        else:
            self._heat_locked = True  # a fault: no heat for the rest of this session
        self._heat_lowered_at = now
        self.desired = dataclasses.replace(self.desired, heat=0)
        self._update_heat(now)
        # Nothing an apply in flight still means to write may follow this heat-off.
        self.session.preempt()
        try:
            # Heat only. Not ``apply(self.desired)``: that holds the final intensity of a
            # ramp in progress (writing it skipped the ramp) and ``running`` (writing it
            # powered a massager that had stopped on its own back on). Both found by
            # tests/test_safety_stateful.py.
            # And only while the massage is wanted: during a stop, a heat-only target
            # (running=True) pressed a key-press massager's power back on.
            if self.session.state.running and self.desired.running:
                await self.session.apply(Target(running=True, heat=0), power_on=False)
            else:
                await self.session.all_off()
        except SafetyRefused:
            return False  # overtaken by a stop
        except FootctlError as exc:
            self._log(f"{reason}: heat off not confirmed ({exc}); everything off")
            with contextlib.suppress(FootctlError):
                await self.stop(source="governor", reason=reason)
            return False
        return True

    async def _cut_heat(self, reason: str) -> None:
        """A heat fault: heat off now, then the session ends."""
        if await self._heat_off(reason) and self.desired.running:
            self._log(f"{reason}: heat off confirmed; the session ends")
            with contextlib.suppress(FootctlError):
                await self.stop(source="governor", reason=reason)

    def _link_changed(self, connected: bool) -> None:
        if not connected:
            self._log("link lost; caps keep counting")
            self._lost_at = self._clock()
            self._seen_running = False
            self._return_seen.clear()
            return
        self._spawn(self._after_reconnect(), "reassert")

    async def _after_reconnect(self) -> None:
        # What follows up to its first await (a session ended, a stop's generation) is
        # done before a request waiting for this look runs again.
        self._return_seen.set()
        gap = self._clock() - (self._lost_at if self._lost_at is not None else self._clock())
        expired = self._expired_all()
        faulty = self._fault_latched and self.fault is not None
        if self._pending_off or expired or faulty:
            # (A heat fault being handled when the link dropped: everything off first, not
            # the desired state re-asserted; found by the stateful test as deployed.)
            reason = (
                "cap_expired_while_away"
                if expired
                else (self.fault or "stopped")
                if faulty
                else self.end_reason or "stopped"
            )
            self._log(f"link back after {gap:.1f} s: everything off first ({reason})")
            self.end_reason = None if expired else self.end_reason
            if "heat_cap" in expired:
                self._dose = self._dose.lock()
            with contextlib.suppress(FootctlError):
                await self.stop(source="governor", reason=reason)
            return
        state = self.session.state
        if self.desired.running and (not state.running or state.assumed):
            # It came back off (it rebooted: a power cut or an unplug drops the link too),
            # or it cannot say: the session is over, and it is never driven on again. It
            # was: power 1, heat 1 went out 0.1 s after the massager returned (issue #9, 1).
            # The stop makes sure of it (heat first) and ends the session.
            self._log(f"link back after {gap:.1f} s and the massager is off: the session ends")
            self._generation += 1
            self.desired = Target(running=False)
            self.end_reason = None
            with contextlib.suppress(FootctlError):
                await self.stop(source="governor", reason="device_off")
            return
        if self.desired.running and self._submit_lock.locked():
            # A request is in flight: it drives the device along the ramp itself. A second
            # ramp beside it computed its step from the state before that request's write
            # and raised intensity twice within 0.05 s on a key-press massager (found by
            # the stateful test as deployed).
            self._log(f"link back after {gap:.1f} s, in time: the request in flight goes on")
            return
        if self.desired.running:
            self._log(f"link back after {gap:.1f} s, in time: re-asserting the desired state")
            with contextlib.suppress(FootctlError):
                await self._ramp_to(self.desired, self._generation)

    def _expired_all(self) -> frozenset[str]:
        """Every limit that has run out now (not just the first: issue #9, 4)."""
        now = self._clock()
        out: set[str] = set()
        if self._session_started is not None and now - self._session_started >= (
            self.limits.session_s
        ):
            out.add("session_cap")
        if self._heat_level() and (
            self._dose.reached(now, self.limits.heat_s) or self._dose.is_locked(now)
        ):
            out.add("heat_cap")
        if (
            self._session_started is not None
            and (self.desired.running or self.session.state.running or self._heat_level())
            and self._missed_lease() is not None
        ):
            # Only a session the governor supervises: a lease renewed while idle that ran
            # out before the governor saw a session start guarded nothing (it is dropped
            # when one starts). It switched off, as heartbeat_missed, a session the
            # massager's own button started while its reports were lost (found by the
            # 10,000-example soak). Heat nobody asked for is unexpected_heat's.
            out.add("heartbeat_missed")
        return frozenset(out)

    def _expired(self) -> str | None:
        """The first expired limit by EVERYTHING_OFF order, then the heat cap."""
        expired = self._expired_all()
        return next((r for r in (*EVERYTHING_OFF, "heat_cap") if r in expired), None)

    async def enforce(self) -> None:
        """Act on every expired limit now, in this one pass: everything off at the
        session cap or a missed heartbeat (which takes the heat with it), heat off at
        the heat cap (and the dose locked until a cool-down). While the link is down
        the off is owed and sent on return."""
        expired = self._expired_all()
        if not expired and self._pending_off and self.session.connected:
            # An off that did not land (unconfirmed, or owed by crash recovery): send it
            # again until it does; nothing else will.
            await self.stop(source="governor", reason=self.end_reason or "stopped")
            return
        if not expired:
            return
        if "heat_cap" in expired:
            self._dose = self._dose.lock()
        if not self.session.connected:
            self._pending_off = True
            return
        everything = next((r for r in EVERYTHING_OFF if r in expired), None)
        if everything is not None:
            self._log(f"{', '.join(sorted(expired))}: everything off")
            await self.stop(source="governor", reason=everything)
            return
        self._log("heat cap reached: heat off")
        await self._heat_off("heat_cap")

    async def watch(self, *, heartbeat: bool = True) -> None:
        """Enforce the caps until cancelled (run as a named task). With ``heartbeat``
        this loop is also the controller's heartbeat: if it stalls, the next pass
        finds the heartbeat missed and switches everything off (before it renews it).

        Any error is logged and the next pass tries again: an ``OSError`` from the
        marker store once ended this loop, and with it every cap, silently."""
        while True:
            try:
                await self.enforce()
            except Exception:
                _LOG.exception("enforcing caps failed (retrying)")
            if heartbeat:
                self.heartbeat()
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def shutdown(self, reason: str = "shutdown") -> None:
        """Everything off under its own timeout; used in ``finally`` on every exit path."""
        for task in list(self._tasks):
            task.cancel()
        try:
            if self.session.connected:
                async with asyncio.timeout(SHUTDOWN_OFF_TIMEOUT_S):
                    await self.stop(source="governor", reason=reason)
        except (FootctlError, TimeoutError) as exc:
            _LOG.error("could not confirm everything off on %s: %s", reason, exc)
        finally:
            self._unsubscribe()
            self._unlink()
