"""BLE transport: bleak, for real adapters and for the virtual link alike."""
