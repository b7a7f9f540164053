"""Load and validate profile files, with file, line and field in every error."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from pydantic import ValidationError

from footctl.errors import ProfileError, ProfileProblem, UsageError
from footctl.profile.schema import Profile

PROFILE_DIR_ENV = "FOOTCTL_PROFILE_DIR"
"""Extra profile directories (os.pathsep separated), searched before the shipped ones."""


def shipped_dir() -> Path:
    """The directory of the profiles shipped with footctl (source tree or installed wheel)."""
    here = Path(__file__).resolve()
    installed = here.parent.parent / "_device_profiles"
    if installed.is_dir():
        return installed
    return here.parents[3] / "device_profiles"


def _locate(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Best-effort line number of a dotted TOML path in ``text`` (1-based)."""
    keys = [str(k) for k in loc if isinstance(k, str)]
    if not keys:
        return None
    lines = text.splitlines()
    # Try the longest table prefix as a [header], then the remaining key inside it.
    for split in range(len(keys), -1, -1):
        table, rest = keys[:split], keys[split:]
        start = 0
        if table:
            header = re.compile(r"^\s*\[+\s*" + r"\s*\.\s*".join(map(re.escape, table)) + r"\s*\]+")
            found = [i for i, line in enumerate(lines) if header.match(line)]
            if not found:
                continue
            start = found[0]
            if not rest:
                return start + 1
        key = rest[0]
        pattern = re.compile(r"^\s*(\"?)" + re.escape(key) + r"\1\s*=|[{,]\s*" + re.escape(key) + r"\s*=")
        dotted = re.compile(r"^\s*" + r"\s*\.\s*".join(map(re.escape, rest)) + r"\s*=")
        for i in range(start + (1 if table else 0), len(lines)):
            if table and i > start and lines[i].lstrip().startswith("[") and not lines[i].lstrip().startswith("[["):
                break
            if dotted.search(lines[i]) or pattern.search(lines[i]):
                return i + 1
    return None


def _problems(exc: ValidationError, text: str, path: Path | None) -> list[ProfileProblem]:
    problems: list[ProfileProblem] = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        field = ".".join(str(p) for p in loc) or "<root>"
        reason = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            reason = "unknown field (misspelt?)"
        reason = reason.removeprefix("Value error, ")
        problems.append(ProfileProblem(path, field, reason, _locate(text, loc)))
    return problems


def load_profile_text(text: str, path: Path | None = None) -> Profile:
    """Parse and validate profile TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise ProfileError([ProfileProblem(path, "<toml>", str(exc), line)]) from exc
    try:
        return Profile.model_validate(data)
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


def find_profiles(extra_dirs: list[Path] | None = None) -> dict[str, Profile]:
    """Every valid profile by id; earlier directories win. Invalid files raise."""
    found: dict[str, Profile] = {}
    for directory in _search_dirs(extra_dirs):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            profile = load_profile(path)
            found.setdefault(profile.id, profile)
    return found


def get_profile(profile_id: str, extra_dirs: list[Path] | None = None) -> Profile:
    """The profile with this id, or a usage error listing the known ones."""
    profiles = find_profiles(extra_dirs)
    if profile_id not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise UsageError(f"no profile {profile_id!r}", advice=f"known profiles: {known}")
    return profiles[profile_id]
