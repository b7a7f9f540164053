"""Profile loading: the shipped set loads, and every broken profile names file, field and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from footctl.device.profile.loader import (
    _locate,
    find_profiles,
    get_profile,
    load_profile,
    load_profile_text,
    shipped_dir,
)
from footctl.device.profile.schema import Profile
from footctl.errors import ProfileError, ProfileProblem

SHIPPED_FILES = sorted(shipped_dir().glob("*.toml"))


def line_of(text: str, needle: str) -> int:
    """1-based line of the only line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def broken_copy(tmp_path: Path, source: str, old: str, new: str) -> tuple[Path, str]:
    """Write a copy of a shipped profile with one text replacement."""
    text = (shipped_dir() / source).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {source}"
    text = text.replace(old, new)
    path = tmp_path / source
    path.write_text(text, encoding="utf-8")
    return path, text


def load_error(path: Path) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    return info.value


def only(error: ProfileError) -> ProfileProblem:
    assert len(error.problems) == 1, error.problems
    return error.problems[0]


# --- the shipped profiles ------------------------------------------------------------------


V1_SHIPPED = ["ems-v2", "shiatsu-aa55", "shiatsu-keys"]


def test_version_1_profiles_still_ship_and_load_as_version_1() -> None:
    stems = [p.stem for p in SHIPPED_FILES]
    assert set(V1_SHIPPED) <= set(stems)
    for stem in V1_SHIPPED:
        assert load_profile(shipped_dir() / f"{stem}.toml").schema_version == 1


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=lambda p: p.stem)
def test_shipped_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert isinstance(profile, Profile)
    assert profile.id == path.stem
    assert get_profile(profile.id) == profile


def test_find_profiles_finds_all_and_extra_dirs_win(tmp_path: Path) -> None:
    assert sorted(find_profiles()) == [p.stem for p in SHIPPED_FILES]
    text = (shipped_dir() / "ems-v2.toml").read_text(encoding="utf-8")
    (tmp_path / "mine.toml").write_text(text.replace('mtu = 23', 'mtu = 100'), encoding="utf-8")
    found = find_profiles([tmp_path])
    assert found["ems-v2"].gatt.mtu == 100
    assert found["shiatsu-aa55"].gatt.mtu == 23


# --- errors name file, field and line --------------------------------------------------------


def test_misspelt_field(tmp_path: Path) -> None:
    path, text = broken_copy(
        tmp_path, "ems-v2.toml", "write_with_response = true", "write_with_respose = true"
    )
    problem = only(load_error(path))
    assert problem.file == path
    assert problem.field == "gatt.write_with_respose"
    assert problem.line == line_of(text, "write_with_respose")
    assert "misspelt" in problem.reason
    assert f"{path}:{problem.line}: gatt.write_with_respose" in str(problem)


def test_checksum_range_past_the_frame(tmp_path: Path) -> None:
    path, text = broken_copy(
        tmp_path,
        "shiatsu-aa55.toml",
        'checksum = { preset = "xor8" }',
        'checksum = { preset = "xor8", start = 40 }',
    )
    error = load_error(path)
    problem = only(error)
    assert problem.file == path
    assert problem.field in ("framing.checksum", "framing")
    assert problem.line == line_of(text, "start = 40")
    assert "start 40" in problem.reason
    assert str(path) in str(error)
    assert "framing.checksum" in str(error)


def test_checksum_stop_before_eating_the_frame(tmp_path: Path) -> None:
    path, _ = broken_copy(
        tmp_path,
        "shiatsu-keys.toml",
        'checksum = { preset = "inverted-sum8" }',
        'checksum = { preset = "inverted-sum8", stop_before = 2 }',
    )
    # query is 5A 31 | checksum: two bytes before it, none left to cover (keys cover one).
    problem = only(load_error(path))
    assert problem.field == "framing.checksum"
    assert "commands.query" in problem.reason


def test_toml_syntax_error(tmp_path: Path) -> None:
    path, text = broken_copy(tmp_path, "ems-v2.toml", "mtu = 23", "mtu = = 23")
    problem = only(load_error(path))
    assert problem.file == path
    assert problem.field == "<toml>"
    assert problem.line == line_of(text, "mtu = = 23")


def test_unterminated_table_header_syntax_error() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile_text('schema_version = 1\n\n[gatt\nservice = "FFE0"\n')
    assert only(info.value).line == 3


@pytest.mark.parametrize(
    ("source", "section", "missing"),
    [
        ("shiatsu-keys.toml", '[commands.press_mode]\ncode = 0x30\nbody = [{ const = "02" }]\n',
         "press_mode"),
        ("ems-v2.toml", '[commands.power]\ncode = 0x15\nbody = [{ arg = "u8" }]\n', "power"),
    ],
)
def test_missing_required_command(tmp_path: Path, source: str, section: str, missing: str) -> None:
    path, text = broken_copy(tmp_path, source, section, "")
    problem = only(load_error(path))
    assert problem.file == path
    assert f"needs commands: {missing}" in problem.reason
    assert problem.field == "commands"
    assert problem.line == text.splitlines().index(
        next(line for line in text.splitlines() if line.startswith("[commands."))
    ) + 1


def test_keys_profile_may_not_take_absolute_arguments(tmp_path: Path) -> None:
    path, _ = broken_copy(
        tmp_path, "shiatsu-keys.toml", 'body = [{ const = "05" }]', 'body = [{ arg = "u8" }]'
    )
    assert "takes no argument" in only(load_error(path)).reason


@pytest.mark.parametrize(
    ("source", "old", "new", "field", "needle"),
    [
        # a value out of range inside an array of inline tables: the element's own line
        (
            "ems-v2.toml", '{ name = "cupping", code = 5 }', '{ name = "cupping", code = 500 }',
            "capabilities.modes.5.code", "code = 500",
        ),
        (
            "ems-v2.toml", "{ level = 3, celsius = 44 }", "{ level = 3, celsius = 99 }",
            "capabilities.heat_levels.2.celsius", "celsius = 99",
        ),
        # a misspelt key inside an inline table under a nested table header
        (
            "ems-v2.toml", "zone = { offset = 4 }", "zone = { offset = 4, widht = 1 }",
            "status.fields.zone.widht", "widht",
        ),
        # a required key missing: the line of its table
        (
            "ems-v2.toml", "[commands.intensity]\ncode = 0x12\n", "[commands.intensity]\n",
            "commands.intensity.code", "[commands.intensity]",
        ),
        # a command name the schema does not know
        ("ems-v2.toml", "[commands.timer]", "[commands.timr]", "commands.timr.[key]", "timr"),
        # a bad argument format in a body list
        (
            "shiatsu-aa55.toml",
            '[commands.heat]\ncode = 0x04\nbody = [{ arg = "u8" }]',
            '[commands.heat]\ncode = 0x04\nbody = [{ arg = "s8" }]',
            "commands.heat.body.0.arg", '"s8"',
        ),
        # a bad UUID
        ("shiatsu-keys.toml", 'write = "AE01"', 'write = "AE0"', "gatt.write", '"AE0"'),
        # a key that also appears (as an inline key) further down the file
        (
            "shiatsu-keys.toml", 'name = "Shiatsu foot massager (key presses, inverted sum8)"',
            'name = 5', "name", "name = 5",
        ),
        # a whole-profile check naming a missing key: the line of its table
        ("ems-v2.toml", 'notify = "FFE2"\n', "", "gatt", "[gatt]"),
    ],
)
def test_problem_lines(
    tmp_path: Path, source: str, old: str, new: str, field: str, needle: str
) -> None:
    path, text = broken_copy(tmp_path, source, old, new)
    problem = only(load_error(path))
    assert problem.field == field
    assert problem.line == line_of(text, needle)


def test_missing_top_level_key_has_no_wrong_line() -> None:
    # "name" is missing at the top, but "name = ..." appears inside the modes array:
    # pointing there would be wrong.
    text = (shipped_dir() / "ems-v2.toml").read_text(encoding="utf-8")
    text = text.replace('name = "EMS foot pad (79 68 framing, CRC16)"\n', "")
    with pytest.raises(ProfileError) as info:
        load_profile_text(text)
    problem = only(info.value)
    assert problem.field == "name"
    assert problem.line is None
    assert problem.file is None
    assert str(problem).startswith("<profile>: name:")


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    path, text = broken_copy(tmp_path, "ems-v2.toml", "mtu = 23", "mtu = 9\nmtx = 1")
    error = load_error(path)
    by_field = {p.field: p for p in error.problems}
    assert set(by_field) == {"gatt.mtu", "gatt.mtx"}
    assert by_field["gatt.mtu"].line == line_of(text, "mtu = 9")
    assert by_field["gatt.mtx"].line == line_of(text, "mtx = 1")
    problems = error.to_dict()["problems"]
    assert isinstance(problems, list)
    assert {p["line"] for p in problems} == {by_field["gatt.mtu"].line, by_field["gatt.mtx"].line}


def test_missing_file(tmp_path: Path) -> None:
    problem = only(load_error(tmp_path / "nope.toml"))
    assert problem.field == "<file>"
    assert problem.file == tmp_path / "nope.toml"


# --- _locate on awkward TOML ---------------------------------------------------------------

AWKWARD = '''\
# a comment with [brackets] and key = value
title = """
[not.a.table]
x = 1
"""
"quoted key" = 1
site."dotted.part".deep = 'x = [1'
[a]
list = [
  1,  # comment, with a comma
  [2, 3],
  { k = "}", j = 4 },
]
[[runs]]
n = 1
[[runs]]
n = 2
[a.b]
c = 1
'''


@pytest.mark.parametrize(
    ("loc", "line"),
    [
        (("title",), 2),
        (("quoted key",), 6),
        (("site", "dotted.part", "deep"), 7),
        (("a",), 8),
        (("a", "list"), 9),
        (("a", "list", 0), 10),
        (("a", "list", 1, 1), 11),
        (("a", "list", 2, "j"), 12),
        (("runs", 0, "n"), 15),
        (("runs", 1, "n"), 17),
        (("runs", 1), 16),
        (("a", "b", "c"), 19),
        (("a", "b", "missing"), 18),
        (("x",), None),  # only inside the multi-line string
        (("not",), None),
    ],
)
def test_locate_awkward_toml(loc: tuple[str | int, ...], line: int | None) -> None:
    assert _locate(AWKWARD, loc) == line
