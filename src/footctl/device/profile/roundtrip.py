"""Round-trip a profile through the codec and the virtual massager model, per capability.

:func:`round_trip` is pure (a fake clock, no radio, no sleeping): every command frame is
encoded and decoded back, every sequence expanded, every status field encoded and
decoded, and every value of every setting is reached on a :class:`MassagerModel` the way
the session reaches it (the planner's commands, waits and presses), then checked on the
model. ``footctl profile test`` reports its results.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from footctl.device import codec, planner
from footctl.device.profile.checks import value_domain
from footctl.device.profile.schema import Profile
from footctl.errors import CodecError
from footctl.state import Command, DeviceState, Report

if TYPE_CHECKING:
    from footctl.virtual.model import MassagerModel

__all__ = ["CapabilityResult", "RoundTrip", "round_trip"]

# The model's clock moves this much between two writes (a BLE write round trip).
WRITE_GAP_S = 0.01

# No value takes more writes than this to reach (planner.MAX_PRESSES plus waits).
MAX_ROUNDS = 80


@dataclass(frozen=True)
class CapabilityResult:
    """One capability's round trip: ``checked`` cases, the ``problems`` found."""

    capability: str
    checked: int
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True if every case round-tripped."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {**dataclasses.asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class RoundTrip:
    """Every capability's result for one profile."""

    profile_id: str
    results: tuple[CapabilityResult, ...]

    @property
    def ok(self) -> bool:
        """True if every capability round-tripped."""
        return all(r.ok for r in self.results)

    def result(self, capability: str) -> CapabilityResult:
        """The result for one capability (KeyError if it was not checked)."""
        for r in self.results:
            if r.capability == capability:
                return r
        raise KeyError(capability)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "profile": self.profile_id,
            "ok": self.ok,
            "results": [r.to_dict() for r in self.results],
        }


@dataclass
class _Tally:
    capability: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    def done(self) -> CapabilityResult:
        return CapabilityResult(self.capability, self.checked, tuple(self.problems))


def _frames(profile: Profile) -> CapabilityResult:
    from footctl.device.profile.lint import _sample_values  # noqa: PLC0415 - one value list

    tally = _Tally("commands")
    limit = codec.max_write_size(profile)
    for name, template in profile.commands.items():
        if template.sequence is not None:
            try:
                writes = codec.writes(profile, Command(name))
            except CodecError as exc:
                tally.problems.append(f"{name}: {exc.message}")
                continue
            tally.checked += 1
            for w in writes:
                if isinstance(w, codec.Write):
                    back = codec.decode_command(profile, w.frame, endpoint=w.endpoint)
                    if back.name != w.command:
                        tally.problems.append(f"{name}: {w.command} decodes as {back.name}")
            continue
        for value in _sample_values(profile, name, template):
            tally.checked += 1
            command = Command(name, value)
            try:
                frame = codec.encode(profile, command)
                back = codec.decode_command(profile, frame, endpoint=template.endpoint)
            except CodecError as exc:
                tally.problems.append(f"{name}={value}: {exc.message}")
                continue
            if back != command:
                tally.problems.append(f"{name}={value}: decodes as {back.name}={back.value}")
            if len(frame) > limit:
                tally.problems.append(f"{name}: {len(frame)} bytes, the link carries {limit}")
    return tally.done()


class _Driver:
    """A model on a fake clock, driven the way the session drives a device."""

    def __init__(self, profile: Profile) -> None:
        from footctl.virtual.model import MassagerModel  # noqa: PLC0415 - Bumble only here

        self.profile = profile
        self.clock = 0.0
        self.model: MassagerModel = MassagerModel(
            profile, now=lambda: self.clock, rng=random.Random(0)
        )
        self.model.link_up()
        self.status = profile.capabilities.reports_status
        self.belief = DeviceState(address="", profile_id=profile.id)
        self.errors: list[str] = []
        self.timer_set: int | None = None
        wake = profile.connection.wake
        if wake is not None:
            self.send(Command(wake))

    def state(self) -> DeviceState:
        if not self.status:
            return self.belief
        r: Report = self.model.report()
        return DeviceState(
            address="", profile_id=self.profile.id, running=bool(r.running),
            intensity=r.intensity, heat=r.heat or 0, mode=r.mode, zone=r.zone, timer=None,
            assumed=False, reports=1,
        )

    def send(self, command: Command) -> None:
        for w in codec.writes(self.profile, command):
            if isinstance(w, codec.Pause):
                self.clock += w.seconds
                continue
            record = self.model.receive(w.frame, endpoint=w.endpoint)
            if record.outcome == "error":
                self.errors.append(f"{command.name}: the device could not decode it")
            self.clock += WRITE_GAP_S

    def run(self, plan: planner.Plan) -> bool:
        """Write a plan's steps; False if a press needs a report before planning on."""
        pressed = False
        for step in plan.steps:
            if step.command is None:
                self.clock += step.pause  # a wait after power-on is kept even after a press
                continue
            if pressed:
                return False
            self.send(step.command)
            self.belief = step.believed
            if step.setting == "timer":
                self.timer_set = step.believed.timer
            elif step.setting == "power":
                self.timer_set = None
            pressed = step.press and self.status
        return not pressed

    def reach(self, **target: Any) -> str | None:
        """Drive the model to ``target``; the planner's refusal, if any."""
        for _ in range(MAX_ROUNDS):
            plan = planner.plan(
                self.profile, self.state(), running=True, timer_set=self.timer_set, **target
            )
            if plan.refused is not None:
                return plan.refused
            if not plan.steps or (self.run(plan) and not self.status):
                return None
        return "no end to the presses"

    def off(self) -> str | None:
        for _ in range(4):
            plan = planner.plan_off(self.profile, self.state())
            if plan.refused is not None:
                return plan.refused
            if not plan.steps:
                return None
            self.run(plan)
            if not self.model.running:
                return None
        return "the device stayed on"


def _model_value(model: MassagerModel, setting: str) -> object:
    if setting == "mode":
        return model.mode
    if setting == "timer":
        return model.timer_choice
    return getattr(model, setting)


def _settings(profile: Profile) -> list[CapabilityResult]:
    out: list[CapabilityResult] = []
    power = _Tally("power")
    drive = _Driver(profile)
    for _ in range(2):  # on and off twice: a toggle must land right both times
        power.checked += 2
        why = drive.reach()
        if why is not None or not drive.model.running:
            power.problems.append(f"power on: {why or 'the device stayed off'}")
        why = drive.off()
        if why is not None or drive.model.running:
            power.problems.append(f"power off: {why or 'the device stayed on'}")
    out.append(power.done())
    for setting in ("intensity", "mode", "zone", "heat", "timer"):
        if profile.is_v2 and setting not in profile.settings:
            continue
        if not profile.is_v2 and setting not in ("intensity", "mode", "heat"):
            continue
        tally = _Tally(setting)
        drive = _Driver(profile)
        domain = value_domain(profile, setting)
        values: list[int | str] = [v if setting == "mode" else int(v) for v in domain]
        for value in [*values, *reversed(values)]:
            tally.checked += 1
            why = drive.reach(**{setting: value})
            got = _model_value(drive.model, setting)
            if why is not None:
                tally.problems.append(f"{setting} {value}: refused: {why}")
            elif got != value:
                tally.problems.append(f"{setting} {value}: the device is at {got}")
        tally.problems += drive.errors
        out.append(tally.done())
    return out


def _status(profile: Profile) -> CapabilityResult | None:
    if profile.status is None:
        return None
    tally = _Tally("status")
    drive = _Driver(profile)
    reports = [drive.model.report()]
    drive.reach()
    reports.append(drive.model.report())
    for setting in ("intensity", "heat", "mode"):
        domain = value_domain(profile, setting)
        if profile.is_v2 and setting not in profile.settings:
            continue
        if domain:
            last = domain[-1]
            drive.reach(**{setting: last if setting == "mode" else int(last)})
            reports.append(drive.model.report())
    for report in reports:
        tally.checked += 1
        try:
            back = codec.decode_status(profile, codec.encode_status(profile, report))
        except CodecError as exc:
            tally.problems.append(exc.message)
            continue
        if back != report:
            tally.problems.append(f"{report} decodes as {back}")
    return tally.done()


def round_trip(profile: Profile) -> RoundTrip:
    """Round-trip every command and status field of ``profile`` through the codec and
    through the virtual massager model; one result per capability (commands, status,
    power, and each setting the profile has)."""
    results = [_frames(profile)]
    status = _status(profile)
    if status is not None:
        results.append(status)
    if profile.is_v2:
        results += _settings(profile)
    else:
        results += _settings_v1(profile)
    return RoundTrip(profile.id, tuple(results))


def _settings_v1(profile: Profile) -> list[CapabilityResult]:
    """Version 1: absolute commands carry the value; keys are pressed until the model's
    report shows it (the session's keys path, without the radio)."""
    from footctl.virtual.model import MassagerModel  # noqa: PLC0415 - Bumble only here

    caps = profile.capabilities
    model = MassagerModel(profile, now=lambda: 0.0, rng=random.Random(0))
    keys = caps.command_style == "keys"

    def send(name: str, value: int | None = None) -> None:
        model.receive(codec.encode(profile, Command(name, value)))

    results: list[CapabilityResult] = []
    power = _Tally("power", checked=2)
    send("press_power") if keys else send("power", 1)
    if not model.running:
        power.problems.append("power on: the device stayed off")
    send("press_power") if keys else send("power", 0)
    if model.running:
        power.problems.append("power off: the device stayed on")
    results.append(power.done())
    send("press_power") if keys else send("power", 1)
    plans: list[tuple[str, list[int | str], str, str | None]] = [
        ("intensity", list(range(caps.intensity.min, caps.intensity.max + 1)),
         "press_intensity_up", "press_intensity_down"),
        ("mode", [m.name for m in caps.modes], "press_mode", None),
        ("heat", list(range(caps.max_heat_level + 1)), "press_heat", None),
    ]
    for setting, values, up, down in plans:
        tally = _Tally(setting)
        for value in values:
            tally.checked += 1
            for _ in range(planner.MAX_PRESSES):
                now = _model_value(model, setting)
                if now == value:
                    break
                if not keys:
                    wire = value
                    if setting == "mode":
                        wire = next(m.code for m in caps.modes if m.name == value)
                    elif setting == "heat" and value:
                        wire = next(h.wire for h in caps.heat_levels if h.level == value)
                    send(setting, int(wire))
                    continue
                lower = isinstance(now, int) and isinstance(value, int) and now > value
                send(down if lower and down is not None else up)
            if _model_value(model, setting) != value:
                tally.problems.append(f"{setting} {value}: the device is at "
                                      f"{_model_value(model, setting)}")
        results.append(tally.done())
    return results
