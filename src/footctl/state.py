"""Runtime values: commands on the wire, decoded reports, and device state.

All are frozen dataclasses, changed with :func:`dataclasses.replace`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    """One command as it goes on the wire. ``value`` is the wire value (heat and mode
    codes, not levels and names); ``None`` for commands without an argument. The name
    is one of :data:`footctl.device.profile.schema.CommandName` in a version-1 profile, any
    command the profile defines in version 2."""

    name: str
    value: int | None = None


@dataclass(frozen=True)
class Report:
    """A decoded status notification. ``None`` means the device did not report the field.

    ``heat`` is a heat level (0 = off) and ``mode`` a mode name, already mapped from the
    wire codes through the profile.
    """

    running: bool | None = None
    intensity: int | None = None
    heat: int | None = None
    mode: str | None = None
    zone: int | None = None
    timer: int | None = None
    battery: int | None = None
    temperature: float | None = None
    error: int | None = None


@dataclass(frozen=True)
class DeviceState:
    """What footctl knows of one massager.

    ``assumed`` is true when the values come from what was commanded, not from a
    status report (devices without status, or before the first report).
    """

    address: str
    profile_id: str
    name: str = ""
    connected: bool = False
    running: bool = False
    intensity: int | None = None
    heat: int = 0
    mode: str | None = None
    zone: int | None = None
    timer: int | None = None
    battery: int | None = None
    temperature: float | None = None
    assumed: bool = True
    reports: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)
