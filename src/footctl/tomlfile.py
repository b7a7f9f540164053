"""What the TOML loaders (profiles, programs, the config file) share: the line of a
TOML syntax error, a pydantic error's reason in the user's words, and loading every
``*.toml`` file of a directory so that one bad file does not hide the others."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Exception)

# tomllib names the line in its message only ("... (at line 3, column 7)").
_TOML_LINE = re.compile(r"line (\d+)")


def toml_error_line(exc: tomllib.TOMLDecodeError) -> int | None:
    """The 1-based line a TOML syntax error points at, if it says."""
    match = _TOML_LINE.search(str(exc))
    return int(match.group(1)) if match else None


def error_reason(err: ErrorDetails) -> str:
    """A pydantic error's message as the user should read it: an unknown key is
    probably misspelt, and a validator's own message loses pydantic's prefix."""
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field (misspelt?)"
    reason = err.get("msg", "invalid").removeprefix("Value error, ")
    if kind in _SCALAR_TYPE_ERRORS:
        # Strict models: say what was written, and how to write it instead.
        value = err.get("input")
        hint = _TYPE_HINTS.get(kind, "")
        if isinstance(value, str):
            return f"{reason}, not the string {value!r}{hint}"
        return f"{reason}, not {_toml_type(value)} {value!r}{hint}"
    return reason


# pydantic's errors for a value of the wrong type where a number or a boolean belongs.
_SCALAR_TYPE_ERRORS = frozenset({"float_type", "int_type", "bool_type", "string_type"})
_TYPE_HINTS = {
    "float_type": " (write the number without quotes)",
    "int_type": " (write a whole number without quotes)",
    "bool_type": " (write true or false, without quotes)",
    "string_type": " (write it in quotes)",
}


def _toml_type(value: object) -> str:
    """The TOML name of a parsed value's type, as the user wrote it."""
    if isinstance(value, bool):
        return "the boolean"
    if isinstance(value, int):
        return "the integer"
    if isinstance(value, float):
        return "the float"
    if isinstance(value, list):
        return "the array"
    if isinstance(value, dict):
        return "the table"
    return "the value"


def load_toml_dir(
    directory: Path, load: Callable[[Path], _T], error: type[_E]
) -> tuple[list[tuple[Path, _T]], list[_E]]:
    """Every ``*.toml`` file of ``directory`` in name order, loaded with ``load``: the
    (path, result) of each that loaded, and the ``error`` of each that did not (that
    file is skipped). A directory that does not exist has no files."""
    loaded: list[tuple[Path, _T]] = []
    failed: list[_E] = []
    if not directory.is_dir():
        return loaded, failed
    for path in sorted(directory.glob("*.toml")):
        try:
            loaded.append((path, load(path)))
        except error as exc:
            failed.append(exc)
    return loaded, failed
