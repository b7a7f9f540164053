"""The tree keeps the flow of DESIGN.md: command sources speak only the control API,
and the owner is the only place that builds a governed session.

These read the source with ``ast`` (no imports run), so a new import of the session or
the governor from the TUI, the MQTT bridge or the client fails here at once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "footctl"

# Command sources: they reach a massager only through footctl.control (in-process Owner,
# or the socket), with no exception: even the TUI's scan is a control-API request.
SOURCES = ("tui", "mqtt", "client.py", "cli.py", "cli_authoring.py", "scheduler.py")

# What a source must not import: the device layer and the governor itself.
FORBIDDEN = (
    "footctl.device.session",
    "footctl.device.codec",
    "footctl.device.planner",
    "footctl.device.transport",
    "footctl.virtual",
    "footctl.safety.governor",
    "footctl.safety.decide",
    "footctl.safety.core",
)

# Where a session may be built, and why: the owner's one factory; crash recovery, which
# only switches off what a dead run left on (no governor can be owed anything there);
# and `sniff`, which switches off what its raw frames switched on.
SESSION_BUILDERS = {"control/held.py", "devices.py", "commands/authoring.py"}
GOVERNOR_BUILDERS = {"control/held.py"}


def _files(entry: str) -> list[Path]:
    path = SRC / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _calls(path: Path, name: str) -> int:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == name)
            or (isinstance(node.func, ast.Attribute) and node.func.attr == name)
        )
    )


@pytest.mark.parametrize("entry", SOURCES)
def test_sources_speak_only_the_control_api(entry: str) -> None:
    files = _files(entry)
    assert files, f"{entry} is gone: update SOURCES"
    bad = {
        f"{path.relative_to(SRC)}: {name}"
        for path in files
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not bad, f"command sources importing the device layer or the governor: {bad}"


def test_only_the_owner_builds_governed_sessions() -> None:
    sessions = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if _calls(p, "DeviceSession")}
    governors = {
        str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if _calls(p, "SafetyGovernor")
    }
    assert sessions <= SESSION_BUILDERS, f"sessions built outside the owner: {sessions}"
    assert governors == GOVERNOR_BUILDERS, f"governors built outside the owner: {governors}"


def test_the_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from footctl.device.session import DeviceSession\nDeviceSession(1)\n")
    assert "footctl.device.session.DeviceSession" in _imports(sample)
    assert _calls(sample, "DeviceSession") == 1
