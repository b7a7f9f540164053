"""The user's configuration file (TOML), its location, and user caps.

Location: ``--config`` flag, else ``$FOOTCTL_CONFIG``, else ``config.toml`` in the
platform's user config directory. A missing file means defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from footctl.errors import ConfigError, ProfileProblem
from footctl.safety import limits as L
from footctl.schedule import DEFAULT_MAX_SESSIONS_PER_NIGHT, Schedule
from footctl.tomlfile import error_reason, toml_error_line

APP_NAME = "footctl"
CONFIG_ENV = "FOOTCTL_CONFIG"
STATE_DIR_ENV = "FOOTCTL_STATE_DIR"
RUNTIME_DIR_ENV = "FOOTCTL_RUNTIME_DIR"
DATA_DIR_ENV = "FOOTCTL_DATA_DIR"

# Sessions per night may be lowered to 1; past this bound a scheduling mistake (a
# cron expression matching every few minutes) could start program after program.
CEILING_SESSIONS_PER_NIGHT = 4


class _Model(BaseModel):
    # Strict: a value of the wrong TOML type ("15" for 15, "yes" or 1 for true) is an
    # error naming its line, never coerced and applied (an integer is still a number).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# TOML has no path type: a path is written as a string (strict mode wants a Path).
FilePath = Annotated[Path, Field(strict=False)]


class CapsConfig(_Model):
    """User caps. Each may lower a default; none may pass its ceiling."""

    max_session_minutes: Annotated[float, Field(gt=0, le=L.CEILING_SESSION_S / 60)] = (
        L.DEFAULT_SESSION_S / 60
    )
    max_heat_minutes: Annotated[float, Field(gt=0, le=L.CEILING_HEAT_S / 60)] = (
        L.DEFAULT_HEAT_S / 60
    )
    max_temperature_c: Annotated[float, Field(gt=20, le=L.CEILING_TEMPERATURE_C)] = (
        L.DEFAULT_TEMPERATURE_C
    )
    max_intensity: Annotated[int, Field(ge=0)] | None = None
    # Floors and ceilings are the design's (see safety/limits.py for each reason):
    # unattended heat never above the lowest level, the heartbeat never disabled. The
    # cooldown and the ramp may be written lower (tests and demos run the virtual
    # massager fast), but the governor never goes below their floors on a real radio
    # (Limits.with_floors): cooldown >= 15 min, ramp >= 5 s per level.
    cooldown_minutes: Annotated[float, Field(ge=0)] = L.DEFAULT_COOLDOWN_S / 60
    max_sessions_per_night: Annotated[int, Field(ge=1, le=CEILING_SESSIONS_PER_NIGHT)] = (
        DEFAULT_MAX_SESSIONS_PER_NIGHT
    )
    heartbeat_seconds: Annotated[
        float, Field(ge=L.FLOOR_HEARTBEAT_S, le=L.CEILING_HEARTBEAT_S)
    ] = L.DEFAULT_HEARTBEAT_S
    intensity_step_seconds: Annotated[
        float, Field(ge=0, le=L.CEILING_RAMP_STEP_S)
    ] = L.DEFAULT_RAMP_STEP_S
    unattended_heat_level: Annotated[int, Field(ge=0, le=L.CEILING_UNATTENDED_HEAT_LEVEL)] = (
        L.DEFAULT_UNATTENDED_HEAT_LEVEL
    )
    no_heat: bool = False
    clamp: bool = Field(
        default=False, description="clamp over-cap requests to the cap instead of refusing them"
    )

    def to_caps(self) -> L.Caps:
        """As runtime caps."""
        return L.Caps(
            session_s=self.max_session_minutes * 60,
            heat_s=self.max_heat_minutes * 60,
            temperature_c=self.max_temperature_c,
            intensity=self.max_intensity,
            cooldown_s=self.cooldown_minutes * 60,
            heartbeat_s=self.heartbeat_seconds,
            ramp_step_s=self.intensity_step_seconds,
            unattended_heat_level=self.unattended_heat_level,
            no_heat=self.no_heat,
            clamp=self.clamp,
        )


class DeviceConfig(_Model):
    """A known massager."""

    address: str
    profile: str
    name: str | None = None
    # A virtual massager of this profile at this address, in the owner's process
    # (tests and demos): the same code path as a real one, no radio needed.
    simulate: bool = False


class MqttConfig(_Model):
    """The MQTT bridge (``[mqtt]``): the broker and the topics. ``--mqtt URL`` or
    ``$FOOTCTL_MQTT_URL`` override ``url``; ``$FOOTCTL_MQTT_PASSWORD`` overrides
    ``password`` (keep passwords out of the URL: it is shown in logs and ``ps``)."""

    url: str | None = Field(
        default=None, description="mqtt://[user@]host[:port] or mqtts://[user@]host[:port]"
    )
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    ca_file: FilePath | None = Field(default=None, description="CA certificate(s) for mqtts://")
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    base_topic: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")] = "footctl"
    host_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")] | None = Field(
        default=None, description="this host's name in the client id and bridge topic"
    )
    discovery: bool = True
    discovery_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")] = (
        "homeassistant"
    )
    # Lease of a remote source (DESIGN.md: dead man 60 s, at most 600 s).
    lease_seconds: Annotated[float, Field(ge=5, le=600)] = L.DEFAULT_HEARTBEAT_S
    keepalive_seconds: Annotated[int, Field(ge=5, le=600)] = 30


class Config(_Model):
    """The whole configuration file."""

    caps: CapsConfig = CapsConfig()
    devices: list[DeviceConfig] = Field(default_factory=list)
    profile_dirs: list[FilePath] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    mqtt: MqttConfig | None = None
    # Where the file came from and the line of each key, so a problem found later (a
    # [[devices]] profile that does not exist) can name the file and line.
    _source: Path | None = PrivateAttr(default=None)
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from (None: defaults, no file)."""
        return self._source

    def where(self, *loc: str | int) -> str:
        """``file:line`` of a key path such as ``("devices", 0, "profile")``, as far
        as it is known (``<defaults>`` without a file)."""
        if self._source is None:
            return "<defaults>"
        from footctl.device.profile.loader import _lookup  # noqa: PLC0415 - lazily, like the loader

        line = _lookup(self._lines, tuple(loc))
        return f"{self._source}:{line}" if line is not None else str(self._source)

    def problem(self, reason: str, *loc: str | int) -> ConfigError:
        """A config error about the key at ``loc``, naming the file, line and field."""
        from footctl.device.profile.loader import _lookup  # noqa: PLC0415

        field = _field_name(loc)
        return ConfigError(
            f"{self.where(*loc)}: {field}: {reason}",
            problems=[ProfileProblem(self._source, field, reason, _lookup(self._lines, loc))],
            advice=CONFIG_ADVICE,
        )


def config_path(flag: str | None = None) -> Path:
    """Where the config file is read from."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def state_dir() -> Path:
    """Where footctl keeps state between runs (crash markers, journal)."""
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_state_dir(APP_NAME))


def data_dir() -> Path:
    """Where footctl keeps the user's data (the session journal): ``$FOOTCTL_DATA_DIR``,
    else the platform's user data dir (``~/.local/share/footctl`` on Linux)."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME))


def journal_path() -> Path:
    """The session journal (SQLite)."""
    return data_dir() / "journal.sqlite3"


def runtime_dir() -> Path:
    """Where sockets go (per-user, not world-readable)."""
    env = os.environ.get(RUNTIME_DIR_ENV)
    if env:
        return Path(env)
    return Path(platformdirs.user_runtime_dir(APP_NAME))


CONFIG_ADVICE = "see README.md, 'Configuration' (or 'footctl config show') for the fields"


def _field_name(loc: tuple[str | int, ...]) -> str:
    """A key path as the user wrote it: ``devices[0].profile``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out or "<root>"


_SCHEDULE_KINDS = ("weekly", "bedtime", "cron")


def _config_problems(exc: ValidationError, path: Path, lines: dict[tuple[str | int, ...], int]
                     ) -> list[ProfileProblem]:
    from footctl.device.profile.loader import _lookup  # noqa: PLC0415

    problems: list[ProfileProblem] = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        # The discriminated union adds the kind as a location step; the file has no such key.
        key = tuple(p for i, p in enumerate(loc)
                    if not (i == 2 and loc[0] == "schedules" and p in _SCHEDULE_KINDS))
        problems.append(
            ProfileProblem(path, _field_name(key), error_reason(err), _lookup(lines, key))
        )
    return problems


def load_config(path: Path) -> Config:
    """Read and validate the config file; a missing file gives the defaults. An
    invalid file raises one :class:`ConfigError` listing every problem with file,
    line and field."""
    if not path.exists():
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = toml_error_line(exc)
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(
            f"{where}: not valid TOML: {exc}",
            problems=[ProfileProblem(path, "<toml>", str(exc), line)],
        ) from exc
    from footctl.device.profile.loader import _key_lines  # noqa: PLC0415

    lines = _key_lines(text)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = _config_problems(exc, path, lines)
        raise ConfigError(
            "; ".join(str(p) for p in problems), problems=problems, advice=CONFIG_ADVICE
        ) from exc
    config._source = path
    config._lines = lines
    return config


@dataclass(frozen=True)
class Salvaged:
    """What of a config file can still be checked against profiles, programs and
    schedules when parts of it are invalid: ``config`` holds the parts that are
    valid on their own; ``devices`` and ``schedules`` keep every entry at its place
    in the file (None where that entry is invalid), so problems name the right one."""

    config: Config
    devices: list[DeviceConfig | None]
    schedules: list[Schedule | None]


def salvage_config(path: Path) -> Salvaged | None:
    """The valid parts of the config file at ``path`` (each ``[[devices]]`` and
    ``[[schedules]]`` entry, each ``[caps]`` and ``[mqtt]`` key, the profile dirs, taken
    alone), for ``config check`` to go on past the errors :func:`load_config` lists.
    None if the file is missing, unreadable or not TOML (nothing to go on with)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    from footctl.device.profile.loader import _key_lines  # noqa: PLC0415

    kept: dict[str, Any] = {}
    entries: dict[str, list[Any]] = {"devices": [], "schedules": []}
    for key, model in (("devices", DeviceConfig), ("schedules", None)):
        items = data.get(key)
        for item in items if isinstance(items, list) else []:
            entries[key].append(_valid_alone(model, item))
        kept[key] = [e for e in entries[key] if e is not None]
    for key in ("caps", "mqtt"):
        section = data.get(key)
        if isinstance(section, dict):
            kept[key] = {k: v for k, v in section.items() if _valid({key: {k: v}})}
    if _valid({"profile_dirs": data.get("profile_dirs", [])}):
        kept["profile_dirs"] = data.get("profile_dirs", [])
    try:
        config = Config.model_validate(kept)
    except ValidationError:  # a combination of valid parts is invalid: nothing to go on with
        return None
    config._source = path
    config._lines = _key_lines(text)
    return Salvaged(config, entries["devices"], entries["schedules"])


def _valid(data: dict[str, Any]) -> bool:
    try:
        Config.model_validate(data)
    except ValidationError:
        return False
    return True


def _valid_alone(model: type[DeviceConfig] | None, item: object) -> Any:
    """``item`` validated as a device (``model``) or a schedule (None), else None."""
    from footctl.schedule import parse_schedule  # noqa: PLC0415

    try:
        return model.model_validate(item) if model is not None else parse_schedule(item)
    except ValidationError:
        return None
