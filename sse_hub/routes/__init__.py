"""HTTP handlers: thin adapters between aiohttp and the hub."""
