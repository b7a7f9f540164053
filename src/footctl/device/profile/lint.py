"""``footctl profile check`` beyond loading: what a valid profile still gets wrong.

:func:`lint` returns findings; an ``error`` makes ``profile check`` fail (a profile that
moves furniture, frames a device could confuse, a frame the link cannot carry, a
declared capability no command reaches), a ``warning`` is reported but passes.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Literal

from footctl.device import codec
from footctl.device.profile.checks import value_domain
from footctl.device.profile.roles import cycle_order, wire_from_setting_value
from footctl.device.profile.schema import CommandTemplate, Profile
from footctl.errors import CodecError
from footctl.state import Command

__all__ = ["LEGACY_ADV_MAX", "LintFinding", "advert_size", "lint"]

# A legacy advertisement carries 31 bytes; the virtual radio (and many phones' scans)
# see nothing more, so the local name must fit beside the flags and the service UUID.
LEGACY_ADV_MAX = 31

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class LintFinding:
    """One finding: ``code`` is stable (moves, ambiguous, unencodable, advert,
    status-layout, frame-size, missing, provenance, blind-toggle)."""

    severity: Severity
    code: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message} [{self.code}]"

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready view."""
        return asdict(self)


def advert_size(profile: Profile) -> int:
    """Bytes of the legacy advert: flags, the first service UUID, the manufacturer id
    and the complete local name (each AD structure has a 2-byte head)."""
    adv = profile.advertisement
    size = 3  # flags
    if adv.service_uuids:
        uuid = adv.service_uuids[0]
        short = uuid.startswith("0000") and uuid.endswith("-0000-1000-8000-00805f9b34fb")
        size += 2 + (2 if short else 16)
    if adv.manufacturer_id is not None:
        size += 4
    return size + 2 + len(adv.local_name.encode())


def _sample_values(profile: Profile, name: str, template: CommandTemplate) -> list[int | None]:
    if not template.takes_arg:
        return [None]
    for setting, s in profile.settings.items():
        if s.command == name:
            return [wire_from_setting_value(profile, setting, _value(setting, v))
                    for v in value_domain(profile, setting)]
    caps = profile.capabilities
    v1: dict[str, list[int]] = {
        "power": [0, 1],
        "intensity": list(range(caps.intensity.min, caps.intensity.max + 1)),
        "heat": [0, *(h.wire for h in caps.heat_levels)],
        "mode": [m.code for m in caps.modes],
        "zone": [] if caps.zones is None else list(range(caps.zones.min, caps.zones.max + 1)),
        "timer": [] if caps.timer_minutes is None else list(
            range(caps.timer_minutes.min, caps.timer_minutes.max + 1)
        ),
    }
    return list(v1.get(name, [0]))


def _value(setting: str, text: str) -> int | str:
    return text if setting == "mode" else int(text)


def _templates_overlap(a: CommandTemplate, b: CommandTemplate) -> bool:
    """True if two framed templates can produce the same frame (same code, same size,
    and at every byte a constant meets an argument or an equal constant)."""
    if a.code != b.code or a.endpoint != b.endpoint or a.body_size != b.body_size:
        return False
    def layout(t: CommandTemplate) -> list[int | None]:
        out: list[int | None] = []
        for item in t.body:
            if item.const is not None:
                out += list(item.const)
            else:
                out += [None] * item.size
        return out
    return all(x is None or y is None or x == y for x, y in zip(layout(a), layout(b), strict=True))


def _ambiguous(profile: Profile) -> list[LintFinding]:
    out: list[LintFinding] = []
    framed = {n: t for n, t in profile.commands.items() if t.code is not None}
    for (na, ta), (nb, tb) in itertools.combinations(framed.items(), 2):
        if (ta.takes_arg or tb.takes_arg) and _templates_overlap(ta, tb):
            out.append(LintFinding(
                "error", "ambiguous", f"commands.{na}",
                f"its frames can equal those of commands.{nb} (same code {ta.code:#04x}, "
                "an argument byte where the other has a constant)",
            ))
    for name, template in profile.commands.items():
        if template.sequence is not None:
            continue
        for value in _sample_values(profile, name, template):
            try:
                frame = codec.encode(profile, Command(name, value))
                codec.decode_command(profile, frame, endpoint=template.endpoint)
            except CodecError as exc:
                if "ambiguous" in exc.message:
                    out.append(LintFinding("error", "ambiguous", f"commands.{name}", exc.message))
                    break
    return out


def _unencodable(profile: Profile) -> list[LintFinding]:
    out: list[LintFinding] = []
    for setting, s in profile.settings.items():
        domain = value_domain(profile, setting)
        if s.style == "bits":
            continue
        missing: list[str] = []
        for text in domain:
            value = _value(setting, text)
            untabled = s.style == "table" and text not in (s.values or {})
            uncycled = s.style in ("cycle", "toggle") and value not in cycle_order(
                profile, setting
            )
            if untabled or uncycled:
                missing.append(text)
            elif s.style == "absolute" and s.command is not None:
                try:
                    wire = wire_from_setting_value(profile, setting, value)
                    codec.encode(profile, Command(s.command, wire))
                except (CodecError, ValueError, StopIteration):
                    missing.append(text)
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            out.append(LintFinding(
                "warning", "unencodable", f"settings.{setting}",
                f"{setting} {shown} lie(s) in the capabilities but no command reaches them",
            ))
    if not profile.is_v2:
        for name in ("intensity", "heat", "mode", "zone", "timer"):
            template = profile.commands.get(name)
            if template is None:
                continue
            bad = []
            for arg in _sample_values(profile, name, template):
                try:
                    codec.encode(profile, Command(name, arg))
                except CodecError:
                    bad.append(str(arg))
            if bad:
                out.append(LintFinding(
                    "warning", "unencodable", f"commands.{name}",
                    f"values {', '.join(bad[:8])} are in range but do not fit the argument",
                ))
    return out


def _sizes(profile: Profile) -> list[LintFinding]:
    out: list[LintFinding] = []
    limit = codec.max_write_size(profile)
    for name, template in profile.commands.items():
        if template.sequence is not None:
            continue
        for value in _sample_values(profile, name, template)[-1:]:
            try:
                frame = codec.encode(profile, Command(name, value))
            except CodecError:
                continue
            if len(frame) > limit:
                out.append(LintFinding(
                    "error", "frame-size", f"commands.{name}",
                    f"{len(frame)}-byte frame, the link (MTU {profile.gatt.mtu}) carries {limit}",
                ))
    status = profile.status
    if status is not None:
        size = status.length if not status.framed else profile.frame_size(status.length)
        if size > limit:
            out.append(LintFinding(
                "error", "status-layout", "status",
                f"the {size}-byte status does not fit a notification (MTU {profile.gatt.mtu})",
            ))
        bits: dict[tuple[int, int], str] = {}
        for fname, f in status.fields.items():
            mask = f.mask if f.mask is not None else (1 << (8 * f.width)) - 1
            raw = mask.to_bytes(f.width, f.byteorder)
            for i, byte in enumerate(raw):
                for bit in range(8):
                    if byte >> bit & 1:
                        key = (f.offset + i, bit)
                        if key in bits:
                            out.append(LintFinding(
                                "error", "status-layout", f"status.fields.{fname}",
                                f"shares byte {f.offset + i} bit {bit} with field {bits[key]}",
                            ))
                            break
                        bits[key] = fname
                else:
                    continue
                break
    return out


def _missing(profile: Profile) -> list[LintFinding]:
    caps = profile.capabilities
    out: list[LintFinding] = []
    has = set(profile.settings) if profile.is_v2 else set(profile.commands)

    def need(cond: bool, what: str, setting: str) -> None:
        if cond and setting not in has:
            where = f"settings.{setting}" if profile.is_v2 else f"commands.{setting}"
            out.append(LintFinding("error", "missing", where, f"{what}, but no {where}"))

    need(bool(caps.chambers), "chambers are declared", "zone")
    need(caps.zones is not None and not caps.chambers, "zones are declared", "zone")
    need(
        caps.timer_minutes is not None or caps.timer_values is not None,
        "the device has a timer", "timer",
    )
    if caps.nodes is not None:
        families = caps.families()
        for kind in ("kneading", "rolling"):
            if getattr(caps.nodes, kind) and kind not in families:
                out.append(LintFinding(
                    "error", "missing", "capabilities.modes",
                    f"{kind} nodes are declared, but no mode is of the {kind} family",
                ))
    if caps.reports_status and "query" not in profile.commands:
        out.append(LintFinding(
            "warning", "missing", "commands.query",
            "no query: after a connect footctl waits for the device's own next report",
        ))
    return out


def lint(profile: Profile) -> list[LintFinding]:
    """Every finding for ``profile``, errors first."""
    out: list[LintFinding] = [
        LintFinding(
            "error", "moves", f"commands.{name}",
            "moves furniture: footctl never moves a bed; leave motion commands out",
        )
        for name, t in profile.commands.items()
        if t.moves
    ]
    out += _ambiguous(profile)
    out += _unencodable(profile)
    out += _sizes(profile)
    out += _missing(profile)
    size = advert_size(profile)
    if size > LEGACY_ADV_MAX:
        out.append(LintFinding(
            "warning", "advert", "advertisement.local_name",
            f"the advert needs {size} bytes, a legacy advert carries {LEGACY_ADV_MAX}: the "
            f"name {profile.advertisement.local_name!r} will be cut short",
        ))
    if profile.source is not None and profile.hardware_tested is None:
        out.append(LintFinding(
            "warning", "provenance", "hardware_tested",
            "a profile read from someone else's code says whether it drove real hardware",
        ))
    power = profile.settings.get("power")
    if power is not None and power.style == "toggle" and not profile.capabilities.reports_status:
        out.append(LintFinding(
            "warning", "blind-toggle", "settings.power",
            "a power toggle without status: a stop relies on the believed state; a remote "
            "or button press footctl did not see leaves it wrong",
        ))
    return sorted(out, key=lambda f: (f.severity != "error", f.where))
