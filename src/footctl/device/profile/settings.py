"""Schema version 2: per-setting command styles, commands beyond one framing, and the
connection's own frames.

A version-2 profile says, for every setting the massager has (power, intensity, heat,
mode, zone, timer), *how* a value reaches the device:

``absolute``
    one command carries the wanted value (``command``);
``table``
    one command (a key code or a whole frame) per value (``values``);
``step``
    an up and a down key move the value by one (``up``, ``down``); from a known starting
    point (``start``, reached by power-on or by the ``reset`` command) a level of N is
    a counted number of presses;
``cycle``
    one key walks through ``order`` and wraps;
``toggle``
    one key flips between two values (off/on);
``bits``
    one toggle key per bit of the value (the air chambers of a compression massager:
    the zone is a bit mask of the chambers that run);
``level`` (power only)
    the device has no power frame: it runs while its intensity is above 0. Power on is
    the intensity setting's command at its start value, power off is ``off`` (default:
    the intensity command with 0).

Commands (``[commands.<name>]``) are named freely in version 2; each is a framed
command (``code`` and ``body``, framed by ``[framing]``), a verbatim frame (``raw``),
a text command (``text``), or a ``sequence`` of commands and waits. A command may be
written to another characteristic (``endpoint``), repeated while "held" (``repeat``),
and may declare that it ``moves`` furniture (footctl refuses such profiles).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from footctl.device.profile.base import Model, Uuid

# A repeated ("held") command is never sent more often than this: the cheapest BLE
# chips drop writes closer together than ~20 ms.
MIN_REPEAT_INTERVAL_S = 0.02

# A sequence waits at most this long between frames: longer is a program, not a frame.
MAX_WAIT_S = 10.0

# How often a held command may be repeated (a bed remote repeats ~10 Hz for a few s).
MAX_REPEAT_COUNT = 100

SettingName = Literal["power", "intensity", "heat", "mode", "zone", "timer"]
SETTING_NAMES: tuple[SettingName, ...] = ("power", "intensity", "heat", "mode", "zone", "timer")
Style = Literal["absolute", "table", "step", "cycle", "toggle", "bits", "level"]

# Mode families programs may ask for (a profile may use others; these are the ones
# the shipped programs speak).
KNOWN_FAMILIES = (
    "kneading", "rolling", "shiatsu", "compression", "tapping", "pressing", "vibration",
    "ems", "scraping", "acupressure", "cupping", "combined",
)

CommandId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=48)]
Handle = Annotated[int, Field(ge=1, le=0xFFFF)]


class Endpoint(Model):
    """A characteristic, by UUID or (where a device documents only that) by handle."""

    uuid: Uuid | None = None
    handle: Handle | None = None
    with_response: bool | None = Field(
        default=None, description="write with response (default: gatt.write_with_response)"
    )

    @model_validator(mode="after")
    def _one(self) -> Endpoint:
        if (self.uuid is None) == (self.handle is None):
            raise ValueError("an endpoint has exactly one of 'uuid' or 'handle'")
        return self

    @property
    def specifier(self) -> str | int:
        """What bleak's ``get_characteristic`` takes: the UUID, or the handle."""
        return self.uuid if self.uuid is not None else int(self.handle or 0)


class Send(Model):
    """One command inside a sequence (``value`` for a command that takes one)."""

    send: CommandId
    value: int | None = None


class Wait(Model):
    """A pause inside a sequence."""

    wait: Annotated[float, Field(gt=0, le=MAX_WAIT_S)]


def _sequence_item(value: object) -> object:
    """A bare command name in a sequence means ``{ send = name }``."""
    if isinstance(value, str):
        return {"send": value}
    return value


SequenceItem = Annotated[Send | Wait, BeforeValidator(_sequence_item)]


class Repeat(Model):
    """Send a command ``count`` times, ``every`` seconds apart (a key that must be held)."""

    count: Annotated[int, Field(ge=1, le=MAX_REPEAT_COUNT)]
    every: Annotated[float, Field(ge=MIN_REPEAT_INTERVAL_S, le=MAX_WAIT_S)]


_TEXT_VALUE = "{value}"


class TextTemplate:
    """Helpers for ``text`` commands: ``{value}`` is the argument in decimal."""

    @staticmethod
    def takes_arg(text: str) -> bool:
        """True if the text carries the argument."""
        return _TEXT_VALUE in text

    @staticmethod
    def pattern(text: str) -> re.Pattern[bytes]:
        """A pattern matching the encoded text, with the argument as group 1."""
        head, _, tail = text.partition(_TEXT_VALUE)
        if not _:
            return re.compile(re.escape(text.encode()) + rb"\Z", re.DOTALL)
        return re.compile(
            re.escape(head.encode()) + rb"(-?[0-9]+)" + re.escape(tail.encode()) + rb"\Z",
            re.DOTALL,
        )


class Setting(Model):
    """How one setting reaches the device (see the module docstring for the styles).

    Values are written as strings in ``values``/``order``/``start`` (TOML keys are
    strings): digits for numbers (power 0/1, heat levels, intensity, zone masks, timer
    minutes), names for modes.
    """

    style: Style
    command: CommandId | None = Field(default=None, description="absolute: takes the value")
    values: dict[str, CommandId] | None = Field(default=None, description="table: value -> command")
    key: CommandId | None = Field(default=None, description="cycle/toggle: the key")
    order: list[str] | None = Field(
        default=None, description="cycle: the values the key walks through; toggle: off, on"
    )
    up: CommandId | None = None
    down: CommandId | None = None
    bits: dict[str, CommandId] | None = Field(
        default=None, description="bits: chamber name -> the key that toggles it"
    )
    off: CommandId | None = Field(
        default=None, description="level: the command that stops (default: intensity 0)"
    )
    start: str | None = Field(
        default=None, description="the value after power-on (the known starting point)"
    )
    reset: CommandId | None = Field(
        default=None, description="a command or sequence that brings the value to 'start'"
    )
    wraps: bool = Field(default=False, description="step: up at the top goes to the bottom")
    ready_seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = Field(
        default=0.0, description="power only: the device ignores other commands this long "
        "after it switches on"
    )

    @model_validator(mode="after")
    def _fields_for_style(self) -> Setting:
        need: dict[str, tuple[str, ...]] = {
            "absolute": ("command",),
            "table": ("values",),
            "step": ("up", "down"),
            "cycle": ("key",),
            "toggle": ("key",),
            "bits": ("bits",),
            "level": (),
        }
        missing = [f for f in need[self.style] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.style} setting needs {', '.join(missing)}")
        allowed = set(need[self.style]) | {"start", "reset", "ready_seconds"}
        if self.style in ("cycle", "toggle"):
            allowed.add("order")
        if self.style == "step":
            allowed.add("wraps")
        if self.style == "level":
            allowed.add("off")
        given = {
            f for f in ("command", "values", "key", "order", "up", "down", "bits", "wraps", "off")
            if getattr(self, f) not in (None, False)
        }
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"a {self.style} setting takes no {', '.join(extra)}")
        if self.style == "toggle" and self.order is not None and len(self.order) != 2:
            raise ValueError("a toggle's order is [off, on]: exactly two values")
        if self.order is not None and len(set(self.order)) != len(self.order):
            raise ValueError("order lists a value twice")
        if self.values is not None and not self.values:
            raise ValueError("a table needs at least one value")
        if self.bits is not None and len(set(self.bits.values())) != len(self.bits):
            raise ValueError("bits: two chambers share one key (the device could not tell "
                             "which one a press toggles)")
        return self

    def commands_used(self) -> list[str]:
        """Every command this setting names."""
        out = [c for c in (self.command, self.key, self.up, self.down, self.reset, self.off) if c]
        out += list((self.values or {}).values())
        out += list((self.bits or {}).values())
        return out


class Connection(Model):
    """Frames that belong to the link, not to a setting."""

    wake: CommandId | None = Field(
        default=None, description="sent after every connect, before anything else"
    )
    wake_idle_seconds: Annotated[float, Field(gt=0, le=3600)] | None = Field(
        default=None, description="the device sleeps after this long without a write: "
        "the wake command is sent again before the next command"
    )
    keepalive: CommandId | None = Field(
        default=None, description="sent every capabilities.keepalive_seconds (default: query)"
    )


class Chamber(Model):
    """An air chamber of a compression massager; bit ``index`` of the zone value."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]


class Nodes(Model):
    """The massage nodes a shiatsu device has (for descriptions and lint)."""

    kneading: Annotated[int, Field(ge=0, le=64)] = 0
    rolling: Annotated[int, Field(ge=0, le=64)] = 0
