"""INT8 QDQ ONNX with ONNX Runtime's static quantization: per-channel weights, calibrated ranges."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Sequence
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
from edgeresnet.progress import quiet_logger

_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
CALIBRATORS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


class _Batches(CalibrationDataReader):
    """Calibration batches for ORT, readable in ranges so histograms are built chunk by chunk."""

    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._batches = list(batches)
        self._next, self._end = 0, len(self._batches)
        self.count = sum(len(b) for b in self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        self._next += 1
        return {INPUT_NAME: self._batches[self._next - 1]}


def quiet_ort() -> contextlib.AbstractContextManager[None]:
    """ORT's quantizer logs every node it leaves out at WARNING, on the root logger."""
    return quiet_logger("root", logging.ERROR)


def _extra(options: QuantizationOptions, batches: int) -> dict[str, Any]:
    if options.calibrate_method == "minmax":
        return {}
    # ORT's histogram calibrators keep every activation of every image until they build the
    # histograms (tens of GB for ResNet-50 at 300 images); in chunks they hold one chunk.
    extra: dict[str, Any] = {"CalibStridedMinMax": _chunk(batches)}
    if options.calibrate_method == "percentile":  # 90-100, checked with the profile
        extra["CalibPercentile"] = options.percentile
    return extra


def _chunk(batches: int, most: int = 8) -> int:
    """The largest chunk size up to ``most`` that divides ``batches`` (ORT requires that)."""
    return next(size for size in range(min(most, max(batches, 1)), 0, -1) if batches % size == 0)


def quantize(
    fp32_path: Path,
    out_path: Path,
    batches: Iterable[np.ndarray],
    options: QuantizationOptions,
    *,
    exclude: Sequence[str] = (),
    ranges: Path | None = None,
) -> dict[str, Any]:
    """Write an INT8 QDQ model calibrated on ``batches`` (NCHW float32 arrays).

    ``exclude`` names ONNX nodes kept in float (the accuracy-aware fallback); ``ranges`` is a
    calibration cache file: read when it exists (``batches`` is then not consumed), else written,
    so repeated quantizations of one model calibrate once.
    """
    try:
        activation = _TYPES[options.activation_type]
        weight = _TYPES[options.weight_type]
        calibrator = CALIBRATORS[options.calibrate_method]
    except KeyError as exc:
        raise ConfigError(
            f"Unsupported quantization setting {exc} for ort-static.",
            hint=f"Types: {', '.join(_TYPES)}; calibrate_method: {', '.join(CALIBRATORS)}.",
        ) from None
    reused = ranges is not None and ranges.is_file()
    reader = _Batches(() if reused else batches)
    # With a ranges cache the pre-processed model is kept beside it too, for the next call.
    keep = ranges is not None
    prepared = (
        ranges.with_suffix(".pre.onnx")
        if ranges is not None
        else out_path.with_name(f".{out_path.name}.pre.onnx")
    )
    try:
        # ORT's own pre-pass: folds the Identity nodes the exporter leaves on shared
        # initializers, which otherwise keep 47 of ResNet-50's 53 convs out of QLinearConv.
        if not (keep and prepared.is_file()):
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        with quiet_ort(), contextlib.redirect_stdout(io.StringIO()):  # calibrators print progress
            quantize_static(
                str(prepared),
                str(out_path),
                None if reused else reader,
                quant_format=QuantFormat.QDQ,
                activation_type=activation,
                weight_type=weight,
                per_channel=options.per_channel,
                calibrate_method=calibrator,
                nodes_to_exclude=list(exclude),
                extra_options=_extra(options, len(reader)),
                calibration_cache_path=ranges,
            )
    except Exception as exc:  # ORT raises ValueError, RuntimeError and its own types
        raise QuantizationError(f"ONNX Runtime quantization failed: {exc}") from exc
    finally:
        if not keep:
            prepared.unlink(missing_ok=True)
    if reader.count == 0 and not reused:
        raise QuantizationError("No calibration images reached the quantizer.")
    return {
        "method": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "preprocess": "onnxruntime.quantization.quant_pre_process",
        "activation_type": options.activation_type,
        "weight_type": options.weight_type,
        "per_channel": options.per_channel,
        "calibrate_method": options.calibrate_method,
        **({"percentile": options.percentile} if options.calibrate_method == "percentile" else {}),
        "calibration_images": reader.count or "reused ranges",
        "float_nodes": list(exclude),
        "onnxruntime_version": onnxruntime.__version__,
    }
