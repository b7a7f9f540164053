"""What travels on the bridge's topics: commands in (validated once, here), state and
errors out.

Commands come as JSON on ``<base>/<id>/set`` (``{"intensity": 3, "heat": 1}``,
``{"program": "wind-down"}``, ``{"stop": true}``) or as one raw value on
``<base>/<id>/set/<field>`` (``3``, ``ON``, ``wind-down``, ``PRESS``). Both become one
:class:`SetPayload` (pydantic, strict, closed, finite): a bool is not a number, ``3.0``
is not an intensity, NaN is nothing, an unknown field is an error, and so is a payload
larger than :data:`MAX_PAYLOAD_BYTES`. One payload asks for one thing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from footctl.control.api import (
    MAX_NAME_LEN,
    MAX_WIRE_HEAT,
    MAX_WIRE_LEVEL,
    DeviceView,
    describe_errors,
)

# The largest sensible command (every field at its longest) is about 300 bytes; a
# payload past this is not a footctl command and is not even parsed.
MAX_PAYLOAD_BYTES = 1024
# How much of an offending payload an error message repeats.
ECHO_CHARS = 200

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN)]
Level = Annotated[int, Field(ge=0, le=MAX_WIRE_LEVEL)]
HeatLevel = Annotated[int, Field(ge=0, le=MAX_WIRE_HEAT)]


class MalformedCommand(ValueError):
    """A command payload that cannot be carried out as written; nothing was done."""


class SetPayload(BaseModel):
    """One command for one massager."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    power: bool | None = None
    intensity: Level | None = None
    heat: HeatLevel | None = None
    mode: Name | None = None
    zone: Level | None = None
    program: Name | None = None
    selected_program: Name | None = None
    start: Literal[True] | None = None
    stop: Literal[True] | None = None

    @model_validator(mode="after")
    def _one_thing(self) -> SetPayload:
        settings = self.intensity, self.heat, self.mode, self.zone
        asks = [
            name
            for name, asked in (
                ("stop", self.stop is not None or self.power is False),
                ("program", self.program is not None),
                ("start", self.start is not None),
                ("selected_program", self.selected_program is not None),
                ("settings", self.power is True or any(s is not None for s in settings)),
            )
            if asked
        ]
        if not asks:
            raise ValueError("nothing to do: give intensity, heat, mode, zone, power, "
                             "program, start or stop")
        if len(asks) > 1:
            raise ValueError(f"one command at a time (got {' and '.join(asks)})")
        return self


# --- what a command asks for --------------------------------------------------------


@dataclass(frozen=True)
class Stop:
    """Everything off."""


@dataclass(frozen=True)
class Run:
    """Start a program (``program`` None: the one selected on the bridge)."""

    program: str | None


@dataclass(frozen=True)
class Select:
    """Choose the program the start button starts."""

    program: str


@dataclass(frozen=True)
class Apply:
    """Switch on (no fields) or change settings."""

    intensity: int | None = None
    heat: int | None = None
    mode: str | None = None
    zone: int | None = None

    @property
    def changes(self) -> bool:
        """True if a setting is given (a ``set``, not only an ``on``)."""
        return any(v is not None for v in (self.intensity, self.heat, self.mode, self.zone))

    def merged(self, later: Apply) -> Apply:
        """This change with a later one on top (a queued command absorbing the next)."""
        return Apply(
            intensity=later.intensity if later.intensity is not None else self.intensity,
            heat=later.heat if later.heat is not None else self.heat,
            mode=later.mode if later.mode is not None else self.mode,
            zone=later.zone if later.zone is not None else self.zone,
        )


Command = Stop | Run | Select | Apply


def to_command(payload: SetPayload) -> Command:
    """What a validated payload asks for."""
    if payload.stop is not None or payload.power is False:
        return Stop()
    if payload.program is not None:
        return Run(payload.program)
    if payload.start is not None:
        return Run(None)
    if payload.selected_program is not None:
        return Select(payload.selected_program)
    return Apply(payload.intensity, payload.heat, payload.mode, payload.zone)


# --- parsing ------------------------------------------------------------------------

RAW_FIELDS = (
    "power", "intensity", "heat", "mode", "zone", "program", "selected_program", "start", "stop",
)
_INT = re.compile(r"[0-9]{1,3}")
_TRUE = frozenset({"ON", "on", "true", "1"})
_FALSE = frozenset({"OFF", "off", "false", "0"})
# A button press: Home Assistant's default payload, or what a person would type.
_PRESS = frozenset({"PRESS", "true", "1", ""})


def _check_size(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MalformedCommand(
            f"payload too large ({len(payload)} bytes, at most {MAX_PAYLOAD_BYTES})"
        )


def _validate(data: dict[str, Any] | bytes) -> SetPayload:
    try:
        if isinstance(data, bytes):
            return SetPayload.model_validate_json(data)
        return SetPayload.model_validate(data)
    except ValidationError as exc:
        raise MalformedCommand(describe_errors(exc)) from None


def parse_json_command(payload: bytes) -> Command:
    """A JSON command (``<base>/<id>/set``); raises :class:`MalformedCommand`."""
    _check_size(payload)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedCommand("payload is not UTF-8 text") from None
    if not text.lstrip().startswith("{"):
        raise MalformedCommand('payload must be a JSON object, e.g. {"intensity": 3}')
    return to_command(_validate(payload))


def parse_raw_command(field: str, payload: bytes) -> Command:
    """One raw value (``<base>/<id>/set/<field>``); raises :class:`MalformedCommand`."""
    _check_size(payload)
    if field not in RAW_FIELDS:
        raise MalformedCommand(f"unknown field {field!r} (one of {', '.join(RAW_FIELDS)})")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedCommand("payload is not UTF-8 text") from None
    value: object
    if field == "power":
        if text not in _TRUE | _FALSE:
            raise MalformedCommand(f"power: expected ON or OFF, got {text!r}")
        value = text in _TRUE
    elif field in ("intensity", "zone"):
        if not _INT.fullmatch(text):
            raise MalformedCommand(f"{field}: expected a whole number, got {text!r}")
        value = int(text)
    elif field == "heat":
        if text == "off":
            value = 0
        elif _INT.fullmatch(text):
            value = int(text)
        else:
            raise MalformedCommand(f"heat: expected a level or 'off', got {text!r}")
    elif field in ("start", "stop"):
        if text not in _PRESS:
            raise MalformedCommand(f"{field}: expected PRESS, got {text!r}")
        value = True
    else:
        value = text
    return to_command(_validate({field: value}))


# --- out ------------------------------------------------------------------------------


def state_payload(view: DeviceView, selected_program: str | None = None) -> dict[str, Any]:
    """The retained state of one massager: what it reports doing, the program and its
    step, time left, the link, the safety timers, and the last refusal or fault."""
    r = view.reported
    p = view.program
    time_left = p.left_s if p is not None else view.timers.session_left_s
    return {
        "device_id": view.device_id,
        "name": view.name,
        "profile": view.profile,
        "power": r.power,
        "mode": r.mode,
        "intensity": r.intensity,
        "heat": r.heat,
        "heat_celsius": r.heat_celsius,
        "zone": r.zone,
        "temperature": view.temperature,
        "assumed": view.assumed,
        "program": p.program if p is not None else None,
        "step": p.step if p is not None else None,
        "steps": p.steps if p is not None else None,
        "step_name": p.step_name if p is not None else None,
        "step_left_s": p.step_left_s if p is not None else None,
        "time_left_s": time_left,
        "selected_program": selected_program,
        "link": view.link,
        "rssi": view.rssi,
        "timers": view.timers.model_dump(),
        "source": view.session_source,
        "last_refusal": view.last_refusal,
        "fault": view.fault,
        "end_reason": view.end_reason,
        "desired": view.desired.model_dump(),
    }


def encode(data: dict[str, Any]) -> bytes:
    """Compact JSON, keys sorted (identical states give identical bytes)."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def echo(payload: bytes) -> str:
    """An offending payload as text, cut to :data:`ECHO_CHARS`."""
    text = payload[: ECHO_CHARS * 4].decode("utf-8", errors="replace")
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "..."


def error_payload(
    error: str,
    message: str,
    *,
    topic: str,
    payload: bytes,
    reason: str | None = None,
    advice: str | None = None,
    device: str | None = None,
) -> bytes:
    """The answer on ``<base>/<id>/error``: what was wrong, and the payload it was."""
    return encode({
        "error": error,
        "reason": reason,
        "message": message,
        "advice": advice,
        "device": device,
        "topic": topic,
        "payload": echo(payload),
        "payload_bytes": len(payload),
    })
