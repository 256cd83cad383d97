"""Long runs: ``python -m tests.faults --broker redis --seeds 1-20 --seconds 60``.

``--seeds`` takes ``N``, ``A-B`` and commas (``1-5,9``); ``--broker`` ``redis``,
``sharded`` or ``both``. Hubs run from ``SSE_HUB_FAULTS_SOURCE`` when it is set (another
source tree, e.g. an older commit's worktree). Each run prints its seed, plan and report;
a table of the runs ends the output. Exit status 1 when any run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.faults.processes import MissingBinary
from tests.faults.run import run_seed


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        seeds += range(int(low), int(high or low) + 1)
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=("redis", "sharded", "both"), default="redis")
    parser.add_argument("--seeds", default="1", help="e.g. 7, 1-20 or 1-5,9")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the fault schedule per run")
    parser.add_argument("--workdir", type=Path, default=None, help="where logs and reports go (default: a temp dir)")
    args = parser.parse_args(argv)
    brokers = ("redis", "sharded") if args.broker == "both" else (args.broker,)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sse-hub-faults-"))
    summaries = []
    failed = False
    for broker in brokers:
        for seed in parse_seeds(args.seeds):
            try:
                report = asyncio.run(run_seed(seed, broker, args.seconds, workdir / f"{broker}-{seed}"))
            except MissingBinary as exc:
                print(exc, file=sys.stderr)
                return 2
            failed = failed or not report.ok
            summaries.append(report.summary())
            print(flush=True)
    print("runs:")
    for line in summaries:
        print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
