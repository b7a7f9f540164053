"""The device layer: what turns a wanted state into bytes on a link and reports back.

``session`` (connect, reconnect, keepalive, reported state), ``planner`` (wanted state ->
commands), ``codec`` (commands <-> bytes, from the profile's framing), ``profile`` (the
data that describes a device) and ``transport`` (bleak, or the virtual link). Only the
control plane (``footctl.control.held``) builds a session; command sources never import
this package (``tests/test_layout.py``).
"""
