"""The safety promises, checked by a hypothesis state machine on what the DEVICE did,
with footctl driven the way it is deployed.

One :class:`RuleBasedStateMachine` per shipped profile runs the daemon's
:class:`~footctl.control.owner.Owner` (``safety_harness.build_owner``: the config's
caps at their floors, defaults and ceilings; a real SQLite journal, which gives the
cooldown its last session end; crash markers; crash recovery in ``Owner.open``; the
owner's own watch task as the heartbeat and its tick), with the real DeviceSession,
SafetyGovernor and codec. Only the radio is replaced: the owner's ``connect``
(``safety_harness.FakeLinks``) reaches a :class:`MassagerModel` over a scripted fake
link, all on one fake clock (a virtual-time event loop: timeouts, re-sends, backoff,
the ramp, the watch loop and the reply budget run in fake time).

Every command reaches the owner as a JSON line through the API's edge
(``footctl.control.api.parse_request``, as the socket server does) and then
``owner.request``: set/on requests from every source (over-cap values, values of the
wrong type or not finite, which the edge must refuse), StopRequest with and without a
device (also while the session reconnects, and while a request waits for that
connect), LeaseRequest and ReleaseRequest from the MQTT bridge and the TUI (lease
lengths the edge must refuse, too), and RunRequest for the shipped programs (by hand
and from a schedule: unattended). Faults: time, loop stalls, wall-clock jumps,
link drops and returns and flaps that overlap the reconnects, device power cycles and
reboots, the massager's own power button, garbled and truncated notifications, a
heater stuck on (``rogue_heat``) and overheating (``rogue_celsius``), crashes (the
process dies, its marker and journal rows stay behind) with a restart that recovers,
and clean shutdowns (``Owner.close``).

The checks watch the model (what the massager actually did), on fake time, with every
change of the model seen as it happens and the time-based checks run every
enforcement interval and after every step:

* heat is never on (as commanded to the device) past the heat dose, and the massage
  never runs longer than the session cap, while the link is up: the slack is ONE
  ENFORCEMENT INTERVAL (``WATCH_INTERVAL_S``, 0.5 s), measured from the later of the
  cap's expiry and the moment the link (re)connected;
* when the link returns (or a new process starts) after a cap expired, an owed stop,
  or a missed lease, the first non-query frame the device receives switches off
  (heat first if heat is on) and the device is off within ``RETURN_SLACK``;
* nothing is driven on again after the massager switched itself off (a reboot, a power
  cut, its own timer) unless a new request asks for it;
* intensity never above the cap; intensity never rises by more than one level, nor
  sooner than the ramp interval after the previous rise or power-on;
* heat never above the level the temperature cap allows, never on under ``no_heat``,
  and never above the unattended level for a request a schedule sent;
* a report of heat the governor did not ask for, or of a temperature above the cap
  plus the margin, is flagged (``fault``) and the first frame after it switches off;
* a missed controller heartbeat or an unrenewed lease ends the session within one
  enforcement interval of running out; and the dead man never acts while every lease
  is live (a lease that ran out while nothing ran guards nothing: README, Safety);
* every stop writes a frame (never deduplicated) and leaves the device off; a stop that
  could not be delivered is owed, and nothing is switched on before it lands;
* no new session within the cooldown after the last one ended (the journal's record);
* nothing of the wrong type gets past the API's edge;
* a crash marker exists whenever the device is on, so a crash is always recovered.

Examples: ``FOOTCTL_STATEFUL_EXAMPLES`` in total (default 2,000), split across the
three profiles; ``scripts/soak`` raises it. The last test prints the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from footctl.config import CapsConfig, Config
from footctl.control.api import ErrorReply, Reply, error_reply, parse_request
from footctl.control.held import Held
from footctl.control.owner import Owner
from footctl.device import codec
from footctl.device.profile.loader import find_profiles
from footctl.device.profile.schema import Profile
from footctl.device.session import CONFIRM_TIMEOUT_S, KEY_PRESS_WAIT_S, DeviceSession
from footctl.errors import FootctlError, SafetyRefused, UsageError
from footctl.journal import Journal
from footctl.safety import governor as governor_module
from footctl.safety.dose import DOSE_WINDOW_S, HEAT_COOLDOWN_S
from footctl.safety.governor import (
    CONTROLLER,
    OVERTEMP_MARGIN_C,
    WATCH_INTERVAL_S,
    Request,
    SafetyGovernor,
)
from footctl.safety.limits import (
    CEILING_HEAT_S,
    CEILING_SESSION_S,
    CEILING_TEMPERATURE_C,
)
from footctl.safety.markers import MarkerStore
from footctl.state import Command, DeviceState, Report
from footctl.virtual.model import FrameRecord, MassagerModel
from safety_harness import (
    ADDRESS,
    FAST_TMP,
    FakeClock,
    FakeLinks,
    FakeMassager,
    VirtualTimeLoop,
    build_owner,
    is_off_frame,
    mark_journal_dead,
    mark_owner_dead,
    memoized_codec,
    without_auto_off,
)

PROFILES = find_profiles()
SHIPPED = ("ems-v2", "shiatsu-aa55", "shiatsu-keys")

TOTAL_EXAMPLES = int(os.environ.get("FOOTCTL_STATEFUL_EXAMPLES", "2000"))
PER_PROFILE = math.ceil(TOTAL_EXAMPLES / len(SHIPPED))
STEPS = int(os.environ.get("FOOTCTL_STATEFUL_STEPS", "40"))

# --- slack, stated ----------------------------------------------------------------------

#: The governor's watch loop enforces the caps this often: the slack on every cap.
E = WATCH_INTERVAL_S
CAP_SLACK = E + 1e-6
#: After a reconnect the session waits up to KEY_PRESS_WAIT_S for a fresh report before
#: the governor acts on the returned link; then one enforcement interval.
RETURN_SLACK = KEY_PRESS_WAIT_S + E + 1e-6
#: A report of heat not asked for may arrive while the governor is still lowering the heat
#: (a settle window) or while a write waits for its confirmation (busy): it is flagged at
#: the first report after that, so within two confirmation timeouts plus a status
#: interval; everything is off one more confirmation timeout later (the heat-off it sends
#: first cannot be confirmed while the heater is stuck).
FAULT_FLAG_S = 2 * CONFIRM_TIMEOUT_S + 1.0 + E
#: ... and everything is off this long after it was flagged: the heat-off it sends first
#: cannot be confirmed while the heater is stuck (a confirmation timeout; on a key-press
#: device, presses for up to one more), then the stop lands at once.
FAULT_OFF_S = 2 * CONFIRM_TIMEOUT_S + 2 * KEY_PRESS_WAIT_S + E

SOURCES = ("cli", "tui", "mqtt", "schedule", "program")
#: A killed process's tasks are cancelled this many times over at most (see _kill).
KILL_ROUNDS = 10
#: The shipped programs (RunRequest).
PROGRAMS = ("quick-relax", "wind-down", "no-heat")

# The design's floors and ceilings (DESIGN.md, README "Safety"), written here rather than
# imported, so a governor that loosens them is caught: the ramp never faster than a level
# per 5 s, unattended heat never above the lowest level, the cooldown never under 15 min.
DESIGN_RAMP_FLOOR_S = 5.0
DESIGN_UNATTENDED_CEILING = 1
DESIGN_COOLDOWN_FLOOR_S = 15 * 60.0
#: The heat dose: each 3 C hotter than the lowest level doubles a minute's weight.
DESIGN_DOSE_DOUBLING_C = 3.0

#: Values a command source may send at the control API's edge that are not levels (as
#: JSON: Python's ``json`` writes NaN and the infinities as the tokens some clients send).
CONFUSED: tuple[object, ...] = (
    math.nan, math.inf, -math.inf, 2.5, 3.0, "3", True, [1], {"level": 1}, 1e400,
)
#: Lease lengths the edge must refuse: no lease of zero (a release is its own request),
#: none shorter than 5 s or longer than 600 s, nothing that is not a number.
BAD_LEASES: tuple[object, ...] = (0, 0.0, -30.0, 4.0, 601.0, math.nan, math.inf, "30", True)

#: A wall clock for the cooldown (it spans processes): fake time plus this offset.
WALL_EPOCH = 1_790_000_000.0

#: What ran, printed by the last test.
STATS: Counter[str] = Counter()


@dataclasses.dataclass
class Proc:
    """One footctl process: the owner it runs (as the daemon builds it), its journal
    connection, the links it made and the tasks it runs."""

    owner: Owner
    journal: Journal
    links: FakeLinks
    tasks: set[asyncio.Task[Any]] = dataclasses.field(default_factory=set)

    @property
    def held(self) -> Held:
        return self.owner.held[0]

    @property
    def governor(self) -> SafetyGovernor:
        return self.held.governor

    @property
    def session(self) -> DeviceSession:
        return self.held.session

    @property
    def up(self) -> bool:
        """The owner's session has its link up."""
        return self.session.connected


class SafetyMachine(RuleBasedStateMachine):
    """The owner, as deployed, against a device model, under faults (see the module)."""

    profile_id: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.profile: Profile = PROFILES[self.profile_id]
        self.clock = FakeClock()
        self.loop = VirtualTimeLoop(self.clock)
        self.loop.set_task_factory(self._task_factory)
        self.owner: Proc | None = None
        self.proc: Proc | None = None
        self.device: FakeMassager | None = None
        self.device_tasks: list[asyncio.Task[Any]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="footctl-stateful-", dir=FAST_TMP))
        self.markers = MarkerStore(self.tmp / "active")
        self.violations: list[str] = []
        self.decoded: dict[bytes, Report] = {}
        self.violation_kinds: set[str] = set()
        self.ready = False
        self.frames_received = 0
        STATS[f"examples:{self.profile_id}"] += 1
        STATS["examples"] += 1

    # --- plumbing -------------------------------------------------------------------------

    def _task_factory(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kw: Any
    ) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kw)
        owner = self.owner
        if owner is not None:  # tasks a process starts die with it
            owner.tasks.add(task)
            task.add_done_callback(owner.tasks.discard)
        return task

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run one step's coroutine for the live process, then let spawned work settle."""
        self.owner = self.proc
        try:
            return self.loop.run(coro)
        finally:
            self.loop.settle()

    def violation(self, what: str) -> None:
        """Record a broken promise (the invariant reports it after the step); the first
        of each kind only (the kind is the message without its numbers)."""
        kind = "".join(c for c in what if not c.isdigit())
        if kind not in self.violation_kinds:
            self.violation_kinds.add(kind)
            self.violations.append(f"t={self.clock.now - 1000:.2f}: {what}")

    @property
    def model(self) -> MassagerModel:
        assert self.device is not None
        return self.device.model

    def teardown(self) -> None:
        try:
            if self.proc is not None:
                self._kill(self.proc)
            for task in self.device_tasks:
                task.cancel()
            self.owner = None
            with contextlib.suppress(Exception):
                self.loop.settle()
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- setting up ------------------------------------------------------------------------

    @initialize(data=st.data())
    def setup(self, data: st.DataObject) -> None:
        caps_ = self.profile.capabilities
        draw = data.draw
        # The config file at its floors, defaults and ceilings (and below the floors where
        # the file accepts it: the governor must not honour that on a real radio).
        config = CapsConfig(
            max_session_minutes=draw(st.sampled_from([2.0, 5.0, 20.0, 45.0]), "session_min"),
            max_heat_minutes=draw(st.sampled_from([1.0, 2.5, 15.0, 30.0]), "heat_min"),
            max_temperature_c=draw(st.sampled_from([38.0, 41.0, 42.0, 45.0]), "temp"),
            max_intensity=draw(st.none() | st.integers(0, caps_.intensity.max + 2), "int_cap"),
            heartbeat_seconds=draw(st.sampled_from([5.0, 20.0, 60.0, 600.0]), "heartbeat_s"),
            intensity_step_seconds=draw(st.sampled_from([0.0, 5.0, 10.0, 120.0]), "ramp_s"),
            unattended_heat_level=draw(st.integers(0, 1), "unattended_heat_level"),
            cooldown_minutes=draw(st.sampled_from([0.0, 15.0, 30.0]), "cooldown_min"),
            no_heat=draw(st.booleans(), "no_heat"),
            clamp=draw(st.booleans(), "clamp"),
        )
        self.config = Config(caps=config)
        self.caps = config.to_caps()
        self.exp_heartbeat_s = self.caps.heartbeat_s  # (5-600 s: the values drawn are in it)
        self.exp_ramp_s = max(self.caps.ramp_step_s, DESIGN_RAMP_FLOOR_S)
        self.exp_unattended = min(self.caps.unattended_heat_level, DESIGN_UNATTENDED_CEILING)
        self.exp_cooldown_s = max(self.caps.cooldown_s, DESIGN_COOLDOWN_FLOOR_S)
        levels = {h.level: h.celsius for h in caps_.heat_levels}
        base = min(levels.values(), default=0.0)
        self.exp_weight = {
            level: max(1.0, 2.0 ** ((c - base) / DESIGN_DOSE_DOUBLING_C))
            for level, c in levels.items()
        }
        own_auto_off = draw(st.integers(0, 9), "device_auto_off") == 0  # mostly none
        # Expectations computed here, independently of Limits.compute.
        self.exp_session_s = min(self.caps.session_s, CEILING_SESSION_S)
        self.exp_heat_s = min(self.caps.heat_s, CEILING_HEAT_S)
        self.exp_temp_c = min(self.caps.temperature_c, CEILING_TEMPERATURE_C)
        top = caps_.intensity.max
        if self.caps.intensity is not None:
            top = max(caps_.intensity.min, min(top, self.caps.intensity))
        self.exp_intensity_max = top
        self.exp_heat_max = (
            0
            if self.caps.no_heat
            else max(
                [h.level for h in caps_.heat_levels if h.celsius <= self.exp_temp_c], default=0
            )
        )
        model_profile = self.profile if own_auto_off else without_auto_off(self.profile)
        model = MassagerModel(model_profile, now=self.clock, rng=random.Random(0))
        self.device = FakeMassager(self.profile, model)
        self.interval = self.device.interval or 1.0
        # what the device did, tracked over fake time
        self.prev = (model.running, model.heat, model.intensity)
        self.running_since: float | None = None
        self.heat_since: float | None = None
        self.heat_spans: list[tuple[float, float, float]] = []  # the device's heat, weighted
        self.stalled_until = -math.inf  # the loop ran nothing until then (a stall)
        self.self_off_since: float | None = None  # the device switched itself off
        self.own_doing = False  # the device's own buttons change it (not footctl)
        self.own_on = False  # it runs because of its own button (until it is off)
        self.own_unseen = False  # ... and footctl has not been able to see it yet
        self.last_raise_own = False  # the last rise was its own button's power-on
        self.wall_offset = WALL_EPOCH
        self.last_end_wall: float | None = None  # the journal's last session end
        self.last_raise: float | None = None
        self.last_up = self.clock()
        self.on_since = self.clock()
        self.leases: dict[str, tuple[float, float]] = {}
        self.dropped_at = -math.inf  # when the model last dropped leases that ran out
        self.sighted_at = -math.inf  # see reachable_since
        self.owed_off_since: float | None = None
        self.return_need: tuple[str, float, bool] | None = None
        self.first_frame_check: tuple[str, bool] | None = None
        self.unexpected_since: float | None = None
        self.overtemp_since: float | None = None
        self.fault_seen: str | None = None
        self.fault_at: float | None = None
        self.recovering = False
        model.subscribe(self._model_changed)
        self.device.report_listeners.append(self._report_delivered)
        self.device.frame_listeners.append(self._frame_received)
        self.device.connect_listeners.append(self._connected)
        self.owner = None
        self.device_tasks.append(self.loop.create_task(self.device.status_loop()))
        self._start_process(recover=False)
        self.ready = True

    def _start_process(self, *, recover: bool) -> None:
        """A footctl process starts: the owner as the daemon builds it, opened (crash
        recovery over the fake radio, connect, its watch and tick tasks)."""
        assert self.device is not None
        if recover and (self.model.running or self.model.heat) and self._marker_present():
            # what the new process must do first: switch the device off
            self.return_need = ("all", self.clock(), self.model.heat > 0)
            self.first_frame_check = ("restart", self.model.heat > 0)
        links = FakeLinks(self.device)
        journal = Journal(self.tmp / "journal.sqlite", clock=self.wall_dt)
        owner = build_owner(
            self.profile,
            self.config,
            links,
            clock=self.clock,
            wall=self.wall_dt,
            markers=self.markers,
            journal=journal,
        )
        proc = Proc(owner, journal, links)
        held_session = proc.session

        def before_connect(session: DeviceSession) -> None:
            # crash recovery's own session (not the owner's): it switches off what the
            # dead run left on, so its connect owes nothing of its own
            self.recovering = session is not held_session

        def after_connect(_session: DeviceSession) -> None:
            self.recovering = False

        links.before_connect, links.after_connect = before_connect, after_connect
        self._spy(proc.governor)
        self.proc = proc
        orphans = len(self.markers.orphaned()) if recover else 0
        # (crash recovery tells the user on stderr; thousands of restarts would flood
        # the soak's output)
        with contextlib.redirect_stderr(io.StringIO()):
            self.run(owner.open())
        if recover:
            left = len(self.markers.orphaned())
            STATS["recovered_after_crash"] += orphans - left
            STATS["recovery_owed"] += int(proc.governor._recovery_owed)

    def _spy(self, governor: SafetyGovernor) -> None:
        """Record every lease renewal and session end (the dead-man check needs them)."""
        heartbeat, lease, release = governor.heartbeat, governor.lease, governor.release

        def renewed(source: str, seconds: float) -> None:
            self.leases[source] = (self.clock(), seconds)

        def spy_heartbeat(source: str = CONTROLLER) -> None:
            renewed(source, self.exp_heartbeat_s)
            heartbeat(source)

        def spy_lease(source: str, seconds: float | None = None) -> None:
            renewed(source, seconds or self.exp_heartbeat_s)
            lease(source, seconds)

        def spy_release(source: str) -> None:
            self.leases.pop(source, None)
            release(source)

        end = governor._end

        stop = governor.stop

        async def spy_stop(*, source: str = "cli", reason: str = "stopped") -> DeviceState:
            now = self.clock()
            if (
                reason == "heartbeat_missed"
                and governor.end_reason != reason  # (not the re-send of an off decided)
                and not any(now - r > n for r, n in self.leases.values())
                and now - self.dropped_at > CONFIRM_TIMEOUT_S + E
            ):
                # The dead man acted with every lease live (in the model: one that ran out
                # while nothing ran was dropped when the session started; README, Safety):
                # it switched a session off at once as heartbeat_missed.
                self.violation("everything off as heartbeat_missed with every lease live")
            return await stop(source=source, reason=reason)

        def spy_end(reason: str) -> None:
            self.leases.clear()  # the session ended: nobody holds it any more
            if governor._session_started is not None:
                self.last_end_wall = self.wall()  # the journal records the end
            end(reason)

        governor._end = spy_end  # type: ignore[method-assign]
        governor.stop = spy_stop  # type: ignore[method-assign]
        governor.heartbeat = spy_heartbeat  # type: ignore[method-assign]
        governor.lease = spy_lease  # type: ignore[method-assign]
        governor.release = spy_release  # type: ignore[method-assign]

    def _drop_lapsed_leases(self) -> None:
        """A session starts (the massager comes on, or footctl first sees it on): a
        lease that ran out before, while nothing ran, guarded nothing (README, Safety)."""
        now = self.clock()
        live = {s: (r, n) for s, (r, n) in self.leases.items() if now - r <= n}
        if len(live) < len(self.leases):
            # (the governor's session may have started up to a confirmation earlier, with
            # these still live: it may still act on them)
            self.dropped_at = now
        self.leases = live

    def wall(self) -> float:
        """The wall clock (it may jump: rule ``wall_clock_jump``)."""
        return self.wall_offset + self.clock()

    def wall_dt(self) -> datetime:
        """:meth:`wall` as the owner and the journal take it."""
        return datetime.fromtimestamp(self.wall(), UTC)

    def _kill(self, proc: Proc) -> None:
        """The process dies at once: its links end, its tasks never run again, its
        journal connection closes with open rows left behind."""
        proc.links.kill()
        self.owner = None
        for _ in range(KILL_ROUNDS):
            # A task that catches its cancellation and awaits in ``finally`` (a program
            # runner's everything-off) is cancelled again there: a dead process runs
            # nothing more, not even its clean-ups (they would write its journal rows
            # and clear its markers after its death).
            pending = [t for t in proc.tasks if not t.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            self.loop.settle()
        proc.journal.close()
        if self.own_on and not self._marker_present():
            # A stop owed for a massager its own button switched on dies with the process:
            # no crash marker carries it (footctl never had a session there). A known
            # limit, stated in the README.
            self.owed_off_since = None
        mark_owner_dead(self.markers)
        mark_journal_dead(self.tmp / "journal.sqlite")
        self.proc = None
        self.leases.clear()
        self.unexpected_since = self.overtemp_since = None

    # --- what the device did ----------------------------------------------------------------

    @property
    def device_on(self) -> bool:
        return self.model.running or self.model.heat > 0

    @property
    def rogue_toggles(self) -> bool:
        """A key-press device while a heater is stuck on, or while the governor handles
        the heat fault it caused: the heat key is a toggle, and pressing it to turn the
        reported heat off may switch the (masked) commanded heat on. FAULT_OFF_S bounds
        how long that may last: by then the massager must be off."""
        return self.profile.capabilities.command_style == "keys" and (
            self.model.rogue_heat is not None or self.fault_at is not None
        )

    def _model_changed(self) -> None:
        now = self.clock()
        m = self.model
        was_running, was_heat, was_intensity = self.prev
        running, heat, intensity = m.running, m.heat, m.intensity
        if (running or heat) and not (was_running or was_heat):
            self.on_since = now
            self._drop_lapsed_leases()
        if running and not was_running:
            self.running_since = now
            self.last_raise = now  # power-on counts as a step up
            self.last_raise_own = self.own_doing  # ... by its own button
        if not running and was_running:
            if not self.own_unseen:
                self._overdue("session cap", self.running_since, self.exp_session_s, now)
            self.running_since = None
        if heat != was_heat:
            if was_heat:
                self._check_dose()  # was it on past the dose cap until now?
                if self.heat_since is not None and now > self.heat_since:
                    self.heat_spans.append(
                        (self.heat_since, now, self.exp_weight.get(was_heat, 1.0))
                    )
                self.heat_since = None
            if heat:
                self.heat_since = now
                if (
                    not was_heat
                    and not self.rogue_toggles
                    and not self.own_doing
                    and self._dose_at(now) > self.exp_heat_s + 1e-6
                ):
                    self.violation(
                        f"heat switched on with the dose at {self._dose_at(now):.1f} s "
                        f"(cap {self.exp_heat_s:g} s), before a cool-down"
                    )
        if running and was_running and intensity > was_intensity and not self.own_doing:
            if intensity - was_intensity > 1:
                self.violation(f"intensity jumped {was_intensity} -> {intensity}")
            gov = self.proc.governor if self.proc is not None else None
            blind = self.own_unseen or (
                # Its own button switched it on again (after a power cycle footctl could
                # not see: the link was down) and footctl's session is older: footctl
                # cannot tell this power-on from the one it already counted.
                self.last_raise_own
                and gov is not None
                and gov._session_started is not None
                and self.last_raise is not None
                and gov._session_started < self.last_raise - 1e-9
            )
            if (
                self.last_raise is not None
                and now - self.last_raise < self.exp_ramp_s - 1e-6
                and not blind
            ):
                # (Blind: a key press then steps from a state nobody can see, the
                # physical limit the README states. Its ramp counts from what footctl
                # can see.)
                self.violation(
                    f"intensity rose to {intensity} {now - self.last_raise:.2f} s after the "
                    f"previous rise (ramp {self.exp_ramp_s:g} s)"
                )
            self.last_raise = now
            self.last_raise_own = False
        turned_on = (running and not was_running) or (running and intensity > was_intensity)
        heated = heat > was_heat and not self.rogue_toggles
        if (
            (turned_on or heated)
            and self.self_off_since is not None
            and not self.blind
            and not self.own_doing
        ):
            self.violation(
                "the massager switched itself off (reboot, power cut) and was driven on "
                f"again: running {was_running}->{running}, heat {was_heat}->{heat}"
            )
        owed = self.owed_off_since is not None or self.return_need
        if (turned_on or heated) and owed and not self.blind and not self.own_doing:
            why = "a stop is owed" if self.owed_off_since is not None else "an off is owed"
            self.violation(
                f"device switched on/up while {why}: running {was_running}->{running}, "
                f"heat {was_heat}->{heat}, intensity {was_intensity}->{intensity}"
            )
        if running and intensity > self.exp_intensity_max:
            self.violation(f"intensity {intensity} above the cap {self.exp_intensity_max}")
        if (
            heat > min(self.exp_unattended, self.exp_heat_max)
            and heat > was_heat
            and self._unattended_program()
            and not self.rogue_toggles
            and not self.own_doing
        ):
            self.violation(f"heat {heat} in a scheduled (unattended) program")
        if heat > self.exp_heat_max and not self.rogue_toggles and not self.own_doing:
            self.violation(
                f"heat {heat} above the allowed {self.exp_heat_max} (no_heat={self.caps.no_heat})"
            )
        if not running and not heat:
            self.owed_off_since = None
            self.own_on = self.own_unseen = False
        if self.return_need is not None:
            kind = self.return_need[0]
            if (kind == "heat" and not heat) or (not running and not heat):
                self.return_need = None
        self.prev = (running, heat, intensity)

    def _unattended_program(self) -> bool:
        proc = self.proc
        if proc is None or not proc.held.program_running or proc.held.runner is None:
            return False
        return proc.held.runner.source == "schedule"

    def _overdue(self, what: str, since: float | None, cap: float, now: float) -> None:
        proc = self.proc
        if since is None or proc is None or not proc.up:
            return  # the device did it on its own while nobody could reach it
        late = now - max(since + cap, self.reachable_since)
        if late > CAP_SLACK:
            self.violation(
                f"{what}: on {now - since:.2f} s (cap {cap:g} s), {late:.2f} s late "
                f"(link up since t={self.last_up - 1000:.2f})"
            )

    @property
    def blind(self) -> bool:
        """A key-press device whose notifications are all lost (see reachable_since)."""
        return self.sighted_at == math.inf

    @property
    def reachable_since(self) -> float:
        """Since when footctl could act on the device: the link is up and, for a
        key-press device, its notifications are readable. Keys toggle: while every
        notification is lost nobody can tell whether a press switched the massager on
        or off (pressing blindly may switch it on), so the clock-bound promises for
        such a device count from when it can be seen again."""
        return max(self.last_up, self.sighted_at, self.stalled_until)

    def _dose_at(self, t: float) -> float:
        """The heat dose at ``t`` by the design (computed here, independently of the
        governor): the device's heat time, weighted by level, within the window; a gap
        of a cool-down without heat forgets everything before it."""
        spans = [sp for sp in self.heat_spans if sp[0] < t]
        if self.heat_since is not None and self.heat_since < t:
            spans.append((self.heat_since, t, self.exp_weight.get(self.model.heat, 1.0)))
        total = 0.0
        previous_end: float | None = None
        horizon = t - DOSE_WINDOW_S
        for start, stop, weight in spans:
            end = min(stop, t)
            if previous_end is not None and start - previous_end >= HEAT_COOLDOWN_S:
                total = 0.0
            total += weight * max(0.0, end - max(start, horizon))
            previous_end = end
        # (Heat that comes on at ``t`` itself, after a cool-down without any, starts
        # from zero too: the gap before it forgot everything. The model skipped this
        # when asked at the very moment heat came on, and counted a 1,700 s dose after a
        # 1,900 s cool-down; found by the 10,000-example soak.)
        if previous_end is not None and (self.heat_since is None or self.heat_since >= t) and (
            t - previous_end >= HEAT_COOLDOWN_S
        ):
            total = 0.0
        if len(self.heat_spans) > 64:  # what the window and a cool-down forgot
            keep = t - DOSE_WINDOW_S - HEAT_COOLDOWN_S
            self.heat_spans = [sp for sp in self.heat_spans if sp[1] > keep]
        return total

    def _check_dose(self) -> None:
        """Heat on (as commanded) past the dose cap, by more than one enforcement pass
        from when footctl could act."""
        proc = self.proc
        if self.heat_since is None or proc is None or not proc.up:
            return
        if self.rogue_toggles or self.own_doing:
            return
        t0 = self.clock() - CAP_SLACK
        if t0 < max(self.heat_since, self.reachable_since):
            return
        dose = self._dose_at(t0)
        if dose > self.exp_heat_s + 1e-6:
            self.violation(
                f"heat on past the dose cap: dose {dose:.1f} s (cap {self.exp_heat_s:g} s) "
                f"{CAP_SLACK:g} s ago"
            )

    def _first_sight(self) -> None:
        """footctl sees a massager its own button switched on for the first time: its
        caps count from now (how long it ran unseen, nobody can know)."""
        if self.own_unseen and self.model.running:
            self.own_unseen = False
            self.running_since = self.last_raise = self.clock()
            self._drop_lapsed_leases()  # the governor's session starts now

    def _connected(self) -> None:
        """A link came up: what is owed must be the first thing written."""
        now = self.clock()
        self.last_up = now
        if self.recovering or not self.device_on or self.own_unseen:
            return
        m = self.model
        need: str | None = None
        if m.heat and self._dose_at(now) > self.exp_heat_s + 1e-6:
            need = "heat"
        if (
            m.running
            and self.running_since is not None
            and not self.own_unseen
            and now - self.running_since > self.exp_session_s
        ):
            need = "all"
        if self.owed_off_since is not None:
            need = "all"
        if any(now - renewed > seconds for renewed, seconds in self.leases.values()):
            need = "all"
        if self.fault_at is not None:
            need = "all"  # a heat fault ends the session: still owed
        if need is not None and self.return_need is None:
            self.return_need = (need, now, m.heat > 0)
            self.first_frame_check = ("return", m.heat > 0)

    def _frame_received(self, record: FrameRecord) -> None:
        self.frames_received += 1  # (the model's own log is bounded)
        if record.command == "query" or record.outcome == "error":
            return
        if self.first_frame_check is not None:
            why, heat_on = self.first_frame_check
            self.first_frame_check = None
            if not is_off_frame(record, heat_first=heat_on):
                self.violation(
                    f"first frame after {why} was {record.command} {record.value}, not off"
                    + (" (heat first)" if heat_on else "")
                )
        proc = self.proc
        fault = _active_fault(proc.governor) if proc is not None else None
        if fault is None:
            self.fault_seen = None
        elif self.fault_seen is None:  # the first frame since the governor saw the fault
            self.fault_seen = fault
            self.fault_at = self.fault_at or self.clock()
            STATS[f"fault:{fault}"] += 1
            if not is_off_frame(record):
                self.violation(
                    f"first frame after the {fault} fault was {record.command} {record.value}"
                )

    def _report_delivered(self, frame: bytes) -> None:
        """The session is about to read this status: does it show a fault?"""
        report = self.decoded.get(frame)
        if report is None:
            try:
                report = self.decoded[frame] = codec.decode_status(self.profile, frame)
            except FootctlError:  # the governor sees nothing: nothing to act on
                self.unexpected_since = self.overtemp_since = None
                return
        proc = self.proc
        if proc is None:
            return
        if report.running and proc.up:
            self._first_sight()
        now = self.clock()
        asked = proc.governor.desired.heat or 0
        heat = report.heat or 0
        self._check_time()  # a status arrives every interval: check the clock-bound promises
        if _active_fault(proc.governor) is not None:  # flagged: it must switch off now
            self.unexpected_since = self.overtemp_since = None
            return
        if heat > asked:
            if self.unexpected_since is None:
                self.unexpected_since = now
        else:
            self.unexpected_since = None
        hot = (
            report.temperature is not None
            and heat > 0
            and report.temperature > self.exp_temp_c + OVERTEMP_MARGIN_C
        )
        if hot:
            if self.overtemp_since is None:
                self.overtemp_since = now
        else:
            self.overtemp_since = None

    def _check_time(self) -> None:
        """The time-based promises, at this instant (run every E and after each step)."""
        proc = self.proc
        if proc is None or self.device is None or not proc.up:
            return
        now = self.clock()
        if self.heat_since is not None:
            self._check_dose()
        if self.running_since is not None and not self.own_unseen:
            late = now - max(self.running_since + self.exp_session_s, self.reachable_since)
            if late > CAP_SLACK:
                self.violation(
                    f"massage on {late:.2f} s past the session cap {self.exp_session_s:g} s"
                )
        if self.device_on and not self.own_unseen:  # (unseen: not footctl's session)
            for source, (renewed, seconds) in self.leases.items():
                # the governor only has to act once the device is on
                late = now - max(renewed + seconds, self.reachable_since, self.on_since)
                if late > CAP_SLACK:
                    self.violation(
                        f"{source} lease ({seconds:g} s) ran out {late:.2f} s ago; still on"
                    )
            if self.owed_off_since is not None:
                late = now - max(self.owed_off_since, self.reachable_since)
                if late > RETURN_SLACK:
                    self.violation(f"a stop is owed for {late:.2f} s; still on")
        # (from when footctl could act on it: the link up again, its reports readable,
        # its loop running; a stall right after the reports came back, or a link that
        # dropped again before the off landed, delays the off as it delays every other
        # promise; while the link is down nobody can write it)
        back = (
            None
            if self.return_need is None or self.device.connection is None
            else max(self.return_need[1], self.reachable_since)
        )
        if self.return_need is not None and back is not None and now - back > RETURN_SLACK:
            self.violation(
                f"link back {now - back:.2f} s ago after {self.return_need[0]} expired; not off"
            )
        fault = _active_fault(proc.governor)
        for since, what in (
            (self.unexpected_since, "heat not asked for"),
            (self.overtemp_since, "over-temperature"),
        ):
            # (from when footctl could act on it: a loop stall delays every report)
            waited = None if since is None else now - max(since, self.reachable_since)
            if waited is not None and waited > FAULT_FLAG_S and fault is None:
                self.violation(f"{what} reported {waited:.2f} s ago; no fault flagged")
        if fault is None:
            self.fault_at = None
        elif self.fault_at is None:
            self.fault_at = now
        if self.fault_at is not None and self.device_on:
            # From the fault, or from when the massager came on again after it had been
            # switched off (its own button, with the heater still faulty).
            late = now - max(self.fault_at, self.reachable_since, self.on_since)
            if late > FAULT_OFF_S:
                self.violation(f"{fault} flagged {late:.2f} s ago; the device is still on")

    # --- rules: command sources ----------------------------------------------------------------

    def send(self, fields: dict[str, Any]) -> tuple[Reply | ErrorReply, bool]:
        """One request as a JSON line through the API's edge (``parse_request``), then to
        the owner, as the socket server does; (the reply, True if the edge let it in)."""
        assert self.proc is not None
        try:
            request = parse_request(json.dumps(fields))
        except UsageError as exc:
            STATS["refused_at_edge"] += 1
            return error_reply(exc), False
        return self.run(self.proc.owner.request(request)), True

    @precondition(lambda self: self.ready and self.proc is not None)
    @rule(data=st.data())
    def request(self, data: st.DataObject) -> None:
        assert self.proc is not None
        caps_ = self.profile.capabilities
        source = data.draw(st.sampled_from(SOURCES), "source")

        def level(levels: st.SearchStrategy[int], label: str) -> Any:
            # One request in ten sends something that is not a level (the API's edge).
            if data.draw(st.integers(0, 9), f"{label}_typed") == 0:
                return data.draw(st.sampled_from(CONFUSED), label)
            return data.draw(st.none() | levels, label)

        intensity: Any = level(
            st.integers(caps_.intensity.min - 1, caps_.intensity.max + 2), "intensity"
        )
        heat: Any = level(st.integers(0, caps_.max_heat_level + 1), "heat")
        modes = [m.name for m in caps_.modes]
        mode: Any = data.draw(st.none() | st.sampled_from([*modes, "no-such-mode", 3]), "mode")
        zone = None
        if caps_.zones is not None:
            zone = data.draw(st.none() | st.integers(caps_.zones.min, caps_.zones.max), "zone")
        device = data.draw(st.sampled_from([None, ADDRESS, self.profile.id]), "device")
        fields: dict[str, Any] = {"kind": "on", "source": source}
        for name, value in (("intensity", intensity), ("heat", heat), ("mode", mode),
                            ("zone", zone), ("device", device)):
            if value is not None:
                fields[name] = value
        if any(k in fields for k in ("intensity", "heat", "mode", "zone")):
            fields["kind"] = "set"
        governor = self.proc.governor
        typed = all(
            v is None or (type(v) is int and v >= 0) for v in (intensity, heat)
        ) and (mode is None or type(mode) is str)
        # (A massager its own button switched on, not seen yet: its report may reach the
        # governor first, and the request then joins that session; the cooldown is a
        # rest between sessions, not a refusal to join one.)
        had_session = governor._session_started is not None or self._unseen_own()
        wall_now, last_end = self.wall(), self.last_end_wall
        STATS["requests"] += 1
        # What the governor's pure core says of it (as the owner builds it from the
        # request), before anything is written: the expectations below follow it.
        unattended = source == "schedule"
        expected = Request(
            source=source, power=True, intensity=intensity, heat=heat, mode=mode, zone=zone,
            unattended=unattended,
        )
        refused = True
        if typed:
            try:
                governor.decide(expected)
            except (SafetyRefused, UsageError):
                pass
            else:
                refused = False
        owed, self_off = self.owed_off_since, self.self_off_since
        if not refused:
            self.owed_off_since = None  # a request the governor takes supersedes an owed stop
            self.self_off_since = None  # ... and may switch on what switched itself off
        reply, let_in = self.send(fields)
        if let_in and not typed:
            self.violation(f"the API's edge let a value of the wrong type in: {fields}")
        if isinstance(reply, ErrorReply):
            if reply.exit_code in (2, 4):  # refused (bad input, or safety): nothing changed
                STATS["refused"] += 1
                STATS[f"refused:{reply.reason or 'usage'}"] += 1
                self.owed_off_since = owed  # refused: still owed
                self.self_off_since = self_off
                if let_in and not refused and reply.exit_code == 2:
                    self.violation(f"decide accepted {expected} but the owner refused: {reply}")
                self._check_refusal(expected, reply)
            else:
                STATS["request_failed"] += 1
            return
        if refused:
            self.violation(f"decide refused {expected} but the owner accepted it")
        if source in ("mqtt", "tui"):
            # As the MQTT bridge and the TUI do: a session they keep running is leased.
            seconds = data.draw(st.sampled_from([None, 30.0, 90.0]), "lease_s")
            lease: dict[str, Any] = {"kind": "lease", "source": source}
            if seconds is not None:
                lease["seconds"] = seconds
            self.send(lease)
        target = governor.desired
        for name in ("intensity", "heat"):
            value = getattr(target, name)
            if value is not None and (type(value) is not int):
                self.violation(f"approved {name} {value!r} is not a level")
        if not had_session and last_end is not None:
            rested = wall_now - last_end
            left = self.exp_cooldown_s if rested < 0 else self.exp_cooldown_s - rested
            if left > 1e-6:
                self.violation(
                    f"a new session started {rested:.0f} s (wall) after the last ended, "
                    f"within the {self.exp_cooldown_s:g} s cooldown"
                )
        if target.intensity is not None and target.intensity > self.exp_intensity_max:
            self.violation(f"approved intensity {target.intensity} over the cap")
        if (target.heat or 0) > self.exp_heat_max:
            self.violation(f"approved heat {target.heat} over the allowed {self.exp_heat_max}")
        if unattended and (target.heat or 0) > min(self.exp_unattended, self.exp_heat_max):
            self.violation(f"unattended start approved heat {target.heat}")
        if (
            intensity is not None
            and type(intensity) is int
            and intensity > self.exp_intensity_max
            and (not self.caps.clamp or intensity > caps_.intensity.max)
        ):
            self.violation(f"over-cap intensity {intensity} was not refused")

    def _check_refusal(self, request: Request, exc: ErrorReply) -> None:
        caps_ = self.profile.capabilities
        if exc.exit_code != 4:
            return
        if exc.reason == "no_heat" and not self.caps.no_heat:
            self.violation("refused for no_heat without no_heat set")
        if not exc.message:
            self.violation(f"refusal {exc.reason} without a message")
        valid_intensity = request.intensity is None or (
            caps_.intensity.min <= request.intensity <= self.exp_intensity_max
        )
        if (
            self.caps.no_heat
            and (request.heat or 0) > 0
            and valid_intensity
            and exc.reason not in ("no_heat", "busy")  # (busy: a program runs, see Owner)
        ):
            self.violation(f"heat under no_heat refused as {exc.reason}, not no_heat")

    def _stop_fields(self, source: str, device: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {"kind": "stop", "source": source}
        if device is not None:
            fields["device"] = device
        return fields

    @precondition(lambda self: self.ready and self.proc is not None)
    @rule(
        source=st.sampled_from(SOURCES),
        device=st.sampled_from([None, ADDRESS, "shiatsu"]),
    )
    def stop(self, source: str, device: str | None) -> None:
        """A StopRequest, for every massager (no device: ``footctl stop``) or one."""
        assert self.proc is not None
        if device == "shiatsu":
            device = self.profile.id  # named by its profile, as a one-massager owner allows
        received = self.frames_received
        up = self.proc.up
        self.owed_off_since = self.clock()
        STATS["stops"] += 1
        reply, _ = self.send(self._stop_fields(source, device))
        if isinstance(reply, ErrorReply):
            self.violation(f"a stop was refused: {reply}")
            return
        if reply.notes:
            return  # not confirmed: owed, the off must land as soon as the link allows
        if up and self.frames_received == received:
            self.violation("stop wrote nothing")
        if (self.model.running or (self.model.heat and not self.rogue_toggles)) and not (
            self._unseen_own()
        ):
            # (Unseen: switched on by its own button while no report reached footctl; a
            # key press on a state nobody can see might switch it on instead: the physical
            # limit the README states. Its caps count from when it can be seen.)
            self.violation("stop returned but the device is still on")

    # --- rules: time, heartbeats, leases ----------------------------------------------------

    @precondition(lambda self: self.ready)
    @rule(
        seconds=st.one_of(
            st.floats(0.05, 20), st.floats(0.05, 20), st.floats(20, 200), st.floats(200, 1200)
        )
    )
    def advance(self, seconds: float) -> None:
        """Time passes; the owner's own watch task enforces the caps meanwhile."""
        self.run(asyncio.sleep(seconds))

    @precondition(lambda self: self.ready)
    @rule(seconds=st.sampled_from([3.0, 21.0, 61.0, 90.0, 601.0, 1900.0]))
    def loop_stall(self, seconds: float) -> None:
        """The whole event loop stalls (SIGSTOP then SIGCONT, a blocking call, a suspended
        machine): nothing of the process runs, time passes, then the loop resumes. Limits
        that ran out meanwhile (several at once, often) must all be acted on at once."""
        STATS["loop_stalls"] += 1
        self.clock.advance(seconds)
        self.stalled_until = self.clock()
        self.run(asyncio.sleep(0))

    @precondition(lambda self: self.ready)
    @rule(hours=st.sampled_from([-2.0, -0.25, 0.5]))
    def wall_clock_jump(self, hours: float) -> None:
        """The wall clock is set (NTP, a person, DST done wrong); monotonic time goes on."""
        STATS["wall_clock_jumps"] += 1
        self.wall_offset += hours * 3600

    @precondition(lambda self: self.ready and self.proc is not None)
    @rule(
        source=st.sampled_from(["mqtt", "tui"]),
        seconds=st.none() | st.sampled_from([30.0, 90.0]) | st.sampled_from(BAD_LEASES),
        release=st.booleans(),
    )
    def lease(self, source: str, seconds: Any, release: bool) -> None:
        """A remote source renews its lease (idle or not: a renewal can cross the end of
        a session), or hands it back (ReleaseRequest: the TUI's quit from a daemon, the
        MQTT bridge's clean shutdown)."""
        assert self.proc is not None
        STATS["releases" if release else "leases"] += 1
        if release:
            reply, _ = self.send({"kind": "release", "source": source})
            if isinstance(reply, ErrorReply):
                self.violation(f"a release was refused: {reply}")
            return
        fields: dict[str, Any] = {"kind": "lease", "source": source}
        if seconds is not None:
            fields["seconds"] = seconds
        before = self.leases.get(source)
        reply, let_in = self.send(fields)
        bad = seconds is not None and seconds not in (30.0, 90.0)
        if bad and (let_in or self.leases.get(source) != before):
            self.violation(f"a lease of {seconds!r} s got past the API's edge")
        if not bad and isinstance(reply, ErrorReply):
            self.violation(f"a lease was refused: {reply}")

    # --- rules: the link and the device ----------------------------------------------------

    @precondition(lambda self: self.ready and self.device is not None and self.device.in_range)
    @rule()
    def link_drop(self) -> None:
        assert self.device is not None
        device = self.device
        STATS["link_drops"] += 1

        async def drop() -> None:
            device.drop()

        self.run(drop())
        self.unexpected_since = self.overtemp_since = None

    @precondition(lambda self: self.ready and self.device is not None and not self.device.in_range)
    @rule()
    def link_return(self) -> None:
        assert self.device is not None
        self.device.back()

    @precondition(lambda self: self.ready)
    @rule(level=st.integers(0, 3), celsius=st.sampled_from([None, 44.0, 50.0, 60.0]))
    def heater_fault(self, level: int, celsius: float | None) -> None:
        """The heater sticks at ``level`` (0 repairs it), optionally overheating."""
        top = self.profile.capabilities.max_heat_level
        if level > top:
            return
        STATS["rogue_heat" if level else "heater_repaired"] += 1

        async def set_fault() -> None:
            self.model.set_fault("rogue_celsius", celsius if level else None)
            self.model.set_fault("rogue_heat", level or None)

        self.run(set_fault())

    @precondition(lambda self: self.ready)
    @rule(garbage=st.booleans(), truncate=st.booleans())
    def notification_faults(self, garbage: bool, truncate: bool) -> None:
        STATS["garbled_notifications"] += int(garbage) + int(truncate)
        if self.profile.capabilities.command_style == "keys":
            if garbage or truncate:
                self.sighted_at = math.inf
            elif self.sighted_at == math.inf:
                self.sighted_at = self.clock()
        self.model.set_fault("garbage", garbage)
        self.model.set_fault("truncate", truncate)

    @precondition(lambda self: self.ready and self.device is not None and self.device.connected)
    @rule()
    def spurious_notification(self) -> None:
        assert self.device is not None

        async def notify() -> None:
            assert self.device is not None
            self.device.notify_soon()

        self.run(notify())

    def _switched_itself_off(self) -> None:
        if self.device_on and self.proc is not None:
            self.self_off_since = self.clock()

    @precondition(lambda self: self.ready)
    @rule()
    def device_reboot(self) -> None:
        """A power blip: the device comes back off (the link survives)."""
        STATS["device_reboots"] += 1

        async def reboot() -> None:
            self._switched_itself_off()
            self.model.reset()

        self.run(reboot())

    @precondition(lambda self: self.ready and self.device is not None and self.device.in_range)
    @rule(away=st.sampled_from([0.0, 0.04, 0.3, 3.0]))
    def power_cycle(self, away: float) -> None:
        """A power cut or an unplug: the link drops with the device, which comes back off
        ``away`` seconds later (at once: the reconnect finds it already back)."""
        assert self.device is not None
        device = self.device
        STATS["power_cycles"] += 1

        async def cycle() -> None:
            self._switched_itself_off()
            device.drop()
            self.model.reset()
            await asyncio.sleep(away)
            device.back()

        self.run(cycle())
        self.unexpected_since = self.overtemp_since = None

    @precondition(lambda self: self.ready and self.device is not None and self.device.in_range)
    @rule(gaps=st.lists(st.sampled_from([0.0, 0.01, 0.05, 0.06, 0.2, 0.3, 0.6]), max_size=4))
    def link_flap(self, gaps: list[float]) -> None:
        """The link drops and returns again and again, at moments that overlap the
        session's reconnects (its backoff: 0.05, 0.2, 0.5 s; its wait for a report after
        connecting: 0.6 s)."""
        assert self.device is not None
        device = self.device
        STATS["link_flaps"] += 1

        async def flap() -> None:
            device.drop()
            for index, gap in enumerate(gaps):
                await asyncio.sleep(gap)
                if index % 2 == 0:
                    device.back()
                else:
                    device.drop()
            device.back()
            await asyncio.sleep(1.5)

        self.run(flap())
        self.unexpected_since = self.overtemp_since = None

    @precondition(lambda self: self.ready and self.proc is not None)
    @rule(
        delay=st.sampled_from([0.0, 0.03, 0.05, 0.06, 0.25, 0.5, 0.7]),
        source=st.sampled_from(SOURCES),
        with_request=st.booleans(),
    )
    def stop_during_connect(self, delay: float, source: str, with_request: bool) -> None:
        """A StopRequest arrives while the session is reconnecting (or about to), and
        maybe while a request waits for that connect in the owner: the stop preempts
        it, and nothing that request meant to write may follow the stop."""
        assert self.proc is not None and self.device is not None
        proc, device = self.proc, self.device
        STATS["stops_during_connect"] += 1
        fields = self._stop_fields(source, None)
        if with_request:
            with contextlib.suppress(SafetyRefused, UsageError):
                proc.governor.decide(Request(source="cli", power=True))
                # it supersedes an owed stop (until the next), and may switch on what
                # switched itself off
                self.self_off_since = self.owed_off_since = None

        async def scenario() -> None:
            pending = None
            if device.in_range:
                device.drop()
                device.back()
            if with_request:
                request = parse_request(json.dumps({"kind": "on", "source": "cli"}))
                pending = asyncio.ensure_future(proc.owner.request(request))
            await asyncio.sleep(delay)
            self.owed_off_since = self.clock()
            await proc.owner.request(parse_request(json.dumps(fields)))
            if pending is not None:
                await pending

        self.run(scenario())
        self.unexpected_since = self.overtemp_since = None

    @precondition(lambda self: self.ready and not self.device_on)
    @rule()
    def own_power_button(self) -> None:
        """Someone presses the massager's own power button: it runs without footctl
        having asked. Idle or not, footctl must supervise it (session cap, heartbeat)."""
        STATS["own_power_button"] += 1
        key = "power" if "power" in self.profile.commands else "press_power"
        value = 1 if key == "power" else None

        async def press() -> None:
            self.own_doing = True
            self.self_off_since = None  # a person drives it now
            self.own_on = True
            self.own_unseen = True  # until a report shows footctl that it runs
            # It is off (the precondition): nothing footctl owed is left to do.
            self.owed_off_since = None
            self.return_need = None
            try:
                self.model.apply(Command(key, value))  # type: ignore[arg-type]
            finally:
                self.own_doing = False
            if self.device is not None:
                self.device.notify_soon()

        self.run(press())

    @precondition(lambda self: self.ready and self.proc is not None)
    @rule(
        source=st.sampled_from(["program", "schedule"]),
        program=st.sampled_from(PROGRAMS),
    )
    def run_program(self, source: str, program: str) -> None:
        """A RunRequest: a shipped program starts now (a schedule's: unattended, heat at
        most the unattended level); its steps reach the governor in the background."""
        assert self.proc is not None
        STATS["programs"] += 1
        owed, self_off = self.owed_off_since, self.self_off_since
        self.owed_off_since = self.self_off_since = None  # (until refused: see below)
        reply, _ = self.send({"kind": "run", "source": source, "program": program})
        if isinstance(reply, ErrorReply):
            STATS[f"program_refused:{reply.reason or reply.error}"] += 1
            self.owed_off_since, self.self_off_since = owed, self_off
            return
        # (Its sessions are checked where they start: the governor's cooldown refuses the
        # first step of one started within it. The owner's own start check reads the
        # config's cooldown without the floor, so such a start is accepted and then fails
        # on its first step: reported, not a safety violation.)
        STATS["programs_started"] += 1

    # --- rules: the process ----------------------------------------------------------------

    def _unseen_own(self) -> bool:
        """The massager runs by its own button and footctl has not seen it run: no
        session of footctl's, so no crash marker is owed."""
        proc = self.proc
        return self.own_on and (proc is None or proc.governor._session_started is None)

    def _marker_present(self) -> bool:
        return any(m.address == ADDRESS for m in self.markers.all())

    @precondition(lambda self: self.ready and self.proc is not None)
    @rule()
    def crash(self) -> None:
        """SIGKILL: nothing runs any more; the marker stays behind."""
        assert self.proc is not None
        STATS["crashes"] += 1
        if self.device_on and not self._marker_present() and not self._unseen_own():
            self.violation("the process died with the device on and no crash marker")
        self._kill(self.proc)

    @precondition(lambda self: self.ready and self.proc is not None)
    @rule()
    def shutdown(self) -> None:
        """A clean exit (SIGTERM): everything off under its own timeout, then gone."""
        assert self.proc is not None
        proc = self.proc
        up = proc.up
        STATS["shutdowns"] += 1
        self.run(proc.owner.close())  # as the daemon's SIGTERM handler does
        if (
            up
            and not self.blind
            and (self.model.running or (self.model.heat and not self.rogue_toggles))
        ):
            self.violation("clean shutdown left the device on")
        if self.device_on and not self._marker_present() and not self._unseen_own():
            self.violation("shutdown left the device on and no crash marker")
        self._kill(proc)

    @precondition(
        lambda self: (
            self.ready
            and self.proc is None
            and self.device is not None
            and self.device.in_range
            and self.device.connection is None
        )
    )
    @rule()
    def restart(self) -> None:
        """The next footctl start: crash recovery first, then a fresh session."""
        STATS["restarts"] += 1
        self._start_process(recover=True)

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def promises_hold(self) -> None:
        if not self.ready:
            return
        self._check_time()
        proc = self.proc
        if proc is not None:
            desired = proc.governor.desired
            if (desired.heat or 0) > self.exp_heat_max:
                self.violation(f"the governor wants heat {desired.heat}")
            if desired.intensity is not None and desired.intensity > self.exp_intensity_max:
                self.violation(f"the governor wants intensity {desired.intensity}")
            if self.device_on and not self._marker_present() and not self._unseen_own():
                # (a massager switched on by its own button that footctl cannot see yet,
                # its reports lost, is not footctl's session)
                self.violation("the device is on and there is no crash marker")
        if self.violations and proc is not None:
            events = "\n  ".join(f"{t - 1000:.2f} {m}" for t, m in list(proc.governor.events)[-25:])
            frames = "\n  ".join(
                f"{f.time - 1000:.2f} {f.outcome} {f.command} {f.value}"
                for f in list(self.model.frames)[-12:]
            )
            self.violations.append(f"governor events:\n  {events}\ndevice frames:\n  {frames}")
        assert not self.violations, "\n".join(self.violations)


def _active_fault(governor: SafetyGovernor) -> str | None:
    """The heat fault the governor is handling: flagged, and the heater not seen clean
    since (``fault`` itself stays as the last one, for the exit code)."""
    return governor.fault if governor._fault_latched else None


def _machine(pid: str) -> type[SafetyMachine]:
    return type(f"Safety_{pid.replace('-', '_')}", (SafetyMachine,), {"profile_id": pid})


SETTINGS = settings(
    max_examples=PER_PROFILE,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Thousands of sessions: keep their INFO/WARNING chatter out of the report (and
    memoize the codec's pure functions: the same frames repeat all run long)."""
    log = logging.getLogger("footctl")
    level = log.level
    log.setLevel(logging.CRITICAL)
    with memoized_codec():
        yield
    log.setLevel(level)


EmsV2 = SETTINGS(_machine("ems-v2"))
ShiatsuAa55 = SETTINGS(_machine("shiatsu-aa55"))
ShiatsuKeys = SETTINGS(_machine("shiatsu-keys"))

TestStatefulEmsV2 = EmsV2.TestCase
TestStatefulShiatsuAa55 = ShiatsuAa55.TestCase
TestStatefulShiatsuKeys = ShiatsuKeys.TestCase

# Every version-1 profile has its machine here. The version-2 profiles (issue #12) do not
# yet: the machine's off-frame and key-press checks speak version-1 command names (see
# safety_harness.is_off_frame); they are covered by tests/test_session_v2.py and
# tests/test_planner.py until a machine that reads footctl.device.profile.roles is added.
V1_PROFILES = sorted(pid for pid, p in PROFILES.items() if p.schema_version == 1)
assert sorted(SHIPPED) == V1_PROFILES, "a new version-1 profile needs its own state machine here"
assert governor_module.WATCH_INTERVAL_S == E


def test_zz_examples_run_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """Print the number of examples run (and what they did); fail if too few ran."""
    ran = [pid for pid in SHIPPED if STATS[f"examples:{pid}"]]
    if not ran:
        pytest.skip("the state machines were not selected")
    with capsys.disabled():
        detail = ", ".join(f"{k}={v}" for k, v in sorted(STATS.items()) if ":" in k or k)
        print(f"\nstateful safety: {STATS['examples']} examples run ({detail})")
    for pid in ran:
        assert STATS[f"examples:{pid}"] >= PER_PROFILE, pid
