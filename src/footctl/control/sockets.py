"""Where owners' control sockets live, and who may use them. Standard library only:
the thin CLI client imports this, and ``footctl status`` must start fast.

Every owner serves one socket in the user's runtime dir: the daemon ``daemon.sock``,
a short-lived owner (a one-shot command holding a massager) ``owner-<pid>.sock``.
``footctl stop`` talks to all of them. Three guards, each enough on its own against
another local user: the 0700 runtime dir, the 0600 socket, and the peer's uid
(``SO_PEERCRED``) checked on every connection.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs the client milliseconds; mypy reads this as True
if TYPE_CHECKING:
    import socket

RUNTIME_DIR_ENV = "FOOTCTL_RUNTIME_DIR"
DAEMON_SOCKET = "daemon.sock"
OWNER_PREFIX = "owner-"

# struct ucred { pid_t pid; uid_t uid; gid_t gid; } as Linux returns it for SO_PEERCRED.
_UCRED = "3i"


# Paths are plain strings here: pathlib alone costs the client a few milliseconds.


def runtime_dir() -> str:
    """Where sockets go (per-user, not world-readable): ``$FOOTCTL_RUNTIME_DIR``, else
    the platform's user runtime dir (``$XDG_RUNTIME_DIR/footctl`` on Linux)."""
    env = os.environ.get(RUNTIME_DIR_ENV)
    if env:
        return env
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:  # what platformdirs says on Linux, without its import cost
        return os.path.join(xdg, "footctl")
    import platformdirs  # noqa: PLC0415 - small, and only when no env var says

    return str(platformdirs.user_runtime_dir("footctl"))


def daemon_socket_path(base: str | None = None) -> str:
    """The daemon's control socket."""
    return os.path.join(base or runtime_dir(), DAEMON_SOCKET)


def owner_socket_path(pid: int | None = None, base: str | None = None) -> str:
    """A short-lived owner's control socket."""
    return os.path.join(base or runtime_dir(), f"{OWNER_PREFIX}{pid or os.getpid()}.sock")


def owner_sockets(base: str | None = None) -> list[str]:
    """Every owner socket present (the daemon's first); some may be stale."""
    directory = base or runtime_dir()
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = sorted(
        os.path.join(directory, n)
        for n in names
        if n.startswith(OWNER_PREFIX) and n.endswith(".sock")
    )
    daemon = os.path.join(directory, DAEMON_SOCKET)
    return ([daemon] if DAEMON_SOCKET in names else []) + found


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket, or None where the
    platform cannot tell (no ``SO_PEERCRED``)."""
    import socket  # noqa: PLC0415 - the owner's side only
    import struct  # noqa: PLC0415

    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    data = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize(_UCRED))
    _pid, uid, _gid = struct.unpack(_UCRED, data)
    return int(uid)


def peer_allowed(uid: int | None, own_uid: int) -> bool:
    """Only our own user may drive our massagers. An unknown peer (no ``SO_PEERCRED``)
    is let through: the 0600 socket in a 0700 directory already keeps others out."""
    return uid is None or uid == own_uid
