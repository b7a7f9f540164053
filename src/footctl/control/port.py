"""What a command source needs from an owner, in-process or over the socket.

The owner implements :class:`Controller` directly; a client of a daemon (the TUI when
a daemon runs) implements it over the control socket. The MQTT bridge, the TUI and
the scheduler are written against this protocol only: they never import the session
or the governor.
"""

from __future__ import annotations

from typing import Protocol

from footctl.control.api import DeviceView, ErrorReply, Reply, Request


class Stream(Protocol):
    """A coalesced stream of state changes (see :class:`footctl.control.hub.Subscription`)."""

    async def get(self) -> list[DeviceView]:
        """Wait for changes; the latest view of each massager that changed. ``[]``
        once closed."""
        ...

    def close(self) -> None:
        """Unsubscribe."""
        ...


class Controller(Protocol):
    """One owner's control API."""

    async def request(self, request: Request) -> Reply | ErrorReply:
        """Carry out one validated request; refusals come back as :class:`ErrorReply`."""
        ...

    def subscribe(self, device_id: str | None = None) -> Stream:
        """Changes of one massager (or all), each massager's current view first."""
        ...

    def snapshot(self) -> list[DeviceView]:
        """Every massager's latest view."""
        ...
