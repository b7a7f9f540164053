"""The virtual radio: simulated massagers on Bumble, reached through the real bleak API."""

from footctl.virtual.bleak_backend import make_backend
from footctl.virtual.link import VirtualController, VirtualWorld, serve_controller_tcp
from footctl.virtual.remote import (
    VirtualRadio,
    open_remote_central,
    radio_for_link,
    radio_for_world,
)

__all__ = [
    "VirtualController",
    "VirtualRadio",
    "VirtualWorld",
    "make_backend",
    "open_remote_central",
    "radio_for_link",
    "radio_for_world",
    "serve_controller_tcp",
]
