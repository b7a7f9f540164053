"""How a wanted state becomes commands on a version-2 profile: pure, no I/O.

:func:`plan` looks at what the device reported (or, without status, what footctl
believes it did) and returns the commands that reach the target, each with the state
it leads to, or the reason the target cannot be reached. The session executes a plan
step by step; on a device that reports status it plans again after every key press,
from the report that press caused.

The rules (issue #12):

* a toggle or cycle key is pressed only when the state differs; a setting pressed since
  the last report (``unconfirmed``) is never pressed again on that stale state;
* step and cycle settings count presses from a known value; an unknown value is made
  known by the setting's ``reset`` command, else the target is refused with the reason;
* a stop never presses a power toggle of a device that is (believed) off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass

from footctl.device.profile.checks import value_domain
from footctl.device.profile.roles import (
    STOP,
    cycle_order,
    role_of,
    start_value,
    wire_from_setting_value,
)
from footctl.device.profile.schema import Profile
from footctl.state import Command, DeviceState

__all__ = ["MAX_PRESSES", "Plan", "PlanStep", "backstop_timer", "believe", "plan", "plan_off"]

# No target needs more presses than this (a 0-30 step scale from one end to the other,
# plus a reset); a plan longer than that means a profile error, not a device.
MAX_PRESSES = 64

# The order settings are reached in: power first (it resets the others on most
# devices), heat last when it rises (and first when it falls, see plan()).
_ORDER = ("power", "mode", "intensity", "zone", "heat", "timer")

Value = int | str | None


@dataclass(frozen=True)
class PlanStep:
    """One command (or a wait of ``pause`` seconds) and the state believed after it.

    ``press`` is true for a key whose effect depends on the state it meets (toggle,
    cycle, step, bit): it must be confirmed before another press of ``setting``."""

    command: Command | None
    setting: str | None
    believed: DeviceState
    press: bool = False
    pause: float = 0.0


@dataclass(frozen=True)
class Plan:
    """The steps to a target, or why it cannot be reached (``refused``)."""

    steps: tuple[PlanStep, ...]
    refused: str | None = None

    @property
    def presses(self) -> int:
        """How many state-dependent key presses the plan makes."""
        return sum(1 for s in self.steps if s.press)


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _get(state: DeviceState, setting: str) -> Value:
    if setting == "power":
        return 1 if state.running else 0
    value: Value = getattr(state, setting)
    return value


def _with(profile: Profile, state: DeviceState, setting: str, value: Value) -> DeviceState:
    """``state`` with ``setting`` at ``value``, as the device behaves (power-on starts
    every setting at its start value; power-off cuts heat)."""
    if setting == "power":
        if value and not state.running:
            start: dict[str, Value] = {
                s: start_value(profile, s) for s in ("intensity", "mode", "zone")
            }
            return dataclasses.replace(
                state,
                running=True,
                intensity=start["intensity"],  # type: ignore[arg-type]
                mode=start["mode"],  # type: ignore[arg-type]
                zone=start["zone"],  # type: ignore[arg-type]
                heat=int(start_value(profile, "heat") or 0),
                timer=start_value(profile, "timer"),  # type: ignore[arg-type]
            )
        if not value:
            return dataclasses.replace(state, running=False, heat=0)
        return state
    if setting == "heat":
        return dataclasses.replace(state, heat=int(value or 0))
    if setting == "mode":
        return dataclasses.replace(state, mode=None if value is None else str(value))
    number = None if value is None else int(value)
    if setting == "intensity":
        return dataclasses.replace(state, intensity=number)
    if setting == "zone":
        return dataclasses.replace(state, zone=number)
    return dataclasses.replace(state, timer=number)


class _Planner:
    def __init__(
        self,
        profile: Profile,
        state: DeviceState,
        unconfirmed: Collection[str],
        timer_set: int | None = None,
    ) -> None:
        self.profile = profile
        # A report's timer counts down: what matters is the value last set (None: not
        # since the device switched on).
        self.state = dataclasses.replace(state, timer=timer_set)
        self.unconfirmed = set(unconfirmed)
        self.steps: list[PlanStep] = []
        self.blind = not profile.capabilities.reports_status

    def _send(self, name: str, setting: str | None, value: Value, *, press: bool,
              arg: int | None = None) -> None:
        if setting is not None:
            self.state = _with(self.profile, self.state, setting, value)
        self.steps.append(PlanStep(Command(name, arg), setting, self.state, press=press))
        if sum(1 for s in self.steps if s.press) > MAX_PRESSES:
            raise _Refused(f"more than {MAX_PRESSES} key presses")

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.steps.append(PlanStep(None, None, self.state, pause=seconds))

    def _check_press(self, setting: str) -> None:
        if setting in self.unconfirmed and not self.blind:
            raise _Refused(
                f"its {setting} key was pressed and no report has shown the result yet; "
                "footctl does not press it again on a stale state"
            )

    def _known(self, setting: str) -> Value:
        """The current value of a setting that is reached by counting presses."""
        current = _get(self.state, setting)
        if current is not None:
            return current
        s = self.profile.settings[setting]  # type: ignore[index]
        if s.reset is not None:
            self._send(s.reset, setting, start_value(self.profile, setting), press=False)
            return _get(self.state, setting)
        raise _Refused(
            f"its {setting} is unknown and can only be reached by counting presses from a "
            "known value (after power-on, or a reset command, which this profile lacks)"
        )

    def reach(self, setting: str, wanted: Value, *, force: bool = False) -> None:
        """Append the commands that bring ``setting`` to ``wanted`` (``force``: a value
        command is sent even if the state already says so)."""
        profile = self.profile
        s = profile.settings.get(setting)  # type: ignore[call-overload]
        domain = value_domain(profile, setting)
        if s is None and (domain == [str(wanted)] or (setting == "heat" and not wanted)):
            return  # one value only (one level, one mode, no heater): nothing to set
        if s is None:
            raise _Refused(f"the profile has no {setting} setting")
        current = _get(self.state, setting)
        if s.style == "level":
            self._level_power(int(wanted or 0), force=force)
            return
        if str(wanted) not in domain and not (
            setting == "zone" and s.style == "bits"
        ):
            raise _Refused(f"{setting} {wanted} is not one of its values")
        style = s.style
        # Absolute and table commands say the value: sending them again is harmless, so
        # a state that is only assumed is re-asserted.
        assumed = self.state.assumed and not self.blind
        if style in ("absolute", "table"):
            if current == wanted and not assumed and not force:
                return
            if style == "absolute":
                assert s.command is not None
                wire = wire_from_setting_value(profile, setting, wanted)  # type: ignore[arg-type]
                self._send(s.command, setting, wanted, press=False, arg=wire)
            else:
                command = (s.values or {}).get(str(wanted))
                if command is None:
                    raise _Refused(f"no command sets {setting} {wanted} (its table lacks it)")
                self._send(command, setting, wanted, press=False)
            return
        if current == wanted:
            return
        if style == "bits":
            self._bits(setting, wanted)
            return
        current = self._known(setting)
        if current == wanted:
            return
        self._check_press(setting)
        if style in ("toggle", "cycle"):
            order = cycle_order(profile, setting)
            if wanted not in order:
                raise _Refused(f"its {setting} key never reaches {wanted} ({order})")
            if current not in order:
                raise _Refused(f"its {setting} is {current}, which its key does not cycle")
            n = (order.index(wanted) - order.index(current)) % len(order)
            for k in range(1, n + 1):
                value = order[(order.index(current) + k) % len(order)]
                self._send(s.key or "", setting, value, press=True)
                if not self.blind:
                    return  # one press, then a report shows where it landed
            return
        # step
        assert s.up is not None
        assert s.down is not None
        level, goal = int(current or 0), int(wanted or 0)
        key = s.up if goal > level else s.down
        step = 1 if goal > level else -1
        while level != goal:
            level += step
            self._send(key, setting, level, press=True)
            if not self.blind:
                return

    def _level_power(self, wanted: int, *, force: bool) -> None:
        """Power on a device that runs while its intensity is above 0: the intensity
        command at its start value; off: the ``off`` command, or intensity 0."""
        if bool(wanted) == self.state.running and not force:
            return
        power = self.profile.settings["power"]
        intensity = self.profile.settings["intensity"]
        level = int(start_value(self.profile, "intensity") or 0) if wanted else 0
        if not wanted and power.off is not None:
            self._send(power.off, "power", 0, press=False)
            return
        if intensity.style == "step":
            # Up from 0 switches on at the lowest level; down to 0 switches off. Keys
            # depend on the state: never pressed when it already says so, even for an off.
            if bool(wanted) == self.state.running:
                return
            assert intensity.up is not None
            assert intensity.down is not None
            self._check_press("power")
            if wanted:
                self._send(intensity.up, "power", 1, press=True)
                self.state = dataclasses.replace(
                    self.state, intensity=self.profile.capabilities.intensity.min
                )
                return
            known = self.state.intensity
            # unknown: enough presses from the top (extra ones at 0 do nothing)
            level = known if known is not None else self.profile.capabilities.intensity.max
            for left in range(int(level) - 1, -1, -1):
                self._send(intensity.down, "power" if left == 0 else "intensity",
                           0 if left == 0 else left, press=True)
                if not self.blind:
                    return
            return
        if intensity.style == "absolute":
            assert intensity.command is not None
            self._send(intensity.command, "power", wanted, press=False, arg=level)
        else:
            command = (intensity.values or {}).get(str(level))
            if command is None:
                raise _Refused(f"no command sets intensity {level} (its table lacks it)")
            self._send(command, "power", wanted, press=False)

    def _bits(self, setting: str, wanted: Value) -> None:
        s = self.profile.settings[setting]  # type: ignore[index]
        current = _get(self.state, setting)
        if current is None:
            raise _Refused("which chambers run is unknown; their keys toggle, so footctl "
                           "does not press them blind")
        self._check_press(setting)
        chambers = [c.name for c in self.profile.capabilities.chambers]
        mask = int(current)
        for index, name in enumerate(chambers):
            bit = 1 << index
            if (mask ^ int(wanted or 0)) & bit:
                mask ^= bit
                self._send((s.bits or {})[name], setting, mask, press=True)
                if not self.blind:
                    return

    def power_on(self) -> None:
        if self.state.running:
            return
        before = len(self.steps)
        self.reach("power", 1)
        if len(self.steps) > before:
            power = self.profile.settings["power"]
            self._pause(power.ready_seconds)


def plan(
    profile: Profile,
    state: DeviceState,
    *,
    running: bool,
    intensity: int | None = None,
    heat: int | None = None,
    mode: str | None = None,
    zone: int | None = None,
    timer: int | None = None,
    unconfirmed: Collection[str] = (),
    timer_set: int | None = None,
) -> Plan:
    """The steps from ``state`` to the wanted values (None: leave alone). On a device
    with status, a plan stops after the first key press (the next plan starts from the
    report it causes). ``timer_set`` is the device timer footctl last set since the
    device switched on (reports count it down, so they cannot say)."""
    if not running:
        return plan_off(profile, state, unconfirmed=unconfirmed)
    p = _Planner(profile, state, unconfirmed, timer_set)
    wanted: dict[str, Value] = {
        "intensity": intensity, "heat": heat, "mode": mode, "zone": zone, "timer": timer,
    }
    try:
        cooling = heat is not None and heat < state.heat and state.running
        if cooling:
            p.reach("heat", heat)
        p.power_on()
        for setting in _ORDER[1:]:
            value = wanted[setting]
            if value is None or (setting == "heat" and cooling):
                continue
            if any(s.press for s in p.steps) and not p.blind:
                break  # a press must be confirmed by a report before planning on
            p.reach(setting, value)
    except _Refused as exc:
        return Plan(tuple(p.steps), refused=exc.reason)
    return Plan(tuple(p.steps))


def plan_off(profile: Profile, state: DeviceState, *, unconfirmed: Collection[str] = ()) -> Plan:
    """Everything off: the ``stop`` command if there is one, else heat off (where that is
    a value, not a key) and power off. A power or heat key is pressed only when the
    device is (reported or believed) on, and never twice on a state no report refreshed."""
    p = _Planner(profile, state, unconfirmed)
    if STOP in profile.commands:
        p._send(STOP, "power", 0, press=False)
        return Plan(tuple(p.steps))
    power = profile.settings["power"]
    heat = profile.settings.get("heat")
    try:
        if power.style in ("absolute", "table", "level"):
            # An off is never deduplicated: value commands are always sent.
            if heat is not None and heat.style in ("absolute", "table"):
                p.reach("heat", 0, force=True)
            p.reach("power", 0, force=True)
        elif state.running:
            p.reach("power", 0)
        elif state.heat and heat is not None:
            p.reach("heat", 0)
    except _Refused as exc:
        return Plan(tuple(p.steps), refused=exc.reason)
    return Plan(tuple(p.steps))


def believe(profile: Profile, state: DeviceState, command: Command) -> DeviceState:
    """The state after ``command`` was written, as far as a command alone tells (a
    report, where the device sends one, overrides it)."""
    if command.name == STOP:
        return dataclasses.replace(state, running=False, heat=0, assumed=True)
    role = role_of(profile, command)
    if role is None or role.action != "set":
        return state
    return dataclasses.replace(_with(profile, state, role.setting, role.value), assumed=True)


def backstop_timer(profile: Profile, ceiling_minutes: float) -> int | None:
    """The device-timer minutes to set when nothing asks for a timer: the longest the
    device offers within ``ceiling_minutes`` (a backstop that never cuts a session
    short), else its shortest; None if the profile has no timer setting."""
    if "timer" not in profile.settings:
        return None
    minutes = [int(v) for v in value_domain(profile, "timer") if int(v) > 0]
    if not minutes:
        return None
    within = [m for m in minutes if m <= ceiling_minutes]
    return max(within) if within else min(minutes)
