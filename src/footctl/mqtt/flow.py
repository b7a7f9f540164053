"""Flow control of the bridge, both ways: how often state goes out (a token bucket per
massager), and how commands come in (one lane per massager)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from footctl.mqtt.payloads import Apply, Command, Stop

# "At most a few state messages per second per massager", without holding back the
# answer to a command: a token bucket per massager. A change goes out at once while
# tokens last (a burst of STATE_BURST: a command's result is never delayed by the
# once-a-second timer update just before it); past that, STATE_RATE_PER_S, each
# carrying the latest view (the ones in between are coalesced away).
STATE_BURST = 5
STATE_RATE_PER_S = 5.0


@dataclass
class Bucket:
    """Tokens for the state messages of one massager."""

    tokens: float = STATE_BURST
    at: float = float("-inf")

    def _refill(self, now: float) -> None:
        self.tokens = min(STATE_BURST, self.tokens + (now - self.at) * STATE_RATE_PER_S)
        self.at = now

    def take(self, now: float) -> bool:
        """Spend a token if there is one."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def ready_at(self, now: float) -> float:
        """When the next token is there."""
        self._refill(now)
        return now + max(0.0, 1 - self.tokens) / STATE_RATE_PER_S


Item = tuple[Command, bytes, str]  # what to do, the payload it came as, its topic
Execute = Callable[[str, Command, bytes, str], Awaitable[None]]


@dataclass
class _Lane:
    busy: bool = False
    pending: Item | None = None


class CommandLanes:
    """One lane per massager: one command in flight and one waiting (the latest; a
    waiting settings change absorbs the next one). A stop goes past both, at once, and
    voids what was waiting (a command sent before a stop must not run after it). A
    flood of commands from one client so holds at most two per massager."""

    def __init__(self, execute: Execute) -> None:
        self._execute = execute
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, device_id: str, item: Item) -> None:
        """Carry out ``item`` for ``device_id`` (in the background)."""
        lane = self._lanes.setdefault(device_id, _Lane())
        command = item[0]
        if isinstance(command, Stop):
            lane.pending = None
            self._spawn(self._execute(device_id, *item), f"stop {device_id}")
            return
        if lane.busy:
            queued = lane.pending
            if queued is not None and isinstance(queued[0], Apply) and isinstance(command, Apply):
                item = (queued[0].merged(command), item[1], item[2])
            lane.pending = item
            return
        lane.busy = True
        self._spawn(self._drain(device_id, lane, item), f"set {device_id}")

    def cancel(self) -> None:
        """Stop every command task (the bridge is going away)."""
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Awaitable[None], what: str) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run(), name=f"footctl.mqtt[{what}]")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, device_id: str, lane: _Lane, first: Item) -> None:
        item: Item | None = first
        try:
            while item is not None:
                await self._execute(device_id, *item)
                item, lane.pending = lane.pending, None
        finally:
            lane.busy = False
