"""INT8 OpenVINO IR with NNCF post-training quantization, applied to the OpenVINO model.

NNCF quantizes the model OpenVINO converted from the FP32 ONNX, never the torch model: its torch
backend held about 33 MB per calibration sample (10.9 GB at 300) where the OpenVINO one needs
about 1 GB (ResNet-50, measured on the project's 2-core machine).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nncf
import numpy as np
import openvino as ov

from edgeresnet.config import QuantizationOptions
from edgeresnet.errors import ConfigError, QuantizationError
from edgeresnet.progress import quiet_logger

_PRESETS = {
    "performance": nncf.QuantizationPreset.PERFORMANCE,
    "mixed": nncf.QuantizationPreset.MIXED,
}
_MODEL_TYPES = {"": None, "transformer": nncf.ModelType.TRANSFORMER}


class _Counted:
    """Batches NNCF may walk more than once; remembers how many images each pass gave."""

    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._batches = batches
        self.passes: list[int] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        self.passes.append(0)
        for batch in self._batches:
            self.passes[-1] += len(batch)
            yield batch


def float_scope(exclude: Sequence[str]) -> nncf.IgnoredScope | None:
    """NNCF's scope for ONNX nodes kept in float (the accuracy-aware fallback).

    OpenVINO's ONNX frontend names a Conv or Gemm with a bias ``<onnx name>/WithoutBiases`` and
    the bias Add ``<onnx name>``; either name matches. NNCF refuses a pattern that matches nothing.
    """
    if not exclude:
        return None
    return nncf.IgnoredScope(
        patterns=[f"^{re.escape(name)}(/WithoutBiases)?$" for name in exclude], validate=True
    )


def quantize(
    fp32_path: Path,
    out_path: Path,
    batches: Iterable[np.ndarray],
    options: QuantizationOptions,
    *,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """Write an INT8 IR to ``out_path`` (.xml + .bin), calibrated on ``batches`` of one image.

    ``batches`` should be re-iterable: NNCF walks it again for some algorithms. Its
    ``subset_size`` counts items, so batches of one image make it count images. ``exclude``
    names ONNX nodes kept in float.
    """
    try:
        preset = _PRESETS[options.preset]
        model_type = _MODEL_TYPES[options.model_type]
    except KeyError as exc:
        raise ConfigError(
            f"Unsupported quantization setting {exc} for nncf.",
            hint=f"preset: {', '.join(_PRESETS)}; model_type: '' or 'transformer'.",
        ) from None
    if options.subset_size < 1:
        raise ConfigError(f"quantization.subset_size must be positive, got {options.subset_size}.")
    data = _Counted(batches)
    # NNCF reads at most subset_size images and warns where a pass holds fewer: ask for the
    # images there are. Not with the full bias correction, whose own sample is a fifth of
    # subset_size (it would shrink).
    available = getattr(batches, "images", None)
    cut = available and options.fast_bias_correction
    subset = min(options.subset_size, available) if cut else options.subset_size
    try:
        model = ov.convert_model(str(fp32_path))
        with quiet_logger("nncf", logging.WARNING):  # one INFO line per statistic otherwise
            quantized = nncf.quantize(
                model,
                nncf.Dataset(data),
                preset=preset,
                subset_size=subset,
                fast_bias_correction=options.fast_bias_correction,
                model_type=model_type,
                ignored_scope=float_scope(exclude),
            )
        # FP32 scales and the remaining float weights stay FP32; INT8 weights are stored as i8.
        ov.save_model(quantized, str(out_path), compress_to_fp16=False)
    except Exception as exc:  # NNCF and OpenVINO raise their own types and RuntimeError
        raise QuantizationError(f"NNCF quantization failed: {exc}") from exc
    images = max(data.passes, default=0)
    if images == 0:
        raise QuantizationError("No calibration images reached the quantizer.")
    return {
        "method": "nncf.quantize",
        "quantized_model": "OpenVINO model (openvino.convert_model of the FP32 ONNX)",
        "preset": options.preset,
        "subset_size": subset,
        "fast_bias_correction": options.fast_bias_correction,
        "model_type": options.model_type or None,
        "target_device": "ANY",
        "calibration_images": images,
        "calibration_passes": len(data.passes),
        "float_nodes": list(exclude),
        "compress_to_fp16": False,
        "nncf_version": nncf.__version__,
        "openvino_version": ov.get_version().split("-")[0],
    }
