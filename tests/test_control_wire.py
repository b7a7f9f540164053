"""The client's JSON (over ``_json``) says and reads exactly what ``json`` does."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from footctl.control import wire

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON, st.booleans())
def test_dumps_and_loads_match_the_json_module(value: Any, sort_keys: bool) -> None:
    text = wire.dumps(value, sort_keys=sort_keys)
    assert text == json.dumps(value, sort_keys=sort_keys)
    assert wire.loads(text) == json.loads(text)
    assert wire.loads(f"  {text}\n".encode()) == json.loads(text)


def test_non_finite_constants_and_bad_documents() -> None:
    assert math.isnan(wire.loads("NaN"))
    assert wire.loads("[Infinity]") == [math.inf]
    for bad in ("", "{", "[1] 2", "nope", '{"a": }'):
        with pytest.raises(ValueError, match=r"."):
            wire.loads(bad)
    with pytest.raises(TypeError):
        wire.dumps(object())
