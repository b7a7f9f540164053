"""The dialogs: pick a program, pick a massager, the journal.

Each is a :class:`ModalScreen`. The app's stop binding is a priority binding, so
``s`` and Escape stop everything from inside any of them (and close them); each
dialog repeats it in its own bindings only so its footer shows it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from footctl.control.api import DeviceView, ErrorReply, ScanRequest
from footctl.control.port import Controller
from footctl.errors import FootctlError
from footctl.tui import render
from footctl.tui.catalog import ProgramInfo

# The journal view shows this much history (the CLI's `history` default too).
JOURNAL_DAYS = 14.0
# The plot fills the dialog at 80x24: width and height in cells.
PLOT_SIZE = (74, 14)

_STOP = Binding("s", "app.stop_all", "stop")
# Layout of the dialogs. It goes in the app's CSS: a widget's own DEFAULT_CSS
# (OptionList's height) would beat a screen's DEFAULT_CSS whatever the specificity.
DIALOG_CSS = """
ProgramPicker, DevicePicker { align: center middle; }
ProgramPicker > Vertical, DevicePicker > Vertical {
    width: 76; max-width: 100%; height: auto; max-height: 100%;
    border: round $accent; background: $surface; padding: 0 1;
}
ProgramPicker OptionList, DevicePicker OptionList { height: auto; max-height: 14; }
DevicePicker #scan { height: auto; max-height: 8; }
.hint { color: $text-muted; }
JournalScreen > Vertical {
    width: 100%; height: 1fr; border: round $accent; background: $surface;
    padding: 0 1;
}
JournalScreen DataTable { height: 1fr; }
JournalScreen #plot { height: 1fr; display: none; }
JournalScreen.-plot #plot { display: block; }
JournalScreen.-plot DataTable { display: none; }
JournalScreen #rated { height: 1; }
"""


class ProgramPicker(ModalScreen[str | None]):
    """The programs that can be started; Enter starts the highlighted one."""

    BINDINGS = [_STOP, Binding("p,q", "close", "close")]

    def __init__(self, programs: Sequence[ProgramInfo], device_name: str) -> None:
        super().__init__()
        self.programs = list(programs)
        self.device_name = device_name

    def compose(self) -> ComposeResult:
        """A list of programs with their length and description."""
        with Vertical() as box:
            box.border_title = f"start a program on {render.esc(self.device_name)}"
            if not self.programs:
                yield Static("no programs found", classes="hint")
            yield OptionList(
                *[
                    Option(
                        f"{render.esc(p.name):<12} {render.duration(p.duration_s):>6}  "
                        f"{p.steps} steps  {render.esc(p.description)}",
                        id=p.name,
                    )
                    for p in self.programs
                ],
                id="program-list",
            )
            yield Static("Enter: start it (the caps apply as to any source)", classes="hint")
        yield Footer(compact=True)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Start the chosen program."""
        self.dismiss(event.option.id)

    def action_close(self) -> None:
        """Back without starting anything."""
        self.dismiss(None)


# How long `r` in the devices dialog listens for advertisements: a massager
# advertises every 20 ms to about 1 s, so this hears those in range a few times over.
SCAN_S = 3.0


@dataclass(frozen=True)
class Scanned:
    """A massager seen on the radio: which profile it matches, or why none does, and
    whether the owner that scanned holds it."""

    address: str
    name: str | None
    rssi: int
    profile: str | None
    reason: str
    held: bool = False


Scanner = Callable[[], Awaitable[list[Scanned]]]


def scan_via(controller: Controller, seconds: float = SCAN_S) -> Scanner:
    """A scan through the control API (:class:`ScanRequest`): the owner listens on
    its radios, in this process or over the daemon's socket alike."""

    async def scan() -> list[Scanned]:
        reply = await controller.request(ScanRequest(source="tui", seconds=seconds))
        if isinstance(reply, ErrorReply):
            raise FootctlError(reply.message, advice=reply.advice)
        return [Scanned(s.address, s.name, s.rssi, s.profile, s.reason, s.held)
                for s in reply.seen]

    return scan


class DevicePicker(ModalScreen[str | None]):
    """The massagers the owner holds, with link and RSSI; Enter makes one the target
    of the keys. ``r`` asks the owner to scan its radios (:func:`scan_via`) and lists
    what else is in range."""

    BINDINGS = [_STOP, Binding("r", "scan", "scan"), Binding("d,q", "close", "close")]

    def __init__(
        self, views: Sequence[DeviceView], selected: str | None, scanner: Scanner | None = None
    ) -> None:
        super().__init__()
        self.views = list(views)
        self.selected = selected
        self.scanner = scanner

    def compose(self) -> ComposeResult:
        """One line per massager."""
        with Vertical() as box:
            box.border_title = "massagers"
            options = []
            for v in self.views:
                rssi = "-" if v.rssi is None else f"{v.rssi} dBm"
                power = "on" if v.reported.power else "off"
                text = (
                    f"{render.esc((v.name or v.device_id)[:12]):<12} "
                    f"{render.esc(v.profile[:12]):<12} {v.address[:17]:<17} {v.link:<10} "
                    f"{rssi:>7} {power}"
                )
                options.append(Option(text, id=v.device_id))
            if not options:
                yield Static(
                    "no massagers: start `footctl daemon` or pass --simulate", classes="hint"
                )
            yield OptionList(*options, id="device-list")
            yield Static("Enter: the keys act on this massager", classes="hint")
            yield Static(id="scan", classes="hint")
        yield Footer(compact=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Scan only when given a scanner (the owner's, through the control API)."""
        del parameters
        return self.scanner is not None if action == "scan" else True

    def action_scan(self) -> None:
        """Scan the radio; list what is seen beside what is held."""
        if self.scanner is not None:
            self.query_one("#scan", Static).update("scanning...")
            self.run_worker(self._scan(self.scanner), exclusive=True, name="footctl.tui.scan")

    async def _scan(self, scanner: Scanner) -> None:
        line = self.query_one("#scan", Static)
        try:
            seen = await scanner()
        except FootctlError as exc:
            line.update(render.esc(f"scan failed: {exc}"))
            return
        held = {v.address.upper() for v in self.views}
        others = [s for s in seen if not s.held and s.address.upper() not in held]
        rows = [
            f"in range: {s.address:<17} {s.rssi:>4} dBm {render.esc((s.name or '-')[:12]):<12} "
            + (render.esc(s.profile) if s.profile else render.esc(f"no profile ({s.reason})"))
            for s in others
        ]
        if rows:
            rows.append("not held here: add one to [[devices]] in the config file")
        line.update("\n".join(rows) or f"scan: nothing in range besides the {len(held)} held")

    def on_mount(self) -> None:
        """Highlight the massager the keys act on now."""
        ids = [v.device_id for v in self.views]
        if self.selected in ids:
            self.query_one(OptionList).highlighted = ids.index(self.selected)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Pick it."""
        self.dismiss(event.option.id)

    def action_close(self) -> None:
        """Back, keeping the current choice."""
        self.dismiss(None)


class JournalScreen(ModalScreen[None]):
    """Past sessions (table), minutes per night and ratings (plot), and rating last
    night with the keys 1-5."""

    BINDINGS = [
        _STOP,
        Binding("g", "toggle_plot", "table/plot"),
        Binding("1", "rate(1)", "rate", key_display="1-5"),
        *[Binding(str(n), f"rate({n})", show=False) for n in range(2, 6)],
        Binding("j,q", "close", "close"),
    ]

    def __init__(self, journal_path: Path) -> None:
        super().__init__()
        self.journal_path = journal_path

    def compose(self) -> ComposeResult:
        """Table and plot (one at a time), and a line for the rating."""
        with Vertical() as box:
            box.border_title = f"journal: last {JOURNAL_DAYS:g} days"
            yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
            yield Static(id="plot")
            yield Static("rate last night's sleep: 1 (bad) to 5 (great)", id="rated")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Fill the table and the plot."""
        self.reload()

    def reload(self) -> None:
        """Read the journal again."""
        from footctl.history import plot_history  # noqa: PLC0415 - plotext is slow to import
        from footctl.journal import Journal  # noqa: PLC0415

        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns("started", "min", "device", "source", "program", "ended", "rating")
        with Journal(self.journal_path) as journal:
            records = journal.history(JOURNAL_DAYS)
        for r in reversed(records):  # newest first
            table.add_row(
                r.started_at.astimezone().strftime("%m-%d %H:%M"),
                "-" if r.duration_s is None or not r.ran else f"{r.duration_s / 60:.1f}",
                r.device,
                r.source,
                r.program or "-",
                r.end_reason or "running",
                "-" if r.rating is None else str(r.rating),
            )
        width, height = PLOT_SIZE
        plot = plot_history(records, width=width, height=height)
        self.query_one("#plot", Static).update(render.esc(plot))

    def action_toggle_plot(self) -> None:
        """Switch between the table and the plot."""
        self.toggle_class("-plot")

    def action_rate(self, rating: int) -> None:
        """Rate the latest session of the last 24 h."""
        from footctl.errors import FootctlError  # noqa: PLC0415
        from footctl.journal import Journal  # noqa: PLC0415

        line = self.query_one("#rated", Static)
        try:
            with Journal(self.journal_path) as journal:
                record = journal.rate_last(rating)
        except FootctlError as exc:
            line.update(render.esc(f"not rated: {exc}"))
            return
        line.update(
            f"rated session {record.id} ({render.esc(record.program or 'manual')}): {rating}/5"
        )
        self.reload()

    def action_close(self) -> None:
        """Back to the massagers."""
        self.dismiss(None)
