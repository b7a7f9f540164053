"""Flow control of the bridge, both ways: how often state goes out (a token bucket per
massager), and how commands come in (one lane per massager)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from footctl.control.api import ErrorReply
from footctl.errors import ExitCode
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
# Carry out one command; None, or the error reply (not published yet: the caller does).
Execute = Callable[[str, Command, bytes, str], Awaitable[ErrorReply | None]]
# Publish the error reply to one command on the error topic.
Report = Callable[[str, Item, ErrorReply], Awaitable[None]]

# Refusals that belong to the moment, not to one setting: a stop voided the request, or
# the off of a limit was being written. Nothing of such a request is tried again.
_NOT_RETRIED = frozenset({"superseded_by_stop", "session_ending"})


def _tried_alone(error: ErrorReply) -> bool:
    """A merged setting refused for this reason may be one bad value among good ones:
    each payload is then carried out on its own, in order."""
    return error.exit_code in (ExitCode.USAGE, ExitCode.REFUSED) and (
        error.reason not in _NOT_RETRIED)


def _superseded(later: Item) -> ErrorReply:
    """The answer to a waiting command that a later program start replaced."""
    return ErrorReply(
        error="refused", reason="superseded_by_program", exit_code=ExitCode.REFUSED,
        message=f"not carried out: a program start ({later[2]}) came after it while "
        "another command was in flight, and sets everything anew",
    )


@dataclass
class _Queued:
    """A command waiting for its turn: settings that arrived one after another are
    merged into one request (``item``, with the latest payload and topic), and each
    payload is kept (``parts``, in order; none that later ones wholly override) so
    that a refusal of the merged request loses none of the good ones."""

    item: Item
    parts: list[Item]

    def absorb(self, later: Item) -> None:
        """Merge a later settings change into this one (both are Apply)."""
        first, then = self.item[0], later[0]
        assert isinstance(first, Apply)
        assert isinstance(then, Apply)
        self.item = (first.merged(then), later[1], later[2])
        self.parts = _needed([*self.parts, later])


def _fields(command: Command) -> set[str]:
    assert isinstance(command, Apply)
    return {f for f in ("intensity", "heat", "mode", "zone") if getattr(command, f) is not None}


def _needed(parts: list[Item]) -> list[Item]:
    """The payloads that still say something: one whose every setting a later one sets
    again is dropped, and a plain switch-on beside any setting (a setting switches on).
    At most one per field is left, so a flood stays small."""
    kept: list[Item] = []
    for i, part in enumerate(parts):
        own = _fields(part[0])
        later: set[str] = set().union(*(_fields(p[0]) for p in parts[i + 1:]))
        if own and own <= later:
            continue
        if not own and len(parts) > 1:
            continue
        kept.append(part)
    return kept


@dataclass
class _Lane:
    busy: bool = False
    pending: list[_Queued] = field(default_factory=list)
    stops: int = 0


class CommandLanes:
    """One lane per massager: one command in flight and, waiting, at most a program
    start and then a settings change (later settings merge into a waiting one; a later
    program start replaces what waits, as it sets everything anew, and answers each
    replaced payload). Nothing waiting is lost unanswered: a setting refused in a merge
    is tried alone, and a program start is not replaced by a later setting (which then
    runs after it, and is answered). A stop goes past everything, at once, and voids
    what was waiting (a command sent before a stop must not run after it). A flood of
    commands from one client so holds at most a few per massager."""

    def __init__(self, execute: Execute, report: Report) -> None:
        self._execute = execute
        self._report = report
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, device_id: str, item: Item) -> None:
        """Carry out ``item`` for ``device_id`` (in the background)."""
        lane = self._lanes.setdefault(device_id, _Lane())
        command = item[0]
        if isinstance(command, Stop):
            lane.pending.clear()
            lane.stops += 1
            self._spawn(self._carry_out(device_id, lane, _Queued(item, [item])),
                        f"stop {device_id}")
            return
        if lane.busy:
            last = lane.pending[-1] if lane.pending else None
            if isinstance(command, Apply) and last is not None and isinstance(
                    last.item[0], Apply):
                last.absorb(item)
            elif isinstance(command, Apply):
                lane.pending.append(_Queued(item, [item]))
            else:  # a program start: what waits before it would be set anew at once
                for dropped in lane.pending:
                    for part in dropped.parts:
                        self._spawn(self._report(device_id, part, _superseded(item)),
                                    f"superseded {device_id}")
                lane.pending[:] = [_Queued(item, [item])]
            return
        lane.busy = True
        self._spawn(self._drain(device_id, lane, _Queued(item, [item])), f"set {device_id}")

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

    async def _drain(self, device_id: str, lane: _Lane, first: _Queued) -> None:
        queued: _Queued | None = first
        try:
            while queued is not None:
                await self._carry_out(device_id, lane, queued)
                queued = lane.pending.pop(0) if lane.pending else None
        finally:
            lane.busy = False

    async def _carry_out(self, device_id: str, lane: _Lane, queued: _Queued) -> None:
        stops = lane.stops
        error = await self._execute(device_id, *queued.item)
        if error is None:
            return
        if len(queued.parts) < 2 or not _tried_alone(error):
            await self._report(device_id, queued.item, error)
            return
        # One of the merged payloads was refused: each on its own, in the order sent,
        # each answered for itself; none after a stop that came meanwhile.
        for part in queued.parts:
            if lane.stops != stops:
                return
            part_error = await self._execute(device_id, *part)
            if part_error is not None:
                await self._report(device_id, part, part_error)
