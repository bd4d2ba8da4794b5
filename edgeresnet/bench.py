"""How figures are taken on a shared machine: every row in rounds, the order reversed each
round, each figure from its least disturbed round. Each run is a fresh process
(``backends/script.py``), so load time and peak memory belong to the artifact alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgeresnet.errors import BackendUnavailableError
from edgeresnet.ondevice.common import fastest_run, round_order
from edgeresnet.progress import stage, warn


@dataclass(frozen=True)
class Job:
    """One row to time: its results row (``bench`` is filled in) and how to measure it once."""

    label: str
    row: dict[str, Any]
    run: Callable[[], dict[str, Any]]


def time_rounds(jobs: list[Job], rounds: int) -> None:
    """Time every job ``rounds`` times, the order reversed each round; keep its fastest run
    (``ondevice.common.in_rounds``, which the bundle's scripts use, with its reasons). A job
    that raises BackendUnavailableError is not retried; its row says why it has no figure.
    """
    runs: list[list[dict[str, Any]]] = [[] for _ in jobs]
    failed: set[int] = set()
    for r in range(rounds):
        for i in round_order(len(jobs), r):
            if i in failed:
                continue
            of = f", round {r + 1} of {rounds}" if rounds > 1 else ""
            with stage(f"benchmarking {jobs[i].label}{of}"):
                try:
                    runs[i].append(jobs[i].run())
                except BackendUnavailableError as exc:
                    warn(f"{jobs[i].label} could not be benchmarked: {exc.message}")
                    jobs[i].row["notes"].append(f"not benchmarked here: {exc.message}")
                    failed.add(i)
    for job, measured in zip(jobs, runs, strict=True):
        if measured:
            job.row["bench"] = fastest_run(measured)
