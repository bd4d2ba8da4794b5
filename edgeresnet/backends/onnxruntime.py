"""ONNX Runtime: evaluation sessions in-process, benchmarks through the on-device script."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeresnet.backends import Artifact, CalibrationBatches, Scratch, ranges_file
from edgeresnet.backends.script import run_ondevice, timing_args
from edgeresnet.config import TargetProfile, check_method
from edgeresnet.errors import BackendUnavailableError, ConfigError
from edgeresnet.ondevice import bench_onnxruntime as script
from edgeresnet.quantize import get_quantizer

_DEVICE_PROVIDERS = {
    "CPU": ["CPUExecutionProvider"],
    "CUDA": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeSession:
    def __init__(self, artifact: Path, *, threads: int, optimization: str, providers: list[str]):
        self._session = ort.InferenceSession(
            str(artifact), script.session_options(threads, optimization), providers=providers
        )
        self._input = self._session.get_inputs()[0].name
        self._file = artifact
        self._settings = (threads, optimization, tuple(providers))

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]

    def runs_like(self, other: object) -> bool:
        """Whether ``other`` runs a file of the same bytes with the same settings, and so
        gives the same logits: ONNX Runtime's CPU kernels are deterministic for one thread
        count, as the FP32 rows of ONNX builds (infinite SQNR to their reference) show."""
        return (
            isinstance(other, OnnxRuntimeSession)
            and other._settings == self._settings
            and filecmp.cmp(self._file, other._file, shallow=False)
        )


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, *, device: str = "CPU", graph_optimization: str = "all") -> None:
        if device not in _DEVICE_PROVIDERS:
            raise ConfigError(
                f"ONNX Runtime target device '{device}' is not supported.",
                hint=f"Use one of: {', '.join(_DEVICE_PROVIDERS)}.",
            )
        if graph_optimization not in script.OPTIMIZATION_LEVELS:
            raise ConfigError(
                f"graph_optimization '{graph_optimization}' is unknown.",
                hint=f"Use one of: {', '.join(script.OPTIMIZATION_LEVELS)}.",
            )
        self.device = device
        self.providers = _DEVICE_PROVIDERS[device]
        self.optimization = graph_optimization
        self._work = Scratch("edgeresnet-ort-")

    def version(self) -> str:
        return ort.__version__

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
        target = out_dir / f"model.{precision}.onnx"
        if precision == "fp32":
            shutil.copyfile(fp32_onnx, target)
            return Artifact("fp32", "fp32", target, {"from": "exported FP32 ONNX"})
        if precision == "int8":
            check_method(profile, self.name)  # another backend's profile, or one made in code
            quantize = get_quantizer(profile.quantization.method)
            # One image per batch: ORT calibrates without graph optimizations, and at batch 16
            # that session alone held 4 GB for ResNet-50; at batch 1 it holds 0.9 GB, as fast.
            record = quantize(
                fp32_onnx,
                target,
                calibration(1),
                profile.quantization,
                exclude=exclude,
                ranges=ranges_file(self._work.path, fp32_onnx, profile.quantization),
            )
            return Artifact("int8", "int8", target, record)
        raise ConfigError(
            f"The onnxruntime backend builds fp32 and int8, not {precision}.",
            hint=f"Edit precisions in {profile.source}.",
        )

    def _check_device(self) -> None:
        missing = set(self.providers) - set(ort.get_available_providers())
        if missing:
            raise BackendUnavailableError(
                f"ONNX Runtime here lacks {', '.join(sorted(missing))} for device {self.device}.",
                hint="Install the onnxruntime build for that device (e.g. onnxruntime-gpu), "
                "or run the bundle's ondevice/bench_onnxruntime.py on the device.",
            )

    def load(self, artifact: Artifact, *, threads: int) -> OnnxRuntimeSession:
        self._check_device()
        return OnnxRuntimeSession(
            artifact.file,
            threads=threads,
            optimization=self.optimization,
            providers=self.providers,
        )

    def benchmark(
        self, artifact: Artifact, *, threads: int, input_size: int, profile: TargetProfile
    ) -> dict[str, Any]:
        return run_ondevice(script.__name__, self._args(artifact, threads, input_size, profile))

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
        args = self._args(artifact, threads, input_size, profile)
        args += ["--reference", str(reference.file), "--pairs", str(pairs)]
        return run_ondevice(script.__name__, args)

    def _args(
        self, artifact: Artifact, threads: int, input_size: int, profile: TargetProfile
    ) -> list[str]:
        self._check_device()
        return [
            *("--model", str(artifact.file)),
            *timing_args(profile.benchmark, input_size=input_size, threads=threads),
            *("--optimization", self.optimization),
            *("--providers", ",".join(self.providers)),
        ]

    def ondevice_scripts(self, profile: TargetProfile) -> list[Path]:
        return [Path(script.__file__), Path(script.__file__).with_name("common.py")]
