"""TensorRT's explicit-quantization rules, checked on an INT8 QDQ ONNX before it leaves here.

TensorRT cannot run on the build machine, so a model that would fail its ONNX parser or fall
back to float must be caught statically: ``check_rules`` raises VerificationError naming the
rule and the node. ``validate`` adds a run in ONNX Runtime against the FP32 model on real
images and returns a record of everything it checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from edgeresnet.config import MIN_OPSET
from edgeresnet.errors import VerificationError
from edgeresnet.evaluate import fidelity
from edgeresnet.export import STANDARD_DOMAINS, default_opset
from edgeresnet.ondevice.bench_onnxruntime import session_options

# How a TensorRT file runs in ONNX Runtime on a CPU where TensorRT is absent (the validator, and
# the stand-in that evaluates TensorRT rows). INT8: graph optimizations off, so each Q/DQ pair
# runs as written and the convolutions between them in float, TensorRT's arithmetic (exact int32
# sums), whatever this CPU's int8 kernels do. Fused into ONNX Runtime's s8/s8 kernels, a CPU
# without VNNI saturates 16-bit sums: 14 dB instead of 33.
CPU_INT8 = "Q/DQ computed in float"


def cpu_optimization(precision: str) -> str:
    """ONNX Runtime's graph optimizations for a TensorRT file of ``precision`` run on the CPU."""
    return "disable" if precision == "int8" else "all"


RULES = {
    "opset": f"default-domain opset >= {MIN_OPSET}",
    "standard-ops": "only standard ONNX ops and opset imports (no com.microsoft)",
    "signed-int8": "every Q/DQ has an explicit int8 zero point (uint8 is rejected)",
    "zero-point-zero": "every zero point is 0 (TensorRT quantization is symmetric)",
    "positive-scale": "every scale is finite and > 0",
    "activation-per-tensor": "activation scales are scalars",
    "weight-per-channel": "Conv/Gemm weights are quantized per output channel",
    "quantized-inputs": "every Conv/Gemm input comes from a DequantizeLinear",
    "float-bias": "Conv/Gemm biases are float initializers (int32 bias is rejected)",
    "residual-add": "both inputs of each residual Add come from a DequantizeLinear",
}
_QDQ = ("QuantizeLinear", "DequantizeLinear")


class _Graph:
    """Producers and constants of one ONNX graph, for rule checks."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.nodes = list(model.graph.node)
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.constants = {t.name: t for t in model.graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute:
                self.constants[node.output[0]] = node.attribute[0].t

    def array(self, name: str) -> np.ndarray | None:
        tensor = self.constants.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def from_dq(self, name: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def is_constant(self, name: str) -> bool:
        """A constant, or a DequantizeLinear / QuantizeLinear chain over constants (weights)."""
        if name in self.constants:
            return True
        node = self.producer.get(name)
        return node is not None and node.op_type in _QDQ and self.is_constant(node.input[0])


def _fail(rule: str, node: onnx.NodeProto | None, detail: str) -> VerificationError:
    where = f" at node '{node.name or node.output[0]}' ({node.op_type})" if node else ""
    return VerificationError(
        f"TensorRT rule '{rule}' broken{where}: {detail}.",
        hint=f"TensorRT requires: {RULES[rule]}. Rebuild the INT8 model with the trt-qdq method.",
    )


def check_rules(model: onnx.ModelProto, float_nodes: Sequence[str] = ()) -> dict[str, Any]:
    """Check every rule in RULES; raise VerificationError at the first broken one.

    ``float_nodes`` were kept in float on purpose (accuracy-aware INT8): TensorRT runs them in
    FP32/FP16, so the weight and residual-Add rules do not apply to them or to Adds they feed.
    """
    g = _Graph(model)
    kept = set(float_nodes)
    _check_opsets(model)
    for node in g.nodes:
        if node.domain not in STANDARD_DOMAINS:
            raise _fail("standard-ops", node, f"domain '{node.domain}' is not standard ONNX")
    # Weighted ops first: an int32 bias DequantizeLinear is reported as the bias it is.
    weighted = [n for n in g.nodes if n.op_type in ("Conv", "Gemm") and n.name not in kept]
    for node in weighted:
        _check_weighted(g, node)
    for node in g.nodes:
        if node.op_type in _QDQ:
            _check_qdq(g, node)
    adds = [n for n in g.nodes if n.op_type == "Add" and not any(map(g.is_constant, n.input))]
    for node in adds:
        if node.name in kept:
            continue
        missing = [
            name
            for name in node.input
            if g.from_dq(name) is None and _producer_name(g, name) not in kept
        ]
        if missing:
            raise _fail("residual-add", node, f"input '{missing[0]}' is not quantized")
    return {
        "rules": {rule: "passed" for rule in RULES},
        "opset": default_opset(model),
        "quantize_linear": sum(n.op_type == "QuantizeLinear" for n in g.nodes),
        "dequantize_linear": sum(n.op_type == "DequantizeLinear" for n in g.nodes),
        "quantized_conv": sum(n.op_type == "Conv" for n in weighted),
        "quantized_gemm": sum(n.op_type == "Gemm" for n in weighted),
        "residual_adds": len(adds),
        "float_nodes": sorted(kept),
    }


def validate(
    int8_onnx: Path,
    fp32_onnx: Path,
    batches: Iterable[np.ndarray],
    *,
    min_sqnr_db: float,
    float_nodes: Sequence[str] = (),
) -> dict[str, Any]:
    """Rules, then the INT8 model against the FP32 model in ONNX Runtime on real images."""
    report = check_rules(onnx.load(str(int8_onnx)), float_nodes)
    sessions = [
        ort.InferenceSession(str(path), session_options(0, cpu_optimization(precision)))
        for path, precision in ((fp32_onnx, "fp32"), (int8_onnx, "int8"))
    ]
    name = sessions[0].get_inputs()[0].name
    ref, out = [], []
    for x in batches:
        ref.append(sessions[0].run(None, {name: x})[0])
        out.append(sessions[1].run(None, {name: x})[0])
    if not ref:
        raise VerificationError("The TensorRT validator received no images to run.")
    result = fidelity(np.concatenate(ref), np.concatenate(out))
    sqnr = result["sqnr_db"]
    if sqnr is not None and sqnr < min_sqnr_db:
        raise VerificationError(
            f"The INT8 model's logits are {sqnr:.1f} dB SQNR from the FP32 model's on "
            f"{result['images']} real images, under the {min_sqnr_db} dB floor.",
            hint="Check the calibration images match the deployment data, or try another "
            "--calib-method (percentile, entropy). The floor is the profile's min_sqnr_db: a "
            "copy of the profile with a lower one, given as --target FILE, accepts this INT8.",
        )
    report["fidelity"] = {
        "runtime": f"onnxruntime {ort.__version__} CPU, {CPU_INT8}",
        "reference": "FP32 ONNX in onnxruntime",
        "min_sqnr_db": min_sqnr_db,
        **{k: (float(v) if isinstance(v, np.floating) else v) for k, v in result.items()},
    }
    return report


def _producer_name(g: _Graph, tensor: str) -> str | None:
    node = next((n for n in g.nodes if tensor in n.output), None)
    return None if node is None else node.name


def _check_opsets(model: onnx.ModelProto) -> None:
    opset = default_opset(model)
    if opset is None or opset < MIN_OPSET:
        raise _fail("opset", None, f"the model imports opset {opset}")
    other = sorted(o.domain for o in model.opset_import if o.domain not in STANDARD_DOMAINS)
    if other:
        raise _fail("standard-ops", None, f"the model imports domain(s) {', '.join(other)}")


def _check_qdq(g: _Graph, node: onnx.NodeProto) -> None:
    if len(node.input) < 3 or g.array(node.input[2]) is None:
        raise _fail("signed-int8", node, "no constant zero point, so ONNX defaults to uint8")
    zero = g.array(node.input[2])
    if zero.dtype != np.int8:
        raise _fail("signed-int8", node, f"zero point is {zero.dtype}")
    if np.any(zero != 0):
        raise _fail("zero-point-zero", node, f"zero point {zero.ravel()[:4].tolist()}")
    scale = g.array(node.input[1])
    if scale is None or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise _fail("positive-scale", node, "scale is not a positive finite constant")
    if scale.size > 1 and not g.is_constant(node.input[0]):
        raise _fail("activation-per-tensor", node, f"activation scale has {scale.size} values")


def _check_weighted(g: _Graph, node: onnx.NodeProto) -> None:
    for name in node.input[:2]:
        if g.from_dq(name) is None:
            raise _fail("quantized-inputs", node, f"input '{name}' is not quantized")
    weight_dq = g.from_dq(node.input[1])
    weight = _weight_array(g, weight_dq)
    if weight is None:
        raise _fail("quantized-inputs", node, "the weight is not a quantized constant")
    axis = _output_axis(node)
    scale = g.array(weight_dq.input[1])
    if scale is None:
        raise _fail("positive-scale", weight_dq, "the weight scale is not a constant")
    dq_axis = next((a.i for a in weight_dq.attribute if a.name == "axis"), 1)
    channels = weight.shape[axis]
    if channels > 1 and (scale.size != channels or dq_axis % weight.ndim != axis):
        raise _fail(
            "weight-per-channel",
            node,
            f"{scale.size} weight scale(s) on axis {dq_axis} for {channels} output channels "
            f"on axis {axis}",
        )
    if len(node.input) > 2 and node.input[2]:
        bias = node.input[2]
        if g.from_dq(bias) is not None or g.array(bias) is None:
            raise _fail("float-bias", node, f"bias '{bias}' is not a float initializer")
        if g.array(bias).dtype.kind != "f":
            raise _fail("float-bias", node, f"bias '{bias}' is {g.array(bias).dtype}")


def _weight_array(g: _Graph, dq: onnx.NodeProto) -> np.ndarray | None:
    """The stored weight behind a DequantizeLinear: int8 initializer or Q over a float one."""
    source = dq.input[0]
    q = g.producer.get(source)
    if q is not None and q.op_type == "QuantizeLinear":
        source = q.input[0]
    return g.array(source)


def _output_axis(node: onnx.NodeProto) -> int:
    """Axis of the output channels in the weight: 0 for Conv and Gemm(transB=1), else 1."""
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 0
