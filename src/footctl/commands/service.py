"""``footctl daemon`` and ``footctl service install`` (the systemd user unit)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from footctl.config import Config, state_dir
from footctl.control.owner import DeviceSpec
from footctl.control.radios import open_radios
from footctl.control.sockets import daemon_socket_path
from footctl.daemon import Daemon
from footctl.device.profile.loader import get_profile
from footctl.errors import ExitCode, UsageError
from footctl.safety.watchdog import LoopWatchdog
from footctl.sdnotify import notify, watchdog_period

if TYPE_CHECKING:
    from footctl.cli import Output

# Without a systemd watchdog the main loop still wakes this often (to notice nothing).
IDLE_WAKE_S = 60.0

# Loggers whose INFO lines the daemon always writes (without -v): why the massager came
# on, went off, or stayed off at a scheduled time belongs in journald.
SCHEDULE_LOGGERS = ("footctl.daemon", "footctl.scheduler")


def log_schedule_events() -> None:
    """Let the scheduled starts, ends and holds through at INFO (more with -v)."""
    for name in SCHEDULE_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)

# What `service install` writes and `contrib/footctl.service` holds. systemd restarts
# the daemon if it fails or stops pinging (WatchdogSec); 130/143 are our exit codes
# after SIGINT/SIGTERM, which have already turned everything off: a clean stop.
UNIT_TEMPLATE = """\
[Unit]
Description=footctl: bedtime programs for heated foot massagers

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start} daemon
Restart=on-failure
RestartSec=5
WatchdogSec=30
TimeoutStopSec=20
SuccessExitStatus=130 143

[Install]
WantedBy=default.target
"""

# The shipped unit assumes a `pip install --user` (or pipx) footctl in ~/.local/bin.
DEFAULT_EXEC = "%h/.local/bin/footctl"


def unit_text(exec_start: str = DEFAULT_EXEC) -> str:
    """The systemd user unit that runs ``exec_start daemon``."""
    return UNIT_TEMPLATE.format(exec_start=exec_start)


def _footctl_executable() -> str:
    """The footctl this is: the script beside our Python (a venv), else on PATH, else
    ``python -m footctl.cli``."""
    beside = Path(sys.executable).parent / "footctl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("footctl")
    if found:
        return found
    return f"{sys.executable} -m footctl.cli"


def unit_path() -> Path:
    """Where systemd looks for the user's units."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / "footctl.service"


def install(args: argparse.Namespace, out: Output) -> int:
    """Write (or print) the systemd user unit for this footctl."""
    text = unit_text(_footctl_executable())
    if args.print:
        out.result({"ok": True, "written": False, "unit": text}, text.rstrip())
        return ExitCode.OK
    path = unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    hint = "systemctl --user daemon-reload && systemctl --user enable --now footctl"
    out.result(
        {"ok": True, "written": True, "path": str(path), "unit": text, "next": hint},
        f"wrote {path}\nnow run: {hint}",
    )
    return ExitCode.OK


async def daemon(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Run the daemon until SIGINT/SIGTERM (everything off first)."""
    from footctl.client import call, live_owners  # noqa: PLC0415

    log_schedule_events()
    running = [o for o in live_owners() if o.daemon]
    if running:
        pid = call(running[0].path, {"kind": "ping"}).get("owner_pid")
        raise UsageError(f"a footctl daemon already runs (pid {pid})",
                         advice=f"socket {running[0].path}")
    async with contextlib.AsyncExitStack() as stack:
        devices = await open_radios(
            stack, config,
            simulate=[args.simulate] if args.simulate else [],
            link=args.link, link_profile=args.profile if args.link else None,
            link_device=args.device if args.link else None,
            extra=[DeviceSpec(get_profile(args.profile, list(config.profile_dirs)), args.device)]
            if args.profile and not args.link and not args.simulate and not config.devices
            else [],
        )
        if not devices:
            raise UsageError(
                "the daemon has no massager to hold",
                advice="add [[devices]] to the config file, or pass --simulate PROFILE_ID",
            )
        d = await Daemon.open_in(
            stack, config, devices, socket_path=daemon_socket_path(),
            state_path=state_dir() / "scheduler.json", scan_timeout=args.scan_timeout,
        )
        dog = LoopWatchdog(config.caps.heartbeat_seconds)
        try:
            await d.start()
            # The MQTT bridge, when a broker is configured: one more command source.
            from footctl.mqtt.run import bridge_running  # noqa: PLC0415 - aiomqtt if used

            bridge = await stack.enter_async_context(
                bridge_running(d.owner, config.mqtt, getattr(args, "mqtt", None))
            )
            dog.start()
            notify("READY=1")
            names = ", ".join(h.name for h in d.devices)
            mqtt = (f"MQTT {bridge.settings.display()} as {bridge.settings.host_id}"
                    if bridge is not None else "no MQTT")
            print(f"footctl daemon: holding {names}; {len(config.schedules)} schedule(s); "
                  f"{mqtt}; socket {d.server.path}", file=sys.stderr, flush=True)
            period = watchdog_period()
            while True:
                await asyncio.sleep(period or IDLE_WAKE_S)
                # A dead scheduler or watch task stops the pings: systemd restarts us.
                if period and d.healthy:
                    notify("WATCHDOG=1")
        finally:
            notify("STOPPING=1")
            dog.stop()
            await d.close()
