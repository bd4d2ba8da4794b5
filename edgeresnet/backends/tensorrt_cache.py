"""TensorRT's INT8 calibration cache (text format), written from our own calibration statistics.

Implicit INT8 (TensorRT 8.x, and DLA on any version) reads per-tensor scales from a cache
instead of calibrating on the device. The layout is TensorRT's own: a header line
``TRT-<version>-<algorithm>`` (version major*1000+minor*100+patch before TensorRT 10,
major*10000+minor*100+patch from 10 on), then ``tensor_name: <hex>`` per tensor, where hex
is the big-endian bit pattern of the float32 scale, and scale = max(|min|, |max|) / 127.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgeresnet.errors import VerificationError
from edgeresnet.ondevice.trt_runtime import CALIBRATION_ALGORITHM, version_code

CACHE_NAME = "calibration.cache"
# The only calibrator DLA accepts; build_engine.py reads the cache through the same class.
ALGORITHM = CALIBRATION_ALGORITHM
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")


@dataclass(frozen=True)
class CalibrationCache:
    version: int
    algorithm: str
    scales: dict[str, float]


def render(scales: Mapping[str, float], *, version: int, algorithm: str = ALGORITHM) -> str:
    lines = [f"TRT-{version}-{algorithm}"]
    lines += [f"{name}: {struct.pack('>f', scale).hex()}" for name, scale in scales.items()]
    return "\n".join(lines) + "\n"


def parse(text: str) -> CalibrationCache:
    """Read a cache written by TensorRT or by ``render``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    header = _HEADER.match(lines[0]) if lines else None
    if header is None:
        raise VerificationError(
            f"Not a TensorRT calibration cache: first line {lines[:1]!r}.",
            hint="The first line must look like TRT-8601-EntropyCalibration2.",
        )
    scales = {}
    for n, line in enumerate(lines[1:], 2):
        name, sep, value = line.rpartition(": ")
        if not sep or not name:
            raise VerificationError(f"Calibration cache line {n} has no tensor name: {line!r}.")
        try:
            scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
        except (ValueError, struct.error):
            raise VerificationError(f"Calibration cache line {n} is malformed: {line!r}.") from None
    return CalibrationCache(int(header[1]), header[2], scales)


def activation_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of the float tensors computed from the graph input (not weights), in graph order."""
    initializers = {t.name for t in model.graph.initializer}
    live = [i.name for i in model.graph.input if i.name not in initializers]
    seen = set(live)
    for node in model.graph.node:
        if any(name in seen for name in node.input):
            new = [out for out in node.output if out and out not in seen]
            live += new
            seen.update(new)
    return live


def write(
    path: Path,
    fp32_onnx: Path,
    ranges: Mapping[str, tuple[float, float]],
    *,
    version: str,
    float_nodes: Sequence[str] = (),
) -> dict[str, object]:
    """Write the cache for ``fp32_onnx``'s activation tensors; returns what it covered.

    The tensors into and out of ``float_nodes`` get no scale: built from this cache (implicit
    quantization), TensorRT runs those layers in float, as the Q/DQ ONNX leaves them.
    """
    model = onnx.load(str(fp32_onnx), load_external_data=False)
    names = activation_tensors(model)
    wanted = set(float_nodes)
    kept_float = {t for n in model.graph.node if n.name in wanted for t in (*n.input, *n.output)}
    scales: dict[str, float] = {}
    for name in names:
        if name in ranges and name not in kept_float:
            amax = max(abs(ranges[name][0]), abs(ranges[name][1]))
            if amax > 0:
                scales[name] = amax / 127.0
    missing = [n for n in names if n not in scales and n not in kept_float]
    code = version_code(version)
    path.write_text(render(scales, version=code), encoding="ascii")
    return {
        "file": path.name,
        "format": f"TensorRT calibration cache, header TRT-{code}-{ALGORITHM}",
        "tensors": len(scales),
        "activation_tensors": len(names),
        "missing": missing,
        "float_tensors": [n for n in names if n in kept_float],
        "for": fp32_onnx.name,
    }
