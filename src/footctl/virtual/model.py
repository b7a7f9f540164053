"""The virtual massager's behaviour: pure, clock-injected, no I/O.

:class:`MassagerModel` is what a cheap heated foot massager does with the commands it
receives, driven by the same profile the controller uses. Time comes from an injected
``now()`` (monotonic seconds), so tests move a fake clock instead of sleeping.

Behaviour, as a real device has it:

* power off turns the motor *and* the heat off; power on starts at the lowest
  intensity, the first mode and heat off;
* intensity, heat, mode, zone and timer commands while off are ignored, and so are key
  presses other than power;
* values out of the profile's range are ignored (a cheap device does not answer errors);
* the device switches itself off after ``capabilities.auto_off_minutes`` of running (or
  after the minutes of a ``timer`` command);
* a first-order thermal model: the pad's temperature approaches the heat level's
  celsius (or 30 C skin temperature with heat off) exponentially, 95 % of the way in
  :data:`SETTLE_SECONDS`.

Fault knobs are plain attributes (see :class:`MassagerModel`); the ones about the radio
(slow answers, garbled or truncated notifications, mute) are honoured by the
peripheral, which asks :meth:`MassagerModel.status_frame` for what to send.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from footctl.device.codec import decode_command, encode_status
from footctl.device.profile.checks import value_domain
from footctl.device.profile.roles import QUERY, STOP, Role, cycle_order, role_of, start_value
from footctl.device.profile.schema import Profile
from footctl.errors import CodecError
from footctl.state import Command, Report


def _sends(profile: Profile, name: str) -> set[str]:
    """Every command a sequence sends, nested sequences included."""
    out: set[str] = set()
    for item in profile.commands[name].sequence or []:
        send = getattr(item, "send", None)
        if send is not None:
            out.add(send)
            out |= _sends(profile, send)
    return out


__all__ = [
    "AMBIENT_CELSIUS",
    "SETTLE_SECONDS",
    "TAU_SECONDS",
    "FrameRecord",
    "MassagerModel",
]

_LOG = logging.getLogger(__name__)

#: Skin-side temperature of the pad with the heat off.
AMBIENT_CELSIUS = 30.0
#: Time to get 95 % of the way to the target temperature.
SETTLE_SECONDS = 60.0
#: The thermal time constant: 1 - exp(-SETTLE/TAU) = 0.95.
TAU_SECONDS = SETTLE_SECONDS / math.log(20.0)
#: Battery drain while running, percent per hour.
BATTERY_DRAIN_PER_HOUR = 20.0
#: How many received frames the log keeps.
FRAME_LOG_SIZE = 1000


@dataclass(frozen=True)
class FrameRecord:
    """One frame the massager received.

    ``outcome`` is ``"applied"`` (acted on), ``"ignored"`` (understood, but ignored:
    out of range, powered off, or the ``ignore_writes`` fault), ``"muted"`` (the
    ``mute`` fault), ``"oversize"`` (longer than the link allows) or ``"error"``
    (the bytes did not decode; ``error`` says why).
    """

    time: float
    hex: str
    outcome: str
    command: str | None = None
    value: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "time": self.time,
            "hex": self.hex,
            "outcome": self.outcome,
            "command": self.command,
            "value": self.value,
            "error": self.error,
        }


class MassagerModel:
    """One virtual massager's state and behaviour.

    Fault knobs (plain attributes, change them at any time):

    ``garbage``
        notifications are garbled (random bytes, or a valid frame with a flipped bit).
    ``truncate``
        notifications are cut short.
    ``slow_seconds``
        the device takes this long before acting on and answering a write.
    ``mute``
        the device neither acts on writes nor notifies (the radio still acknowledges).
    ``ignore_writes``
        writes are received and logged, but not acted on; status still flows.
    ``rogue_heat``
        a heat level the heater is stuck at whatever the commands say (a failed relay);
        ``None`` for a sound heater. With ``rogue_celsius`` the stuck heater drives the
        pad towards that temperature instead of the level's (a failed thermostat).
    """

    def __init__(
        self,
        profile: Profile,
        *,
        now: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        frame_logger: logging.Logger | None = None,
        frame_log_size: int = FRAME_LOG_SIZE,
    ) -> None:
        self.profile = profile
        self._now = now
        self.rng = rng if rng is not None else random.Random()
        self.frame_logger = frame_logger
        self.frames: deque[FrameRecord] = deque(maxlen=frame_log_size)
        # faults
        self.garbage = False
        self.truncate = False
        self.slow_seconds = 0.0
        self.mute = False
        self.ignore_writes = False
        self.rogue_heat: int | None = None
        self.rogue_celsius: float | None = None
        # state
        caps = profile.capabilities
        self.running = False
        self.intensity = caps.intensity.min
        self.heat = 0
        self.mode_index = 0
        self.zone: int | None = caps.zones.min if caps.zones is not None else None
        self.battery = 100.0
        self.temperature = AMBIENT_CELSIUS
        self.error = 0
        self._off_at: float | None = None
        # version 2: commands are ignored until this clock time after power-on
        # (settings.power.ready_seconds), and until a wake frame after each connect.
        self._ready_at = 0.0
        self.awake = profile.connection.wake is None
        self._last_write: float | None = None
        #: Presses of step/cycle/toggle/bit keys acted on, by setting (for tests).
        self.presses: dict[str, int] = {}
        #: Version 2: the timer value last chosen since power-on (0: a cycling timer's
        #: "off" position; None: never chosen).
        self.timer_choice: int | None = None
        self._last_tick = now()
        #: Bumped on every change of what the device would report.
        self.version = 0
        self._listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ listeners

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every state change; returns an unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _changed(self) -> None:
        self.version += 1
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener must not break the device
                _LOG.exception("massager state listener failed")

    # ------------------------------------------------------------------ derived

    @property
    def now(self) -> float:
        """The model's clock."""
        return self._now()

    @property
    def _level_powered(self) -> bool:
        power = self.profile.settings.get("power")
        return power is not None and power.style == "level"

    @property
    def mode(self) -> str:
        """The current mode's name."""
        return self.profile.capabilities.modes[self.mode_index].name

    @property
    def effective_heat(self) -> int:
        """The heat level the heater is really at (``rogue_heat`` wins)."""
        if self.rogue_heat is not None:
            return self.rogue_heat
        return self.heat

    @property
    def target_celsius(self) -> float:
        """Where the pad's temperature is heading."""
        level = self.effective_heat
        if level == 0:
            return AMBIENT_CELSIUS
        if self.rogue_heat is not None and self.rogue_celsius is not None:
            return self.rogue_celsius
        celsius = self.profile.capabilities.heat_celsius(level)
        return AMBIENT_CELSIUS if celsius is None else celsius

    @property
    def seconds_left(self) -> float | None:
        """Seconds until the device switches itself off (None: not running or no limit)."""
        if not self.running or self._off_at is None:
            return None
        return max(0.0, self._off_at - self.now)

    @property
    def timer_minutes_left(self) -> int:
        """Whole minutes left to the auto-off, rounded up (0 when off)."""
        left = self.seconds_left
        if left is None:
            return 0
        return math.ceil(left / 60.0 - 1e-9)

    def next_event_at(self) -> float | None:
        """Clock time of the next change the model makes on its own (the auto-off)."""
        return self._off_at if self.running else None

    # ------------------------------------------------------------------ time

    def _advance(self, dt: float) -> None:
        if dt <= 0:
            return
        target = self.target_celsius
        self.temperature = target + (self.temperature - target) * math.exp(-dt / TAU_SECONDS)
        if self.running:
            self.battery = max(0.0, self.battery - BATTERY_DRAIN_PER_HOUR * dt / 3600.0)

    def tick(self) -> None:
        """Advance the thermal model and the timers to the clock's ``now``."""
        now = self._now()
        if self.running and self._off_at is not None and self._off_at <= now:
            self._advance(self._off_at - self._last_tick)
            self._last_tick = max(self._last_tick, self._off_at)
            _LOG.debug("%s: auto-off", self.profile.id)
            self._power_off()
            self._changed()
        self._advance(now - self._last_tick)
        self._last_tick = max(self._last_tick, now)

    # ------------------------------------------------------------------ state changes

    def _defaults(self) -> None:
        caps = self.profile.capabilities
        self.intensity = caps.intensity.min
        self.heat = 0
        self.mode_index = 0
        self.zone = caps.zones.min if caps.zones is not None else None
        self._off_at = None
        if self.profile.is_v2:
            p = self.profile
            intensity, heat = start_value(p, "intensity"), start_value(p, "heat")
            mode, zone = start_value(p, "mode"), start_value(p, "zone")
            self.intensity = int(intensity) if intensity is not None else caps.intensity.min
            self.heat = int(heat or 0)
            names = [m.name for m in caps.modes]
            self.mode_index = names.index(str(mode)) if mode in names else 0
            self.zone = int(zone) if zone is not None else None
            timer = start_value(p, "timer")
            self.timer_choice = None if timer is None else int(timer)

    def _power_on(self) -> None:
        self._defaults()
        self.running = True
        power = self.profile.settings.get("power")
        self._ready_at = self._now() + (power.ready_seconds if power is not None else 0.0)
        minutes = self.profile.capabilities.auto_off_minutes
        self._off_at = None if minutes is None else self._now() + minutes * 60.0

    def _power_off(self) -> None:
        self._defaults()
        self.running = False

    def reset(self) -> None:
        """Back to the state after power-up: off, defaults (a reboot). Faults stay."""
        self.tick()
        self._power_off()
        self._changed()

    def apply(self, command: Command) -> bool:
        """Act on one decoded command; returns True if the state changed."""
        self.tick()
        before = self._snapshot_key()
        self._apply(command)
        changed = self._snapshot_key() != before
        if changed:
            self._changed()
        return changed

    def _snapshot_key(self) -> tuple[object, ...]:
        return (
            self.running,
            self.intensity,
            self.heat,
            self.mode_index,
            self.zone,
            self._off_at,
        )

    def _apply(self, command: Command) -> None:
        if self.profile.is_v2:
            self._apply_v2(command)
            return
        caps = self.profile.capabilities
        name, value = command.name, command.value
        if name == "query":
            return
        if name in ("power", "press_power", "stop"):
            if name == "stop" or (name == "power" and value == 0):
                self._power_off()
            elif name == "power" and value == 1:
                if not self.running:
                    self._power_on()
            elif name == "press_power":
                if self.running:
                    self._power_off()
                else:
                    self._power_on()
            return
        if not self.running:
            return  # a device that is off ignores everything but power
        if name == "intensity":
            if value is not None and value in caps.intensity:
                self.intensity = value
        elif name == "heat":
            if value == 0:
                self.heat = 0
            else:
                for level in caps.heat_levels:
                    if level.wire == value:
                        self.heat = level.level
        elif name == "mode":
            for index, mode in enumerate(caps.modes):
                if mode.code == value:
                    self.mode_index = index
        elif name == "zone":
            if caps.zones is not None and value in caps.zones:
                self.zone = value
        elif name == "timer":
            if caps.timer_minutes is not None and value is not None and value in caps.timer_minutes:
                self._off_at = self._now() + value * 60.0
        elif name == "press_mode":
            self.mode_index = (self.mode_index + 1) % len(caps.modes)
        elif name == "press_intensity_up":
            self.intensity = min(caps.intensity.max, self.intensity + 1)
        elif name == "press_intensity_down":
            self.intensity = max(caps.intensity.min, self.intensity - 1)
        elif name == "press_heat":
            top = caps.max_heat_level
            if top:
                self.heat = 0 if self.heat >= top else self.heat + 1

    # ------------------------------------------------------------------ version 2

    def _get(self, setting: str) -> int | str | None:
        if setting == "power":
            return 1 if self.running else 0
        if setting == "mode":
            return self.mode
        if setting == "timer":
            return self.timer_choice
        value: int | None = getattr(self, setting)
        return value

    def _set(self, setting: str, value: int | str) -> None:
        caps = self.profile.capabilities
        if setting == "power":
            if value and not self.running:
                self._power_on()
            elif not value:
                self._power_off()
        elif setting == "mode":
            self.mode_index = [m.name for m in caps.modes].index(str(value))
        elif setting == "timer":
            self.timer_choice = int(value)
            minutes = int(value) or caps.auto_off_minutes  # 0: no timer, the auto-off rules
            self._off_at = None if minutes is None else self._now() + minutes * 60.0
        else:
            setattr(self, setting, int(value))

    def _apply_v2(self, command: Command) -> None:
        conn = self.profile.connection
        if command.name in (QUERY, conn.wake, conn.keepalive):
            return
        if command.name == STOP:
            self._power_off()
            return
        role = role_of(self.profile, command)
        if role is None:
            return  # a frame that belongs to no setting (a "release" after a key)
        power = self.profile.settings.get("power")
        low = self.profile.capabilities.intensity.min
        if self._level_powered and role.setting == "intensity" and role.action in ("up", "down"):
            # Stepping: up from off switches on at the lowest level, down from it off.
            self.presses["intensity"] = self.presses.get("intensity", 0) + 1
            if not self.running:
                if role.action == "up":
                    self._power_on()
                    self.intensity = low
            elif role.action == "down" and self.intensity <= low:
                self._power_off()
            else:
                self.intensity = max(
                    low,
                    min(self.profile.capabilities.intensity.max,
                        self.intensity + (1 if role.action == "up" else -1)),
                )
            return
        if power is not None and power.style == "level" and role.setting == "intensity" and (
            role.action == "set"
        ):
            # Runs while its intensity is above 0: 0 stops it, a level starts it.
            level = int(role.value or 0)
            if level == 0:
                self._power_off()
            elif str(level) in value_domain(self.profile, "intensity"):
                if not self.running:
                    self._power_on()
                self.intensity = level
            return
        if role.setting != "power" and (not self.running or self._now() < self._ready_at):
            return  # off, or still starting up: ignored, as a real device does
        self._act(role)

    def _act(self, role: Role) -> None:
        setting, action = role.setting, role.action
        current = self._get(setting)
        domain = value_domain(self.profile, setting)
        if action == "set":
            if role.value is not None and str(role.value) in domain:
                self._set(setting, role.value)
            return
        if action == "reset":
            start = start_value(self.profile, setting)
            if start is not None:
                self._set(setting, start)
            return
        self.presses[setting] = self.presses.get(setting, 0) + 1
        if action == "bit":
            self._set(setting, int(current or 0) ^ (1 << int(role.value or 0)))
        elif action in ("toggle", "cycle"):
            order = cycle_order(self.profile, setting)
            index = order.index(current) if current in order else -1
            self._set(setting, order[(index + 1) % len(order)])
        else:  # up / down
            values = [int(v) for v in domain]
            level = int(current) if current is not None else values[0]
            wraps = self.profile.settings[setting].wraps
            step = 1 if action == "up" else -1
            nxt = level + step
            if nxt > values[-1]:
                nxt = values[0] if wraps else values[-1]
            elif nxt < values[0]:
                nxt = values[-1] if wraps else values[0]
            self._set(setting, nxt)

    # ------------------------------------------------------------------ frames

    def link_up(self) -> None:
        """A central connected: a device that needs a wake frame sleeps until it gets one."""
        if self.profile.connection.wake is not None:
            self.awake = False

    def _check_awake(self, command: Command) -> bool:
        """Whether the device listens to ``command`` (a wake frame always wakes it)."""
        conn = self.profile.connection
        if conn.wake is None:
            return True
        now = self._now()
        idle = conn.wake_idle_seconds
        if idle is not None and self._last_write is not None and now - self._last_write > idle:
            self.awake = False
        self._last_write = now
        if command.name == conn.wake or (
            self.profile.commands[conn.wake].sequence is not None
            and command.name in _sends(self.profile, conn.wake)
        ):
            self.awake = True
            return True
        return self.awake

    def receive(
        self, data: bytes, *, max_size: int | None = None, endpoint: str | None = None
    ) -> FrameRecord:
        """Take one written frame (on ``endpoint``, None: the write characteristic): log
        it, decode it and (faults allowing) act on it."""
        self.tick()
        data = bytes(data)
        at = self._now()
        record: FrameRecord
        if max_size is not None and len(data) > max_size:
            record = FrameRecord(
                at,
                data.hex(),
                "oversize",
                error=f"{len(data)} bytes is more than the {max_size} the link takes",
            )
        else:
            try:
                command = decode_command(self.profile, data, endpoint=endpoint)
            except CodecError as exc:
                record = FrameRecord(at, data.hex(), "error", error=exc.message)
            else:
                if self.mute:
                    outcome = "muted"
                elif self.ignore_writes or not self._check_awake(command):
                    outcome = "ignored"
                else:
                    outcome = "applied" if self.apply(command) else "ignored"
                    conn = self.profile.connection
                    if command.name in ("query", conn.wake, conn.keepalive):
                        outcome = "applied"
                record = FrameRecord(at, data.hex(), outcome, command.name, command.value)
        self.frames.append(record)
        if self.frame_logger is not None:
            self.frame_logger.info(
                "rx %s %s%s%s",
                record.hex,
                record.outcome,
                f" {record.command}" if record.command else "",
                f"={record.value}" if record.value is not None else "",
                extra={"frame": record.to_dict()},
            )
        return record

    # ------------------------------------------------------------------ reports

    def full_report(self) -> Report:
        """Everything the device knows, as a report (heat level, mode name)."""
        self.tick()
        return Report(
            running=self.running,
            # a massager powered by its level reports "off" as level 0
            intensity=self.intensity if self.running or not self._level_powered else 0,
            heat=self.effective_heat,
            mode=self.mode,
            zone=self.zone,
            timer=self.timer_minutes_left,
            battery=round(self.battery),
            temperature=round(self.temperature, 1),
            error=self.error,
        )

    def report(self) -> Report:
        """What the device reports: only the fields the profile's status carries."""
        full = self.full_report()
        status = self.profile.status
        if status is None:
            return full
        keep = set(status.fields)
        if self._level_powered and "intensity" in keep:
            keep.add("running")  # decoded from the level (see codec.decode_status)
        values = {name: getattr(full, name) for name in keep}
        if "temperature" in keep:
            spec = status.fields["temperature"]
            celsius = full.temperature if full.temperature is not None else AMBIENT_CELSIUS
            # what the wire can carry, so that report() == decode(encode(report()))
            values["temperature"] = round(celsius / spec.scale) * spec.scale
        return replace(Report(), **values)

    def status_frame(self) -> bytes | None:
        """The notification to send now, faults applied (None: muted or no status)."""
        if self.mute or self.profile.status is None or not self.profile.capabilities.reports_status:
            return None
        frame = encode_status(self.profile, self.report())
        if self.garbage:
            frame = self._garble(frame)
        if self.truncate and len(frame) > 1:
            frame = frame[: self.rng.randrange(1, len(frame))]
        return frame

    def _garble(self, frame: bytes) -> bytes:
        if self.rng.random() < 0.5:
            return self.rng.randbytes(len(frame))
        out = bytearray(frame)
        index = self.rng.randrange(len(out))
        out[index] ^= 1 << self.rng.randrange(8)
        return bytes(out)

    def state(self) -> dict[str, Any]:
        """A JSON-ready view of everything, faults included."""
        full = self.full_report()
        return {
            "profile": self.profile.id,
            "running": self.running,
            "power": self.running,
            "intensity": self.intensity,
            "heat": self.effective_heat,
            "mode": self.mode,
            "zone": self.zone,
            "timer": full.timer,
            "seconds_left": self.seconds_left,
            "battery": full.battery,
            "temperature": full.temperature,
            "frames_received": len(self.frames),
            "faults": {
                "garbage": self.garbage,
                "truncate": self.truncate,
                "slow_seconds": self.slow_seconds,
                "mute": self.mute,
                "ignore_writes": self.ignore_writes,
                "rogue_heat": self.rogue_heat,
                "rogue_celsius": self.rogue_celsius,
            },
        }

    # ------------------------------------------------------------------ faults

    FAULTS = (
        "garbage",
        "truncate",
        "slow_seconds",
        "mute",
        "ignore_writes",
        "rogue_heat",
        "rogue_celsius",
    )

    def set_fault(self, name: str, value: object) -> None:
        """Set a fault knob by name, checking the value; raises ValueError."""
        if name in ("garbage", "truncate", "mute", "ignore_writes"):
            if not isinstance(value, bool):
                raise ValueError(f"fault {name!r} takes true or false")
            setattr(self, name, value)
        elif name == "slow_seconds":
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0 <= value <= 60)
            ):
                raise ValueError("fault 'slow_seconds' takes a number of seconds, 0 to 60")
            self.slow_seconds = float(value)
        elif name == "rogue_heat":
            top = self.profile.capabilities.max_heat_level
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= top
            ):
                raise ValueError(f"fault 'rogue_heat' takes a heat level 1..{top} or null")
            self.tick()
            self.rogue_heat = value
            self._changed()
        elif name == "rogue_celsius":
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 20 <= value <= 90
            ):
                raise ValueError("fault 'rogue_celsius' takes degrees 20..90 or null")
            self.tick()
            self.rogue_celsius = None if value is None else float(value)
        else:
            raise ValueError(f"no fault {name!r}; known: {', '.join(self.FAULTS)}")
