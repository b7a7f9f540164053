"""How device state is shown: the JSON payload every device command prints (directly,
via the guardian or via the daemon) and its one-line text form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from footctl.safety.governor import SafetyGovernor
    from footctl.state import DeviceState


def state_payload(
    gov: SafetyGovernor, state: DeviceState, via: str, notes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The JSON object of a device command: the confirmed state, caps left, notes."""
    device = state.to_dict()
    device["heat_celsius"] = gov.profile.capabilities.heat_celsius(state.heat)
    return {
        "ok": True,
        "via": via,
        "profile": gov.profile.id,
        "device": device,
        "timers": gov.timers().to_dict(),
        "notes": list(notes),
        "end_reason": gov.end_reason,
        "fault": gov.fault,
    }


def state_text(payload: dict[str, Any]) -> str:
    """One line for people (plus one per note)."""
    d = payload["device"]
    who = f"{d['name'] or payload['profile']} ({d['address']})"
    if not d["running"]:
        body = "off" + (f", heat {d['heat']}" if d["heat"] else "")
    else:
        heat = f"heat {d['heat']}" + (f" ({d['heat_celsius']:g} C)" if d["heat_celsius"] else "")
        body = f"on, intensity {d['intensity']}, {heat}, mode {d['mode']}"
        if d.get("zone") is not None:
            body += f", zone {d['zone']}"
    if d.get("temperature") is not None:
        body += f", {d['temperature']:.1f} C measured"
    if d.get("assumed"):
        body += " [assumed: the device reports no status]"
    timers = payload["timers"]
    caps = []
    if timers["session_left_s"] is not None:
        caps.append(f"session {mmss(timers['session_left_s'])} left")
    if timers["heat_left_s"] is not None:
        caps.append(f"heat {mmss(timers['heat_left_s'])} left")
    line = f"{who}: {body}" + (f" - {', '.join(caps)}" if caps else "")
    program = payload.get("program")
    if isinstance(program, dict) and program.get("step") is not None:
        line += (
            f"\nprogram {program['program']}: step {program['step']}/{program['steps']} "
            f"{program['step_name']}, {mmss(program['left_s'])} left"
        )
    for note in payload.get("notes", []):
        line += f"\nnote: {note}"
    return line


def mmss(seconds: float) -> str:
    """Seconds as M:SS."""
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"
