"""INT8 QDQ ONNX for TensorRT's explicit quantization, made with ONNX Runtime's quantizer.

TensorRT's rules (signed int8, zero point 0, per-channel weight scales on the output-channel
axis, float biases, standard ONNX ops) are all expressible as ``quantize_static`` options; the
one post-fix is dropping the unused non-standard opset imports ORT's pre-pass declares.
Calibration runs once over every activation tensor, so the same statistics also give
TensorRT's implicit-quantization calibration cache (``backends/tensorrt_cache.py``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    create_calibrator,
    load_tensors_data,
    quantize_static,
    save_tensors_data,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgeresnet.config import QuantizationOptions
from edgeresnet.errors import ConfigError, QuantizationError
from edgeresnet.export import INPUT_NAME, STANDARD_DOMAINS
from edgeresnet.quantize.ort_static import CALIBRATORS, quiet_ort

# TensorRT's Q/DQ placement guidance for residual networks: quantize every input of the weighted
# ops (Conv, Gemm) and both inputs of each residual Add, so the Add fuses into the INT8
# convolution before it. The Add output is not quantized: the ReLU after it feeds the next
# convolution's own Q, and a second Q before the ReLU would only add rounding error.
OP_TYPES = ("Conv", "Gemm", "Add")
WEIGHT_STORAGE = ("int8", "float")
# ORT's calibrators hold every activation of every image of one collect_data call until they
# reduce it (tens of GB for ResNet-50 at 300 images); fed this many at a time, they hold those.
CHUNK = 8


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


class _Chunks(CalibrationDataReader):
    """``reader`` handed out ``size`` batches per ``collect_data`` call; ranges and histograms
    merge across calls, as in ORT's own strided calibration."""

    def __init__(self, reader: CalibrationDataReader, size: int) -> None:
        self._reader, self._size = reader, size
        self._next = reader.get_next()
        self._left = 0

    def pending(self) -> bool:
        """True while batches are left; starts the next chunk."""
        self._left = self._size
        return self._next is not None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._left == 0 or self._next is None:
            return None
        item, self._next = self._next, self._reader.get_next()
        self._left -= 1
        return item


def quantize(
    fp32_path: Path,
    out_path: Path,
    batches: Iterable[np.ndarray],
    options: QuantizationOptions,
    *,
    weights: str = "int8",
    ranges_out: Path | None = None,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """Write a TensorRT-ready INT8 QDQ model calibrated on ``batches`` (NCHW float32 arrays).

    ``weights="int8"`` stores int8 weights behind DequantizeLinear (TensorRT 10); ``"float"``
    keeps FP32 weights behind a Q/DQ pair, the only form TensorRT 8.x parses. ``ranges_out``
    receives the calibrated range of every activation tensor (ORT's TensorsData JSON); when that
    file already exists its ranges are reused and ``batches`` is not read. ``exclude`` names
    ONNX nodes left without Q/DQ, so TensorRT keeps them in float (accuracy-aware INT8).
    """
    calibrator = _check(options, weights)
    reader = _Batches(batches)
    with quiet_ort(), tempfile.TemporaryDirectory(prefix="edgeresnet-trt-qdq-") as tmp:
        ranges = Path(ranges_out) if ranges_out else Path(tmp) / "ranges.json"
        # With a ranges cache the pre-processed model is kept beside it too, for the next call
        # (the accuracy-aware search quantizes one model dozens of times), as in ort_static.
        prepared = ranges.with_suffix(".pre.onnx") if ranges_out else Path(tmp) / "prepared.onnx"
        try:
            # Folds the Identity nodes the exporter leaves on shared initializers, which
            # otherwise hide weights from the quantizer (see ort_static.py).
            if not prepared.is_file():
                quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            if ranges_out is not None and Path(ranges_out).is_file():
                calibrated = load_tensors_data(ranges)
            else:
                calibrated = _calibrate(prepared, reader, calibrator, options, Path(tmp))
                save_tensors_data(calibrated, ranges)
            quantize_static(
                str(prepared),
                str(out_path),
                None,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(OP_TYPES),
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=calibrator,
                calibration_cache_path=str(ranges),
                nodes_to_exclude=list(exclude),
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    # ORT's default int32 bias DequantizeLinear is rejected by TensorRT's parser.
                    "QuantizeBias": False,
                    "OpTypesToExcludeOutputQuantization": ["Add"],
                    "AddQDQPairToWeight": weights == "float",
                },
            )
        except Exception as exc:  # ORT raises ValueError, RuntimeError and its own types
            raise QuantizationError(f"ONNX Runtime quantization failed: {exc}") from exc
    dropped = _drop_unused_domains(out_path)
    return {
        "method": "onnxruntime.quantization.quantize_static (TensorRT rules)",
        "format": "QDQ",
        "preprocess": "onnxruntime.quantization.quant_pre_process",
        "activation_type": "int8 (symmetric, zero point 0, per tensor)",
        "weight_type": "int8 (symmetric, per output channel)",
        "weight_storage": "int8 initializers" if weights == "int8" else "float with Q/DQ pair",
        "bias": "float",
        "op_types": list(OP_TYPES),
        "calibrate_method": options.calibrate_method,
        "calibration_images": reader.count or "reused ranges",
        "float_nodes": list(exclude),
        "calibrated_tensors": len(calibrated.keys()),
        "post_fix": {"dropped_opset_imports": dropped},
        "onnxruntime_version": onnxruntime.__version__,
    }


def _check(options: QuantizationOptions, weights: str) -> CalibrationMethod:
    if options.calibrate_method not in CALIBRATORS:
        raise ConfigError(
            f"Unsupported calibrate_method '{options.calibrate_method}' for trt-qdq.",
            hint=f"Use one of: {', '.join(CALIBRATORS)}.",
        )
    wrong = {
        k: v
        for k, v in (
            ("activation_type", options.activation_type),
            ("weight_type", options.weight_type),
        )
        if v != "int8"
    }
    if wrong or not options.per_channel:
        raise ConfigError(
            f"trt-qdq makes what TensorRT accepts: signed int8 activations and per-channel "
            f"int8 weights, but the profile asks for {wrong or {'per_channel': False}}.",
            hint='Set activation_type = "int8", weight_type = "int8", per_channel = true.',
        )
    if weights not in WEIGHT_STORAGE:
        raise ConfigError(
            f"Unknown weight storage '{weights}'.", hint=f"Use one of: {', '.join(WEIGHT_STORAGE)}."
        )
    return CALIBRATORS[options.calibrate_method]


def _calibrate(
    model: Path,
    reader: _Batches,
    method: CalibrationMethod,
    options: QuantizationOptions,
    work: Path,
) -> Any:
    """Ranges of every float tensor (not only the quantized ones): the cache needs them all."""
    extra: dict[str, Any] = {}
    if method == CalibrationMethod.Percentile:
        extra = {"percentile": options.percentile, "symmetric": True}
    calibrator = create_calibrator(
        model,
        None,
        augmented_model_path=str(work / "augmented.onnx"),
        calibrate_method=method,
        extra_options=extra,
    )
    chunks = _Chunks(reader, CHUNK)
    if not chunks.pending():
        raise QuantizationError("No calibration images reached the quantizer.")
    while True:
        calibrator.collect_data(chunks)
        if not chunks.pending():
            return calibrator.compute_data()


def _drop_unused_domains(path: Path) -> list[str]:
    """Remove opset imports of domains no node uses (ORT's pre-pass declares all it knows)."""
    model = onnx.load(str(path))
    used = {node.domain for node in model.graph.node} | set(STANDARD_DOMAINS)
    keep = [o for o in model.opset_import if o.domain in used]
    dropped = sorted(o.domain for o in model.opset_import if o.domain not in used)
    if dropped:
        del model.opset_import[:]
        model.opset_import.extend(keep)
        onnx.save(model, str(path))
    return dropped
