"""Build TensorRT engines from a bundle's ONNX files, on the device that will run them.

Engines only load with the TensorRT version and GPU that built them, so they are built here.
Imports only tensorrt, numpy and the standard library (and common.py, trt_runtime.py beside it):

    python3 ondevice/build_engine.py --bundle .        # every variant in manifest.json -> engines/
    python3 ondevice/build_engine.py --onnx model.int8.onnx --precision int8 --engine int8.engine

int8 is built from the INT8 QDQ ONNX (explicit quantization) or, with --int8-mode implicit,
from the FP32 ONNX plus calibration.cache (TensorRT 8.x, and DLA, which needs it).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

try:
    from . import common, trt_runtime  # inside the edgeresnet package
except ImportError:  # standalone, copied into a bundle next to common.py and trt_runtime.py
    import common  # type: ignore[no-redef]
    import trt_runtime  # type: ignore[no-redef]

PRECISIONS = ("fp32", "fp16", "int8", "best")
ENGINES = "engines"


@dataclass(frozen=True)
class BuildOptions:
    precision: str
    int8_mode: str = "explicit"
    batch_sizes: tuple[int, ...] = (1, 8)
    opt_batch: int = 1
    input_size: int = 224
    workspace_mb: int = 1024
    dla_core: int = -1
    gpu_fallback: bool = False
    timing_cache: str | None = None
    calibration_cache: str | None = None


def build(trt: Any, onnx_path: Path, engine_path: Path, options: BuildOptions) -> dict[str, Any]:
    """Parse ``onnx_path``, build with ``options``, write the engine and its layer report."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        common.fail(
            f"TensorRT could not parse {onnx_path}: {errors}",
            "Check that the bundle's TensorRT version range covers this TensorRT "
            "(manifest.json), or rebuild the bundle for it.",
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer precisions
    profile = _shapes(builder, network, options)
    config.add_optimization_profile(profile)
    flags = _precision_flags(trt, config, options)
    if options.precision in ("int8", "best") and options.int8_mode == "implicit":
        config.int8_calibrator = _calibrator(trt, Path(options.calibration_cache or ""))
        config.set_calibration_profile(profile)
    if options.dla_core >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        if options.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache = _timing_cache(config, options.timing_cache)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        common.fail(
            f"TensorRT failed to build {engine_path.name} (its log is above).",
            "A larger --workspace-mb, or --precision fp16, often gets past the failing layer.",
        )
    build_s = time.perf_counter() - started
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    if cache is not None and options.timing_cache:
        Path(options.timing_cache).write_bytes(bytes(config.get_timing_cache().serialize()))
    layers = _layer_info(trt, logger, engine_path, options.dla_core)
    engine_path.with_suffix(".layers.json").write_text(json.dumps(layers, indent=1))
    return {
        "onnx": onnx_path.name,
        "onnx_sha256": common.sha256_file(onnx_path),
        "engine": engine_path.name,
        "bytes": engine_path.stat().st_size,
        "sha256": common.sha256_file(engine_path),
        "build_s": round(build_s, 1),
        "builder_flags": flags,
        "options": asdict(options),
        "precision_executed": trt_runtime.layer_precisions(layers),
    }


def _network_flags(trt: Any) -> int:
    # TensorRT 8.x needs explicit batch for ONNX; from 10 it is the only mode and the flag is gone.
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return 1 << int(flag) if flag is not None and _major(trt) < 10 else 0


def _major(trt: Any) -> int:
    return int(trt.__version__.split(".")[0])


def _shapes(builder: Any, network: Any, options: BuildOptions) -> Any:
    tensor = network.get_input(0)
    channels, size = tensor.shape[1], options.input_size
    low, high = min(options.batch_sizes), max(options.batch_sizes)
    opt = min(max(options.opt_batch, low), high)
    profile = builder.create_optimization_profile()
    profile.set_shape(
        tensor.name,
        (low, channels, size, size),
        (opt, channels, size, size),
        (high, channels, size, size),
    )
    return profile


def _precision_flags(trt: Any, config: Any, options: BuildOptions) -> list[str]:
    wanted = {
        "fp32": [],
        "fp16": ["FP16"],
        "int8": ["INT8"],
        "best": ["INT8", "FP16"],
    }[options.precision]
    if options.dla_core >= 0 and not wanted:
        common.fail("DLA runs only FP16 and INT8 engines.", "Pick --precision fp16, int8 or best.")
    if options.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # Ampere and later (Orin too) run FP32 layers as TF32 by default; "fp32" means FP32.
        config.clear_flag(trt.BuilderFlag.TF32)
    for name in wanted:
        config.set_flag(getattr(trt.BuilderFlag, name))
    return wanted


def _calibrator(trt: Any, cache_path: Path) -> Any:
    """An entropy calibrator that only hands TensorRT the bundle's cache (no data here)."""
    data = trt_runtime.calibration_cache(cache_path, trt.__version__)

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:
            return None  # every scale is in the cache: nothing to calibrate on the device

        def read_calibration_cache(self) -> bytes:
            return data

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return CacheCalibrator()


def _timing_cache(config: Any, path: str | None) -> Any:
    if not path:
        return None
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _layer_info(trt: Any, logger: Any, engine_path: Path, dla_core: int) -> dict[str, Any]:
    runtime = trt.Runtime(logger)
    if dla_core >= 0:
        runtime.DLA_core = dla_core
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    inspector = engine.create_engine_inspector()
    return json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def bundle_jobs(
    bundle: Path, manifest: dict[str, Any], settings: dict[str, Any], args: argparse.Namespace
) -> list[tuple]:
    """(variant, ONNX file, engine file, options) for every variant the manifest lists."""
    jobs = []
    for variant in manifest["variants"]:
        onnx = bundle / variant["file"]
        mode = args.int8_mode or settings.get("int8_mode", "explicit")
        cache = None
        if variant["precision"] == "int8" and mode == "implicit":
            onnx, cache = onnx.with_name("model.fp32.onnx"), onnx.with_name("calibration.cache")
        size = common.model_input_size(manifest)
        options = _options(args, settings, variant["precision"], size, cache)
        if options.timing_cache is None:  # one timing cache for all the bundle's engines
            timing = str(bundle / ENGINES / "timing.cache")
            options = replace(options, timing_cache=timing)
        jobs.append(
            (variant["variant"], onnx, bundle / ENGINES / f"{variant['variant']}.engine", options)
        )
        if args.best and variant["precision"] == "int8":
            name = f"{variant['variant']}-best"  # INT8 where quantized, FP16 elsewhere
            jobs.append(
                (
                    name,
                    onnx,
                    bundle / ENGINES / f"{name}.engine",
                    replace(options, precision="best"),
                )
            )
    return jobs


def _options(
    args: argparse.Namespace,
    settings: dict[str, Any],
    precision: str,
    input_size: int,
    cache: Path | None,
) -> BuildOptions:
    def pick(name: str, default: Any) -> Any:
        value = getattr(args, name)
        return default if value is None else value

    return BuildOptions(
        precision=precision,
        int8_mode="implicit" if cache else "explicit",
        batch_sizes=tuple(pick("batch_sizes", settings.get("batch_sizes", [1, 8]))),
        opt_batch=pick("opt_batch", 1),
        input_size=pick("input_size", input_size),
        workspace_mb=pick("workspace_mb", settings.get("workspace_mb", 1024)),
        dla_core=pick("dla_core", settings.get("dla_core", -1)),
        gpu_fallback=args.gpu_fallback or bool(settings.get("gpu_fallback", False)),
        timing_cache=str(args.timing_cache) if args.timing_cache else None,
        calibration_cache=str(cache) if cache else None,
    )


def parser() -> argparse.ArgumentParser:
    p = common.Parser(description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path, help="bundle folder holding manifest.json")
    source.add_argument("--onnx", type=Path, help="one ONNX file")
    p.add_argument("--engine", type=Path, help="engine file to write (with --onnx)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="with --onnx")
    p.add_argument("--int8-mode", choices=("explicit", "implicit"))
    p.add_argument("--best", action="store_true", help="with --bundle: also INT8+FP16 engines")
    p.add_argument("--calibration-cache", type=Path, help="for --int8-mode implicit with --onnx")
    p.add_argument("--batch-sizes", type=common.batch_sizes)
    p.add_argument(
        "--opt-batch", type=common.at_least(1), help="batch size TensorRT tunes for (default 1)"
    )
    p.add_argument("--input-size", type=common.at_least(32))
    p.add_argument("--workspace-mb", type=common.at_least(1))
    p.add_argument("--dla-core", type=int, help="build for this DLA core (Jetson Xavier/Orin)")
    p.add_argument("--gpu-fallback", action="store_true", help="let DLA hand layers to the GPU")
    p.add_argument("--timing-cache", type=Path, help="reuse and update this timing cache")
    p.add_argument("--tensorrt-versions", help="refuse TensorRT outside this range")
    p.add_argument("--ignore-version", action="store_true", help="warn instead of refusing")
    p.add_argument("--json", type=Path, help="write the build record here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.bundle:
        manifest = common.check_manifest(args.bundle)  # a damaged bundle is refused first
        settings = trt_runtime.load_settings(args.bundle)
        jobs = bundle_jobs(args.bundle, manifest, settings, args)
        spec = args.tensorrt_versions or settings.get("tensorrt_versions", "")
        out = args.json or args.bundle / ENGINES / "build.json"
    else:
        if not args.onnx.is_file():
            common.fail(f"{args.onnx} does not exist.", "Pass --onnx with an ONNX file.")
        if (args.int8_mode == "implicit") != (args.calibration_cache is not None):
            common.fail(
                "--int8-mode implicit and --calibration-cache go together.",
                "Pass both (INT8 from an FP32 ONNX and its scales), or neither (explicit "
                "INT8 from a QDQ ONNX).",
            )
        cache = args.calibration_cache
        options = _options(args, {}, args.precision, 224, cache)
        jobs = [
            (args.precision, args.onnx, args.engine or args.onnx.with_suffix(".engine"), options)
        ]
        spec, out = args.tensorrt_versions or "", args.json
    trt = trt_runtime.import_tensorrt()
    trt_runtime.check_version(trt.__version__, spec, ignore=args.ignore_version)
    records = []
    for variant, onnx, engine, options in jobs:
        print(f"building {engine.name} ({options.precision}) from {onnx.name} ...", flush=True)
        records.append({"variant": variant, **build(trt, onnx, engine, options)})
    document = {
        "tensorrt": trt.__version__,
        "tensorrt_versions": spec,
        "device": common.machine_info(),
        "jetson": trt_runtime.jetson_facts(),
        "engines": records,
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        common.write_json(out, document)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    common.run(main)
