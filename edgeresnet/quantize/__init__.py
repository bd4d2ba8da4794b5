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
from edgeresnet.errors import ConfigError

Quantizer = Callable[[Path, Path, Iterable[np.ndarray], QuantizationOptions], dict[str, Any]]

METHODS = ("ort-static",)


def get_quantizer(method: str) -> Quantizer:
    """Return the quantizer registered as ``method``, importing its library lazily."""
    if method == "ort-static":
        from edgeresnet.quantize.ort_static import quantize

        return quantize
    raise ConfigError(
        f"Unknown quantization method '{method}'.", hint=f"Choose one of: {', '.join(METHODS)}."
    )
