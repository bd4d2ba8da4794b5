"""Accuracy-aware INT8: rank layers by what quantizing them costs, keep the worst in float.

The search measures in the target's own runtime, through two callables a build provides:
``quantize(excluded)`` makes the INT8 artifact with those layers kept in float, ``run(artifact)``
returns its logits on the held-out images. Each backend expresses "kept in float" its own way
(ONNX Runtime nodes to exclude, NNCF ignored scope, Q/DQ left out for TensorRT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from edgeresnet.evaluate import fidelity
from edgeresnet.progress import progress_bar

# Every node INT8 quantization puts between Q/DQ pairs in a ResNet: keeping only the convs in
# float left a 4-point drop on the digits ResNet, carried by the residual Adds and pools.
QUANTIZABLE = ("Conv", "Gemm", "MatMul", "Add", "MaxPool", "AveragePool", "GlobalAveragePool")

# Held-out images the ranking runs on (the budget search uses all of them): the ranking compares
# KL divergences to FP32, which settle on far fewer images than a top-1 drop of half a point.
RANKING_IMAGES = 100


def candidate_layers(fp32_onnx: str) -> list[str]:
    """Names of the nodes INT8 quantization quantizes, in graph order."""
    graph = onnx.load(fp32_onnx, load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in QUANTIZABLE]


@dataclass
class Measure:
    """How far one artifact's logits are from the FP32 reference on the held-out images."""

    reference: np.ndarray
    labels: np.ndarray | None

    @property
    def metric(self) -> str:
        return "top-1 points" if self.labels is not None else "top-1 agreement points"

    def drop(self, logits: np.ndarray) -> float:
        """Top-1 points lost against FP32 (or points of disagreement without labels)."""
        if self.labels is None:
            return round(100.0 - fidelity(self.reference, logits)["top1_agreement"], 3)
        ref = float((self.reference.argmax(1) == self.labels).mean())
        got = float((logits.argmax(1) == self.labels).mean())
        return round(100.0 * (ref - got), 3)

    def kl(self, logits: np.ndarray) -> float:
        return fidelity(self.reference, logits)["mean_kl"]


@dataclass
class Outcome:
    excluded: list[str]
    drop: float
    met: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def rank_layers(
    candidates: Sequence[str],
    quantize: Callable[[tuple[str, ...]], Any],
    run: Callable[[Any], np.ndarray],
    measure: Measure,
) -> list[dict[str, Any]]:
    """Quantize one layer at a time, every other one in float; rank by the KL to FP32 it causes.

    Each layer's own harm, measured alone: keeping one layer at a time in float instead hid every
    layer behind the worst one (a badly calibrated first convolution left the others' gains at
    noise level and put the classifier, needed for the budget, last).
    """
    scores = []
    with progress_bar(f"sensitivity of {len(candidates)} layers", total=len(candidates)) as step:
        for name in candidates:
            others = tuple(c for c in candidates if c != name)
            kl = measure.kl(run(quantize(others)))
            scores.append({"layer": name, "kl": float(f"{kl:.6g}")})
            step(1)
    # Most sensitive first; ties broken by name so the ranking is deterministic.
    return sorted(scores, key=lambda s: (-s["kl"], s["layer"]))


def fit_budget(
    ranking: Sequence[str],
    max_drop: float,
    quantize: Callable[[tuple[str, ...]], Any],
    run: Callable[[Any], np.ndarray],
    measure: Measure,
) -> tuple[Outcome, Any]:
    """Keep the fewest most-sensitive layers in float for which the drop is within budget.

    Tries 0-4 layers, then doubles, then bisects down to the smallest count that meets the
    budget. If none does, returns the artifact with the smallest drop and ``met`` False.
    """
    history: list[dict[str, Any]] = []
    tried: dict[int, tuple[Outcome, Any]] = {}

    def attempt(count: int) -> tuple[Outcome, Any]:
        excluded = tuple(ranking[:count])
        artifact = quantize(excluded)
        drop = measure.drop(run(artifact))
        history.append({"float_layers": count, "drop": drop})
        tried[count] = (Outcome(list(excluded), drop, drop <= max_drop, history), artifact)
        return tried[count]

    low = -1  # largest count known to miss the budget
    for count in _counts(len(ranking)):
        if attempt(count)[0].met:
            high = count
            while high - low > 1:  # smallest count in (low, high] that meets it
                middle = (low + high) // 2
                if attempt(middle)[0].met:
                    high = middle
                else:
                    low = middle
            return tried[high]
        low = count
    return min(tried.values(), key=lambda t: (t[0].drop, len(t[0].excluded)))


def _counts(total: int) -> list[int]:
    """0, 1, 2, 3, 4, then doubling up to every layer."""
    counts, n = [0, 1, 2, 3, 4], 8
    while n < total:
        counts.append(n)
        n *= 2
    return [c for c in counts if c < total] + [total]
