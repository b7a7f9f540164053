"""Safety numbers and the effective limits for one device.

Defaults may be lowered by a user; only the config file may raise them, and never
past the absolute ceilings below (see DESIGN.md, "Safety numbers").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from footctl.device.profile.schema import Profile
from footctl.safety.dose import HEAT_COOLDOWN_S, heat_weights

MINUTE = 60.0

# One massage session: the therapeutic window is 10-20 min; past ~25 min overstimulates.
DEFAULT_SESSION_S = 20 * MINUTE
CEILING_SESSION_S = 45 * MINUTE

# Heat dose (see safety/dose.py): 15 min of heat at the lowest level within a sliding
# window, hotter levels weigh more, only a cool-down resets it. Burn risk is
# temperature x time; common device auto-off is 15 min.
DEFAULT_HEAT_S = 15 * MINUTE
CEILING_HEAT_S = 30 * MINUTE

# Heat temperature: the heat pain threshold at the foot is ~44.5 C.
DEFAULT_TEMPERATURE_C = 42.0
CEILING_TEMPERATURE_C = 45.0

# Rest between sessions.
DEFAULT_COOLDOWN_S = 30 * MINUTE
# ... never shorter than the heat cool-down: a new process cannot see the last one's heat
# dose, so the feet must have cooled down before a new session may heat them again.
FLOOR_COOLDOWN_S = HEAT_COOLDOWN_S

# Dead-man heartbeat: the controller must prove it is alive this often while running.
DEFAULT_HEARTBEAT_S = 60.0
# It may be lengthened, never disabled: past 10 min a hung controller goes unnoticed
# for most of a session. Below 5 s a busy machine's scheduling jitter would trip it.
FLOOR_HEARTBEAT_S = 5.0
CEILING_HEARTBEAT_S = 600.0

# Start low, increase gradually: at most one intensity level per this many seconds.
DEFAULT_RAMP_STEP_S = 10.0
# The config may shorten the ramp, not remove it: a person needs a few seconds at a level
# to feel whether it is too strong before the next one comes.
FLOOR_RAMP_STEP_S = 5.0
CEILING_RAMP_STEP_S = 120.0

# A program started while the user may be asleep uses at most this heat level: the
# lowest. Heating pads are not for sleeping people; the config may forbid that heat
# (0), never raise it.
DEFAULT_UNATTENDED_HEAT_LEVEL = 1
CEILING_UNATTENDED_HEAT_LEVEL = 1


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
    # Dose weight per heat level (index 0: no heat), from the levels' temperatures.
    heat_weights: tuple[float, ...] = (0.0, 1.0)

    def with_floors(self) -> Limits:
        """These limits with the design's floors and ceilings applied to what a config
        could loosen (the governor does this for every real radio): the ramp, the
        cooldown between sessions, the heartbeat."""
        return dataclasses.replace(
            self,
            ramp_step_s=min(max(self.ramp_step_s, FLOOR_RAMP_STEP_S), CEILING_RAMP_STEP_S),
            cooldown_s=max(self.cooldown_s, FLOOR_COOLDOWN_S),
            heartbeat_s=min(max(self.heartbeat_s, FLOOR_HEARTBEAT_S), CEILING_HEARTBEAT_S),
            unattended_heat_level=min(self.unattended_heat_level, CEILING_UNATTENDED_HEAT_LEVEL),
        )

    @classmethod
    def compute(cls, profile: Profile, caps: Caps) -> Limits:
        """Combine a profile's range with user caps and the ceilings."""
        caps_ = profile.capabilities
        sorted_levels = sorted(caps_.heat_levels, key=lambda h: h.level)
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
            unattended_heat_level=min(
                caps.unattended_heat_level, CEILING_UNATTENDED_HEAT_LEVEL, heat_max
            ),
            cooldown_s=caps.cooldown_s,
            heat_weights=heat_weights([h.celsius for h in sorted_levels]),
        )


def cooldown_words(left_s: float, cooldown_s: float) -> tuple[str, str]:
    """What a cooldown refusal says, and its advice: one wording for the governor and
    ``schedule.may_start`` (they differed, and a session that ended 20 s before read
    "ended 0 min ago")."""
    rested = max(0.0, cooldown_s - left_s)
    ago = "less than a minute ago" if rested < 60 else f"{rested / 60:.0f} min ago"
    return (
        f"the last session on this massager ended {ago}; "
        f"the feet rest {cooldown_s / 60:g} min between sessions",
        f"try again in {math.ceil(left_s / 60)} min",
    )


def cooldown_left_s(now_wall: float, ended_wall: float, cooldown_s: float) -> float:
    """Seconds of the cooldown still to run at ``now_wall`` after a session ended at
    ``ended_wall`` (both wall clock: the cooldown spans processes). An end in the future
    means the wall clock moved back: it counts as just ended (the whole cooldown), never
    as long ago and never as longer than the cooldown. The governor and
    ``schedule.may_start`` both decide with this one function."""
    rested = now_wall - ended_wall
    if rested < 0:
        return cooldown_s
    return max(0.0, cooldown_s - rested)
