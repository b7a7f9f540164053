"""Issue 8: the scheduler speaks the control API. A scheduled start is a ``run`` request
(source ``schedule``, the schedule's time zone) through ``owner.request``, like any
source's; what the owner answers decides how the journal records a start that did not
happen."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from footctl.control.api import ErrorReply, Reply, Request, RunRequest, parse_request
from footctl.device.profile.schema import Profile
from footctl.errors import UsageError
from program_rig import BASE_WALL
from test_daemon import MIN, MakeRig, make_rig, sock_dir, weekly

__all__ = ["make_rig", "sock_dir"]  # fixtures used here

DUE = BASE_WALL + 30 * MIN + timedelta(seconds=5)  # 21:30:05, the schedule's start + 5 s


def spy(rig: Any, answer: Reply | ErrorReply | None = None) -> list[Request]:
    """Record what reaches ``owner.request`` (and answer ``answer`` instead, if given)."""
    seen: list[Request] = []
    real = rig.daemon.owner.request

    async def request(req: Request) -> Reply | ErrorReply:
        seen.append(req)
        return answer if answer is not None else await real(req)

    rig.daemon.owner.request = request
    return seen


async def test_a_scheduled_start_is_a_run_request_through_the_owner(
    make_rig: MakeRig, profiles: dict[str, Profile]
) -> None:
    rig = await make_rig(profiles["shiatsu-aa55"],
                         schedules=[weekly("quick-relax", tz="Europe/Berlin", at="22:30")])
    seen = spy(rig)
    await rig.daemon.check_schedules()  # 21:00 UTC = 22:00 in Berlin: nothing due
    rig.clock.set_wall(DUE)
    (runner,) = await rig.daemon.check_schedules()
    (request,) = seen
    assert isinstance(request, RunRequest)
    assert (request.source, request.program, request.tz) == (
        "schedule", "quick-relax", "Europe/Berlin"
    )
    assert request.device == rig.managed.device_id
    assert runner.unattended and runner.source == "schedule"
    await rig.daemon.owner.request(parse_request({"kind": "stop", "source": "cli"}))
    await asyncio.wait_for(rig.daemon.owner.wait_program(rig.managed), 30)
    rows = rig.journal.history(1, include_simulated=True)
    assert [(r.source, r.program) for r in rows] == [("schedule", "quick-relax")]


@pytest.mark.parametrize(
    ("answer", "journaled"),
    [
        (ErrorReply(error="refused", reason="night_limit", message="two starts tonight",
                    advice="max_sessions_per_night = 2", exit_code=4),
         ("refused", "night_limit: two starts tonight (max_sessions_per_night = 2)")),
        (ErrorReply(error="unreachable", message="no connection within 30 s", exit_code=3),
         ("skipped", "massager unreachable: no connection within 30 s")),
        (ErrorReply(error="usage", message="no program 'x'", exit_code=2),
         ("refused", "no program 'x'")),
    ],
)
async def test_what_the_owner_answers_is_what_the_journal_records(
    make_rig: MakeRig, profiles: dict[str, Profile], answer: ErrorReply,
    journaled: tuple[str, str],
) -> None:
    rig = await make_rig(profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")])
    seen = spy(rig, answer)
    await rig.daemon.check_schedules()
    rig.clock.set_wall(DUE)
    assert await rig.daemon.check_schedules() == []
    assert [r.kind for r in seen] == ["run"]
    last = rig.journal.history(1, include_simulated=True)[-1]
    assert (last.source, last.program) == ("schedule", "quick-relax")
    assert (last.end_reason, last.note) == journaled
    assert not any(s.running for s in rig.bench.log.samples)


async def test_a_refusal_of_the_real_owner_is_journaled_with_its_reason(
    make_rig: MakeRig, profiles: dict[str, Profile]
) -> None:
    """The massager runs by hand when the schedule comes due: the owner says busy."""
    rig = await make_rig(profiles["shiatsu-aa55"], schedules=[weekly("quick-relax")])
    await rig.daemon.check_schedules()
    reply = await rig.daemon.owner.request(parse_request({"kind": "set", "intensity": 1}))
    assert isinstance(reply, Reply), reply
    rig.clock.set_wall(DUE)
    assert await rig.daemon.check_schedules() == []
    last = [r for r in rig.journal.history(1, include_simulated=True) if r.source == "schedule"]
    assert [(r.end_reason, (r.note or "").split(":")[0]) for r in last] == [("refused", "busy")]


def test_the_time_zone_of_a_run_is_checked_at_the_edge() -> None:
    ok = parse_request({"kind": "run", "source": "schedule", "program": "p",
                        "tz": "America/New_York"})
    assert isinstance(ok, RunRequest) and str(ok.zone()) == "America/New_York"
    assert parse_request({"kind": "run", "program": "p"}).zone() is None
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "", 5, True):
        with pytest.raises(UsageError, match="tz"):
            parse_request({"kind": "run", "program": "p", "tz": bad})
