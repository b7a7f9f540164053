"""``footctl tui``: a Textual terminal UI, one more command source on top of the control
API.

It renders the :class:`~footctl.control.api.DeviceView` stream of a
:class:`~footctl.control.port.Controller` (an in-process owner, or a client of a
running daemon) and turns keys into control-API requests with ``source="tui"``. It
never imports the session or the governor; Textual itself is imported only when the
command runs.
"""
