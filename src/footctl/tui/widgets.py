"""The panel that shows one massager."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from footctl.control.api import DeviceView
from footctl.tui import render
from footctl.tui.catalog import DeviceCaps


class DevicePanel(Vertical):
    """Link, power, intensity gauge, heat with a temperature chart, program progress,
    safety timers and the last refusal or fault of one massager."""

    DEFAULT_CSS = """
    DevicePanel {
        height: auto;
        border: round $primary;
        border-title-align: left;
        padding: 0 1;
    }
    DevicePanel.-selected { border: heavy $accent; }
    DevicePanel.-lost { border: round $error; }
    DevicePanel.-selected.-lost { border: heavy $error; }
    DevicePanel Static { height: 1; }
    DevicePanel #message { height: auto; max-height: 3; }  /* a refusal's whole reason */
    DevicePanel Horizontal { height: 1; }
    DevicePanel #heat { width: auto; min-width: 36; }
    DevicePanel #temps { width: 1fr; margin-left: 1; }
    DevicePanel #temps > .sparkline--max-color { color: $warning; }
    DevicePanel #temps > .sparkline--min-color { color: $warning 40%; }
    """

    def __init__(self, device_id: str) -> None:
        super().__init__(id=_panel_id(device_id))
        self.device_id = device_id

    def compose(self) -> ComposeResult:
        """One line per aspect; the heat line carries the temperature chart."""
        yield Static(id="link")
        yield Static(id="power")
        yield Static(id="intensity")
        with Horizontal():
            yield Static(id="heat")
            yield Sparkline([], id="temps")
        yield Static(id="program")
        yield Static(id="progress")
        yield Static(id="timers")
        yield Static(id="message")

    def show(
        self,
        view: DeviceView,
        caps: DeviceCaps | None,
        *,
        temperatures: Sequence[float],
        program_total_s: float | None,
        local_refusal: str | None,
        selected: bool,
    ) -> None:
        """Render ``view`` (and what the TUI keeps beside it) into the panel."""
        self.border_title = render.title(view, selected=selected)
        self.set_class(selected, "-selected")
        self.set_class(view.link == "lost", "-lost")
        self.query_one("#link", Static).update(render.link_line(view))
        self.query_one("#power", Static).update(render.power_line(view))
        self.query_one("#intensity", Static).update(render.intensity_line(view, caps))
        self.query_one("#heat", Static).update(render.heat_text(view, caps))
        chart = self.query_one("#temps", Sparkline)
        # One point is no trend (and would fill the chart): show it from two on.
        chart.data = list(temperatures)
        chart.display = len(temperatures) > 1
        self.query_one("#program", Static).update(render.program_text(view))
        progress = self.query_one("#progress", Static)
        progress.update(render.program_bar(view, program_total_s))
        progress.display = view.program is not None
        self.query_one("#timers", Static).update(render.timers_line(view))
        self.query_one("#message", Static).update(render.message_line(view, local_refusal))


def _panel_id(device_id: str) -> str:
    """A CSS id from a device id (addresses hold colons)."""
    return "dev-" + "".join(c if c.isalnum() else "-" for c in device_id)
