"""``footctl doctor``: what footctl needs, checked one by one, each with a fix.

Python, bleak, the Bluetooth stack (the D-Bus system bus and BlueZ on Linux) and an
adapter, permissions on footctl's directories, the daemon, and the MQTT broker.
"""

from __future__ import annotations

import argparse
import grp
import os
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from footctl.config import config_path, data_dir, runtime_dir, state_dir
from footctl.errors import ExitCode, FootctlError

if TYPE_CHECKING:
    from footctl.cli import Output

# The oldest Python footctl supports (pyproject's requires-python).
MIN_PYTHON = (3, 11)
# A short scan is enough to know whether the stack answers; a full one is `scan`.
PROBE_SCAN_S = 1.0
# Where Linux lists Bluetooth adapters.
SYS_BLUETOOTH = Path("/sys/class/bluetooth")

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One thing checked: ``ok``, ``warn`` (works, but see the advice) or ``fail``."""

    name: str
    status: Status
    detail: str
    advice: str = ""


def _python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", "fail", f"{version} ({sys.executable})",
                     f"footctl needs Python >= {'.'.join(map(str, MIN_PYTHON))}")
    return Check("python", "ok", f"{version} ({sys.executable})")


def _bleak() -> Check:
    try:
        return Check("bleak", "ok", f"bleak {metadata.version('bleak')}")
    except metadata.PackageNotFoundError:
        return Check("bleak", "fail", "not installed", "pip install footctl (it brings bleak)")


def _adapter() -> Check:
    if not sys.platform.startswith("linux"):
        return Check("adapter", "ok", f"not checked on {sys.platform}")
    adapters = sorted(p.name for p in SYS_BLUETOOTH.glob("hci*")) if SYS_BLUETOOTH.is_dir() else []
    if not adapters:
        return Check("adapter", "fail", f"no Bluetooth adapter in {SYS_BLUETOOTH}",
                     "plug in a Bluetooth LE adapter (or use --simulate PROFILE_ID)")
    return Check("adapter", "ok", ", ".join(adapters))


def _missing_system_bus() -> str | None:
    """The D-Bus system bus socket BlueZ is reached through, if it is not there."""
    from footctl.device.transport.ble import dbus_system_address  # noqa: PLC0415

    if not sys.platform.startswith("linux"):
        return None
    address = dbus_system_address()
    socket = address.split("path=", 1)[1].split(",")[0] if "path=" in address else None
    return socket if socket is not None and not os.path.exists(socket) else None


async def _stack() -> Check:
    from footctl.device.transport.ble import INSTALL_BLUEZ, USE_VIRTUAL, Radio, scan  # noqa: PLC0415

    missing = _missing_system_bus()
    if missing is not None:
        return Check("bluetooth stack", "fail", f"no D-Bus system bus at {missing}",
                     f"{INSTALL_BLUEZ}, {USE_VIRTUAL}")
    try:
        seen = await scan(Radio(), {}, PROBE_SCAN_S)
    except FootctlError as exc:
        return Check("bluetooth stack", "fail", exc.message, exc.advice or "")
    return Check("bluetooth stack", "ok", f"scanning works ({len(seen)} device(s) in "
                 f"{PROBE_SCAN_S:g} s)")


def _permissions() -> list[Check]:
    checks = []
    for what, path in (("state dir", state_dir()), ("data dir", data_dir()),
                       ("runtime dir", runtime_dir())):
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if os.access(existing, os.W_OK):
            checks.append(Check(f"{what} writable", "ok", str(path)))
        else:
            checks.append(Check(f"{what} writable", "fail", f"{path}: not writable",
                                f"fix the permissions of {existing}"))
    if sys.platform.startswith("linux") and os.geteuid() != 0:
        groups = {grp.getgrgid(g).gr_name for g in os.getgroups()}
        if "bluetooth" not in groups:
            checks.append(Check("bluetooth group", "warn", "not in group 'bluetooth'",
                                "some systems only let that group use BlueZ: "
                                "sudo usermod -aG bluetooth $USER, then log in again"))
    return checks


async def _daemon() -> Check:
    import asyncio  # noqa: PLC0415

    from footctl.client import PING_TIMEOUT_S, ClientError, call  # noqa: PLC0415
    from footctl.control.sockets import daemon_socket_path  # noqa: PLC0415

    path = daemon_socket_path()
    try:
        reply = await asyncio.to_thread(call, path, {"kind": "ping"}, PING_TIMEOUT_S)
    except (OSError, ValueError, ClientError):
        reply = {}
    if not reply.get("ok") or not reply.get("daemon"):
        return Check("daemon", "warn", f"not running (no answer on {path})",
                     "schedules only run with it: footctl service install; "
                     "systemctl --user enable --now footctl")
    held = len(reply.get("devices", []))
    return Check("daemon", "ok", f"running (pid {reply.get('owner_pid')}, socket {path}, "
                 f"{held} massager(s))")


def _config() -> Check:
    from footctl.config import load_config  # noqa: PLC0415

    path = config_path(None)
    try:
        config = load_config(path)
    except FootctlError as exc:
        return Check("config", "fail", exc.message, "footctl config check lists every problem")
    if config.source is None:
        return Check("config", "ok", f"{path} not there: defaults")
    return Check("config", "ok", f"{path}: {len(config.devices)} device(s), "
                 f"{len(config.schedules)} schedule(s)")


async def _broker() -> Check:
    """The MQTT broker of the config file (or $FOOTCTL_MQTT_URL), connected to once."""
    from footctl.config import load_config  # noqa: PLC0415
    from footctl.mqtt.settings import resolve  # noqa: PLC0415

    try:
        section = load_config(config_path(None)).mqtt
    except FootctlError:
        section = None  # the config check reports it
    try:
        settings = resolve(section)
    except FootctlError as exc:
        return Check("mqtt broker", "fail", exc.message, exc.advice or "")
    if settings is None:
        return Check("mqtt broker", "ok", "none configured: the MQTT bridge is off")
    from footctl.mqtt.check import check_broker  # noqa: PLC0415

    result = await check_broker(settings)
    if result.ok:
        return Check("mqtt broker", "ok", result.message)
    return Check("mqtt broker", "fail", result.message, result.advice or "")


async def run_checks() -> list[Check]:
    """Every check, in order."""
    return [_python(), _bleak(), _adapter(), await _stack(), *_permissions(), _config(),
              await _daemon(), await _broker()]


async def main(args: argparse.Namespace, out: Output) -> int:
    """Run the checks; exit 1 if any failed."""
    return _print(await run_checks(), out)


def _print(checks: list[Check], out: Output) -> int:
    failed = [c for c in checks if c.status == "fail"]
    width = max(len(c.name) for c in checks)
    lines = [
        f"{c.status:<4}  {c.name:<{width}}  {c.detail}" + (f"\n      -> {c.advice}" if c.advice
                                                           else "")
        for c in checks
    ]
    lines.append(f"{len(failed)} problem(s)" if failed else "all good")
    out.result({"ok": not failed, "checks": [asdict(c) for c in checks]}, "\n".join(lines))
    return ExitCode.OTHER if failed else ExitCode.OK
