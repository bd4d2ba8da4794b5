"""TensorRT (Jetson and discrete GPUs): TensorRT-ready ONNX plus an on-device engine bundle.

Engines are tied to one TensorRT version and GPU, so the artifacts are ONNX files: the FP32
model (fp32 and fp16 engines are built from it) and an INT8 QDQ model made to TensorRT's
rules, with a calibration cache for implicit INT8. Every INT8 model is validated here
(``tensorrt_rules``). Where ``tensorrt`` imports and a GPU is present, the build also builds
and times the engines through the same scripts the bundle carries; elsewhere evaluation runs
the ONNX files in ONNX Runtime on the CPU and says so.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import load_tensors_data

from edgeresnet.backends import (
    Artifact,
    CalibrationBatches,
    Scratch,
    ranges_file,
    tensorrt_bundle,
    tensorrt_cache,
    tensorrt_rules,
)
from edgeresnet.backends.onnxruntime import OnnxRuntimeSession
from edgeresnet.backends.script import run_ondevice, timing_args
from edgeresnet.config import TargetProfile, check_method
from edgeresnet.errors import BackendUnavailableError, ConfigError
from edgeresnet.ondevice import bench_tensorrt, build_engine, common, evaluate_tensorrt, trt_runtime
from edgeresnet.quantize import get_quantizer

FP32_NAME = "model.fp32.onnx"
INT8_NAME = "model.int8.onnx"
VALIDATION_IMAGES = 64
_NO_TENSORRT = (
    "TensorRT is not installed here, so no engine was built or timed: run "
    "ondevice/build_engine.py then ondevice/bench_tensorrt.py on the device "
    "(see ondevice/README.md in the bundle)."
)


class TensorRTSession:
    """A TensorRT engine run in this process (only where TensorRT and a GPU exist).

    Batches larger than the engine's profile run in slices of its largest batch.
    """

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self._most = runner.batch_range[1]

    @classmethod
    def open(cls, engine: Path, dla_core: int) -> TensorRTSession:
        try:
            trt = trt_runtime.import_tensorrt()
            cuda = trt_runtime.Cuda()
            return cls(trt_runtime.EngineRunner(trt, engine, cuda, dla_core=dla_core))
        except common.ScriptError as exc:
            raise BackendUnavailableError(exc.message, hint=exc.hint) from None

    def run(self, batch: np.ndarray) -> np.ndarray:
        step = self._most
        try:
            return np.concatenate(
                [self._runner.run(batch[i : i + step]) for i in range(0, len(batch), step)]
            )
        except common.ScriptError as exc:
            raise BackendUnavailableError(exc.message, hint=exc.hint) from None


class TensorRTBackend:
    name = "tensorrt"

    def __init__(
        self,
        *,
        device: str = "GPU",
        tensorrt_versions: str = ">=10.0,<11",
        jetpack: str = "",
        dla_core: int = -1,
        gpu_fallback: bool = False,
        workspace_mb: int = 1024,
        int8_mode: str = "explicit",
        qdq_weights: str = "int8",
        min_sqnr_db: float = 20.0,
    ) -> None:
        if device not in ("GPU", "DLA"):
            raise ConfigError(
                f"TensorRT device '{device}' is not supported.", hint="Use GPU or DLA."
            )
        if (device == "DLA") != (dla_core >= 0):
            raise ConfigError(
                f"device = '{device}' and dla_core = {dla_core} disagree.",
                hint='Use device = "DLA" with dla_core = 0 or 1, or device = "GPU" with -1.',
            )
        if int8_mode not in ("explicit", "implicit"):
            raise ConfigError(
                f"int8_mode '{int8_mode}' is unknown.", hint="Use 'explicit' or 'implicit'."
            )
        try:
            lowest = trt_runtime.lowest_version(tensorrt_versions)
        except common.ScriptError:
            lowest = None
        if lowest is None:
            raise ConfigError(
                f"tensorrt_versions '{tensorrt_versions}' is not a version range with a lowest "
                "version.",
                hint="Write it as comparisons joined by commas, e.g. '>=10.0,<11'.",
            )
        self.runtime = {
            "device": device,
            "tensorrt_versions": tensorrt_versions,
            "jetpack": jetpack,
            "dla_core": dla_core,
            "gpu_fallback": gpu_fallback,
            "workspace_mb": workspace_mb,
            "int8_mode": int8_mode,
            "qdq_weights": qdq_weights,
        }
        self.min_sqnr_db = min_sqnr_db
        self._cache_version = lowest  # the calibration cache's header names it
        self._work = Scratch("edgeresnet-tensorrt-")
        self._engines: dict[tuple[Path, str, tuple[int, ...]], Path] = {}

    def version(self) -> str:
        if importlib.util.find_spec("tensorrt") is None:
            return "not installed here"
        try:
            return str(trt_runtime.import_tensorrt().__version__)
        except common.ScriptError:  # installed, but it does not import (a missing libnvinfer)
            return "installed but not importable here"

    def compile(
        self,
        fp32_onnx: Path,
        precision: str,
        out_dir: Path,
        *,
        calibration: CalibrationBatches,
        profile: TargetProfile,
        exclude: tuple[str, ...] = (),
    ) -> Artifact:
        """``exclude`` names ONNX nodes left without Q/DQ, so TensorRT keeps them in float."""
        fp32 = out_dir / FP32_NAME
        if not fp32.exists():
            shutil.copyfile(fp32_onnx, fp32)
        if precision in ("fp32", "fp16"):
            artifact = Artifact(
                precision,
                precision,
                fp32,
                {
                    "from": "exported FP32 ONNX",
                    "engine_precision": f"{precision}, chosen when the engine is built on device",
                    # No FP16 file exists here: its size is the engine's, measured on the device.
                    **({"built_on_device": True} if precision == "fp16" else {}),
                },
            )
        elif precision == "int8":
            artifact = self._int8(fp32, out_dir, calibration, profile, exclude)
        else:
            raise ConfigError(
                f"The tensorrt backend builds fp32, fp16 and int8, not {precision}.",
                hint=f"Edit precisions in {profile.source}.",
            )
        artifact.build["evaluated_in"] = self._evaluated_in(precision)
        return artifact

    def _evaluated_in(self, precision: str) -> str:
        if _tensorrt_ready():
            return f"TensorRT {self.version()} engine"
        if precision == "fp16":
            return "not here: FP16 exists only inside a TensorRT engine (TensorRT absent)"
        disabled = tensorrt_rules.cpu_optimization(precision) == "disable"
        how = f", {tensorrt_rules.CPU_INT8}" if disabled else ""
        return f"onnxruntime {ort.__version__} CPU{how} (TensorRT absent)"

    def _int8(
        self,
        fp32: Path,
        out_dir: Path,
        calibration: CalibrationBatches,
        profile: TargetProfile,
        exclude: tuple[str, ...],
    ) -> Artifact:
        check_method(profile, self.name)  # another backend's profile, or one made in code
        target = out_dir / INT8_NAME
        ranges = ranges_file(self._work.path, fp32, profile.quantization)
        quantize = get_quantizer("trt-qdq")
        # Batch 1: ORT calibrates without graph optimizations (see onnxruntime.py).
        record = quantize(  # type: ignore[call-arg]
            fp32,
            target,
            calibration(1),
            profile.quantization,
            weights=self.runtime["qdq_weights"],
            ranges_out=ranges,
            exclude=exclude,
        )
        tensors = {name: td.range_value for name, td in load_tensors_data(ranges).items()}
        record["calibration_cache"] = tensorrt_cache.write(
            out_dir / tensorrt_cache.CACHE_NAME,
            fp32,
            _amax(tensors),
            version=self._cache_version,
            float_nodes=exclude,
        )
        record["validator"] = tensorrt_rules.validate(
            target,
            fp32,
            _first(calibration(8), VALIDATION_IMAGES),
            # With layers kept in float the accuracy budget, measured on evaluation images,
            # holds the artifact instead of the SQNR floor.
            min_sqnr_db=float("-inf") if exclude else self.min_sqnr_db,
            float_nodes=exclude,
        )
        return Artifact("int8", "int8", target, record)

    def load(self, artifact: Artifact, *, threads: int) -> Any:
        artifact.build["evaluated_in"] = self._evaluated_in(artifact.precision)
        if _tensorrt_ready():
            return TensorRTSession.open(self._engine(artifact), self.runtime["dla_core"])
        if artifact.precision == "fp16":
            raise BackendUnavailableError(
                "FP16 exists only inside a TensorRT engine, and TensorRT is not installed here.",
                hint="Run ondevice/evaluate_tensorrt.py on the device for its accuracy.",
            )
        return OnnxRuntimeSession(
            artifact.file,
            threads=threads,
            optimization=tensorrt_rules.cpu_optimization(artifact.precision),
            providers=["CPUExecutionProvider"],
        )

    def benchmark(
        self, artifact: Artifact, *, threads: int, input_size: int, profile: TargetProfile
    ) -> dict[str, Any]:
        return run_ondevice(bench_tensorrt.__name__, self._args(artifact, input_size, profile))

    def paired(
        self,
        artifact: Artifact,
        reference: Artifact,
        *,
        pairs: int,
        threads: int,
        input_size: int,
        profile: TargetProfile,
    ) -> dict[str, Any]:
        args = self._args(artifact, input_size, profile)
        engine = self._engine(reference, profile)
        args += ["--reference", str(engine), "--pairs", str(pairs)]
        return run_ondevice(bench_tensorrt.__name__, args)

    def _args(self, artifact: Artifact, input_size: int, profile: TargetProfile) -> list[str]:
        if not _tensorrt_ready():
            raise BackendUnavailableError(_NO_TENSORRT)
        return [
            "--engine", str(self._engine(artifact, profile)),
            *timing_args(profile.benchmark, input_size=input_size, threads=None),
            "--dla-core", str(self.runtime["dla_core"]),
        ]  # fmt: skip

    def _engine(self, artifact: Artifact, profile: TargetProfile | None = None) -> Path:
        """Build (once) the engine of ``artifact`` with the bundle's own build_engine.py.

        Without a profile (evaluation), the default batch range; a benchmark gets an engine
        whose range covers its profile's batch sizes.
        """
        settings = tensorrt_bundle.settings(self.runtime, profile and _summary(profile))
        key = (artifact.file, artifact.precision, tuple(settings["batch_sizes"]))
        if key not in self._engines:
            engine = self._work.path / f"{len(self._engines)}.{artifact.precision}.engine"
            source, extra = artifact.file, []
            if artifact.precision == "int8" and self.runtime["int8_mode"] == "implicit":
                source = artifact.file.with_name(FP32_NAME)
                cache = artifact.file.with_name(tensorrt_cache.CACHE_NAME)
                extra = ["--int8-mode", "implicit", "--calibration-cache", str(cache)]
            if self.runtime["dla_core"] >= 0:
                extra += ["--dla-core", str(self.runtime["dla_core"])]
                extra += ["--gpu-fallback"] if self.runtime["gpu_fallback"] else []
            run_ondevice(
                build_engine.__name__,
                [
                    "--onnx", str(source),
                    "--engine", str(engine),
                    "--precision", artifact.precision,
                    "--batch-sizes", ",".join(map(str, settings["batch_sizes"])),
                    "--input-size", str(_input_size(source)),
                    "--workspace-mb", str(self.runtime["workspace_mb"]),
                    "--tensorrt-versions", self.runtime["tensorrt_versions"],
                    *extra,
                ],
            )  # fmt: skip
            self._engines[key] = engine
        return self._engines[key]

    def ondevice_scripts(self, profile: TargetProfile) -> list[Path]:
        here = Path(common.__file__).parent
        scripts = [
            Path(build_engine.__file__),
            Path(bench_tensorrt.__file__),
            Path(evaluate_tensorrt.__file__),
            Path(trt_runtime.__file__),
            here / "common.py",
        ]
        settings = tensorrt_bundle.settings(self.runtime, _summary(profile))
        return scripts + tensorrt_bundle.write(self._work.path, settings)


def _tensorrt_ready() -> bool:
    """TensorRT importable and an NVIDIA driver present (without importing TensorRT here)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _input_size(onnx_path: Path) -> int:
    dims = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type
    return int(dims.shape.dim[-1].dim_value)


def _amax(ranges: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {name: (float(np.min(lo)), float(np.max(hi))) for name, (lo, hi) in ranges.items()}


def _first(batches: Iterator[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """The first ``count`` images of a fresh calibration pass, in batches."""
    taken = 0
    for batch in batches:
        if taken >= count:
            break
        yield batch[: count - taken]
        taken += len(batch)


def _summary(profile: TargetProfile) -> dict[str, Any]:
    return {
        "target": profile.name,
        "precisions": list(profile.precisions),
        "batch_sizes": list(profile.benchmark.batch_sizes),
    }
