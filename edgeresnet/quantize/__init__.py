"""Post-training INT8 quantization: one module per method, chosen by name in a target profile.

A quantizer turns an FP32 artifact plus calibration batches into an INT8 artifact; it never
benchmarks or evaluates (that happens above, in ``evaluate`` and ``bench``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgeresnet.config import QuantizationOptions
from edgeresnet.errors import BackendUnavailableError, ConfigError

Quantizer = Callable[[Path, Path, Iterable[np.ndarray], QuantizationOptions], dict[str, Any]]

METHODS = ("ort-static", "nncf", "trt-qdq")


def get_quantizer(method: str) -> Quantizer:
    """Return the quantizer registered as ``method``, importing its library lazily."""
    if method == "ort-static":
        from edgeresnet.quantize.ort_static import quantize

        return quantize
    if method == "nncf":
        try:
            from edgeresnet.quantize.nncf_ptq import quantize
        except ImportError as exc:
            raise BackendUnavailableError(
                f"Quantization method 'nncf' needs NNCF and OpenVINO ({exc}).",
                hint='pip install "edgeresnet[openvino]"',
            ) from None
        return quantize
    if method == "trt-qdq":
        from edgeresnet.quantize.trt_qdq import quantize

        return quantize
    raise ConfigError(
        f"Unknown quantization method '{method}'.", hint=f"Choose one of: {', '.join(METHODS)}."
    )
