"""``footctl mqtt check``: is the broker reachable, and do the credentials work?

It connects once with this host's client id plus ``-check`` (so a running daemon's
connection is left alone), disconnects, and says what happened.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from footctl.config import MqttConfig
from footctl.errors import ExitCode, UsageError
from footctl.mqtt.bridge import BROKER_TIMEOUT_S
from footctl.mqtt.settings import PASSWORD_ENV, URL_ENV, BrokerSettings, resolve

if TYPE_CHECKING:
    from footctl.cli import Output

# CONNACK codes for refused credentials: MQTT 3.1.1 (4, 5) and MQTT 5 (134, 135).
_BAD_CREDENTIALS = frozenset({4, 5, 134, 135})


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one connection attempt."""

    ok: bool
    broker: str
    message: str
    error: str | None = None
    advice: str | None = None
    exit_code: int = ExitCode.OK

    def to_dict(self) -> dict[str, object]:
        """For ``--json``."""
        out: dict[str, object] = {"ok": self.ok, "broker": self.broker, "message": self.message}
        if self.error:
            out["error"] = self.error
        if self.advice:
            out["advice"] = self.advice
        return out


async def check_broker(settings: BrokerSettings, timeout: float = BROKER_TIMEOUT_S) -> CheckResult:
    """Connect once and report."""
    broker = settings.display()
    try:
        tls = await asyncio.to_thread(settings.tls_context)
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=f"{settings.client_id}-check",
            protocol=(
                aiomqtt.ProtocolVersion.V5 if settings.protocol == "5"
                else aiomqtt.ProtocolVersion.V311
            ),
            tls_context=tls,
            timeout=timeout,
        )
        async with asyncio.timeout(timeout * 2):
            async with client:
                pass
    except MqttConnectError as exc:
        code = exc.rc if isinstance(exc.rc, int) else getattr(exc.rc, "value", None)
        if code in _BAD_CREDENTIALS:
            return CheckResult(
                False, broker, f"{broker} refused the credentials ({exc})",
                error="credentials",
                advice=f"check the user name and ${PASSWORD_ENV} (or [mqtt] password)",
                exit_code=ExitCode.USAGE,
            )
        return CheckResult(False, broker, f"{broker} refused the connection ({exc})",
                           error="refused", exit_code=ExitCode.UNREACHABLE)
    except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
        text = str(exc)
        if "SSL" in text or "CERTIFICATE" in text:
            return CheckResult(
                False, broker, f"{broker}: TLS failed ({text})", error="tls",
                advice="point [mqtt] ca_file at the CA that signed the broker's certificate",
                exit_code=ExitCode.UNREACHABLE,
            )
        return CheckResult(
            False, broker, f"{broker} is not reachable ({exc or type(exc).__name__})",
            error="unreachable",
            advice="is the broker running, and are the host, port and TLS setting right?",
            exit_code=ExitCode.UNREACHABLE,
        )
    who = f" as {settings.username}" if settings.username else ""
    return CheckResult(True, broker, f"{broker} is reachable; connected{who}")


async def mqtt_command(flag_url: str | None, section: MqttConfig | None, out: Output) -> int:
    """``footctl mqtt check``: print the result; exit 0, 2 (credentials or no broker
    configured) or 3 (unreachable)."""
    settings = resolve(section, flag_url)
    if settings is None:
        raise UsageError(
            "no MQTT broker configured",
            advice=f"--mqtt mqtt://host, ${URL_ENV}, or [mqtt] url in the config file",
        )
    result = await check_broker(settings)
    if result.ok:
        out.result(result.to_dict(), result.message)
    else:
        text = result.message + (f" ({result.advice})" if result.advice else "")
        out.error(result.to_dict(), text)
    return result.exit_code
