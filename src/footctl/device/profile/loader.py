"""Load and validate profile files, with file, line and field in every error."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from pathlib import Path

from pydantic import ValidationError

from footctl.device.profile.schema import Profile, validate_profile
from footctl.errors import ProfileError, ProfileProblem, UsageError
from footctl.tomlfile import error_reason, load_toml_dir, toml_error_line

_LOG = logging.getLogger(__name__)

PROFILE_DIR_ENV = "FOOTCTL_PROFILE_DIR"
"""Extra profile directories (os.pathsep separated), searched before the shipped ones."""


def shipped_dir() -> Path:
    """The directory of the profiles shipped with footctl (source tree or installed wheel)."""
    here = Path(__file__).resolve()
    installed = here.parents[2] / "_device_profiles"  # footctl/_device_profiles in a wheel
    if installed.is_dir():
        return installed
    return here.parents[4] / "device_profiles"  # the source tree: <repo>/device_profiles


KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}\n#]*")


class _KeyLines:
    """The 1-based line where every key path of a (valid) TOML document is defined.

    Paths are tuples as pydantic reports locations: keys, and list indexes for array
    elements and arrays of tables. A small scanner, not a validator: it runs only on
    text tomllib has already accepted.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self._aot: dict[KeyPath, int] = {}
        self._document()

    def _peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def _advance(self, n: int = 1) -> None:
        end = min(self.pos + n, len(self.text))
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def _skip(self, *, newlines: bool) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self._advance()
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self._advance((len(self.text) if end < 0 else end) - self.pos)
            else:
                return

    def _define(self, path: KeyPath) -> None:
        for i in range(1, len(path) + 1):
            self.lines.setdefault(path[:i], self.line)

    def _string(self) -> str:
        quote = self._peek()
        delim = quote * 3 if self._peek(3) == quote * 3 else quote
        start = self.pos
        self._advance(len(delim))
        while self.pos < len(self.text):
            if quote == '"' and self._peek() == "\\":
                self._advance(2)
            elif self.text.startswith(delim, self.pos):
                self._advance(len(delim))
                while len(delim) == 3 and self._peek() == quote:
                    self._advance()
                break
            else:
                self._advance()
        return self.text[start : self.pos]

    def _key(self) -> KeyPath:
        parts: list[str | int] = []
        while True:
            self._skip(newlines=False)
            if self._peek() in ('"', "'"):
                raw = self._string()
                parts.append(str(tomllib.loads(f"k = {raw}")["k"]))
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if match is None:
                    break
                parts.append(match.group())
                self._advance(match.end() - self.pos)
            self._skip(newlines=False)
            if self._peek() != ".":
                break
            self._advance()
        return tuple(parts)

    def _key_value(self, table: KeyPath) -> None:
        key = self._key()
        if not key:
            self._advance()  # not a key: step over it
            return
        self._define(table + key)
        self._skip(newlines=False)
        if self._peek() == "=":
            self._advance()
        self._skip(newlines=False)
        self._value(table + key)

    def _value(self, path: KeyPath) -> None:
        ch = self._peek()
        if ch == "{":
            self._advance()
            while True:
                self._skip(newlines=True)
                if self._peek() in ("}", ""):
                    self._advance()
                    return
                self._key_value(path)
                self._skip(newlines=True)
                if self._peek() == ",":
                    self._advance()
        elif ch == "[":
            self._advance()
            index = 0
            while True:
                self._skip(newlines=True)
                if self._peek() in ("]", ""):
                    self._advance()
                    return
                self._define((*path, index))
                self._value((*path, index))
                self._skip(newlines=True)
                if self._peek() == ",":
                    self._advance()
                    index += 1
        elif ch in ('"', "'"):
            self._string()
        else:
            match = _SCALAR.match(self.text, self.pos)
            self._advance(max(1, len(match.group()) if match else 1))

    def _document(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip(newlines=True)
            if self.pos >= len(self.text):
                return
            if self._peek() != "[":
                self._key_value(table)
                continue
            aot = self._peek(2) == "[["
            self._advance(2 if aot else 1)
            key = self._key()
            self._skip(newlines=False)
            self._advance(2 if aot else 1)
            self._define(key)
            table = key
            if aot:
                index = self._aot.get(key, -1) + 1
                self._aot[key] = index
                table = (*key, index)
                self._define(table)


def _key_lines(text: str) -> dict[KeyPath, int]:
    try:
        return _KeyLines(text).lines
    except tomllib.TOMLDecodeError:  # a quoted key the scanner cut wrongly: no lines
        return {}


def _lookup(lines: dict[KeyPath, int], loc: KeyPath) -> int | None:
    """The line of ``loc``, or of its nearest defined parent (for a missing key)."""
    path = loc
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _locate(text: str, loc: KeyPath) -> int | None:
    """Line number (1-based) of a pydantic location in profile TOML ``text``: the key
    itself, an array element, or for a missing key its table."""
    return _lookup(_key_lines(text), tuple(loc))


def _root_location(reason: str, lines: dict[KeyPath, int]) -> KeyPath:
    """For a whole-profile error, the path its message names: the longest defined
    prefix of a dotted path such as ``framing.checksum``, else a top-level key."""
    for token in re.findall(r"\b[a-z_]+(?:\.[a-z_]+)+\b", reason):
        path: KeyPath = tuple(token.split("."))
        while path and path not in lines:
            path = path[:-1]
        if path:
            return path
    for word in re.findall(r"\b[a-z_]+\b", reason):
        if (word,) in lines:
            return (word,)
    return ()


def _problems(exc: ValidationError, text: str, path: Path | None) -> list[ProfileProblem]:
    lines = _key_lines(text)
    problems: list[ProfileProblem] = []
    for err in exc.errors():
        loc: KeyPath = tuple(err.get("loc", ()))
        reason = error_reason(err)
        if not loc:
            loc = _root_location(reason, lines)
        field = ".".join(str(p) for p in loc) or "<root>"
        reason = reason.removeprefix(f"{field}: ")  # a rule that names its own field
        problems.append(ProfileProblem(path, field, reason, _lookup(lines, loc)))
    return problems


def load_profile_text(text: str, path: Path | None = None) -> Profile:
    """Parse and validate profile TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = ProfileProblem(path, "<toml>", str(exc), toml_error_line(exc))
        raise ProfileError([problem]) from exc
    try:
        return validate_profile(data)
    except ValidationError as exc:
        raise ProfileError(_problems(exc, text, path)) from exc


def load_profile(path: Path) -> Profile:
    """Load one profile file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError([ProfileProblem(path, "<file>", exc.strerror or str(exc))]) from exc
    return load_profile_text(text, path)


def _search_dirs(extra: list[Path] | None) -> list[Path]:
    dirs = list(extra or [])
    env = os.environ.get(PROFILE_DIR_ENV)
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    dirs.append(shipped_dir())
    return dirs


def scan_profiles(
    extra_dirs: list[Path] | None = None,
) -> tuple[dict[str, Profile], list[ProfileProblem]]:
    """Every valid profile by id (earlier directories win) and the problems of every
    invalid file, which is skipped: one bad file does not hide the others."""
    found: dict[str, Profile] = {}
    problems: list[ProfileProblem] = []
    for directory in _search_dirs(extra_dirs):
        loaded, failed = load_toml_dir(directory, load_profile, ProfileError)
        for _path, profile in loaded:
            found.setdefault(profile.id, profile)
        problems.extend(p for exc in failed for p in exc.problems)
    return found, problems


def find_profiles(extra_dirs: list[Path] | None = None) -> dict[str, Profile]:
    """Every valid profile by id; earlier directories win. An invalid file is skipped
    with a warning naming its file, line and field."""
    found, problems = scan_profiles(extra_dirs)
    for problem in problems:
        _LOG.warning("profile file skipped: %s", problem)
    return found


def get_profile(profile_id: str, extra_dirs: list[Path] | None = None) -> Profile:
    """The profile with this id, or a usage error listing the known ones. Asking for
    an id whose file (``<id>.toml``) is invalid raises that file's problems."""
    profiles, problems = scan_profiles(extra_dirs)
    if profile_id in profiles:
        return profiles[profile_id]
    own = [p for p in problems if p.file is not None and p.file.stem == profile_id]
    if own:
        raise ProfileError(own)
    for problem in problems:
        _LOG.warning("profile file skipped: %s", problem)
    known = ", ".join(sorted(profiles)) or "none"
    raise UsageError(f"no profile {profile_id!r}", advice=f"known profiles: {known}")
