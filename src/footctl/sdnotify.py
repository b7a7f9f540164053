"""systemd's service notification protocol (sd_notify), written out here.

The protocol is one datagram of ``KEY=VALUE`` lines to the Unix socket named by
``$NOTIFY_SOCKET`` (``@`` at the start means the abstract namespace). It is small
enough that a dependency would be larger than the code: PyPI's ``sdnotify`` has not
been released since 2017. Without ``$NOTIFY_SOCKET`` (not run by systemd) every call
does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

_LOG = logging.getLogger(__name__)


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``READY=1``) to systemd; False if there is no one to tell."""
    address = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        _LOG.warning("sd_notify %r to %s failed: %s", message, address, exc)
        return False
    return True


def watchdog_period(env: Mapping[str, str] | None = None) -> float | None:
    """How often to send ``WATCHDOG=1`` (half of ``$WATCHDOG_USEC``, as sd_notify(3)
    advises), or None when systemd is not watching this process."""
    env = env if env is not None else os.environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec:
        return None
    try:
        if pid and int(pid) != os.getpid():
            return None
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None
