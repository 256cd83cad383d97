"""The HTTP face: the aiohttp app, middleware, auth, the streaming life cycle, routes, OpenAPI."""
