"""The TUI's pure parts: what each line says for a view (assumed values marked, a
lost link said in words), and the lease it holds while it keeps a massager running."""

from __future__ import annotations

from footctl.control.api import (
    LeaseRequest,
    Reply,
    RunView,
    SetRequest,
    Settings,
    StopRequest,
)
from footctl.tui import render
from footctl.tui.app import LEASE_S, FootctlTui
from tui_fake import CAPS, FakeController, base_view, fake_catalog, lost_view


def test_durations() -> None:
    assert render.duration(None) == "-"
    assert render.duration(0) == "0:00"
    assert render.duration(59.6) == "1:00"
    assert render.duration(1135) == "18:55"
    assert render.duration(3725) == "1:02:05"
    assert render.duration(-3) == "0:00"


def test_bar_is_glyphs_not_colour() -> None:
    assert render.bar(0.5, 10) == "█" * 5 + "░" * 5
    assert render.bar(2.0, 4) == "████" and render.bar(-1, 4) == "░░░░"


def test_unreported_values_are_marked_assumed() -> None:
    assert "assumed" in render.power_line(base_view(assumed=True))
    assert "assumed" not in render.power_line(base_view(assumed=False))


def test_a_lost_link_says_so_and_marks_the_values_as_last_reported() -> None:
    view = lost_view()
    assert "LOST" in render.link_line(view) and "attempt 3" in render.link_line(view)
    assert "last reported" in render.power_line(view)


def test_desired_is_shown_apart_from_reported() -> None:
    view = base_view(desired=Settings(power=True, intensity=4, heat=1, mode="kneading"))
    assert "2/5" in render.intensity_line(view, CAPS)
    assert "rising to 4" in render.intensity_line(view, CAPS)
    assert "asked 1" in render.heat_text(view, CAPS)


def test_how_the_last_program_ended_is_said_once_it_is_over() -> None:
    run = RunView(
        program="wind-down", source="program", end_reason="stopped", steps_run=2, steps=4,
        elapsed_s=310.0,
    )  # fmt: skip
    line = render.message_line(base_view(last_run=run, end_reason="stopped"), None)
    assert line == "last program wind-down: stopped (2/4 steps, 5:10)"
    assert "REFUSED" in render.message_line(base_view(last_run=run), "intensity 9: too high")


def test_device_text_cannot_inject_markup() -> None:
    view = base_view(name="[b]x[/b]", fault="[red]boom")
    assert r"\[b]x" in render.title(view, selected=False)
    assert r"\[red]boom" in render.message_line(view, None)


async def test_a_lease_is_taken_with_a_session_renewed_while_running_dropped_after_stop() -> None:
    fake = FakeController(base_view())
    app = FootctlTui(fake, owns_devices=True, catalog=fake_catalog())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        device = base_view().device_id
        fake.reply = Reply(devices=(base_view(),))
        await pilot.press("plus")
        while app._tasks:
            await pilot.pause()
        leases = [r for r in fake.requests if isinstance(r, LeaseRequest)]
        assert [(r.device, r.seconds, r.source) for r in leases] == [(device, LEASE_S, "tui")]
        assert any(isinstance(r, SetRequest) and r.intensity == 3 for r in fake.requests)
        app._renew_leases()  # the view says running: renewed
        while app._tasks:
            await pilot.pause()
        assert sum(isinstance(r, LeaseRequest) for r in fake.requests) == 2
        await pilot.press("s")
        while app._tasks:
            await pilot.pause()
        assert isinstance(fake.requests[-1], StopRequest) and fake.requests[-1].device is None
        assert app.leased == set()
        app._renew_leases()
        assert sum(isinstance(r, LeaseRequest) for r in fake.requests) == 2
