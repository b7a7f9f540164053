"""How state is shown to people: one line per massager from a ``DeviceView`` (as the
JSON dict the control API carries), plus a line per program and per note.

Standard library only: the thin client prints with it.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing costs the client milliseconds; mypy reads this as True
if TYPE_CHECKING:
    from typing import Any


def emit(text: str) -> None:
    """Print to stdout; a reader that went away (``| head``) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        import os  # noqa: PLC0415

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def view_text(view: dict[str, Any]) -> str:
    """One line for people (and one for a running program)."""
    r = view.get("reported") or {}
    who = f"{view.get('name') or view.get('profile')} ({view.get('address') or '?'})"
    if view.get("link") not in (None, "connected"):
        who += f" [link {view.get('link')}]"
    if not r.get("power"):
        body = "off" + (f", heat {r['heat']}" if r.get("heat") else "")
    else:
        heat = f"heat {r.get('heat', 0)}"
        if r.get("heat_celsius"):
            heat += f" ({r['heat_celsius']:g} C)"
        body = f"on, intensity {r.get('intensity')}, {heat}, mode {r.get('mode')}"
        if r.get("zone") is not None:
            body += f", zone {r['zone']}"
    if view.get("temperature") is not None:
        body += f", {view['temperature']:.1f} C measured"
    if view.get("assumed") and r.get("power"):
        body += " [assumed: not confirmed by a status report]"
    timers = view.get("timers") or {}
    caps = []
    for what in ("session", "heat", "lease", "cooldown"):
        if timers.get(f"{what}_left_s") is not None:
            caps.append(f"{what} {mmss(timers[f'{what}_left_s'])} left")
    line = f"{who}: {body}" + (f" - {', '.join(caps)}" if caps else "")
    if view.get("fault"):
        line += f" - fault: {view['fault']}"
    program = view.get("program")
    if isinstance(program, dict) and program.get("step") is not None:
        paused = " (paused)" if program.get("paused") else ""
        line += (
            f"\nprogram {program['program']}: step {program['step']}/{program['steps']} "
            f"{program['step_name']}{paused}, {mmss(program['left_s'])} left"
        )
    return line


def reply_text(reply: dict[str, Any]) -> str:
    """Every massager of a reply, then its notes."""
    lines = [view_text(v) for v in reply.get("devices", [])] or ["no massager"]
    lines += [f"note: {n}" for n in reply.get("notes", [])]
    return "\n".join(lines)


def mmss(seconds: float) -> str:
    """Seconds as M:SS."""
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"
