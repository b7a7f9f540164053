"""``footctl sim PROFILE_ID...``: virtual massagers in their own process, on one link.

The process owns a :class:`VirtualWorld` with one :class:`VirtualMassager` per
profile given (``footctl sim ems-v2 shiatsu-aa55*3``) and serves

* the *link*: a controller on the world's link for an app process, over TCP
  (:func:`footctl.virtual.link.serve_controller_tcp`; the app uses
  :func:`footctl.virtual.radio_for_link`);
* a *control* port (loopback only) speaking JSON lines, one answer line per request:

  ``{"cmd": "state"}``       the massager's state (power, intensity, heat, mode, ...,
                             connected, dropped)
  ``{"cmd": "frames"}``      the frames received (``"last": N`` for the newest N)
  ``{"cmd": "drop"}`` / ``{"cmd": "restore"}``   go out of range / come back
  ``{"cmd": "reboot"}``      power-cycle: state back to off, the link is lost
  ``{"cmd": "fault", "name": ..., "value": ...}``  set a fault knob of the model
  ``{"cmd": "refuse", "value": true, "how": "reject"|"hide"}``  refuse connections
  ``{"cmd": "ping"}``

  Answers carry ``"ok": true`` or ``"ok": false`` with an ``"error"``; bad input never
  ends the process. With several massagers, ``"device"`` (an address, or the index
  0, 1, ... in the order given) says which one a request is for; the first by default.
  ``{"cmd": "list"}`` names them all.

The first line on stdout (flushed) is::

    footctl sim: <id> "<name>" <address>[, ...] control 127.0.0.1:<port> link <host>:<port>

ending with the link address. Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from footctl.device.profile.loader import get_profile, load_profile
from footctl.device.profile.schema import Profile
from footctl.errors import FootctlError
from footctl.virtual.link import VirtualWorld, serve_controller_tcp
from footctl.virtual.peripheral import VirtualMassager

__all__ = [
    "FRAME_LOGGER",
    "SimControl",
    "SimRequestError",
    "control_answer",
    "main",
    "run_sim",
    "run_sim_many",
]

_LOG = logging.getLogger(__name__)

#: The logger frames go to with ``frame_log=True``.
FRAME_LOGGER = "footctl.sim.frames"
#: Longest control request line.
MAX_REQUEST_BYTES = 64 * 1024


async def control_answer(massager: VirtualMassager, request: object) -> dict[str, Any]:
    """The answer to one control request (already parsed from JSON)."""
    if not isinstance(request, dict):
        return {"ok": False, "error": 'a request is a JSON object such as {"cmd": "state"}'}
    cmd = request.get("cmd")
    if cmd == "ping":
        return {"ok": True}
    if cmd == "state":
        return {
            "ok": True,
            **massager.model.state(),
            "connected": massager.connected,
            "dropped": massager.dropped,
            "address": massager.address,
            "name": massager.name,
            "notifications": massager.notifications_sent,
            "oversize_writes": massager.oversize_writes,
        }
    if cmd == "frames":
        frames = [f.to_dict() for f in massager.frames]
        last = request.get("last")
        if last is not None:
            if isinstance(last, bool) or not isinstance(last, int) or last < 0:
                return {"ok": False, "error": "'last' takes a whole number of frames"}
            frames = frames[-last:] if last else []
        return {"ok": True, "frames": frames}
    if cmd == "drop":
        await massager.drop()
        return {"ok": True}
    if cmd == "restore":
        await massager.restore()
        return {"ok": True}
    if cmd == "reboot":
        await massager.reboot()
        return {"ok": True}
    if cmd == "fault":
        name = request.get("name")
        if not isinstance(name, str):
            return {"ok": False, "error": "'fault' needs a 'name'"}
        try:
            massager.model.set_fault(name, request.get("value"))
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "faults": massager.model.state()["faults"]}
    if cmd == "refuse":
        value, how = request.get("value", True), request.get("how", "reject")
        if not isinstance(value, bool) or how not in ("reject", "hide"):
            return {"ok": False, "error": "'refuse' takes value true/false and how reject/hide"}
        await massager.world.refuse_connections(massager.device, value, how=how)
        return {"ok": True}
    known = "state, frames, drop, restore, reboot, fault, refuse, ping"
    return {"ok": False, "error": f"unknown cmd {cmd!r}; known: {known}"}


def _pick(massagers: list[VirtualMassager], request: object) -> VirtualMassager | str:
    """The massager a control request is for, or why none is."""
    wanted = request.get("device") if isinstance(request, dict) else None
    if wanted is None:
        return massagers[0]
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        if 0 <= wanted < len(massagers):
            return massagers[wanted]
        return f"no massager #{wanted} (0 to {len(massagers) - 1})"
    if isinstance(wanted, str):
        for m in massagers:
            if m.address.lower() == wanted.lower():
                return m
    return f"no massager {wanted!r}; 'list' names them"


async def _answer_many(massagers: list[VirtualMassager], request: object) -> dict[str, Any]:
    if isinstance(request, dict) and request.get("cmd") == "list":
        return {"ok": True, "massagers": [
            {"index": i, "address": m.address, "profile": m.profile.id, "name": m.name}
            for i, m in enumerate(massagers)
        ]}
    target = _pick(massagers, request)
    if isinstance(target, str):
        return {"ok": False, "error": target}
    return await control_answer(target, request)


def _control_handler(
    massagers: list[VirtualMassager],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(b'{"ok": false, "error": "request line too long"}\n')
                    await writer.drain()
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except (ValueError, UnicodeDecodeError) as exc:
                    answer: dict[str, Any] = {"ok": False, "error": f"not JSON: {exc}"}
                else:
                    try:
                        answer = await _answer_many(massagers, request)
                    except Exception as exc:  # never let a request end the sim
                        _LOG.exception("control request %r failed", request)
                        answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return handle


def _frame_logger() -> logging.Logger:
    logger = logging.getLogger(FRAME_LOGGER)
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s frame %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    return logger


async def run_sim(
    profile: Profile,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    control_port: int = 0,
    frame_log: bool = False,
    out: TextIO | None = None,
    ready: Callable[[VirtualMassager], None] | None = None,
) -> None:
    """Run a virtual massager for ``profile`` until cancelled (see :func:`run_sim_many`)."""

    def first(massagers: list[VirtualMassager]) -> None:
        if ready is not None:
            ready(massagers[0])

    await run_sim_many([profile], host=host, port=port, control_port=control_port,
                       frame_log=frame_log, out=out, ready=first)


async def run_sim_many(
    profiles: list[Profile],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    control_port: int = 0,
    frame_log: bool = False,
    out: TextIO | None = None,
    ready: Callable[[list[VirtualMassager]], None] | None = None,
) -> None:
    """Run a virtual massager per profile on one link until cancelled.

    Prints the banner line to ``out`` (default stdout) once everything listens;
    ``ready`` (tests) is called with the massagers at the same moment.
    """
    out = sys.stdout if out is None else out
    world = VirtualWorld()
    massagers: list[VirtualMassager] = []
    control: asyncio.Server | None = None
    try:
        logger = _frame_logger() if frame_log else None
        for profile in profiles:
            massagers.append(await VirtualMassager.create(world, profile, frame_logger=logger))
        link, _close_link = await serve_controller_tcp(world, host, port)  # closed by world
        control = await asyncio.start_server(
            _control_handler(massagers), "127.0.0.1", control_port, limit=MAX_REQUEST_BYTES
        )
        control_bound = control.sockets[0].getsockname()[1]
        names = ", ".join(
            f'{m.profile.id} "{m.profile.advertisement.local_name}" {m.address}' for m in massagers
        )
        print(
            f"footctl sim: {names} control 127.0.0.1:{control_bound} link {link}",
            file=out,
            flush=True,
        )
        if ready is not None:
            ready(massagers)
        await asyncio.Event().wait()  # until cancelled
    finally:
        if control is not None:
            control.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(control.wait_closed(), 1.0)
        for massager in massagers:
            await massager.close()
        await world.close()


# --------------------------------------------------------------------- process entry


def _load(spec: str) -> Profile:
    path = Path(spec)
    if spec.endswith(".toml") and path.is_file():
        return load_profile(path)
    return get_profile(spec)


async def _main_async(args: argparse.Namespace) -> int:
    profile = _load(args.profile)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await run_sim(
            profile,
            host=args.host,
            port=args.port,
            control_port=args.control_port,
            frame_log=args.log_frames,
        )
    except asyncio.CancelledError:
        return 0
    return 0


def main(argv: list[str] | None = None) -> None:
    """``python -m footctl.virtual.sim PROFILE`` (the same as ``footctl sim``)."""
    parser = argparse.ArgumentParser(
        prog="footctl-sim", description="run a virtual massager as its own process"
    )
    parser.add_argument("profile", metavar="PROFILE", help="profile id or a .toml file")
    parser.add_argument("--host", default="127.0.0.1", help="link address to listen on")
    parser.add_argument("--port", type=int, default=0, help="link port (default: any free)")
    parser.add_argument("--control-port", type=int, default=0, help="control port (default: any)")
    parser.add_argument("--log-frames", action="store_true", help="log frames to stderr")
    args = parser.parse_args(argv)
    try:
        code = asyncio.run(_main_async(args))
    except FootctlError as exc:
        print(f"footctl sim: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


# --------------------------------------------------------------------- test client


class SimRequestError(RuntimeError):
    """The sim answered a control request with ``"ok": false``."""

    def __init__(self, request: dict[str, Any], answer: dict[str, Any]) -> None:
        super().__init__(f"sim refused {request!r}: {answer.get('error')}")
        self.request = request
        self.answer = answer


class SimControl:
    """A small synchronous client for a sim's control port (for tests and scripts).

    Each :meth:`request` opens a connection, sends one line and reads one answer.
    """

    def __init__(self, address: str, *, timeout: float = 5.0) -> None:
        host, _, port = address.rpartition(":")
        self.host = host or "127.0.0.1"
        self.port = int(port)
        self.timeout = timeout

    def request(self, request: dict[str, Any], *, check: bool = True) -> dict[str, Any]:
        """Send one request and return the parsed answer.

        With ``check`` (the default) an ``"ok": false`` answer raises
        :class:`SimRequestError`; ``OSError`` if the sim cannot be reached.
        """
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            with sock.makefile("rb") as stream:
                line = stream.readline()
        if not line:
            raise ConnectionError(f"the sim at {self.host}:{self.port} closed the connection")
        answer: dict[str, Any] = json.loads(line)
        if check and not answer.get("ok", False):
            raise SimRequestError(request, answer)
        return answer


if __name__ == "__main__":
    main()
