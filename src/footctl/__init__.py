"""footctl: drive heated shiatsu foot massagers over Bluetooth Low Energy, safely."""

__version__ = "0.1.0"
