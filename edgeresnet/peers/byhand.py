"""The peers: what a user would run by hand, each with its tools' defaults, and how to make them.

Only the calibration images are shared with edgeresnet's builds (the same seeded subset); every
other setting is the tool's own default, written down in ``Peer.how`` so the report says it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeresnet.errors import QuantizationError
from edgeresnet.export import INPUT_NAME
from edgeresnet.progress import quiet_logger


@dataclass(frozen=True)
class Peer:
    """One by-hand reference row and the edgeresnet rows (backend, variant) it is compared with."""

    variant: str
    label: str
    precision: str
    runtime: str
    how: str
    counterparts: tuple[tuple[str, str], ...]
    # OpenVINO's INFERENCE_PRECISION_HINT; "default" leaves the CPU plugin's own choice, as a
    # user who sets nothing gets (bf16 on CPUs with avx512_bf16 or AMX).
    hint: str = ""


PYTORCH = Peer(
    "pytorch-fp32",
    "PyTorch eager FP32",
    "fp32",
    "torch",
    "the torch model in eval() under torch.inference_mode(), torch.set_num_threads(N), "
    "in a fresh process",
    (("onnxruntime", "fp32"),),
)
ORT_FP32 = Peer(
    "ort-fp32",
    "ONNX Runtime FP32",
    "fp32",
    "onnxruntime",
    "the exported FP32 ONNX in an InferenceSession (CPU execution provider, ORT_ENABLE_ALL, "
    "N intra-op threads)",
    (("onnxruntime", "fp32"),),
)
OPENVINO_F32 = Peer(
    "openvino-f32",
    "OpenVINO FP32 (f32 hint)",
    "fp32",
    "openvino",
    "the exported FP32 ONNX read by ov.Core and compiled for CPU with INFERENCE_PRECISION_HINT=f32",
    (("openvino", "fp32"),),
    hint="f32",
)
NNCF_DEFAULT = Peer(
    "nncf-default-int8",
    "NNCF defaults + OpenVINO",
    "int8",
    "openvino",
    "nncf.quantize(ov model, nncf.Dataset(images)) with every default, saved with "
    "ov.save_model's defaults, compiled with the CPU plugin's defaults (no precision hint)",
    (("openvino", "int8"),),
    hint="default",
)
ORT_DEFAULT = Peer(
    "ort-default-int8",
    "ORT quantize_static defaults",
    "int8",
    "onnxruntime",
    "onnxruntime.quantization.quantize_static(fp32.onnx, int8.onnx, reader) with every default "
    "(QDQ, s8 activations and weights, per-tensor, MinMax), without quant_pre_process",
    (("onnxruntime", "int8"),),
)
PEERS = (PYTORCH, ORT_FP32, OPENVINO_F32, NNCF_DEFAULT, ORT_DEFAULT)


def ort_fp32_how(sha256: str | None, counterpart: dict[str, Any] | None) -> str:
    """ORT FP32's "how", saying whether its file is edgeresnet's fp32 byte for byte.

    ``counterpart`` is the re-measured edgeresnet fp32 row it is compared with (``--against``);
    only when both files have the same sha256 does its ratio show nothing but timing noise.
    """
    theirs = ((counterpart or {}).get("artifact") or {}).get("sha256")
    if counterpart is None or not sha256 or not theirs:
        return (
            f"{ORT_FP32.how}; no edgeresnet fp32 file was timed in this run (--against), so "
            "whether it is the same file was not checked"
        )
    where = (counterpart.get("remeasured") or {}).get("source", "the bundle")
    if sha256 == theirs:
        return (
            f"{ORT_FP32.how}; the same file as edgeresnet's fp32 in {where} (sha256 "
            f"{sha256[:12]}), so its ratio shows the noise"
        )
    return (
        f"{ORT_FP32.how}; not the same file as edgeresnet's fp32 in {where} (sha256 "
        f"{sha256[:12]} here, {theirs[:12]} there), so its ratio compares two exports"
    )


def ort_quantize_static_defaults(
    fp32_onnx: Path, out: Path, images: Sequence[np.ndarray]
) -> dict[str, Any]:
    """``quantize_static`` as its docs call it: a data reader and nothing else."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._next = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._next, None)
            return None if image is None else {INPUT_NAME: image[None]}

    from edgeresnet.quantize.ort_static import quiet_ort

    try:
        with quiet_ort():
            quantize_static(str(fp32_onnx), str(out), Reader())
    except Exception as exc:  # ORT raises ValueError, RuntimeError and its own types
        raise QuantizationError(f"quantize_static with its defaults failed: {exc}") from exc
    return {
        "method": "onnxruntime.quantization.quantize_static",
        "arguments": "model_input, model_output, calibration_data_reader; all else default",
        "calibration_images": len(images),
        "onnxruntime_version": onnxruntime.__version__,
    }


def nncf_quantize_defaults(
    fp32_onnx: Path, out_xml: Path, images: Sequence[np.ndarray]
) -> dict[str, Any]:
    """``nncf.quantize`` on the OpenVINO model with every default, saved with defaults."""
    import nncf
    import openvino as ov

    try:
        model = ov.Core().read_model(str(fp32_onnx))
        with quiet_logger("nncf", logging.WARNING):  # one INFO line per statistic otherwise
            quantized = nncf.quantize(model, nncf.Dataset([image[None] for image in images]))
        ov.save_model(quantized, str(out_xml))
    except Exception as exc:  # NNCF and OpenVINO raise their own types and RuntimeError
        raise QuantizationError(f"nncf.quantize with its defaults failed: {exc}") from exc
    return {
        "method": "nncf.quantize",
        "arguments": "model, nncf.Dataset(images); all else default (subset_size 300)",
        "save": "ov.save_model(model, path) (compress_to_fp16 default)",
        "calibration_images": min(len(images), 300),
        "nncf_version": nncf.__version__,
        "openvino_version": ov.get_version().split("-")[0],
    }
