"""The load-time rules of a version-2 profile: what makes it unusable, not merely odd
(odd things are for :mod:`footctl.device.profile.lint`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from footctl.device.profile.settings import SETTING_NAMES, Send, Setting

if TYPE_CHECKING:
    from footctl.device.profile.schema import Profile

# Settings a version-2 profile must have: footctl cannot start or stop a massager or
# ramp it without them.
REQUIRED_SETTINGS = ("power", "intensity")

# A sequence may name other sequences, but not more deeply than this (and never itself).
MAX_SEQUENCE_DEPTH = 4


def value_domain(profile: Profile, setting: str) -> list[str]:
    """Every value a setting can take, as the strings profiles write them."""
    caps = profile.capabilities
    if setting == "power":
        return ["0", "1"]
    if setting == "heat":
        return [str(n) for n in range(caps.max_heat_level + 1)]
    if setting == "intensity":
        return [str(n) for n in range(caps.intensity.min, caps.intensity.max + 1)]
    if setting == "mode":
        return [m.name for m in caps.modes]
    if setting == "zone":
        zones = caps.zones
        return [] if zones is None else [str(n) for n in range(zones.min, zones.max + 1)]
    # A timer key that cycles usually has an "off" position: 0 then belongs to it.
    timer_setting = profile.settings.get("timer")
    off = ["0"] if timer_setting is not None and timer_setting.style == "cycle" else []
    if caps.timer_values is not None:
        return off + [str(n) for n in caps.timer_values]
    timer = caps.timer_minutes
    return [] if timer is None else off + [str(n) for n in range(timer.min, timer.max + 1)]


def parse_value(setting: str, text: str) -> int | str:
    """A setting's value from its written form (mode names stay names)."""
    return text if setting == "mode" else int(text)


def _check_values(profile: Profile, name: str, s: Setting) -> None:
    domain = value_domain(profile, name)
    power = profile.settings.get("power")
    if name == "intensity" and power is not None and power.style == "level":
        domain = ["0", *domain]  # intensity 0 is "off" on a level-powered device
    where = f"settings.{name}"
    if not domain:
        raise ValueError(
            f"{where}: the capabilities give no range for {name} "
            f"({'zones or chambers' if name == 'zone' else 'timer_minutes'})"
        )
    written: list[tuple[str, str]] = [(f"{where}.values", v) for v in (s.values or {})]
    written += [(f"{where}.order", v) for v in (s.order or [])]
    if s.start is not None:
        written.append((f"{where}.start", s.start))
    for field, value in written:
        if value not in domain:
            shown = ", ".join(domain) if len(domain) <= 12 else f"{domain[0]}..{domain[-1]}"
            raise ValueError(f"{field}: {value!r} is not a {name} value ({shown})")
    if s.style == "toggle":
        order = s.order or ["0", "1"]
        for value in order:
            if value not in domain:
                raise ValueError(f"{where}: a toggle between {order} needs both in {name}")
        if name == "heat" and s.order is None and profile.capabilities.max_heat_level != 1:
            raise ValueError(
                f"{where}: a heat toggle flips off/on, but there are "
                f"{profile.capabilities.max_heat_level} heat levels (use a cycle or table)"
            )
    if s.style == "bits":
        chambers = [c.name for c in profile.capabilities.chambers]
        if name != "zone" or not chambers:
            raise ValueError(f"{where}: the bits style is for zone with capabilities.chambers")
        if set(s.bits or {}) != set(chambers):
            raise ValueError(f"{where}.bits: give one key per chamber ({', '.join(chambers)})")
    if name == "power" and s.style in ("step", "cycle", "bits"):
        raise ValueError(f"{where}: power is absolute, table, toggle or level")
    if s.style == "level":
        if name != "power":
            raise ValueError(f"{where}: the level style is for power (on while intensity > 0)")
        intensity = profile.settings.get("intensity")
        if intensity is None or intensity.style not in ("absolute", "table", "step"):
            raise ValueError(
                f"{where}: level power needs an absolute, table or step intensity"
            )
        if s.off is None and intensity.style == "table" and "0" not in (intensity.values or {}):
            raise ValueError(f"{where}: give 'off', or a \"0\" entry in settings.intensity")
    if s.ready_seconds and name != "power":
        raise ValueError(f"{where}.ready_seconds belongs to the power setting")


def _check_commands(profile: Profile) -> None:
    commands = profile.commands
    for name, cmd in commands.items():
        if cmd.endpoint is not None and cmd.endpoint not in profile.gatt.endpoints:
            raise ValueError(f"commands.{name}: no endpoint {cmd.endpoint!r} in gatt.endpoints")
        for item in cmd.sequence or []:
            if isinstance(item, Send):
                if item.send not in commands:
                    raise ValueError(f"commands.{name}: the sequence sends unknown {item.send!r}")
                takes = commands[item.send].takes_arg
                if takes != (item.value is not None):
                    raise ValueError(
                        f"commands.{name}: {item.send!r} "
                        f"{'needs a value' if takes else 'takes no value'} in the sequence"
                    )
        _depth(profile, name, ())


def _depth(profile: Profile, name: str, path: tuple[str, ...]) -> None:
    if name in path:
        raise ValueError(f"commands.{name}: the sequence contains itself ({' > '.join(path)})")
    if len(path) > MAX_SEQUENCE_DEPTH:
        raise ValueError(f"commands.{path[0]}: sequences nest deeper than {MAX_SEQUENCE_DEPTH}")
    for item in profile.commands[name].sequence or []:
        if isinstance(item, Send):
            _depth(profile, item.send, (*path, name))


def _check_settings(profile: Profile) -> None:
    owner: dict[str, str] = {}
    for name, s in profile.settings.items():
        _check_values(profile, name, s)
        for cmd in s.commands_used():
            if cmd not in profile.commands:
                raise ValueError(f"settings.{name}: no command {cmd!r} in [commands]")
            template = profile.commands[cmd]
            wants_arg = s.style == "absolute" and cmd == s.command
            if template.takes_arg != wants_arg:
                raise ValueError(
                    f"settings.{name}: command {cmd!r} "
                    f"{'must carry the value' if wants_arg else 'must not take a value'}"
                )
            if cmd == s.reset:
                continue
            if cmd in owner and owner[cmd] != name:
                raise ValueError(
                    f"command {cmd!r} is used by settings {owner[cmd]} and {name}: a frame "
                    "must decode to one setting"
                )
            owner[cmd] = name
        if s.values is not None and len(set(s.values.values())) != len(s.values):
            raise ValueError(f"settings.{name}.values: two values share one command")
    fixed = profile.capabilities.intensity.min == profile.capabilities.intensity.max
    for required in REQUIRED_SETTINGS:
        if required == "intensity" and fixed:
            continue  # one level only: nothing to set
        if required not in profile.settings:
            raise ValueError(f"a version-2 profile needs settings.{required}")
    caps = profile.capabilities
    if len(caps.modes) > 1 and "mode" not in profile.settings:
        raise ValueError("there are several modes but no settings.mode")
    if caps.heat_levels and "heat" not in profile.settings:
        raise ValueError("heat_levels are given but there is no settings.heat")


def _check_frames(profile: Profile) -> None:
    """No two commands may put the same fixed frame on the wire."""
    # The codec builds the frames, and it imports the schema that calls this.
    from footctl.device import codec  # noqa: PLC0415
    from footctl.errors import CodecError  # noqa: PLC0415
    from footctl.state import Command  # noqa: PLC0415

    seen: dict[tuple[str | None, bytes], str] = {}
    for name, cmd in profile.commands.items():
        if cmd.kind == "sequence" or cmd.takes_arg:
            continue
        try:
            frame = codec.encode(profile, Command(name))
        except CodecError as exc:
            raise ValueError(f"commands.{name}: {exc.message}") from exc
        try:
            back = codec.decode_command(profile, frame, endpoint=cmd.endpoint)
        except CodecError as exc:
            raise ValueError(f"commands.{name}: {exc.message}") from exc
        if back.name != name:
            raise ValueError(
                f"commands.{name} ({frame.hex(' ')}) decodes as commands.{back.name}: "
                "the device could not tell them apart"
            )
        key = (cmd.endpoint, frame)
        if key in seen:
            raise ValueError(
                f"commands.{seen[key]} and commands.{name} are the same frame "
                f"({frame.hex(' ')}): the device could not tell them apart"
            )
        seen[key] = name


def check_v2(profile: Profile) -> None:
    """Raise ValueError with the first reason a version-2 profile cannot work."""
    if profile.capabilities.command_style != "settings":
        raise ValueError("a version-2 profile has capabilities.command_style = 'settings'")
    _check_commands(profile)
    _check_settings(profile)
    for field in ("wake", "keepalive"):
        cmd = getattr(profile.connection, field)
        if cmd is not None:
            if cmd not in profile.commands:
                raise ValueError(f"connection.{field}: no command {cmd!r}")
            if profile.commands[cmd].takes_arg:
                raise ValueError(f"connection.{field}: {cmd!r} must not take a value")
    if profile.connection.wake_idle_seconds is not None and profile.connection.wake is None:
        raise ValueError("connection.wake_idle_seconds needs connection.wake")
    _check_frames(profile)


__all__ = ["REQUIRED_SETTINGS", "SETTING_NAMES", "check_v2", "parse_value", "value_domain"]
