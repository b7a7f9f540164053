"""Load program files: the shipped ones and the user's, with file, line, step and
field in every error. A user program with the same name as a shipped one wins."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from pydantic import ValidationError

from footctl.device.profile.loader import _locate as _locate_key
from footctl.errors import UsageError
from footctl.programs.model import Program, ProgramError, ProgramProblem
from footctl.tomlfile import error_reason, load_toml_dir, toml_error_line

_LOG = logging.getLogger(__name__)

APP_NAME = "footctl"
PROGRAM_DIR_ENV = "FOOTCTL_PROGRAM_DIR"
"""Overrides the user program directory (default: ``programs/`` in the user config dir)."""

_STEPS_HEADER = re.compile(r"^\s*\[\[\s*steps\s*\]\]")
_ANY_HEADER = re.compile(r"^\s*\[")
_SUB_HEADER = re.compile(r"^\s*\[\s*steps\s*\.\s*([A-Za-z0-9_-]+)")


def shipped_dir() -> Path:
    """The directory of the programs shipped with footctl."""
    return Path(__file__).resolve().parent / "shipped"


def default_user_dir() -> Path:
    """Where the user's programs live: ``$FOOTCTL_PROGRAM_DIR``, else ``programs/`` in
    the platform's user config directory."""
    env = os.environ.get(PROGRAM_DIR_ENV)
    if env:
        return Path(env)
    return platformdirs.user_config_path(APP_NAME) / "programs"


def _locate(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Best-effort 1-based line of a pydantic error location in program TOML.

    ``("steps", i, ...)`` is looked up in the i-th ``[[steps]]`` block; anything
    else (top-level keys, ``[progression]``) is found as the profile loader does.
    """
    if len(loc) < 2 or loc[0] != "steps" or not isinstance(loc[1], int):
        return _locate_key(text, loc)
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if _STEPS_HEADER.match(line)]
    if loc[1] >= len(headers):
        # Steps written inline (steps = [{...}]): point at the array.
        return _locate_key(text, ("steps",))
    start = headers[loc[1]]
    rest = [k for k in loc[2:] if isinstance(k, str)]
    if not rest:
        return start + 1
    found = _find_key(lines, start + 1, rest[0])
    if found is not None:
        return found + 1
    for i in range(start + 1, len(lines)):
        sub = _SUB_HEADER.match(lines[i])
        if sub and sub.group(1) == rest[0]:
            # A [steps.pulse] sub-table: look for the next key inside it.
            inner = _find_key(lines, i + 1, rest[1]) if len(rest) > 1 else None
            return (inner if inner is not None else i) + 1
        if _ANY_HEADER.match(lines[i]) and not sub:
            break
    return start + 1


def _find_key(lines: list[str], first: int, key: str) -> int | None:
    """0-based index of ``key = ...`` from line ``first`` up to the next table header."""
    pattern = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*[.=]")
    for i in range(first, len(lines)):
        if _ANY_HEADER.match(lines[i]):
            return None
        if pattern.match(lines[i]):
            return i
    return None


def _problems(exc: ValidationError, text: str, path: Path | None) -> list[ProgramProblem]:
    problems: list[ProgramProblem] = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        step: int | None = None
        inner: tuple[str | int, ...] = loc
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            step = loc[1] + 1
            inner = loc[2:]
        field = ".".join(str(p) for p in inner) or ("<step>" if step else "<program>")
        problems.append(ProgramProblem(path, step, field, error_reason(err), _locate(text, loc)))
    return problems


def load_program_text(text: str, path: Path | None = None) -> Program:
    """Parse and validate program TOML text. With a ``path``, the program's name must
    match the file name, so the user can always find the file a program came from."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = ProgramProblem(path, None, "<toml>", str(exc), toml_error_line(exc))
        raise ProgramError([problem]) from exc
    try:
        program = Program.model_validate(data)
    except ValidationError as exc:
        raise ProgramError(_problems(exc, text, path)) from exc
    if path is not None and program.name != path.stem:
        raise ProgramError(
            [
                ProgramProblem(
                    path,
                    None,
                    "name",
                    f"the name {program.name!r} must match the file name {path.stem!r}",
                    _locate(text, ("name",)),
                )
            ]
        )
    return program


def load_program(path: Path) -> Program:
    """Load one program file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ProgramError([ProgramProblem(path, None, "<file>", reason)]) from exc
    return load_program_text(text, path)


@dataclass(frozen=True)
class FoundProgram:
    """A program and where it came from."""

    program: Program
    path: Path
    shipped: bool


@dataclass(frozen=True)
class ProgramCatalog:
    """The valid programs found (by name, sorted) and the problems of every invalid
    file, which was skipped."""

    programs: list[FoundProgram]
    problems: list[ProgramProblem]


def scan_programs(user_dir: Path | None = None) -> ProgramCatalog:
    """Every valid program by name (sorted), the user's overriding shipped ones of the
    same name; an invalid file is skipped and its problems listed, so one bad file
    does not take the others (shipped ones included) with it."""
    found: dict[str, FoundProgram] = {}
    problems: list[ProgramProblem] = []
    dirs: list[tuple[Path, bool]] = [(shipped_dir(), True)]
    if user_dir is not None:
        dirs.append((user_dir, False))
    for directory, shipped in dirs:
        loaded, failed = load_toml_dir(directory, load_program, ProgramError)
        for path, program in loaded:
            found[program.name] = FoundProgram(program, path, shipped)
        problems.extend(p for exc in failed for p in exc.problems)
    return ProgramCatalog([found[name] for name in sorted(found)], problems)


def _warn_skipped(problems: list[ProgramProblem]) -> None:
    for problem in problems:
        _LOG.warning("program file skipped: %s", problem)


def list_programs(user_dir: Path | None = None) -> list[FoundProgram]:
    """Every valid program by name (sorted), the user's overriding shipped ones of the
    same name. Invalid files are skipped with a warning naming file, line and field."""
    catalog = scan_programs(user_dir)
    _warn_skipped(catalog.problems)
    return catalog.programs


def find_programs(user_dir: Path | None = None) -> dict[str, Program]:
    """Every valid program by name; a user program wins over a shipped one."""
    return {f.program.name: f.program for f in list_programs(user_dir)}


def get_program(name_or_path: str, user_dir: Path | None = None) -> Program:
    """The program with this name, or the file at this path (ends in ``.toml`` or
    contains a path separator); a usage error lists the known names. Asking by name
    for a program whose file is invalid raises that file's problems."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path or "/" in name_or_path:
        return load_program(Path(name_or_path))
    catalog = scan_programs(user_dir)
    programs = {f.program.name: f.program for f in catalog.programs}
    if name_or_path in programs:
        return programs[name_or_path]
    own = [p for p in catalog.problems if p.file is not None and p.file.stem == name_or_path]
    if own:
        raise ProgramError(own)
    _warn_skipped(catalog.problems)
    known = ", ".join(sorted(programs)) or "none"
    raise UsageError(f"no program {name_or_path!r}", advice=f"known programs: {known}")
