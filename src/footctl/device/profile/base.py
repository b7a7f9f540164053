"""Value types every profile model shares: UUIDs, hex bytes, the frozen base model."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

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
