"""Runtimes that load, run and benchmark artifacts: one module per runtime, one small protocol.

``get_backend(name)`` imports the runtime lazily, so a missing optional runtime only matters
for the targets that use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeresnet.config import BenchmarkOptions
from edgeresnet.errors import BackendUnavailableError, ConfigError

BACKENDS = ("onnxruntime",)


class Session(Protocol):
    """A loaded artifact: NCHW float32 batch in, logits out."""

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class Backend(Protocol):
    name: str

    def version(self) -> str: ...

    def load(self, artifact: Path, *, threads: int) -> Session: ...

    def benchmark(
        self, artifact: Path, *, threads: int, input_size: int, options: BenchmarkOptions
    ) -> dict[str, Any]: ...

    def ondevice_scripts(self) -> list[Path]: ...


def get_backend(
    name: str, *, device: str = "CPU", runtime: dict[str, Any] | None = None
) -> Backend:
    """The backend called ``name`` for ``device``, configured by a profile's [runtime] table."""
    runtime = runtime or {}
    if name == "onnxruntime":
        try:
            from edgeresnet.backends.onnxruntime import OnnxRuntimeBackend
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise BackendUnavailableError(
                f"ONNX Runtime is not installed ({exc}).", hint="pip install onnxruntime"
            ) from None
        return OnnxRuntimeBackend(device=device, **runtime)
    raise ConfigError(f"Unknown backend '{name}'.", hint=f"Choose one of: {', '.join(BACKENDS)}.")
