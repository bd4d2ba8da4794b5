"""Accuracy and fidelity metrics, and the export check, on hand-made logits."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edgeresnet.errors import VerificationError
from edgeresnet.evaluate import accuracy, collect_logits, fidelity


def test_accuracy_top1_top5():
    logits = np.array([[9, 1, 2, 3, 4, 5], [5, 9, 2, 3, 4, 1], [0, 1, 2, 3, 4, 5]], np.float32)
    result = accuracy(logits, np.array([0, 0, 0]))
    assert result == {"top1": pytest.approx(33.333), "top5": pytest.approx(66.667), "images": 3}
    # Five classes or fewer: every label is in the top 5, so there is no top-5 figure to give.
    five = accuracy(logits[:, :5], np.array([0, 0, 4]))
    assert five == {"top1": pytest.approx(66.667), "top5": None, "images": 3}


def test_fidelity_identical_and_perturbed():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 10)).astype(np.float32)
    same = fidelity(ref, ref.copy())
    assert same["top1_agreement"] == 100.0 and same["mean_kl"] == 0 and same["sqnr_db"] is None
    noisy = fidelity(ref, ref + 0.1 * rng.standard_normal(ref.shape).astype(np.float32))
    assert 18.0 < noisy["sqnr_db"] < 22.0  # noise 0.1 of unit signal: 20 dB
    assert noisy["mean_kl"] > 0
    flipped = fidelity(ref, -ref)
    assert flipped["top1_agreement"] < 30.0
    assert same["reference_classes"] == len(set(ref.argmax(axis=1))) > 5
    one_class = ref.copy()
    one_class[:, 3] += 100.0  # an untrained network's habit: the same class for every input
    assert fidelity(one_class, one_class)["reference_classes"] == 1
    # Plain Python numbers: a report rendered fresh reads the same as one rendered from JSON.
    assert all(type(v) in (int, float) for v in noisy.values()), noisy
    assert repr(noisy) == repr(json.loads(json.dumps(noisy)))


class Doubler:
    def run(self, batch):
        return batch.reshape(len(batch), -1) * 2


def test_collect_logits_runs_every_session_on_the_same_batches():
    batches = [
        (np.ones((2, 3), np.float32), np.array([0, 1])),
        (np.zeros((1, 3), np.float32), np.array([2])),
    ]
    logits, labels = collect_logits({"a": Doubler(), "b": Doubler()}, batches, total=3)
    assert logits["a"].shape == (3, 3) and np.array_equal(logits["a"], logits["b"])
    assert labels.tolist() == [0, 1, 2]


class _CheckImages:
    """The one batch of check images ``Stages._verify_export`` draws."""

    def __len__(self):
        return 2

    def subset(self, n, seed=0):
        return self

    def batches(self, preprocess, size):
        yield np.zeros((2, 3, 32, 32), np.float32), None


class _Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits)

    def forward(self, x):
        return self.logits


def _verify_export(monkeypatch, pytorch, onnx):
    """The export check on PyTorch logits ``pytorch`` and ONNX Runtime logits ``onnx``."""
    from edgeresnet import stages

    class Backend:
        def load(self, artifact, threads):
            return SimpleNamespace(run=lambda x: onnx)

    monkeypatch.setattr(stages, "get_backend", lambda name: Backend())
    context = SimpleNamespace(preprocess=None)
    return stages.Stages._verify_export(context, _Fixed(pytorch), Path("m.onnx"), _CheckImages())


def test_export_check_refuses_outputs_that_are_not_finite(monkeypatch):
    good = np.array([[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]], np.float32)
    assert _verify_export(monkeypatch, good, good.copy())["top1_agreement"] == 100.0
    nan = np.full_like(good, np.nan)  # e.g. a BatchNorm running_var below 0
    # NaN on both sides once passed: NaN logits agree on argmax 0, and a NaN SQNR is never < 60.
    with pytest.raises(VerificationError, match="model's outputs are not finite") as info:
        _verify_export(monkeypatch, nan, nan.copy())
    assert "2 of 2 check images" in info.value.message and "running_var" in info.value.hint
    inf = good.copy()
    inf[1, 0] = np.inf
    with pytest.raises(VerificationError, match="1 of 2 check images"):
        _verify_export(monkeypatch, inf, good)
    with pytest.raises(VerificationError, match="exported FP32 ONNX's outputs are not finite"):
        _verify_export(monkeypatch, good, nan)
