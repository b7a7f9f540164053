"""Property test: the planner's rules hold on every version-2 profile against the virtual
massager model, whatever targets, stops and lost reports come, in any order.

A small pure driver plays the session's part (plan, write, believe; on a reporting device
one key press per plan and a fresh report before the next) on a fake clock. The device
may go mute (acts on nothing, reports nothing: a stale state is all footctl has).

* a stop never switches a device on;
* a stop with the device listening leaves it off;
* on a stale state (no report since a key press) a key is never pressed again;
* without status, the believed state is the device's state (presses are counted right).
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from footctl.device import codec, planner
from footctl.device.profile.checks import value_domain
from footctl.device.profile.loader import find_profiles
from footctl.device.profile.schema import Profile
from footctl.state import Command, DeviceState
from footctl.virtual.model import MassagerModel

PROFILES = find_profiles()
V2 = sorted(pid for pid, p in PROFILES.items() if p.is_v2)

# A stop is re-sent at most this many times before the test calls it unconfirmed.
STOP_SENDS = 4


class Driver:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.clock = 0.0
        self.model = MassagerModel(profile, now=lambda: self.clock, rng=random.Random(0))
        self.model.link_up()
        self.status = profile.capabilities.reports_status
        self.view = DeviceState(address="", profile_id=profile.id, assumed=True)
        self.unconfirmed: set[str] = set()
        self.timer_set: int | None = None
        self.key_frames: list[str] = []  # state-dependent key presses written
        self.missed = False
        # keys pressed since the last fresh report, and the view before the last press
        self.since_report: list[str] = []
        self.before_press: DeviceState | None = None
        if profile.connection.wake is not None:
            self.send(Command(profile.connection.wake))
        self.refresh()

    def refresh(self) -> None:
        """A report, if the device sends one: it replaces what was believed."""
        if not self.status or self.model.mute:
            return
        r = self.model.report()
        self.view = dataclasses.replace(
            self.view, running=bool(r.running), intensity=r.intensity, heat=r.heat or 0,
            mode=r.mode, zone=r.zone, assumed=False,
        )
        self.unconfirmed.clear()
        self.since_report.clear()

    def late_report(self) -> None:
        """A report written before the last key press arrives after it: it shows the old
        state, and (as in the session) does not count as the press's result."""
        if self.status and self.before_press is not None:
            self.view = self.before_press

    def send(self, command: Command) -> None:
        if self.model.mute:
            self.missed = True  # the device did not hear it: a belief may now be wrong
        for w in codec.writes(self.profile, command):
            if isinstance(w, codec.Pause):
                self.clock += w.seconds
            else:
                self.model.receive(w.frame, endpoint=w.endpoint)
                self.clock += 0.01

    def run(self, plan: planner.Plan) -> None:
        for step in plan.steps:
            if step.command is None:
                self.clock += step.pause
                continue
            if step.press:
                self.before_press = dataclasses.replace(self.view, assumed=False)
            self.send(step.command)
            if step.press:
                name = step.command.name
                assert not (self.status and name in self.since_report), (
                    f"{name} pressed twice on a state no report has refreshed"
                )
                self.since_report.append(name)
                self.key_frames.append(name)
                if self.status:
                    self.unconfirmed.add(step.setting or "power")
            if step.setting == "timer":
                self.timer_set = step.believed.timer
            elif step.setting == "power":
                self.timer_set = None
            self.view = dataclasses.replace(step.believed, assumed=True)
            if step.press and self.status:
                break
        self.refresh()

    def apply(self, **target: object) -> None:
        for _ in range(planner.MAX_PRESSES):
            plan = planner.plan(self.profile, self.view, running=True, timer_set=self.timer_set,
                                unconfirmed=self.unconfirmed, **target)  # type: ignore[arg-type]
            if plan.refused is not None or not plan.steps:
                return
            self.run(plan)
            if not self.status and not any(s.press for s in plan.steps):
                return
            if self.status and self.model.mute and any(s.press for s in plan.steps):
                return  # no report shows what the press did: the session stops here

    def stop(self) -> None:
        for _ in range(STOP_SENDS):
            plan = planner.plan_off(self.profile, self.view, unconfirmed=self.unconfirmed)
            if plan.refused is None:
                self.run(plan)
            else:
                self.refresh()  # "ask instead"
            if not self.model.running and self.model.heat == 0 and not self.view.running:
                return


def targets(profile: Profile) -> st.SearchStrategy[dict[str, object]]:
    fields: dict[str, st.SearchStrategy[object]] = {}
    for setting in ("intensity", "mode", "heat", "zone", "timer"):
        if setting not in profile.settings:
            continue
        domain = value_domain(profile, setting)
        values = [v if setting == "mode" else int(v) for v in domain]
        if setting == "zone":
            values = [v for v in values if v != 0]
        fields[setting] = st.sampled_from(values)
    return st.fixed_dictionaries({}, optional=fields)


ACTIONS = st.one_of(
    st.tuples(st.just("apply"), st.integers(0, 10**6)),
    st.tuples(st.just("stop"), st.just(0)),
    st.tuples(st.just("mute"), st.integers(0, 1)),
    st.tuples(st.just("late"), st.just(0)),
)


@pytest.mark.parametrize("pid", V2)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_the_rules_hold_in_any_order(pid: str, data: st.DataObject) -> None:
    profile = PROFILES[pid]
    d = Driver(profile)
    actions = data.draw(st.lists(ACTIONS, max_size=12), label="actions")
    for kind, arg in actions:
        if kind == "apply":
            target = data.draw(targets(profile), label="target")
            d.apply(**target)
            if not d.status and not d.missed:
                # no status: presses were counted right, the belief is the device
                assert d.view.running == d.model.running
                assert d.view.intensity == d.model.intensity
                if "mode" in profile.settings:
                    assert d.view.mode == d.model.mode
        elif kind == "stop":
            was_on = d.model.running
            frames_before = len(d.key_frames)
            d.stop()
            if not was_on:
                assert not d.model.running, "a stop switched the device on"
            if not d.model.mute:
                assert not d.model.running and d.model.heat == 0, "a stop left it on"
            elif d.status:
                # muted: nothing refreshes the state; no key is pressed twice on it
                pressed = d.key_frames[frames_before:]
                assert len(pressed) == len(set(pressed)) <= 1, pressed
        elif kind == "late":
            d.late_report()
        else:
            d.model.mute = bool(arg)
            if not arg:
                d.refresh()
