"""OpenVINO: FP32 / FP16 / INT8 IR from the verified FP32 ONNX, run on CPU, GPU or NPU.

Each variant runs at a pinned inference precision (``bench_openvino.HINTS``): an FP32 IR left to
OpenVINO's defaults runs in bf16 on CPUs that have it, so "bf16" is its own row that reuses the
FP32 IR. Evaluation runs in-process; benchmarks run through the on-device script.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edgeresnet.backends import Artifact, CalibrationBatches
from edgeresnet.backends.script import run_ondevice, timing_args
from edgeresnet.config import TargetProfile, check_method
from edgeresnet.errors import BackendUnavailableError, ConfigError, ExportError
from edgeresnet.ondevice import bench_openvino as script
from edgeresnet.quantize import get_quantizer

# The IR file of each precision; bf16 runs the FP32 IR with the bf16 hint.
IR_FILES = {
    "fp32": "model.fp32.xml",
    "bf16": "model.fp32.xml",
    "fp16": "model.fp16.xml",
    "int8": "model.int8.xml",
}


class OpenVinoSession:
    """An IR compiled for one device and precision; one compiled model per input shape."""

    def __init__(self, core: ov.Core, ir: Path, *, device: str, config: dict[str, Any]) -> None:
        self._core, self._ir, self._device, self._config = core, ir, device, config
        self._requests: dict[tuple[int, ...], ov.InferRequest] = {}

    def run(self, batch: np.ndarray) -> np.ndarray:
        request = self._requests.get(batch.shape)
        if request is None:
            compiled = script.compile_at(
                self._core, self._ir, self._device, batch.shape, self._config
            )
            request = self._requests[batch.shape] = compiled.create_infer_request()
        request.infer({0: batch})
        return request.get_output_tensor(0).data.copy()


class _CalibrationPasses:
    """Calibration as NNCF takes it: an iterable of one-image batches it may walk again."""

    def __init__(self, calibration: CalibrationBatches) -> None:
        self._calibration = calibration
        self._open: list[Iterator[np.ndarray]] = []
        self.images = calibration.images  # NNCF asks for no more than there are

    def __iter__(self) -> Iterator[np.ndarray]:
        batches = self._calibration(1)
        self._open.append(batches)
        return batches

    def close(self) -> None:
        """End passes NNCF left unfinished (it stops at subset_size), closing their progress."""
        for batches in self._open:
            close = getattr(batches, "close", None)
            if close is not None:
                close()


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, *, device: str = "CPU") -> None:
        self.device = device
        self._core = ov.Core()

    def version(self) -> str:
        return script.runtime_version()

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
        """``exclude`` names ONNX nodes the INT8 IR keeps in float (accuracy-aware INT8)."""
        if precision not in IR_FILES:
            raise ConfigError(
                f"The openvino backend builds {', '.join(IR_FILES)}, not {precision}.",
                hint=f"Edit precisions in {profile.source}.",
            )
        target = out_dir / IR_FILES[precision]
        record: dict[str, Any] = {
            "ir": target.name,
            "inference_precision_hint": script.HINTS[precision],
            "device": self.device,
        }
        if precision == "int8":
            record.update(self._quantize(fp32_onnx, target, calibration, profile, exclude))
        else:
            # bf16 converts the FP32 IR again (the pipeline compiles each precision in a folder
            # of its own); the copies land on one file. Same weights, same graph: only the names
            # OpenVINO generates for constants differ between two conversions.
            record.update(_convert(fp32_onnx, target, compress_to_fp16=precision == "fp16"))
        if precision == "bf16":
            record["note"] = "the FP32 IR run with INFERENCE_PRECISION_HINT=bf16"
        return Artifact(precision, precision, target, record)

    def _quantize(
        self,
        fp32_onnx: Path,
        target: Path,
        calibration: CalibrationBatches,
        profile: TargetProfile,
        exclude: tuple[str, ...],
    ) -> dict[str, Any]:
        check_method(profile, self.name)  # another backend's profile, or one made in code
        quantize = get_quantizer("nncf")
        passes = _CalibrationPasses(calibration)
        try:
            return quantize(fp32_onnx, target, passes, profile.quantization, exclude=exclude)
        finally:
            passes.close()

    def check_device(self) -> None:
        """Raise BackendUnavailableError when the profile's device is not in this machine."""
        available = self._core.available_devices
        if not script.device_present(self.device, available):
            raise BackendUnavailableError(
                f"OpenVINO device {self.device} is not present on this machine "
                f"(ov.Core().available_devices: {', '.join(available) or 'none'}).",
                hint="The IR is built; copy the bundle to a machine with that device and run "
                "`python3 ondevice/bench_openvino.py --bundle .` there.",
            )

    def load(self, artifact: Artifact, *, threads: int) -> OpenVinoSession:
        self.check_device()
        config, _ = script.compile_config(
            self._core, self.device, mode="LATENCY", threads=threads, hint=_hint(artifact)
        )
        return OpenVinoSession(self._core, artifact.file, device=self.device, config=config)

    def benchmark(
        self, artifact: Artifact, *, threads: int, input_size: int, profile: TargetProfile
    ) -> dict[str, Any]:
        result = run_ondevice(script.__name__, self._args(artifact, threads, input_size, profile))
        # The on-device script imports only openvino; the toolchain version is added here.
        result["nncf_version"] = _installed("nncf")
        return result

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
        args += ["--reference-precision-hint", _hint(reference)]
        return run_ondevice(script.__name__, args)

    def _args(
        self, artifact: Artifact, threads: int, input_size: int, profile: TargetProfile
    ) -> list[str]:
        self.check_device()
        return [
            *("--model", str(artifact.file)),
            *("--device", self.device),
            *("--precision-hint", _hint(artifact)),
            *timing_args(profile.benchmark, input_size=input_size, threads=threads),
        ]

    def ondevice_scripts(self, profile: TargetProfile) -> list[Path]:
        return [Path(script.__file__), Path(script.__file__).with_name("common.py")]


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _hint(artifact: Artifact) -> str:
    return artifact.build.get("inference_precision_hint") or script.HINTS[artifact.precision]


def _convert(fp32_onnx: Path, target: Path, *, compress_to_fp16: bool) -> dict[str, Any]:
    """Convert the FP32 ONNX to IR; ``save_model`` halves weights unless told not to."""
    try:
        model = ov.convert_model(str(fp32_onnx))
        ov.save_model(model, str(target), compress_to_fp16=compress_to_fp16)
    except Exception as exc:  # OpenVINO's converter raises its own types and RuntimeError
        raise ExportError(f"OpenVINO could not convert {fp32_onnx.name} to IR: {exc}") from exc
    return {"converter": "openvino.convert_model", "compress_to_fp16": compress_to_fp16}
