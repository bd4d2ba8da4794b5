"""Benchmark TensorRT engines on the device that built them; write results.json.

Imports only tensorrt, numpy and the standard library (and common.py, trt_runtime.py beside it):

    python3 ondevice/bench_tensorrt.py --bundle .   # every engine: results.<device>.<target>.json
    python3 ondevice/bench_tensorrt.py --engine int8.engine --input-size 224 --json out.json
    python3 ondevice/bench_tensorrt.py --engine p30-int8.engine --reference int8.engine

Latency is host wall-clock per batch including the host<->device copies (what an application
pays, trtexec's "Latency"); GPU compute time alone comes from CUDA events. Each run records the
TensorRT and JetPack versions, the power mode and whether clocks were locked. With --reference
two engines are timed at batch 1 in alternating pairs instead, for the ratio of their p50s with
a 95 % interval; ``--bundle . --pairs 500`` adds that to every engine whose variant names a
reference in the manifest. ``--bundle . --rounds 3`` times every engine three times, keeping
each one's fastest run.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from . import common, trt_runtime  # inside the edgeresnet package
except ImportError:  # standalone, copied into a bundle next to common.py and trt_runtime.py
    import common  # type: ignore[no-redef]
    import trt_runtime  # type: ignore[no-redef]

# isort: split
import numpy as np  # noqa: E402 (common says how to install it where it is missing)

LATENCY_TIMING = "host wall clock per batch, host->device copy + execute + device->host copy"
TIMING = f"latency: {LATENCY_TIMING}; gpu_compute: CUDA events around execute only"
SCRIPT = Path(__file__).name


def measure(
    trt: Any,
    engine: Path,
    *,
    batch_sizes: list[int],
    input_size: int,
    warmup: int = 20,
    min_iterations: int = 100,
    min_seconds: float = 3.0,
    dla_core: int = -1,
) -> dict[str, Any]:
    """Load time, latency and GPU time per batch size, throughput, memory, executed precision."""
    rss_before = common.rss_mb()
    cuda = trt_runtime.Cuda()
    started = time.perf_counter()
    runner = trt_runtime.EngineRunner(trt, engine, cuda, dla_core=dla_core)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    start, end = cuda.event(), cuda.event()
    per_batch = []
    for batch in batch_sizes:
        x = rng.standard_normal((batch, 3, input_size, input_size), dtype=np.float32)
        times = common.time_loop(
            lambda x=x: runner.run(x),
            warmup=warmup,
            min_iterations=min_iterations,
            min_seconds=min_seconds,
        )
        gpu = [runner.gpu_ms(start, end) / 1000.0 for _ in range(min_iterations)]
        stats = common.latency_stats(times)
        stats.update(batch=batch, images_per_s=round(batch * 1000.0 / stats["p50_ms"], 2))
        stats["gpu_compute"] = common.latency_stats(gpu)
        per_batch.append(stats)
    runner.close()
    layers = engine.with_suffix(".layers.json")
    return {
        "runtime": "tensorrt",
        "runtime_version": trt.__version__,
        "gpu": cuda.device_name,
        "cuda_driver_api": cuda.cuda_version,
        "dla_core": dla_core if dla_core >= 0 else None,
        "threads": None,
        "timing": TIMING,
        "load_s": round(load_s, 4),
        "rss_before_load_mb": rss_before,
        "peak_rss_mb": common.peak_rss_mb(),
        "latency": per_batch[0],
        "throughput": max(per_batch, key=lambda b: b["batch"]),
        "per_batch": per_batch,
        "precision_executed": trt_runtime.layer_precisions(json.loads(layers.read_text()))
        if layers.is_file()
        else {"label": "unknown", "why": f"{layers.name} is missing"},
        **conditions(),
    }


def paired(
    trt: Any,
    engine: Path,
    reference: Path,
    *,
    pairs: int,
    warmup: int,
    input_size: int,
    dla_cores: tuple[int, int] = (-1, -1),
) -> dict[str, Any]:
    """``engine`` against ``reference`` at batch 1, call for call (``common.alternate``)."""
    cuda = trt_runtime.Cuda()
    runners = [
        trt_runtime.EngineRunner(trt, e, cuda, dla_core=d)
        for e, d in zip((engine, reference), dla_cores)
    ]
    x = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size), np.float32)
    try:
        times = common.alternate(
            *(functools.partial(r.run, x) for r in runners), pairs=pairs, warmup=warmup
        )
    finally:
        for runner in runners:
            runner.close()
    return {
        "runtime": "tensorrt",
        "runtime_version": trt.__version__,
        "gpu": cuda.device_name,
        "timing": LATENCY_TIMING,
        **common.paired_ratio(*times),
    }


def conditions() -> dict[str, Any]:
    """Power mode and clocks, with a warning where they make numbers hard to compare."""
    jetson, warnings = trt_runtime.jetson_facts(), []
    if jetson is not None and jetson["clocks_locked"] is not True:
        warnings.append(
            "clocks were not locked (run `sudo jetson_clocks`) or could not be read: "
            "latency varies with DVFS"
        )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    return {"jetson": jetson, "nvidia_smi": trt_runtime.gpu_facts(), "warnings": warnings}


def document(
    manifest: dict[str, Any], rows: list[dict[str, Any]], environment: dict[str, Any], name: str
) -> dict[str, Any]:
    """A results document in the shared schema, for `edgeresnet report`."""
    device = common.machine_info(name)
    device["gpu"] = next((r["bench"]["gpu"] for r in rows if r.get("bench")), None)
    return common.bundle_document(
        manifest, rows, script="bench_tensorrt.py", device=device, environment=environment
    )


def row(record: dict[str, Any], bundle: Path, variants: dict[str, dict[str, Any]]) -> dict:
    engine = bundle / "engines" / record["engine"]
    source = variants.get(record["variant"], {})
    return {
        "variant": record["variant"],
        "precision": source.get("precision", record["options"]["precision"]),
        "artifact": {
            "file": f"engines/{engine.name}",
            "bytes": engine.stat().st_size,
            "sha256": common.sha256_file(engine),
            "onnx": source.get("artifact"),
        },
        "build": {"tensorrt_engine": record},
        **{k: source[k] for k in common.PER_VARIANT_MODEL if k in source},
        "accuracy": None,
        "fidelity": None,
        "notes": [],
    }


def bench_bundle(
    bundle: Path, args: argparse.Namespace, pairs: int = 0, rounds: int = 1
) -> dict[str, Any]:
    """Benchmark every engine the bundle built, ``rounds`` times (``common.in_rounds``), and
    ``pairs`` against each's reference."""
    manifest = common.check_manifest(bundle)
    settings = trt_runtime.load_settings(bundle)
    trt = trt_runtime.import_tensorrt()
    trt_runtime.check_version(
        trt.__version__, settings["tensorrt_versions"], ignore=args.ignore_version
    )
    variants = {v["variant"]: v for v in manifest["variants"]}
    records = trt_runtime.engine_records(bundle)
    input_size = common.model_input_size(manifest)

    def measure(record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        timing = common.timing_flags(
            threads=None,
            # The engine's own range: build_engine.py --batch-sizes may have narrowed the profile's.
            batch_sizes=args.batch_sizes or record["options"]["batch_sizes"],
            input_size=input_size,
            warmup=args.warmup,
            min_iterations=args.min_iterations,
            min_seconds=args.min_seconds,
        )
        engine = bundle / "engines" / record["engine"]
        command = ["--engine", str(engine), "--dla-core", str(record["options"]["dla_core"])]
        return functools.partial(
            common.with_load_average,
            common.in_fresh_process,
            SCRIPT,
            [*command, *timing],
            f"Benchmarking {record['engine']}",
        )

    results = common.in_rounds([(r["engine"], measure(r)) for r in records], rounds)
    rows = [
        {**row(record, bundle, variants), "bench": result}
        for record, result in zip(records, results)
    ]
    if pairs:
        engines = {r["variant"]: r for r in records}

        def pair(v: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
            ours, theirs = engines[v["variant"]], engines[ref["variant"]]
            return paired(
                trt,
                bundle / "engines" / ours["engine"],
                bundle / "engines" / theirs["engine"],
                pairs=pairs,
                warmup=args.warmup,
                input_size=input_size,
                dla_cores=(ours["options"]["dla_core"], theirs["options"]["dla_core"]),
            )

        common.paired_rows(manifest, rows, pair)
    facts = rows[0]["bench"]["jetson"] if rows else None
    environment = {"tensorrt": trt.__version__, "jetpack": (facts or {}).get("jetpack")}
    return document(manifest, rows, environment, args.device_name)


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path, help="bundle folder holding manifest.json")
    source.add_argument("--engine", type=Path, help="one engine file")
    parser.add_argument(
        "--json", type=Path, help="output (default BUNDLE/results.<device>.<target>.json)"
    )
    parser.add_argument("--batch-sizes", type=common.batch_sizes)
    parser.add_argument("--input-size", type=common.at_least(32), default=224)
    parser.add_argument("--dla-core", type=int, default=-1)
    parser.add_argument("--warmup", type=common.at_least(0), default=20)
    parser.add_argument("--min-iterations", type=common.at_least(1), default=100)
    parser.add_argument("--min-seconds", type=common.at_least(0.0, float), default=3.0)
    parser.add_argument("--ignore-version", action="store_true")
    parser.add_argument("--device-name", type=common.a_name, help="name of this device in reports")
    common.add_pairing_arguments(parser, "engine file")
    common.add_rounds_argument(parser)
    args = parser.parse_args(argv)
    pairs = common.pairs_wanted(parser, args)
    rounds = common.rounds_wanted(parser, args)
    out = common.output_file(args)
    if args.bundle:
        result = bench_bundle(args.bundle, args, pairs, rounds)
    elif not args.engine.is_file():
        parser.error(f"{args.engine} does not exist")
    elif args.reference is not None:
        trt = trt_runtime.import_tensorrt()
        result = {
            "engine_file": str(args.engine),
            "reference_file": str(args.reference),
            **paired(
                trt,
                args.engine,
                args.reference,
                pairs=pairs,
                warmup=args.warmup,
                input_size=args.input_size,
                dla_cores=(args.dla_core, args.dla_core),
            ),
        }
    else:
        trt = trt_runtime.import_tensorrt()
        result = measure(
            trt,
            args.engine,
            batch_sizes=args.batch_sizes or [1, 8],
            input_size=args.input_size,
            warmup=args.warmup,
            min_iterations=args.min_iterations,
            min_seconds=args.min_seconds,
            dla_core=args.dla_core,
        )
    common.emit(result, out)
    return 0


if __name__ == "__main__":
    common.run(main)
