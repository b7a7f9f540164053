"""Running the bridge inside an owner's process (the daemon): the smallest wiring.

``async with bridge_running(owner, config.mqtt, args.mqtt):`` starts the bridge as a
background task when a broker is configured (``[mqtt] url``, ``$FOOTCTL_MQTT_URL`` or
``--mqtt``) and does nothing otherwise; on exit the bridge says ``offline`` and stops.
A broker that is down never holds the owner up: the bridge keeps retrying on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from footctl.config import MqttConfig
from footctl.control.port import Controller
from footctl.mqtt.bridge import MqttBridge
from footctl.mqtt.settings import resolve

_LOG = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def bridge_running(
    controller: Controller, section: MqttConfig | None, flag_url: str | None = None
) -> AsyncIterator[MqttBridge | None]:
    """The bridge for ``controller`` while the block runs (None: no broker configured).
    Raises :class:`footctl.errors.ConfigError` for a bad URL before anything starts."""
    settings = resolve(section, flag_url)
    if settings is None:
        yield None
        return
    bridge = MqttBridge(controller, settings)
    task = asyncio.get_running_loop().create_task(bridge.run(), name="footctl.mqtt")
    _LOG.info("mqtt: bridging to %s as %s", settings.display(), settings.client_id)
    try:
        yield bridge
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
