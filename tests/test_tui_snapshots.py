"""Snapshots of the TUI's main screen at 80x24, fed fixed views by a fake controller
(so nothing depends on time): normal, heating, refused, link lost, program running,
an assumed state, two massagers, the light theme and NO_COLOR.

Update after a deliberate change with ``pytest tests/test_tui_snapshots.py
--snapshot-update`` and look at the SVGs (or the report) before committing them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from textual.pilot import Pilot

from footctl.control.api import DeviceView, ErrorReply, Settings
from footctl.tui.app import FootctlTui
from tui_fake import (
    FakeController,
    base_view,
    fake_catalog,
    heating_views,
    lost_view,
    program_views,
    refused_view,
)

SIZE = (80, 24)
SnapCompare = Callable[..., bool]


def app_for(fake: FakeController | None = None) -> FootctlTui:
    return FootctlTui(fake or FakeController(), owns_devices=True, catalog=fake_catalog())


def feed(views: Sequence[DeviceView]) -> Callable[[Pilot[None]], object]:
    """A run_before that shows ``views`` in order (as the stream would, unskipped)."""

    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FootctlTui)
        for view in views:
            await app.show_view(view)
        await pilot.pause()

    return run_before


def test_normal(snap_compare: SnapCompare) -> None:
    assert snap_compare(app_for(), terminal_size=SIZE, run_before=feed([base_view()]))


def test_heating_with_the_temperature_chart(snap_compare: SnapCompare) -> None:
    assert snap_compare(app_for(), terminal_size=SIZE, run_before=feed(heating_views()))


def test_refused_by_the_owner(snap_compare: SnapCompare) -> None:
    """A refusal the owner reports in the view (another source's, or an earlier one)."""
    assert snap_compare(app_for(), terminal_size=SIZE, run_before=feed([refused_view()]))


def test_refused_at_once_after_a_key(snap_compare: SnapCompare) -> None:
    """The reply to the TUI's own request: shown as soon as it comes back."""
    fake = FakeController()
    fake.reply = ErrorReply(
        error="refused",
        reason="heat_above_cap",
        message="heat 1 refused: cooldown: 12 min left since the last session",
        exit_code=4,
    )
    off = Settings(power=False, intensity=None, heat=0, mode=None)
    view = base_view(
        reported=off,
        desired=off,
        timers=base_view().timers.model_copy(update={"session_left_s": None, "lease_left_s": None}),
    )

    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FootctlTui)
        await app.show_view(view)
        await pilot.press("h")
        while app._tasks:
            await asyncio.gather(*app._tasks)
        await pilot.pause()

    assert snap_compare(app_for(fake), terminal_size=SIZE, run_before=run_before)


def test_link_lost(snap_compare: SnapCompare) -> None:
    assert snap_compare(app_for(), terminal_size=SIZE, run_before=feed([lost_view()]))


def test_program_running(snap_compare: SnapCompare) -> None:
    assert snap_compare(app_for(), terminal_size=SIZE, run_before=feed(program_views()))


def test_assumed_state_and_two_massagers(snap_compare: SnapCompare) -> None:
    """A massager without status reports: its values are marked assumed."""
    assumed = base_view(
        device_id="F0:F0:00:00:00:02", address="F0:F0:00:00:00:02", name="guest",
        profile="shiatsu-keys", assumed=True, temperature=None, rssi=-71,
    )  # fmt: skip
    assert snap_compare(app_for(), terminal_size=SIZE, run_before=feed([base_view(), assumed]))


def test_light_theme(snap_compare: SnapCompare) -> None:
    app = app_for()
    app.theme = "textual-light"
    assert snap_compare(app, terminal_size=SIZE, run_before=feed(heating_views()[-2:]))


def test_no_color(snap_compare: SnapCompare, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR: the words and glyphs carry the meaning (LOST, REFUSED, the gauges)."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_for()
    assert app.no_color
    assert snap_compare(app, terminal_size=SIZE, run_before=feed([lost_view()]))
