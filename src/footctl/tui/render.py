"""The text of each line of a massager's panel, from its :class:`DeviceView`.

Pure functions (no Textual widgets), so every state can be tested and the screen
shows only what a view says. Meaning never rests on colour alone (NO_COLOR, light and
dark themes): states are words (``ON``, ``LOST``, ``REFUSED``), gauges are glyphs,
and a value the massager has not reported is marked ``assumed``.

Lines are Textual content markup; device-supplied text is escaped.
"""

from __future__ import annotations

from footctl.control.api import DeviceView
from footctl.tui.catalog import DeviceCaps

# Glyphs for gauges and bars: distinct shapes, so they read without colour.
FULL, EMPTY = "█", "░"
GAUGE_WIDTH = 20  # intensity gauge, in cells (fits beside the labels at 80 columns)
PROGRESS_WIDTH = 24  # program progress bar, in cells


def esc(text: str) -> str:
    """Text that Textual markup shows as it is."""
    return text.replace("[", r"\[")


def duration(seconds: float | None) -> str:
    """Seconds as M:SS (H:MM:SS from an hour up); ``-`` for None."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds + 0.5))  # round: 59.6 s left shows 1:00, not 0:59
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def bar(fraction: float, width: int) -> str:
    """A bar of ``width`` cells filled to ``fraction`` (clamped to 0..1)."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return FULL * filled + EMPTY * (width - filled)


def title(view: DeviceView, *, selected: bool) -> str:
    """The panel's border title: name, profile, address; which one the keys act on."""
    name = view.name or view.device_id
    mark = "▶ " if selected else ""
    sim = " sim" if view.simulated else ""
    return esc(f"{mark}{name} ({view.profile}{sim}) {view.address}")


def link_line(view: DeviceView) -> str:
    """Link state, RSSI, reconnect attempts."""
    rssi = "" if view.rssi is None else f"   RSSI {view.rssi} dBm"
    if view.link == "connected":
        return f"link [b]connected[/b]{rssi}"
    if view.link == "lost":
        tries = view.reconnect_attempts
        attempts = f", reconnect attempt {tries}" if tries else ", reconnecting"
        return f"link [b $error]LOST[/]{attempts} - showing the last report"
    if view.link == "connecting":
        tries = view.reconnect_attempts
        return "link [b]connecting[/b]" + (f" (attempt {tries})" if tries else "")
    return "link idle (not connected)"


def _stale(view: DeviceView) -> str:
    """Why the reported values may not be the massager's present state, or ``''``."""
    if view.assumed:
        return " [i $warning](assumed: not reported by the massager)[/]"
    if view.link != "connected":
        return " [i $warning](last reported)[/]"
    return ""


def power_line(view: DeviceView) -> str:
    """Power, mode and zone as reported, and what the governor is driving to."""
    rep, want = view.reported, view.desired
    power = "[b $success]ON[/]" if rep.power else "[b]OFF[/b]"
    parts = [f"power {power}"]
    if want.power != rep.power:
        parts.append(f"(asked: {'on' if want.power else 'off'})")
    parts.append(f"  mode {esc(rep.mode or '-')}")
    if want.mode is not None and want.mode != rep.mode and want.power:
        parts.append(f"(asked: {esc(want.mode)})")
    if rep.zone is not None or want.zone is not None:
        parts.append(f"  zone {'-' if rep.zone is None else rep.zone}")
        if want.zone is not None and want.zone != rep.zone and want.power:
            parts.append(f"(asked: {want.zone})")
    return " ".join(parts) + _stale(view)


def intensity_line(view: DeviceView, caps: DeviceCaps | None) -> str:
    """The intensity gauge: reported level out of the profile's range."""
    level = view.reported.intensity
    top = caps.intensity_max if caps else None
    low = caps.intensity_min if caps else 0
    shown = "-" if level is None else str(level)
    if level is None or top is None or top <= low or not view.reported.power:
        gauge = bar(0.0, GAUGE_WIDTH)
    else:
        gauge = bar((level - low + 1) / (top - low + 1), GAUGE_WIDTH)
    text = f"intensity {gauge} {shown}" + ("" if top is None else f"/{top}")
    want = view.desired.intensity
    if want is not None and want != level and view.desired.power:
        text += f" (rising to {want})" if level is not None and want > level else f" (asked {want})"
    return text


def heat_text(view: DeviceView, caps: DeviceCaps | None) -> str:
    """Heat level and what it means, the measured temperature."""
    level = view.reported.heat
    celsius = view.reported.heat_celsius
    if celsius is None and caps is not None:
        celsius = caps.celsius(level)
    if level:
        heat = f"heat [b $warning]{level}[/]" + (f" ({celsius:g} C)" if celsius else "")
    else:
        heat = "heat off"
    want = view.desired.heat
    if want != level and (want or level):
        heat += f" (asked {want or 'off'})"
    temp = "-" if view.temperature is None else f"{view.temperature:.1f} C"
    return f"{heat}   temp {temp}"


def program_text(view: DeviceView) -> str:
    """The running program and its step, or that none runs."""
    p = view.program
    if p is None:
        return "program none"
    step = "starting" if p.step is None else f"step {p.step}/{p.steps} {esc(p.step_name)}"
    paused = " (paused)" if p.paused else ""
    return f"program [b]{esc(p.program)}[/b] {step}{paused}"


def program_bar(view: DeviceView, total_s: float | None) -> str:
    """The program's progress bar and time left (``total_s``: its full length)."""
    p = view.program
    if p is None:
        return ""
    fraction = 0.0 if not total_s else (total_s - p.left_s) / total_s
    return (
        f"{bar(fraction, PROGRESS_WIDTH)} {duration(p.left_s)} left "
        f"(step {duration(p.step_left_s)})"
    )


def timers_line(view: DeviceView) -> str:
    """The safety timers counting down."""
    t = view.timers
    parts = [
        f"session {duration(t.session_left_s)}",
        f"heat {duration(t.heat_left_s)}",
        f"lease {duration(t.lease_left_s)}",
    ]
    if t.cooldown_left_s is not None:
        parts.append(f"cooldown {duration(t.cooldown_left_s)}")
    return "caps left: " + "  ".join(parts)


def message_line(view: DeviceView, local: str | None) -> str:
    """The fault, or the last refusal (``local``: one this TUI just got), in words."""
    if view.fault:
        return f"[b $error]FAULT[/] {esc(view.fault)}"
    if local:
        return f"[b $error]REFUSED[/] {esc(local)}"
    if view.last_refusal:
        return f"[b $error]REFUSED[/] {esc(view.last_refusal)}"
    run = view.last_run
    if run is not None and view.program is None:
        return (
            f"last program {esc(run.program)}: {esc(run.end_reason)} "
            f"({run.steps_run}/{run.steps} steps, {duration(run.elapsed_s)})"
        )
    if view.end_reason:
        return f"last session ended: {esc(view.end_reason)}"
    return ""
