"""Mercure protocol support: the parts that need no server (the endpoint is wired elsewhere).

One module per job, all pure (no aiohttp, no broker), so every rule is tested directly:

- ``protocol``: the two protocol versions (draft-07 and 1.0) and their names.
- ``uritemplate``: RFC 6570 templates -> a regex of their expansions (for RE2).
- ``selectors``: topic selectors (``*``, exact, URI template, URL Pattern) compiled into
  cached linear-time matchers; ``should_deliver`` for private updates.
- ``tokens``: which token a request presents (header, query, cookies).
- ``grants`` and ``auth``: JWT verification (PyJWT) and the publish/subscribe decisions.
- ``errors``: 401/403 in RFC 6750 form (``bearer_challenge``).
- ``publish_form``: the form-encoded publish body -> ``UpdateForm``.
- ``subscribe_query``: the subscribe query -> ``SubscribeRequest``.
- ``ids``: hub ids (``#<n>``), publisher ids and cursors.
- ``update``: the metadata a hub message carries when it is a Mercure update.
- ``routing``: the internal feed channel every update rides on.
- ``fanout``: the index that picks a Mercure update's local subscribers.

See docs/mercure.md for what is supported and how the endpoint will be integrated.
"""
