"""The device profile schema: how a massager advertises, its endpoints, its
capabilities and how its commands and status are framed as bytes.

A profile is data only. Every model forbids unknown fields so that a misspelt
key is an error, not a silently ignored setting.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

# The Bluetooth base UUID: 16-bit UUIDs in profiles expand into it.
_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"
_UUID128 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def normalize_uuid(value: object) -> str:
    """Expand a 16- or 32-bit UUID ("FFE0", "0xffe0") to the lower-case 128-bit form bleak uses."""
    if not isinstance(value, str):
        raise ValueError("a UUID must be a string such as 'FFE0' or a 128-bit UUID")
    text = value.strip().lower()
    text = text.removeprefix("0x")
    if re.fullmatch(r"[0-9a-f]{4}", text):
        return f"0000{text}{_BASE_UUID_TAIL}"
    if re.fullmatch(r"[0-9a-f]{8}", text):
        return f"{text}{_BASE_UUID_TAIL}"
    if _UUID128.match(text):
        return text
    raise ValueError(f"{value!r} is not a 16-bit, 32-bit or 128-bit UUID")


def parse_hex(value: object) -> bytes:
    """Parse "AA 55" / "aa55" / "0xAA 0x55" into bytes."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("bytes are written as a hex string such as 'AA 55'")
    text = value.replace("0x", "").replace("0X", "").replace(" ", "").replace(":", "")
    if len(text) % 2:
        raise ValueError(f"{value!r} has an odd number of hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a hex byte string") from exc


Uuid = Annotated[str, BeforeValidator(normalize_uuid)]
HexBytes = Annotated[bytes, BeforeValidator(parse_hex)]
Byte = Annotated[int, Field(ge=0, le=0xFF)]
ByteOrder = Literal["little", "big"]


class Model(BaseModel):
    """Base for profile models: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- recognising the device -------------------------------------------------


class Advertisement(Model):
    """How the massager shows itself in advertisements."""

    name_globs: list[str] = Field(
        default_factory=list, description="fnmatch globs on the local name"
    )
    service_uuids: list[Uuid] = Field(default_factory=list)
    manufacturer_id: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    local_name: Annotated[str, Field(min_length=1, max_length=29)] = Field(
        description="the name the (virtual) device advertises"
    )


class Gatt(Model):
    """The GATT endpoints."""

    service: Uuid
    write: Uuid
    notify: Uuid | None = None
    write_with_response: bool = True
    mtu: Annotated[int, Field(ge=23, le=517)] = 23


# --- what the device can do ---------------------------------------------------


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


class Mode(Model):
    """A massage mode and the value that selects it on the wire."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    code: Byte


class Capabilities(Model):
    """What the massager can do."""

    command_style: Literal["absolute", "keys"] = Field(
        description="absolute: commands carry the wanted value; keys: key presses only"
    )
    reports_status: bool = Field(
        description="false if the device sends no status; state is then assumed from commands"
    )
    intensity: IntRange
    heat_levels: list[HeatLevel] = Field(default_factory=list)
    modes: Annotated[list[Mode], Field(min_length=1)]
    zones: IntRange | None = None
    timer_minutes: IntRange | None = None
    auto_off_minutes: Annotated[int, Field(ge=1, le=240)] | None = None
    keepalive_seconds: Annotated[float, Field(gt=0, le=300)] | None = None

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
        return self

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


# --- framing ----------------------------------------------------------------------


class LengthField(Model):
    """A length field placed right after the header.

    ``covers`` says what it counts: ``frame`` the whole frame, ``rest`` every byte after
    the length field (to the end of the trailer), ``payload`` the direction byte, command
    byte and body, ``body`` the body only. ``adjust`` is added to the count.
    """

    width: Literal[1, 2]
    byteorder: ByteOrder = "little"
    covers: Literal["frame", "rest", "payload", "body"]
    adjust: int = 0


class Direction(Model):
    """A direction byte placed after the length field (or header)."""

    to_device: Byte
    to_app: Byte


ChecksumPreset = Literal[
    "sum8", "xor8", "inverted-sum8", "crc16-ccitt", "crc16-xmodem", "crc16-modbus"
]


class Checksum(Model):
    """A checksum given by parameters.

    Either ``preset`` (sum8, xor8, inverted-sum8, crc16-ccitt = CRC-16/CCITT-FALSE,
    crc16-xmodem, crc16-modbus) or ``algorithm`` with its parameters: ``sum`` or ``xor``
    over bytes (optional ``invert`` and ``mask``), or ``crc`` in the Rocksoft model
    (``width``, ``poly``, ``init``, ``refin``, ``refout``, ``xorout``).

    The checksum covers the bytes from ``start`` (offset from the frame start) up to
    the checksum position less ``stop_before`` bytes. It is written in ``byteorder``
    using ``width`` bits (8, 16 or 32). Explicit parameters override the preset's.
    """

    preset: ChecksumPreset | None = None
    algorithm: Literal["sum", "xor", "crc"] | None = None
    width: Literal[8, 16, 32] | None = None
    invert: bool | None = None
    mask: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] | None = None
    poly: Annotated[int, Field(ge=1, le=0xFFFFFFFF)] | None = None
    init: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] | None = None
    refin: bool | None = None
    refout: bool | None = None
    xorout: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] | None = None
    byteorder: ByteOrder = "big"
    start: Annotated[int, Field(ge=0)] = 0
    stop_before: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _complete(self) -> Checksum:
        if self.preset is None and self.algorithm is None:
            raise ValueError("give either 'preset' or 'algorithm'")
        if self.resolved_algorithm() == "crc" and self.resolved_poly() is None:
            raise ValueError("a crc needs 'poly'")
        return self

    def resolved_algorithm(self) -> Literal["sum", "xor", "crc"]:
        """The algorithm after applying the preset."""
        if self.algorithm is not None:
            return self.algorithm
        return _PRESETS[self.preset or "sum8"]["algorithm"]  # type: ignore[return-value]

    def resolved_width(self) -> int:
        """Width in bits after applying the preset."""
        if self.width is not None:
            return self.width
        if self.preset is not None:
            return cast(int, _PRESETS[self.preset]["width"])
        return 16 if self.resolved_algorithm() == "crc" else 8

    def resolved_poly(self) -> int | None:
        """CRC polynomial after applying the preset."""
        if self.poly is not None:
            return self.poly
        if self.preset is not None:
            value = _PRESETS[self.preset].get("poly")
            return cast(int, value) if value is not None else None
        return None

    def _param(self, name: str, explicit: object, default: object) -> object:
        if explicit is not None:
            return explicit
        if self.preset is not None and name in _PRESETS[self.preset]:
            return _PRESETS[self.preset][name]
        return default

    def resolved(self) -> dict[str, object]:
        """Every parameter, with the preset applied: algorithm, width, invert, mask, poly,
        init, refin, refout, xorout."""
        width = self.resolved_width()
        return {
            "algorithm": self.resolved_algorithm(),
            "width": width,
            "invert": self._param("invert", self.invert, False),
            "mask": self._param("mask", self.mask, (1 << width) - 1),
            "poly": self.resolved_poly(),
            "init": self._param("init", self.init, 0),
            "refin": self._param("refin", self.refin, False),
            "refout": self._param("refout", self.refout, False),
            "xorout": self._param("xorout", self.xorout, 0),
        }

    @property
    def size(self) -> int:
        """Bytes the checksum occupies in the frame."""
        return self.resolved_width() // 8


_PRESETS: dict[str, dict[str, object]] = {
    "sum8": {"algorithm": "sum", "width": 8},
    "xor8": {"algorithm": "xor", "width": 8},
    "inverted-sum8": {"algorithm": "sum", "width": 8, "invert": True},
    # CRC-16/CCITT-FALSE (a.k.a. IBM-3740), the one cheap BLE devices call "CCITT".
    "crc16-ccitt": {
        "algorithm": "crc", "width": 16, "poly": 0x1021, "init": 0xFFFF,
        "refin": False, "refout": False, "xorout": 0,
    },
    "crc16-xmodem": {
        "algorithm": "crc", "width": 16, "poly": 0x1021, "init": 0,
        "refin": False, "refout": False, "xorout": 0,
    },
    "crc16-modbus": {
        "algorithm": "crc", "width": 16, "poly": 0x8005, "init": 0xFFFF,
        "refin": True, "refout": True, "xorout": 0,
    },
}


class Framing(Model):
    """Frame layout: header, [length], [direction], command byte, body, [checksum], trailer."""

    header: HexBytes = b""
    length: LengthField | None = None
    direction: Direction | None = None
    checksum: Checksum | None = None
    trailer: HexBytes = b""


ArgFormat = Literal["u8", "u16le", "u16be"]


class BodyItem(Model):
    """One piece of a command body: constant bytes, or the command's argument."""

    const: HexBytes | None = None
    arg: ArgFormat | None = None
    add: int = Field(default=0, description="added to the argument before it is written")

    @model_validator(mode="after")
    def _one_of(self) -> BodyItem:
        if (self.const is None) == (self.arg is None):
            raise ValueError("a body item has exactly one of 'const' or 'arg'")
        return self

    @property
    def size(self) -> int:
        """Bytes this item occupies."""
        if self.const is not None:
            return len(self.const)
        return 1 if self.arg == "u8" else 2


CommandName = Literal[
    # absolute style: the argument is the wanted value
    "power",  # 1 = on, 0 = off
    "intensity",  # level
    "heat",  # heat level's wire code (0 = off)
    "mode",  # mode's wire code
    "zone",  # zone number
    "timer",  # minutes
    "stop",  # everything off, no argument (optional; else heat 0 then power 0)
    "query",  # ask for a status report, no argument
    # keys style: no argument
    "press_power",
    "press_mode",
    "press_intensity_up",
    "press_intensity_down",
    "press_heat",
]

ABSOLUTE_REQUIRED: tuple[CommandName, ...] = ("power", "intensity", "mode")
KEYS_REQUIRED: tuple[CommandName, ...] = (
    "press_power", "press_mode", "press_intensity_up", "press_intensity_down",
)


class CommandTemplate(Model):
    """How one command is framed: its command byte and body."""

    code: Byte
    body: list[BodyItem] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_arg(self) -> CommandTemplate:
        if sum(1 for item in self.body if item.arg is not None) > 1:
            raise ValueError("a command takes at most one argument")
        return self

    @property
    def takes_arg(self) -> bool:
        """True if the body holds the command's argument."""
        return any(item.arg is not None for item in self.body)

    @property
    def body_size(self) -> int:
        """Body length in bytes."""
        return sum(item.size for item in self.body)


StatusFieldName = Literal[
    "running", "intensity", "heat", "mode", "zone", "timer", "battery", "temperature", "error",
]


class StatusField(Model):
    """A field in the status body: ``offset`` into the body, ``width`` bytes, an optional
    bit ``mask`` (the value is shifted down to the mask's lowest bit), an optional ``map``
    from raw value to meaning, and a ``scale`` (temperature in half degrees: 0.5)."""

    offset: Annotated[int, Field(ge=0)]
    width: Literal[1, 2] = 1
    byteorder: ByteOrder = "big"
    mask: Annotated[int, Field(ge=1, le=0xFFFF)] | None = None
    map: dict[str, int] | None = None
    scale: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="after")
    def _mask_fits(self) -> StatusField:
        if self.mask is not None and self.mask >= 1 << (8 * self.width):
            raise ValueError(f"mask {self.mask:#x} is wider than {self.width} byte(s)")
        if self.map is not None:
            for key in self.map:
                if not key.isdigit():
                    raise ValueError(f"map key {key!r} must be a raw value written as digits")
        return self


class Status(Model):
    """How status notifications are recognised and decoded."""

    code: Byte
    length: Annotated[int, Field(ge=1, le=240)] = Field(description="body length in bytes")
    fields: dict[StatusFieldName, StatusField]
    interval_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0

    @model_validator(mode="after")
    def _fields_fit(self) -> Status:
        for name, f in self.fields.items():
            if f.offset + f.width > self.length:
                raise ValueError(
                    f"field {name!r} (offset {f.offset}, width {f.width}) "
                    f"runs past the status body of {self.length} bytes"
                )
        return self


class Profile(Model):
    """A device profile."""

    schema_version: Literal[1]
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    name: str
    description: str = ""
    advertisement: Advertisement
    gatt: Gatt
    capabilities: Capabilities
    framing: Framing
    commands: dict[CommandName, CommandTemplate]
    status: Status | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        caps = self.capabilities
        required = ABSOLUTE_REQUIRED if caps.command_style == "absolute" else KEYS_REQUIRED
        missing = [c for c in required if c not in self.commands]
        if missing:
            raise ValueError(
                f"a {caps.command_style}-style profile needs commands: {', '.join(missing)}"
            )
        if caps.heat_levels:
            need = "heat" if caps.command_style == "absolute" else "press_heat"
            if need not in self.commands:
                raise ValueError(f"heat_levels are given but there is no '{need}' command")
        if caps.reports_status and self.status is None:
            raise ValueError("reports_status is true but there is no [status] section")
        if caps.reports_status and self.gatt.notify is None:
            raise ValueError("reports_status is true but gatt.notify is missing")
        if caps.command_style == "keys" and not caps.reports_status:
            raise ValueError("a keys-style device must report status: key presses are blind")
        for name, cmd in self.commands.items():
            wants_arg = name in ("power", "intensity", "heat", "mode", "zone", "timer")
            if wants_arg != cmd.takes_arg:
                raise ValueError(
                    f"command {name!r} {'needs' if wants_arg else 'takes no'} argument"
                )
        self._check_checksum_ranges()
        return self

    def _check_checksum_ranges(self) -> None:
        cs = self.framing.checksum
        if cs is None:
            return
        frames: list[tuple[str, int]] = [
            (f"commands.{n}", c.body_size) for n, c in self.commands.items()
        ]
        if self.status is not None:
            frames.append(("status", self.status.length))
        for where, body in frames:
            before = self.bytes_before_checksum(body)
            covered = before - cs.stop_before - cs.start
            if covered <= 0:
                raise ValueError(
                    f"framing.checksum range (start {cs.start}, stop_before {cs.stop_before}) "
                    f"lies past the {before} bytes before the checksum in {where}"
                )

    def bytes_before_checksum(self, body_size: int) -> int:
        """Bytes from the frame start up to the checksum for a body of this size."""
        f = self.framing
        return (
            len(f.header)
            + (f.length.width if f.length else 0)
            + (1 if f.direction else 0)
            + 1
            + body_size
        )

    def frame_size(self, body_size: int) -> int:
        """Total frame length for a body of this size."""
        cs = self.framing.checksum
        return self.bytes_before_checksum(body_size) + (cs.size if cs else 0) + len(
            self.framing.trailer
        )
