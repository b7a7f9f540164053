"""A program as a timeline of setpoints, so a runner only has to follow it.

:func:`expand` is pure: the same program and night count give the same list.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TypeVar

from footctl.programs.model import Program, Step, effective_intensity

T = TypeVar("T")


@dataclass(frozen=True)
class TimedSetpoint:
    """What the device should do from ``offset_s`` seconds after the program starts.

    ``step`` is the 1-based step number, or None for the final setpoint (everything
    off). ``running`` is False while a pulse pauses the massage; heat is given
    separately and is not pulsed. Mapping a pause onto a device (whose power switch
    may also cut heat) is the runner's job.
    """

    offset_s: float
    step: int | None
    intensity: int
    heat: int
    mode: str
    zone: int | None
    running: bool


def _ramp_points(step: Step, ceiling: int) -> list[tuple[float, int]]:
    """(time into the step, intensity) where intensity changes, capped at ``ceiling``."""
    if step.ramp is None:
        assert step.intensity is not None
        return [(0.0, min(step.intensity, ceiling))]
    a, b = step.ramp.levels
    direction = 1 if b > a else -1
    levels = list(range(a, b + direction, direction))
    slice_s = step.duration_s / len(levels)
    return [(i * slice_s, min(level, ceiling)) for i, level in enumerate(levels)]


def _pulse_points(step: Step) -> list[tuple[float, bool]]:
    """(time into the step, running) at each pulse phase change."""
    if step.pulse is None:
        return [(0.0, True)]
    period = step.pulse.on_s + step.pulse.off_s
    points: list[tuple[float, bool]] = []
    cycle = 0
    while cycle * period < step.duration_s:
        start = cycle * period
        points.append((start, True))
        if start + step.pulse.on_s < step.duration_s:
            points.append((start + step.pulse.on_s, False))
        cycle += 1
    return points


def _value_at(points: list[tuple[float, T]], t: float) -> T:
    """The value of the last point at or before ``t``."""
    index = bisect.bisect_right([p[0] for p in points], t) - 1
    return points[max(index, 0)][1]


def expand(program: Program, completed_nights: int = 0) -> list[TimedSetpoint]:
    """Every change of setpoint over the program, in time order, ending with an
    all-off setpoint at the program's total duration.

    A setpoint is emitted at the start of every step, and within a step whenever the
    intensity (ramp) or the running flag (pulse) changes. Intensities are capped by the
    progression level for ``completed_nights`` (see :func:`effective_intensity`).
    """
    setpoints: list[TimedSetpoint] = []
    offset = 0.0
    for number, step in enumerate(program.steps, start=1):
        ceiling = effective_intensity(program, step, completed_nights)
        ramp = _ramp_points(step, ceiling)
        pulse = _pulse_points(step)
        times = sorted({t for t, _ in ramp} | {t for t, _ in pulse})
        previous: tuple[int, bool] | None = None
        for t in times:
            intensity = _value_at(ramp, t)
            running = _value_at(pulse, t)
            if (intensity, running) == previous:
                continue
            previous = (intensity, running)
            setpoints.append(
                TimedSetpoint(
                    offset_s=offset + t,
                    step=number,
                    intensity=intensity,
                    heat=step.heat,
                    mode=step.mode,
                    zone=step.zone,
                    running=running,
                )
            )
        offset += step.duration_s
    setpoints.append(
        TimedSetpoint(
            offset_s=offset,
            step=None,
            intensity=0,
            heat=0,
            mode=program.steps[-1].mode,
            zone=None,
            running=False,
        )
    )
    return setpoints


def setpoint_at(timeline: list[TimedSetpoint], offset_s: float) -> TimedSetpoint:
    """The setpoint in force ``offset_s`` seconds into the program (the last one at or
    before it; the final all-off one past the end)."""
    index = bisect.bisect_right([s.offset_s for s in timeline], offset_s) - 1
    return timeline[max(index, 0)]
