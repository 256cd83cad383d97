"""``--workers N``: one ``/metrics`` scrape shows the whole process group.

prometheus-client's multiprocess mode does not fit: it drops custom collectors (the hub's
counters are read at scrape time by one) and process metrics, and it would turn every
connect into a write to a shared file. Instead each worker serves its own exposition on
a private unix socket in a directory the supervisor creates (mode 0700, removed when it
exits), and the worker that answers ``/metrics`` reads its siblings' and merges them:

- per process, each with a ``worker`` label (the worker's index, stable across restarts):
  ``PER_WORKER`` families (``sse_hub_info``, ``sse_hub_broker_connected``, ``process_*``,
  ``python_*``), and ``sse_hub_worker_connections`` (each worker's open streams);
- everything else summed over the workers, under the names and labels one process
  exports, so dashboards and alerts work unchanged (``*_created`` samples: the earliest);
- ``sse_hub_workers``: how many workers this scrape includes. A sibling that does not
  answer within ``SIBLING_TIMEOUT_SECONDS`` (restarting) is left out, and the sums dip:
  ``rate()`` reads the dip as a counter reset.

Invariant: a worker's socket serves that worker's own metrics only, never a merge, so
no scrape waits on another scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

# This process's own exposition (``Metrics.render``).
Render = Callable[[], bytes]

logger = logging.getLogger(__name__)

PER_WORKER = ("sse_hub_info", "sse_hub_broker_connected", "process_", "python_")
SIBLING_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class WorkerGroup:
    """Where the workers of one supervisor serve their metrics, and which one this is."""

    directory: Path
    index: int
    workers: int

    def socket_path(self, index: int) -> Path:
        return self.directory / f"worker-{index}.sock"


async def serve_local(group: WorkerGroup, render: Render) -> asyncio.AbstractServer:
    """Serve this worker's own exposition on its socket: connect, read to EOF."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(render())
            await writer.drain()
        except ConnectionError:
            pass  # the sibling gave up (its timeout); nothing to do
        finally:
            writer.close()

    path = group.socket_path(group.index)
    path.unlink(missing_ok=True)  # left by this index's previous process
    return await asyncio.start_unix_server(answer, path=str(path))


async def render_group(group: WorkerGroup, render: Render) -> bytes:
    """The merged exposition of every worker that answers, this one included."""
    siblings = [index for index in range(group.workers) if index != group.index]
    answers = await asyncio.gather(*(read_sibling(group.socket_path(index)) for index in siblings))
    expositions = {group.index: render()}
    for index, body in zip(siblings, answers, strict=True):
        if body is None:
            logger.warning("metrics: worker %d did not answer; this scrape leaves it out", index)
        else:
            expositions[index] = body
    return merge(expositions)


async def read_sibling(path: Path) -> bytes | None:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(SIBLING_TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_unix_connection(str(path))
            return await reader.read()  # to EOF: the sibling closes after its exposition
    except (OSError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await writer.wait_closed()


def merge(expositions: dict[int, bytes]) -> bytes:
    """Several workers' text expositions as one (see the module docstring)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MergedCollector(expositions))
    return generate_latest(registry)


class MergedCollector(Collector):
    def __init__(self, expositions: dict[int, bytes]) -> None:
        self._expositions = expositions

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        per_worker_connections = GaugeMetricFamily(
            "sse_hub_worker_connections", "Open SSE connections, by worker process.", labels=["worker"]
        )
        for index, body in sorted(self._expositions.items()):
            for family in text_string_to_metric_families(body.decode()):
                target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                if family.name == "sse_hub_connections":
                    per_worker_connections.add_metric([str(index)], sum(s.value for s in family.samples))
                if family.name.startswith(PER_WORKER):
                    for sample in family.samples:
                        target.add_sample(sample.name, {**sample.labels, "worker": str(index)}, sample.value)
                else:
                    add_up(sums.setdefault(family.name, {}), family.samples)
        for name, family in merged.items():
            for (sample_name, labels), value in sums.get(name, {}).items():
                family.add_sample(sample_name, dict(labels), value)
            yield family
        yield per_worker_connections
        yield GaugeMetricFamily(
            "sse_hub_workers", "Worker processes whose metrics this scrape includes.", value=len(self._expositions)
        )


def add_up(totals: dict[tuple[str, tuple[tuple[str, str], ...]], float], samples: Iterable[Sample]) -> None:
    """Add samples into ``totals`` by name and labels; ``*_created`` keeps the earliest."""
    for sample in samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        if key not in totals:
            totals[key] = sample.value
        elif sample.name.endswith("_created"):
            totals[key] = min(totals[key], sample.value)
        else:
            totals[key] += sample.value
