"""What every layer speaks: the message, its SSE encoding, the broker contract, per-channel positions."""
