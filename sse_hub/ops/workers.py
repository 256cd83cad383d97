"""``sse-hub serve --workers N``: N processes on one port, one hub instance each.

The kernel spreads new connections over the workers (SO_REUSEPORT). Each worker is a
full instance on the Redis broker, so a message published to any worker reaches the
subscribers of all of them. The supervisor forwards SIGTERM/SIGINT to every worker and
exits 0 once all stopped cleanly; a worker that dies on its own is restarted (same index).
A supervisor that is killed outright (SIGKILL, an OOM kill) cannot forward anything, so
each worker watches it and stops gracefully once it is gone, rather than serve on as an
orphan holding the port.

Metrics: the supervisor makes a private directory (0700) where each worker serves its
own metrics on a unix socket, so whichever worker answers ``/metrics`` shows the whole
group (``sse_hub.ops.worker_metrics``); the directory is removed when the supervisor exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from sse_hub.config.settings import Settings
from sse_hub.ops.logs import configure_logging
from sse_hub.ops.server import run
from sse_hub.ops.worker_metrics import WorkerGroup

logger = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0
# How often a worker checks that its supervisor is still there.
PARENT_CHECK_SECONDS = 1.0


def run_worker(settings: Settings, group: WorkerGroup, supervisor: int) -> None:
    """A worker's entry point (runs in the child process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    configure_logging(settings.log)
    stop_with(supervisor)
    sys.exit(run(settings, reuse_port=True, group=group))


def stop_with(supervisor: int) -> None:
    """SIGTERM this process (its graceful shutdown) once ``supervisor`` is no longer its
    parent: the supervisor died without stopping it. A daemon thread, so it never holds
    the process up; a poll, because only Linux can ask the kernel for a parent-death
    signal, and the check costs one system call a second."""

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(PARENT_CHECK_SECONDS)
        logger.warning("the supervisor pid=%d is gone; stopping", supervisor)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="sse-hub-supervisor-watch", daemon=True).start()


def supervise(settings: Settings, workers: int) -> int:
    directory = Path(tempfile.mkdtemp(prefix="sse-hub-metrics-"))
    try:
        return supervise_in(settings, workers, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def supervise_in(settings: Settings, workers: int, directory: Path) -> int:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start(index: int) -> BaseProcess:
        group = WorkerGroup(directory, index, workers)
        process = context.Process(
            target=run_worker, args=(settings, group, os.getpid()), name=f"sse-hub-worker-{index}"
        )
        process.start()
        return process

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                process.terminate()  # SIGTERM: the worker's own graceful shutdown

    processes = [start(index) for index in range(workers)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("supervisor started workers=%d pids=%s", workers, [p.pid for p in processes])
    while not stopping:
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                logger.warning("worker pid=%s exited with %s; restarting", process.pid, process.exitcode)
                time.sleep(RESTART_DELAY_SECONDS)
                if not stopping:
                    processes[index] = start(index)
        time.sleep(0.2)
    deadline = time.monotonic() + settings.server.shutdown_timeout + 5
    for process in processes:
        process.join(timeout=max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            logger.warning("worker pid=%s did not stop in time; killing it", process.pid)
            process.kill()
            process.join()
    failed = [p.exitcode for p in processes if p.exitcode not in (0, -signal.SIGTERM)]
    logger.info("supervisor stopped exit_codes=%s", [p.exitcode for p in processes])
    return 1 if failed else 0
