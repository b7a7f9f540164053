"""The Textual app: one panel per massager, keys that become control-API requests.

It reads the owner's coalesced stream (:meth:`Controller.subscribe`), so a slow
terminal (SSH) makes the screen skip intermediate states; it never slows the device
path. Every request carries ``source="tui"``; refusals come back as
:class:`ErrorReply` and are shown at once on the massager's panel.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from footctl.control.api import (
    DeviceView,
    ErrorReply,
    LeaseRequest,
    ReleaseRequest,
    Reply,
    Request,
    RunRequest,
    SetRequest,
    StopRequest,
)
from footctl.control.port import Controller
from footctl.tui import render
from footctl.tui.catalog import Catalog, DeviceCaps
from footctl.tui.dialogs import DIALOG_CSS, DevicePicker, JournalScreen, ProgramPicker, Scanner
from footctl.tui.widgets import DevicePanel

_LOG = logging.getLogger(__name__)

# The lease the TUI holds on a massager it keeps running: if the app dies or hangs
# (a dropped SSH session leaves no one to press stop), the owner's dead-man rule
# switches the massager off within LEASE_S. Renewed every LEASE_RENEW_S, a third of
# it, so one late renewal under load does not end a session.
LEASE_S = 30.0
LEASE_RENEW_S = 10.0
# Temperatures kept per massager for the chart (one per reported change).
TEMPERATURE_POINTS = 60
# How long quit waits for the owner to confirm everything off before leaving anyway
# (the owner's own shutdown turns everything off again on the way out).
QUIT_STOP_TIMEOUT_S = 10.0


class FootctlTui(App[None]):
    """Live state of every massager an owner holds, and the keys to drive one."""

    TITLE = "footctl"
    ENABLE_COMMAND_PALETTE = False  # no text field where `s` would be typed, not obeyed
    CSS = (
        """
    #status { height: 1; padding: 0 1; background: $panel; }
    #panels { height: 1fr; }
    #empty { padding: 1 2; }
    """
        + DIALOG_CSS
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        # Stop works whatever has focus and whatever dialog is open: priority
        # bindings are checked from the app down, before the screen's own.
        Binding("s", "stop_all", "stop", priority=True),
        Binding("escape", "stop_all", "stop", priority=True, show=False),
        # Short labels and one entry for both intensity keys: at 80 columns the
        # footer holds every key, zone included.
        Binding("space", "power", "power", key_display="spc"),
        Binding("plus,equals_sign", "intensity(1)", "level", key_display="+/-"),
        Binding("minus", "intensity(-1)", "less", show=False),
        Binding("h", "heat", "heat"),
        Binding("m", "mode", "mode"),
        Binding("z", "zone", "zone"),
        Binding("p", "program", "run"),
        Binding("d", "devices", "devices"),
        Binding("j", "journal", "journal"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+q", "quit", "quit", show=False, priority=True),
    ]

    def __init__(
        self,
        controller: Controller,
        *,
        owns_devices: bool,
        catalog: Catalog | None = None,
        journal_path: Path | None = None,
        via: str = "",
        scanner: Scanner | None = None,
    ) -> None:
        """``owns_devices``: the owner lives in this process, so quitting stops its
        massagers first; a daemon's are left running (the TUI releases its leases)."""
        super().__init__()
        self.controller = controller
        self.owns_devices = owns_devices
        self.catalog = catalog or Catalog()
        self.journal_path = journal_path
        self.scanner = scanner
        self.via = via or ("this process" if owns_devices else "daemon")
        self.views: dict[str, DeviceView] = {}
        self.selected: str | None = None
        self.temperatures: dict[str, deque[float]] = {}
        self.refusals: dict[str, str | None] = {}
        self.leased: set[str] = set()
        self._program_total: dict[str, tuple[str, float]] = {}
        self._refused_heat: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._status = ""

    # --- layout and the stream ----------------------------------------------------

    def compose(self) -> ComposeResult:
        """A status line, the panels, the keys."""
        yield Static(id="status")
        with VerticalScroll(id="panels"):
            yield Static("waiting for the owner's state...", id="empty")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Follow the stream; renew leases while the app lives."""
        self._show_status()
        self.run_worker(self._follow(), name="footctl.tui.stream", exit_on_error=False)
        self.set_interval(LEASE_RENEW_S, self._renew_leases, name="footctl.tui.lease")

    async def _follow(self) -> None:
        stream = self.controller.subscribe()
        try:
            while True:
                views = await stream.get()
                if not views:
                    why = getattr(stream, "error", None) or "the owner closed it"
                    self.set_status(f"no more state: {why}")
                    return
                for view in views:
                    await self.show_view(view)
        finally:
            stream.close()

    async def show_view(self, view: DeviceView) -> None:
        """Take one view from the stream (tests feed views here directly)."""
        old = self.views.get(view.device_id)
        if old is not None and view.seq and old.seq > view.seq:
            return  # never show an older state after a newer one
        self.views[view.device_id] = view
        if view.temperature is not None:
            temps = self.temperatures.setdefault(view.device_id, deque(maxlen=TEMPERATURE_POINTS))
            temps.append(view.temperature)
        self._track_program(view)
        if old is not None and view.last_refusal != old.last_refusal and view.last_refusal:
            self.refusals[view.device_id] = None  # the owner's newer word replaces ours
        if self.selected is None:
            self.selected = view.device_id
            self.refresh_bindings()
        panel = await self._panel(view.device_id)
        self._render_panel(panel, view)
        self._show_status()

    def _track_program(self, view: DeviceView) -> None:
        """Remember each program's full length (its time left when first seen) for
        the progress bar."""
        p = view.program
        if p is None:
            self._program_total.pop(view.device_id, None)
            return
        name, total = self._program_total.get(view.device_id, (p.program, 0.0))
        if name != p.program:
            total = 0.0
        self._program_total[view.device_id] = (p.program, max(total, p.left_s))

    async def _panel(self, device_id: str) -> DevicePanel:
        for panel in self.query(DevicePanel):
            if panel.device_id == device_id:
                return panel
        for empty in self.query("#empty"):
            await empty.remove()
        panel = DevicePanel(device_id)
        await self.query_one("#panels", VerticalScroll).mount(panel)
        return panel

    def _render_panel(self, panel: DevicePanel, view: DeviceView) -> None:
        total = self._program_total.get(view.device_id)
        panel.show(
            view,
            self.caps(view.device_id),
            temperatures=self.temperatures.get(view.device_id, ()),
            program_total_s=None if total is None else total[1],
            local_refusal=self.refusals.get(view.device_id),
            selected=view.device_id == self.selected,
        )

    def _rerender(self) -> None:
        for panel in self.query(DevicePanel):
            view = self.views.get(panel.device_id)
            if view is not None:
                self._render_panel(panel, view)
        self._show_status()

    def caps(self, device_id: str) -> DeviceCaps | None:
        """The capabilities of a massager's profile (None if unknown)."""
        view = self.views.get(device_id)
        return None if view is None else self.catalog.caps(view.profile)

    def set_status(self, text: str) -> None:
        """Say something on the status line (what was sent, what failed)."""
        self._status = text
        self._show_status()

    def _show_status(self) -> None:
        count = len(self.views)
        head = f"footctl - via {self.via} - {count} massager{'s' if count != 1 else ''}"
        line = render.esc(head + (f" - {self._status}" if self._status else ""))
        for status in self.query("#status"):
            if isinstance(status, Static):
                status.update(line)

    # --- requests -----------------------------------------------------------------

    def _spawn(self, request: Request, what: str) -> asyncio.Task[None]:
        """Send ``request`` without blocking the screen (and without queueing: each
        request runs at once, so a stop never waits behind a slow set)."""
        task = asyncio.create_task(self._send(request, what), name=f"footctl.tui.{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send(self, request: Request, what: str) -> None:
        device = getattr(request, "device", None)
        self.set_status(f"{what}...")
        try:
            reply = await self.controller.request(request)
        except Exception as exc:  # the socket to a daemon can fail in many ways
            _LOG.warning("%s failed: %s", what, exc)
            self.set_status(f"{what} failed: {exc}")
            return
        self._on_reply(request, reply, what, device)

    def _on_reply(
        self, request: Request, reply: Reply | ErrorReply, what: str, device: str | None
    ) -> None:
        if isinstance(reply, ErrorReply):
            reason = reply.message + (f" ({reply.advice})" if reply.advice else "")
            if isinstance(request, SetRequest) and request.heat and device is not None:
                self._refused_heat[device] = request.heat
            if device is not None:
                self.refusals[device] = f"{what}: {reason}"
            self.set_status(f"{what} refused" if reply.exit_code == 4 else f"{what} failed")
        else:
            if device is not None:
                self.refusals[device] = None
                if isinstance(request, SetRequest | RunRequest):
                    self._take_lease(device)
            if isinstance(request, StopRequest):
                self.leased -= {device} if device else set(self.leased)
            notes = f" ({'; '.join(reply.notes)})" if reply.notes else ""
            self.set_status(f"{what}: ok{notes}")
        self._rerender()

    def _take_lease(self, device: str) -> None:
        if device not in self.leased:
            self.leased.add(device)
            self._spawn(LeaseRequest(source="tui", device=device, seconds=LEASE_S), "lease")

    def _renew_leases(self) -> None:
        for device in sorted(self.leased):
            view = self.views.get(device)
            running = view is not None and (
                view.reported.power or view.desired.power or view.program is not None
            )
            if not running:
                self.leased.discard(device)
                continue
            self._spawn(LeaseRequest(source="tui", device=device, seconds=LEASE_S), "lease")

    def _target(self) -> DeviceView | None:
        view = None if self.selected is None else self.views.get(self.selected)
        if view is None:
            self.set_status("no massager to act on (d: devices)")
        return view

    # --- keys ---------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide the zone key on a massager without zones."""
        del parameters
        if action == "zone" and self.selected is not None:
            caps = self.caps(self.selected)
            return caps is not None and caps.zones is not None
        return True

    def action_stop_all(self) -> None:
        """Everything off on every massager of the owner, and back to the main screen."""
        self._spawn(StopRequest(source="tui"), "stop all")
        while isinstance(self.screen, ModalScreen):
            self.pop_screen()

    def action_power(self) -> None:
        """Switch the massager on, or everything on it off."""
        view = self._target()
        if view is None:
            return
        if view.reported.power or view.desired.power:
            self._spawn(StopRequest(source="tui", device=view.device_id), "off")
        else:
            self._spawn(SetRequest(source="tui", kind="on", device=view.device_id), "on")

    def action_intensity(self, delta: int) -> None:
        """One level more or less (rises follow the governor's ramp)."""
        view = self._target()
        if view is None:
            return
        caps = self.caps(view.device_id)
        low = caps.intensity_min if caps else 0
        base = view.desired.intensity if view.desired.power else None
        if base is None:
            base = view.reported.intensity if view.reported.power else None
        if base is None and delta < 0:
            self.set_status("the massager is off")
            return
        target = max(low, 1) if base is None else base + delta
        if caps is not None and not caps.intensity_min <= target <= caps.intensity_max:
            edge = "lowest" if delta < 0 else "highest"
            self.set_status(f"intensity is at its {edge} level")
            return
        if target < 0:
            return
        self._spawn(
            SetRequest(source="tui", device=view.device_id, intensity=target),
            f"intensity {target}",
        )

    def action_heat(self) -> None:
        """Next heat level; off after the highest, or after a level the caps refused."""
        view = self._target()
        if view is None:
            return
        caps = self.caps(view.device_id)
        if caps is not None and caps.max_heat == 0:
            self.set_status("this massager has no heat")
            return
        current = view.desired.heat if view.desired.power else view.reported.heat
        target = current + 1
        top = caps.max_heat if caps else None
        if (top is not None and target > top) or self._refused_heat.get(view.device_id) == target:
            target = 0
        self._refused_heat.pop(view.device_id, None)
        label = f"heat {target}" if target else "heat off"
        self._spawn(SetRequest(source="tui", device=view.device_id, heat=target), label)

    def action_mode(self) -> None:
        """The next of the profile's modes."""
        view = self._target()
        if view is None:
            return
        caps = self.caps(view.device_id)
        if caps is None or not caps.modes:
            self.set_status("the modes of this massager are unknown")
            return
        current = view.desired.mode or view.reported.mode
        index = caps.modes.index(current) + 1 if current in caps.modes else 0
        mode = caps.modes[index % len(caps.modes)]
        self._spawn(SetRequest(source="tui", device=view.device_id, mode=mode), f"mode {mode}")

    def action_zone(self) -> None:
        """The next zone (on a massager that has zones)."""
        view = self._target()
        if view is None:
            return
        caps = self.caps(view.device_id)
        if caps is None or caps.zones is None:
            self.set_status("this massager has no zones")
            return
        low, high = caps.zones
        current = view.desired.zone if view.desired.zone is not None else view.reported.zone
        zone = low if current is None or current >= high else current + 1
        self._spawn(SetRequest(source="tui", device=view.device_id, zone=zone), f"zone {zone}")

    def action_program(self) -> None:
        """Pick a program and start it on the massager."""
        view = self._target()
        if view is None:
            return
        device = view.device_id

        def start(name: str | None) -> None:
            if name:
                self._spawn(
                    RunRequest(source="tui", device=device, program=name), f"program {name}"
                )

        picker = ProgramPicker(self.catalog.programs(), view.name or device)
        self.push_screen(picker, start)

    def action_devices(self) -> None:
        """Pick the massager the keys act on."""

        def pick(device: str | None) -> None:
            if device and device in self.views:
                self.selected = device
                self.refresh_bindings()
                self._rerender()

        picker = DevicePicker(list(self.views.values()), self.selected, self.scanner)
        self.push_screen(picker, pick)

    def action_journal(self) -> None:
        """History table and plot; rate last night."""
        if self.journal_path is None:
            from footctl.config import journal_path  # noqa: PLC0415

            self.journal_path = journal_path()
        self.push_screen(JournalScreen(self.journal_path))

    async def action_quit(self) -> None:
        """Leave; first everything off on the massagers this process owns. A daemon's
        go on: the TUI hands its leases back (ReleaseRequest), so they run on under the
        daemon's caps. Letting them lapse would switch them off as a missed heartbeat:
        that dead man is for a TUI that dies or hangs, not for one that quits."""
        if self.owns_devices and self.views:
            self.set_status("everything off before leaving...")
            try:
                async with asyncio.timeout(QUIT_STOP_TIMEOUT_S):
                    await self._spawn(StopRequest(source="tui"), "stop all")
            except TimeoutError:
                _LOG.warning("the stop before quitting was not confirmed in time")
        elif self.leased:
            self.set_status("handing the leases back before leaving...")
            releases = [
                self._spawn(ReleaseRequest(source="tui", device=device), "release")
                for device in sorted(self.leased)
            ]
            self.leased.clear()
            try:
                async with asyncio.timeout(QUIT_STOP_TIMEOUT_S):
                    await asyncio.gather(*releases)
            except TimeoutError:
                _LOG.warning("the daemon did not take the leases back in time")
        self.exit()
