"""codec.encode keeps the frames each profile object has encoded: a profile's frames
are its own (never another profile's with the same id), and a profile that is gone
takes its table with it."""

from __future__ import annotations

import gc

from footctl.device import codec
from footctl.device.profile.schema import Profile
from footctl.state import Command


def _variant(profile: Profile, header: bytes) -> Profile:
    framing = profile.framing.model_copy(update={"header": header})
    return profile.model_copy(update={"framing": framing})


def test_profiles_with_one_id_each_get_their_own_frames(profiles: dict[str, Profile]) -> None:
    base = profiles["shiatsu-aa55"]
    command = Command("intensity", 2)
    first = codec.encode(base, command)
    for header in (b"\xaa\x56", b"\xab\x55", b"\x01\x02"):
        variant = _variant(base, header)
        assert variant.id == base.id
        frame = codec.encode(variant, command)
        assert frame.startswith(header) and frame == codec._encode(variant, command)
        assert codec.encode(variant, command) == frame  # from the table now
    assert codec.encode(base, command) == first == codec._encode(base, command)


def test_every_value_has_its_own_frame(profiles: dict[str, Profile]) -> None:
    profile = profiles["shiatsu-aa55"]
    for level in (1, 2, 3, 2, 1):
        assert codec.encode(profile, Command("intensity", level)) == codec._encode(
            profile, Command("intensity", level))
    assert codec.encode(profile, Command("query")) != codec.encode(profile, Command("power", 1))


def test_a_profile_that_is_gone_takes_its_frames_with_it(profiles: dict[str, Profile]) -> None:
    variant = _variant(profiles["shiatsu-aa55"], b"\xaa\x57")
    codec.encode(variant, Command("intensity", 2))
    key = id(variant)
    assert key in codec._ENCODED
    del variant
    gc.collect()
    assert key not in codec._ENCODED
    # A new profile (at that address or not) encodes its own frames.
    fresh = _variant(profiles["shiatsu-aa55"], b"\xaa\x58")
    assert codec.encode(fresh, Command("intensity", 2)).startswith(b"\xaa\x58")
