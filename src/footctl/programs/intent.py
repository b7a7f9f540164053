"""Programs speak of intent; a device speaks of its own modes and levels.

:func:`resolve` turns a program into the same program for one profile: each step's
``mode`` becomes one of the device's modes (the mode of that name, else a mode of that
family, else of a ``fallback`` family, in order), and each relative intensity
(``intensity_percent``, a ramp in percent) becomes a level in the device's range. Every
change is an :class:`Adaptation` the user sees in ``program check``; a step no mode of
the device can do keeps the name it asked for and is refused by the cap check.
"""

from __future__ import annotations

from dataclasses import dataclass

from footctl.device.profile.schema import Mode, Profile
from footctl.programs.model import Program, Ramp, Step, percent_to_level

__all__ = ["Adaptation", "Resolution", "pick_mode", "resolve"]


@dataclass(frozen=True)
class Adaptation:
    """What :func:`resolve` changed (or could not) in one step (1-based)."""

    step: int
    field: str
    reason: str
    ok: bool = True


@dataclass(frozen=True)
class Resolution:
    """A program made concrete for one profile, and what changed on the way."""

    program: Program
    adaptations: tuple[Adaptation, ...]

    @property
    def unplayable(self) -> list[Adaptation]:
        """Steps the device cannot do at all."""
        return [a for a in self.adaptations if not a.ok]


def _best(modes: list[Mode], family: str) -> Mode | None:
    """The device's mode for ``family``: one that is only that family, else the first."""
    fitting = [m for m in modes if family in m.family_set]
    pure = [m for m in fitting if m.family_set == {family}]
    chosen = pure or fitting
    return chosen[0] if chosen else None


def pick_mode(profile: Profile, asked: str, fallback: list[str]) -> tuple[Mode | None, str]:
    """The mode a step asking for ``asked`` (then ``fallback``) runs on ``profile``, and
    how it was found (``name``, ``family``, ``fallback <family>`` or why none)."""
    caps = profile.capabilities
    exact = caps.mode_named(asked)
    if exact is not None:
        return exact, "name"
    mode = _best(caps.modes, asked)
    if mode is not None:
        return mode, "family"
    for family in fallback:
        mode = caps.mode_named(family) or _best(caps.modes, family)
        if mode is not None:
            return mode, f"fallback {family}"
    families = ", ".join(sorted(caps.families())) or "none"
    tried = ", ".join([asked, *fallback])
    return None, f"{profile.id} can do none of {tried} (its modes: " + ", ".join(
        m.name for m in caps.modes
    ) + f"; families: {families})"


def resolve(program: Program, profile: Profile) -> Resolution:
    """``program`` as it runs on ``profile`` (see the module docstring)."""
    caps = profile.capabilities
    low, high = caps.intensity.min, caps.intensity.max
    steps: list[Step] = []
    notes: list[Adaptation] = []
    for number, step in enumerate(program.steps, start=1):
        update: dict[str, object] = {}
        mode, how = pick_mode(profile, step.mode, step.fallback)
        if mode is None:
            notes.append(Adaptation(number, "mode", how, ok=False))
        elif how != "name":
            update["mode"] = mode.name
            notes.append(Adaptation(
                number, "mode",
                f"{profile.id} has no mode {step.mode!r}; runs {mode.name!r} ({how})",
            ))
        if step.intensity_percent is not None:
            level = percent_to_level(step.intensity_percent, low, high)
            update |= {"intensity": level, "intensity_percent": None}
            notes.append(Adaptation(
                number, "intensity",
                f"{step.intensity_percent} % of {max(low, 1)}-{high} is level {level}",
            ))
        if step.ramp_percent is not None:
            rp = step.ramp_percent
            a = percent_to_level(rp.from_percent, low, high)
            b = percent_to_level(rp.to_percent, low, high)
            update["ramp_percent"] = None
            if a == b:
                update["intensity"] = a
            else:
                update["ramp"] = Ramp(from_intensity=a, to_intensity=b)
            notes.append(Adaptation(
                number, "ramp",
                f"{rp.from_percent}-{rp.to_percent} % of {max(low, 1)}-{high} is {a}-{b}",
            ))
        steps.append(step.model_copy(update=update) if update else step)
    resolved = program.model_copy(update={"steps": steps})
    return Resolution(resolved, tuple(notes))
