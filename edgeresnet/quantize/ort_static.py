"""INT8 QDQ ONNX with ONNX Runtime's static quantization: per-channel weights, calibrated ranges."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgeresnet.config import QuantizationOptions
from edgeresnet.errors import ConfigError, QuantizationError
from edgeresnet.export import INPUT_NAME

_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
_CALIBRATORS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


class _Batches(CalibrationDataReader):
    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._iter: Iterator[np.ndarray] = iter(batches)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        if batch is None:
            return None
        self.count += len(batch)
        return {INPUT_NAME: batch}


def quantize(
    fp32_path: Path, out_path: Path, batches: Iterable[np.ndarray], options: QuantizationOptions
) -> dict[str, Any]:
    """Write an INT8 QDQ model calibrated on ``batches`` (NCHW float32 arrays)."""
    try:
        activation = _TYPES[options.activation_type]
        weight = _TYPES[options.weight_type]
        calibrator = _CALIBRATORS[options.calibrate_method]
    except KeyError as exc:
        raise ConfigError(
            f"Unsupported quantization setting {exc} for ort-static.",
            hint=f"Types: {', '.join(_TYPES)}; calibrate_method: {', '.join(_CALIBRATORS)}.",
        ) from None
    reader = _Batches(batches)
    logging.getLogger("root").setLevel(logging.ERROR)  # ORT logs every skipped node at WARNING
    prepared = out_path.with_name(f".{out_path.name}.pre.onnx")
    try:
        # ORT's own pre-pass: folds the Identity nodes the exporter leaves on shared
        # initializers, which otherwise keep 47 of ResNet-50's 53 convs out of QLinearConv.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=activation,
            weight_type=weight,
            per_channel=options.per_channel,
            calibrate_method=calibrator,
        )
    except Exception as exc:  # ORT raises ValueError, RuntimeError and its own types
        raise QuantizationError(f"ONNX Runtime quantization failed: {exc}") from exc
    finally:
        prepared.unlink(missing_ok=True)
    if reader.count == 0:
        raise QuantizationError("No calibration images reached the quantizer.")
    return {
        "method": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "preprocess": "onnxruntime.quantization.quant_pre_process",
        "activation_type": options.activation_type,
        "weight_type": options.weight_type,
        "per_channel": options.per_channel,
        "calibrate_method": options.calibrate_method,
        "calibration_images": reader.count,
        "onnxruntime_version": onnxruntime.__version__,
    }
