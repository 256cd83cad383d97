"""HTTP handlers: thin adapters between aiohttp and the hub.

Invariants: a handler validates the request (errors are ``HubError``s, turned into JSON by
the middleware), asks the hub, and shapes the answer; fan-out, ids and history are never
done here. Streams are written by their ``Subscriber`` only, never by a handler.
"""
