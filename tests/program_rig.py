"""A rig for programs and the daemon: a virtual massager whose model runs on the same
fake clock as the governor and the runner, so the device's own record of what it
did (and when) can be checked against the program's timeline.

Time: ``FakeClock`` is the monotonic clock; ``wall()`` maps it onto an aware UTC
datetime (``BASE_WALL`` at clock 1000), so the scheduler, the journal and the
device all see one time line, and a 15-minute program runs in moments.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import safety_harness
from footctl.device.profile.schema import Profile
from footctl.device.transport.ble import Radio
from footctl.programs import expand
from footctl.programs.runner import ProgramRunner
from footctl.safety.governor import SafetyGovernor
from footctl.virtual import VirtualRadio, radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.model import MassagerModel
from footctl.virtual.peripheral import VirtualMassager

CLOCK_START = 1000.0
# Each setpoint starts within this much (fake) time of its offset. The governor's ramp
# (one level per 10 s) is the default; every setpoint in the test programs lasts long
# enough for it, so the state at the end of each setpoint is exact.
SETTLE_S = 0.5
# A Monday evening in winter (UTC, so no DST in play unless a test asks for a zone).
BASE_WALL = datetime(2026, 1, 5, 21, 0, tzinfo=UTC)


class FakeClock(safety_harness.FakeClock):
    """A monotonic clock that moves only when told (or when something sleeps on it),
    with the matching wall-clock time."""

    def __init__(self) -> None:
        super().__init__(CLOCK_START)

    def wall(self) -> datetime:
        """The same instant as an aware UTC datetime."""
        return BASE_WALL + timedelta(seconds=self.now - CLOCK_START)

    def set_wall(self, when: datetime) -> None:
        """Move the clock to a wall-clock instant (never backwards)."""
        target = CLOCK_START + (when - BASE_WALL).total_seconds()
        assert target >= self.now, "the fake clock only moves forward"
        self.now = target


@dataclass(frozen=True)
class Sample:
    """What the device was doing from ``t`` (fake clock) on."""

    t: float
    running: bool
    intensity: int
    heat: int
    mode: str


@dataclass
class DeviceLog:
    """Every change of the virtual massager's state, stamped with the fake clock."""

    model: MassagerModel
    clock: FakeClock
    samples: list[Sample] = field(default_factory=list)

    def start(self) -> None:
        self._record()
        self.model.subscribe(self._record)

    def _record(self) -> None:
        m = self.model
        self.samples.append(Sample(self.clock(), m.running, m.intensity, m.effective_heat, m.mode))

    def at(self, t: float) -> Sample:
        """The state in force at fake time ``t``."""
        current = self.samples[0]
        for s in self.samples:
            if s.t > t + 1e-9:
                break
            current = s
        return current

    def changes_between(self, start: float, end: float) -> list[Sample]:
        """Samples taken in ``[start, end]``."""
        return [s for s in self.samples if start - 1e-9 <= s.t <= end + 1e-9]


@dataclass
class VirtualBench:
    world: VirtualWorld
    massager: VirtualMassager
    vradio: VirtualRadio
    radio: Radio
    log: DeviceLog

    async def close(self) -> None:
        await self.vradio.close()
        await self.massager.close()
        await self.world.close()


async def virtual_bench(profile: Profile, clock: FakeClock) -> VirtualBench:
    """A virtual massager of ``profile`` on a fresh virtual link, its model on ``clock``."""
    world = VirtualWorld()
    model = MassagerModel(profile, now=clock)
    massager = await VirtualMassager.create(world, profile, model=model)
    vradio = await radio_for_world(world)
    radio = Radio("virtual link", vradio.scanner_backend, vradio.client_backend)
    log = DeviceLog(model, clock)
    log.start()
    return VirtualBench(world, massager, vradio, radio, log)


def check_device_followed(
    log: DeviceLog, governor: SafetyGovernor, runner: ProgramRunner, nights: int = 0
) -> None:
    """For every setpoint of the timeline: the device changed at its (fake) second,
    and held the setpoint's state until the next one. A pause is the lowest intensity."""
    assert runner.started_at is not None
    t0 = runner.started_at
    timeline = expand(runner.program, nights)
    low = governor.limits.intensity_min
    unattended_heat = governor.limits.unattended_heat_level
    for sp, nxt in itertools.pairwise(timeline):
        start, end = t0 + sp.offset_s, t0 + nxt.offset_s
        changed = log.changes_between(start, start + SETTLE_S)
        assert changed, f"the device did nothing at {sp.offset_s:g} s into the program ({sp})"
        state = log.at(end - 1e-6)
        heat = min(sp.heat, unattended_heat) if runner.unattended else sp.heat
        want = (True, sp.intensity if sp.running else low, heat, sp.mode)
        got = (state.running, state.intensity, state.heat, state.mode)
        assert got == want, f"at {nxt.offset_s:g} s (end of {sp}): device {got}, wanted {want}"
    end = t0 + timeline[-1].offset_s
    final = log.at(end + SETTLE_S)
    assert (final.running, final.heat) == (False, 0), "not everything off at the end"
    # ...and not before: the program never switched the device off half-way.
    assert all(s.running for s in log.samples if t0 + SETTLE_S < s.t < end)
