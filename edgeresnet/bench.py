"""How figures are taken on a shared machine: every row in rounds, the order reversed each
round, each figure from its least disturbed round. Each run is a fresh process
(``backends/script.py``), so load time and peak memory belong to the artifact alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgeresnet.errors import BackendUnavailableError
from edgeresnet.progress import stage, warn


@dataclass(frozen=True)
class Job:
    """One row to time: its results row (``bench`` is filled in) and how to measure it once."""

    label: str
    row: dict[str, Any]
    run: Callable[[], dict[str, Any]]


def time_rounds(jobs: list[Job], rounds: int) -> None:
    """Time every job ``rounds`` times, the order reversed each round; keep its fastest run.

    Other processes on a shared machine only ever slow a run down, so the fastest round is the
    least disturbed one (the reasoning of Python's ``timeit``); alternating the order keeps a
    burst of load from always landing on the same rows. A job that raises
    BackendUnavailableError is not retried; its row says why it has no figure.
    """
    runs: list[list[dict[str, Any]]] = [[] for _ in jobs]
    failed: set[int] = set()
    for r in range(rounds):
        order = list(range(len(jobs)))[:: 1 if r % 2 == 0 else -1]
        for i in order:
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
            job.row["bench"] = _fastest_run(measured)


def _fastest_run(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the lowest p50; throughput from the run with the most images/s.

    A burst of load can slow a throughput loop without touching the latency loop of the same
    run (seen: one OpenVINO INT8 round at 52 img/s, the others at 84-98), so each figure is
    taken from its own least disturbed round.
    """
    if len(measured) == 1:
        return measured[0]
    chosen = dict(min(measured, key=lambda b: b["latency"]["p50_ms"]))
    rates = [(b.get("throughput") or {}).get("images_per_s") for b in measured]
    if all(isinstance(r, (int, float)) for r in rates):
        chosen["throughput"] = measured[rates.index(max(rates))]["throughput"]
    chosen["rounds"] = {
        "count": len(measured),
        "p50_ms": [b["latency"]["p50_ms"] for b in measured],
        "images_per_s": rates,
        "kept": "fastest",
    }
    return chosen
