"""A profile skeleton from an ``explore`` dump: what the device showed, filled in;
what only its frames can tell, left as marked placeholders.

Pure: no I/O. The top of the skeleton (id, name, ``[advertisement]``, ``[gatt]``)
loads as it is; everything after :data:`FILL_IN_LINE` is a template whose
``"<FILL IN ...>"`` values make ``footctl profile check`` fail, naming the field and
line, until they are replaced.
"""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass

from footctl.device.transport.gatt_probe import CharacteristicInfo, GattDump, ServiceInfo

__all__ = [
    "FILL_IN",
    "FILL_IN_LINE",
    "Endpoints",
    "is_standard",
    "pick_endpoints",
    "render_skeleton",
    "short_uuid",
]

#: Every placeholder value starts with this; a profile still holding one does not load.
FILL_IN = "<FILL IN"
#: The line after which the skeleton is a template to replace.
FILL_IN_LINE = "# ==== FILL IN below this line " + "=" * 52

_BASE_TAIL = "-0000-1000-8000-00805f9b34fb"
# Services the Bluetooth SIG assigns (0x1800-0x18FF: Generic Access, Device Information,
# Battery, ...) are never the vendor's command channel.
_SIG_SERVICES = range(0x1800, 0x1900)
# The longest local name a profile takes (schema: advertisement.local_name).
_LOCAL_NAME_MAX = 29
# The MTU range a profile takes (schema: gatt.mtu).
_MTU_MIN, _MTU_MAX = 23, 517


def short_uuid(uuid: str) -> str:
    """A 128-bit UUID on the Bluetooth base as its 16-bit form (``"FFF0"``), else as is."""
    text = uuid.lower()
    if text.startswith("0000") and text.endswith(_BASE_TAIL):
        return text[4:8].upper()
    return text


def is_standard(service: ServiceInfo) -> bool:
    """True for a SIG-assigned service (Generic Access, Device Information, ...)."""
    short = short_uuid(service.uuid)
    return len(short) == 4 and int(short, 16) in _SIG_SERVICES


@dataclass(frozen=True)
class Endpoints:
    """The characteristics a profile would write to and listen on."""

    service: ServiceInfo
    write: CharacteristicInfo
    notify: CharacteristicInfo | None
    other_writes: tuple[CharacteristicInfo, ...]
    other_notifies: tuple[CharacteristicInfo, ...]


def pick_endpoints(dump: GattDump) -> Endpoints | None:
    """The vendor service most likely to carry commands: not SIG-assigned, with a
    writable characteristic; advertised services and those that also notify first.
    Its first writable characteristic is ``write``, its first notifying one ``notify``."""
    advertised = {u.lower() for u in dump.service_uuids}
    candidates = [
        s for s in dump.services
        if not is_standard(s) and any(c.writable for c in s.characteristics)
    ]
    if not candidates:
        return None

    def rank(s: ServiceInfo) -> tuple[bool, bool, int]:
        notifies = any(c.notifies for c in s.characteristics)
        return (s.uuid.lower() not in advertised, not notifies, s.handle)

    service = min(candidates, key=rank)
    writes = [c for c in service.characteristics if c.writable]
    notifies = [c for c in service.characteristics if c.notifies]
    notify = notifies[0] if notifies else None
    return Endpoints(
        service, writes[0], notify, tuple(writes[1:]), tuple(notifies[1:])
    )


def _q(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def _slug(name: str | None) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")
    return slug if slug and slug[0].isalnum() else "my-massager"


def _props(c: CharacteristicInfo) -> str:
    return ", ".join(c.properties)


def _char_spec(c: CharacteristicInfo, service: ServiceInfo) -> tuple[str, str]:
    """``("write", '"FFF1"')``, or by handle when the UUID is not unique in its service."""
    same = [x for x in service.characteristics if x.uuid == c.uuid]
    if len(same) > 1:
        return "handle", f"0x{c.handle:04x}"
    return "uuid", _q(short_uuid(c.uuid))


def _comment(line: str, comment: str, width: int = 36) -> str:
    return f"{line:<{width}} # {comment}"


def render_skeleton(dump: GattDump, *, command: str = "footctl explore") -> str:
    """The TOML skeleton of a profile for the device of ``dump``."""
    ep = pick_endpoints(dump)
    name = dump.name or ""
    lines = [
        f"# footctl profile skeleton from `{command}` of {name or '(no name)'} ({dump.address}).",
        "# Known from the device: [advertisement] and [gatt]. Below the FILL IN line is a",
        '# template: replace every "<FILL IN ...>" value (`footctl profile check` fails and',
        "# names the line until you do), then run `footctl profile test` on the file.",
        "# device_profiles/README.md describes every field; `footctl sniff` shows the frames.",
        "schema_version = 2",
        _comment(f"id = {_q(_slug(name))}", "rename if you like: [a-z0-9][a-z0-9_-]*, unique"),
        _comment(f"name = {_q(name or 'My massager')}", "for people"),
        _comment("hardware_tested = false", "true once this profile drove the device"),
        "",
        "[advertisement]",
    ]
    if name:
        lines.append(_comment(f"name_globs = [{_q(glob.escape(name) + '*')}]",
                              "fnmatch globs on the advertised name"))
    if dump.service_uuids:
        uuids = ", ".join(_q(short_uuid(u)) for u in dump.service_uuids)
        lines.append(f"service_uuids = [{uuids}]")
    if dump.manufacturer_ids:
        lines.append(f"manufacturer_id = 0x{dump.manufacturer_ids[0]:04X}")
    if name:
        lines.append(_comment(f"local_name = {_q(name[:_LOCAL_NAME_MAX])}",
                              "what the virtual massager advertises"))
    else:
        lines.append('local_name = "<FILL IN: the name the virtual massager shows>"')
    lines += ["", "[gatt]"]
    if ep is None:
        lines += [
            '# no vendor service with a writable characteristic was found',
            'service = "<FILL IN: the service UUID>"',
            'write = "<FILL IN: the write characteristic UUID>"',
        ]
    else:
        svc = ep.service
        lines.append(_comment(f"service = {_q(short_uuid(svc.uuid))}",
                              f"service at handle 0x{svc.handle:04x}"))
        kind, spec = _char_spec(ep.write, svc)
        key = "write" if kind == "uuid" else "write_handle"
        lines.append(_comment(f"{key} = {spec}",
                              f"handle 0x{ep.write.handle:04x}: {_props(ep.write)}"))
        if ep.notify is not None:
            kind, spec = _char_spec(ep.notify, svc)
            key = "notify" if kind == "uuid" else "notify_handle"
            lines.append(_comment(f"{key} = {spec}",
                                  f"handle 0x{ep.notify.handle:04x}: {_props(ep.notify)}"))
        else:
            lines.append("# no notifying characteristic: the device reports no status")
        both = "write" in ep.write.properties and "write-without-response" in ep.write.properties
        wwr = "write" in ep.write.properties
        why = "both offered: use what the vendor app uses" if both else "the only kind offered"
        lines.append(_comment(f"write_with_response = {str(wwr).lower()}", why))
        mtu = min(max(dump.mtu, _MTU_MIN), _MTU_MAX)
        lines.append(_comment(f"mtu = {mtu}", "negotiated on connect"))
        for other in ep.other_writes:
            kind, spec = _char_spec(other, svc)
            lines += [
                "",
                f"# another writable characteristic (handle 0x{other.handle:04x}: "
                f"{_props(other)}); if a command",
                "# is written to it, name it here and say `endpoint = \"NAME\"` in that command:",
                "# [gatt.endpoints.NAME]",
                f"# {kind} = {spec}",
            ]
        for other in ep.other_notifies:
            lines.append(f"# also notifies: {short_uuid(other.uuid)} (handle "
                         f"0x{other.handle:04x}); `footctl sniff` shows what it sends")
    lines += ["", FILL_IN_LINE, _TEMPLATE]
    return "\n".join(lines)


_TEMPLATE = '''# What the device can do. A one-level massager: intensity = { min = 1, max = 1 }.
[capabilities]
command_style = "settings"
reports_status = true               # false if the device never notifies its state
intensity = "<FILL IN: e.g. { min = 1, max = 5 }>"
modes = "<FILL IN: e.g. [{ name = \\"kneading\\", code = 1 }, { name = \\"rolling\\", code = 2 }]>"
# heat_levels = [{ level = 1, celsius = 40 }]   # if it heats
# auto_off_minutes = 15                         # if it switches itself off

# How frames look: header | [length] | code | body | [checksum] | trailer.
# Compare two sniffed frames that differ in one value to find each part.
[framing]
header = "<FILL IN: the bytes every frame starts with, e.g. AA 55>"
length = "<FILL IN: e.g. { width = 1, covers = \\"payload\\" }, or delete this line>"
checksum = "<FILL IN: e.g. { preset = \\"xor8\\" }, or delete this line>"

# One setting per thing footctl changes; each names the command(s) that change it.
[settings.power]
style = "absolute"
command = "power"

[settings.intensity]
style = "absolute"
command = "intensity"

[settings.mode]
style = "absolute"
command = "mode"

[commands.power]
code = "<FILL IN: the power command's code byte, e.g. 0x01>"
body = [{ arg = "u8" }]

[commands.intensity]
code = "<FILL IN: the intensity command's code byte>"
body = [{ arg = "u8" }]

[commands.mode]
code = "<FILL IN: the mode command's code byte>"
body = [{ arg = "u8" }]

[commands.query]                    # asks the device for a status report
code = "<FILL IN: the query command's code byte>"

# The status notification: its code, body length and where each value sits in the body.
[status]
code = "<FILL IN: the status frame's code byte>"
length = "<FILL IN: body bytes, e.g. 5>"
[status.fields]
running = "<FILL IN: e.g. { offset = 0 }>"
intensity = "<FILL IN: e.g. { offset = 2 }>"
mode = "<FILL IN: e.g. { offset = 1 }>"
'''
