"""Run the peers: in-process sessions for fidelity, fresh-process timing for speed.

Timing goes through the same on-device scripts as edgeresnet's artifacts (``bench_onnxruntime``,
``bench_openvino``) and, for PyTorch, ``torch_bench`` with the same warm-up and percentile rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeresnet.backends import Artifact, Session, get_backend
from edgeresnet.backends.script import run_ondevice, timing_args
from edgeresnet.config import BenchmarkOptions
from edgeresnet.ondevice import bench_onnxruntime
from edgeresnet.peers import byhand
from edgeresnet.peers.byhand import Peer


@dataclass(frozen=True)
class Timing:
    """What every timed row shares: threads, input size and the profile's benchmark options."""

    threads: int
    input_size: int
    options: BenchmarkOptions

    def args(self) -> list[str]:
        return timing_args(self.options, input_size=self.input_size, threads=self.threads)


class TorchSession:
    def __init__(self, model: torch.nn.Module) -> None:
        self._model = model

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._model(torch.from_numpy(batch)).numpy()


def sessions(
    model: torch.nn.Module, files: dict[str, list[Path]], threads: int
) -> dict[str, Session]:
    """A session per peer that was made, plus the FP32 ONNX in ONNX Runtime as "reference"."""
    ort = get_backend("onnxruntime")
    fp32 = files[byhand.ORT_FP32.variant][0]
    out: dict[str, Session] = {
        "reference": ort.load(Artifact("reference", "fp32", fp32), threads=threads),
        byhand.PYTORCH.variant: TorchSession(model),
        byhand.ORT_FP32.variant: ort.load(Artifact("fp32", "fp32", fp32), threads=threads),
    }
    if byhand.ORT_DEFAULT.variant in files:
        path = files[byhand.ORT_DEFAULT.variant][0]
        out[byhand.ORT_DEFAULT.variant] = ort.load(Artifact("int8", "int8", path), threads=threads)
    if has_openvino():
        out.update(_openvino_sessions(files, threads))
    return out


def bench(peer: Peer, file: Path, timing: Timing, *, model: list[str]) -> dict[str, Any]:
    """Time one peer in a fresh process; ``model`` gives PyTorch its --model/--weights/--seed."""
    if peer.runtime == "torch":
        return run_ondevice("edgeresnet.peers.torch_bench", [*model, *timing.args()])
    if peer.runtime == "onnxruntime":
        return run_ondevice(bench_onnxruntime.__name__, ["--model", str(file), *timing.args()])
    hint = ["--device", "CPU", "--precision-hint", peer.hint]
    return run_ondevice(
        "edgeresnet.ondevice.bench_openvino", ["--model", str(file), *hint, *timing.args()]
    )


def has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _openvino_sessions(files: dict[str, list[Path]], threads: int) -> dict[str, Session]:
    import openvino as ov

    from edgeresnet.backends.openvino import OpenVinoSession
    from edgeresnet.ondevice import bench_openvino as script

    core = ov.Core()
    out: dict[str, Session] = {}
    for peer in (byhand.OPENVINO_F32, byhand.NNCF_DEFAULT):
        if peer.variant in files:
            config, _ = script.compile_config(
                core, "CPU", mode="LATENCY", threads=threads, hint=peer.hint
            )
            out[peer.variant] = OpenVinoSession(
                core, files[peer.variant][0], device="CPU", config=config
            )
    return out
