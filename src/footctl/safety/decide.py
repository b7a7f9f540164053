"""Pure safety decisions: a Request becomes a Target within the limits, or is
refused (or clamped, where the config says so) with a reason."""

from __future__ import annotations

from dataclasses import dataclass

from footctl.device.profile.schema import Profile
from footctl.device.session import Target
from footctl.errors import SafetyRefused, UsageError
from footctl.safety.dose import HEAT_COOLDOWN_S
from footctl.safety.limits import Limits

SOURCES = ("cli", "tui", "mqtt", "schedule", "program", "daemon", "governor")


@dataclass(frozen=True)
class Request:
    """What a command source asks for. ``None`` leaves a field as it is.

    ``unattended`` marks a request made while the user may be asleep (any
    scheduled start): its heat is limited to the unattended heat level.
    """

    source: str = "cli"
    power: bool | None = None
    intensity: int | None = None
    heat: int | None = None
    mode: str | None = None
    zone: int | None = None
    unattended: bool = False

    @property
    def is_off(self) -> bool:
        """True if this asks to switch off."""
        return self.power is False


@dataclass(frozen=True)
class Decision:
    """The approved target and any notes on what was clamped."""

    target: Target
    notes: tuple[str, ...] = ()


def _intensity(profile: Profile, lim: Limits, intensity: int, notes: list[str]) -> int:
    caps = profile.capabilities
    if intensity < lim.intensity_min:
        raise SafetyRefused(
            "intensity_out_of_range",
            f"intensity {intensity} is below this massager's minimum {lim.intensity_min}",
            advice=f"ask for {lim.intensity_min}-{lim.intensity_max}",
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
        return lim.intensity_max
    return intensity


def _heat(
    profile: Profile, lim: Limits, request: Request, heat_locked: bool, notes: list[str]
) -> int:
    caps = profile.capabilities
    heat = request.heat or 0
    if heat <= 0:
        return 0
    if lim.no_heat:
        raise SafetyRefused(
            "no_heat", "heat refused: the no_heat medical setting forbids heat from every source"
        )
    if heat > caps.max_heat_level:
        raise SafetyRefused(
            "heat_out_of_range",
            f"heat {heat} refused: this massager's heat levels are 0-{caps.max_heat_level}",
            advice=f"ask for heat {min(caps.max_heat_level, lim.heat_max)} or less",
        )
    if heat_locked:
        raise SafetyRefused(
            "heat_cap_reached",
            f"heat refused: the heat dose reached its cap ({lim.heat_s / 60:g} min at the "
            "lowest level; hotter levels count more), or a heat fault ended heat for this "
            "session",
            advice=f"heat is allowed again after {HEAT_COOLDOWN_S / 60:g} min without heat",
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
    if request.unattended and heat > lim.unattended_heat_level:
        # Heating pads are not for sleeping people: clamp, never refuse, so the
        # bedtime program still runs.
        notes.append(
            f"heat {heat} lowered to {lim.unattended_heat_level}: the program started "
            "while you may be asleep"
        )
        heat = lim.unattended_heat_level
    return heat


def _check_types(request: Request) -> None:
    """The edge of the governor: every field has its type, whatever a source sent.
    (``bool`` is an ``int`` in Python: ``True`` is not an intensity. A float, NaN or
    infinity is not a level: NaN compares false with every cap and passed them.)"""

    def whole(name: str, value: object) -> None:
        if value is not None and (type(value) is not int):
            raise UsageError(
                f"{name} must be a whole number, not {value!r}",
                advice=f"send {name} as an integer",
            )

    if request.power is not None and type(request.power) is not bool:
        raise UsageError(f"power must be true or false, not {request.power!r}")
    whole("intensity", request.intensity)
    whole("heat", request.heat)
    whole("zone", request.zone)
    if request.mode is not None and type(request.mode) is not str:
        raise UsageError(f"mode must be a name, not {request.mode!r}")
    if type(request.unattended) is not bool:
        raise UsageError(f"unattended must be true or false, not {request.unattended!r}")
    if type(request.source) is not str:
        raise UsageError(f"source must be a name, not {request.source!r}")


def decide(
    profile: Profile, lim: Limits, desired: Target, request: Request, heat_locked: bool
) -> Decision:
    """The target for ``request``, starting from the currently ``desired`` target.
    A request whose fields do not have their types is a UsageError."""
    _check_types(request)
    if request.is_off:
        return Decision(Target(running=False))
    caps = profile.capabilities
    notes: list[str] = []
    base = desired if desired.running else Target(running=True)
    intensity = (
        _intensity(profile, lim, request.intensity, notes)
        if request.intensity is not None
        else base.intensity
    )
    heat = _heat(profile, lim, request, heat_locked, notes) if request.heat is not None else None
    if heat is None and base.heat and request.unattended:
        heat = min(base.heat, lim.unattended_heat_level)
    mode = request.mode
    if mode is not None and caps.mode_named(mode) is None:
        names = ", ".join(m.name for m in caps.modes)
        raise UsageError(f"no mode {mode!r} on {profile.id}", advice=f"modes: {names}")
    zone = request.zone
    if zone is not None and (caps.zones is None or zone not in caps.zones):
        raise UsageError(
            f"zone {zone} is not available on {profile.id}",
            advice=(
                f"zones: {caps.zones.min}-{caps.zones.max}"
                if caps.zones
                else "this massager has no zones"
            ),
        )
    target = Target(
        running=True,
        intensity=intensity,
        heat=heat if heat is not None else base.heat,
        mode=mode if mode is not None else base.mode,
        zone=zone if zone is not None else base.zone,
    )
    return Decision(target, tuple(notes))
