"""Run an on-device script in a fresh process, as every backend benchmarks here: the same
script a bundle ships, so a figure taken here and one taken on the device are measured alike."""

from __future__ import annotations

import sys
from typing import Any

from edgeresnet.config import BenchmarkOptions
from edgeresnet.errors import BackendUnavailableError
from edgeresnet.ondevice.common import ScriptError, json_from_process, timing_flags


def run_ondevice(module: str, args: list[str], *, timeout_s: float = 1800) -> dict[str, Any]:
    """Run ``python -m module ARGS --json FILE`` and return the JSON it wrote."""
    command = [sys.executable, "-m", module, *args]
    try:
        return json_from_process(command, f"Benchmark process {module}", timeout_s=timeout_s)
    except ScriptError as exc:
        raise BackendUnavailableError(exc.message) from None


def timing_args(options: BenchmarkOptions, *, input_size: int, threads: int | None) -> list[str]:
    """The timing options every on-device benchmark script takes (``threads`` None: none given)."""
    return timing_flags(
        threads=threads,
        batch_sizes=list(options.batch_sizes),
        input_size=input_size,
        warmup=options.warmup,
        min_iterations=options.min_iterations,
        min_seconds=options.min_seconds,
    )
