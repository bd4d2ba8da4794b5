"""Runtimes that compile, load, run and benchmark artifacts: one module per runtime.

Every backend offers the same small protocol (``Backend``). ``get_backend(name)`` imports the
runtime lazily, so a missing optional runtime only matters for the targets that use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeresnet.config import BACKEND_PRECISIONS, TargetProfile, check_keywords
from edgeresnet.errors import BackendUnavailableError, ConfigError
from edgeresnet.ondevice.common import sha256_file

BACKENDS = tuple(BACKEND_PRECISIONS)


class CalibrationBatches(Protocol):
    """Calibration data as a backend sees it: batch size in, NCHW float32 batches out, each
    call a fresh pass over the same ``images`` images."""

    images: int

    def __call__(self, batch_size: int) -> Iterator[np.ndarray]: ...


@dataclass
class Artifact:
    """One variant a backend produced: the file, its precision, and how it was made."""

    variant: str
    precision: str
    file: Path
    build: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        """The model file and, for an OpenVINO IR, the weights beside it."""
        weights = self.file.with_suffix(".bin")
        ir = self.file.suffix == ".xml" and weights.is_file()
        return [self.file, weights] if ir else [self.file]

    def identity(self) -> dict[str, Any]:
        """What decides its outputs and speed: every file's content and the precision it runs at.

        The precision matters apart from the file: OpenVINO's bf16 variant is the FP32 IR run
        with another hint, and an IR's .xml stays the same when only its weights change.
        """
        return {
            "files": [sha256_file(p) for p in self.files],
            "precision": self.precision,
            "hint": self.build.get("inference_precision_hint"),
        }


def ranges_file(work: Path, fp32_onnx: Path, options: Any) -> Path:
    """Where a backend keeps the calibrated activation ranges of ``fp32_onnx`` quantized with
    ``options`` (a dataclass), keyed by the file's content: the accuracy-aware search quantizes
    one model many times and calibrates it once."""
    settings = json.dumps(dataclasses.asdict(options), sort_keys=True)
    digest = hashlib.sha256(f"{sha256_file(fp32_onnx)}|{settings}".encode()).hexdigest()[:16]
    return work / f"{digest}.ranges.json"


class Scratch:
    """A backend's scratch folder, made on first use, so that during a build it lies in the
    build's work folder under OUT (``publish.work_folder``); removed with the backend."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    @property
    def path(self) -> Path:
        if self._folder is None or not Path(self._folder.name).is_dir():
            self._folder = tempfile.TemporaryDirectory(prefix=self._prefix)
        return Path(self._folder.name)


class Session(Protocol):
    """A loaded artifact: NCHW float32 batch in, logits out."""

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class Backend(Protocol):
    name: str

    def version(self) -> str: ...

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
        """Make the artifact of ``precision`` from the verified FP32 ONNX, inside ``out_dir``;
        INT8 keeps the ONNX nodes named in ``exclude`` in float (accuracy-aware INT8)."""
        ...

    def load(self, artifact: Artifact, *, threads: int) -> Session:
        """Load for evaluation; raises BackendUnavailableError where it cannot run here."""
        ...

    def benchmark(
        self, artifact: Artifact, *, threads: int, input_size: int, profile: TargetProfile
    ) -> dict[str, Any]:
        """Measure in a fresh process; raises BackendUnavailableError where it cannot run here."""
        ...

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
        """Time ``artifact`` against ``reference`` at batch 1, ``pairs`` alternating calls each,
        in a fresh process; raises BackendUnavailableError where it cannot run here."""
        ...

    def ondevice_scripts(self, profile: TargetProfile) -> list[Path]:
        """Standalone files the bundle ships for running on the device."""
        ...


def get_backend(
    name: str,
    *,
    device: str = "CPU",
    runtime: dict[str, Any] | None = None,
    where: str = "the target profile",
) -> Backend:
    """The backend called ``name`` for ``device``, configured by a profile's [runtime] table
    (keys and types checked first); errors name the profile as ``where``."""
    backend: type
    if name == "onnxruntime":
        try:
            from edgeresnet.backends.onnxruntime import OnnxRuntimeBackend as backend
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise BackendUnavailableError(
                f"ONNX Runtime is not installed ({exc}).", hint="pip install onnxruntime"
            ) from None
    elif name == "openvino":
        try:
            from edgeresnet.backends.openvino import OpenVinoBackend as backend
        except ImportError as exc:
            raise BackendUnavailableError(
                f"OpenVINO is not installed ({exc}).", hint='pip install "edgeresnet[openvino]"'
            ) from None
    elif name == "tensorrt":
        # Needs no TensorRT here: it makes ONNX artifacts and an on-device engine bundle.
        from edgeresnet.backends.tensorrt import TensorRTBackend as backend
    else:
        raise ConfigError(
            f"Unknown backend '{name}'.", hint=f"Choose one of: {', '.join(BACKENDS)}."
        )
    runtime = runtime or {}
    check_keywords(backend, runtime, where=f"{where} [runtime]")
    try:
        return backend(device=device, **runtime)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None
