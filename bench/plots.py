#!/usr/bin/env python3
"""Scaling plots of bench results (issue 13): sse-hub side by side with nchan.

    .venv/bin/pip install -e '.[bench]'        # matplotlib
    .venv/bin/python bench/plots.py --subs bench/results/scale-subs --size bench/results/scale-size \\
        --scaleout bench/results/scaleout.jsonl --out docs/img

Inputs (each optional; each one given writes one PNG into ``--out``):

- ``--subs DIR``: a ``bench/scale.sh subs`` directory -> ``scale-subs.png``, S1 and S2
  deliveries/s and p99 against subscribers;
- ``--size DIR``: a ``bench/scale.sh size`` directory -> ``scale-size.png``, the same
  against the event's size on the wire (bytes received / events received);
- ``--scaleout FILE``: ``bench/scaleout.py --out FILE`` -> ``scaleout.png``, CPU per
  delivered message of each instance and deliveries/s against instances;
- ``--per-message FILE`` (a ``bench/run.sh`` run with S5 and S6) and ``--floor FILE``
  (``bench/floor.py``'s lines) -> ``per-message.png``: what each server's core spends per
  message in S5 and S6, every round a dot, the kernel's floor drawn in.

Invariants:

- a point is the median of its runs, with summary.py's ``load`` and ``median``, so the
  plots and ``summary.py --points`` agree;
- a point whose runs include one with ``bg_busy_pct`` over summary.py's ``NOISY_BG`` is
  drawn hollow and labelled NOISY: marked, never hidden;
- every figure's caption names the date and time span of the runs it was drawn from and
  their machine load (median and max ``bg_busy_pct``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullFormatter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import NOISY_BG, Run, load, median, num, offered_rate

COLORS = {"sse-hub": "tab:blue", "nchan": "tab:orange", "sse-hub-redis": "tab:green", "express": "tab:gray"}
STYLES = {"S1": ("-", "o"), "S2": ("--", "s"), "many": ("-", "o"), "broadcast": ("--", "s")}
SCENARIOS = {"S1": "S1 flat out", "S2": "S2 at 50 msg/s"}


@dataclass
class Point:
    """One (x, series) point: medians of the runs behind it, and what the caption needs."""

    x: float
    y: float | None
    noisy: bool


@dataclass
class Provenance:
    """Start times and machine loads of every run a figure was drawn from."""

    times: list[str]
    loads: list[float]

    def add(self, runs: Sequence[Run]) -> None:
        self.times += [str(r["time"]) for r in runs if r.get("time")]
        self.loads += [v for v in (num(r, "bg_busy_pct") for r in runs) if v is not None]

    def caption(self) -> str:
        times = sorted(t.replace("T", " ").removesuffix("Z")[:16] for t in self.times)
        span = f"{times[0]} - {times[-1][11:] if times[-1][:10] == times[0][:10] else times[-1]}" if times else "?"
        if not self.loads:
            return f"runs of {span}; machine load not recorded"
        load = f"median {statistics.median(self.loads):.1f}%, max {max(self.loads):.1f}%"
        return f"runs of {span} (UTC); machine load (bg_busy_pct) {load}; hollow = NOISY (> {NOISY_BG:.0f}%)"


def is_noisy(runs: Sequence[Run]) -> bool:
    return any((num(r, "bg_busy_pct") or 0) > NOISY_BG for r in runs)


def wire_bytes(run: Run) -> float | None:
    """Bytes per event as received (data plus SSE framing)."""
    size, events = num(run, "bytes"), num(run, "events_received")
    return size / events if size is not None and events else None


def subscribers(run: Run) -> float | None:
    params = run.get("params")
    subs = params.get("subs") if isinstance(params, dict) else None
    return float(subs) if isinstance(subs, int | float) else num(run, "subs")


Series = dict[tuple[str, str], list[tuple[Point, Point]]]  # (target, scenario) -> (deliveries/s, p99)


def read_sweep(folder: Path, x_of: Callable[[Run], float | None], prov: Provenance) -> tuple[Series, list[Point]]:
    """Every ``*.jsonl`` of a scale.sh directory is one point; x is the median of ``x_of``
    over all its runs (every target ran the same point). Also S2's offered rate per point."""
    series: Series = {}
    offered: list[Point] = []
    for path in sorted(folder.glob("*.jsonl")):
        runs, _ = load([str(path)])
        every = [r for rs in runs.values() for r in rs]
        x = median(every, x_of)
        if x is None:
            continue
        prov.add(every)
        for (target, scenario), rs in runs.items():
            noisy = is_noisy(rs)
            pair = (Point(x, median(rs, "deliveries_per_s"), noisy), Point(x, median(rs, "lat_p99_ms"), noisy))
            series.setdefault((target, scenario), []).append(pair)
        s2 = [r for (_, scenario), rs in runs.items() if scenario == "S2" for r in rs]
        rate = median(s2, offered_rate)
        if rate is not None:
            offered.append(Point(x, rate, False))
    for pairs in series.values():
        pairs.sort(key=lambda pair: pair[0].x)
    offered.sort(key=lambda p: p.x)
    return series, offered


def draw(ax: Axes, points: Sequence[Point], color: str, style: tuple[str, str], label: str) -> None:
    """A line through the points; noisy ones hollow and labelled."""
    shown = [(p.x, p.y, p.noisy) for p in points if p.y is not None]
    if not shown:
        return
    line, marker = style
    ax.plot([x for x, _, _ in shown], [y for _, y, _ in shown], line, color=color, label=label)
    for x, y, noisy in shown:
        face = "white" if noisy else color
        ax.plot([x], [y], marker, color=color, markerfacecolor=face, markersize=6, zorder=3 if noisy else 2)
        if noisy:
            ax.annotate("NOISY", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color="red")


def sweep_figure(
    series: Series, offered: list[Point], xlabel: str, title: str, prov: Provenance, log_x: bool
) -> Figure:
    fig, (rate_ax, p99_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    order = sorted(series, key=lambda key: (key[1], key[0] != "sse-hub", key[0] != "nchan", key[0]))
    for target, scenario in order:
        pairs = series[(target, scenario)]
        color, style = COLORS.get(target, "black"), STYLES.get(scenario, ("-", "^"))
        label = f"{target} {SCENARIOS.get(scenario, scenario)}"
        draw(rate_ax, [rate for rate, _ in pairs], color, style, label)
        draw(p99_ax, [p99 for _, p99 in pairs], color, style, label)
    if offered:
        rate_ax.plot([p.x for p in offered], [p.y or 0 for p in offered], ":", color="gray", label="S2 offered")
    rate_ax.set_ylabel("deliveries/s (median)")
    rate_ax.yaxis.set_major_formatter(EngFormatter())
    rate_ax.set_ylim(bottom=0)
    p99_ax.set_ylabel("p99 latency, ms (log)")
    p99_ax.set_yscale("log")
    p99_ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    p99_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    p99_ax.yaxis.set_minor_formatter(NullFormatter())
    xs = sorted({p.x for pairs in series.values() for p, _ in pairs})
    for ax in (rate_ax, p99_ax):
        ax.set_xlabel(xlabel)
        if log_x:
            ax.set_xscale("log")
        ax.set_xticks(xs)  # ticks at the measured points
        ax.xaxis.set_major_formatter(EngFormatter(unit="B" if log_x else "", positions=0))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    rate_ax.legend(fontsize=8)
    return finish(fig, title, prov)


def finish(fig: Figure, title: str, prov: Provenance) -> Figure:
    fig.suptitle(title)
    fig.text(0.5, 0.01, prov.caption(), ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def scaleout_figure(lines: list[dict[str, object]], prov: Provenance) -> Figure:
    """Per shape: each instance's CPU us per delivery (dots, line through their mean) and
    the deliveries/s of all instances together, against the number of instances."""
    fig, (cpu_ax, rate_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    for n, shape in enumerate(s for s in ("many", "broadcast") if any(p.get("shape") == s for p in lines)):
        points = sorted((p for p in lines if p.get("shape") == shape), key=lambda p: num(p, "instances") or 0)
        prov.add(points)
        color, style = f"C{n}", STYLES[shape]
        means, rates = [], []
        for p in points:
            x, noisy = num(p, "instances") or 0, is_noisy([p])
            per_instance = p.get("per_instance")
            instances = per_instance if isinstance(per_instance, list) else []
            each = [num(i, "cpu_us_per_delivery") for i in instances if isinstance(i, dict)]
            values = [v for v in each if v is not None]
            cpu_ax.scatter([x] * len(values), values, color=color, alpha=0.35, s=14)
            means.append(Point(x, statistics.mean(values) if values else None, noisy))
            rates.append(Point(x, num(p, "deliveries_per_s"), noisy))
        draw(cpu_ax, means, color, style, f"{shape}: mean of instances (dots: each)")
        draw(rate_ax, rates, color, style, f"{shape}: all instances")
    cpu_ax.set_ylabel("instance CPU per delivered message, us")
    cpu_ax.set_ylim(bottom=0)
    rate_ax.set_ylabel("deliveries/s while publishing")
    rate_ax.yaxis.set_major_formatter(EngFormatter())
    rate_ax.set_ylim(bottom=0)
    for ax in (cpu_ax, rate_ax):
        ax.set_xlabel("sse-hub instances on one Redis")
        ax.set_xticks(sorted({int(num(p, "instances") or 0) for p in lines if p.get("shape") != "idle-b"}))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return finish(fig, "Scale-out on Redis (bench/scaleout.py): cost per message and throughput", prov)


def core_us_per_message(run: Run) -> float | None:
    """The server core's busy time per delivered message while it published (us)."""
    busy, window, delivered = num(run, "core_server_busy_pct"), num(run, "window_s"), num(run, "delivered")
    return busy / 100 * window / delivered * 1e6 if busy is not None and window and delivered else None


def per_message_figure(runs: dict[tuple[str, str], list[Run]], floor: list[dict[str, object]]) -> Figure:
    """Per scenario (S5, S6): a bar per target at the median of its rounds, a dot per round,
    and the floor (median of bench/floor.py's runs of that shape) as a dashed line."""
    scenarios = [s for s in ("S5", "S6") if any(scenario == s for _, scenario in runs)]
    fig, axes = plt.subplots(1, len(scenarios), figsize=(12, 4.8), squeeze=False)
    prov = Provenance([], [])
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        targets = [t for t in ("sse-hub", "nchan") if (t, scenario) in runs]  # the comparison issue 27 asks for
        for x, target in enumerate(targets):
            rounds = runs[(target, scenario)]
            prov.add(rounds)
            values = [v for v in map(core_us_per_message, rounds) if v is not None]
            if not values:
                continue
            color = COLORS.get(target, "black")
            ax.bar(x, statistics.median(values), color=color, alpha=0.6, label=target)
            ax.scatter([x] * len(values), values, color=color, zorder=3, s=16)
            ax.annotate(
                f"{statistics.median(values):.1f}",
                (x, statistics.median(values)),
                ha="center",
                textcoords="offset points",
                xytext=(0, 4),
                fontsize=8,
            )
        floors = [num(f, "us_per_message") for f in floor if f.get("shape") == scenario.lower()]
        values = [v for v in floors if v is not None]
        if values:
            level = statistics.median(values)
            ax.axhline(level, linestyle="--", color="black", label=f"kernel floor (bench/floor.py) {level:.1f}")
        ax.set_xticks(range(len(targets)), targets)
        ax.set_ylabel("server core per message, us (busy x window / delivered)")
        ax.set_title({"S5": "S5: one POST per message", "S6": "S6: sse-hub 100 per POST, nchan 1"}[scenario])
        ax.set_ylim(bottom=0)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return finish(fig, "What a message costs the server's core, against the kernel's floor", prov)


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subs", type=Path, help="a bench/scale.sh subs directory")
    parser.add_argument("--size", type=Path, help="a bench/scale.sh size directory")
    parser.add_argument("--scaleout", type=Path, help="the JSON lines of bench/scaleout.py --out")
    parser.add_argument("--per-message", type=Path, help="a bench/run.sh run with S5 and S6")
    parser.add_argument("--floor", type=Path, help="the JSON lines of bench/floor.py (with --per-message)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNGs (docs/img)")
    args = parser.parse_args(argv)
    figures: dict[str, Figure] = {}
    if args.subs:
        prov = Provenance([], [])
        series, offered = read_sweep(args.subs, subscribers, prov)
        title = "S1 and S2 against subscribers (bench/scale.sh subs): sse-hub vs nchan"
        figures["scale-subs.png"] = sweep_figure(series, offered, "subscribers", title, prov, log_x=False)
    if args.size:
        prov = Provenance([], [])
        series, offered = read_sweep(args.size, wire_bytes, prov)
        title = "S1 and S2 against event size, 1000 subscribers (bench/scale.sh size): sse-hub vs nchan"
        figures["scale-size.png"] = sweep_figure(series, offered, "event size on the wire (log)", title, prov, True)
    if args.scaleout:
        figures["scaleout.png"] = scaleout_figure(read_lines(args.scaleout), Provenance([], []))
    if args.per_message:
        runs, _ = load([str(args.per_message)])
        floor = read_lines(args.floor) if args.floor else []
        figures["per-message.png"] = per_message_figure(runs, floor)
    if not figures:
        parser.error("give at least one of --subs, --size, --scaleout, --per-message")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        fig.savefig(args.out / name, dpi=110)
        plt.close(fig)
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
