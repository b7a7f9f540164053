"""One DeviceSession per massager: the connection lifecycle and the reported state.

The session connects (with retry), reconnects with backoff after an unexpected
disconnect, keeps the link alive when the profile asks, turns notifications into
:class:`DeviceState`, and knows how to reach a :class:`Target` with absolute
commands or key presses. It never decides policy: the SafetyGovernor does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from footctl.device import codec, planner
from footctl.device.profile.schema import CommandName, Profile
from footctl.device.transport.ble import ADVERT_WATCH_S, BleLink, Link, Radio, Seen, Watchable, scan
from footctl.errors import (
    CodecError,
    ConfirmTimeout,
    DeviceUnavailable,
    FootctlError,
    SafetyRefused,
    TransportError,
)
from footctl.safety.limits import CEILING_SESSION_S
from footctl.state import Command, DeviceState, Report

_LOG = logging.getLogger(__name__)

# How long to look for the massager before giving up.
SCAN_TIMEOUT_S = 10.0

# How long a device may take to confirm a new state by notification. Real devices
# notify within ~100 ms; key-press devices need one round trip per press.
CONFIRM_TIMEOUT_S = 5.0

# Waiting for the report after one key press before asking again.
KEY_PRESS_WAIT_S = 0.6

# A key-press target never needs more presses than this (modes x levels, bounded).
MAX_KEY_PRESSES = 64

# A stop is re-sent at this interval until the device confirms it.
STOP_RESEND_S = 0.5

# A report that arrives this long after a key press shows the press's effect (a report
# already on its way when the key was written arrives within a few ms): from then on the
# key's setting counts as refreshed and may be pressed again.
PRESS_SETTLE_S = 0.3

# The last frames written, kept for diagnostics only (a list grew by ~17,000 keepalive
# frames a day per massager).
FRAMES_KEPT = 256

# Reconnect backoff after an unexpected disconnect: quick first, then slower,
# so a massager that stepped out of range for a moment is back within a second.
# With a link that can watch for the device's advertisements, the session waits for
# one and connects at once; the backoff then only spaces out *failed* attempts.
RECONNECT_BACKOFF_S = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Target:
    """A wanted state, already approved by the governor. ``None`` leaves a field alone."""

    running: bool
    intensity: int | None = None
    heat: int | None = None
    mode: str | None = None
    zone: int | None = None
    timer: int | None = None  # the device's own timer, minutes (version-2 profiles)


StateCallback = Callable[[DeviceState], None]


class Superseded(SafetyRefused):
    """An apply was overtaken by a stop."""


class DeviceSession:
    """The connection to one massager and what it reports."""

    def __init__(
        self,
        profile: Profile,
        radio: Radio,
        *,
        address: str | None = None,
        name: str | None = None,
        scan_timeout: float = SCAN_TIMEOUT_S,
        on_progress: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.profile = profile
        self._sleep = sleep
        # The device's clock for its own timing (ready after power-on, falling asleep,
        # its timer); the loop's (monotonic) clock unless a test moves a fake one.
        self._clock = clock
        self.radio = radio
        self._want_address = address
        self._want_name = name
        self._scan_timeout = scan_timeout
        self._progress = on_progress or (lambda _msg: None)
        self._link: Link | None = None
        self._state = DeviceState(address=address or "", profile_id=profile.id)
        self._callbacks: list[StateCallback] = []
        self._link_callbacks: list[Callable[[bool], None]] = []
        self._changed = asyncio.Event()
        self._connect_lock = asyncio.Lock()
        self._op_lock = asyncio.Lock()
        # Offs overtake applies (no _op_lock), but never each other: on a key-press device
        # two interleaved offs both pressed power on the same report and switched the
        # massager back on (found by tests/test_safety_stateful.py).
        self._off_lock = asyncio.Lock()
        # Bumped by every all-off: an apply that started before it must not write
        # again, or a late "power on" could undo the stop.
        self._off_epoch = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.bad_frames = 0
        self.frames_written: collections.deque[bytes] = collections.deque(maxlen=FRAMES_KEPT)
        # Version 2: settings pressed and not yet seen moved by a report (setting -> the
        # loop time of the press), key presses counted per setting, the wake state and
        # the end of the device's own timer (for a device without status).
        self._unconfirmed: dict[str, tuple[float, object]] = {}
        self._ready_at = 0.0  # after a power-on, the device listens from this loop time
        self.presses: dict[str, int] = {}
        self._awake = False
        self._last_write_at: float | None = None
        self._timer_ends_at: float | None = None
        self._timer_set: int | None = None  # the device timer set since it switched on

    # --- state -------------------------------------------------------------

    @property
    def state(self) -> DeviceState:
        """The latest known state."""
        return self._state

    @property
    def busy(self) -> bool:
        """True while an apply is writing and waiting for confirmation."""
        return self._op_lock.locked()

    @property
    def connected(self) -> bool:
        """True while the link is up."""
        return self._link is not None and self._link.is_connected

    def preempt(self) -> None:
        """Overtake every apply in flight: none of them writes again (as a stop does).
        The governor calls this before a safety heat-off, so the rest of a request's
        writes cannot follow it."""
        self._off_epoch += 1

    def register_callback(self, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback`` with every new state; returns the unsubscribe function."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def register_link_callback(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``callback(connected)`` when the link goes up or down (not the first connect)."""
        self._link_callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._link_callbacks.remove(callback)

        return unsubscribe

    def _set_state(self, state: DeviceState) -> None:
        if state == self._state:
            return
        self._state = state
        for callback in list(self._callbacks):
            try:
                callback(state)
            except Exception:
                _LOG.exception("state callback failed")
        self._wake()

    def _wake(self) -> None:
        # Waiters hold the old event; setting it wakes them all, the new one waits anew.
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(
            coro, name=f"footctl[{self._state.address or self.profile.id}].{what}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_notify(self, data: bytes) -> None:
        try:
            report = codec.decode_status(self.profile, data)
        except CodecError as exc:
            self.bad_frames += 1
            _LOG.debug("%s: ignored notification %s: %s", self._state.address, data.hex(), exc)
            return
        self._apply_report(report)

    def _apply_report(self, report: Report) -> None:
        s = self._state
        if self._unconfirmed:
            now = asyncio.get_running_loop().time()
            for setting, (pressed_at, old) in list(self._unconfirmed.items()):
                value = getattr(report, "running" if setting == "power" else setting, None)
                if now - pressed_at >= PRESS_SETTLE_S or (value is not None and value != old):
                    del self._unconfirmed[setting]
        self._set_state(
            dataclasses.replace(
                s,
                running=s.running if report.running is None else report.running,
                intensity=s.intensity if report.intensity is None else report.intensity,
                heat=s.heat if report.heat is None else report.heat,
                mode=s.mode if report.mode is None else report.mode,
                zone=s.zone if report.zone is None else report.zone,
                timer=s.timer if report.timer is None else report.timer,
                battery=s.battery if report.battery is None else report.battery,
                temperature=s.temperature if report.temperature is None else report.temperature,
                assumed=False,
                reports=s.reports + 1,
            )
        )

    # --- connection ----------------------------------------------------------

    def _wants(self, seen: Seen) -> bool:
        if self._want_address is not None:
            return seen.address.lower() == self._want_address.lower()
        if self._want_name is not None:
            return (seen.name or "") == self._want_name
        return seen.profile is not None and seen.profile.id == self.profile.id

    async def find(self) -> Seen:
        """Scan until the wanted massager shows up."""
        what = self._want_address or self._want_name or f"a {self.profile.id} massager"
        self._progress(f"scanning for {what} on {self.radio.label}...")
        found = await scan(
            self.radio, {self.profile.id: self.profile}, self._scan_timeout, until=self._wants
        )
        for seen in found:
            if self._wants(seen):
                return seen
        raise DeviceUnavailable(
            f"{what} not found within {self._scan_timeout:g} s ({len(found)} other device(s) seen)",
            advice="switch the massager on and bring it within a few metres; "
            "'footctl scan' lists what is in range",
        )

    async def connect(self) -> None:
        """Find and connect; a second call while connected does nothing."""
        async with self._connect_lock:
            if self.connected:
                return
            seen = await self.find()
            self._progress(f"connecting to {seen.name or seen.address} ({seen.address})...")
            link = BleLink(self.radio, self.profile, seen.device, self._on_notify, self._lost)
            await link.connect()
        await self.attach(link, seen.address, seen.name or "")

    def on_notify(self, data: bytes) -> None:
        """Feed one notification (the link calls this)."""
        self._on_notify(data)

    def on_link_lost(self) -> None:
        """The link dropped unexpectedly (the link calls this)."""
        self._lost()

    async def attach(self, link: Link, address: str, name: str = "") -> None:
        """Take over a connected link: learn the state, start the keepalive. A link
        must call :meth:`on_notify` and :meth:`on_link_lost`."""
        self._link = link
        self._closing = False
        self._set_state(
            dataclasses.replace(self._state, address=address, name=name, connected=True)
        )
        _LOG.info("%s: connected", address)
        self._awake = False
        before = self._state.reports
        await self._send_wake()
        await self._query()
        if self.profile.capabilities.reports_status:
            await self._wait_report(before, KEY_PRESS_WAIT_S)
        if self.profile.capabilities.keepalive_seconds:
            self._spawn(self._keepalive(), "keepalive")

    def _lost(self) -> None:
        # What the device does while away is unknown: nothing we knew is confirmed now.
        self._set_state(dataclasses.replace(self._state, connected=False, assumed=True))
        for callback in list(self._link_callbacks):
            callback(False)
        if not self._closing:
            self._spawn(self._reconnect(), "reconnect")

    async def _reconnect(self) -> None:
        attempt = failures = 0
        while not self._closing:
            link = self._link
            if link is None:
                return
            # With a link that can watch: connect when the device is heard again, as
            # Home Assistant's Bluetooth integrations do, not on a timer. The backoff
            # spaces out attempts that failed on a device that *was* heard (it refuses,
            # or drops during setup); a blind attempt after a silent watch is no
            # failure of the device, so a long absence never grows the backoff.
            heard = False
            if isinstance(link, Watchable):
                if failures:
                    await self._sleep(self._backoff(failures - 1))
                try:
                    heard = await link.wait_advertised(ADVERT_WATCH_S)
                except FootctlError as exc:  # cannot scan now: fall back to the timer
                    _LOG.info("%s: cannot watch for adverts: %s", self._state.address, exc)
                    await self._sleep(self._backoff(attempt))
                if not heard:
                    _LOG.debug("%s: not heard; trying to connect anyway", self._state.address)
            else:
                await self._sleep(self._backoff(attempt))
                heard = True  # nothing to tell: every failure backs off
            attempt += 1
            if self._link is not link or self._closing:
                return
            try:
                async with self._connect_lock:
                    await link.connect()
            except FootctlError as exc:
                failures += heard
                _LOG.info("%s: reconnect attempt %d failed: %s", self._state.address, attempt, exc)
                continue
            _LOG.warning("%s: reconnected after %d attempt(s)", self._state.address, attempt)
            self._set_state(dataclasses.replace(self._state, connected=True))
            # Learn what the device is doing now before anyone acts on the old state.
            self._awake = False
            before = self._state.reports
            await self._send_wake()
            await self._query()
            if self.profile.capabilities.reports_status:
                await self._wait_report(before, KEY_PRESS_WAIT_S)
            for callback in list(self._link_callbacks):
                callback(True)
            return

    @staticmethod
    def _backoff(index: int) -> float:
        return RECONNECT_BACKOFF_S[min(index, len(RECONNECT_BACKOFF_S) - 1)]

    async def _keepalive(self) -> None:
        interval = self.profile.capabilities.keepalive_seconds or 0
        while not self._closing:
            await self._sleep(interval)
            if self.connected:
                # A keepalive only ever asks (or sends the profile's keepalive frame);
                # it never replays a command.
                keepalive = self.profile.connection.keepalive
                if keepalive is None:
                    await self._query()
                else:
                    with contextlib.suppress(TransportError):
                        await self._write_v2(Command(keepalive))

    async def _query(self) -> None:
        if "query" not in self.profile.commands or not self.connected:
            return
        try:
            if self.profile.is_v2:
                await self._write_v2(Command("query"))  # its endpoint, after a wake
            else:
                await self._write(Command("query"))
        except TransportError as exc:
            _LOG.debug("query failed: %s", exc)

    def _check_epoch(self, epoch: int | None) -> None:
        """Raise :class:`Superseded` if a stop came after the request of ``epoch`` began
        (None: not a request's write, never superseded)."""
        if epoch is not None and epoch != self._off_epoch:
            raise Superseded(
                "superseded_by_stop", "the request was overtaken by a stop; nothing more written"
            )

    async def _write(self, command: Command, epoch: int | None = None) -> None:
        self._check_epoch(epoch)
        link = self._link
        if link is None:
            raise TransportError(f"{self.profile.id}: not connected")
        frame = codec.encode(self.profile, command)
        before = self._state.reports
        await link.write(frame)
        self.frames_written.append(frame)
        if command.name == "query" or command.name.startswith("press_"):
            return  # key presses keep their own belief (see _press)
        if not self.profile.capabilities.reports_status or self._state.reports == before:
            # Until a report says otherwise, believe the write took (as *assumed*, never
            # a confirmation): the ramp steps on from what was last written, not from a
            # stale report. With notifications lost, stepping on from the stale report
            # jumped intensity by two levels (found by the 10,000-example soak).
            self._assume(command)

    def _assume(self, command: Command) -> None:
        caps = self.profile.capabilities
        s = self._state
        value = command.value
        # One replace with everything believed (this runs after every write).
        changed: dict[str, Any] = {}
        if command.name == "power" and value and not s.running:
            # Powering on starts at the lowest level (as _pressed assumes for keys): the
            # level from before the last off made the ramp step on from it and jump
            # (found by the 10,000-example soak).
            changed = {"running": True, "intensity": caps.intensity.min}
        elif command.name == "power":
            changed = {"running": bool(value), "heat": s.heat if value else 0}
        elif command.name == "stop":
            changed = {"running": False, "heat": 0}
        elif command.name == "intensity":
            changed = {"intensity": value}
        elif command.name == "heat":
            changed = {"heat": next((h.level for h in caps.heat_levels if h.wire == value), 0)}
        elif command.name == "mode":
            changed = {"mode": next((m.name for m in caps.modes if m.code == value), None)}
        elif command.name == "zone":
            changed = {"zone": value}
        self._set_state(dataclasses.replace(s, assumed=True, **changed))

    async def close(self) -> None:
        """Disconnect on purpose and stop background tasks."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        link, self._link = self._link, None
        if link is not None:
            await link.disconnect()
        self._set_state(dataclasses.replace(self._state, connected=False))

    async def __aenter__(self) -> DeviceSession:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- reaching a target -------------------------------------------------------

    def matches(self, target: Target, state: DeviceState | None = None) -> bool:
        """True if ``state`` (default: the current one) satisfies ``target``."""
        s = state or self._state
        if not target.running:
            return not s.running and s.heat == 0
        return (
            s.running
            and (target.intensity is None or s.intensity == target.intensity)
            and (target.heat is None or s.heat == target.heat)
            and (target.mode is None or s.mode == target.mode)
            and (target.zone is None or s.zone == target.zone)
        )

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after a state change, or ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = self._changed
                    if predicate():
                        return True
                    await event.wait()
        except TimeoutError:
            return predicate()

    async def _wait_report(self, after: int, timeout: float) -> bool:
        return await self._wait_for(lambda: self._state.reports > after, timeout)

    async def apply(
        self, target: Target, timeout: float = CONFIRM_TIMEOUT_S, *, power_on: bool = True
    ) -> DeviceState:
        """Drive the device to ``target`` and wait until it confirms (or assume, for
        devices without status).

        ``power_on=False`` (a heat-off) drives a massager that runs and never switches
        one on: found off, or switching off meanwhile (a reboot, its own button), it is
        done, off being heat off too. (A heat-off's target says ``running``; on a
        key-press massager that rebooted during it, the next key was power, and an
        absolute one with lost reports got ``power 1``: both drove a massager that had
        switched itself off back on; found by the 10,000-example soak.)"""
        if not target.running:
            return await self.all_off(timeout)
        epoch = self._off_epoch
        loop = asyncio.get_running_loop()
        async with self._op_lock:
            deadline = loop.time() + timeout  # one budget for the writes and the confirmation
            if self.profile.is_v2:
                await self._apply_v2(target, deadline, epoch, power_on)
            elif self.profile.capabilities.command_style == "keys":
                await self._apply_keys(target, deadline, epoch, power_on)
            else:
                await self._apply_absolute(target, timeout, epoch, power_on)
            remaining = max(0.0, deadline - loop.time())
            off = Target(running=False)

            def done() -> bool:
                return self.confirmed(target) or (not power_on and self.confirmed(off))

            if not await self._wait_for(done, remaining):
                raise ConfirmTimeout(
                    f"the massager did not confirm {_describe(target)} within {timeout:g} s "
                    f"(it reports {_describe_state(self._state)})",
                    advice="it may be out of range or busy; the state shown is what it last "
                    "reported",
                )
            return self._state

    def _absolute_commands(self, target: Target) -> list[Command]:
        caps = self.profile.capabilities
        s = self._state
        out: list[Command] = []
        heat_cmd: list[Command] = []
        if target.heat is not None and (s.assumed or s.heat != target.heat):
            wire = 0
            if target.heat:
                wire = next(h.wire for h in caps.heat_levels if h.level == target.heat)
            heat_cmd = [Command("heat", wire)]
        cooling = target.heat is not None and target.heat < s.heat
        if cooling:
            out += heat_cmd  # heat goes down before anything else
        if not s.running or s.assumed:
            out.append(Command("power", 1))
        if target.mode is not None and (s.assumed or s.mode != target.mode or not s.running):
            mode = caps.mode_named(target.mode)
            if mode is not None:
                out.append(Command("mode", mode.code))
        if target.intensity is not None and (
            s.assumed or s.intensity != target.intensity or not s.running
        ):
            out.append(Command("intensity", target.intensity))
        if target.zone is not None and "zone" in self.profile.commands:
            out.append(Command("zone", target.zone))
        if not cooling:
            out += heat_cmd
        return out

    async def _apply_absolute(
        self, target: Target, timeout: float, epoch: int, power_on: bool
    ) -> None:
        commands = self._absolute_commands(target)
        if not power_on:
            commands = [c for c in commands if c.name != "power"]
        for index, command in enumerate(commands):
            await self._write(command, epoch)
            # Power-on resets intensity/mode on most devices: wait until it is on
            # before the next command so the next one is not overridden.
            if (
                command.name == "power"
                and index + 1 < len(commands)
                and self.profile.capabilities.reports_status
            ):
                await self._wait_for(lambda: self._state.running, min(timeout, KEY_PRESS_WAIT_S))

    def _next_key(self, target: Target) -> CommandName | None:
        s = self._state
        caps = self.profile.capabilities
        if target.heat is not None and target.heat < s.heat and s.running:
            return "press_heat"
        if not s.running:
            return "press_power"
        if target.mode is not None and s.mode != target.mode and caps.mode_named(target.mode):
            return "press_mode"
        if target.intensity is not None and s.intensity is not None:
            if s.intensity < target.intensity:
                return "press_intensity_up"
            if s.intensity > target.intensity:
                return "press_intensity_down"
        if target.heat is not None and s.heat != target.heat:
            return "press_heat"
        return None

    async def _press(self, key: CommandName, epoch: int | None = None) -> bool:
        """Press one key and wait until the field it moves has changed; a periodic
        report that predates the press must not count as its result."""
        field = _KEY_FIELD[key]
        old = getattr(self._state, field)
        before = self._state.reports
        off_epoch = self._off_epoch

        def moved() -> bool:
            return self._state.reports > before and bool(getattr(self._state, field) != old)

        def settled() -> bool:
            # A newer stop overtakes the wait: it reads the state afresh and presses what
            # that shows. (A heat-off's press on a stuck heater waited out its 2 x 0.6 s
            # holding the off lock, and the session cap's stop after a loop stall went
            # out 0.6 s late; found by the 10,000-example soak.)
            return moved() or self._off_epoch != off_epoch

        believed = dataclasses.replace(self._pressed(key), assumed=True)
        await self._write(Command(key), epoch)
        if self._state.reports == before:
            # Keys toggle, so until a report shows what the press did, everything else
            # must build on it: believe it took, as *assumed* (never a confirmation).
            # Without this a concurrent stop "confirmed" off from the report before the
            # press and cleared the crash marker of a massager the press had switched on,
            # and with notifications lost a re-sent stop pressed power again on the stale
            # state and switched a stopped massager back on (all found by
            # tests/test_safety_stateful.py).
            self._set_state(believed)
        await self._wait_for(settled, KEY_PRESS_WAIT_S)
        if moved() or self._off_epoch != off_epoch:
            return moved()
        await self._query()
        await self._wait_for(settled, KEY_PRESS_WAIT_S)
        return moved()

    def _pressed(self, key: CommandName) -> DeviceState:
        """The state after ``key``, as the device's keys work (see virtual/model.py)."""
        s = self._state
        caps = self.profile.capabilities
        if key == "press_power":
            if s.running:
                return dataclasses.replace(s, running=False, heat=0)
            first = caps.modes[0].name
            return dataclasses.replace(
                s, running=True, intensity=caps.intensity.min, heat=0, mode=first
            )
        if not s.running:
            return s  # a device that is off ignores every key but power
        if key == "press_heat":
            return dataclasses.replace(s, heat=0 if s.heat >= caps.max_heat_level else s.heat + 1)
        level = s.intensity if s.intensity is not None else caps.intensity.min
        if key == "press_intensity_up":
            return dataclasses.replace(s, intensity=min(caps.intensity.max, level + 1))
        if key == "press_intensity_down":
            return dataclasses.replace(s, intensity=max(caps.intensity.min, level - 1))
        names = [m.name for m in caps.modes]
        index = names.index(s.mode) if s.mode in names else -1
        return dataclasses.replace(s, mode=names[(index + 1) % len(names)])

    def confirmed(self, target: Target) -> bool:
        """True if the device has confirmed ``target``: it matches, and (for a device
        that reports status) what matches was reported, not assumed."""
        assumed = self._state.assumed and self.profile.capabilities.reports_status
        return self.matches(target) and not assumed

    async def _apply_keys(
        self, target: Target, deadline: float, epoch: int, power_on: bool
    ) -> None:
        # ``deadline`` is on the loop's clock, as every other wait here (the same as
        # time.monotonic in production; a test's virtual-time loop moves only this one).
        loop = asyncio.get_running_loop()
        if self._state.reports == 0 or self._state.assumed:
            before = self._state.reports
            await self._query()
            if not await self._wait_report(before, KEY_PRESS_WAIT_S):
                raise self._blind()
        for _ in range(MAX_KEY_PRESSES):
            key = self._next_key(target)
            if key is None or loop.time() > deadline or (key == "press_power" and not power_on):
                return
            if not await self._press(key, epoch):
                self._check_epoch(epoch)
                # Keys toggle: a press whose effect we cannot see must not be followed by
                # another. Either no report came (the next press would build on a guess:
                # a chain of them stepped intensity past the ramp), or the device reported
                # and the key's field did not move (a heater stuck on hides the heat
                # level; pressing again cycled it). Both found by
                # tests/test_safety_stateful.py.
                if self._state.assumed:
                    raise self._blind()
                raise ConfirmTimeout(
                    f"the massager did not respond to its {key.removeprefix('press_')} key "
                    f"(it reports {_describe_state(self._state)})",
                    advice="check the massager; switch it off by hand if it keeps running",
                )

    def _blind(self) -> ConfirmTimeout:
        return ConfirmTimeout(
            "the massager's status reports are not arriving, and footctl does not press "
            "its keys without seeing what they did",
            advice="move closer or restart the massager; switch it off by hand if it runs",
        )

    async def all_off(self, timeout: float = CONFIRM_TIMEOUT_S) -> DeviceState:
        """Everything off (heat first, then motor). Always sent, whatever the believed
        state, and re-sent until the device confirms or ``timeout`` passes."""
        self._off_epoch += 1
        self._wake()  # a press an older off waits on gives way to this one (see _press)
        off = Target(running=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_error: FootctlError | None = None
        while True:
            try:
                async with self._off_lock:
                    await self._send_off()
                last_error = None
            except TransportError as exc:
                last_error = exc
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if last_error is not None:
                # The write failed (link down). A stale state that believes "off" proves
                # nothing, and retrying at once never yields: the loop froze for the
                # whole timeout (found by tests/test_safety_stateful.py). Wait for the
                # next re-send instead.
                await asyncio.sleep(min(STOP_RESEND_S, remaining))
                continue
            confirmed = await self._wait_for(
                lambda: self.confirmed(off), min(STOP_RESEND_S, remaining)
            )
            if confirmed:
                return self._state
            if loop.time() >= deadline:
                break
        if last_error is not None:
            raise last_error
        if self.confirmed(off):
            return self._state
        raise ConfirmTimeout(
            f"the massager did not confirm 'everything off' within {timeout:g} s",
            advice="switch it off by hand if it is still running",
        )

    async def _send_off(self) -> None:
        commands = self.profile.commands
        caps = self.profile.capabilities
        if self.profile.is_v2:
            await self._send_off_v2()
            return
        if caps.command_style == "absolute":
            if "stop" in commands:
                await self._write(Command("stop"))
            else:
                if "heat" in commands:
                    await self._write(Command("heat", 0))
                await self._write(Command("power", 0))
            return
        # Key presses toggle: press only what the device reports as on.
        off_epoch = self._off_epoch
        if self._state.reports == 0 or self._state.assumed:
            before = self._state.reports
            await self._query()
            await self._wait_for(
                lambda: self._state.reports > before or self._off_epoch != off_epoch,
                KEY_PRESS_WAIT_S,
            )
            if self._off_epoch != off_epoch:
                return  # a newer stop reads the state afresh (see _press)
        # The power key of a running massager switches everything off, heat with it, in
        # one frame. Pressing heat first cost a key-press wait, and with a heater stuck on
        # (the report never moves) the heat key is a blind toggle: each re-send switched
        # the commanded heat back on (found by tests/test_safety_stateful.py).
        s = self._state
        if s.running:
            await self._press("press_power")
        elif s.heat and "press_heat" in commands:
            await self._press("press_heat")
        else:
            await self._query()

    # --- version-2 profiles: settings, sequences, waits ---------------------------------

    def _device_now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def _link_write(self, link: Link, item: codec.Write) -> None:
        if item.endpoint is None:
            await link.write(item.frame)
            return
        write_to = getattr(link, "write_to", None)
        if write_to is None:
            raise TransportError(
                f"{self.profile.id}: this link cannot write to endpoint {item.endpoint!r}"
            )
        await write_to(item.endpoint, item.frame)

    async def _write_v2(self, command: Command, epoch: int | None = None) -> None:
        """Write every frame of ``command`` (a sequence: its frames and waits), after the
        wake frame if the device sleeps."""
        self._check_epoch(epoch)
        link = self._link
        if link is None:
            raise TransportError(f"{self.profile.id}: not connected")
        if command.name != self.profile.connection.wake:
            await self._send_wake()
        for item in codec.writes(self.profile, command):
            if isinstance(item, codec.Pause):
                await self._sleep(item.seconds)
                continue
            await self._link_write(link, item)
            self.frames_written.append(item.frame)
        self._last_write_at = self._device_now()

    async def _send_wake(self) -> None:
        """Send the profile's wake command if the device has not had it since the connect
        (or has been idle past ``wake_idle_seconds``)."""
        conn = self.profile.connection
        if conn.wake is None or self._link is None:
            return
        now = self._device_now()
        idle = conn.wake_idle_seconds
        last = self._last_write_at
        if idle is not None and last is not None and now - last > idle:
            self._awake = False
        if self._awake:
            return
        self._awake = True
        try:
            await self._write_v2(Command(conn.wake))
        except TransportError:
            self._awake = False
            raise

    def _needs_report(self) -> bool:
        """True if some setting is reached by keys whose effect only a report shows."""
        caps = self.profile.capabilities
        return caps.reports_status and any(
            s.style in ("toggle", "cycle", "step", "bits") for s in self.profile.settings.values()
        )

    def _expire_timer(self) -> None:
        """A device without status switches off when its own timer runs out: believe it."""
        ends = self._timer_ends_at
        if ends is not None and self._device_now() >= ends:
            self._timer_ends_at = None
            if not self.profile.capabilities.reports_status and self._state.running:
                _LOG.info("%s: the device's own timer ran out", self._state.address)
                self._set_state(
                    dataclasses.replace(self._state, running=False, heat=0, assumed=True)
                )

    async def _learn_state(self) -> None:
        if self._state.reports == 0 or self._state.assumed:
            before = self._state.reports
            await self._query()
            if not await self._wait_report(before, KEY_PRESS_WAIT_S) and self._needs_report():
                raise self._blind()

    async def _run_step(self, step: planner.PlanStep, epoch: int | None) -> None:
        """Write one planned step and believe its result until a report says otherwise."""
        if step.command is None:
            await self._sleep(step.pause)
            return
        loop = asyncio.get_running_loop()
        if step.setting != "power" and self._device_now() < self._ready_at:
            await self._sleep(self._ready_at - self._device_now())  # still starting up
        before = self._state.reports
        old = self._state.running if step.setting == "power" else getattr(
            self._state, step.setting or "running", None
        )
        await self._write_v2(step.command, epoch)
        if step.setting == "power" and step.believed.running and not self._state.running:
            self._ready_at = self._device_now() + self.profile.settings["power"].ready_seconds
        if step.press and step.setting is not None:
            self.presses[step.setting] = self.presses.get(step.setting, 0) + 1
            if self.profile.capabilities.reports_status:
                self._unconfirmed[step.setting] = (loop.time(), old)
        if step.setting == "timer":
            self._timer_set = step.believed.timer
            if step.believed.timer:
                self._timer_ends_at = self._device_now() + step.believed.timer * 60.0
                if not self.profile.capabilities.reports_status:
                    # Nothing will report the device switching itself off: believe it.
                    loop.call_later(step.believed.timer * 60.0 + 0.01, self._expire_timer)
        elif step.setting == "power":
            self._timer_set = None
        if not self.profile.capabilities.reports_status or self._state.reports == before:
            # Believe it took (as *assumed*, never a confirmation) until a report says.
            self._set_state(
                dataclasses.replace(
                    step.believed,
                    connected=self._state.connected,
                    reports=self._state.reports,
                    battery=self._state.battery,
                    temperature=self._state.temperature,
                    assumed=True,
                )
            )

    async def _confirm_press(self, step: planner.PlanStep, before: DeviceState) -> None:
        """Wait for a report that shows the press moved its setting."""
        setting = step.setting or "power"
        field = "running" if setting == "power" else setting
        old = getattr(before, field)
        reports = before.reports

        def moved() -> bool:
            return self._state.reports > reports and bool(getattr(self._state, field) != old)

        if await self._wait_for(moved, KEY_PRESS_WAIT_S):
            return
        await self._query()
        if await self._wait_for(moved, KEY_PRESS_WAIT_S):
            return
        if self._state.reports == reports:
            raise self._blind()
        raise ConfirmTimeout(
            f"the massager did not respond to its {setting} key "
            f"(it reports {_describe_state(self._state)})",
            advice="check the massager; switch it off by hand if it keeps running",
        )

    async def _apply_v2(
        self, target: Target, deadline: float, epoch: int, power_on: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        status = self.profile.capabilities.reports_status
        self._expire_timer()
        if status:
            await self._learn_state()
        timer = target.timer
        if timer is None and self._timer_set is None:
            # The device's own timer, where it has one, as a backstop that never cuts a
            # session short: the longest it offers within the absolute session ceiling.
            timer = planner.backstop_timer(self.profile, CEILING_SESSION_S / 60)
        for _ in range(planner.MAX_PRESSES):
            plan = planner.plan(
                self.profile, self._state, running=True, intensity=target.intensity,
                heat=target.heat, mode=target.mode, zone=target.zone, timer=timer,
                unconfirmed=set(self._unconfirmed), timer_set=self._timer_set,
            )
            if plan.refused is not None:
                raise SafetyRefused(
                    "unreachable",
                    f"{self.profile.id} cannot be set to {_describe(target)}: {plan.refused}",
                    advice="the profile says how each setting is reached; "
                    "'footctl profile check' lists what it cannot encode",
                )
            if not plan.steps:
                return
            for step in plan.steps:
                if loop.time() > deadline:
                    return  # the confirmation wait reports it
                if not power_on and (step.setting == "power" or not self._state.running):
                    return  # a heat-off never switches a massager on (see apply)
                before = self._state
                await self._run_step(step, epoch)
                if step.press and status:
                    await self._confirm_press(step, before)
                    break  # plan again from what the device reported
            else:
                return  # every step written (value commands, or a device without status)

    async def _send_off_v2(self) -> None:
        status = self.profile.capabilities.reports_status
        self._expire_timer()
        if status and (self._state.reports == 0 or self._state.assumed):
            before = self._state.reports
            await self._query()
            await self._wait_report(before, KEY_PRESS_WAIT_S)
        plan = planner.plan_off(self.profile, self._state, unconfirmed=set(self._unconfirmed))
        if plan.refused is not None:
            # A key pressed without a report since: pressing again could switch the
            # device back on. Ask instead; the next re-send decides on the answer.
            _LOG.info("%s: off: %s", self._state.address, plan.refused)
            await self._query()
            return
        if not plan.steps:
            await self._query()
            return
        for step in plan.steps:
            await self._run_step(step, None)
            if step.press and status:
                break  # one press; the re-send loop looks at the report before another
        self._timer_ends_at = None


_KEY_FIELD: dict[str, str] = {
    "press_power": "running",
    "press_mode": "mode",
    "press_intensity_up": "intensity",
    "press_intensity_down": "intensity",
    "press_heat": "heat",
}


def _describe(target: Target) -> str:
    if not target.running:
        return "everything off"
    parts = ["on"]
    for name in ("intensity", "heat", "mode", "zone"):
        value = getattr(target, name)
        if value is not None:
            parts.append(f"{name} {value}")
    return ", ".join(parts)


def _describe_state(s: DeviceState) -> str:
    if not s.running:
        return "off" + (f", heat {s.heat}" if s.heat else "")
    return f"on, intensity {s.intensity}, heat {s.heat}, mode {s.mode}"
