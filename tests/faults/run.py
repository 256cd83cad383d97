"""One seeded run, from start to verdict.

1. Start the deployment (``cluster``): Redis, our proxies, three hubs.
2. Start the lineages; once each is connected, publish one message per channel (each
   lineage then has an id to resume from).
3. For ``plan.seconds``: publishers run, lineages move between instances, and each fault
   of the plan starts at its time (faults may overlap).
4. Stop publishing; heal every fault; wait (bounded) until every lineage received what it
   is owed or was excused; then each lineage resumes once more on a fresh stream (probe).
5. SIGTERM the hubs, stop everything, and check the history (``checker``).

The seed and the plan are printed first; the report last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from tests.faults.checker import Report, check, outstanding
from tests.faults.cluster import Deployment
from tests.faults.history import Applied, Record
from tests.faults.plan import Fault, Plan, make_plan
from tests.faults.processes import hub_source, poll
from tests.faults.workload import Workload

CONNECT_TIMEOUT_SECONDS = 20.0
DRAIN_TIMEOUT_SECONDS = 20.0
FAULT_GRACE_SECONDS = 60.0


async def run_seed(seed: int, broker: str, seconds: float, workdir: Path, log: Callable[[str], None] = print) -> Report:
    plan = make_plan(seed, broker, seconds)
    source = hub_source()
    hubs_from = source or "the installed package"
    log(f"sse-hub faults: seed={seed} broker={broker} seconds={seconds:g} hubs from {hubs_from}")
    log(f"  replay: python -m tests.faults --broker {broker} --seeds {seed} --seconds {seconds:g}")
    log(plan.describe())
    _make_dir(workdir)
    record = Record(broker)
    deployment = Deployment(broker, workdir, record)
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    try:
        await deployment.start()
        async with Workload(plan, record, deployment.client_url) as workload:
            t0 = await _run_workload(plan, deployment, workload, record, log)
    finally:
        await deployment.stop()
    report = check(record, seed, t0)
    report.load = f"{load_before:.2f}->{os.getloadavg()[0]:.2f}"
    _write(workdir / "history.json", json.dumps(dataclasses.asdict(record)))
    _write(workdir / "report.txt", f"{plan.describe()}\n\n{_faults_text(record, t0)}\n\n{report.text()}\n")
    log(_faults_text(record, t0))
    log(report.text())
    log(f"  (hub logs and report: {workdir})")
    return report


async def _run_workload(
    plan: Plan, deployment: Deployment, workload: Workload, record: Record, log: Callable[[str], None]
) -> float:
    workload.start_lineages()
    await poll(lambda: workload.connected_lineages() == len(plan.lineages), CONNECT_TIMEOUT_SECONDS)
    await workload.warm_up()
    workload.set_moving(True)
    start = time.monotonic()
    workload.start_publishers()
    await _execute(plan, deployment, record, start)
    await workload.stop_publishers()
    record.publish_end = time.monotonic()
    workload.set_moving(False)
    record.harness_errors += await deployment.heal()
    await poll(lambda: not outstanding(record), DRAIN_TIMEOUT_SECONDS, interval=0.25)
    log(f"  drained in {time.monotonic() - record.publish_end:.1f}s, {outstanding(record)} outstanding")
    await workload.stop_lineages()
    await workload.probe()
    return start


async def _execute(plan: Plan, deployment: Deployment, record: Record, start: float) -> None:
    """Start each fault at its time; wait for the plan's end and (bounded) for every fault."""
    tasks = []
    for fault in plan.faults:
        await asyncio.sleep(max(0.0, start + fault.at - time.monotonic()))
        tasks.append(asyncio.create_task(_apply(fault, deployment, record), name=f"fault-{fault.kind}"))
    await asyncio.sleep(max(0.0, start + plan.seconds - time.monotonic()))
    _done, pending = await asyncio.wait(tasks, timeout=FAULT_GRACE_SECONDS) if tasks else (set(), set())
    for task in pending:
        task.cancel()
        record.harness_errors.append(f"a fault did not end in time: {task.get_name()}")
    await asyncio.gather(*pending, return_exceptions=True)


async def _apply(fault: Fault, deployment: Deployment, record: Record) -> None:
    began = time.monotonic()
    target, seconds = fault.target, fault.seconds
    try:
        match fault.kind:
            case "redis_pause":
                note = await deployment.redis_pause(target, seconds)
            case "redis_kill_empty" | "redis_kill_aof":
                note = await deployment.redis_kill(target, seconds, empty=fault.kind == "redis_kill_empty")
            case "master_failover":
                note = await deployment.master_failover(target)
            case "master_kill":
                note = await deployment.master_kill(target, seconds)
            case "replica_kill":
                note = await deployment.replica_kill(target, seconds)
            case "hub_kill":
                note = await deployment.hub_kill(target, seconds)
            case "link_stall":
                note = await deployment.link_stall(target, seconds)
            case "stalled_restart":
                note = await deployment.stalled_restart(target, seconds)
            case "link_cut":
                note = await deployment.link_cut(target, seconds)
            case "link_delay":
                note = await deployment.link_delay(target, seconds, fault.latency)
            case "client_cut":
                note = await deployment.client_cut(target, seconds)
            case "client_stall":
                note = await deployment.client_stall(target, seconds)
            case _:
                raise ValueError(f"unknown fault {fault.kind!r}")
    except Exception as exc:  # the run goes on; the harness error fails the verdict
        note = f"failed: {type(exc).__name__}: {exc}"
        record.harness_errors.append(f"{fault.describe()}: {note}")
    record.faults.append(Applied(began, time.monotonic(), fault.describe(), note))


def _faults_text(record: Record, t0: float) -> str:
    lines = ["faults as carried out:"]
    for applied in sorted(record.faults, key=lambda a: a.at):
        note = f" ({applied.note})" if applied.note else ""
        began, ended = applied.at - t0, applied.ended_at - t0
        lines.append(f"  began t+{began:5.1f}s ended t+{ended:5.1f}s: {applied.description}{note}")
    return "\n".join(lines)


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
