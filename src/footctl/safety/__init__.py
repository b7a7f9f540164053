"""The safety governor: the one path from every command source to a device."""
