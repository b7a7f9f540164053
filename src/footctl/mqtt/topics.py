"""The topic layout (Zigbee2MQTT's conventions, base topic configurable):

- ``<base>/<id>/state``: retained JSON state of one massager, published on change
- ``<base>/<id>/availability``: retained ``online`` / ``offline``
- ``<base>/<id>/set``: JSON commands; ``<base>/<id>/set/<field>``: one raw value
- ``<base>/<id>/error``: the answer to a refused or malformed command
- ``<base>/bridge/<host>/state``: retained ``online``, last will ``offline`` (one per host)
- ``<prefix>/device/footctl_<id>/config``: Home Assistant device discovery

``<id>`` is the massager's device id (its address) in lower case with everything but
letters, digits, ``_`` and ``-`` removed: ``F0:F0:00:00:00:01`` is ``f0f000000001``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNSAFE = re.compile(r"[^a-z0-9_-]")
BRIDGE = "bridge"
AVAILABLE = "online"
NOT_AVAILABLE = "offline"


def topic_id(device_id: str) -> str:
    """A device id as one topic level (and a Home Assistant object id)."""
    tid = _UNSAFE.sub("", device_id.lower()) or "device"
    return f"{tid}_" if tid == BRIDGE else tid


@dataclass(frozen=True)
class Topics:
    """Every topic of one bridge."""

    base: str = "footctl"
    host_id: str = "footctl"
    discovery_prefix: str = "homeassistant"

    @property
    def bridge_state(self) -> str:
        """This host's bridge: ``online``, or ``offline`` (last will)."""
        return f"{self.base}/{BRIDGE}/{self.host_id}/state"

    @property
    def sync(self) -> str:
        """A marker this bridge sends itself to know the broker's retained configs
        have all arrived (they come before anything published after subscribing)."""
        return f"{self.base}/{BRIDGE}/{self.host_id}/sync"

    def state(self, tid: str) -> str:
        """Retained state of one massager."""
        return f"{self.base}/{tid}/state"

    def availability(self, tid: str) -> str:
        """Retained availability of one massager."""
        return f"{self.base}/{tid}/availability"

    def set(self, tid: str, field: str | None = None) -> str:
        """The command topic (JSON), or one field's (raw value)."""
        return f"{self.base}/{tid}/set" + (f"/{field}" if field else "")

    def error(self, tid: str) -> str:
        """Answers to refused or malformed commands."""
        return f"{self.base}/{tid}/error"

    @property
    def set_filters(self) -> tuple[str, str]:
        """The subscriptions for commands."""
        return (f"{self.base}/+/set", f"{self.base}/+/set/+")

    def parse_set(self, topic: str) -> tuple[str, str | None] | None:
        """``(tid, field)`` of a command topic (field None for JSON), else None."""
        prefix = f"{self.base}/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix):].split("/")
        if len(parts) == 2 and parts[1] == "set":
            return parts[0], None
        if len(parts) == 3 and parts[1] == "set":
            return parts[0], parts[2]
        return None

    # --- Home Assistant ----------------------------------------------------------------

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth and last will."""
        return f"{self.discovery_prefix}/status"

    @property
    def discovery_filter(self) -> str:
        """Every device-based discovery config on the broker."""
        return f"{self.discovery_prefix}/device/+/config"

    def discovery(self, tid: str) -> str:
        """One massager's device-based discovery config."""
        return f"{self.discovery_prefix}/device/{self.object_id(tid)}/config"

    def object_id(self, tid: str) -> str:
        """The discovery object id (unique on the broker: device ids are addresses)."""
        return f"footctl_{tid}"

    def parse_discovery(self, topic: str) -> str | None:
        """The object id of a discovery config topic, else None."""
        prefix = f"{self.discovery_prefix}/device/"
        if topic.startswith(prefix) and topic.endswith("/config"):
            middle = topic[len(prefix):-len("/config")]
            if middle and "/" not in middle:
                return middle
        return None
