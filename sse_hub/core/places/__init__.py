"""Per-channel ids (the sharded broker): a stream's place, its subscriber policy, its replay."""
