"""Where the time of a confirmed set through the socket goes (a diagnostic, not a figure
of ``scripts/bench``): the ``one`` shape of ``bench/control.py`` (a client process of
its own, raw round trips interleaved), with ``time.perf_counter`` stamps along the
path. ``perf_counter`` is CLOCK_MONOTONIC on Linux, the same clock in both processes,
so the client's stamps and the owner's line up. Prints the median of each segment
(us), then the figure as ``bench/control.py`` computes it. The stamps wrap methods of
the control plane, the governor and the session by name: when one is renamed this
says so and leaves that segment out.

``--floor`` replaces the owner's request by what the socket costs with no owner in
it: a raw round trip on the same link, then a reply made once and sent again: the
ratio the socket path would have if the owner, the governor, the session's command
and the view cost nothing.

    .venv/bin/python bench/set_breakdown.py [--samples 300] [--floor]

Read the segments as relative costs: each stamp is a call that takes time itself,
and code that runs once per set runs with cold caches (a parse costs about 4x its
cost in a tight loop), which is what the figure sees too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import control as bench

from footctl.control import owner as owner_mod
from footctl.control import server as server_mod
from footctl.device import codec
from footctl.device import session as session_mod
from footctl.safety import governor as governor_mod
from footctl.state import Command

STAMPS: dict[str, float] = {}
ROWS: list[dict[str, float]] = []
now = time.perf_counter

SEGMENTS = [
    ("c_start", "c_sent", "client: request encoded and written"),
    ("c_sent", "s_line", "wake-up: the owner's loop has the line"),
    ("s_line", "parsed", "parse_request (validation at the edge)"),
    ("parsed", "request", "server to Owner.request"),
    ("request", "gov", "owner: dispatch, pick, submit, lock"),
    ("gov", "apply", "governor before the session's apply"),
    ("apply", "write", "session before the write"),
    ("write", "applied", "the write, the notification, confirmed (cf. raw)"),
    ("applied", "gov_done", "governor after the apply"),
    ("gov_done", "answered", "owner: view published, reply built"),
    ("answered", "c_read", "reply serialized and written, the client has the line"),
    ("c_read", "c_end", "client: reply parsed"),
    ("c_start", "c_end", "total (the client's figure)"),
]


def _first(key: str) -> None:
    STAMPS.setdefault(key, now())


def _wrap_async(cls: type, name: str, before: str, after: str) -> None:
    original = getattr(cls, name, None)
    if original is None:
        print(f"note: {cls.__name__}.{name} is gone: no {before!r} / {after!r} stamps",
              file=sys.stderr)
        return

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        _first(before)
        result = await original(*args, **kwargs)
        STAMPS[after] = now()
        return result

    setattr(cls, name, wrapped)


def install(floor: bool) -> None:
    """Put the stamps in (and, with ``floor``, the owner's request out)."""
    parse = server_mod.parse_request  # type: ignore[attr-defined]

    def parse_request(line: Any) -> Any:
        _first("s_line")
        request = parse(line)
        STAMPS["parsed"] = now()
        return request

    setattr(server_mod, "parse_request", parse_request)  # noqa: B010 - a stamp in place
    send: Callable[..., Any] = server_mod.ControlServer._send

    async def sent(writer: Any, message: Any) -> None:
        STAMPS["answered"] = now()
        await send(writer, message)

    setattr(server_mod.ControlServer, "_send", staticmethod(sent))  # noqa: B010
    _wrap_async(governor_mod.SafetyGovernor, "submit", "gov", "gov_done")
    _wrap_async(session_mod.DeviceSession, "apply", "apply", "applied")
    _wrap_async(session_mod.DeviceSession, "_write", "write", "_")
    if not floor:
        _wrap_async(owner_mod.Owner, "request", "request", "answered")
        return
    request = owner_mod.Owner.request
    canned: dict[str, Any] = {}

    async def floor_request(self: owner_mod.Owner, req: Any) -> Any:
        STAMPS["request"] = now()
        held = self.held[0]
        session = held.session
        link = session._link
        assert link is not None
        before = session.state.reports
        STAMPS["write"] = now()
        await link.write(codec.encode(held.spec.profile, Command("query")))
        await session._wait_report(before, 5.0)
        STAMPS["applied"] = now()
        if "reply" not in canned:
            canned["reply"] = await request(self, req)
        return canned["reply"]

    setattr(owner_mod.Owner, "request", floor_request)  # noqa: B010


async def _set_in_process(client: asyncio.subprocess.Process, name: str, level: int) -> float:
    assert client.stdin is not None
    assert client.stdout is not None
    STAMPS.clear()
    client.stdin.write(f"{name} {level}\n".encode())
    await client.stdin.drain()
    line = await client.stdout.readline()
    if not line:
        raise RuntimeError("the benchmark client died")
    ms, start, sent, read, end, size = line.split()
    ROWS.append(dict(STAMPS, c_start=float(start), c_sent=float(sent), c_read=float(read),
                     c_end=float(end), reply_bytes=float(size)))
    return float(ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--floor", action="store_true",
                        help="the owner's request replaced by a raw round trip and a "
                        "canned reply: what the socket alone costs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    install(args.floor)
    bench._set_in_process = _set_in_process
    got = asyncio.run(bench._set_latencies(1, args.samples))
    rows = ROWS[len(ROWS) // 10:]  # the first tenth warms up
    for start, end, what in SEGMENTS:
        values = [(r[end] - r[start]) * 1e6 for r in rows if start in r and end in r]
        if values:
            print(f"{statistics.median(values):8.1f} us  {what}")
    print(f"reply: {int(rows[0]['reply_bytes'])} bytes; {len(rows)} samples after warm-up")
    via, raw = bench.stats(got["set_via_socket_ms"]), bench.stats(got["raw_round_trip_ms"])
    print(f"set via socket {via}\nraw round trip {raw}")
    print(f"ratio median {via['median'] / raw['median']:.2f}, p99 {via['p99'] / raw['p99']:.2f}"
          + (" (floor: no owner in the path)" if args.floor else ""))


if __name__ == "__main__":
    main()
