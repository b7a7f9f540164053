"""Each key of the TUI, pressed with Textual's pilot against an in-process Owner of
virtual massagers (Bumble link, real sessions and governors): the assertions are on
what the virtual massager itself did, not on what the screen says."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from footctl.config import CapsConfig, Config
from footctl.control.api import StopRequest
from footctl.control.owner import Owner
from footctl.device.profile.schema import Profile
from footctl.journal import Journal
from footctl.tui.app import FootctlTui
from footctl.tui.dialogs import DevicePicker, JournalScreen, ProgramPicker, scan_via
from owner_rig import OwnerRig
from safety_harness import eventually

# No ramp wait and no cooldown, so each key's effect lands within a few frames; the
# ramp and cooldown rules have their own tests.
FAST = Config(caps=CapsConfig(intensity_step_seconds=0, cooldown_minutes=0))


def screen_text(app: FootctlTui) -> str:
    """What the terminal shows now, as text."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


async def started(app: FootctlTui, pilot: Any) -> None:
    """Wait until the first massager's panel shows a connected link."""
    assert await eventually(lambda: any(v.link == "connected" for v in app.views.values()))
    await pilot.pause()


async def settle(app: FootctlTui, pilot: Any) -> None:
    """Let every request the TUI sent finish, then let the screen catch up."""
    assert await eventually(lambda: not app._tasks)
    await pilot.pause()


async def press(app: FootctlTui, pilot: Any, *keys: str, until: Callable[[], bool]) -> None:
    """Press ``keys``, wait until ``until`` holds (on the massager), then let the TUI settle."""
    await pilot.press(*keys)
    assert await eventually(until)
    await settle(app, pilot)


@contextlib.asynccontextmanager
async def tui(
    owner: Owner, *, owns: bool = True, journal: Path | None = None, scanner: Any = None
) -> AsyncIterator[tuple[FootctlTui, Any]]:
    """The TUI on ``owner`` in an 80x24 pilot, once its first massager shows connected."""
    app = FootctlTui(owner, owns_devices=owns, journal_path=journal, scanner=scanner)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        yield app, pilot


async def test_space_switches_on_and_off(owner_rig: OwnerRig, profiles: dict[str, Profile]) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]], FAST)
    m = owner_rig.massagers[0].model
    async with tui(owner) as (app, pilot):
        assert not m.running
        await press(app, pilot, "space", until=lambda: m.running)
        assert await eventually(lambda: "power ON" in screen_text(app))
        await press(app, pilot, "space", until=lambda: not m.running)


async def test_plus_and_minus_change_the_intensity(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]], FAST)
    m = owner_rig.massagers[0].model
    async with tui(owner) as (app, pilot):
        await press(app, pilot, "space", until=lambda: m.running)
        start = m.intensity
        await press(app, pilot, "plus", until=lambda: m.intensity == start + 1)
        await press(app, pilot, "plus", until=lambda: m.intensity == start + 2)
        await press(app, pilot, "minus", until=lambda: m.intensity == start + 1)
        assert await eventually(lambda: f"{start + 1}/5" in screen_text(app))


async def test_h_switches_heat_on_then_off(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]], FAST)
    m = owner_rig.massagers[0].model
    async with tui(owner) as (app, pilot):
        # heat on switches the massager on too
        await press(app, pilot, "h", until=lambda: m.running and m.heat == 1)
        assert await eventually(lambda: "heat 1 (40 C)" in screen_text(app))
        await pilot.press("h")  # past the profile's one level: heat off
        assert await eventually(lambda: m.heat == 0)
        assert m.running
        await settle(app, pilot)


async def test_m_cycles_the_profile_modes(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    profile = profiles["shiatsu-aa55"]
    owner = await owner_rig.build([profile], FAST)
    m = owner_rig.massagers[0].model
    modes = [mode.name for mode in profile.capabilities.modes]
    async with tui(owner) as (app, pilot):
        await press(app, pilot, "space", until=lambda: m.running)
        want = modes[(modes.index(m.mode) + 1) % len(modes)]
        await press(app, pilot, "m", until=lambda: m.mode == want)


async def test_z_moves_the_zone_where_there_are_zones(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["ems-v2"], profiles["shiatsu-aa55"]], FAST)
    ems, aa55 = owner_rig.massagers[0].model, owner_rig.massagers[1].model
    async with tui(owner) as (app, pilot):
        assert app.selected == owner.held[0].device_id
        await press(app, pilot, "space", until=lambda: ems.running)
        before = ems.zone
        assert before is not None
        await press(app, pilot, "z", until=lambda: ems.zone == before + 1)
        assert "z zone" in screen_text(app)
        # The shiatsu has no zones: z is hidden and does nothing there.
        app.selected = owner.held[1].device_id
        app.refresh_bindings()
        await pilot.pause()
        assert "z zone" not in screen_text(app)
        sent = len(app._tasks)
        await pilot.press("z")
        await pilot.pause()
        assert len(app._tasks) == sent and not aa55.running


async def test_p_picks_and_starts_a_program_and_s_ends_it(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]], FAST)
    m = owner_rig.massagers[0].model
    async with tui(owner) as (app, pilot):
        await pilot.press("p")
        assert isinstance(app.screen, ProgramPicker)
        names = [p.name for p in app.screen.programs]
        assert "no-heat" in names
        for _ in range(names.index("no-heat")):
            await pilot.press("down")
        await pilot.press("enter")
        assert await eventually(lambda: m.running)
        assert await eventually(lambda: owner.held[0].program_running)
        await settle(app, pilot)
        assert await eventually(lambda: "program no-heat" in screen_text(app))
        await pilot.press("s")
        assert await eventually(lambda: not m.running)
        assert await eventually(lambda: not owner.held[0].program_running)
        await settle(app, pilot)


@pytest.mark.parametrize("key", ["s", "escape"])
@pytest.mark.parametrize("dialog", ["d", "p", "j"])
async def test_stop_works_under_every_dialog(
    owner_rig: OwnerRig, profiles: dict[str, Profile], tmp_path: Path, key: str, dialog: str
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]], FAST)
    m = owner_rig.massagers[0].model
    async with tui(owner, journal=tmp_path / "journal.sqlite3") as (app, pilot):
        await press(app, pilot, "h", until=lambda: m.running and m.heat == 1)
        await pilot.press(dialog)
        await pilot.pause()
        assert isinstance(app.screen, DevicePicker | ProgramPicker | JournalScreen)
        if dialog == "d":
            await pilot.press("down")  # focus is in the dialog's list
        await press(app, pilot, key, until=lambda: not m.running and m.heat == 0)
        assert not isinstance(app.screen, DevicePicker | ProgramPicker | JournalScreen)


async def test_d_picks_the_massager_the_keys_act_on(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]] * 2, FAST)
    first, second = owner_rig.massagers[0].model, owner_rig.massagers[1].model
    async with tui(owner) as (app, pilot):
        assert await eventually(lambda: len(app.views) == 2)
        await pilot.press("d")
        assert isinstance(app.screen, DevicePicker)
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.selected == owner.held[1].device_id
        await press(app, pilot, "space", until=lambda: second.running)
        assert not first.running


async def test_r_in_the_devices_dialog_scans_for_what_else_is_in_range(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"], profiles["ems-v2"]], FAST, held=1)
    stranger = owner_rig.massagers[1].address
    async with tui(owner, scanner=scan_via(owner)) as (app, pilot):
        await pilot.press("d", "r")
        assert await eventually(lambda: stranger in screen_text(app), 15)
        text = screen_text(app)
        assert "in range:" in text and "ems-v2" in text
        held = owner_rig.massagers[0].address
        assert held not in text.split("in range:", 1)[1]  # held: listed once


async def test_j_shows_the_journal_and_rates_last_night(
    owner_rig: OwnerRig, profiles: dict[str, Profile], tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite3"
    now = datetime.now(UTC)
    with Journal(path) as journal:
        sid = journal.start_session(
            "F0:F0:00:00:00:01", source="program", program="wind-down",
            at=now - timedelta(hours=9),
        )  # fmt: skip
        journal.end_session(sid, "completed", at=now - timedelta(hours=8, minutes=45))
    owner = await owner_rig.build([profiles["shiatsu-aa55"]], FAST)
    async with tui(owner, journal=path) as (app, pilot):
        await pilot.press("j")
        await pilot.pause()
        assert isinstance(app.screen, JournalScreen)
        assert "wind-down" in screen_text(app) and "completed" in screen_text(app)
        await pilot.press("4")
        await pilot.pause()
        assert "4/5" in screen_text(app)
        await pilot.press("g")
        await pilot.pause()
        assert "minutes per night" in screen_text(app)
        await pilot.press("j")
        await pilot.pause()
        assert not isinstance(app.screen, JournalScreen)
    with Journal(path) as journal:
        assert journal.get(sid).rating == 4


@pytest.mark.parametrize("owns", [True, False], ids=["its-own", "a-daemons"])
async def test_q_stops_what_it_owns_before_leaving_and_leaves_a_daemons_running(
    owner_rig: OwnerRig, profiles: dict[str, Profile], owns: bool
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]], FAST)
    m = owner_rig.massagers[0].model
    async with tui(owner, owns=owns) as (app, pilot):
        await press(app, pilot, "space", until=lambda: m.running)
        if not owns:  # (the TUI holds a lease on what it keeps running: see below)
            assert await eventually(lambda: "tui" in owner.held[0].governor._leases)
        await pilot.press("q")
        assert await eventually(lambda: not app.is_running)
    if owns:
        assert not m.running  # off before the app was gone, not by the owner's close
    else:
        assert m.running
        # ... and not under the TUI's lease: quitting hands it back (letting it run out
        # switched the daemon's session off as a missed heartbeat).
        assert "tui" not in owner.held[0].governor._leases
        await owner.request(StopRequest(source="cli"))


async def test_a_refusal_shows_at_once_with_its_reason(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    config = Config(caps=CapsConfig(intensity_step_seconds=0, cooldown_minutes=0, max_intensity=2))
    owner = await owner_rig.build([profiles["shiatsu-aa55"]], config)
    m = owner_rig.massagers[0].model
    async with tui(owner) as (app, pilot):
        await press(app, pilot, "space", until=lambda: m.running)
        await pilot.press("plus", "plus")
        await settle(app, pilot)
        assert m.intensity == 2
        text = screen_text(app)
        assert "REFUSED" in text and "intensity 3" in text
        assert "cap" in text.lower() or "max" in text.lower()


async def test_a_lost_link_shows_as_lost(owner_rig: OwnerRig, profiles: dict[str, Profile]) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]], FAST)
    async with tui(owner) as (app, _pilot):
        await owner_rig.massagers[0].drop()
        assert await eventually(lambda: "LOST" in screen_text(app))
        await owner_rig.massagers[0].restore()
        assert await eventually(lambda: "link connected" in screen_text(app), timeout=15)
