"""The heat dose: how much heat the feet have had lately (pure; no I/O, no clock).

Burn risk is temperature x time, and skin that was heated a moment ago has not cooled
down: a short gap must not reset a heat cap (a 14:55 / 0:05 / 5:00 program ran 19:55
of heat under a 15 min "continuous heat" cap). So the cap limits a *dose*:

* heat time, weighted by how hot the level is (:func:`heat_weights`): a minute at the
  device's lowest level weighs 1, and each ``DOSE_DOUBLING_C`` hotter doubles it;
* counted within a sliding window of ``DOSE_WINDOW_S``: heat older than that is
  forgotten, so heat switched on and off again and again still adds up;
* and reset only by a cool-down: ``HEAT_COOLDOWN_S`` without any heat. Once the dose
  reached its cap, heat stays locked until that cool-down has passed (not merely until
  old heat slid out of the window).

The cap itself is ``Limits.heat_s`` (15 min at the lowest level by default, ceiling 30).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

MINUTE = 60.0

# Heat within this window adds up. An hour covers any one session (ceiling 45 min)
# plus the rest around it, so on/off cycling inside a session cannot escape the cap.
DOSE_WINDOW_S = 60 * MINUTE

# Heat-free time after which the dose starts again from zero. Skin warmed to ~40 C
# returns to its resting temperature within about ten minutes; 15 min leaves a margin
# and equals the floor of the cooldown between sessions (limits.FLOOR_COOLDOWN_S), so a
# new process, which cannot see the last one's dose, never meets feet that are warm.
HEAT_COOLDOWN_S = 15 * MINUTE

# Each this many degrees hotter than the device's lowest level doubles the weight of a
# minute of heat (thermal damage rises steeply with temperature; the shipped 3-level
# profile, 38/41/44 C, weighs 1, 2 and 4).
DOSE_DOUBLING_C = 3.0


def heat_weights(celsius_by_level: Sequence[float]) -> tuple[float, ...]:
    """Weights indexed by heat level (index 0, no heat, weighs 0) for a device whose
    levels 1..n mean ``celsius_by_level``. Never below 1, and never lower than a
    lower level's."""
    weights = [0.0]
    base = min(celsius_by_level, default=0.0)
    for celsius in celsius_by_level:
        w = max(1.0, 2.0 ** ((celsius - base) / DOSE_DOUBLING_C))
        weights.append(max(w, weights[-1]))
    return tuple(weights)


def level_weight(weights: Sequence[float], level: int) -> float:
    """The weight of ``level``; levels past the table weigh like doubling per level."""
    if level <= 0:
        return 0.0
    if level < len(weights):
        return weights[level]
    top = weights[-1] if len(weights) > 1 else 1.0
    return top * 2.0 ** (level - max(1, len(weights) - 1))


def default_weights(max_level: int) -> tuple[float, ...]:
    """Weights without temperatures: each level up doubles (as 3 C steps do)."""
    return (0.0, *(2.0 ** (level - 1) for level in range(1, max_level + 1)))


@dataclass(frozen=True)
class HeatDose:
    """Heat history as closed spans ``(start, end, weight)`` plus the open one.

    Times are on one monotonic clock. Every method is pure: it returns a new value.
    """

    spans: tuple[tuple[float, float, float], ...] = ()
    since: float | None = None  # the open span's start, while heat is on
    weight: float = 0.0  # the open span's weight
    locked: bool = False  # the cap was reached: no heat until a cool-down passed

    def _cooled(self, now: float) -> bool:
        if self.since is not None:
            return False
        if not self.spans:
            return True
        return now - self.spans[-1][1] >= HEAT_COOLDOWN_S

    def settle(self, now: float) -> HeatDose:
        """Forget what the window and a passed cool-down forget."""
        if self._cooled(now):
            return HeatDose() if (self.spans or self.locked) else self
        horizon = now - DOSE_WINDOW_S
        if self.spans and self.spans[0][1] <= horizon:
            return replace(self, spans=tuple(s for s in self.spans if s[1] > horizon))
        return self

    def heating(self, now: float, weight: float) -> HeatDose:
        """Heat is now on at ``weight`` (0: off)."""
        d = self.settle(now)
        if (d.since is not None and weight == d.weight) or (d.since is None and weight <= 0):
            return d  # no change (the common case: called on every report)
        spans = d.spans
        if d.since is not None and now > d.since:
            spans = (*spans, (d.since, now, d.weight))
        if weight <= 0:
            return replace(d, spans=spans, since=None, weight=0.0)
        return replace(d, spans=spans, since=now, weight=weight)

    def lock(self) -> HeatDose:
        """The cap was reached: heat is refused until the cool-down passed."""
        return replace(self, locked=True)

    def is_locked(self, now: float) -> bool:
        """True while heat is refused (the cap was reached, no cool-down since)."""
        return self.settle(now).locked

    def dose(self, now: float) -> float:
        """Weighted seconds of heat within the window since the last cool-down."""
        d = self.settle(now)
        horizon = now - DOSE_WINDOW_S
        total = 0.0
        for start, end, weight in d.spans:
            total += weight * max(0.0, end - max(start, horizon))
        if d.since is not None:
            total += d.weight * max(0.0, now - max(d.since, horizon))
        return total

    def left(self, now: float, cap_s: float) -> float | None:
        """Seconds of heat at the current weight before the cap (None while off)."""
        d = self.settle(now)
        if d.since is None or d.weight <= 0:
            return None
        return max(0.0, (cap_s - d.dose(now)) / d.weight)

    def reached(self, now: float, cap_s: float) -> bool:
        """True if the dose has reached the cap (with heat on or not)."""
        return self.dose(now) >= cap_s - 1e-9


def program_doses(steps: Sequence[tuple[float, int]], weights: Sequence[float]) -> list[float]:
    """For a program of ``(duration_s, heat_level)`` steps run back to back: the heat
    dose at the end of each step, as the governor counts it (window, cool-down)."""
    d = HeatDose()
    t = 0.0
    out: list[float] = []
    for duration, level in steps:
        d = d.heating(t, level_weight(weights, level))
        t += duration if math.isfinite(duration) else 0.0
        out.append(d.dose(t))
    return out
