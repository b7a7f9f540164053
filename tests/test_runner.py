"""ProgramRunner over the real bleak path to a virtual massager, on a fake clock.

The massager's model, the governor and the runner share one FakeClock, so a whole
program runs in moments and the device's own log says what it did at which program
second. Each test checks the device, not the runner's idea of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession
from footctl.errors import SafetyRefused
from footctl.journal import Journal
from footctl.journal_hooks import JournalHooks
from footctl.programs import expand, get_program, load_program_text
from footctl.programs.model import Program
from footctl.programs.runner import ProgramRunner, Progress, assess
from footctl.safety.governor import SafetyGovernor
from footctl.safety.limits import Caps, Limits
from program_rig import FakeClock, VirtualBench, check_device_followed, virtual_bench


@dataclass
class Rig:
    bench: VirtualBench
    session: DeviceSession
    governor: SafetyGovernor
    clock: FakeClock
    journal: Journal
    hooks: JournalHooks

    def runner(self, program: Program, **kw: object) -> ProgramRunner:
        progress: list[Progress] = []

        def on_progress(p: Progress) -> None:
            self.hooks.follow(self.governor, p)
            progress.append(p)

        runner = ProgramRunner(
            self.governor, program, clock=self.clock, sleep=self.clock.sleep,
            on_progress=on_progress, **kw,  # type: ignore[arg-type]
        )
        runner.seen = progress  # type: ignore[attr-defined]
        return runner


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[object]:
    made: list[Rig] = []

    async def make(profile: Profile, caps: Caps | None = None) -> Rig:
        clock = FakeClock()
        bench = await virtual_bench(profile, clock)
        session = DeviceSession(profile, bench.radio, scan_timeout=5.0)
        governor = SafetyGovernor(
            session, Limits.compute(profile, caps or Caps()), clock=clock, sleep=clock.sleep
        )
        journal = Journal(tmp_path / f"journal-{len(made)}.sqlite3", clock=clock.wall)
        hooks = JournalHooks(journal)
        hooks.attach(governor)
        await session.connect()
        rig = Rig(bench, session, governor, clock, journal, hooks)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.session.close()
        rig.journal.close()
        await rig.bench.close()


async def test_quick_relax_runs_step_by_step_and_is_journaled(
    rig_factory: object, profiles: dict[str, Profile]
) -> None:
    rig: Rig = await rig_factory(profiles["shiatsu-aa55"])  # type: ignore[operator]
    program = get_program("quick-relax")
    runner = rig.runner(program)
    result = await runner.run()
    assert result.completed and result.end_reason == "completed"
    assert result.steps_run == 3
    check_device_followed(rig.bench.log, rig.governor, runner)
    # the progress callback named each step in order, with time left counting down
    steps = [p.step for p in runner.seen]  # type: ignore[attr-defined]
    assert sorted({s for s in steps if s}) == [1, 2, 3] and steps[-1] is None
    lefts = [p.left_s for p in runner.seen]  # type: ignore[attr-defined]
    assert lefts == sorted(lefts, reverse=True) and lefts[0] == program.duration_s
    # the journal: one session, from the program, completed, with its heat
    (row,) = rig.journal.history(1, include_simulated=True)
    assert (row.source, row.program, row.end_reason, row.ended_by) == (
        "program", "quick-relax", "completed", "completed",
    )
    assert row.peak_heat == 1 and row.steps_run == 3
    assert row.duration_s == pytest.approx(program.duration_s, abs=1)
    assert row.heat_s == pytest.approx(8 * 60, abs=2)  # heat in the first two steps
    assert row.profile_id == "shiatsu-aa55" and row.device == rig.session.state.address


async def test_pulse_pause_is_lowest_intensity_not_a_stop(
    rig_factory: object, profiles: dict[str, Profile]
) -> None:
    rig: Rig = await rig_factory(profiles["shiatsu-aa55"])  # type: ignore[operator]
    program = get_program("no-heat")  # step 2: 30 s on, 15 s off, for 5 min
    runner = rig.runner(program)
    await runner.run()
    check_device_followed(rig.bench.log, rig.governor, runner)
    paused = [sp for sp in expand(runner.program) if not sp.running and sp.step is not None]
    assert len(paused) >= 6
    # The pauses did not end the session.
    assert len(rig.journal.history(1, include_simulated=True)) == 1


async def test_unattended_heat_is_held_at_the_unattended_level(
    rig_factory: object, profiles: dict[str, Profile]
) -> None:
    rig: Rig = await rig_factory(profiles["ems-v2"])  # type: ignore[operator]
    program = load_program_text(
        'name = "warm"\n'
        '[[steps]]\nduration = "2m"\nmode = "kneading"\nintensity = 3\nheat = 2\n'
        '[[steps]]\nduration = "1m"\nmode = "tapping"\nintensity = 2\nheat = 2\n'
    )
    runner = rig.runner(program, unattended=True)
    assert [f.action for f in runner.assessment.findings] == ["clamped", "clamped"]
    result = await runner.run()
    assert result.completed and result.source == "schedule"
    check_device_followed(rig.bench.log, rig.governor, runner)
    assert max(s.heat for s in rig.bench.log.samples) == 1  # asked 2, got the unattended 1
    (row,) = rig.journal.history(1, include_simulated=True)
    assert (row.source, row.peak_heat) == ("schedule", 1)


async def test_refused_program_never_moves_the_device(
    rig_factory: object, profiles: dict[str, Profile]
) -> None:
    rig: Rig = await rig_factory(profiles["ems-v2"])  # type: ignore[operator]
    program = load_program_text(
        'name = "hot"\n[[steps]]\nduration = "1m"\nmode = "kneading"\nintensity = 2\nheat = 3\n'
    )
    runner = rig.runner(program)
    assert [f.field for f in runner.assessment.refused] == ["heat"]  # 44 C > the 42 C cap
    before = len(rig.bench.log.samples)
    with pytest.raises(SafetyRefused) as info:
        await runner.run()
    assert info.value.reason == "program_refused" and "step 1" in info.value.message
    assert len(rig.bench.log.samples) == before
    assert rig.journal.history(1, include_simulated=True) == []


async def test_clamp_config_lowers_steps_and_the_device_stays_under_the_cap(
    rig_factory: object, profiles: dict[str, Profile]
) -> None:
    rig: Rig = await rig_factory(  # type: ignore[operator]
        profiles["shiatsu-aa55"], Caps(intensity=2, clamp=True)
    )
    program = get_program("quick-relax")  # asks intensity 3
    runner = rig.runner(program)
    assert runner.assessment.clamped and not runner.assessment.refused
    assert any("clamped" in n for n in runner.notes)
    await runner.run()
    assert max(s.intensity for s in rig.bench.log.samples if s.running) == 2
    # without clamp the same caps refuse the program
    strict = assess(program, rig.governor.profile, Limits.compute(
        rig.governor.profile, Caps(intensity=2)))
    assert strict.refused


async def test_cancel_stops_the_device_and_journals_stopped(
    rig_factory: object, profiles: dict[str, Profile]
) -> None:
    rig: Rig = await rig_factory(profiles["shiatsu-aa55"])  # type: ignore[operator]
    runner = rig.runner(get_program("quick-relax"))
    reached_step_2 = asyncio.Event()

    async def sleep(seconds: float) -> None:
        await rig.clock.sleep(seconds)
        if runner.progress is not None and runner.progress.step == 2:
            reached_step_2.set()
            await asyncio.Event().wait()  # park here until cancelled

    runner._sleep = sleep  # type: ignore[method-assign]
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(reached_step_2.wait(), 30)
    assert rig.bench.massager.model.running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    model = rig.bench.massager.model
    assert not model.running and model.effective_heat == 0
    (row,) = rig.journal.history(1, include_simulated=True)
    assert (row.end_reason, row.steps_run) == ("stopped", 2)
    assert runner.result is not None and runner.result.end_reason == "stopped"


async def test_a_stop_from_another_source_ends_the_program(
    rig_factory: object, profiles: dict[str, Profile]
) -> None:
    rig: Rig = await rig_factory(profiles["shiatsu-aa55"])  # type: ignore[operator]
    runner = rig.runner(get_program("quick-relax"))
    stopped = False

    async def sleep(seconds: float) -> None:
        nonlocal stopped
        await rig.clock.sleep(seconds)
        if not stopped and rig.clock() - (runner.started_at or 0) > 300:
            stopped = True
            await rig.governor.stop(source="cli", reason="stopped")

    runner._sleep = sleep  # type: ignore[method-assign]
    result = await asyncio.wait_for(runner.run(), 30)
    assert (result.end_reason, result.steps_run) == ("stopped", 2)
    assert not rig.bench.massager.model.running
    # The stop ended the one session; no new one.
    assert len(rig.journal.history(1, include_simulated=True)) == 1


async def test_runner_heartbeat_keeps_the_dead_man_quiet(
    rig_factory: object, profiles: dict[str, Profile]
) -> None:
    """The caps are enforced after every sleep of a 10-minute program: the runner's
    heartbeat must keep the 60 s dead-man from firing."""
    rig: Rig = await rig_factory(profiles["shiatsu-aa55"])  # type: ignore[operator]
    runner = rig.runner(get_program("quick-relax"))

    async def sleep(seconds: float) -> None:
        await rig.clock.sleep(seconds)
        await rig.governor.enforce()

    runner._sleep = sleep  # type: ignore[method-assign]
    result = await runner.run()
    assert result.end_reason == "completed", rig.governor.events


async def test_progressive_program_uses_completed_nights(
    rig_factory: object, profiles: dict[str, Profile]
) -> None:
    rig: Rig = await rig_factory(profiles["shiatsu-aa55"])  # type: ignore[operator]
    program = get_program("wind-down")  # 1, +1 every 3 nights, up to 3
    runner = rig.runner(program, completed_nights=3)
    await runner.run()
    check_device_followed(rig.bench.log, rig.governor, runner, nights=3)
    assert max(s.intensity for s in rig.bench.log.samples if s.running) == 2
