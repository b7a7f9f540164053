"""The in-process Owner: one request path per massager, stop preemption, the
StateHub stream, many massagers, the cooldown, every request validated at the edge.

Virtual massagers on a Bumble link, real sessions and governors built by the owner.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from footctl.config import Config
from footctl.control.api import (
    ErrorReply,
    Reply,
    SetRequest,
    StatusRequest,
    StopRequest,
    parse_request,
)
from footctl.control.owner import Owner
from footctl.device.profile.schema import Profile
from footctl.errors import UsageError
from footctl.journal import Journal
from owner_rig import OwnerRig
from safety_harness import eventually

# Test modules written against this module's old rig import it from here
# (test_control_scan and test_journal_sources on main): the shared rig under its old
# name, and a ``rig`` fixture that is the shared ``owner_rig``. New code: owner_rig.
Rig = OwnerRig


@pytest.fixture
def rig(owner_rig: OwnerRig) -> OwnerRig:
    """The shared ``owner_rig`` under this module's old fixture name."""
    return owner_rig


def ok(reply: Reply | ErrorReply) -> Reply:
    assert isinstance(reply, Reply), reply
    return reply


async def test_set_then_stop_and_the_stream_sees_each_change_in_order(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]])
    stream = owner.subscribe()
    first = await stream.get()
    assert [v.link for v in first] == ["connected"]
    reply = ok(await owner.request(SetRequest(intensity=1, heat=1)))
    assert (reply.devices[0].reported.power, reply.devices[0].reported.heat) == (True, 1)
    assert reply.devices[0].session_source == "cli"
    assert owner_rig.massagers[0].model.running
    ok(await owner.request(StopRequest(source="tui")))
    assert not owner_rig.massagers[0].model.running
    seqs: list[int] = [v.seq for v in first]
    while True:
        views = await asyncio.wait_for(stream.get(), 5)
        seqs += [v.seq for v in views]
        if not views[-1].reported.power and not views[-1].desired.power:
            break
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    stream.close()


async def test_an_unknown_name_is_exit_3_and_two_massagers_need_a_name(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"], profiles["ems-v2"]])
    reply = await owner.request(StatusRequest(device="nobody"))
    assert isinstance(reply, ErrorReply) and reply.exit_code == 3
    reply = await owner.request(SetRequest(intensity=1))
    assert isinstance(reply, ErrorReply) and reply.exit_code == 2
    ok(await owner.request(SetRequest(device="m1", intensity=1)))
    assert owner_rig.massagers[1].model.running and not owner_rig.massagers[0].model.running
    reply = await owner.request(StopRequest(device="nobody"))
    assert isinstance(reply, ErrorReply) and reply.exit_code == 3
    assert owner_rig.massagers[1].model.running  # a stop naming nobody stops nothing
    ok(await owner.request(StopRequest()))
    assert not any(m.model.running for m in owner_rig.massagers)


async def test_a_stop_while_the_link_is_down_voids_the_waiting_set_and_lands_first(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]])
    massager = owner_rig.massagers[0]
    held = owner.held[0]
    await massager.drop()
    assert await eventually(lambda: not held.session.connected)
    pending = asyncio.ensure_future(owner.request(SetRequest(intensity=1, heat=1)))
    await asyncio.sleep(0.2)
    assert not pending.done()  # waiting for the link
    stop = asyncio.ensure_future(owner.request(StopRequest()))
    voided = await asyncio.wait_for(pending, 5)
    assert isinstance(voided, ErrorReply) and voided.reason == "superseded_by_stop"
    await massager.restore()
    await asyncio.wait_for(stop, 15)
    assert await eventually(lambda: held.session.connected)
    await asyncio.sleep(1.0)
    assert not massager.model.running and massager.model.effective_heat == 0
    frames = [f.to_dict() for f in massager.frames]
    assert frames, "the owed off was written when the link returned"


async def test_a_request_queued_behind_a_stop_never_runs(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]], connect=False)
    first = asyncio.ensure_future(owner.request(SetRequest(intensity=1)))
    second = asyncio.ensure_future(owner.request(SetRequest(intensity=1, heat=1)))
    await asyncio.sleep(0)
    ok(await owner.request(StopRequest()))
    for fut in (first, second):
        reply = await asyncio.wait_for(fut, 10)
        assert isinstance(reply, ErrorReply) and reply.reason == "superseded_by_stop", reply
    await asyncio.sleep(0.5)
    assert not owner_rig.massagers[0].model.running


async def test_the_cooldown_holds_for_a_new_session_through_the_owner(
    owner_rig: OwnerRig, profiles: dict[str, Profile], tmp_path: Any
) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    try:
        owner = await owner_rig.build([profiles["shiatsu-aa55"]], journal=journal)
        ok(await owner.request(SetRequest(intensity=1, heat=1)))
        ok(await owner.request(StopRequest()))
        again = await owner.request(SetRequest(intensity=1, heat=1))
        assert isinstance(again, ErrorReply) and again.reason == "cooldown", again
        assert owner.snapshot()[0].last_refusal is None  # no device named: not recorded
        again = await owner.request(SetRequest(device="m0", heat=1))
        assert isinstance(again, ErrorReply) and again.reason == "cooldown"
        assert (owner.snapshot()[0].last_refusal or "").startswith("cooldown")
        assert not owner_rig.massagers[0].model.running
    finally:
        journal.close()


async def test_sixteen_massagers_and_a_drop_on_one_disturbs_no_other(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    owner = await owner_rig.build([profiles["shiatsu-aa55"]] * 16)
    replies = await asyncio.gather(
        *(owner.request(SetRequest(device=f"m{i}", intensity=1)) for i in range(16))
    )
    assert all(isinstance(r, Reply) for r in replies), replies
    assert all(m.model.running for m in owner_rig.massagers)
    await owner_rig.massagers[3].drop()
    assert await eventually(lambda: not owner.held[3].session.connected)
    ok(await owner.request(StopRequest(device="m7")))
    assert not owner_rig.massagers[7].model.running
    others = [i for i in range(16) if i not in (3, 7)]
    assert all(owner_rig.massagers[i].model.running for i in others)
    assert all(owner.held[i].session.connected for i in others)
    views = {v.name: v for v in owner.snapshot()}
    assert views["m3"].link == "lost" and views["m4"].link == "connected"
    await owner_rig.massagers[3].restore()
    assert await eventually(lambda: owner.held[3].session.connected, 15)
    ok(await owner.request(StopRequest()))
    assert not any(m.model.running for m in owner_rig.massagers)


# --- the API models at the edge ------------------------------------------------------

BAD_NUMBERS = st.one_of(
    st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.integers(max_value=-1), st.integers(min_value=256), st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@given(field=st.sampled_from(["intensity", "heat", "zone"]), value=BAD_NUMBERS)
def test_type_confused_and_non_finite_values_never_pass_the_edge(field: str, value: Any) -> None:
    with pytest.raises(UsageError):
        parse_request({"kind": "set", field: value})
    line = json.dumps({"kind": "set", field: value})  # NaN/Infinity as Python's json writes
    with pytest.raises(UsageError):
        parse_request(line)


@given(
    source=st.text(max_size=8).filter(lambda s: s not in ("cli", "tui", "mqtt", "schedule",
                                                          "program")),
)
def test_an_unknown_source_is_refused(source: str) -> None:
    with pytest.raises(UsageError):
        parse_request({"kind": "stop", "source": source})


# One valid body of every request kind (each also passes with a source a client may name).
EVERY_KIND = (
    {"kind": "ping"}, {"kind": "status"}, {"kind": "stop"}, {"kind": "set", "intensity": 1},
    {"kind": "on"}, {"kind": "run", "program": "wind-down"}, {"kind": "lease"},
    {"kind": "release"}, {"kind": "watch"}, {"kind": "schedules"}, {"kind": "describe"},
    {"kind": "scan"},
)


@pytest.mark.parametrize("body", EVERY_KIND, ids=lambda b: str(b["kind"]))
def test_no_request_may_claim_the_massagers_own_button(body: dict[str, Any]) -> None:
    """``device`` is the source the owner reports for a session the massager's own
    button started (SessionEvent, the view's session_source, the journal); no client
    may send it: it would be journaled as a press nobody made at the CLI."""
    for source in ("cli", "tui", "mqtt", "schedule", "program"):
        assert parse_request({**body, "source": source}).source == source
    with pytest.raises(UsageError, match="source"):
        parse_request({**body, "source": "device"})
    with pytest.raises(UsageError, match="source"):
        parse_request(json.dumps({**body, "source": "device"}))
    with pytest.raises(pydantic.ValidationError):
        SetRequest(source="device")  # type: ignore[arg-type]


@given(intensity=st.integers(0, 255), heat=st.integers(0, 15))
def test_valid_levels_pass_as_ints(intensity: int, heat: int) -> None:
    request = parse_request({"kind": "set", "intensity": intensity, "heat": heat, "source": "mqtt"})
    assert isinstance(request, SetRequest)
    assert type(request.intensity) is int and request.intensity == intensity


async def test_the_views_an_owner_builds_are_valid_api_models(
    owner_rig: OwnerRig, profiles: dict[str, Profile]
) -> None:
    from footctl.control.api import DeviceView

    owner = await owner_rig.build([profiles["ems-v2"], profiles["shiatsu-keys"]])
    ok(await owner.request(SetRequest(device="m0", intensity=2, heat=1, mode="tapping", zone=3)))
    ok(await owner.request(SetRequest(device="m1", intensity=1, heat=1)))
    for view in owner.snapshot():
        # the owner builds views without validation: they must pass it all the same
        assert DeviceView.model_validate_json(view.model_dump_json()) == view
    ok(await owner.request(StopRequest()))


async def test_owner_start_holds_simulated_massagers_from_flags_and_config() -> None:
    from footctl.config import DeviceConfig

    config = Config(devices=[DeviceConfig(address="F0:F0:00:00:00:09", profile="ems-v2",
                                          name="bedroom", simulate=True)])
    async with Owner.start(config, journal=False) as owner:
        (view,) = owner.snapshot()
        assert (view.name, view.simulated, view.link) == ("bedroom", True, "connected")
        assert view.address == "F0:F0:00:00:00:09"
        ok(await owner.request(SetRequest(device="bedroom", intensity=1)))
    async with Owner.start(Config(), simulate=["shiatsu-aa55*3,ems-v2"], journal=False) as owner:
        names = sorted(v.name for v in owner.snapshot())
        assert names == ["ems-v2", "shiatsu-aa55-1", "shiatsu-aa55-2", "shiatsu-aa55-3"]
        ok(await owner.request(SetRequest(device="shiatsu-aa55-2", intensity=1)))
        running = [v.name for v in owner.snapshot() if v.reported.power]
        assert running == ["shiatsu-aa55-2"]


async def test_the_owner_is_a_controller(owner_rig: OwnerRig, profiles: dict[str, Profile]) -> None:
    from footctl.control.port import Controller

    owner = await owner_rig.build([profiles["shiatsu-aa55"]])
    controller: Controller = owner  # mypy checks the protocol; this checks it at run time
    stream = controller.subscribe(None)
    assert [v.name for v in await stream.get()] == ["m0"]
    stream.close()
    assert await stream.get() == []
    assert [v.name for v in controller.snapshot()] == ["m0"]
