"""The device profile schema: how a massager advertises, its endpoints, its
capabilities and how its commands and status are framed as bytes.

A profile is data only. Every model forbids unknown fields so that a misspelt
key is an error, not a silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from footctl.device.profile.base import (
    Byte,
    ByteOrder,
    HexBytes,
    Model,
    Uuid,
    normalize_uuid,
    parse_hex,
)
from footctl.device.profile.capabilities import Capabilities, Family, HeatLevel, IntRange, Mode
from footctl.device.profile.checks import check_v2
from footctl.device.profile.framing import (
    Checksum,
    ChecksumOp,
    ChecksumPreset,
    Direction,
    Framing,
    LengthField,
)
from footctl.device.profile.settings import (
    CommandId,
    Connection,
    Endpoint,
    Handle,
    Repeat,
    SequenceItem,
    Setting,
    SettingName,
    TextTemplate,
)

__all__ = [
    "ABSOLUTE_REQUIRED",
    "KEYS_REQUIRED",
    "SCHEMA_VERSION",
    "ArgFormat",
    "BodyItem",
    "Byte",
    "ByteOrder",
    "Capabilities",
    "Checksum",
    "ChecksumOp",
    "ChecksumPreset",
    "CommandName",
    "CommandTemplate",
    "Direction",
    "Family",
    "Framing",
    "HeatLevel",
    "HexBytes",
    "IntRange",
    "LengthField",
    "Mode",
    "Profile",
    "ProfileV1",
    "ProfileV2",
    "Status",
    "StatusField",
    "StatusFieldName",
    "Uuid",
    "normalize_uuid",
    "parse_hex",
    "validate_profile",
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


# --- what the device can do (see capabilities.py) -------------------------------------

# --- framing (see framing.py) ------------------------------------------------------

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
