"""ONNX Runtime: evaluation sessions in-process, benchmarks through the on-device script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeresnet.bench import run_ondevice
from edgeresnet.config import BenchmarkOptions
from edgeresnet.errors import BackendUnavailableError, ConfigError
from edgeresnet.ondevice import bench_onnxruntime as script

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

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, *, device: str = "CPU", graph_optimization: str = "all") -> None:
        if device not in _DEVICE_PROVIDERS:
            raise ConfigError(
                f"ONNX Runtime target device '{device}' is not supported.",
                hint=f"Use one of: {', '.join(_DEVICE_PROVIDERS)}.",
            )
        missing = set(_DEVICE_PROVIDERS[device]) - set(ort.get_available_providers())
        if missing:
            raise BackendUnavailableError(
                f"ONNX Runtime here lacks {', '.join(sorted(missing))} for device {device}.",
                hint="Install the onnxruntime build for that device (e.g. onnxruntime-gpu).",
            )
        self.device = device
        self.providers = _DEVICE_PROVIDERS[device]
        self.optimization = graph_optimization

    def version(self) -> str:
        return ort.__version__

    def load(self, artifact: Path, *, threads: int) -> OnnxRuntimeSession:
        return OnnxRuntimeSession(
            artifact, threads=threads, optimization=self.optimization, providers=self.providers
        )

    def benchmark(
        self, artifact: Path, *, threads: int, input_size: int, options: BenchmarkOptions
    ) -> dict[str, Any]:
        args = [
            "--model",
            str(artifact),
            "--threads",
            str(threads),
            "--batch-sizes",
            ",".join(map(str, options.batch_sizes)),
            "--input-size",
            str(input_size),
            "--warmup",
            str(options.warmup),
            "--min-iterations",
            str(options.min_iterations),
            "--min-seconds",
            str(options.min_seconds),
            "--optimization",
            self.optimization,
            "--providers",
            ",".join(self.providers),
        ]
        return run_ondevice(script.__name__, args)

    def ondevice_scripts(self) -> list[Path]:
        return [Path(script.__file__), Path(script.__file__).with_name("common.py")]
