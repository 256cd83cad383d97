"""The real processes of a run: redis-server nodes and ``sse-hub serve`` instances.

Each is started, killed (SIGKILL), paused (SIGSTOP/SIGCONT) and started again on the same
port; every wait is bounded. Hubs run the source tree named by ``SSE_HUB_FAULTS_SOURCE``
(first on ``PYTHONPATH``) when it is set, else the installed package. A missing binary
raises ``MissingBinary`` with the command that installs it.

``socket_owner`` tells which of our processes opened a loopback connection (from
``/proc/net/tcp`` and ``/proc/<pid>/fd``): the proxy in front of a Redis Cluster node uses
it to apply a fault to one hub's links only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ENV = "SSE_HUB_FAULTS_SOURCE"
START_TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.05


class MissingBinary(RuntimeError):
    pass


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        raise MissingBinary(f"{name} is not installed: run `apt-get install -y {package}` (or `bash .ci/run`)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hub_source() -> Path | None:
    """The source tree hubs run from (``SSE_HUB_FAULTS_SOURCE``), or None: the installed one."""
    value = os.environ.get(SOURCE_ENV, "")
    return Path(value).resolve() if value else None


async def poll(predicate: Callable[[], bool], timeout: float, interval: float = POLL_SECONDS) -> bool:
    """Wait until ``predicate()`` holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


async def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode} before listening")
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(POLL_SECONDS)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _spawn(
    command: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def _reap(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL, timeout: float = 10) -> int | None:
    if process is None:
        return None
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a stopped process must run to die of SIGTERM
            process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=timeout)


class RedisNode:
    """One redis-server on a fixed loopback port, with AOF (``appendfsync always``) in its
    own directory: ``kill`` then ``start`` brings it back with its data, ``wipe`` first
    brings it back empty, as a Redis without persistence after a crash."""

    def __init__(self, binary: str, port: int, workdir: Path, extra: Iterable[str] = ()) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir), *self.extra]
        self.process = _spawn(command, self.workdir / "redis.log")
        self.paused = False
        await wait_for_port(self.port, self.process)

    def kill(self) -> None:
        _reap(self.process)
        self.paused = False

    def wipe(self) -> None:
        """Forget the data (the AOF); the node must be down."""
        for path in (self.workdir / "appendonlydir", self.workdir / "dump.rdb"):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def pause(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)
        self.paused = False


class HubProcess:
    """One ``python -m sse_hub serve`` on a fixed loopback port. ``expected_down`` is set by
    whoever kills it on purpose; any other exit is a crash (``exited_by_itself``)."""

    def __init__(self, name: str, port: int, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = port
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.expected_down = True
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def exited_by_itself(self) -> int | None:
        """The exit code when the process ended while it was meant to run, else None."""
        if self.expected_down or self.process is None:
            return None
        return self.process.poll()

    async def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Start and wait for ``/healthz``; raise when it exits first (the caller retries:
        a hub refuses to start while its broker is unreachable) or after ``timeout``."""
        source = hub_source()
        env = {key: value for key, value in os.environ.items() if not key.startswith("SSE_HUB_")}
        env.update(self.env)
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH", "")]))
        command = [sys.executable, "-m", "sse_hub", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.starts += 1
        self.process = _spawn(command, self.log_path, env, cwd=source or ROOT)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode} while starting")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            self.expected_down = False
                            return
                await asyncio.sleep(POLL_SECONDS)
        _reap(self.process)
        raise RuntimeError(f"{self.name} did not answer /healthz within {timeout}s")

    def kill(self) -> None:
        self.expected_down = True
        _reap(self.process)

    async def terminate(self, timeout: float) -> int | None:
        """SIGTERM, as at a deploy: the exit code (None when it was not running). Waits
        without blocking the loop: the hub may still talk to Redis through our proxies."""
        self.expected_down = True
        process = self.process
        if process is None or process.poll() is not None:
            return None
        process.send_signal(signal.SIGTERM)
        await poll(lambda: process.poll() is not None, timeout)
        code = process.poll()
        if code is None:
            _reap(process)
            return -1
        return code

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def socket_owner(peer_port: int, listen_port: int, pids: dict[int, str]) -> str | None:
    """The name (from ``pids``) of the process whose socket 127.0.0.1:``peer_port`` is
    connected to 127.0.0.1:``listen_port``, or None (not one of ours, or already gone)."""
    local = f"0100007F:{peer_port:04X}"
    remote = f"0100007F:{listen_port:04X}"
    inode = None
    with contextlib.suppress(OSError), open("/proc/net/tcp") as table:
        for line in table:
            fields = line.split()
            if len(fields) > 9 and fields[1] == local and fields[2] == remote:
                inode = fields[9]
                break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid, name in pids.items():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return name
    return None
