"""The user's configuration file (TOML), its location, and user caps.

Location: ``--config`` flag, else ``$FOOTCTL_CONFIG``, else ``config.toml`` in the
platform's user config directory. A missing file means defaults.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from footctl.errors import ConfigError
from footctl.safety import limits as L
from footctl.schedule import DEFAULT_MAX_SESSIONS_PER_NIGHT, Schedule

APP_NAME = "footctl"
CONFIG_ENV = "FOOTCTL_CONFIG"
STATE_DIR_ENV = "FOOTCTL_STATE_DIR"
RUNTIME_DIR_ENV = "FOOTCTL_RUNTIME_DIR"
DATA_DIR_ENV = "FOOTCTL_DATA_DIR"

# Sessions per night may be lowered to 1; past this bound a scheduling mistake (a
# cron expression matching every few minutes) could start program after program.
CEILING_SESSIONS_PER_NIGHT = 4


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class Config(_Model):
    """The whole configuration file."""

    caps: CapsConfig = CapsConfig()
    devices: list[DeviceConfig] = Field(default_factory=list)
    profile_dirs: list[Path] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)


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


def load_config(path: Path) -> Config:
    """Read and validate the config file; a missing file gives the defaults."""
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{path}: {field}: {first['msg']}",
            advice="see README.md, 'Configuration' for the fields and their ceilings",
        ) from exc
