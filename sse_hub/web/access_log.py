"""One access-log line per finished request, with credentials in the query redacted.

Invariants:

1. No credential reaches a log line: the values of ``token``, ``ticket``,
   ``access_token`` (any case) are written ``[redacted]``. The parameters are the ones the
   app reads (``request.query``, percent-decoded), so ``?%74oken=`` is redacted too.
2. A client cannot forge a log line: the path and the query are written percent-encoded,
   so a ``%0A`` in a URL stays ``%0A`` in the log, never a line break.
3. ``SecretFilter`` does the same for the lines aiohttp itself writes (``aiohttp.server``)
   about requests it could not parse: those quote the raw request line, query and all,
   at ERROR level, so a JWT in a URL that is too long or carries one bad byte would
   otherwise be logged in clear.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse

# Query parameters that carry credentials (subscriber JWT, one-time ticket): never logged.
SECRET_PARAMS = frozenset({"token", "ticket", "access_token"})
REDACTED = "[redacted]"
# Characters kept as they are (RFC 3986 unreserved and sub-delims, plus the ones a path or
# a query value may hold unescaped); everything else, controls included, is %XX.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = ":@!$'()*+,;/?-._~"
# In free text (aiohttp's messages quote raw request lines and header lines): the value
# of any ``...token=`` or ``ticket=`` parameter, and bearer credentials.
_SECRET_IN_TEXT = re.compile(r"(?i)((?:[\w.-]*token|ticket)=)[^&\s'\";,]*|(\bbearer\s+)[^\s'\";,]+")


def redacted_path(request: BaseRequest) -> str:
    path = quote(request.path, safe=_PATH_SAFE)
    if not request.query_string:
        return path
    parts = []
    for key, value in request.query.items():
        shown = REDACTED if key.lower() in SECRET_PARAMS else quote(value, safe=_QUERY_SAFE)
        parts.append(f"{quote(key, safe=_QUERY_SAFE)}={shown}")
    return f"{path}?{'&'.join(parts)}"


def redact_text(text: str) -> str:
    """Free text with query credentials and bearer tokens replaced by ``[redacted]``."""
    return _SECRET_IN_TEXT.sub(lambda match: (match[1] or match[2]) + REDACTED, text)


class SecretFilter(logging.Filter):
    """Redact credentials from records of ``aiohttp.server``.

    Install it on that logger (``logging.getLogger("aiohttp.server").addFilter(...)``).
    A request aiohttp could not parse comes with the parser's exception, whose message
    quotes the raw bytes; its traceback says nothing useful (always the parser), so the
    redacted message is folded into the line and the traceback dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            message = f"{message}: {type(error).__name__}: {' '.join(str(error).split())}"
            record.exc_info = None
            record.exc_text = None
        record.msg = redact_text(message)
        record.args = None
        return True


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %.3fs ip=%s",
            request.method,
            redacted_path(request),
            response.status,
            time,
            request.remote,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
