"""Where the broker is and how to reach it: the ``[mqtt]`` config section, overridden
by ``--mqtt URL`` or ``$FOOTCTL_MQTT_URL``; the password by ``$FOOTCTL_MQTT_PASSWORD``.

The password never appears in a ``repr``, a log line or an error message; a URL
that carries one is refused (it would show in ``ps`` and in shell history).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from footctl.config import MqttConfig
from footctl.errors import ConfigError

URL_ENV = "FOOTCTL_MQTT_URL"
PASSWORD_ENV = "FOOTCTL_MQTT_PASSWORD"

# IANA ports for MQTT over TCP and over TLS.
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883

_HOST_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
# MQTT 3.1 brokers may refuse client ids longer than 23 bytes; 3.1.1 and 5 brokers
# accept more, but a short id is what every broker takes.
_MAX_HOST_ID = 16


@dataclass(frozen=True)
class BrokerSettings:
    """Everything the bridge needs to connect and name its topics."""

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    keepalive_s: int = 30
    base_topic: str = "footctl"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    host_id: str = "footctl"
    lease_s: float = 60.0

    @property
    def client_id(self) -> str:
        """One client id per host: two daemons on one broker never kick each other off."""
        return f"footctl-{self.host_id}"

    def display(self) -> str:
        """The broker as a URL, without the password (for logs and messages)."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``mqtts://`` (the CA file, else the system's CAs).
        Reads files: call it off the event loop, or once at start."""
        if not self.tls:
            return None
        try:
            return ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"mqtt: cannot use the CA file {self.ca_file}: {exc}",
                advice="set [mqtt] ca_file to a readable PEM file",
            ) from exc


@dataclass(frozen=True)
class ParsedUrl:
    """The parts of a broker URL."""

    host: str
    port: int
    tls: bool
    username: str | None


def parse_broker_url(url: str) -> ParsedUrl:
    """``mqtt://[user@]host[:port]`` or ``mqtts://...``; raises :class:`ConfigError`."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"mqtt: bad broker URL: {exc}", advice=_URL_ADVICE) from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(
            f"mqtt: broker URL must start with mqtt:// or mqtts:// (got {parts.scheme!r})",
            advice=_URL_ADVICE,
        )
    if parts.password is not None:
        raise ConfigError(
            "mqtt: a password in the broker URL would show in logs and ps",
            advice=f"put it in ${PASSWORD_ENV} or [mqtt] password in the config file",
        )
    if not parts.hostname:
        raise ConfigError("mqtt: the broker URL names no host", advice=_URL_ADVICE)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("mqtt: the broker URL has a path or query", advice=_URL_ADVICE)
    tls = parts.scheme == "mqtts"
    return ParsedUrl(
        host=parts.hostname,
        port=port if port is not None else (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
    )


_URL_ADVICE = "e.g. --mqtt mqtt://user@broker.local:1883 (or mqtts:// for TLS)"


def default_host_id() -> str:
    """This machine's short host name, reduced to topic-safe characters."""
    name = socket.gethostname().split(".")[0]
    return _HOST_ID_CHARS.sub("-", name)[:_MAX_HOST_ID] or "footctl"


def resolve(
    config: MqttConfig | None,
    flag_url: str | None = None,
    env: dict[str, str] | os._Environ[str] | None = None,
) -> BrokerSettings | None:
    """The broker settings from the config section, ``--mqtt`` and the environment
    (flag over environment over file). None when no broker is configured anywhere."""
    environ = os.environ if env is None else env
    section = config or MqttConfig()
    url = flag_url or environ.get(URL_ENV) or section.url
    if not url:
        return None
    parsed = parse_broker_url(url)
    password = environ.get(PASSWORD_ENV) or section.password
    username = parsed.username or section.username
    if password and not username:
        raise ConfigError(
            "mqtt: a password without a user name",
            advice="mqtt://USER@host, or [mqtt] username",
        )
    return BrokerSettings(
        host=parsed.host,
        port=parsed.port,
        tls=parsed.tls,
        username=username,
        password=password,
        ca_file=section.ca_file,
        protocol=section.protocol,
        keepalive_s=section.keepalive_seconds,
        base_topic=section.base_topic,
        discovery=section.discovery,
        discovery_prefix=section.discovery_prefix,
        host_id=section.host_id or default_host_id(),
        lease_s=section.lease_seconds,
    )
