"""Run an on-device script in a fresh process, as every backend benchmarks here: the same
script a bundle ships, so a figure taken here and one taken on the device are measured alike."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgeresnet.config import BenchmarkOptions
from edgeresnet.errors import BackendUnavailableError
from edgeresnet.ondevice.common import timing_flags


def run_ondevice(module: str, args: list[str], *, timeout_s: float = 1800) -> dict[str, Any]:
    """Run ``python -m module ARGS --json FILE`` and return the JSON it wrote."""
    with tempfile.TemporaryDirectory(prefix="edgeresnet-bench-") as tmp:
        out = Path(tmp) / "bench.json"
        command = [sys.executable, "-m", module, *args, "--json", str(out)]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise BackendUnavailableError(
                f"Benchmark of {args} did not finish within {timeout_s:.0f} s."
            ) from None
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise BackendUnavailableError(
                f"Benchmark process {module} failed (exit {proc.returncode}): " + " | ".join(tail)
            )
        try:
            return json.loads(out.read_text(encoding="utf-8"))
        except ValueError as exc:  # a script that wrote half its file and still exited 0
            raise BackendUnavailableError(
                f"Benchmark process {module} wrote unreadable results: {exc}"
            ) from None


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
