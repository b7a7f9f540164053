"""Safety numbers and the effective limits for one device.

Defaults may be lowered by a user; only the config file may raise them, and never
past the absolute ceilings below (see DESIGN.md, "Safety numbers").
"""

from __future__ import annotations

from dataclasses import dataclass

from footctl.profile.schema import Profile

MINUTE = 60.0

# One massage session: the therapeutic window is 10-20 min; past ~25 min overstimulates.
DEFAULT_SESSION_S = 20 * MINUTE
CEILING_SESSION_S = 45 * MINUTE

# Continuous heat: burn risk is temperature x time; common device auto-off is 15 min.
DEFAULT_HEAT_S = 15 * MINUTE
CEILING_HEAT_S = 30 * MINUTE

# Heat temperature: the heat pain threshold at the foot is ~44.5 C.
DEFAULT_TEMPERATURE_C = 42.0
CEILING_TEMPERATURE_C = 45.0

# Rest between sessions.
DEFAULT_COOLDOWN_S = 30 * MINUTE

# Dead-man heartbeat: the controller must prove it is alive this often while running.
DEFAULT_HEARTBEAT_S = 60.0

# Start low, increase gradually: at most one intensity level per this many seconds.
DEFAULT_RAMP_STEP_S = 10.0

# A program started while the user may be asleep uses at most this heat level.
DEFAULT_UNATTENDED_HEAT_LEVEL = 1


@dataclass(frozen=True)
class Caps:
    """User caps after config and flags, already checked against the ceilings."""

    session_s: float = DEFAULT_SESSION_S
    heat_s: float = DEFAULT_HEAT_S
    temperature_c: float = DEFAULT_TEMPERATURE_C
    intensity: int | None = None
    cooldown_s: float = DEFAULT_COOLDOWN_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    ramp_step_s: float = DEFAULT_RAMP_STEP_S
    unattended_heat_level: int = DEFAULT_UNATTENDED_HEAT_LEVEL
    no_heat: bool = False
    clamp: bool = False


@dataclass(frozen=True)
class Limits:
    """Effective limits = min(profile hardware range, user caps, absolute ceilings)."""

    intensity_min: int
    intensity_max: int
    heat_max: int
    heat_max_reason: str
    session_s: float
    heat_s: float
    temperature_c: float
    clamp: bool
    no_heat: bool
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    ramp_step_s: float = DEFAULT_RAMP_STEP_S
    unattended_heat_level: int = DEFAULT_UNATTENDED_HEAT_LEVEL
    cooldown_s: float = DEFAULT_COOLDOWN_S

    @classmethod
    def compute(cls, profile: Profile, caps: Caps) -> Limits:
        """Combine a profile's range with user caps and the ceilings."""
        caps_ = profile.capabilities
        intensity_max = caps_.intensity.max
        if caps.intensity is not None:
            intensity_max = max(caps_.intensity.min, min(intensity_max, caps.intensity))
        temperature = min(caps.temperature_c, CEILING_TEMPERATURE_C)
        heat_max = 0
        reason = "the device has no heat"
        if caps.no_heat:
            reason = "no_heat is set (medical setting)"
        else:
            for level in caps_.heat_levels:
                if level.celsius <= temperature:
                    heat_max = level.level
            if caps_.heat_levels:
                reason = (
                    f"heat level {heat_max + 1} means "
                    f"{caps_.heat_celsius(heat_max + 1)} C, above the {temperature:g} C cap"
                    if heat_max < caps_.max_heat_level
                    else f"the device's highest level is {heat_max}"
                )
        return cls(
            intensity_min=caps_.intensity.min,
            intensity_max=intensity_max,
            heat_max=heat_max,
            heat_max_reason=reason,
            session_s=min(caps.session_s, CEILING_SESSION_S),
            heat_s=min(caps.heat_s, CEILING_HEAT_S),
            temperature_c=temperature,
            clamp=caps.clamp,
            no_heat=caps.no_heat,
            heartbeat_s=caps.heartbeat_s,
            ramp_step_s=caps.ramp_step_s,
            unattended_heat_level=min(caps.unattended_heat_level, heat_max),
            cooldown_s=caps.cooldown_s,
        )
