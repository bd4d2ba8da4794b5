"""Accuracy recovery after pruning: BatchNorm re-estimation, then knowledge distillation.

Both use unlabelled images only; distillation learns from the unpruned FP32 model's logits.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeresnet.progress import console, progress_bar, warn

# Training images for one epoch, shuffled by the epoch number: class-sorted batches would
# train every step on one class and wreck BatchNorm's batch statistics.
Batches = Callable[[int], Iterable[np.ndarray]]

# Fewer images than this give BatchNorm statistics noisy enough to cost a pruned model more than
# re-estimating them recovers (the embedded calibration set has 6).
STEADY_BN_IMAGES = 100


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable[np.ndarray]) -> int:
    """Replace BN running statistics with exact averages over ``batches``; returns images seen."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average instead of an exponential one
    model.train()
    seen = 0
    with progress_bar("re-estimating BatchNorm", total=None) as advance, channels_last(model):
        for x in batches:
            model(_nhwc(x))
            seen += len(x)
            advance(len(x))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()
    return seen


@dataclass(frozen=True)
class DistillOptions:
    steps: int
    lr: float = 1e-3
    temperature: float = 4.0
    eval_every: int = 10


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Batches,
    holdout: np.ndarray,
    options: DistillOptions,
) -> dict[str, Any]:
    """Train ``student`` to match ``teacher``'s softened logits for at most ``options.steps``.

    Ctrl-C stops early; the student keeps the weights with the lowest held-out loss so far.
    """
    teacher.eval()
    with channels_last(student), channels_last(teacher):
        return _distill(student, teacher, batches, holdout, options)


def _distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Batches,
    holdout: np.ndarray,
    options: DistillOptions,
) -> dict[str, Any]:
    optimizer = torch.optim.AdamW(student.parameters(), lr=options.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(options.steps, 1))
    holdout_t = _nhwc(holdout)
    with torch.no_grad():
        target = teacher(holdout_t)
    best_loss = _holdout_loss(student, holdout_t, target, options.temperature)
    initial, best_state, best_step = best_loss, copy.deepcopy(student.state_dict()), 0
    step, measured, stepping, interrupted = 0, 0, False, False
    started = time.perf_counter()

    def measure() -> None:
        nonlocal best_loss, best_step, best_state, measured
        current = _holdout_loss(student, holdout_t, target, options.temperature)
        measured = step
        if current < best_loss:
            best_loss, best_step = current, step
            best_state = copy.deepcopy(student.state_dict())

    try:
        with progress_bar("distilling", total=options.steps) as advance:
            for x in _cycle(batches):
                if step >= options.steps:
                    break
                student.train()
                loss = _kd_loss(student, teacher, _nhwc(x), options.temperature)
                optimizer.zero_grad()
                loss.backward()
                stepping = True  # the weights are part-way through an update until it ends
                optimizer.step()
                schedule.step()
                stepping = False
                step += 1
                advance(1)
                if step % options.eval_every == 0 or step == options.steps:
                    measure()
    except KeyboardInterrupt:
        interrupted = True
        if measured < step and not stepping:
            measure()  # the steps since the last measurement count too
        console.print(f"  distillation stopped at step {step}; keeping step {best_step}")
    if step and not best_step:
        warn(
            f"no distillation step lowered the loss on the {len(holdout)} held-out image(s): "
            "the model is kept as it was before distillation"
            if measured
            else "distillation stopped before its first step was measured on the held-out "
            "images: the model is kept as it was before distillation"
        )
    student.load_state_dict(best_state)
    student.eval()
    return {
        "steps_run": step,
        "best_step": best_step,
        "interrupted": interrupted,
        "holdout_kd_loss_before": round(initial, 5),
        "holdout_kd_loss_after": round(best_loss, 5),
        "lr": options.lr,
        "temperature": options.temperature,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _kd_loss(student: nn.Module, teacher: nn.Module, x: torch.Tensor, t: float) -> torch.Tensor:
    with torch.no_grad():
        soft = torch.log_softmax(teacher(x) / t, dim=1)
    log_p = torch.log_softmax(student(x) / t, dim=1)
    return nn.functional.kl_div(log_p, soft, log_target=True, reduction="batchmean") * t * t


@torch.no_grad()
def _holdout_loss(student: nn.Module, x: torch.Tensor, target: torch.Tensor, t: float) -> float:
    student.eval()
    soft = torch.log_softmax(target / t, dim=1)
    log_p = torch.log_softmax(student(x) / t, dim=1)
    value = nn.functional.kl_div(log_p, soft, log_target=True, reduction="batchmean") * t * t
    return float(value) if math.isfinite(float(value)) else float("inf")


def _cycle(batches: Batches) -> Iterator[np.ndarray]:
    """Endless passes over the training images, each epoch shuffled differently."""
    for epoch in itertools.count():
        yield from batches(epoch)


@contextlib.contextmanager
def channels_last(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in NHWC inside the block (about 1.5x faster on CPUs), then back to NCHW.

    Weights leave in the contiguous layout that safetensors and the ONNX export expect.
    """
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)


def _nhwc(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
