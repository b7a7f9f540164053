"""The program schema: a named list of timed steps, with an optional progression.

A program is data only, written in TOML (see ``programs/shipped/``). It names modes,
not wire codes, so one program fits every massager that has those modes; whether a
device can run it is decided by :func:`footctl.programs.check.check_against_limits`
and, at run time, by the safety governor.

Every model is frozen and forbids unknown keys, so a misspelt key is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from footctl.errors import UsageError
from footctl.safety.limits import CEILING_SESSION_S

SCHEMA_VERSION = 1

# The profile schema numbers heat levels 1..15 (HeatLevel.level); 0 means heat off.
HEAT_LEVEL_LIMIT = 15

# Intensities go on the wire as one byte in every known framing.
INTENSITY_LIMIT = 255

# Every step and every pulse phase is at least one BLE write and a motor start or
# stop; anything shorter than this is chatter the device may not even follow.
MIN_PHASE_S = 5.0

# A step may not be longer than the absolute session ceiling: no program can run past it.
MAX_STEP_S = CEILING_SESSION_S

_DURATION = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*(?:(\d+)\s*s)?\s*$")
_SECONDS_PER = (3600, 60, 1)


def parse_duration(value: object) -> float:
    """Seconds from a TOML number (seconds) or a string such as "5m", "90s", "1m30s", "1h"."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '5m' or '90s'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and any(match.groups()):
            parts = zip(match.groups(), _SECONDS_PER, strict=True)
            return float(sum(int(g) * unit for g, unit in parts if g))
        raise ValueError(f"{value!r} is not a duration such as '5m', '90s' or '1m30s'")
    raise ValueError("a duration is a number of seconds or a string such as '5m' or '90s'")


Seconds = Annotated[float, BeforeValidator(parse_duration)]
Intensity = Annotated[int, Field(ge=1, le=INTENSITY_LIMIT)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class Model(BaseModel):
    """Base for program models: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Pulse(Model):
    """Massage on for ``on_s``, paused for ``off_s``, repeated through the step.

    Heat is not pulsed: it is slow to change, and a pulse is about the rollers.
    """

    on_s: Seconds
    off_s: Seconds

    @field_validator("on_s", "off_s")
    @classmethod
    def _long_enough(cls, value: float) -> float:
        if value < MIN_PHASE_S:
            raise ValueError(f"a pulse phase must last at least {MIN_PHASE_S:g} s")
        return value


Percent = Annotated[int, Field(ge=0, le=100)]


def percent_to_level(percent: int, low: int, high: int) -> int:
    """A relative intensity on a device whose levels run ``low``..``high``: 0 % is the
    gentlest level (never 0), 100 % the strongest, rounded half up."""
    low = max(low, 1)
    return low + int((high - low) * percent / 100 + 0.5)


class Ramp(Model):
    """Intensity moves one level at a time from ``from_intensity`` to ``to_intensity``,
    in equal slices of the step's duration (the last slice holds ``to_intensity``)."""

    from_intensity: Intensity
    to_intensity: Intensity

    @model_validator(mode="after")
    def _moves(self) -> Ramp:
        if self.from_intensity == self.to_intensity:
            raise ValueError("a ramp must change intensity; use 'intensity' for a flat step")
        return self

    @property
    def levels(self) -> tuple[int, int]:
        """(from, to)."""
        return self.from_intensity, self.to_intensity


class RampPercent(Model):
    """A ramp relative to the device's range: ``from_percent`` to ``to_percent``."""

    from_percent: Percent
    to_percent: Percent

    @model_validator(mode="after")
    def _moves(self) -> RampPercent:
        if self.from_percent == self.to_percent:
            raise ValueError("a ramp must change intensity; use 'intensity_percent'")
        return self


class Step(Model):
    """One step: for ``duration`` seconds, run ``mode`` at ``intensity`` (or along
    ``ramp``) with ``heat`` (level, 0 = off), optionally on ``zone`` and pulsed."""

    name: Annotated[str, Field(min_length=1, max_length=60)] | None = None
    duration: Seconds
    mode: Name = Field(description="a mode name, or a mode family (kneading, rolling...)")
    fallback: list[Name] = Field(
        default_factory=list,
        description="families to use, in order, on a device that has no mode of 'mode'",
    )
    intensity: Intensity | None = None
    intensity_percent: Percent | None = Field(
        default=None, description="intensity relative to the device's range (0 % = gentlest)"
    )
    ramp: Ramp | None = None
    ramp_percent: RampPercent | None = None
    heat: Annotated[int, Field(ge=0, le=HEAT_LEVEL_LIMIT)] = 0
    zone: Annotated[int, Field(ge=0, le=0xFF)] | None = None
    pulse: Pulse | None = None

    @field_validator("duration")
    @classmethod
    def _duration_in_range(cls, value: float) -> float:
        if value < MIN_PHASE_S:
            raise ValueError(f"a step must last at least {MIN_PHASE_S:g} s")
        if value > MAX_STEP_S:
            raise ValueError(
                f"a step may last at most {MAX_STEP_S / 60:g} min (the session ceiling)"
            )
        return value

    @model_validator(mode="after")
    def _intensity_or_ramp(self) -> Step:
        given = [
            x for x in (self.intensity, self.intensity_percent, self.ramp, self.ramp_percent)
            if x is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "a step has exactly one of 'intensity', 'intensity_percent', 'ramp' or "
                "'ramp_percent'"
            )
        return self

    @property
    def relative(self) -> bool:
        """True if the step's intensity is relative (resolve it for a device first)."""
        return self.intensity_percent is not None or self.ramp_percent is not None

    @property
    def duration_s(self) -> float:
        """The step's length in seconds."""
        return self.duration

    @property
    def peak_intensity(self) -> int:
        """The highest intensity the step asks for."""
        if self.ramp is not None:
            return max(self.ramp.levels)
        if self.intensity is None:
            raise ValueError("a relative intensity has a level only on a device (resolve it)")
        return self.intensity

    @property
    def peak_field(self) -> str:
        """The field that holds :attr:`peak_intensity`, for error messages."""
        if self.ramp is None:
            return "intensity"
        low, high = self.ramp.levels
        if high >= low:
            return "ramp.to_intensity"
        return "ramp.from_intensity"

    @property
    def label(self) -> str:
        """A name for progress displays: the step's name, else its mode."""
        return self.name or self.mode


class Progression(Model):
    """Raise intensity gradually over nights: the program starts at ``start_intensity``
    and gains one level every ``every_nights`` completed nights, up to ``max_intensity``.

    The level is a ceiling on every step: a step asking for less runs as written.
    """

    start_intensity: Intensity = 1
    every_nights: Annotated[int, Field(ge=1, le=365)]
    max_intensity: Intensity

    @model_validator(mode="after")
    def _ordered(self) -> Progression:
        if self.max_intensity < self.start_intensity:
            raise ValueError(
                f"max_intensity ({self.max_intensity}) is below start_intensity "
                f"({self.start_intensity})"
            )
        return self

    def level(self, completed_nights: int) -> int:
        """The intensity ceiling after this many completed nights."""
        if completed_nights < 0:
            raise ValueError("completed_nights cannot be negative")
        return min(self.start_intensity + completed_nights // self.every_nights, self.max_intensity)


class Program(Model):
    """A program: a name, a description and its steps, in order."""

    schema_version: Literal[1] = 1
    name: Name
    description: str = ""
    steps: Annotated[list[Step], Field(min_length=1)]
    progression: Progression | None = None

    @field_validator("steps")
    @classmethod
    def _within_ceiling(cls, steps: list[Step]) -> list[Step]:
        total = sum(s.duration_s for s in steps)
        if total > CEILING_SESSION_S:
            raise ValueError(
                f"the steps last {total / 60:g} min, past the {CEILING_SESSION_S / 60:g} min "
                "session ceiling"
            )
        return steps

    @property
    def duration_s(self) -> float:
        """Total length in seconds."""
        return sum(s.duration_s for s in self.steps)


def effective_intensity(program: Program, step: Step, completed_nights: int) -> int:
    """The highest intensity ``step`` reaches tonight, after ``completed_nights``.

    Without a progression this is the step's own peak. With one, the peak is capped at
    the progression level (start, plus one per ``every_nights`` nights, up to the max).
    """
    if completed_nights < 0:
        raise ValueError("completed_nights cannot be negative")
    if program.progression is None:
        return step.peak_intensity
    return min(step.peak_intensity, program.progression.level(completed_nights))


# --- errors -----------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramProblem:
    """One thing wrong with a program file. ``step`` is 1-based; None for the program."""

    file: Path | None
    step: int | None
    field: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = str(self.file) if self.file else "<program>"
        if self.line is not None:
            where += f":{self.line}"
        step = f" step {self.step}:" if self.step is not None else ""
        return f"{where}:{step} {self.field}: {self.reason}"


class ProgramError(UsageError):
    """A program file is invalid; lists every problem with file, line, step and field."""

    kind = "program"

    def __init__(self, problems: list[ProgramProblem], *, advice: str | None = None) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems), advice=advice)

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["problems"] = [
            {
                "file": str(p.file) if p.file else None,
                "line": p.line,
                "step": p.step,
                "field": p.field,
                "reason": p.reason,
            }
            for p in self.problems
        ]
        return out
