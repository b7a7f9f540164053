"""The shipped programs through the governor on the version-2 profiles: mode families and
relative intensities resolved per device, every setpoint reached the profile's way
(toggles, tables, counted steps, waits), on a fake clock over the real virtual link."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession
from footctl.programs import expand, get_program
from footctl.programs.runner import ProgramRunner
from footctl.safety.governor import SafetyGovernor
from footctl.safety.limits import Caps, Limits
from program_rig import SETTLE_S, DeviceLog, FakeClock, VirtualBench, virtual_bench

Made = tuple[VirtualBench, DeviceSession, SafetyGovernor, FakeClock]


def check_device_held(log: DeviceLog, governor: SafetyGovernor, runner: ProgramRunner) -> None:
    """At the end of every setpoint the device is in it (a pause at the lowest level),
    except where the governor's ramp (one level per ramp step) could not rise that far
    in the setpoint's time; and everything is off at the end. (Unlike the version-1
    check, two steps that mean the same on this device need not change anything.)"""
    assert runner.started_at is not None
    t0 = runner.started_at
    timeline = expand(runner.program)
    low = governor.limits.intensity_min
    ramp_s = governor.limits.ramp_step_s
    for sp, nxt in itertools.pairwise(timeline):
        start, end = t0 + sp.offset_s, t0 + nxt.offset_s
        state = log.at(end - 1e-6)
        want = sp.intensity if sp.running else low
        assert (state.running, state.heat, state.mode) == (True, sp.heat, sp.mode), (sp, state)
        got = state.intensity or 0
        if got != want:
            # only a rise the ramp could not finish: as far as it goes, not past the target
            before = log.at(start - 1e-6).intensity or low
            assert before < got < want, f"at {nxt.offset_s:g} s: intensity {got}, wanted {want}"
            assert got >= before + math.floor((end - start) / ramp_s), "the ramp fell behind"
    final = log.at(t0 + timeline[-1].offset_s + SETTLE_S)
    assert (final.running, final.heat) == (False, 0), "not everything off at the end"


@pytest.fixture
async def make() -> AsyncIterator[Callable[[Profile], Awaitable[Made]]]:
    made: list[Made] = []

    async def build(profile: Profile) -> Made:
        clock = FakeClock()
        bench = await virtual_bench(profile, clock)
        # the session's own waits (a device still starting up) pass on the same clock
        session = DeviceSession(
            profile, bench.radio, scan_timeout=5.0, sleep=clock.sleep, clock=clock
        )
        governor = SafetyGovernor(
            session, Limits.compute(profile, Caps()), clock=clock, sleep=clock.sleep
        )
        await session.connect()
        made.append((bench, session, governor, clock))
        return made[-1]

    yield build
    for bench, session, _, _ in made:
        await session.close()
        await bench.close()


@pytest.mark.parametrize(
    ("pid", "program"),
    [
        ("aircomp-duo", "quick-relax"),
        ("aircomp-mini", "quick-relax"),
        ("aircomp-duo", "no-heat"),
        ("shiatsu-nodes", "quick-relax"),
        ("keys-table", "quick-relax"),
        ("stepper-blind", "no-heat"),
    ],
)
async def test_a_shipped_program_runs_on_a_version_2_profile(
    make: Callable[[Profile], Awaitable[Made]], profiles: dict[str, Profile], pid: str,
    program: str,
) -> None:
    bench, _, governor, clock = await make(profiles[pid])
    runner = ProgramRunner(governor, get_program(program), clock=clock, sleep=clock.sleep)
    assert runner.assessment.refused == []
    result = await runner.run()
    assert result.completed, result
    check_device_held(bench.log, governor, runner)
    errors = [f for f in bench.massager.frames if f.outcome == "error"]
    assert errors == []
