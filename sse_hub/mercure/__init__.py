"""The Mercure protocol (draft-07 and 1.0) over the hub's channels: its rules, one module
per job.

The endpoint is ``sse_hub/web/routes/mercure.py``; what a message carries when it is an
update, and the feed channel every update rides on, are ``sse_hub/messages/mercure.py``
(every layer sees those); the hub sends updates to their subscribers with ``fanout``.

- ``protocol``: the two protocol versions and their names.
- ``uritemplate``: RFC 6570 templates -> a regex of their expansions (for RE2).
- ``selectors``: topic selectors (``*``, exact, URI template, URL Pattern) compiled into
  cached linear-time matchers; ``should_deliver`` for private updates.
- ``tokens``: which token a request presents (header, query, cookies).
- ``grants`` and ``auth``: JWT verification (PyJWT) and the publish/subscribe decisions.
- ``errors``: 401/403 in RFC 6750 form.
- ``publish_form``: the form-encoded publish body -> ``UpdateForm``.
- ``subscribe_query``: the subscribe query -> ``SubscribeRequest``.
- ``ids``: cursors (``earliest``, a hub id ``#<n>``, a publisher id) and where a replay starts.
- ``replay``: reading the feed's history for a resuming subscriber, filtered and paged.
- ``fanout``: ``MercureIndex``, which picks an update's local subscribers.

Invariant: no aiohttp, no hub, no broker implementation; ``replay`` reads through the
``Broker`` contract it is given. So every rule is tested directly. What is supported:
docs/mercure.md.
"""
