"""Fuzzing the profile loader and the status decoder: whatever the input, the only
exception that may escape is footctl's own error type, with a message."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from footctl.device import codec
from footctl.device.profile.loader import load_profile_text, shipped_dir
from footctl.device.profile.schema import Profile
from footctl.errors import FootctlError, ProfileError

SHIPPED_TEXT = {p.stem: p.read_text() for p in sorted(shipped_dir().glob("*.toml"))}
NUMBER = re.compile(r"(?<![\w.])(0x[0-9A-Fa-f]+|\d+)(?![\w.])")


def load_or_our_error(text: str) -> Profile | None:
    try:
        return load_profile_text(text)
    except ProfileError as exc:
        error = exc
    assert error.problems, "a ProfileError lists its problems"
    assert str(error).strip()
    for problem in error.problems:
        assert problem.field
        assert problem.reason
    return None


@given(st.text(max_size=400))
def test_random_text_gives_a_profile_error_not_a_crash(text: str) -> None:
    load_or_our_error(text)


@given(
    name=st.sampled_from(sorted(SHIPPED_TEXT)),
    data=st.data(),
)
def test_line_deletions_and_insertions(name: str, data: st.DataObject) -> None:
    lines = SHIPPED_TEXT[name].splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["delete", "duplicate", "garbage"]))
        index = data.draw(st.integers(0, len(lines) - 1))
        if action == "delete" and len(lines) > 1:
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        else:
            lines.insert(index, data.draw(st.text(max_size=40)).replace("\n", " "))
    load_or_our_error("\n".join(lines))


@given(
    name=st.sampled_from(sorted(SHIPPED_TEXT)),
    data=st.data(),
)
def test_number_mutations(name: str, data: st.DataObject) -> None:
    text = SHIPPED_TEXT[name]
    spots = list(NUMBER.finditer(text))
    for _ in range(data.draw(st.integers(1, 3))):
        match = data.draw(st.sampled_from(spots))
        replacement = data.draw(
            st.one_of(
                st.integers(-(2**40), 2**40).map(str),
                st.sampled_from(['"x"', "true", "[]", "{}", "1.5", "-0", "nan", "inf"]),
            )
        )
        text = text[: match.start()] + replacement + text[match.end():]
        spots = list(NUMBER.finditer(text)) or spots
        if not spots:
            break
    load_or_our_error(text)


@given(name=st.sampled_from(sorted(SHIPPED_TEXT)), data=st.binary(max_size=64))
def test_status_decoder_raises_only_our_errors(name: str, data: bytes) -> None:
    profile = load_profile_text(SHIPPED_TEXT[name])
    try:
        codec.decode_status(profile, data)
        message = "decoded"
    except FootctlError as exc:
        message = str(exc)
    assert message.strip()


def test_shipped_profiles_still_load() -> None:
    # The mutations above start from these; they must be valid to begin with.
    for text in SHIPPED_TEXT.values():
        assert isinstance(load_profile_text(text), Profile)
