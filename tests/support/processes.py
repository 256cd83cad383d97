"""Real processes for tests: a free loopback port, a binary that must be installed (else a
loud failure naming the package), waiting for a port or an HTTP answer, a redis-server of
a test's own (``RedisProcess``) and a running ``sse-hub serve`` (``HubProcess``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed: run `apt-get install -y {package}` (or `bash .ci/run`)", pytrace=False)
    return path


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def wait_for_http(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sse-hub exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"sse-hub did not answer {url} within {timeout}s:\n{log_path.read_text()}")


class RedisProcess:
    """A redis-server on a loopback port, without persistence: killed and started again on
    the same port, it comes back empty, as after a crash."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, durable: bool = False) -> None:
        """``durable``: an append-only file synced on every write, so a restart keeps every
        acknowledged write (else none: it comes back empty)."""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence]
        self.process = subprocess.Popen(
            [*command, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(require_binary("redis-server", "redis-server"), free_port(), workdir)
    try:
        server.start()
        yield server
    finally:
        server.kill()


class HubProcess:
    """A real ``sse-hub serve`` process on loopback (the ``hub_process`` fixture starts it)."""

    def __init__(self, port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.port = port
        self.process = process
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_hub(log_path: Path, port: int, env: dict[str, str], cwd: Path, args: list[str] | None = None) -> HubProcess:
    """``python -m sse_hub serve`` on ``port`` (info logs to ``log_path``, ``env`` over the
    environment, run in ``cwd``), once ``/healthz`` answers."""
    full_env = {**os.environ, "SSE_HUB_LOG__LEVEL": "info", **env}
    command = [sys.executable, "-m", "sse_hub", "serve", "--host", "127.0.0.1", "--port", str(port), *(args or [])]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    hub = HubProcess(port, process, log_path)
    wait_for_http(f"{hub.url}/healthz", process, log_path)
    return hub


def stop_hubs(started: list[HubProcess]) -> None:
    """Kill every hub still running (a fixture's teardown)."""
    for hub in started:
        if hub.process.poll() is None:
            hub.process.kill()
            hub.process.wait(timeout=10)
