"""The pure byte codec: frames, commands and status reports as the profile describes them.

A frame is ``header | [length] | [direction] | code | body | [checksum] | trailer``
(see :class:`footctl.device.profile.schema.Framing`). Everything here is a pure function of
the profile and the bytes; nothing does I/O. Every failure is a :class:`CodecError`,
whatever bytes come in.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import lru_cache

from crc import Calculator, Configuration

from footctl.device.profile.schema import (
    ArgFormat,
    BodyItem,
    ByteOrder,
    Checksum,
    CommandTemplate,
    Profile,
    StatusField,
    StatusFieldName,
)
from footctl.device.profile.settings import TextTemplate, Wait
from footctl.errors import CodecError
from footctl.state import Command, Report

__all__ = [
    "Frame",
    "Pause",
    "Write",
    "build_frame",
    "checksum_value",
    "decode_command",
    "decode_status",
    "encode",
    "encode_status",
    "max_write_size",
    "parse_frame",
    "writes",
]


@dataclass(frozen=True)
class Frame:
    """A parsed frame: the command byte and the body."""

    code: int
    body: bytes


# --- checksums ----------------------------------------------------------------------


@lru_cache(maxsize=64)
def _crc_calculator(params: tuple[int, int, int, bool, bool, int]) -> Calculator:
    """A table-driven calculator per (width, poly, init, refin, refout, xorout), built once."""
    width, poly, init, refin, refout, xorout = params
    config = Configuration(
        width=width,
        polynomial=poly,
        init_value=init,
        final_xor_value=xorout,
        reverse_input=refin,
        reverse_output=refout,
    )
    return Calculator(config, optimized=True)


def _int_param(params: dict[str, object], key: str) -> int:
    value = params[key]
    if not isinstance(value, int):  # the schema guarantees it (a crc has a poly)
        raise CodecError(f"checksum parameter {key!r} is missing")
    return value


def checksum_value(cs: Checksum, data: bytes) -> int:
    """The checksum of exactly ``data`` with the checksum's (resolved) parameters."""
    params = cs.resolved()
    width = _int_param(params, "width")
    full = (1 << width) - 1
    algorithm = params["algorithm"]
    if algorithm == "crc":
        calc = _crc_calculator(
            (
                width,
                _int_param(params, "poly") & full,
                _int_param(params, "init") & full,
                bool(params["refin"]),
                bool(params["refout"]),
                _int_param(params, "xorout") & full,
            )
        )
        result: int = calc.checksum(data)
        return result & full
    if algorithm == "sum":
        value = sum(data)
    else:
        value = 0
        for byte in data:
            value ^= byte
    mask = _int_param(params, "mask")
    for op in cs.resolved_ops():
        if op == "mask":
            value &= mask
        elif op == "invert":
            value = ~value & full
        else:  # negate: two's complement
            value = -value & full
    return value & full


# --- framing ------------------------------------------------------------------------


def _overhead(profile: Profile) -> int:
    """Frame bytes besides the body."""
    return profile.frame_size(0)


def _length_value(profile: Profile, body_size: int) -> int | None:
    """The value the length field carries for a body of this size (None: no field)."""
    f = profile.framing
    if f.length is None:
        return None
    covers = f.length.covers
    if covers == "frame":
        count = profile.frame_size(body_size)
    elif covers == "rest":
        count = profile.frame_size(body_size) - len(f.header) - f.length.width
    elif covers == "payload":
        count = (1 if f.direction else 0) + 1 + body_size
    else:
        count = body_size
    return count + f.length.adjust


def _checksum_range(profile: Profile, cs: Checksum, body_size: int) -> tuple[int, int]:
    """``(start, end)`` of the bytes the checksum covers, as frame offsets."""
    end = profile.bytes_before_checksum(body_size) - cs.stop_before
    if cs.start > end:
        raise CodecError(
            f"profile {profile.id!r}: the checksum range (start {cs.start}, stop_before "
            f"{cs.stop_before}) is empty for a {body_size}-byte body"
        )
    return cs.start, end


def build_frame(profile: Profile, code: int, body: bytes, *, to_device: bool) -> bytes:
    """Frame ``code`` and ``body`` for the direction given."""
    f = profile.framing
    if not 0 <= code <= 0xFF:
        raise CodecError(f"profile {profile.id!r}: command code {code} is not a byte")
    out = bytearray(f.header)
    length = _length_value(profile, len(body))
    if f.length is not None and length is not None:
        if not 0 <= length < 1 << (8 * f.length.width):
            raise CodecError(
                f"profile {profile.id!r}: length {length} does not fit the "
                f"{f.length.width}-byte length field"
            )
        out += length.to_bytes(f.length.width, f.length.byteorder)
    if f.direction is not None:
        out.append(f.direction.to_device if to_device else f.direction.to_app)
    out.append(code)
    out += body
    cs = f.checksum
    if cs is not None:
        start, end = _checksum_range(profile, cs, len(body))
        value = checksum_value(cs, bytes(out[start:end]))
        out += value.to_bytes(cs.size, cs.byteorder)
    out += f.trailer
    return bytes(out)


def parse_frame(profile: Profile, data: bytes, *, to_device: bool) -> Frame:
    """Check header, length, direction, checksum and trailer; return code and body."""
    f = profile.framing
    data = bytes(data)
    overhead = _overhead(profile)
    if len(data) < overhead:
        raise CodecError(
            f"profile {profile.id!r}: frame of {len(data)} bytes is shorter than the "
            f"{overhead}-byte minimum ({data.hex(' ')})"
        )
    if not data.startswith(f.header):
        raise CodecError(
            f"profile {profile.id!r}: bad header {data[: len(f.header)].hex(' ')}, "
            f"expected {f.header.hex(' ')}"
        )
    if f.trailer and not data.endswith(f.trailer):
        raise CodecError(
            f"profile {profile.id!r}: bad trailer {data[-len(f.trailer):].hex(' ')}, "
            f"expected {f.trailer.hex(' ')}"
        )
    body_size = len(data) - overhead
    pos = len(f.header)
    if f.length is not None:
        got = int.from_bytes(data[pos : pos + f.length.width], f.length.byteorder)
        want = _length_value(profile, body_size)
        if got != want:
            raise CodecError(
                f"profile {profile.id!r}: length field says {got}, "
                f"but a {len(data)}-byte frame needs {want}"
            )
        pos += f.length.width
    if f.direction is not None:
        want_dir = f.direction.to_device if to_device else f.direction.to_app
        if data[pos] != want_dir:
            raise CodecError(
                f"profile {profile.id!r}: direction byte {data[pos]:#04x}, "
                f"expected {want_dir:#04x}"
            )
        pos += 1
    code = data[pos]
    pos += 1
    body = data[pos : pos + body_size]
    pos += body_size
    cs = f.checksum
    if cs is not None:
        start, end = _checksum_range(profile, cs, body_size)
        got_cs = int.from_bytes(data[pos : pos + cs.size], cs.byteorder)
        want_cs = checksum_value(cs, data[start:end])
        if got_cs != want_cs:
            raise CodecError(
                f"profile {profile.id!r}: bad checksum {got_cs:#0{2 + 2 * cs.size}x}, "
                f"expected {want_cs:#0{2 + 2 * cs.size}x}"
            )
    return Frame(code=code, body=body)


def max_write_size(profile: Profile) -> int:
    """The largest write the link takes: ATT MTU less the 3-byte ATT header."""
    return profile.gatt.mtu - 3


# --- commands -------------------------------------------------------------------------


_ARG_LIMIT: dict[ArgFormat, int] = {"u8": 0xFF, "u16le": 0xFFFF, "u16be": 0xFFFF}


def _template(profile: Profile, name: str) -> CommandTemplate:
    for cmd_name, template in profile.commands.items():
        if cmd_name == name:
            return template
    raise CodecError(f"profile {profile.id!r} has no {name!r} command")


def _arg_bytes(profile: Profile, command: Command, item: BodyItem, arg: ArgFormat) -> bytes:
    if command.value is None:
        raise CodecError(f"command {command.name!r} of profile {profile.id!r} needs a value")
    raw = command.value + item.add
    if not 0 <= raw <= _ARG_LIMIT[arg]:
        raise CodecError(
            f"value {command.value} does not fit command {command.name!r} of profile "
            f"{profile.id!r} ({arg}, add {item.add})"
        )
    if arg == "u8":
        return bytes([raw])
    return raw.to_bytes(2, "little" if arg == "u16le" else "big")


def _encode_text(profile: Profile, command: Command, text: str) -> bytes:
    if TextTemplate.takes_arg(text):
        if command.value is None:
            raise CodecError(f"command {command.name!r} of profile {profile.id!r} needs a value")
        text = text.replace("{value}", str(command.value))
    try:
        return text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise CodecError(
            f"command {command.name!r} of profile {profile.id!r} is not ASCII"
        ) from exc


# encode() is pure, and a session writes the same few frames over and over (a level,
# the query, the keepalive): each profile object keeps the frames it has encoded,
# until it is garbage (the weak reference's callback drops its table). Keyed by the
# value's type too, so True never stands for 1. At most this many frames per profile
# (every level of every command of the largest profile fits); past it the table
# starts again.
_FRAMES_PER_PROFILE = 4096
_Key = tuple[str, type, int | None]
_ENCODED: dict[int, tuple[weakref.ref[Profile], dict[_Key, bytes]]] = {}


def _frames_of(profile: Profile) -> dict[_Key, bytes]:
    key = id(profile)
    entry = _ENCODED.get(key)
    if entry is not None and entry[0]() is profile:
        return entry[1]

    def forget(ref: weakref.ref[Profile]) -> None:
        held = _ENCODED.get(key)
        if held is not None and held[0] is ref:
            del _ENCODED[key]

    frames: dict[_Key, bytes] = {}
    _ENCODED[key] = (weakref.ref(profile, forget), frames)
    return frames


def encode(profile: Profile, command: Command) -> bytes:
    """The app->device frame for ``command`` (one frame: a sequence has several, see
    :func:`writes`)."""
    frames = _frames_of(profile)
    key = (command.name, type(command.value), command.value)
    frame = frames.get(key)
    if frame is None:
        frame = _encode(profile, command)  # (an error is raised, never kept)
        if len(frames) >= _FRAMES_PER_PROFILE:
            frames.clear()
        frames[key] = frame
    return frame


def _encode(profile: Profile, command: Command) -> bytes:
    template = _template(profile, command.name)
    if template.sequence is not None:
        raise CodecError(
            f"command {command.name!r} of profile {profile.id!r} is a sequence of "
            f"{len(template.sequence)} step(s), not one frame"
        )
    if not template.takes_arg and command.value is not None:
        raise CodecError(
            f"command {command.name!r} of profile {profile.id!r} takes no value "
            f"(got {command.value})"
        )
    if template.raw is not None:
        return template.raw
    if template.text is not None:
        return _encode_text(profile, command, template.text)
    body = bytearray()
    for item in template.body:
        if item.const is not None:
            body += item.const
        elif item.arg is not None:
            body += _arg_bytes(profile, command, item, item.arg)
    assert template.code is not None  # a framed command (the schema checks it)
    return build_frame(profile, template.code, bytes(body), to_device=True)


@dataclass(frozen=True)
class Write:
    """One frame to write: to ``endpoint`` (None: the write characteristic)."""

    frame: bytes
    command: str
    endpoint: str | None = None
    value: int | None = None


@dataclass(frozen=True)
class Pause:
    """A wait between frames."""

    seconds: float


def writes(profile: Profile, command: Command) -> list[Write | Pause]:
    """Everything ``command`` puts on the wire, in order: its frame (repeated while
    held), or for a sequence the writes and waits of its steps."""
    template = _template(profile, command.name)
    if template.sequence is not None:
        out: list[Write | Pause] = []
        for item in template.sequence:
            if isinstance(item, Wait):
                out.append(Pause(item.wait))
            else:
                out += writes(profile, Command(item.send, item.value))
        return out
    frame = encode(profile, command)
    one = Write(frame, command.name, template.endpoint, command.value)
    if template.repeat is None:
        return [one]
    held: list[Write | Pause] = []
    for index in range(template.repeat.count):
        if index:
            held.append(Pause(template.repeat.every))
        held.append(one)
    return held


def _match_body(template: CommandTemplate, body: bytes) -> tuple[bool, int | None]:
    """Whether ``body`` fits the template, and the argument it carries."""
    if len(body) != template.body_size:
        return False, None
    pos = 0
    value: int | None = None
    for item in template.body:
        chunk = body[pos : pos + item.size]
        pos += item.size
        if item.const is not None:
            if chunk != item.const:
                return False, None
        elif item.arg is not None:
            order: ByteOrder = "big" if item.arg == "u16be" else "little"
            value = int.from_bytes(chunk, order) - item.add
    return True, value


def _unframed_matches(profile: Profile, data: bytes) -> list[Command]:
    """Commands given as ``raw`` or ``text`` that ``data`` is."""
    out: list[Command] = []
    for name, template in profile.commands.items():
        if template.raw is not None and data == template.raw:
            out.append(Command(name))
        elif template.text is not None:
            match = TextTemplate.pattern(template.text).match(data)
            if match is not None:
                value = int(match.group(1)) if match.groups() else None
                out.append(Command(name, value))
    return out


def decode_command(
    profile: Profile, data: bytes, *, endpoint: str | None = None
) -> Command:
    """Which command an app->device frame carries, and its value (device side).
    ``endpoint`` is the characteristic it was written to (None: the write one)."""
    data = bytes(data)
    matches = [
        m for m in _unframed_matches(profile, data)
        if profile.commands[m.name].endpoint == endpoint
    ]
    framed = any(t.code is not None for t in profile.commands.values())
    frame: Frame | None = None
    if framed:
        try:
            frame = parse_frame(profile, data, to_device=True)
        except CodecError:
            if not matches:
                raise
    if frame is not None:
        for name, template in profile.commands.items():
            if template.code != frame.code or template.endpoint != endpoint:
                continue
            ok, value = _match_body(template, frame.body)
            if ok:
                matches.append(Command(name, value))
    if not matches:
        if frame is None:
            raise CodecError(
                f"profile {profile.id!r}: no command is the frame {data.hex(' ') or '(empty)'}"
            )
        raise CodecError(
            f"profile {profile.id!r}: no command matches code {frame.code:#04x} "
            f"with body {frame.body.hex(' ') or '(empty)'}"
        )
    if len(matches) > 1:
        names = ", ".join(m.name for m in matches)
        shown = (
            f"code {frame.code:#04x} with body {frame.body.hex(' ') or '(empty)'}"
            if frame is not None else data.hex(" ")
        )
        raise CodecError(f"profile {profile.id!r}: {shown} is ambiguous ({names})")
    return matches[0]


# --- status ---------------------------------------------------------------------------


def _shift(mask: int) -> int:
    """Position of the lowest set bit of ``mask``."""
    return (mask & -mask).bit_length() - 1


def _raw_to_value(
    profile: Profile, name: StatusFieldName, spec: StatusField, raw: int
) -> bool | int | float | str:
    caps = profile.capabilities
    if spec.map is not None:
        mapped = {int(k): v for k, v in spec.map.items()}
        if raw not in mapped:
            raise CodecError(
                f"profile {profile.id!r}: status field {name!r} has unmapped raw value {raw}"
            )
        raw = mapped[raw]
    if name == "running":
        return bool(raw)
    if name == "heat":
        if raw == 0:
            return 0
        for level in caps.heat_levels:
            if level.wire == raw:
                return level.level
        raise CodecError(f"profile {profile.id!r}: unknown heat code {raw} in status")
    if name == "mode":
        for mode in caps.modes:
            if mode.code == raw:
                return mode.name
        raise CodecError(f"profile {profile.id!r}: unknown mode code {raw} in status")
    if name == "temperature":
        return float(raw * spec.scale)
    if spec.scale != 1:
        return round(raw * spec.scale)
    return raw


def decode_status(profile: Profile, data: bytes) -> Report:
    """Decode a device->app status notification (app side)."""
    status = profile.status
    if status is None:
        raise CodecError(f"profile {profile.id!r} has no status reports")
    if not status.framed:
        data = bytes(data)
        if len(data) != status.length or not data.startswith(status.match):
            raise CodecError(
                f"profile {profile.id!r}: notification {data.hex(' ') or '(empty)'} is not "
                f"a {status.length}-byte status starting {status.match.hex(' ') or '(any)'}"
            )
        return _decode_fields(profile, data)
    frame = parse_frame(profile, data, to_device=False)
    if frame.code != status.code:
        raise CodecError(
            f"profile {profile.id!r}: frame code {frame.code:#04x} is not the status "
            f"code {status.code or 0:#04x}"
        )
    if len(frame.body) != status.length:
        raise CodecError(
            f"profile {profile.id!r}: status body of {len(frame.body)} bytes, "
            f"expected {status.length}"
        )
    return _decode_fields(profile, frame.body)


def _decode_fields(profile: Profile, body: bytes) -> Report:
    assert profile.status is not None
    values: dict[str, bool | int | float | str] = {}
    for name, spec in profile.status.fields.items():
        chunk = body[spec.offset : spec.offset + spec.width]
        if len(chunk) != spec.width:  # the schema keeps fields inside the body
            raise CodecError(f"profile {profile.id!r}: status field {name!r} is out of range")
        raw = int.from_bytes(chunk, spec.byteorder)
        if spec.mask is not None:
            raw = (raw & spec.mask) >> _shift(spec.mask)
        values[name] = _raw_to_value(profile, name, spec, raw)
    power = profile.settings.get("power")
    if power is not None and power.style == "level" and "running" not in values:
        # A massager powered by its level runs while the level is above 0.
        level = values.get("intensity")
        if isinstance(level, int):
            values["running"] = level > 0
    return Report(**values)  # type: ignore[arg-type]


def _value_to_raw(
    profile: Profile, name: StatusFieldName, spec: StatusField, report: Report
) -> int:
    caps = profile.capabilities
    value: object = getattr(report, name)
    raw: int
    if value is None:  # not reported: the bits stay 0
        return 0
    if name == "running":
        raw = 1 if value else 0
    elif name == "heat":
        if value == 0:
            raw = 0
        else:
            for level in caps.heat_levels:
                if level.level == value:
                    raw = level.wire
                    break
            else:
                raise CodecError(f"profile {profile.id!r} has no heat level {value!r}")
    elif name == "mode":
        mode = caps.mode_named(str(value))
        if mode is None:
            raise CodecError(f"profile {profile.id!r} has no mode {value!r}")
        raw = mode.code
    elif isinstance(value, int | float):
        raw = round(value / spec.scale)
    else:
        raise CodecError(f"status field {name!r} has a non-numeric value {value!r}")
    if spec.map is not None:
        for key, mapped in spec.map.items():
            if mapped == raw:
                raw = int(key)
                break
        else:
            raise CodecError(
                f"profile {profile.id!r}: status field {name!r} has no raw value for {raw}"
            )
    limit = spec.mask >> _shift(spec.mask) if spec.mask is not None else (1 << 8 * spec.width) - 1
    if not 0 <= raw <= limit:
        raise CodecError(
            f"profile {profile.id!r}: status field {name!r} value {value!r} does not fit"
        )
    return raw << _shift(spec.mask) if spec.mask is not None else raw


def encode_status(profile: Profile, report: Report) -> bytes:
    """The device->app status frame for ``report``; fields it leaves None are 0."""
    status = profile.status
    if status is None:
        raise CodecError(f"profile {profile.id!r} has no status reports")
    body = bytearray(status.length)
    body[: len(status.match)] = status.match
    for name, spec in status.fields.items():
        raw = _value_to_raw(profile, name, spec, report)
        end = spec.offset + spec.width
        current = int.from_bytes(body[spec.offset : end], spec.byteorder)
        body[spec.offset : end] = (current | raw).to_bytes(spec.width, spec.byteorder)
    if not status.framed or status.code is None:
        return bytes(body)
    return build_frame(profile, status.code, bytes(body), to_device=False)
