"""The short fault schedule CI runs: one seeded run per broker mode (``-m faults``).

Each run takes about 20-40 s: three real hubs, real Redis (one node; or a sharded Redis
Cluster of 3 masters with a replica each), a 20 s schedule of faults, then the checker
over the whole history (see ``checker``). A failing run prints its seed, its plan and the
evidence; ``python -m tests.faults --broker B --seeds S --seconds 20`` replays it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.processes import MissingBinary
from tests.faults.run import run_seed

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

SHORT_SECONDS = 20.0


# redis seed 10: a stalled_restart of the busy channel's home hub; on ab801b8 (before the
# fix of issue 24) it reports the lost acknowledged messages with reused ids every run.
@pytest.mark.parametrize(("broker", "seed"), [("redis", 10), ("sharded", 3)])
async def test_a_seeded_fault_schedule_loses_and_repeats_no_acknowledged_message(
    broker: str, seed: int, tmp_path: Path
) -> None:
    try:
        report = await run_seed(seed, broker, SHORT_SECONDS, tmp_path)
    except MissingBinary as exc:
        pytest.fail(str(exc), pytrace=False)
    assert report.ok, report.text()
