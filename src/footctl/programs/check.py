"""Check a program against a device's effective limits before it starts.

``footctl program check`` and the runner call :func:`check_against_limits` with the
limits the safety governor computed, so the user sees every step that would be
clamped or refused, and why, before the massager moves.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from footctl.programs.model import Program, effective_intensity
from footctl.safety.dose import HEAT_COOLDOWN_S, default_weights, program_doses


@dataclass(frozen=True)
class Problem:
    """One step (1-based; None for the whole program) asking more than a cap allows."""

    step: int | None
    field: str
    asked: int | float | str
    cap: int | float | str
    reason: str

    def __str__(self) -> str:
        where = f"step {self.step}" if self.step is not None else "program"
        asked, cap = _show(self.asked), _show(self.cap)
        return f"{where}: {self.field}: asks {asked}, cap {cap} ({self.reason})"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "step": self.step,
            "field": self.field,
            "asked": self.asked,
            "cap": self.cap,
            "reason": self.reason,
        }


def _show(value: int | float | str) -> str:
    if isinstance(value, float):  # a duration in seconds: whole seconds, as a person reads it
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes} min" + (f" {seconds} s" if seconds else "")
    return str(value)


def check_against_limits(
    program: Program,
    *,
    max_intensity: int,
    max_heat: int,
    max_session_s: float,
    no_heat: bool,
    max_heat_s: float | None = None,
    modes: Collection[str] | None = None,
    completed_nights: int | None = None,
    heat_weights: Sequence[float] | None = None,
) -> list[Problem]:
    """Every place where ``program`` asks for more than the caps allow.

    Checks the total length against ``max_session_s``; each step's peak intensity
    against ``max_intensity`` (at ``completed_nights``, or for a progressive program
    with None, the most it will ever reach); its heat against ``max_heat`` (any heat
    when ``no_heat``, the medical setting); optionally the heat dose against
    ``max_heat_s`` (with ``heat_weights``, ``Limits.heat_weights``, per level; without,
    each level up doubles), and each mode against the device's ``modes``.
    Durations in problems are seconds (floats); levels are ints. An empty list means
    the program runs as written.
    """
    problems: list[Problem] = []
    total = program.duration_s
    if total > max_session_s:
        problems.append(
            Problem(None, "duration", total, float(max_session_s), "longer than the session cap")
        )
    nights = completed_nights
    if nights is None:
        # Worst case: the progression has reached its maximum.
        nights = _nights_to_max(program)
    for number, step in enumerate(program.steps, start=1):
        peak = effective_intensity(program, step, nights)
        if peak > max_intensity:
            problems.append(
                Problem(number, step.peak_field, peak, max_intensity, "above the intensity cap")
            )
        if step.heat > 0 and no_heat:
            problems.append(
                Problem(number, "heat", step.heat, 0, "no_heat is set (medical setting)")
            )
        elif step.heat > max_heat:
            problems.append(Problem(number, "heat", step.heat, max_heat, "above the heat cap"))
        if modes is not None and step.mode not in modes:
            known = ", ".join(sorted(modes)) or "none"
            problems.append(
                Problem(number, "mode", step.mode, known, "the device has no such mode")
            )
    if max_heat_s is not None and not no_heat:
        problems.extend(_heat_dose(program, max_heat_s, heat_weights))
    return problems


def _nights_to_max(program: Program) -> int:
    """Completed nights after which a progression stops rising (0 without one)."""
    prog = program.progression
    if prog is None:
        return 0
    return (prog.max_intensity - prog.start_intensity) * prog.every_nights


def _heat_dose(
    program: Program, max_heat_s: float, weights: Sequence[float] | None
) -> list[Problem]:
    """A problem at the first step during which the heat dose reaches ``max_heat_s``,
    counted as the governor counts it (safety/dose.py): heat time weighted by level,
    within a sliding window; a gap shorter than the cool-down does not reset it. (A
    "continuous heat" check let 14:55 of heat, a 0:05 gap and 5:00 more pass.)"""
    top = max((s.heat for s in program.steps), default=0)
    table = weights if weights is not None else default_weights(top)
    doses = program_doses([(s.duration_s, s.heat) for s in program.steps], table)
    for number, dose in enumerate(doses, start=1):
        if program.steps[number - 1].heat > 0 and dose > max_heat_s + 1e-9:
            return [
                Problem(
                    number,
                    "heat",
                    float(max(doses)),
                    float(max_heat_s),
                    "the heat dose reaches the heat cap here (heat time, hotter levels "
                    f"weigh more; a gap under {HEAT_COOLDOWN_S / 60:g} min does not reset "
                    "it)",
                )
            ]
    return []
