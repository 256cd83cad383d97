"""``sse-hub publish`` and ``sse-hub tail``: the command-line face of ``sse_hub.client``.

``sse_hub.cli`` (the ``sse-hub`` command) registers these subcommands beside ``serve``;
this module uses only the client's public face and its errors module, never the server,
so ``publish`` and ``tail`` start without loading it.

``publish`` sends ``--data`` or all of stdin (one trailing newline dropped) as one message
and prints the hub's receipt; ``publish --stream`` sends each line of stdin as one message
over one request (``Publisher.stream``) as soon as it is read, ends the channel at the end
of stdin, and prints the hub's summary. ``tail`` prints the events of some channels as they
arrive and reconnects by itself, resending the id of the last event it printed.

Exit codes: 0 done (for ``tail``: stopped with Ctrl-C or SIGTERM), 1 the hub refused or
could not be reached, 2 bad usage. Errors go to stderr as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import io
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping

from sse_hub.client import (
    Event,
    HubConnectionError,
    JsonValue,
    Publisher,
    PublishError,
    PublishSummary,
    Receipt,
    SubscribeError,
    Subscription,
    subscribe,
)
from sse_hub.client.errors import describe_body

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention
STDIN_QUEUED_LINES = 64

PUBLISH_DESCRIPTION = """\
Publish one message and print the hub's receipt, e.g.
{"id": "42", "channels": ["news"]} (with --id-only: 42).

The data is --data D, or else all of stdin (one trailing newline dropped).
Data that parses as a JSON object, array, number, true, false or null is sent
as that JSON value (subscribers receive it as compact JSON); anything else,
a quoted JSON string included, is sent as a string, verbatim. --text always
sends a string.

With --stream (and exactly one --channel), each line of stdin is one message,
published as soon as it is read (`producer | sse-hub publish --stream
--channel job-42`), each line's data read as above; at the end of stdin the
channel ends with a final message (empty data) unless --keep-open is given.
Prints the hub's summary, e.g. {"published": 3, "first_id": "7", "last_id": "9"}
(with --id-only: the last id). Interrupted, it sends no final message; what was
sent stays published.

Exit status: 0 published; 1 the hub refused the message (its error body is
printed on stderr; with --stream it says which line) or could not be reached;
2 bad usage."""

TAIL_DESCRIPTION = """\
Print the events of the channels as they arrive, one "[id] event: data" per
event (data with several lines is printed as is), or with --json one JSON
object {"id", "event", "data"} per line. Events without an id (the hub's
"reset") show "[-]" (--json: "id": null). Connection notes go to stderr.

Reconnects by itself, resending the id of the last event it saw as
Last-Event-ID, so the hub replays what was missed (a "reset" event says when
it could not). Stop with Ctrl-C (exit status 0); 1 when the hub refuses the
stream (bad channel, bad token)."""

URL_HELP = "hub base URL, e.g. http://127.0.0.1:8080 (default: $SSE_HUB_URL)"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``publish`` and ``tail`` subcommands."""
    publish = commands.add_parser(
        "publish",
        help="publish one message",
        description=PUBLISH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    publish.add_argument("--url", help=URL_HELP)
    publish.add_argument(
        "--token", metavar="T", help="publish token, sent as Authorization: Bearer (default: $SSE_HUB_TOKEN)"
    )
    publish.add_argument(
        "--channel",
        metavar="C",
        action="append",
        dest="channels",
        help="channel to publish to; repeat for several (default: every client of the hub)",
    )
    publish.add_argument("--event", metavar="E", help="event name (default: message)")
    publish.add_argument("--id-only", action="store_true", help="print only the message id")
    publish.add_argument("--text", action="store_true", help="send the data as a string even if it parses as JSON")
    publish.add_argument("--data", metavar="D", help="the message data (default: all of stdin)")
    publish.add_argument("--stream", action="store_true", help="publish each line of stdin as one message")
    publish.add_argument("--keep-open", action="store_true", help="with --stream: do not end the channel at EOF")

    tail = commands.add_parser(
        "tail",
        help="print the events of channels as they arrive",
        description=TAIL_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("--url", help=URL_HELP)
    tail.add_argument("--last-event-id", metavar="ID", help="first replay what the hub kept after this id")
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.add_argument("--token", metavar="T", help="subscriber token (JWT), sent as Authorization: Bearer")
    tail.add_argument("channels", metavar="CHANNEL", nargs="+", help="channel to follow")


def run(args: argparse.Namespace) -> int:
    """Run ``publish`` or ``tail``; returns the exit code."""
    url = args.url or os.environ.get("SSE_HUB_URL")
    if not url:
        return fail(args.command, "give --url URL or set SSE_HUB_URL", EXIT_USAGE)
    try:
        if args.command == "publish":
            return run_publish(args, url)
        return run_tail(args, url)
    except ValueError as exc:  # a malformed URL or argument, found before any I/O
        return fail(args.command, str(exc), EXIT_USAGE)


def fail(command: str, message: str, code: int = EXIT_FAILED) -> int:
    print(f"sse-hub {command}: {message}", file=sys.stderr, flush=True)
    return code


# -- publish ------------------------------------------------------------------------------


def run_publish(args: argparse.Namespace, url: str) -> int:
    token = args.token or os.environ.get("SSE_HUB_TOKEN") or None
    if args.stream:
        return run_publish_stream(args, url, token)
    try:
        text = args.data if args.data is not None else read_stdin()
    except UnicodeDecodeError:
        return fail("publish", "stdin is not UTF-8 text", EXIT_USAGE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    data: JsonValue = text if args.text else json_or_text(text)
    return print_answer(args, lambda: publish_once(url, token, data, args.channels, args.event))


def run_publish_stream(args: argparse.Namespace, url: str, token: str | None) -> int:
    if args.data is not None or len(args.channels or ()) != 1:
        return fail("publish", "--stream reads stdin and takes exactly one --channel", EXIT_USAGE)
    return print_answer(args, lambda: publish_lines(url, token, args), id_field="last_id")


def print_answer(
    args: argparse.Namespace,
    publishing: Callable[[], Coroutine[object, object, Mapping[str, object]]],
    id_field: str = "id",
) -> int:
    """Run one publish and print the hub's answer (``--id-only``: its ``id_field``), or say
    in one line why it failed; the exit code."""
    try:
        answer = asyncio.run(publishing())
    except UnicodeDecodeError:
        return fail("publish", "stdin is not UTF-8 text", EXIT_USAGE)
    except PublishError as exc:
        return fail("publish", f"the hub answered {exc.status}: {describe_body(exc.body, limit=4000)}")
    except HubConnectionError as exc:
        return fail("publish", str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print(answer[id_field] if args.id_only else json.dumps(answer, ensure_ascii=False), flush=True)
    return 0


async def publish_lines(url: str, token: str | None, args: argparse.Namespace) -> PublishSummary:
    """Each line of stdin as one message of one publish stream, sent as soon as it is read."""
    lines = stdin_lines(asyncio.get_running_loop())
    async with Publisher(url, token) as publisher:
        async with publisher.stream(args.channels[0], end=not args.keep_open) as stream:
            while line := await lines.get():
                text = line.decode().removesuffix("\n").removesuffix("\r")
                await stream.send(text if args.text else json_or_text(text), args.event)
        assert stream.summary is not None  # set by every normal exit of the block
        return stream.summary


def stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[bytes]:
    """The lines of stdin, read by a daemon thread (so a pipe and a file work alike, and
    Ctrl-C does not wait for a blocked read); b"" at the end."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(STDIN_QUEUED_LINES)

    def read() -> None:
        try:
            for line in iter(sys.stdin.buffer.readline, b""):
                asyncio.run_coroutine_threadsafe(queue.put(line), loop).result()
            asyncio.run_coroutine_threadsafe(queue.put(b""), loop).result()
        except (RuntimeError, concurrent.futures.CancelledError):  # the loop closed: the command is over
            return

    threading.Thread(target=read, name="stdin-lines", daemon=True).start()
    return queue


def read_stdin() -> str:
    """All of stdin as one message; a single trailing newline is the file's, not the data's."""
    if sys.stdin.isatty():
        print("sse-hub publish: reading the message from stdin, end it with Ctrl-D", file=sys.stderr, flush=True)
    text = sys.stdin.buffer.read().decode()
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


def json_or_text(text: str) -> JsonValue:
    """``text`` as a JSON value when it is an object, array, number, true, false or null;
    otherwise (a JSON string literal included) the text itself, sent verbatim."""
    try:
        value: JsonValue = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
    except (ValueError, RecursionError):
        return text
    return text if isinstance(value, str) else value


def _not_json(constant: str) -> float:
    # NaN and Infinity are accepted by Python's json module but are not JSON (RFC 8259, 6).
    raise ValueError(constant)


def _finite_float(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(number)  # 1e999 would be re-encoded as Infinity, not JSON
    return value


async def publish_once(
    url: str, token: str | None, data: JsonValue, channels: list[str] | None, event: str | None
) -> Receipt:
    async with Publisher(url, token) as publisher:
        return await publisher.publish(data, channels=channels, event=event)


# -- tail ---------------------------------------------------------------------------------


def run_tail(args: argparse.Namespace, url: str) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sse-hub tail: %(message)s"))
    client_logger = logging.getLogger("sse_hub.client")  # the parent of every client module's logger
    client_logger.addHandler(handler)
    client_logger.setLevel(logging.INFO)
    client_logger.propagate = False
    if isinstance(sys.stdout, io.TextIOWrapper):
        # Print any data, even on a terminal that cannot show every character.
        sys.stdout.reconfigure(errors="backslashreplace")
    subscription = subscribe(url, args.channels, last_event_id=args.last_event_id, token=args.token)
    try:
        return asyncio.run(tail(subscription, args.json))
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler was installed
        return 0


async def tail(subscription: Subscription, as_json: bool) -> int:
    """Print events until SIGINT or SIGTERM (exit 0) or until the hub refuses the stream."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    printer = asyncio.create_task(print_events(subscription, as_json))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({printer, stopper}, return_when=asyncio.FIRST_COMPLETED)
    # Cancelling the printer ends the subscription: its connection and session close.
    for task in (printer, stopper):
        task.cancel()
    await asyncio.gather(printer, stopper, return_exceptions=True)
    await subscription.aclose()
    if printer.cancelled():
        return 0
    error = printer.exception()
    if isinstance(error, SubscribeError):
        return fail("tail", f"the hub refused the stream with {error.status}: {describe_body(error.body)}")
    if error is not None:
        raise error
    return 0


async def print_events(subscription: Subscription, as_json: bool) -> None:
    try:
        async for event in subscription:
            if event.event == "connected":
                note = f"connected to {subscription.url} as {subscription.client_id or '?'}"
                print(f"sse-hub tail: {note}", file=sys.stderr, flush=True)
                continue
            sys.stdout.write(format_event(event, as_json))
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`sse-hub tail ... | head`): stop quietly. Point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def format_event(event: Event, as_json: bool) -> str:
    if as_json:
        return json.dumps({"id": event.id, "event": event.event, "data": event.data}, ensure_ascii=False) + "\n"
    return f"[{event.id if event.id is not None else '-'}] {event.event}: {event.data}\n"
