"""The control socket against bad clients: idle connections time out, a flood of
them never keeps a stop out, a slow watcher never slows anyone else."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from footctl.control.api import DeviceView, Reply, Request
from footctl.control.hub import StateHub
from footctl.control.server import ControlServer
from safety_harness import eventually


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fs-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Fake:
    def __init__(self) -> None:
        self.hub = StateHub()
        self.seen: list[Request] = []

    async def handle(self, request: Request) -> Reply:
        self.seen.append(request)
        return Reply(notes=(request.kind,))


@pytest.fixture
async def served(sock_dir: Path) -> AsyncIterator[tuple[ControlServer, Fake]]:
    fake = Fake()
    server = ControlServer(sock_dir / "o.sock", fake.handle, fake.hub.subscribe,
                           idle_timeout=0.5, max_connections=8)
    await server.start()
    yield server, fake
    await server.close()


async def send(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        data: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), 5))
        return data
    finally:
        writer.close()


async def test_an_idle_connection_is_closed(served: tuple[ControlServer, Fake]) -> None:
    server, _ = served
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    try:
        assert await asyncio.wait_for(reader.read(), 3) == b""  # EOF: hung up on
    finally:
        writer.close()


async def test_a_flood_of_idle_connections_never_keeps_a_stop_out(
    served: tuple[ControlServer, Fake],
) -> None:
    server, fake = served
    idle = [await asyncio.open_unix_connection(str(server.path)) for _ in range(40)]
    try:
        await asyncio.sleep(0.05)
        assert server.connections <= 8
        reply = await asyncio.wait_for(send(server.path, {"kind": "stop"}), 2)
        assert reply["ok"] is True and reply["notes"] == ["stop"]
        assert [r.kind for r in fake.seen] == ["stop"]
        assert server.evicted >= 32
    finally:
        for _, writer in idle:
            writer.close()


async def test_a_stop_is_served_when_every_connection_is_busy(
    served: tuple[ControlServer, Fake],
) -> None:
    """Eight watchers fill the cap and none is idle (nothing to evict): a ninth
    connection still gets its stop served; anything else on it is answered busy."""
    server, fake = served
    watchers = []
    for _ in range(8):
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(b'{"kind": "watch"}\n')
        await writer.drain()
        watchers.append((reader, writer))
    try:
        assert await eventually(lambda: server.connections == 8)
        status = await asyncio.wait_for(send(server.path, {"kind": "status"}), 5)
        assert status["ok"] is False and status["error"] == "busy"
        reply = await asyncio.wait_for(send(server.path, {"kind": "stop"}), 5)
        assert reply["ok"] is True and reply["notes"] == ["stop"]
        assert [r.kind for r in fake.seen] == ["stop"]
        assert server.evicted == 0
    finally:
        for _, writer in watchers:
            writer.close()


async def test_a_watcher_that_never_reads_does_not_block_publishing_or_others(
    served: tuple[ControlServer, Fake],
) -> None:
    server, fake = served
    _, writer = await asyncio.open_unix_connection(str(server.path))
    writer.write(b'{"kind": "watch"}\n')
    await writer.drain()
    try:
        big = "x" * 60
        for i in range(2000):  # far more than any socket buffer holds, never read
            fake.hub.publish(DeviceView(device_id="A", address="", name=big, profile=str(i)))
        await asyncio.sleep(0)
        reply = await asyncio.wait_for(send(server.path, {"kind": "stop"}), 2)
        assert reply["ok"] is True
    finally:
        writer.close()


async def test_watch_streams_the_current_state_then_each_change(
    served: tuple[ControlServer, Fake],
) -> None:
    server, fake = served
    fake.hub.publish(DeviceView(device_id="A", address="", name="a", profile="p"))
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    try:
        writer.write(b'{"kind": "watch"}\n')
        await writer.drain()
        first = json.loads(await asyncio.wait_for(reader.readline(), 3))
        assert first["event"] == "state" and first["device"]["name"] == "a"
        fake.hub.publish(DeviceView(device_id="A", address="", name="b", profile="p"))
        second = json.loads(await asyncio.wait_for(reader.readline(), 3))
        assert second["device"]["name"] == "b" and second["seq"] == first["seq"] + 1
    finally:
        writer.close()
