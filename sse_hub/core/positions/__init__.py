"""Per-channel ids (the sharded broker): a stream's position, its subscriber policy, its replay."""
