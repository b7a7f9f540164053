"""Session markers for crash recovery.

A marker is written (and fsynced) before heat or massage starts and removed when
the session ends cleanly. A marker left behind by a process that is no longer
alive means that run died with the device possibly still on: the next footctl
start connects to that device as soon as it can and turns it off.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from footctl.config import state_dir


@dataclass(frozen=True)
class Marker:
    """An unfinished session."""

    address: str
    profile_id: str
    pid: int
    source: str
    started_at: float  # wall clock (epoch seconds), for people; caps use the monotonic clock

    @property
    def owner_alive(self) -> bool:
        """True if the process that wrote the marker still runs."""
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class MarkerStore:
    """Markers as small JSON files in ``<state dir>/active/``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or state_dir() / "active"

    def _path(self, address: str) -> Path:
        safe = re.sub(r"[^0-9A-Za-z]", "", address).lower() or "device"
        return self.directory / f"{safe}.json"

    def write(self, address: str, profile_id: str, source: str) -> Marker:
        """Record that a session on ``address`` is starting (durably)."""
        marker = Marker(address, profile_id, os.getpid(), source, time.time())
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(address)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(marker), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return marker

    def clear(self, address: str) -> None:
        """The session on ``address`` ended cleanly."""
        with contextlib.suppress(FileNotFoundError):
            self._path(address).unlink()

    def all(self) -> list[Marker]:
        """Every marker, readable or not (unreadable ones are skipped)."""
        if not self.directory.is_dir():
            return []
        out: list[Marker] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                out.append(Marker(**data))
            except (OSError, ValueError, TypeError):
                continue
        return out

    def orphaned(self) -> list[Marker]:
        """Markers whose writer is gone: the last run died mid-session."""
        return [m for m in self.all() if not m.owner_alive]
