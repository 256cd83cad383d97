#!/usr/bin/env python3
"""The kernel's floor for S5 and S6: what the system calls alone cost a server per message.

    python3 bench/floor.py                  # both shapes, 3 runs each, JSON lines on stdout
    python3 bench/floor.py --shape s6 --runs 5

A server that does nothing but the system calls the referee's S5 and S6 make it do, on
the hub's core (CPU 0), with the load on the other (CPU 1), as the referee pins them:

- **s5**, one request per message: ``epoll_wait``, ``recv`` of the POST, ``send`` of the
  answer, ``send`` of the event to the message's subscriber;
- **s6**, 100 messages per request: the same per request, then one ``send`` per message.

The client (CPU 1) keeps 8 requests in flight over one connection and drains the
subscribers' sockets (1000 of them; message k goes to subscriber ``k * 7919 mod 1000``,
the referee's spread). Sizes are the referee's on the wire: an S5 POST about 190
bytes, its answer about 190, an event 215 (``bytes / events_received`` in S5 and S6 runs),
an S6 request about 15 KB and its answer about 4.5 KB.

The result is the server process's CPU time (user + system, ``getrusage``) per message
while it publishes, in microseconds. It includes Python's cost of calling each system
call (a few tenths of a microsecond each), so it is the floor plus that, not less: a server
in C pays at least about this much of its core per message on this machine.

Invariant: every run moves every byte (the client counts them) before it reports; a run
that does not finish within ``--timeout`` seconds fails.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import socket
import sys
import time

SUBSCRIBERS = 1000
IN_FLIGHT = 8
SPREAD = 7919
SHAPES = {  # request bytes, answer bytes, messages per request
    "s5": (190, 190, 1),
    "s6": (15_000, 4_500, 100),
}
EVENT_BYTES = 215


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(listener: socket.socket, shape: str, messages: int, report: int) -> None:
    """CPU 0: accept the publisher and the subscribers, then answer every request."""
    request, answer, per_request = SHAPES[shape]
    publisher, _ = listener.accept()
    subscribers = [listener.accept()[0] for _ in range(SUBSCRIBERS)]
    for sub in subscribers:
        sub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    publisher.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    poll = select.epoll()
    poll.register(publisher.fileno(), select.EPOLLIN)
    event, reply = b"e" * EVENT_BYTES, b"a" * answer
    pending, k = 0, 0
    requests = messages // per_request
    start = cpu_seconds()
    while requests:
        poll.poll()
        pending += len(publisher.recv(1 << 20))
        while pending >= request and requests:
            pending -= request
            requests -= 1
            publisher.send(reply)
            for _ in range(per_request):
                subscribers[(k * SPREAD) % SUBSCRIBERS].send(event)
                k += 1
    os.write(report, json.dumps({"server_cpu_s": cpu_seconds() - start}).encode())


def load(port: int, shape: str, messages: int, timeout: float) -> None:
    """CPU 1: the publisher with 8 requests in flight, and the subscribers drained."""
    request, answer, per_request = SHAPES[shape]
    publisher = socket.create_connection(("127.0.0.1", port))
    subscribers = [socket.create_connection(("127.0.0.1", port)) for _ in range(SUBSCRIBERS)]
    publisher.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    poll = select.epoll()
    for sock in [publisher, *subscribers]:
        sock.setblocking(False)
        poll.register(sock.fileno(), select.EPOLLIN)
    by_fd = {sock.fileno(): sock for sock in subscribers}
    body = b"p" * request
    to_send, answered, answer_bytes, event_bytes = messages // per_request, 0, 0, 0
    for _ in range(min(IN_FLIGHT, to_send)):
        publisher.sendall(body)
        to_send -= 1
    deadline = time.monotonic() + timeout
    while event_bytes < messages * EVENT_BYTES:
        if time.monotonic() > deadline:
            raise SystemExit(f"floor: {shape} did not finish within {timeout} s")
        for fd, _ in poll.poll(1.0):
            if fd == publisher.fileno():
                answer_bytes += len(publisher.recv(1 << 20))
                while answer_bytes >= answer:
                    answer_bytes -= answer
                    answered += 1
                    if to_send:
                        publisher.setblocking(True)
                        publisher.sendall(body)
                        publisher.setblocking(False)
                        to_send -= 1
            else:
                event_bytes += len(by_fd[fd].recv(1 << 20))


def run(shape: str, messages: int, timeout: float) -> dict[str, object]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=SUBSCRIBERS + 8)
    port = listener.getsockname()[1]
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the load, on CPU 1
        try:
            listener.close()
            os.sched_setaffinity(0, {1})
            load(port, shape, messages, timeout)
        finally:
            os._exit(0)
    os.sched_setaffinity(0, {0})
    began = time.monotonic()
    serve(listener, shape, messages, write_end)
    os.close(write_end)
    result = json.loads(os.read(read_end, 4096))
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise SystemExit(f"floor: the load process failed ({status})")
    listener.close()
    cpu = float(result["server_cpu_s"])
    return {
        "shape": shape,
        "messages": messages,
        "server_cpu_s": round(cpu, 4),
        "us_per_message": round(cpu / messages * 1e6, 2),
        "wall_s": round(time.monotonic() - began, 3),
        "loadavg_1m": os.getloadavg()[0],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=[*SHAPES, "both"], default="both")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        raise SystemExit("floor: needs two cores (the server on CPU 0, the load on CPU 1)")
    for _ in range(args.runs):
        for shape in SHAPES if args.shape == "both" else [args.shape]:
            print(json.dumps(run(shape, args.messages, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
