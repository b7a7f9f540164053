"""A fake :class:`Controller` that feeds chosen views to the TUI, for snapshots and
layout only (the keys are proved against a real owner in test_tui_pilot.py)."""

from __future__ import annotations

from footctl.control.api import (
    DeviceView,
    ErrorReply,
    ProgramView,
    Reply,
    Request,
    Settings,
    Timers,
)
from footctl.control.hub import StateHub, Subscription
from footctl.tui.catalog import Catalog, DeviceCaps, ProgramInfo

CAPS = DeviceCaps(
    intensity_min=1,
    intensity_max=5,
    heat_celsius=(40.0, 42.0, 44.0),
    modes=("kneading", "rolling", "shiatsu"),
    zones=None,
)
PROGRAMS = [
    ProgramInfo("no-heat", "12 min, no heat", 720.0, 3),
    ProgramInfo("quick-relax", "10 min", 600.0, 3),
    ProgramInfo("wind-down", "15 min, gentle heat", 900.0, 4),
]


def fake_catalog() -> Catalog:
    """Fixed capabilities and programs: no files read."""
    return Catalog(load_caps=lambda _profile: CAPS, load_programs=lambda: list(PROGRAMS))


class FakeController:
    """Serves views put into its hub; records requests; answers with ``reply``."""

    def __init__(self, *views: DeviceView) -> None:
        self.hub = StateHub()
        self.requests: list[Request] = []
        self.reply: Reply | ErrorReply = Reply()
        for view in views:
            self.hub.publish(view)

    async def request(self, request: Request) -> Reply | ErrorReply:
        self.requests.append(request)
        return self.reply

    def subscribe(self, device_id: str | None = None) -> Subscription:
        return self.hub.subscribe(device_id)

    def snapshot(self) -> list[DeviceView]:
        return self.hub.snapshot()


def base_view(**changes: object) -> DeviceView:
    """A connected, running shiatsu-aa55 at intensity 2, no heat."""
    view = DeviceView(
        device_id="F0:F0:00:00:00:01",
        address="F0:F0:00:00:00:01",
        name="bedroom",
        profile="shiatsu-aa55",
        simulated=True,
        link="connected",
        rssi=-50,
        reported=Settings(power=True, intensity=2, heat=0, mode="kneading"),
        assumed=False,
        temperature=31.5,
        desired=Settings(power=True, intensity=2, heat=0, mode="kneading"),
        timers=Timers(session_left_s=1135.0, heat_left_s=None, lease_left_s=28.0),
        session_source="tui",
        owner_pid=4242,
    )
    return view.model_copy(update=changes)


def heating_views() -> list[DeviceView]:
    """Heat 1 on, the temperature rising over a few reports."""
    heat = Settings(power=True, intensity=3, heat=1, heat_celsius=40.0, mode="rolling")
    return [
        base_view(
            reported=heat,
            desired=heat,
            temperature=t,
            timers=Timers(session_left_s=900.0 - i, heat_left_s=600.0 - i, lease_left_s=25.0),
        )
        for i, t in enumerate((31.5, 33.0, 34.6, 36.1, 37.4, 38.3, 38.9, 39.4, 39.7))
    ]


def refused_view() -> DeviceView:
    """Heat 3 refused by the governor (above the temperature cap)."""
    return base_view(
        last_refusal="heat 3 refused: heat level 3 means 44.0 C, above the 42 C cap "
        "(ask for heat 2 or less)"
    )


def lost_view() -> DeviceView:
    """The link dropped; reconnecting, third attempt."""
    return base_view(link="lost", rssi=None, reconnect_attempts=3)


def program_views() -> list[DeviceView]:
    """wind-down running: first seen at its start, then in step 2."""
    rep = Settings(power=True, intensity=2, heat=1, heat_celsius=40.0, mode="kneading")
    first = ProgramView(
        program="wind-down", source="tui", step=1, steps=4, step_name="warm",
        step_left_s=300.0, left_s=900.0,
    )  # fmt: skip
    later = ProgramView(
        program="wind-down", source="tui", step=2, steps=4, step_name="knead",
        step_left_s=125.0, left_s=425.0,
    )  # fmt: skip
    timers = Timers(session_left_s=1200.0 - 475.0, heat_left_s=900.0 - 475.0, lease_left_s=27.0)
    return [
        base_view(reported=rep, desired=rep, program=first, temperature=36.0),
        base_view(
            reported=rep, desired=rep, program=later, temperature=39.0, timers=timers,
            session_source="program",
        ),
    ]  # fmt: skip
