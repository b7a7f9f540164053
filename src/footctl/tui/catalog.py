"""What the keys need to know beyond the state stream: each profile's ranges, modes,
heat levels and zones, and the programs that can be started.

Read from the same profile and program files the owner reads (same user, same
config), so ``+``, ``m``, ``h``, ``z`` and ``p`` can offer what the massager can do.
The governor still decides: a value past a cap comes back refused, with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from footctl.errors import FootctlError

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceCaps:
    """A profile's capabilities as the keys use them."""

    intensity_min: int
    intensity_max: int
    heat_celsius: tuple[float, ...] = ()  # index 0 is level 1
    modes: tuple[str, ...] = ()
    zones: tuple[int, int] | None = None

    @property
    def max_heat(self) -> int:
        """The highest heat level (0: no heat)."""
        return len(self.heat_celsius)

    def celsius(self, level: int) -> float | None:
        """The temperature a heat level means (None for off or unknown)."""
        if 1 <= level <= len(self.heat_celsius):
            return self.heat_celsius[level - 1]
        return None


@dataclass(frozen=True)
class ProgramInfo:
    """A program as the picker lists it."""

    name: str
    description: str
    duration_s: float
    steps: int


@dataclass
class Catalog:
    """Capabilities by profile id and the program list, loaded once, lazily.

    ``load_caps`` and ``load_programs`` default to reading the profile and program
    files; tests may pass their own."""

    profile_dirs: Sequence[Path] = ()
    load_caps: Callable[[str], DeviceCaps | None] | None = None
    load_programs: Callable[[], list[ProgramInfo]] | None = None
    _caps: dict[str, DeviceCaps | None] = field(default_factory=dict)
    _programs: list[ProgramInfo] | None = None

    def caps(self, profile_id: str) -> DeviceCaps | None:
        """The capabilities of ``profile_id``, or None if its profile cannot be read."""
        if profile_id not in self._caps:
            loader = self.load_caps or self._caps_from_files
            self._caps[profile_id] = loader(profile_id)
        return self._caps[profile_id]

    def programs(self) -> list[ProgramInfo]:
        """Every program that can be started, by name."""
        if self._programs is None:
            loader = self.load_programs or _programs_from_files
            self._programs = loader()
        return self._programs

    def _caps_from_files(self, profile_id: str) -> DeviceCaps | None:
        from footctl.device.profile.loader import get_profile  # noqa: PLC0415 - pydantic models

        try:
            caps = get_profile(profile_id, list(self.profile_dirs)).capabilities
        except FootctlError as exc:
            _LOG.warning("profile %s: %s; keys will offer no ranges", profile_id, exc)
            return None
        return DeviceCaps(
            intensity_min=caps.intensity.min,
            intensity_max=caps.intensity.max,
            heat_celsius=tuple(h.celsius for h in caps.heat_levels),
            modes=tuple(m.name for m in caps.modes),
            zones=None if caps.zones is None else (caps.zones.min, caps.zones.max),
        )


def _programs_from_files() -> list[ProgramInfo]:
    from footctl.programs.loader import default_user_dir, list_programs  # noqa: PLC0415

    try:
        found = list_programs(default_user_dir())
    except FootctlError as exc:
        _LOG.warning("programs: %s", exc)
        return []
    return [
        ProgramInfo(
            f.program.name, f.program.description, f.program.duration_s, len(f.program.steps)
        )
        for f in found
    ]
