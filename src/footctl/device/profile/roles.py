"""What a version-2 command does to its setting: the one table both the controller
(which picks commands) and the virtual massager (which acts on them) read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from footctl.device.profile.checks import parse_value, value_domain
from footctl.device.profile.schema import Profile
from footctl.device.profile.settings import Send, Setting, SettingName
from footctl.state import Command

Action = Literal["set", "toggle", "cycle", "up", "down", "bit", "reset"]

# Command names with a meaning of their own in every version: everything off, and
# "tell me your state".
STOP = "stop"
QUERY = "query"


@dataclass(frozen=True)
class Role:
    """A command's effect: on ``setting``, ``action`` (``set`` to ``value``, flip a
    ``toggle``, step a ``cycle``, ``up``/``down``, flip chamber ``bit`` number
    ``value``, or ``reset`` to the setting's start)."""

    setting: SettingName
    action: Action
    value: int | str | None = None


def setting_value_from_wire(profile: Profile, setting: str, wire: int) -> int | str | None:
    """An absolute command's argument as the setting's value (heat level, mode name);
    None if the wire value means nothing."""
    caps = profile.capabilities
    if setting == "heat":
        if wire == 0:
            return 0
        return next((h.level for h in caps.heat_levels if h.wire == wire), None)
    if setting == "mode":
        return next((m.name for m in caps.modes if m.code == wire), None)
    return wire


def wire_from_setting_value(profile: Profile, setting: str, value: int | str) -> int:
    """The argument an absolute command carries for a setting's value."""
    caps = profile.capabilities
    if setting == "heat":
        if value == 0:
            return 0
        return next(h.wire for h in caps.heat_levels if h.level == value)
    if setting == "mode":
        mode = caps.mode_named(str(value))
        if mode is None:
            raise ValueError(f"no mode {value!r}")
        return mode.code
    return int(value)


def _references(profile: Profile) -> dict[str, int]:
    """How often each command is named (by settings, sequences and the connection)."""
    count: dict[str, int] = {}
    names: list[str] = []
    for s in profile.settings.values():
        names += s.commands_used()
    for template in profile.commands.values():
        names += [i.send for i in template.sequence or [] if isinstance(i, Send)]
    names += [c for c in (profile.connection.wake, profile.connection.keepalive) if c]
    for n in names:
        count[n] = count.get(n, 0) + 1
    return count


def carrier(profile: Profile, name: str) -> str:
    """The command whose frame carries ``name``'s effect on the device.

    A frame is itself. A sequence's effect is carried by its first step that nothing
    else names (a key followed by a shared "release" frame: the key), looked for
    depth-first; a sequence of only shared steps carries its effect on its first."""
    template = profile.commands[name]
    if template.sequence is None:
        return name
    refs = _references(profile)
    sends = [i.send for i in template.sequence if isinstance(i, Send)]
    for send in sends:
        if refs.get(send, 0) <= 1:
            return carrier(profile, send)
    return carrier(profile, sends[0])


def _role_in(profile: Profile, name: SettingName, s: Setting, command: Command) -> Role | None:
    cmd = command.name
    if cmd not in s.commands_used():
        # A frame inside a sequence the setting names carries the sequence's role.
        for used in s.commands_used():
            if profile.commands[used].sequence is not None and carrier(profile, used) == cmd:
                return _role_in(profile, name, s, Command(used, command.value))
        return None
    if s.style == "absolute" and cmd == s.command and command.value is not None:
        value = setting_value_from_wire(profile, name, command.value)
        return None if value is None else Role(name, "set", value)
    if s.values is not None:
        for text, table_cmd in s.values.items():
            if table_cmd == cmd:
                return Role(name, "set", parse_value(name, text))
    if cmd == s.key:
        return Role(name, "toggle" if s.style == "toggle" else "cycle")
    if cmd == s.up:
        return Role(name, "up")
    if cmd == s.down:
        return Role(name, "down")
    if s.bits is not None:
        chambers = [c.name for c in profile.capabilities.chambers]
        for chamber, key in s.bits.items():
            if key == cmd:
                return Role(name, "bit", chambers.index(chamber))
    if cmd == s.reset:
        return Role(name, "reset")
    if cmd == s.off:
        return Role(name, "set", 0)
    return None


def role_of(profile: Profile, command: Command) -> Role | None:
    """What ``command`` does to a setting of ``profile`` (None: no setting's command)."""
    for name, s in profile.settings.items():
        role = _role_in(profile, name, s, command)
        if role is not None:
            return role
    return None


def cycle_order(profile: Profile, setting: str) -> list[int | str]:
    """The values a cycle or toggle key walks through, in order."""
    s = profile.settings[setting]  # type: ignore[index]
    if s.order is not None:
        return [parse_value(setting, v) for v in s.order]
    if s.style == "toggle":
        return [0, 1]
    return [parse_value(setting, v) for v in value_domain(profile, setting)]


def start_value(profile: Profile, setting: str) -> int | str | None:
    """The value a setting has right after power-on (its known starting point)."""
    caps = profile.capabilities
    s = profile.settings.get(setting)  # type: ignore[call-overload]
    if s is not None and s.start is not None:
        return parse_value(setting, s.start)
    if setting == "intensity":
        return caps.intensity.min
    if setting == "heat":
        return 0
    if setting == "mode":
        return caps.modes[0].name
    if setting == "zone":
        if caps.chambers:
            return (1 << len(caps.chambers)) - 1  # every chamber runs by default
        return caps.zones.min if caps.zones is not None else None
    if setting == "timer" and s is not None and s.style == "cycle":
        return 0  # a cycling timer key starts at its "off" position
    return None
