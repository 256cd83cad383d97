#!/usr/bin/env python3
"""Headline table of a bench run: medians per target and scenario, ratios vs nchan,
and the issue's targets for sse-hub (stdlib only).

    python3 bench/summary.py RESULTS.jsonl [...]
    python3 bench/summary.py --points SWEEP/*.jsonl     # one row per sweep point (bench/scale.sh)

Input: the JSON lines the referee's run.sh prints (one per run). Ratios are taken
between medians of the same file(s), that is of runs that alternated on the same
machine; numbers from different runs are not comparable on this noisy machine.

A run is marked noisy when the machine was over NOISY_BG % busy in the second
before it (``bg_busy_pct``), and client-bound when the subscriber client used
over CLIENT_BOUND % of its core between first and last delivery.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable

REFERENCE = "nchan"
HUB = "sse-hub"
HUB_REDIS = "sse-hub-redis"
NOISY_BG = 10.0
CLIENT_BOUND = 90.0

Run = dict[str, object]


def num(run: Run, key: str) -> float | None:
    value = run.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def median(runs: list[Run], key: str | Callable[[Run], float | None]) -> float | None:
    values = [v for v in (key(r) if callable(key) else num(r, key) for r in runs) if v is not None]
    return statistics.median(values) if values else None


def spread(runs: list[Run], key: str) -> str:
    values = [v for v in (num(r, key) for r in runs) if v is not None]
    if len(values) < 2:
        return "-"
    return f"{fmt(min(values))} - {fmt(max(values))}"


def fmt(value: float | None, digits: int | None = None) -> str:
    if value is None:
        return "-"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def offered_rate(run: Run) -> float | None:
    """Subscribers x the scenario's nominal publish rate (a saturated server also slows
    the publisher down, so its achieved rate would flatter it)."""
    params = run.get("params")
    rate = params.get("rate") if isinstance(params, dict) else None
    connected = num(run, "connected")
    if not isinstance(rate, int | float) or not rate or connected is None:
        return None
    return connected * float(rate)


def kept_up_pct(run: Run) -> float | None:
    """Deliveries per second as a share of what was offered (subscribers x msg/s)."""
    offered, achieved = offered_rate(run), num(run, "deliveries_per_s")
    return 100 * achieved / offered if offered and achieved is not None else None


def notes(runs: list[Run]) -> str:
    bg = [v for v in (num(r, "bg_busy_pct") for r in runs) if v is not None]
    out = []
    if bg:
        out.append(f"bg {fmt(statistics.median(bg), 0)}% (max {fmt(max(bg), 0)}%)")
        if max(bg) > NOISY_BG:
            out.append("NOISY")
    client = median(runs, "client_sub_window_cpu_pct")
    if client is not None and client > CLIENT_BOUND:
        out.append(f"client-bound ({fmt(client, 0)}% sub CPU)")
    failed = median(runs, "failed")
    if failed:
        out.append(f"{fmt(failed, 0)} failed conns")
    return ", ".join(out)


def load(paths: list[str]) -> tuple[dict[tuple[str, str], list[Run]], list[str]]:
    runs: dict[tuple[str, str], list[Run]] = defaultdict(list)
    order: list[str] = []
    for path in paths:
        with open(path) as fh:
            for line in fh:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                run = json.loads(line)
                target = str(run["target"])
                runs[(target, str(run["scenario"]))].append(run)
                if target not in order:
                    order.append(target)
    # sse-hub first, the reference next, then the rest in order of appearance
    order.sort(key=lambda t: (t != HUB, t != HUB_REDIS, t != REFERENCE))
    return runs, order


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        return
    print(f"\n**{title}**\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def points(paths: list[str]) -> int:
    """One row per (point, target): each file is one point of a sweep (bench/scale.sh),
    named after it (``subs-5000.jsonl``, ``pad-1000.jsonl``)."""
    print(
        "\n| point | target | S1 deliveries/s | S1 vs nchan | S1 server CPU us/delivery | S1 lost |"
        " S1 p99 ms | S2 delivered/s | S2 lost | S2 p50 ms | S2 p99 ms | S2 server core % | peak RSS MB | notes |"
    )
    print("|" + "---|" * 14)
    for path in paths:
        runs, order = load([path])
        label = path.rsplit("/", 1)[-1].removesuffix(".jsonl")
        ref_s1 = median(runs.get((REFERENCE, "S1"), []), "deliveries_per_s")
        for t in order:
            s1, s2 = runs.get((t, "S1"), []), runs.get((t, "S2"), [])
            cpu = median(s1, lambda r: per_delivery_us(r))
            rss = median(s1 + s2, "server_hwm_kb")
            print(
                f"| {label} | {t} | {fmt(median(s1, 'deliveries_per_s'))} | "
                f"{ratio(median(s1, 'deliveries_per_s'), ref_s1) if t != REFERENCE else '1.00x'} | "
                f"{fmt(cpu)} | {fmt(median(s1, 'lost'), 0)} | {fmt(median(s1, 'lat_p99_ms'))} | "
                f"{fmt(median(s2, 'deliveries_per_s'))} | {fmt(median(s2, 'lost'), 0)} | "
                f"{fmt(median(s2, 'lat_p50_ms'))} | {fmt(median(s2, 'lat_p99_ms'))} | "
                f"{fmt(median(s2, 'core_server_busy_pct'), 0)} | {fmt(rss / 1024 if rss else None, 0)} | "
                f"{notes(s1 + s2)} |"
            )
    return 0


def per_delivery_us(run: Run) -> float | None:
    cpu, delivered = num(run, "server_cpu_s"), num(run, "delivered")
    return 1e6 * cpu / delivered if cpu is not None and delivered else None


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    if paths[0] == "--points":
        return points(paths[1:])
    runs, order = load(paths)
    checks: list[str] = []

    def ref(scenario: str, key: str | Callable[[Run], float | None]) -> float | None:
        return median(runs.get((REFERENCE, scenario), []), key)

    # S1: deliveries/s, higher is better
    rows = []
    for t in order:
        rs = runs.get((t, "S1"))
        if not rs:
            continue
        complete = sum(1 for r in rs if r.get("complete"))
        rows.append([
            t, str(len(rs)), fmt(median(rs, "deliveries_per_s")), spread(rs, "deliveries_per_s"),
            ratio(median(rs, "deliveries_per_s"), ref("S1", "deliveries_per_s")),
            f"{complete}/{len(rs)}", fmt(median(rs, "lost"), 0), fmt(median(rs, "lat_p99_ms")),
            fmt(median(rs, "server_cpu_s")), notes(rs),
        ])  # fmt: skip
    table(
        "S1 fan-out throughput (1000 subscribers, 2000 messages flat out): medians",
        ["target", "runs", "deliveries/s", "spread", "vs nchan", "complete", "lost", "p99 ms", "server CPU s", "notes"],
        rows,
    )
    hub_s1 = median(runs.get((HUB, "S1"), []), "deliveries_per_s")
    if hub_s1 is not None and ref("S1", "deliveries_per_s"):
        checks.append(f"S1 sse-hub >= 1.0x nchan: {ratio(hub_s1, ref('S1', 'deliveries_per_s'))}")
    redis_s1 = median(runs.get((HUB_REDIS, "S1"), []), "deliveries_per_s")
    if redis_s1 is not None and hub_s1:
        checks.append(f"S1 sse-hub-redis >= 0.8x sse-hub (memory): {ratio(redis_s1, hub_s1)}")

    # S2: latency at 50 msg/s, lower is better
    rows = []
    for t in order:
        rs = runs.get((t, "S2"))
        if not rs:
            continue
        rows.append([
            t, str(len(rs)), fmt(median(rs, "lat_p50_ms")), fmt(median(rs, "lat_p99_ms")), spread(rs, "lat_p99_ms"),
            ratio(median(rs, "lat_p99_ms"), ref("S2", "lat_p99_ms")), fmt(median(rs, "lat_max_ms")),
            fmt(median(rs, "lost"), 0), fmt(median(rs, "core_server_busy_pct"), 0), notes(rs),
        ])  # fmt: skip
    table(
        "S2 latency (1000 subscribers, 50 msg/s for 10 s): medians",
        ["target", "runs", "p50 ms", "p99 ms", "spread p99", "p99 vs nchan", "max ms", "lost", "server core %",
         "notes"],
        rows,
    )  # fmt: skip
    hub_s2 = median(runs.get((HUB, "S2"), []), "lat_p99_ms")
    if hub_s2 is not None and ref("S2", "lat_p99_ms"):
        checks.append(f"S2 sse-hub p99 <= nchan's: {fmt(hub_s2)} ms vs {fmt(ref('S2', 'lat_p99_ms'))} ms")

    # S3: idle memory per connection, lower is better
    rows = []
    for t in order:
        rs = runs.get((t, "S3"))
        if not rs:
            continue
        rows.append([
            t, str(len(rs)), fmt(median(rs, "connected"), 0), fmt(median(rs, "kb_per_conn")),
            spread(rs, "kb_per_conn"), ratio(median(rs, "kb_per_conn"), ref("S3", "kb_per_conn")),
            fmt(median(rs, "pss_kb_per_conn")), fmt(median(rs, "ramp_s")), notes(rs),
        ])  # fmt: skip
    table(
        "S3 idle memory (10,000 idle subscribers): medians",
        ["target", "runs", "connected", "KB/conn (RSS)", "spread", "vs nchan", "KB/conn (PSS)", "ramp s", "notes"],
        rows,
    )
    hub_s3 = median(runs.get((HUB, "S3"), []), "kb_per_conn")
    if hub_s3 is not None and ref("S3", "kb_per_conn"):
        checks.append(f"S3 sse-hub KB/conn <= nchan's: {fmt(hub_s3)} vs {fmt(ref('S3', 'kb_per_conn'))}")

    # S4: 10,000 subscribers x 10 msg/s: keeping up
    rows = []
    for t in order:
        rs = runs.get((t, "S4"))
        if not rs:
            continue
        rows.append([
            t, str(len(rs)), fmt(median(rs, "connected"), 0), fmt(median(rs, offered_rate)),
            fmt(median(rs, "deliveries_per_s")), fmt(median(rs, kept_up_pct), 1), fmt(median(rs, "lost"), 0),
            fmt(median(rs, "lat_p50_ms")), fmt(median(rs, "lat_p99_ms")),
            ratio(median(rs, "lat_p99_ms"), ref("S4", "lat_p99_ms")), notes(rs),
        ])  # fmt: skip
    table(
        "S4 scale (10,000 subscribers, 10 msg/s for 10 s): medians",
        ["target", "runs", "connected", "offered/s", "delivered/s", "kept up %", "lost", "p50 ms", "p99 ms",
         "p99 vs nchan", "notes"],
        rows,
    )  # fmt: skip
    hub_s4 = runs.get((HUB, "S4"), [])
    if hub_s4:
        checks.append(
            f"S4 sse-hub keeps up (>= 99% of offered, 0 lost, p99 < 250 ms): {fmt(median(hub_s4, kept_up_pct), 1)}%, "
            f"lost {fmt(median(hub_s4, 'lost'), 0)}, p99 {fmt(median(hub_s4, 'lat_p99_ms'))} ms"
        )

    if checks:
        print("\n**Targets (issue 4), from the medians above**\n")
        for line in checks:
            print(f"- {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
