#!/usr/bin/env python3
"""Soak run: does the hub give back what it takes? Bounded, loopback only.

    .venv/bin/python bench/soak.py            # about 1-2 minutes; exit 0 = pass

Starts its own ``sse-hub serve`` (memory broker, uvloop when installed; with
``--redis``, the Redis broker on a private redis-server on a free port, beside the hub)
on a free 127.0.0.1 port, pinned to CPU 0, and drives it in rounds; every round:

1. ``--cycles`` connect/disconnect cycles from aiohttp (``--concurrency`` at a time):
   open ``/events/soak``, read the ``connected`` event, close (FIN). Every other cycle
   sends a ``Last-Event-ID`` a few messages back, so the replay path is exercised too.
2. ``--subs`` subscribers from the referee's C client (``ssebench sub``, pinned to
   CPU 1, closes with RST) receive ``--msgs`` messages published flat out
   (``ssebench pub``): subs x msgs deliveries, each one counted by the client.
3. Once ``/stats`` shows no client left, the hub's VmRSS and open file descriptors
   are sampled (``/proc/PID``), always at this quiescent point so samples compare.

A warm-up round (which also fills the message history) comes first; its sample is
the baseline. Defaults: 10 rounds x (1000 cycles + 1000 subs x 100 msgs) = 10,000
connect/disconnect cycles (plus 10,000 RST closes) and 1,000,000 deliveries.

Pass when: the end RSS is within ``--tolerance`` % (10) of the baseline, fds are back
at the baseline (with ``--redis``, plus at most the broker's pool of connections),
``/stats`` shows 0 clients after every round and ``messages_delivered`` grew by exactly
what the clients received, nothing was lost, no client was cut off as slow, and the hub
logged no error. Every step has a timeout and the whole run a wall-clock cap
(``--max-seconds``).

``ssebench`` comes from the referee's working copy (``$BENCH_WORK``, default
/tmp/sse-hub-bench; ``bench/run.sh`` creates it) or is built from
``../shared/bench/ssebench.c`` into it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from scaleout import free_port, pinned, start_redis

from sse_hub.broker.redis import POOL_CONNECTIONS

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
HUB_BIN = PROJECT / ".venv" / "bin" / "sse-hub"
BENCH_SRC = Path(os.environ.get("BENCH_SRC", PROJECT.parent / "shared" / "bench"))
BENCH_WORK = Path(os.environ.get("BENCH_WORK", "/tmp/sse-hub-bench"))
CHANNEL = "soak"
BODY = '{"channels":["soak"],"event":"tick","data":{"t":{{T}},"seq":{{SEQ}},"pad":"' + "x" * 55 + '"}}'


@dataclass
class Sample:
    label: str
    rss_kb: int
    fds: int
    clients: int
    elapsed_s: float
    cycles: int  # this round's connect/disconnect cycles that succeeded
    deliveries: int  # this round's events received by the subscribers


@dataclass
class Totals:
    cycles_ok: int = 0
    cycles_failed: int = 0
    rst_closes: int = 0
    deliveries: int = 0
    expected: int = 0
    hub_delivered: int = 0
    problems: list[str] = field(default_factory=list)


def ssebench() -> Path:
    binary = BENCH_WORK / "ssebench"
    source = BENCH_SRC / "ssebench.c"
    if binary.exists() and (not source.exists() or binary.stat().st_mtime >= source.stat().st_mtime):
        return binary
    if not source.exists():
        sys.exit(f"soak: no {binary} and no {source}; run bench/run.sh --quick once, or set BENCH_WORK")
    BENCH_WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True, timeout=120)
    return binary


def proc_status(pid: int) -> tuple[int, int]:
    """VmRSS (KB) and the number of open file descriptors of ``pid``."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.deadline = time.monotonic() + args.max_seconds
        self.started = time.monotonic()
        self.bench = ssebench()
        self.work = Path(tempfile.mkdtemp(prefix="sse-hub-soak."))
        self.hub: subprocess.Popen[bytes] | None = None
        self.redis: subprocess.Popen[bytes] | None = None
        self.samples: list[Sample] = []
        self.totals = Totals()

    # -- the hub process ----------------------------------------------------------------

    def start_hub(self) -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the hub
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSE_HUB_")}
        env.update(
            SSE_HUB_LOG__LEVEL="warning",
            SSE_HUB_LIMITS__MAX_CONNECTIONS="20000",
            SSE_HUB_LIMITS__MAX_CONNECTIONS_PER_IP="20000",
        )
        if self.args.redis:
            self.redis, url = start_redis(str(self.work), pinned(0))  # on the hub's core
            env.update(SSE_HUB_BROKER__BACKEND="redis", SSE_HUB_BROKER__REDIS_URL=url)
        log = (self.work / "hub.log").open("wb")
        cmd = [*pinned(0), str(HUB_BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        # taskset exec's the hub, so the PID is the hub's own
        self.hub = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    async def wait_hub(self, session: aiohttp.ClientSession) -> None:
        until = time.monotonic() + 20
        while time.monotonic() < until:
            if self.hub is not None and self.hub.poll() is not None:
                raise SystemExit(f"soak: the hub exited:\n{self.hub_log()}")
            try:
                async with session.get(f"{self.base}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("soak: the hub did not answer /healthz within 20 s")

    def stop_redis(self) -> None:
        redis, self.redis = self.redis, None
        if redis is not None and redis.poll() is None:
            redis.terminate()
            redis.wait(timeout=10)

    def stop_hub(self) -> None:
        hub, self.hub = self.hub, None
        if hub is None or hub.poll() is not None:
            return
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=15)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait(timeout=5)

    def hub_log(self) -> str:
        path = self.work / "hub.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, int]:
        async with session.get(f"{self.base}/stats", params={"limit": "0"}) as resp:
            doc = await resp.json()
        keys = ("total_clients", "messages_published", "messages_delivered", "slow_disconnects")
        return {key: int(doc[key]) for key in keys}

    async def wait_idle(self, session: aiohttp.ClientSession) -> dict[str, int]:
        """``/stats`` once every client is released (the hub notices closes asynchronously),
        or after 15 s."""
        until = time.monotonic() + 15
        while True:
            doc = await self.stats(session)
            if doc["total_clients"] == 0 or time.monotonic() > until:
                return doc
            await asyncio.sleep(0.05)

    # -- load -------------------------------------------------------------------------

    async def cycle(self, session: aiohttp.ClientSession, last_event_id: str | None) -> bool:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        async with session.get(f"{self.base}/events/{CHANNEL}", headers=headers) as resp:
            if resp.status != 200:
                return False
            seen = b""
            while b"event: connected" not in seen or not seen.endswith(b"\n\n"):
                chunk = await resp.content.readany()
                if not chunk:
                    return False
                seen = (seen + chunk)[-4096:]
            # leaving the block closes the connection: the response was not read to its end
            return True

    async def cycles(self, session: aiohttp.ClientSession, count: int, last_id: int) -> None:
        queue = iter(range(count))
        replay_from = str(max(0, last_id - 5)) if last_id else None

        async def worker() -> None:
            for n in queue:
                try:
                    ok = await asyncio.wait_for(self.cycle(session, replay_from if n % 2 else None), 10)
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                if ok:
                    self.totals.cycles_ok += 1
                else:
                    self.totals.cycles_failed += 1

        await asyncio.gather(*(worker() for _ in range(self.args.concurrency)))

    async def deliveries(self, subs: int, msgs: int) -> tuple[int, int]:
        """``subs`` ssebench subscribers, ``msgs`` messages: (connected, events received)."""
        ready = self.work / "ready"
        ready.unlink(missing_ok=True)
        common = ["--host", "127.0.0.1", "--port", str(self.port)]
        sub = await asyncio.create_subprocess_exec(
            *pinned(1), str(self.bench), "sub", *common, "--path", f"/events/{CHANNEL}",
            "--conns", str(subs), "--ramp", "0", "--expect", str(msgs), "--idle-exit", "3",
            "--duration", "60", "--ready-file", str(ready),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            until = time.monotonic() + 30
            while not (ready.exists() and ready.stat().st_size) and sub.returncode is None:
                if time.monotonic() > until:
                    raise SystemExit("soak: subscribers did not connect within 30 s")
                await asyncio.sleep(0.05)
            pub = await asyncio.create_subprocess_exec(
                *pinned(1), str(self.bench), "pub", *common, "--path", "/broadcast", "--count", str(msgs),
                "--rate", "0", "--inflight", "8", "--duration", "60", "--body", BODY,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            pub_out, _ = await asyncio.wait_for(pub.communicate(), 70)
            sub_out, _ = await asyncio.wait_for(sub.communicate(), 70)
        finally:
            if sub.returncode is None:
                sub.kill()
                await sub.wait()
        pub_doc, sub_doc = json.loads(pub_out or b"{}"), json.loads(sub_out or b"{}")
        if pub_doc.get("ok") != msgs:
            self.totals.problems.append(f"publisher: {pub_doc.get('ok')} of {msgs} accepted")
        return int(sub_doc.get("connected", 0)), int(sub_doc.get("ts_events", 0))

    async def round(self, session: aiohttp.ClientSession, label: str, cycles: int, subs: int, msgs: int) -> None:
        before = await self.wait_idle(session)
        cycles_before = self.totals.cycles_ok
        await self.cycles(session, cycles, before["messages_published"])
        idle = await self.wait_idle(session)
        connected, received = await self.deliveries(subs, msgs)
        self.totals.rst_closes += connected
        self.totals.deliveries += received
        self.totals.expected += connected * msgs
        after = await self.wait_idle(session)
        hub_delivered = after["messages_delivered"] - idle["messages_delivered"]
        self.totals.hub_delivered += hub_delivered
        if connected != subs:
            self.totals.problems.append(f"{label}: {connected} of {subs} subscribers connected")
        if received != connected * msgs or hub_delivered != connected * msgs:
            self.totals.problems.append(
                f"{label}: expected {connected * msgs} deliveries, clients got {received}, hub counted {hub_delivered}"
            )
        if after["total_clients"] != 0:
            self.totals.problems.append(f"{label}: {after['total_clients']} clients still registered after the round")
        if after["slow_disconnects"]:
            self.totals.problems.append(f"{label}: {after['slow_disconnects']} slow disconnects so far")
        assert self.hub is not None
        rss, fds = proc_status(self.hub.pid)
        elapsed = time.monotonic() - self.started
        cycled = self.totals.cycles_ok - cycles_before
        sample = Sample(label, rss, fds, after["total_clients"], elapsed, cycled, received)
        self.samples.append(sample)
        print(
            f"  {label:>8}: RSS {rss / 1024:7.1f} MB  fds {fds:4d}  clients {after['total_clients']}"
            f"  deliveries {received:,}/{connected * msgs:,}  cycles ok {sample.cycles:,}"
            f"  t={sample.elapsed_s:5.1f}s",
            flush=True,
        )

    async def run(self) -> int:
        args = self.args
        self.start_hub()
        try:
            timeout = aiohttp.ClientTimeout(total=30)
            connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=True)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                await self.wait_hub(session)
                print(f"soak: hub pid {self.hub.pid if self.hub else '?'} on {self.base}", flush=True)
                # warm-up: fills the history (1000 messages by default) and the allocator's pools
                await self.round(session, "warm-up", args.cycles, args.subs, args.warmup_msgs)
                capped = False
                for n in range(1, args.rounds + 1):
                    if time.monotonic() > self.deadline:
                        capped = True
                        cap = f"wall-clock cap of {args.max_seconds} s reached after {n - 1} rounds"
                        self.totals.problems.append(cap)
                        break
                    await self.round(session, f"round {n}", args.cycles, args.subs, args.msgs)
        finally:
            self.stop_hub()
            self.stop_redis()
        return self.report(capped)

    def report(self, capped: bool) -> int:
        args, totals = self.args, self.totals
        base, end = self.samples[0], self.samples[-1]
        peak = max(s.rss_kb for s in self.samples[1:] or self.samples)
        growth = 100.0 * (end.rss_kb - base.rss_kb) / base.rss_kb
        errors = [line for line in self.hub_log().splitlines() if "ERROR" in line or "Traceback" in line]
        problems = list(totals.problems)
        if abs(growth) > args.tolerance:
            problems.append(f"RSS moved {growth:+.1f}% from the warm-up baseline (tolerance {args.tolerance}%)")
        # +2: the soak's own /stats connection and a publisher keep-alive may still be
        # open on the hub's side when it is sampled
        # The Redis broker's pool may open the rest of its connections after the warm-up
        # (replays with Last-Event-ID start once the warm-up has filled the history).
        slack = 2 + (POOL_CONNECTIONS if args.redis else 0)
        if end.fds > base.fds + slack:
            problems.append(f"open fds {base.fds} after warm-up, {end.fds} at the end (allowed: +{slack})")
        if totals.cycles_failed:
            problems.append(f"{totals.cycles_failed} connect/disconnect cycles failed")
        if errors:
            problems.append(f"hub logged {len(errors)} error line(s), first: {errors[0][:200]}")
        verdict = "PASS" if not problems and not capped else "FAIL"
        print(
            f"\nsoak {verdict}: RSS {base.rss_kb / 1024:.1f} MB after warm-up -> {end.rss_kb / 1024:.1f} MB at the end"
            f" ({growth:+.1f}%, peak {peak / 1024:.1f} MB; tolerance {args.tolerance}%), fds {base.fds} -> {end.fds},"
            f" /stats total_clients {end.clients}"
        )
        main_cycles = sum(s.cycles for s in self.samples[1:])
        main_deliveries = sum(s.deliveries for s in self.samples[1:])
        print(
            f"  after warm-up: {main_cycles:,} connect/disconnect cycles (FIN) and {main_deliveries:,} deliveries;"
            f" in all (warm-up included): {totals.cycles_ok:,} cycles + {totals.rst_closes:,} RST closes,"
            f" {totals.deliveries:,} of {totals.expected:,} deliveries received (hub counted {totals.hub_delivered:,});"
            f" {time.monotonic() - self.started:.0f} s"
        )
        for problem in problems:
            print(f"  problem: {problem}")
        summary = {
            "verdict": verdict,
            "rss_warmup_kb": base.rss_kb,
            "rss_end_kb": end.rss_kb,
            "rss_peak_kb": peak,
            "rss_growth_pct": round(growth, 2),
            "fds_warmup": base.fds,
            "fds_end": end.fds,
            "cycles_after_warmup": main_cycles,
            "deliveries_after_warmup": main_deliveries,
            "cycles": totals.cycles_ok,
            "cycles_failed": totals.cycles_failed,
            "rst_closes": totals.rst_closes,
            "deliveries": totals.deliveries,
            "expected": totals.expected,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "samples": [[s.label, s.rss_kb, s.fds] for s in self.samples],
            "problems": problems,
        }
        print(json.dumps(summary, separators=(",", ":")))
        shutil.rmtree(self.work, ignore_errors=True)
        return 0 if verdict == "PASS" else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=1000, help="connect/disconnect cycles per round")
    parser.add_argument("--concurrency", type=int, default=50, help="cycles in flight")
    parser.add_argument("--subs", type=int, default=1000, help="subscribers per round")
    parser.add_argument("--msgs", type=int, default=100, help="messages per round")
    parser.add_argument("--warmup-msgs", type=int, default=1000, help="messages in the warm-up round")
    parser.add_argument("--tolerance", type=float, default=10.0, help="allowed RSS change, %%")
    parser.add_argument("--max-seconds", type=float, default=240.0, help="wall-clock cap for the rounds")
    parser.add_argument("--redis", action="store_true", help="the Redis broker, on a private redis-server")
    return parser.parse_args(argv)


def main() -> int:
    if not HUB_BIN.exists():
        sys.exit(f"soak: no {HUB_BIN} (pip install -e '.[fast]' into .venv)")
    return asyncio.run(Soak(parse_args()).run())


if __name__ == "__main__":
    sys.exit(main())
