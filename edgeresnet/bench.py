"""How figures are taken on a shared machine: every row in rounds, the order reversed each
round, each figure from its least disturbed round. Each run is a fresh process
(``backends/script.py``), so load time and peak memory belong to the artifact alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgeresnet.errors import BackendUnavailableError
from edgeresnet.ondevice.common import in_rounds
from edgeresnet.progress import stage, warn


@dataclass(frozen=True)
class Job:
    """One row to time: its results row (``bench`` is filled in) and how to measure it once."""

    label: str
    row: dict[str, Any]
    run: Callable[[], dict[str, Any]]


def time_rounds(jobs: list[Job], rounds: int) -> None:
    """Time every job ``rounds`` times, the order reversed each round, and fill its row's
    ``bench`` with its fastest run: ``ondevice.common.in_rounds``, the rule the bundle's scripts
    follow too. A job that raises BackendUnavailableError is not retried; its row says why it
    has no figure.
    """

    def attempt(job: Job) -> Callable[[], dict[str, Any] | None]:
        def measure() -> dict[str, Any] | None:
            try:
                return job.run()
            except BackendUnavailableError as exc:
                warn(f"{job.label} could not be benchmarked: {exc.message}")
                job.row["notes"].append(f"not benchmarked here: {exc.message}")
                return None

        return measure

    fastest = in_rounds([(job.label, attempt(job)) for job in jobs], rounds, announce=stage)
    for job, bench in zip(jobs, fastest, strict=True):
        if bench is not None:
            job.row["bench"] = bench
