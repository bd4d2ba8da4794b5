"""Accuracy-vs-latency and accuracy-vs-size scatter plots, one colour per device."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from edgeresnet.report.schema import Row  # noqa: E402

_MARKERS = "osD^v<>Pp*"


def y_metric(rows: list[Row]) -> tuple[str, str]:
    """Top-1 when real weights were evaluated on labels, else agreement with FP32 (fidelity)."""
    if any(r.top1 is not None and not r.random_weights for r in rows):
        return "top1", "ImageNet-style top-1 accuracy (%)"
    return "agreement", "Top-1 agreement with the FP32 model (%) - fidelity, not accuracy"


def scatter(rows: list[Row], x: str, xlabel: str, path: Path, *, title: str) -> Path | None:
    """Write one scatter plot of ``x`` against the report's y metric; None if nothing to plot."""
    metric, ylabel = y_metric(rows)
    points = [r for r in rows if getattr(r, x) is not None and getattr(r, metric) is not None]
    if not points:
        return None
    devices = sorted({r.device for r in points})
    targets = sorted({r.target for r in points})
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for r in points:
        ax.scatter(
            getattr(r, x),
            getattr(r, metric),
            color=colours(devices.index(r.device) % 10),
            marker=_MARKERS[targets.index(r.target) % len(_MARKERS)],
            s=60,
            edgecolors="black",
            linewidths=0.5,
        )
        ax.annotate(
            f"{r.target}:{r.variant}",
            (getattr(r, x), getattr(r, metric)),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=7,
        )
    for i, device in enumerate(devices):
        ax.scatter([], [], color=colours(i % 10), label=device)
    for j, target in enumerate(targets):
        ax.scatter([], [], color="grey", marker=_MARKERS[j % len(_MARKERS)], label=target)
    ax.set_xlabel(xlabel)
    ax.set_xlim(left=0)
    ax.set_ylabel(ylabel, fontsize=8 if metric == "agreement" else 10)
    if any(r.random_weights for r in points):
        title += "\n(random weights: size and speed hold, accuracy does not)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
