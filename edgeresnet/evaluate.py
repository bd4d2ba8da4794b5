"""Accuracy and fidelity of artifacts, measured from logits their own runtimes produced."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeresnet.progress import progress_bar

if TYPE_CHECKING:
    from edgeresnet.backends import Session


def collect_logits(
    sessions: Mapping[str, Session],
    batches: Iterable[tuple[np.ndarray, np.ndarray | None]],
    *,
    total: int | None = None,
    description: str = "evaluating",
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Run every session on the same batches; returns logits per session and the labels."""
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in sessions}
    labels: list[np.ndarray] = []
    with progress_bar(description, total=total) as advance:
        for x, y in batches:
            for name, session in sessions.items():
                outputs[name].append(np.asarray(session.run(x), dtype=np.float32))
            if y is not None:
                labels.append(y)
            advance(len(x))
    logits = {name: np.concatenate(chunks) for name, chunks in outputs.items()}
    return logits, (np.concatenate(labels) if labels else None)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Top-1 and top-5 accuracy in percent; no top-5 for 5 classes or fewer, where it is 100 %
    by construction."""
    top5 = np.argsort(-logits, axis=1)[:, :5]
    hits1 = top5[:, 0] == labels
    hits5 = (top5 == labels[:, None]).any(axis=1)
    return {
        "top1": round(100.0 * float(hits1.mean()), 3),
        "top5": round(100.0 * float(hits5.mean()), 3) if logits.shape[1] > 5 else None,
        "images": int(labels.size),
    }


def fidelity(reference: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """How closely ``logits`` follow ``reference``: top-1 agreement, mean KL, SQNR, max error.

    ``reference_classes`` counts the distinct classes the reference predicts: an untrained
    network tends to predict one class for every image, where agreement says little.
    Logits holding NaN or infinite values give NaN metrics, which fail no ``<`` threshold: a
    check must refuse them first (``np.isfinite``), as the export check does.
    """
    predicted = np.argmax(reference, axis=1)
    agree = predicted == np.argmax(logits, axis=1)
    p = _log_softmax(reference)
    q = _log_softmax(logits)
    kl = (np.exp(p) * (p - q)).sum(axis=1)
    noise = float(np.sum((reference - logits) ** 2, dtype=np.float64))
    signal = float(np.sum(reference**2, dtype=np.float64))
    # Plain floats (not numpy scalars), so results read the same whether fresh or from the cache.
    sqnr = None if noise == 0 or signal == 0 else round(10.0 * math.log10(signal / noise), 2)
    return {
        "top1_agreement": round(100.0 * float(agree.mean()), 3),
        "mean_kl": float(f"{kl.mean():.6g}"),
        "sqnr_db": sqnr,
        "max_abs_diff": float(f"{np.abs(reference - logits).max():.6g}"),
        "images": int(reference.shape[0]),
        "reference_classes": len(np.unique(predicted)),
    }


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))
