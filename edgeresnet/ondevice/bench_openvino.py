"""Benchmark OpenVINO IR models on the machine this runs on, with the precision pinned.

Imports only openvino, numpy and the standard library, so it runs from a copied bundle:

    python bench_openvino.py --bundle .              # every IR in manifest.json
    python bench_openvino.py --model model.int8.xml --device CPU --precision-hint f32
    python bench_openvino.py --model p30/model.int8.xml --reference model.int8.xml

Latency is measured with PERFORMANCE_HINT=LATENCY (one request at a time), throughput with
PERFORMANCE_HINT=THROUGHPUT (as many streams and requests as the device asks for). Both record
the streams, threads and the precision the device actually executed. With --reference the two
models are timed at batch 1 in alternating pairs instead, and the ratio of their p50s comes with
a 95 % interval; ``--bundle . --pairs 500`` adds that to every variant whose manifest names a
reference. ``--bundle . --rounds 3`` times every IR three times, keeping each one's fastest run.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from . import common  # inside the edgeresnet package
except ImportError:  # standalone, copied into a bundle next to common.py
    import common  # type: ignore[no-redef]

# isort: split
import numpy as np  # noqa: E402 (common says how to install it where it is missing)

ov = common.require("openvino", pip="openvino")

# The inference precision each variant runs at. OpenVINO's CPU plugin runs an FP32 IR in bf16
# on CPUs with avx512_bf16/AMX unless told f32 (ResNet-50 FP32 IR on 2 Zen 5 cores: 9.8 ms by
# default, 18.6 ms pinned), so "fp32" is pinned and "bf16" is its own row. INT8
# pins the few layers NNCF leaves in float to f32.
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
UNPINNED = "default"
SCRIPT = Path(__file__).name
# Layers that hold a model's arithmetic; their runtime precision is what "executed" means.
COMPUTE_LAYERS = {
    "Convolution",
    "GroupConvolution",
    "Deconvolution",
    "FullyConnected",
    "MatMul",
    "Gemm",
}
_PRECISION_NAMES = {"u8": "int8", "i8": "int8", "bf16": "bf16", "f16": "fp16", "f32": "fp32"}
_LABEL_ORDER = ("int8", "fp16", "bf16", "fp32")
_RECORDED = (
    "PERFORMANCE_HINT",
    "INFERENCE_PRECISION_HINT",
    "NUM_STREAMS",
    "INFERENCE_NUM_THREADS",
    "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
    "EXECUTION_DEVICES",
    "ENABLE_CPU_PINNING",
)


def runtime_version() -> str:
    """The release, e.g. 2026.4.1 (``ov.get_version()`` adds the build hash)."""
    return ov.get_version().split("-")[0]


def device_present(device: str, available: list[str]) -> bool:
    """Whether ``device`` (``GPU``, ``GPU.1``, ``HETERO:NPU,CPU``, ``AUTO``) can run here."""
    kind, _, rest = device.partition(":")
    names = rest.split(",") if rest else [] if kind in ("AUTO", "MULTI", "HETERO") else [kind]
    return bool(available) and all(
        name in available or any(a.split(".")[0] == name for a in available)
        for name in names
        if name
    )


def compile_config(
    core: ov.Core, device: str, *, mode: str, threads: int, hint: str
) -> tuple[dict[str, Any], list[str]]:
    """Compile properties for ``device``; the second value lists requests the device ignores."""
    supported = _supported(core, device)
    wanted: dict[str, Any] = {"PERFORMANCE_HINT": mode}
    if hint != UNPINNED:
        wanted["INFERENCE_PRECISION_HINT"] = hint
    if threads:
        wanted["INFERENCE_NUM_THREADS"] = threads
    if supported is None:
        return wanted, []
    config = {k: v for k, v in wanted.items() if k in supported}
    return config, sorted(set(wanted) - set(config))


def compile_at(
    core: ov.Core, model: Path, device: str, shape: tuple[int, ...], config: dict[str, Any]
) -> ov.CompiledModel:
    """Read the IR, fix its input shape (NPUs need static shapes) and compile it."""
    network = core.read_model(str(model))
    network.reshape(list(shape))
    return core.compile_model(network, device, config)


def properties(compiled: ov.CompiledModel) -> dict[str, Any]:
    """What the device settled on: streams, threads, hint, requests."""
    supported = set(compiled.get_property("SUPPORTED_PROPERTIES"))
    return {k: _plain(compiled.get_property(k)) for k in _RECORDED if k in supported}


def executed_precision(compiled: ov.CompiledModel) -> dict[str, Any]:
    """Which precision the compute layers really ran at, from the compiled runtime graph.

    A layer's ``runtimePrecision`` follows its weights: FP16 weights read "f16" on a CPU that
    settled on f32 inference, which decompresses them and computes in f32 (``brgconv_avx2_f32``).
    Where the device settled on f32, a float layer counts as fp32."""
    settled = properties(compiled).get("INFERENCE_PRECISION_HINT")
    counts: Counter[str] = Counter()
    layers: dict[str, Counter[str]] = defaultdict(Counter)
    kernels: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = _rt(info, "layerType")
        if layer not in COMPUTE_LAYERS:
            continue
        raw = _rt(info, "runtimePrecision").lower()
        precision = _PRECISION_NAMES.get(raw, raw or "unknown")
        if settled == "f32" and precision in ("fp16", "bf16"):
            precision = "fp32"
        counts[precision] += 1
        layers[layer][precision] += 1
        if _rt(info, "primitiveType"):
            kernels[_rt(info, "primitiveType")] += 1
    label = "+".join(p for p in _LABEL_ORDER if p in counts)
    return {
        "label": label or "unknown",
        "counts": dict(counts),
        "layers": {k: dict(v) for k, v in sorted(layers.items())},
        "kernels": dict(sorted(kernels.items())),
    }


def latency(
    compiled: ov.CompiledModel,
    x: np.ndarray,
    *,
    warmup: int,
    min_iterations: int,
    min_seconds: float,
) -> dict[str, Any]:
    """Synchronous requests, one at a time, on an input set once (as benchmark_app does)."""
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(x))
    batch = int(x.shape[0])
    times = common.time_loop(
        request.infer,
        warmup=common.per_batch(warmup, batch, floor=2),
        min_iterations=common.per_batch(min_iterations, batch, floor=5),
        min_seconds=min_seconds,
    )
    stats = common.latency_stats(times)
    stats.update(batch=batch, images_per_s=round(batch * 1000.0 / stats["p50_ms"], 2))
    return stats


def throughput(
    compiled: ov.CompiledModel,
    x: np.ndarray,
    *,
    warmup: int,
    min_iterations: int,
    min_seconds: float,
) -> dict[str, Any]:
    """Images per second with the device's optimal number of requests in flight.

    Also the latency of each request, which waits behind the others in this mode. The requests
    are turned round in order without Python callbacks: a callback needs the GIL, and freeing a
    compiled model whose stream thread waits for it deadlocked (OpenVINO 2026.4, AsyncInferQueue).
    """
    count = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    requests = [compiled.create_infer_request() for _ in range(count)]
    tensor = ov.Tensor(x)
    for request in requests:
        request.set_input_tensor(tensor)
    batch = int(x.shape[0])
    for _ in range(common.per_batch(warmup, batch * count, floor=1)):
        _round(requests)
    min_iterations = common.per_batch(min_iterations, batch, floor=5)
    times: list[float] = []
    start = time.perf_counter()
    for request in requests:
        request.start_async()
    turn = 0
    while len(times) < min_iterations or time.perf_counter() - start < min_seconds:
        request = requests[turn % count]
        request.wait()
        times.append(request.latency / 1000.0)
        request.start_async()
        turn += 1
    for request in requests:  # the requests still in flight count too
        request.wait()
        times.append(request.latency / 1000.0)
    seconds = time.perf_counter() - start
    return {
        **common.latency_stats(times),
        "batch": batch,
        "images_per_s": round(batch * len(times) / seconds, 2),
        "mode": "THROUGHPUT",
        "infer_requests": count,
        "seconds": round(seconds, 3),
    }


def _round(requests: list[ov.InferRequest]) -> None:
    for request in requests:
        request.start_async()
    for request in requests:
        request.wait()


def measure(
    model: Path,
    *,
    device: str = "CPU",
    hint: str = "f32",
    threads: int,
    batch_sizes: list[int],
    input_size: int,
    warmup: int = 10,
    min_iterations: int = 50,
    min_seconds: float = 3.0,
) -> dict[str, Any]:
    """Load time, latency per batch size, throughput, peak memory and executed precision.

    The first batch size is timed with PERFORMANCE_HINT=LATENCY (the latency figure), the
    largest with THROUGHPUT (the throughput figure), any between them with LATENCY.
    """
    core = ov.Core()
    if not device_present(device, core.available_devices):
        raise RuntimeError(
            f"OpenVINO device {device} is not present here "
            f"(available: {', '.join(core.available_devices) or 'none'})."
        )
    config, ignored = compile_config(core, device, mode="LATENCY", threads=threads, hint=hint)
    timing = {"warmup": warmup, "min_iterations": min_iterations, "min_seconds": min_seconds}
    rng = np.random.default_rng(0)
    rss_before = common.rss_mb()
    first, *rest = batch_sizes
    t0 = time.perf_counter()
    compiled = compile_at(core, model, device, _shape(first, input_size), config)
    load_s = time.perf_counter() - t0
    settled = properties(compiled)
    precision = {
        **executed_precision(compiled),
        "hint": hint,
        "inference_precision": settled.get("INFERENCE_PRECISION_HINT"),
    }
    per_batch = []
    for batch in [first, *rest[:-1]]:
        if batch != first:
            compiled = compile_at(core, model, device, _shape(batch, input_size), config)
        x = rng.standard_normal(_shape(batch, input_size), dtype=np.float32)
        per_batch.append({**latency(compiled, x, **timing), "mode": "LATENCY"})
    del compiled
    big = max(batch_sizes)
    tput_config, _ = compile_config(core, device, mode="THROUGHPUT", threads=threads, hint=hint)
    tput_model = compile_at(core, model, device, _shape(big, input_size), tput_config)
    x = rng.standard_normal(_shape(big, input_size), dtype=np.float32)
    tput = throughput(tput_model, x, **timing)
    tput_settled = properties(tput_model)
    tput["streams"] = tput_settled.get("NUM_STREAMS")
    if rest:
        per_batch.append(tput)
    return {
        "runtime": "openvino",
        "runtime_version": runtime_version(),
        "runtime_build": ov.get_version(),
        "device": device,
        "device_name": _device_name(core, device),
        "precision_hint": hint,
        "ignored_settings": ignored,
        # None where the device takes no thread count (GPU, NPU): never a number it ignored.
        "threads": settled.get(
            "INFERENCE_NUM_THREADS", None if "INFERENCE_NUM_THREADS" in ignored else threads
        ),
        "streams": settled.get("NUM_STREAMS"),
        "compiled": {"latency": settled, "throughput": tput_settled},
        "load_s": round(load_s, 4),
        "rss_before_load_mb": rss_before,
        "peak_rss_mb": common.peak_rss_mb(),
        "latency": per_batch[0],
        "throughput": tput,
        "per_batch": per_batch,
        "precision_executed": precision,
    }


def batch1(
    core: ov.Core, model: Path, *, device: str, hint: str, threads: int, input_size: int
) -> Callable[[], Any]:
    """One synchronous batch-1 request of ``model``, compiled for latency, ready to call."""
    config, _ = compile_config(core, device, mode="LATENCY", threads=threads, hint=hint)
    compiled = compile_at(core, model, device, _shape(1, input_size), config)
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal(_shape(1, input_size), dtype=np.float32)
    request.set_input_tensor(ov.Tensor(x))
    return request.infer


def paired(
    model: Path,
    reference: Path,
    *,
    pairs: int,
    warmup: int,
    device: str = "CPU",
    hints: tuple[str, str] = ("f32", "f32"),
    threads: int,
    input_size: int,
) -> dict[str, Any]:
    """``model`` against ``reference`` at batch 1, call for call (``common.alternate``).

    ``hints`` pins the inference precision of each, as ``measure`` does.
    """
    core = ov.Core()
    runs = [
        batch1(core, m, device=device, hint=h, threads=threads, input_size=input_size)
        for m, h in zip((model, reference), hints)
    ]
    return {
        "runtime": "openvino",
        "runtime_version": runtime_version(),
        "device": device,
        "threads": threads,
        "precision_hints": list(hints),
        **common.paired_ratio(*common.alternate(*runs, pairs=pairs, warmup=warmup)),
    }


def bench_bundle(
    bundle: Path, args: argparse.Namespace, pairs: int = 0, rounds: int = 1
) -> dict[str, Any]:
    """Benchmark every IR variant a bundle lists, ``rounds`` times (``common.in_rounds``), and
    ``pairs`` against each's reference."""
    manifest = common.check_manifest(bundle)
    device = args.device or manifest["target"].get("device", "CPU")
    available = ov.Core().available_devices
    if not device_present(device, available):
        common.fail(
            f"This bundle targets OpenVINO device {device}, which is not present here "
            f"(available: {', '.join(available) or 'none'}).",
            "Pass --device to pick one of the available devices.",
        )

    def hint_of(variant: dict[str, Any]) -> str:
        return str(args.precision_hint or HINTS.get(variant["precision"], UNPINNED))

    variants = common.variants_for(manifest, bundle, ".xml", SCRIPT)
    input_size = common.model_input_size(manifest)
    timing = common.timing_flags(**common.timing(args), input_size=input_size)

    def job(variant: dict[str, Any]) -> tuple[str, Callable[[], dict[str, Any]]]:
        hint = hint_of(variant)
        command = [
            *("--model", str(bundle / variant["file"])),
            *("--device", device, "--precision-hint", hint, *timing),
        ]
        measure = functools.partial(
            common.with_load_average,
            common.in_fresh_process,
            SCRIPT,
            command,
            f"Benchmarking {variant['file']}",
        )
        return f"{variant['variant']} ({variant['file']}, {hint})", measure

    results = common.in_rounds([job(v) for v in variants], rounds)
    rows = [common.bundle_row(v, result) for v, result in zip(variants, results)]
    if pairs:

        def pair(v: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
            return paired(
                bundle / v["file"],
                bundle / ref["file"],
                pairs=pairs,
                warmup=args.warmup,
                device=device,
                hints=(hint_of(v), hint_of(ref)),
                threads=args.threads,
                input_size=input_size,
            )

        common.paired_rows(manifest, rows, pair)
    return common.bundle_document(
        manifest,
        rows,
        script="bench_openvino.py",
        device=common.machine_info(args.device_name),
        environment={"openvino": runtime_version()},
        target={**manifest["target"], "device": device},
    )


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path, help="bundle folder holding manifest.json")
    source.add_argument("--model", type=Path, help="one IR .xml file (its .bin next to it)")
    parser.add_argument(
        "--json", type=Path, help="output file (default: BUNDLE/results.<device>.<target>.json)"
    )
    parser.add_argument(
        "--device", type=common.a_name, help="OpenVINO device (default: the bundle's, else CPU)"
    )
    parser.add_argument(
        "--precision-hint",
        choices=[*sorted(set(HINTS.values())), UNPINNED],
        help="INFERENCE_PRECISION_HINT (default: per variant in a bundle, f32 for --model; "
        f"'{UNPINNED}' leaves the device's own choice, e.g. bf16 on CPUs that have it)",
    )
    parser.add_argument(
        "--reference-precision-hint",
        choices=[*sorted(set(HINTS.values())), UNPINNED],
        help="INFERENCE_PRECISION_HINT of --reference (default: as --precision-hint)",
    )
    common.add_timing_arguments(parser)
    parser.add_argument("--device-name", type=common.a_name, help="name of this device in reports")
    common.add_pairing_arguments(parser, "IR .xml file")
    common.add_rounds_argument(parser)
    args = parser.parse_args(argv)
    pairs = common.pairs_wanted(parser, args)
    if args.reference_precision_hint and args.reference is None:
        parser.error("--reference-precision-hint goes with --reference, and none was given")
    rounds = common.rounds_wanted(parser, args)
    out = common.output_file(args)
    available = ov.Core().available_devices
    device = args.device or ("CPU" if args.model else None)
    if device and not device_present(device, available):
        parser.error(f"device {device} is not present here (available: {', '.join(available)})")
    hint = args.precision_hint or "f32"
    for path in filter(None, (args.model, args.reference)):
        common.readable_model(path, lambda p: ov.Core().read_model(str(p)), "OpenVINO")
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
                device=device or "CPU",
                hints=(hint, args.reference_precision_hint or hint),
                threads=args.threads,
                input_size=args.input_size,
            ),
        }
    else:
        document = measure(
            args.model,
            device=device or "CPU",
            hint=hint,
            input_size=args.input_size,
            **common.timing(args),
        )
    common.emit(document, out)
    return 0


def _shape(batch: int, input_size: int) -> tuple[int, int, int, int]:
    return (batch, 3, input_size, input_size)


def _supported(core: ov.Core, device: str) -> set[str] | None:
    try:
        return set(core.get_property(device, "SUPPORTED_PROPERTIES"))
    except RuntimeError:  # virtual devices (AUTO, HETERO) answer only once compiled
        return None


def _device_name(core: ov.Core, device: str) -> str:
    try:
        return str(core.get_property(device, "FULL_DEVICE_NAME"))
    except RuntimeError:
        return device


def _rt(info: Any, key: str) -> str:
    return str(info[key].value) if key in info else ""


def _plain(value: Any) -> Any:
    """Property values as JSON: enums and OpenVINO types become strings."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, ov.Type):
        return value.get_type_name()
    name = getattr(value, "name", None)
    return str(name if isinstance(name, str) else value)


if __name__ == "__main__":
    common.run(main)
