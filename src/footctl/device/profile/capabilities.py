"""What a massager can do: intensity range, heat levels, modes and their families,
zones or air chambers, timers.

Part of the profile schema (:mod:`footctl.device.profile.schema` re-exports every name).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from footctl.device.profile.base import Byte, Model
from footctl.device.profile.settings import KNOWN_FAMILIES, Chamber, Nodes

__all__ = ["Capabilities", "Family", "HeatLevel", "IntRange", "Mode", "duplicate_codes"]

# What "heat off" puts on the wire: a heat level whose code is this could not be told
# from off (the codec and the virtual massager read 0 as no heat).
HEAT_OFF_WIRE = 0


def duplicate_codes(
    codes: list[tuple[tuple[str | int, ...], str, int]], taken: dict[int, str]
) -> list[InitErrorDetails]:
    """An error at each place (key path, what it is, its wire code) whose code an
    earlier place (or ``taken``: code -> what uses it) already has: on the wire the
    device could not tell them apart."""
    first: dict[int, str] = dict(taken)
    errors: list[InitErrorDetails] = []
    for loc, what, code in codes:
        if code in first:
            errors.append(InitErrorDetails(
                type=PydanticCustomError(
                    "duplicate_code",
                    "{what} has code {code}, as {other} does: the device could not tell "
                    "them apart (each needs its own code)",
                    {"what": what, "code": f"{code:#04x}", "other": first[code]},
                ),
                loc=loc, input=code,
            ))
        else:
            first[code] = what
    return errors


class IntRange(Model):
    """An inclusive integer range."""

    min: int
    max: int

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.min <= value <= self.max


class HeatLevel(Model):
    """One heat level: 1 is the lowest. ``code`` is what goes on the wire (default: level)."""

    level: Annotated[int, Field(ge=1, le=15)]
    celsius: Annotated[float, Field(gt=20, lt=80)]
    code: Byte | None = None

    @property
    def wire(self) -> int:
        """The value sent and reported for this level."""
        return self.level if self.code is None else self.code


Family = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]


class Mode(Model):
    """A massage mode, the value that selects it on the wire, and the families of
    massage it belongs to (what programs ask for: kneading, rolling, compression...;
    by default the mode's name, where it names a known family)."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    code: Byte
    families: list[Family] | None = None

    @property
    def family_set(self) -> frozenset[str]:
        """The families of this mode (declared, else the name if it is a known family)."""
        if self.families is not None:
            return frozenset(self.families)
        return frozenset({self.name}) if self.name in KNOWN_FAMILIES else frozenset()


class Capabilities(Model):
    """What the massager can do."""

    command_style: Literal["absolute", "keys", "settings"] = Field(
        description="absolute: commands carry the wanted value; keys: key presses only; "
        "settings (version 2): each setting says its own style in [settings]"
    )
    reports_status: bool = Field(
        description="false if the device sends no status; state is then assumed from commands"
    )
    intensity: IntRange
    heat_levels: list[HeatLevel] = Field(default_factory=list)
    modes: Annotated[list[Mode], Field(min_length=1)]
    zones: IntRange | None = None
    timer_minutes: IntRange | None = None
    timer_values: list[Annotated[int, Field(ge=1, le=240)]] | None = Field(
        default=None, description="the device's timer takes only these minutes (v2)"
    )
    auto_off_minutes: Annotated[int, Field(ge=1, le=240)] | None = None
    keepalive_seconds: Annotated[float, Field(gt=0, le=300)] | None = None
    chambers: list[Chamber] = Field(
        default_factory=list,
        description="air chambers (v2): the zone value is the bit mask of those that run",
    )
    nodes: Nodes | None = None

    @model_validator(mode="before")
    @classmethod
    def _chamber_zones(cls, data: object) -> object:
        # With chambers, the zone is the bit mask of the chambers that run.
        if isinstance(data, dict) and data.get("chambers") and "zones" not in data:
            return {**data, "zones": {"min": 1, "max": (1 << len(data["chambers"])) - 1}}
        return data

    @model_validator(mode="after")
    def _distinct_codes(self) -> Capabilities:
        # Raised as a ValidationError so each error is located at its own key
        # (capabilities.modes.1.code), not at the whole capabilities table.
        errors = duplicate_codes(
            [(("modes", i, "code"), f"mode {m.name!r}", m.code)
             for i, m in enumerate(self.modes)], {})
        errors += duplicate_codes(
            [(("heat_levels", i, "code"), f"heat level {h.level}", h.wire)
             for i, h in enumerate(self.heat_levels)], {HEAT_OFF_WIRE: "heat off"})
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Capabilities:
        levels = [h.level for h in self.heat_levels]
        if levels != list(range(1, len(levels) + 1)):
            raise ValueError("heat_levels must be numbered 1, 2, 3... in order")
        temps = [h.celsius for h in self.heat_levels]
        if temps != sorted(temps):
            raise ValueError("heat_levels must get hotter as the level rises")
        names = [m.name for m in self.modes]
        if len(set(names)) != len(names):
            raise ValueError("mode names must be unique")
        if self.intensity.min < 0:
            raise ValueError("intensity.min must be 0 or more")
        if self.timer_values is not None:
            if not self.timer_values or self.timer_values != sorted(set(self.timer_values)):
                raise ValueError("timer_values are distinct minutes in rising order")
            if self.timer_minutes is not None and not all(
                v in self.timer_minutes for v in self.timer_values
            ):
                raise ValueError("timer_values lie outside timer_minutes")
        chambers = [c.name for c in self.chambers]
        if len(set(chambers)) != len(chambers):
            raise ValueError("chamber names must be unique")
        if len(chambers) > 8:
            raise ValueError("at most 8 chambers (the zone is a one-byte bit mask)")
        if chambers and self.zones != IntRange(min=1, max=(1 << len(chambers)) - 1):
            raise ValueError(
                f"with {len(chambers)} chambers the zones are the bit masks "
                f"1-{(1 << len(chambers)) - 1}; leave 'zones' out"
            )
        return self

    def families(self) -> frozenset[str]:
        """Every mode family this device can do."""
        out: frozenset[str] = frozenset()
        for m in self.modes:
            out |= m.family_set
        return out

    @property
    def max_heat_level(self) -> int:
        """The highest heat level (0 if the device has no heat)."""
        return len(self.heat_levels)

    def heat_celsius(self, level: int) -> float | None:
        """The temperature a heat level means, or None for 0/unknown."""
        for h in self.heat_levels:
            if h.level == level:
                return h.celsius
        return None

    def mode_named(self, name: str) -> Mode | None:
        """The mode with this name, if any."""
        for m in self.modes:
            if m.name == name:
                return m
        return None
