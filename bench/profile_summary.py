#!/usr/bin/env python3
"""Text summary of a py-spy raw profile (collapsed stacks) of the hub (stdlib only).

    python3 bench/profile_summary.py PROFILE.raw [--json SCENARIO.json] [--top N]

Prints where the sampled time went:

- buckets: fan-out writes (``Flusher.flush``), fan-out queueing (``Hub.dispatch``),
  the publish request itself (handler minus the dispatch it triggers; pydantic
  separately), the rest of aiohttp's HTTP machinery, stream set-up, everything else;
- the hottest source lines (leaf frames), with the code of each line read from the
  project, so ``transport.write(data)`` shows as such;
- the functions with the most inclusive time.

With ``--json`` (the referee's scenario line of the same run) the buckets are also
given in microseconds of server CPU per delivery and per published message. py-spy
leaves idle time out, so shares are of the time the hub was busy.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+):(?P<line>\d+)\)$")

Frames = list[tuple[str, str, int]]  # (function, file, line), root first

# (bucket, predicate over the frames); the first that matches wins
BUCKETS: list[tuple[str, Callable[[Frames], bool]]] = [
    ("fan-out: Flusher.flush (transport.write per subscriber)", lambda fs: any_func(fs, "Flusher.flush")),
    ("fan-out: Hub.dispatch (offer to every subscriber)", lambda fs: any_func(fs, "Hub.dispatch")),
    ("publish: pydantic validation/serialization", lambda fs: any_func(fs, "broadcast") and any_file(fs, "pydantic")),
    ("publish: rest of the POST /broadcast handler", lambda fs: any_func(fs, "broadcast")),
    ("subscribe: stream set-up and teardown", lambda fs: any_func(fs, "stream") or any_func(fs, "stream_path")),
    ("aiohttp: HTTP parsing, responses, connections", lambda fs: any_file(fs, "aiohttp")),
    ("heartbeat and other hub tasks", lambda fs: any_file(fs, "sse_hub")),
    ("event loop itself (uvloop: C, shows as Runner.run) and other", lambda fs: True),
]


def parse_frame(frame: str) -> tuple[str, str, int]:
    match = FRAME.match(frame)
    if match is None:
        return frame, "", 0
    return match["func"], match["file"], int(match["line"])


def any_func(frames: Frames, name: str) -> bool:
    return any(func == name for func, _, _ in frames)


def any_file(frames: Frames, part: str) -> bool:
    return any(part in path for _, path, _ in frames)


def source_line(path: str, line: int) -> str:
    """The code at ``path:line`` when it is one of the project's files."""
    if not path.startswith("sse_hub/"):
        return ""
    try:
        return (PROJECT / path).read_text().splitlines()[line - 1].strip()
    except (OSError, IndexError):
        return ""


def load(path: str) -> Counter[str]:
    stacks: Counter[str] = Counter()
    with open(path) as fh:
        for raw in fh:
            raw = raw.rstrip("\n")
            stack, _, count = raw.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] += int(count)
    return stacks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile")
    parser.add_argument("--json", help="the referee's scenario line of the profiled run")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)

    stacks = load(args.profile)
    total = sum(stacks.values())
    if not total:
        print("empty profile", file=sys.stderr)
        return 1
    buckets: Counter[str] = Counter()
    leaves: Counter[tuple[str, str, int]] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [parse_frame(f) for f in stack.split(";")]
        # the process's entry frames (sse-hub script, cli, asyncio.Runner) sit under
        # everything; what runs from the event loop starts after them
        loop = next((i for i, (func, _, _) in enumerate(frames) if func == "Runner.run"), -1)
        for name, predicate in BUCKETS:
            if predicate(frames[loop + 1 :]):
                buckets[name] += count
                break
        leaves[frames[-1]] += count
        for func in {f"{func} ({path})" for func, path, _ in frames}:
            inclusive[func] += count

    run = json.loads(Path(args.json).read_text()) if args.json else {}
    cpu_s = run.get("server_cpu_s")
    delivered = run.get("delivered") or 0
    published = run.get("published_ok") or 0
    print(f"\n{total} samples ({args.profile})")
    if cpu_s and delivered:
        print(
            f"server CPU {cpu_s} s for {delivered:,} deliveries of {published:,} messages:"
            f" {1e6 * cpu_s / delivered:.2f} us per delivery, {1e3 * cpu_s / max(published, 1):.2f} ms per message"
            f" (the profile covers the whole run: connect phase included)"
        )
    print("\nwhere the time went (share of samples; us/delivery = share x server CPU per delivery)")
    for name, _ in BUCKETS:
        share = buckets[name] / total
        per = f"  {share * 1e6 * cpu_s / delivered:6.2f} us/delivery" if cpu_s and delivered else ""
        print(f"  {100 * share:5.1f}%{per}  {name}")

    print(f"\nhottest lines (self time, top {args.top})")
    for (func, path, line), count in leaves.most_common(args.top):
        code = source_line(path, line)
        print(f"  {100 * count / total:5.1f}%  {func} ({path}:{line})" + (f"   {code}" if code else ""))

    print(f"\nfunctions by inclusive time (top {args.top})")
    for func, count in inclusive.most_common(args.top + 6):
        if func.startswith(("<module>", "main (", "serve (", "run (", "Runner.run")):
            continue  # the process's entry frames: always 100%
        print(f"  {100 * count / total:5.1f}%  {func}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
