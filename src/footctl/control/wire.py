"""JSON for the thin client without the ``json`` package.

``import json`` pulls in ``re`` (and with it ``enum`` and ``functools``), which costs
the client more than everything else it imports. The C accelerator ``_json`` that
``json`` itself uses needs none of that; these two functions give the same output
as ``json.loads`` and ``json.dumps(..., sort_keys=...)`` with default settings. Where
``_json`` is missing (not CPython), they fall back to ``json``.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False  # typing costs the client milliseconds; mypy reads this as True
if TYPE_CHECKING:
    from typing import Any

_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_SPACE = " \t\n\r"

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]


class _Context:
    """What ``_json.make_scanner`` reads (the attributes of ``json.JSONDecoder``)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, Any] = {}


# typeshed types the context as a scanner; any object with JSONDecoder's attributes does.
_scan = _json.make_scanner(_Context()) if _json is not None else None  # type: ignore[arg-type]


def loads(text: str | bytes) -> Any:
    """One JSON document (``json.loads``); ValueError if it is not one."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _scan is None:  # pragma: no cover
        import json  # noqa: PLC0415

        return json.loads(text)
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"not JSON at character {exc.value}") from None
    if text[end:].strip(_SPACE):
        raise ValueError(f"extra data after character {end}")
    return value


def _unserializable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """``json.dumps(value, sort_keys=sort_keys)``."""
    if _json is None:  # pragma: no cover
        import json  # noqa: PLC0415

        return json.dumps(value, sort_keys=sort_keys)
    encode = _json.make_encoder(
        {}, _unserializable, _json.encode_basestring_ascii, None, ": ", ", ", sort_keys,
        False, True,
    )
    return "".join(encode(value, 0))
