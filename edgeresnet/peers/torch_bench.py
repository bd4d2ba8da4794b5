"""Benchmark a ResNet in PyTorch eager mode, timed the way the on-device scripts time runtimes.

Runs in a fresh process (``python -m edgeresnet.peers.torch_bench ... --json OUT``, as
``backends.script.run_ondevice`` starts it), so load time, peak memory and threads belong to
PyTorch alone;
warm-up, iteration counts and percentiles are ``ondevice.common``'s, as for ONNX Runtime and
OpenVINO.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeresnet.ondevice import common


def measure(
    arch: str,
    weights: str,
    *,
    threads: int,
    batch_sizes: list[int],
    input_size: int,
    seed: int = 0,
    warmup: int = 10,
    min_iterations: int = 50,
    min_seconds: float = 3.0,
) -> dict[str, Any]:
    """Load time, latency per batch size, throughput and peak memory of the eager model."""
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    from edgeresnet.models import load_model  # after the thread settings, which must come first

    rss_before = common.rss_mb()
    t0 = time.perf_counter()
    model = load_model(arch, weights, seed=seed, progress=False).model.eval()
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    per_batch = []
    with torch.inference_mode():
        for batch in batch_sizes:
            x = torch.from_numpy(
                rng.standard_normal((batch, 3, input_size, input_size), dtype=np.float32)
            )
            times = common.time_loop(
                lambda x=x: model(x),
                warmup=common.per_batch(warmup, batch, floor=2),
                min_iterations=common.per_batch(min_iterations, batch, floor=5),
                min_seconds=min_seconds,
            )
            stats = common.latency_stats(times)
            stats.update(batch=batch, images_per_s=round(batch * 1000.0 / stats["p50_ms"], 2))
            per_batch.append(stats)
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    return {
        "runtime": "torch",
        "runtime_version": torch.__version__,
        "mode": "eager, eval(), torch.inference_mode()",
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "load_s": round(load_s, 4),
        "rss_before_load_mb": rss_before,
        "peak_rss_mb": common.peak_rss_mb(),
        "latency": per_batch[0],
        "throughput": max(per_batch, key=lambda b: b["batch"]),
        "per_batch": per_batch,
        "precision_executed": {
            "label": "fp32" if dtypes == ["float32"] else "+".join(dtypes),
            "source": f"parameter dtypes: {', '.join(dtypes)}; no quantized modules",
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, required=True, help="output file")
    common.add_timing_arguments(parser)
    args = parser.parse_args(argv)
    result = measure(
        args.model, args.weights, input_size=args.input_size, seed=args.seed, **common.timing(args)
    )
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
