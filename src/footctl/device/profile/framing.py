"""Frame layout: header, length field, direction byte, checksum and trailer.

Part of the profile schema (:mod:`footctl.device.profile.schema` re-exports every name).
"""

from __future__ import annotations

from typing import Annotated, Literal, cast

from pydantic import Field, model_validator

from footctl.device.profile.base import Byte, ByteOrder, HexBytes, Model

__all__ = [
    "Checksum", "ChecksumOp", "ChecksumPreset", "Direction", "Framing", "LengthField",
]



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
