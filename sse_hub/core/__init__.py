"""The hub: streams, registry, fan-out, flushing, replay, counters. No aiohttp, no Redis."""
