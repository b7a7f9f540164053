"""The MQTT bridge: a command source for home-automation hubs (Home Assistant).

- :mod:`footctl.mqtt.settings`: the broker (``[mqtt]``, ``--mqtt URL``, environment)
- :mod:`footctl.mqtt.topics`: the topic layout
- :mod:`footctl.mqtt.payloads`: commands in (validated once), state and errors out
- :mod:`footctl.mqtt.discovery`: Home Assistant device-based discovery
- :mod:`footctl.mqtt.bridge`: the bridge, written against ``control.port.Controller``
- :mod:`footctl.mqtt.check`: ``footctl mqtt check``
"""
