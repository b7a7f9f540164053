"""The device profile schema: how a massager advertises, its endpoints, its
capabilities and how its commands and status are framed as bytes.

A profile is data only. Every model forbids unknown fields so that a misspelt
key is an error, not a silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Literal, cast

from pydantic import Field, model_validator

from footctl.profile.base import (
    Byte,
    ByteOrder,
    HexBytes,
    Model,
    Uuid,
    normalize_uuid,
    parse_hex,
)
from footctl.profile.checks import check_v2
from footctl.profile.settings import (
    KNOWN_FAMILIES,
    Chamber,
    CommandId,
    Connection,
    Endpoint,
    Handle,
    Nodes,
    Repeat,
    SequenceItem,
    Setting,
    SettingName,
    TextTemplate,
)

__all__ = [
    "ABSOLUTE_REQUIRED", "KEYS_REQUIRED", "SCHEMA_VERSION", "ArgFormat", "BodyItem", "Byte",
    "ByteOrder", "Capabilities", "Checksum", "CommandName", "CommandTemplate", "Framing",
    "HexBytes", "IntRange", "Mode", "Profile", "ProfileV1", "ProfileV2", "Status",
    "StatusField", "StatusFieldName", "Uuid", "normalize_uuid", "parse_hex", "validate_profile",
]

SCHEMA_VERSION = 2
"""The newest profile schema; version 1 files keep loading (see settings.py for 2)."""

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
    """The GATT endpoints. ``write``/``notify`` name characteristics by UUID; a device
    documented only by handle uses ``write_handle``/``notify_handle`` instead (v2).
    ``endpoints`` are further characteristics a command may be written to (v2)."""

    service: Uuid
    write: Uuid | None = None
    write_handle: Handle | None = None
    notify: Uuid | None = None
    notify_handle: Handle | None = None
    write_with_response: bool = True
    mtu: Annotated[int, Field(ge=23, le=517)] = 23
    endpoints: dict[CommandId, Endpoint] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _write_given(self) -> Gatt:
        if (self.write is None) == (self.write_handle is None):
            raise ValueError("give exactly one of 'write' (a UUID) or 'write_handle'")
        if self.notify is not None and self.notify_handle is not None:
            raise ValueError("give at most one of 'notify' or 'notify_handle'")
        return self

    @property
    def write_specifier(self) -> str | int:
        """The write characteristic as bleak's ``get_characteristic`` takes it."""
        return self.write if self.write is not None else int(self.write_handle or 0)

    @property
    def notify_specifier(self) -> str | int | None:
        """The notify characteristic (UUID or handle), if any."""
        if self.notify is not None:
            return self.notify
        return self.notify_handle

    @property
    def has_notify(self) -> bool:
        """True if a notify characteristic is given."""
        return self.notify is not None or self.notify_handle is not None


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


ChecksumOp = Literal["mask", "invert", "negate"]


class Checksum(Model):
    """A checksum given by parameters.

    Either ``preset`` (sum8, xor8, inverted-sum8, crc16-ccitt = CRC-16/CCITT-FALSE,
    crc16-xmodem, crc16-modbus) or ``algorithm`` with its parameters: ``sum`` or ``xor``
    over bytes (optional ``invert`` and ``mask``), or ``crc`` in the Rocksoft model
    (``width``, ``poly``, ``init``, ``refin``, ``refout``, ``xorout``).

    A sum or xor is followed by ``ops`` in the order given (v2): ``mask`` (AND with
    ``mask``), ``invert`` (ones' complement) and ``negate`` (two's complement). Without
    ``ops`` it is mask, then invert if ``invert`` is true. Its ``width`` is any number of
    bits up to 16 (or 32), written in whole bytes.

    The checksum covers the bytes from ``start`` (offset from the frame start) up to
    the checksum position less ``stop_before`` bytes. It is written in ``byteorder``.
    Explicit parameters override the preset's.
    """

    preset: ChecksumPreset | None = None
    algorithm: Literal["sum", "xor", "crc"] | None = None
    width: Annotated[int, Field(ge=1, le=32)] | None = None
    invert: bool | None = None
    mask: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] | None = None
    ops: list[ChecksumOp] | None = None
    poly: Annotated[int, Field(ge=1, le=0xFFFFFFFF)] | None = None
    init: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] | None = None
    refin: bool | None = None
    refout: bool | None = None
    xorout: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] | None = None
    byteorder: ByteOrder = "big"
    start: Annotated[int, Field(ge=0)] = 0
    stop_before: Annotated[int, Field(ge=0)] = 0

    def resolved_ops(self) -> list[ChecksumOp]:
        """The operations after the sum or xor, in order."""
        if self.ops is not None:
            return list(self.ops)
        return ["mask", "invert"] if self._param("invert", self.invert, False) else ["mask"]

    @model_validator(mode="after")
    def _complete(self) -> Checksum:
        if self.preset is None and self.algorithm is None:
            raise ValueError("give either 'preset' or 'algorithm'")
        algorithm = self.resolved_algorithm()
        if algorithm == "crc" and self.resolved_poly() is None:
            raise ValueError("a crc needs 'poly'")
        width = self.resolved_width()
        if algorithm == "crc" and width not in (8, 16, 32):
            raise ValueError("a crc is 8, 16 or 32 bits wide")
        if algorithm != "crc" and not (width <= 16 or width == 32):
            raise ValueError("a sum or xor is 1 to 16 (or 32) bits wide")
        if algorithm == "crc" and self.ops is not None:
            raise ValueError("'ops' apply to a sum or xor; a crc has xorout and refout")
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
        """Bytes the checksum occupies in the frame (whole bytes)."""
        return (self.resolved_width() + 7) // 8


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

_V1_COMMAND_NAMES: frozenset[str] = frozenset(CommandName.__args__)  # type: ignore[attr-defined]

ABSOLUTE_REQUIRED: tuple[CommandName, ...] = ("power", "intensity", "mode")
KEYS_REQUIRED: tuple[CommandName, ...] = (
    "press_power", "press_mode", "press_intensity_up", "press_intensity_down",
)


class CommandTemplate(Model):
    """How one command goes on the wire.

    Version 1: ``code`` and ``body``, framed by ``[framing]``. Version 2 adds, instead of
    ``code``: ``raw`` (a verbatim frame, no framing: fixed bed-remote frames), ``text``
    (a text command, ``{value}`` for the argument in decimal) or ``sequence`` (other
    commands and waits, in order). Any command may go to another characteristic
    (``endpoint``), be sent ``repeat.count`` times while held, and declare that it
    ``moves`` furniture.
    """

    code: Byte | None = None
    body: list[BodyItem] = Field(default_factory=list)
    raw: HexBytes | None = None
    text: Annotated[str, Field(min_length=1, max_length=240)] | None = None
    sequence: Annotated[list[SequenceItem], Field(min_length=1)] | None = None
    endpoint: CommandId | None = None
    repeat: Repeat | None = None
    moves: bool = Field(default=False, description="the command moves furniture (a bed)")

    @model_validator(mode="after")
    def _one_arg(self) -> CommandTemplate:
        kinds = [k for k in ("code", "raw", "text", "sequence") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a command has exactly one of 'code', 'raw', 'text' or 'sequence'"
                + (f" (got {', '.join(kinds)})" if kinds else "")
            )
        if self.body and self.code is None:
            raise ValueError("'body' belongs to a framed command (one with 'code')")
        if sum(1 for item in self.body if item.arg is not None) > 1:
            raise ValueError("a command takes at most one argument")
        if self.raw is not None and not self.raw:
            raise ValueError("'raw' is empty")
        if self.sequence is not None and (self.endpoint or self.repeat):
            raise ValueError("a sequence's own commands say their endpoint and repeat")
        return self

    @property
    def kind(self) -> Literal["framed", "raw", "text", "sequence"]:
        """Which of the four kinds of command this is."""
        if self.raw is not None:
            return "raw"
        if self.text is not None:
            return "text"
        if self.sequence is not None:
            return "sequence"
        return "framed"

    @property
    def takes_arg(self) -> bool:
        """True if the command carries an argument (a sequence: if any step passes one on)."""
        if self.text is not None:
            return TextTemplate.takes_arg(self.text)
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
    """How status notifications are recognised and decoded.

    Framed (the default): a frame of ``[framing]`` with command byte ``code`` and a body
    of ``length`` bytes; field offsets count from the body. Unframed (v2,
    ``framed = false``): a notification of exactly ``length`` bytes that starts with
    ``match`` (no checksum); field offsets count from its first byte.
    """

    code: Byte | None = None
    framed: bool = True
    match: HexBytes = b""
    length: Annotated[int, Field(ge=1, le=240)] = Field(
        description="body length in bytes (unframed: the whole notification)"
    )
    fields: dict[StatusFieldName, StatusField]
    interval_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0

    @model_validator(mode="after")
    def _fields_fit(self) -> Status:
        if self.framed and self.code is None:
            raise ValueError("a framed status needs 'code'")
        if self.framed and self.match:
            raise ValueError("'match' is for an unframed status (framed = false)")
        if len(self.match) > self.length:
            raise ValueError(f"'match' is longer than the {self.length}-byte notification")
        for name, f in self.fields.items():
            if f.offset < len(self.match):
                raise ValueError(f"field {name!r} overlaps the 'match' bytes")
        for name, f in self.fields.items():
            if f.offset + f.width > self.length:
                raise ValueError(
                    f"field {name!r} (offset {f.offset}, width {f.width}) "
                    f"runs past the status body of {self.length} bytes"
                )
        return self


_V1_ARG_COMMANDS = ("power", "intensity", "heat", "mode", "zone", "timer")


class Source(Model):
    """Where a profile's facts come from, when they were read from someone else's code."""

    repository: str
    path: str
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{7,40}$")]
    license: str
    functions: list[str] = Field(default_factory=list)


class Profile(Model):
    """A device profile (either schema version; see :func:`validate_profile`)."""

    schema_version: Literal[1, 2]
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    name: str
    description: str = ""
    advertisement: Advertisement
    gatt: Gatt
    capabilities: Capabilities
    framing: Framing = Field(default_factory=Framing)
    commands: dict[CommandId, CommandTemplate]
    settings: dict[SettingName, Setting] = Field(default_factory=dict)
    connection: Connection = Field(default_factory=Connection)
    status: Status | None = None
    source: Source | None = Field(default=None, description="provenance (v2)")
    hardware_tested: bool | None = Field(
        default=None, description="(v2) has this profile driven a real device?"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        caps = self.capabilities
        if caps.reports_status and self.status is None:
            raise ValueError("reports_status is true but there is no [status] section")
        if caps.reports_status and not self.gatt.has_notify:
            raise ValueError("reports_status is true but gatt.notify is missing")
        if self.schema_version == 1:
            self._check_v1()
        else:
            check_v2(self)
        self._check_checksum_ranges()
        return self

    def _check_v1(self) -> None:
        caps = self.capabilities
        if caps.command_style == "settings":
            raise ValueError("command_style 'settings' needs schema_version = 2")
        unknown = [n for n in self.commands if n not in _V1_COMMAND_NAMES]
        if unknown:
            raise ValueError(f"schema version 1 has no command {unknown[0]!r}")
        v2_only = [
            f for f in ("settings", "connection", "source", "hardware_tested")
            if f in self.model_fields_set
        ] + (["gatt.endpoints"] if self.gatt.endpoints else [])
        if v2_only or self.gatt.write is None or self.gatt.notify_handle is not None:
            raise ValueError(f"{', '.join(v2_only) or 'handles'} need schema_version = 2")
        for name, cmd in self.commands.items():
            if cmd.kind != "framed" or cmd.endpoint or cmd.repeat or cmd.moves:
                raise ValueError(
                    f"commands.{name}: raw, text, sequence, endpoint, repeat and moves "
                    "need schema_version = 2"
                )
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
        if caps.command_style == "keys" and not caps.reports_status:
            raise ValueError("a keys-style device must report status: key presses are blind")
        for name, cmd in self.commands.items():
            wants_arg = name in _V1_ARG_COMMANDS
            if wants_arg != cmd.takes_arg:
                raise ValueError(
                    f"command {name!r} {'needs' if wants_arg else 'takes no'} argument"
                )

    @property
    def is_v2(self) -> bool:
        """True for a version-2 (per-setting) profile."""
        return self.schema_version == 2

    def _check_checksum_ranges(self) -> None:
        cs = self.framing.checksum
        if cs is None:
            return
        frames: list[tuple[str, int]] = [
            (f"commands.{n}", c.body_size) for n, c in self.commands.items() if c.code is not None
        ]
        if self.status is not None and self.status.framed:
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


class CommandTemplateV1(CommandTemplate):
    """A version-1 command: always framed, so ``code`` is required."""

    code: Byte


class ProfileV1(Profile):
    """A version-1 profile: the command names are the fixed set of :data:`CommandName`."""

    schema_version: Literal[1]
    commands: dict[CommandName, CommandTemplateV1]  # type: ignore[assignment]


class ProfileV2(Profile):
    """A version-2 profile: per-setting styles (``[settings]``), freely named commands."""

    schema_version: Literal[2]


def validate_profile(data: object) -> Profile:
    """Validate parsed profile data with the model of its ``schema_version``."""
    if isinstance(data, dict) and data.get("schema_version") == 1:
        return ProfileV1.model_validate(data)
    if isinstance(data, dict) and data.get("schema_version") == 2:
        return ProfileV2.model_validate(data)
    return Profile.model_validate(data)
