"""Benchmark ONNX models in ONNX Runtime on the machine this runs on.

Imports only onnxruntime, numpy and the standard library, so it runs from a copied bundle:

    python bench_onnxruntime.py --bundle .            # every model in manifest.json
    python bench_onnxruntime.py --model model.int8.onnx --json out.json
    python bench_onnxruntime.py --model p30/model.int8.onnx --reference model.int8.onnx

With --reference the two models are timed at batch 1 in alternating pairs, and the ratio of
their p50s comes with a 95 % interval: on a shared machine it holds where two separate runs
do not. ``--bundle . --pairs 500`` does that for every variant whose manifest names a reference;
``--bundle . --rounds 3`` times every variant three times and keeps each one's fastest run.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from . import common  # inside the edgeresnet package
except ImportError:  # standalone, copied into a bundle next to common.py
    import common  # type: ignore[no-redef]

# isort: split
import numpy as np  # noqa: E402 (common says how to install it where it is missing)

ort = common.require("onnxruntime", pip="onnxruntime (or onnxruntime-gpu)")

INT8_OPS = {
    "QLinearConv",
    "ConvInteger",
    "QLinearMatMul",
    "MatMulInteger",
    "QGemm",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
}
FLOAT_OPS = {"Conv", "FusedConv", "NchwcConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}
# The size of this process's shared thread pool, once ``share_threads`` made it.
_SHARED_POOL: list[int] = []
SCRIPT = Path(__file__).name
OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def session_options(
    threads: int, optimization: str = "all", *, shared_threads: bool = False
) -> ort.SessionOptions:
    """``shared_threads``: run on the process's one pool (``share_threads``), not its own."""
    options = ort.SessionOptions()
    if shared_threads:
        options.use_per_session_threads = False
    else:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    level = OPTIMIZATION_LEVELS[optimization]
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3
    return options


def open_session(model: Path, options: Any, providers: list[str]) -> Any:
    """An inference session that runs on every provider asked for: ONNX Runtime falls back to
    the next one when a provider's libraries fail to load (CUDA without cuDNN), and timing the
    fallback under the name asked for would mislead."""
    session = ort.InferenceSession(str(model), options, providers=providers)
    lost = [p for p in providers if p not in session.get_providers()]
    if lost:
        common.fail(
            f"ONNX Runtime could not start {', '.join(lost)} for {model} and fell back to "
            f"{', '.join(session.get_providers())}.",
            "Check that provider's libraries on this device (CUDA and cuDNN for CUDA, TensorRT "
            "for TensorRT), or pass --providers CPUExecutionProvider.",
        )
    return session


def executed_precision(
    model: Path, threads: int, input_shape: tuple[int, ...], optimization: str, providers: list[str]
) -> dict[str, Any]:
    """Which kernels ONNX Runtime really ran, read from its profiler after one inference."""
    options = session_options(threads, optimization)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = open_session(model, options, providers)
        session.run(None, {session.get_inputs()[0].name: np.zeros(input_shape, np.float32)})
        events = json.loads(Path(session.end_profiling()).read_text())
    ops = Counter(
        e["args"]["op_name"]
        for e in events
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
    )
    int8 = sum(n for op, n in ops.items() if op in INT8_OPS)
    flt = sum(n for op, n in ops.items() if op in FLOAT_OPS)
    label = "int8" if int8 and not flt else "fp32" if flt and not int8 else "int8+fp32"
    return {
        "label": label if (int8 or flt) else "unknown",
        "int8_kernels": int8,
        "float_kernels": flt,
        "op_counts": dict(sorted(ops.items())),
    }


def measure(
    model: Path,
    *,
    threads: int,
    batch_sizes: list[int],
    input_size: int,
    warmup: int = 10,
    min_iterations: int = 50,
    min_seconds: float = 3.0,
    optimization: str = "all",
    providers: list[str] | None = None,
) -> dict[str, Any]:
    """Load time, latency per batch size, throughput, peak memory and executed precision."""
    providers = providers or ["CPUExecutionProvider"]
    rss_before = common.rss_mb()
    t0 = time.perf_counter()
    session = open_session(model, session_options(threads, optimization), providers)
    load_s = time.perf_counter() - t0
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    per_batch = []
    for batch in batch_sizes:
        x = rng.standard_normal((batch, 3, input_size, input_size), dtype=np.float32)
        times = common.time_loop(
            functools.partial(session.run, None, {name: x}),
            warmup=common.per_batch(warmup, batch, floor=2),
            min_iterations=common.per_batch(min_iterations, batch, floor=5),
            min_seconds=min_seconds,
        )
        stats = common.latency_stats(times)
        stats.update(batch=batch, images_per_s=round(batch * 1000.0 / stats["p50_ms"], 2))
        per_batch.append(stats)
    peak = common.peak_rss_mb()
    del session
    precision = executed_precision(
        model, threads, (1, 3, input_size, input_size), optimization, providers
    )
    return {
        "runtime": "onnxruntime",
        "runtime_version": ort.__version__,
        "providers": providers,
        "threads": threads,
        "optimization": optimization,
        "load_s": round(load_s, 4),
        "rss_before_load_mb": rss_before,
        "peak_rss_mb": peak,
        "latency": per_batch[0],
        "throughput": max(per_batch, key=lambda b: b["batch"]),
        "per_batch": per_batch,
        "precision_executed": precision,
    }


def share_threads(threads: int) -> None:
    """Give this process one pool of ``threads`` threads for paired sessions to run on.

    Two sessions with pools of their own fight over the cores: after each run a pool's threads
    spin, waiting for more work, while the other session runs (ResNet-50 FP32 and INT8 on 2
    cores: 1.6x and 2.0x slower when timed in turn). On one shared pool the spinning threads are
    the ones the next run uses. ONNX Runtime makes the pool with its first session, so a process
    that times pairs calls this before any session; later calls with the same size do nothing.
    """
    if _SHARED_POOL:
        if _SHARED_POOL[0] != threads:
            raise RuntimeError(
                f"this process shares a pool of {_SHARED_POOL[0]} threads, not {threads}"
            )
        return
    ort.set_global_thread_pool_sizes(threads, 1)
    _SHARED_POOL.append(threads)


def batch1(
    model: Path, *, threads: int, input_size: int, optimization: str, providers: list[str]
) -> Callable[[], Any]:
    """One batch-1 inference of ``model`` on the shared pool (``share_threads``), to call."""
    options = session_options(threads, optimization, shared_threads=True)
    session = open_session(model, options, providers)
    x = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size), np.float32)
    return functools.partial(session.run, None, {session.get_inputs()[0].name: x})


def paired(
    model: Path,
    reference: Path,
    *,
    pairs: int,
    warmup: int,
    threads: int,
    input_size: int,
    optimization: str = "all",
    providers: list[str] | None = None,
) -> dict[str, Any]:
    """``model`` against ``reference`` at batch 1, call for call (``common.alternate``)."""
    settings = {
        "threads": threads,
        "input_size": input_size,
        "optimization": optimization,
        "providers": providers or ["CPUExecutionProvider"],
    }
    share_threads(threads)
    runs = [batch1(m, **settings) for m in (model, reference)]
    return {
        "runtime": "onnxruntime",
        "runtime_version": ort.__version__,
        "threads": threads,
        **common.paired_ratio(*common.alternate(*runs, pairs=pairs, warmup=warmup)),
    }


def bench_bundle(
    bundle: Path, args: argparse.Namespace, pairs: int = 0, rounds: int = 1
) -> dict[str, Any]:
    """Benchmark every ONNX variant a bundle lists, ``rounds`` times (``common.in_rounds``),
    and ``pairs`` against each's reference."""
    manifest = common.check_manifest(bundle)
    input_size = common.model_input_size(manifest)
    runtime = ["--optimization", args.optimization, "--providers", ",".join(args.providers)]
    variants = common.variants_for(manifest, bundle, ".onnx", SCRIPT)

    def measure(variant: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        command = [
            *("--model", str(bundle / variant["file"])),
            *common.timing_flags(**common.timing(args), input_size=input_size),
            *runtime,
        ]
        return functools.partial(
            common.with_load_average,
            common.in_fresh_process,
            SCRIPT,
            command,
            f"Benchmarking {variant['file']}",
        )

    results = common.in_rounds([(v["file"], measure(v)) for v in variants], rounds)
    rows = [common.bundle_row(v, result) for v, result in zip(variants, results)]
    if pairs:
        # Pairs need a shared pool made before any session (``share_threads``): their own process.
        def pair(v: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
            document = common.in_fresh_process(
                SCRIPT,
                [
                    *("--model", str(bundle / v["file"]), "--reference", str(bundle / ref["file"])),
                    *("--pairs", str(pairs), "--warmup", str(args.warmup)),
                    *("--threads", str(args.threads), "--input-size", str(input_size), *runtime),
                ],
                f"Timing {v['file']} against {ref['file']}",
            )
            return {k: val for k, val in document.items() if not k.endswith("_file")}

        common.paired_rows(manifest, rows, pair)
    return common.bundle_document(
        manifest,
        rows,
        script="bench_onnxruntime.py",
        device=common.machine_info(args.device_name),
        environment={"onnxruntime": ort.__version__},
    )


def _load(path: Path) -> Any:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path, help="bundle folder holding manifest.json")
    source.add_argument("--model", type=Path, help="one ONNX file")
    parser.add_argument(
        "--json", type=Path, help="output file (default: BUNDLE/results.<device>.<target>.json)"
    )
    common.add_timing_arguments(parser)
    parser.add_argument("--optimization", choices=sorted(OPTIMIZATION_LEVELS), default="all")
    parser.add_argument(
        "--providers",
        type=lambda s: s.split(","),
        default=["CPUExecutionProvider"],
        help="execution providers, in order",
    )
    parser.add_argument("--device-name", type=common.a_name, help="name of this device in reports")
    common.add_pairing_arguments(parser, "ONNX file")
    common.add_rounds_argument(parser)
    args = parser.parse_args(argv)
    pairs = common.pairs_wanted(parser, args)
    rounds = common.rounds_wanted(parser, args)
    out = common.output_file(args)
    missing = [p for p in args.providers if p not in ort.get_available_providers()]
    if missing:
        common.fail(
            f"--providers: this ONNX Runtime ({ort.__version__}) has no {', '.join(missing)}; "
            f"it has {', '.join(ort.get_available_providers())}.",
            "Install the ONNX Runtime build for that device (e.g. onnxruntime-gpu), or pass "
            "--providers CPUExecutionProvider.",
        )
    for path in filter(None, (args.model, args.reference)):
        common.readable_model(path, _load, "ONNX Runtime")
    if args.bundle:
        document = bench_bundle(args.bundle, args, pairs, rounds)
    elif args.reference is not None:
        document = {
            "model_file": str(args.model),
            "reference_file": str(args.reference),
            **paired(
                args.model,
                args.reference,
                pairs=pairs,
                warmup=args.warmup,
                threads=args.threads,
                input_size=args.input_size,
                optimization=args.optimization,
                providers=args.providers,
            ),
        }
    else:
        document = measure(
            args.model,
            input_size=args.input_size,
            optimization=args.optimization,
            providers=args.providers,
            **common.timing(args),
        )
    common.emit(document, out)
    return 0


if __name__ == "__main__":
    common.run(main)
