"""The aiohttp internals sse_hub relies on, checked against the installed aiohttp, so that a
new aiohttp fails here, naming what changed, rather than as a hang or a lost stream in the
app tests.

- ``sse_hub/web/front.py``: ``FrontSite.start`` re-implements ``TCPSite.start``, and the front
  protocol hands a connection over to a ``RequestHandler`` it makes with ``Server()``
  (``set_protocol``, ``connection_made``, then the buffered bytes).
- ``sse_hub/web/stream_protocol.py``: ``hand_over`` detaches a live stream from its
  ``RequestHandler`` by setting its ``transport`` to None and calling its
  ``connection_lost`` once the request task ends.
- ``sse_hub/web/routes/stream.py``: the stream's chunks go straight to the transport after
  ``StreamResponse.prepare``, so prepare must have put the head on the wire.
- ``sse_hub/ops/server.py``: ``AppRunner``'s keyword arguments reach the ``RequestHandler``
  (``Server()`` drops the ones it rejects with only a warning).

The behaviour end to end is in the app tests (test_front.py, test_stream_protocol.py); here
each reliance is checked alone, without a socket. pyproject.toml pins aiohttp to the minor
these were written for: run this file against a new minor before raising the pin.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import inspect
import logging
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp.http
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler
from packaging.requirements import Requirement
from packaging.version import Version

from sse_hub.web.front import FrontSite

ROOT = Path(__file__).resolve().parents[2]
TESTED = "3.14"  # the aiohttp minor these checks were written against
INSTALLED = importlib.metadata.version("aiohttp")


def changed(user: str, what: str, recheck: str) -> str:
    return (
        f"{user} relies on aiohttp's {what} (aiohttp {TESTED}); aiohttp {INSTALLED} changed it: "
        f"re-check {recheck} before raising the aiohttp pin in pyproject.toml"
    )


FRONT = "sse_hub/web/front.py"
STREAM = "sse_hub/web/stream_protocol.py"


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def self_attributes(function: Callable[..., Any]) -> set[str]:
    """The ``self.<name>`` attributes a method's source reads or writes."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
    }


def is_property(cls: type, name: str) -> bool:
    return isinstance(inspect.getattr_static(cls, name, None), property)


class FakeTransport(asyncio.Transport):
    """A transport without a socket: records what is written and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True


class RecordingAccessLogger(AbstractAccessLogger):
    lines: list[int] = []

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.lines.append(response.status)


async def answer(request: web.BaseRequest) -> web.StreamResponse:
    return web.Response()


# -- the pin -----------------------------------------------------------------------------


def test_the_installed_aiohttp_is_within_the_pinned_range() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [Requirement(line) for line in dependencies if Requirement(line).name == "aiohttp"]
    assert pin.specifier.contains(INSTALLED), (
        f"aiohttp {INSTALLED} is installed but pyproject.toml pins {pin}: reinstall (`pip install -e .`)"
    )
    assert Version(INSTALLED).release[:2] == Version(TESTED).release, (
        f"the pin {pin} admits aiohttp {INSTALLED}, but these checks were written for {TESTED}: "
        "update TESTED here once this file passes on the new minor"
    )


# -- sse_hub/web/front.py ------------------------------------------------------------------


async def test_server_makes_a_request_handler_that_is_a_plain_protocol() -> None:
    assert parameters(web.Server.__call__) == ["self"], changed(FRONT, "Server.__call__()", "FrontProtocol's factory")
    handler = web.Server(answer)()
    assert isinstance(handler, RequestHandler), changed(FRONT, "Server() returning a RequestHandler", "_hand_over")
    assert isinstance(handler, asyncio.Protocol), changed(FRONT, "RequestHandler, an asyncio.Protocol", "_hand_over")
    for method, expected in [
        ("connection_made", ["transport"]),
        ("data_received", ["data"]),
        ("eof_received", []),
        ("pause_writing", []),
    ]:
        assert parameters(getattr(handler, method)) == expected, changed(
            FRONT, f"RequestHandler.{method}({', '.join(expected)})", "_hand_over"
        )


def test_front_site_starts_as_tcp_site_does() -> None:
    assert issubclass(FrontSite, web.TCPSite)
    slots = {slot for cls in web.TCPSite.__mro__ for slot in getattr(cls, "__slots__", ())}
    for attribute in sorted(self_attributes(FrontSite.start)):
        assert attribute in slots, changed(FRONT, f"TCPSite.{attribute}", "FrontSite.start")
    assert "self._runner._reg_site(self)" in inspect.getsource(web.BaseSite.start), changed(
        FRONT, "BaseSite.start registering the site with its runner", "FrontSite.start"
    )
    assert is_property(web.BaseRunner, "server") and is_property(web.AppRunner, "app"), changed(
        FRONT, "BaseRunner.server and AppRunner.app", "FrontSite.start"
    )
    # FrontSite.start is TCPSite.start with another protocol factory, less TLS (the hub
    # serves plain HTTP behind its proxy) and less _bound_port (so FrontSite.port is the
    # port asked for). A TCPSite.start that touches anything else did something new.
    assert self_attributes(web.TCPSite.start) == {
        "_runner",
        "_host",
        "_port",
        "_ssl_context",
        "_backlog",
        "_reuse_address",
        "_reuse_port",
        "_server",
        "_bound_port",
    }, changed(FRONT, "TCPSite.start, which FrontSite.start re-implements", "FrontSite.start against it")
    assert self_attributes(web.TCPSite.start) - self_attributes(FrontSite.start) == {"_ssl_context", "_bound_port"}


# -- sse_hub/web/stream_protocol.py, routes/stream.py ------------------------------------------


def test_a_request_exposes_its_handler_transport_task_and_writer() -> None:
    for name in ("protocol", "transport", "task", "writer"):
        assert is_property(web.BaseRequest, name), changed(STREAM, f"BaseRequest.{name}", "hand_over")
    assert parameters(RequestHandler.connection_lost) == ["self", "exc"], changed(
        STREAM, "RequestHandler.connection_lost(exc)", "hand_over"
    )
    assert is_property(web.Server, "connections"), changed(STREAM, "Server.connections", "hand_over and the drain")


async def test_a_handler_whose_transport_is_none_lets_go_of_the_connection() -> None:
    """What ``hand_over`` does, on aiohttp's objects alone: once the stream's head is out,
    take the transport, set the handler's ``transport`` to None and call its
    ``connection_lost`` when the request task ends. aiohttp must then write nothing more,
    not close the socket, still log the request, and forget the connection."""
    transport = FakeTransport()
    head_on_the_wire = b""
    request_task: asyncio.Future[asyncio.Task[None]] = asyncio.get_running_loop().create_future()

    async def stream(request: web.BaseRequest) -> web.StreamResponse:
        nonlocal head_on_the_wire
        try:
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            response.force_close()
            await response.prepare(request)
            head_on_the_wire = bytes(transport.written)
            handler = request.protocol
            assert request.transport is transport
            transport.set_protocol(asyncio.Protocol())
            handler.transport = None
            request.task.add_done_callback(lambda _task: handler.connection_lost(None))
            request_task.set_result(request.task)
            return response
        except Exception as exc:
            request_task.set_exception(exc)  # raised in the test, not answered as a 500
            raise

    RecordingAccessLogger.lines.clear()
    server = web.Server(
        stream, handler_cancellation=True, access_log_class=RecordingAccessLogger, access_log=logging.getLogger("x")
    )
    handler = server()
    handler.connection_made(transport)
    handler.data_received(b"GET /events/news HTTP/1.1\r\nHost: localhost\r\n\r\n")
    async with asyncio.timeout(5):
        await asyncio.wait([await request_task])
    await asyncio.sleep(0)  # the task's done callbacks, connection_lost among them

    assert head_on_the_wire.startswith(b"HTTP/1.1 200 OK\r\n") and head_on_the_wire.endswith(b"\r\n\r\n"), changed(
        "sse_hub/web/routes/stream.py",
        "StreamResponse.prepare sending the head at once (StreamResponse._send_headers_immediately)",
        "where the stream's first chunk is written",
    )
    assert bytes(transport.written) == head_on_the_wire, changed(
        STREAM, "StreamWriter reading protocol.transport at each write (None: no write)", "hand_over"
    )
    assert not transport.closed, changed(
        STREAM, "RequestHandler.start closing only a transport it still has", "hand_over"
    )
    assert RecordingAccessLogger.lines == [200], changed(
        STREAM, "finish_response logging a request whose write_eof raised ConnectionError", "hand_over"
    )
    assert server.connections == [], changed(
        STREAM, "RequestHandler.connection_lost removing it from Server.connections", "hand_over and the drain"
    )


# -- sse_hub/ops/server.py ---------------------------------------------------------------------


def test_the_runner_settings_reach_the_request_handler() -> None:
    # Server() retries a RequestHandler it cannot make without the runner's keyword
    # arguments, logging a warning: a renamed one would silently lose the slowloris bound.
    handler_parameters = parameters(RequestHandler.__init__)
    for name in ("keepalive_timeout", "access_log", "access_log_class"):
        assert name in handler_parameters, changed("sse_hub/ops/server.py", f"RequestHandler({name}=)", "run_server")
    assert "handler_cancellation" in parameters(web.Server.__init__), changed(
        "sse_hub/ops/server.py", "Server(handler_cancellation=)", "run_server"
    )
    assert parameters(RequestHandler.close) == ["self"], changed(
        "sse_hub/ops/server.py", "RequestHandler.close()", "drain"
    )
    assert isinstance(aiohttp.http.SERVER_SOFTWARE, str), changed(
        "sse_hub/web/front_http.py", "aiohttp.http.SERVER_SOFTWARE", "the front's Server header"
    )
