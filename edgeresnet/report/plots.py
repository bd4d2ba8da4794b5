"""Accuracy-vs-latency and accuracy-vs-size plots: one colour per device, Pareto fronts joined."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from edgeresnet.report.rows import NO_BUILD_ROW, Row, Runs, unmeasured_top1  # noqa: E402

_MARKERS = "osD^v<>Pp*"
_PEER_MARKER = "X"


def y_metric(rows: list[Row]) -> tuple[str, str]:
    """Top-1 when real weights were evaluated on labels, else agreement with FP32 (fidelity)."""
    if any(r.top1 is not None and not r.random_weights for r in rows):
        return "top1", "Top-1 accuracy (%)"
    return "agreement", "Top-1 agreement with FP32 (%): fidelity, not accuracy"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower or equal x with higher or equal y."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


@dataclass(frozen=True)
class Plot:
    """A plot written to ``path`` (None where no row had both numbers) and the rows it left out."""

    name: str
    path: Path | None
    left_out: list[tuple[Row, str]] = field(default_factory=list)  # (row, why)


def why_not_plotted(r: Row, x: str, metric: str) -> str | None:
    """Why ``r`` has no point in a plot of ``x`` against ``metric``; None where it has one."""
    note = next((n for n in r.notes if n.startswith("not benchmarked")), None)
    if r.retimed:
        return "re-measured in the peer run (shown in the peer section)"
    if r.remeasured_from is not None:
        return f"not timed in the peer run ({note})" if note else "not timed in the peer run"
    missing = []
    if getattr(r, x) is None:
        if x == "p50_ms":
            missing.append(f"no p50 latency ({note})" if note else "no p50 latency")
        else:
            missing.append("no size")
    if getattr(r, metric) is None:
        if metric == "top1":
            missing.append(f"no top-1 ({unmeasured_top1(r)})")
        elif r.timed_only:
            missing.append(f"no agreement with FP32 ({NO_BUILD_ROW})")
        else:
            missing.append("no agreement with FP32 measured")
    return "; ".join(missing) or None


def scatter(
    rows: list[Row], x: str, xlabel: str, path: Path, *, title: str, runs: Runs | None = None
) -> Plot:
    """Plot ``x`` against the y metric; rows without both numbers are listed, not drawn.

    ``title`` follows the metric's name, e.g. "vs latency": "Accuracy vs latency", or
    "Fidelity (agreement with FP32) vs latency" where no row has a top-1.
    """
    metric, ylabel = y_metric(rows)
    title = f"{'Accuracy' if metric == 'top1' else 'Fidelity (agreement with FP32)'} {title}"
    left_out = [(r, why) for r in rows if (why := why_not_plotted(r, x, metric)) is not None]
    points = [r for r in rows if why_not_plotted(r, x, metric) is None]
    if not points:
        return Plot(path.name, None, left_out)
    devices = sorted({r.device for r in points})
    targets = sorted({r.target for r in points if r.peer is None})
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(10, 6), dpi=110)
    labels: list[tuple[str, tuple[float, float], bool]] = []
    for d, device in enumerate(devices):
        colour = colours(d % 10)
        mine = [r for r in points if r.device == device]
        xy = [(float(getattr(r, x)), float(getattr(r, metric))) for r in mine]
        front = pareto_front(xy)
        ax.plot(
            [xy[i][0] for i in front],
            [xy[i][1] for i in front],
            color=colour,
            linewidth=1.6,
            alpha=0.8,
            zorder=1,
        )
        for i, r in enumerate(mine):
            on_front = i in front
            marker = (
                _PEER_MARKER
                if r.peer is not None
                else _MARKERS[targets.index(r.target) % len(_MARKERS)]
            )
            ax.scatter(
                *xy[i],
                color=colour,
                marker=marker,
                s=110 if on_front else 45,
                edgecolors="black",
                linewidths=1.6 if on_front else 0.4,
                alpha=1.0 if on_front else 0.75,
                zorder=3 if on_front else 2,
            )
            text = r.label if r.peer is None else f"peer: {r.variant}"
            tag = runs.of(r) if runs else ""
            text += f" [{tag}]" if tag else ""
            labels.append((text, xy[i], on_front))
    for d, device in enumerate(devices):
        ax.plot([], [], color=colours(d % 10), linewidth=1.6, label=f"{device} (Pareto front)")
    for j, target in enumerate(targets):
        ax.scatter([], [], color="grey", marker=_MARKERS[j % len(_MARKERS)], label=target)
    if any(r.peer is not None for r in points):
        ax.scatter([], [], color="grey", marker=_PEER_MARKER, label="peer (by hand)")
    ax.set_xlabel(xlabel)
    ax.set_xlim(left=0)
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.08 * (high - low))  # room for labels above the top points
    ax.set_ylabel(ylabel, fontsize=9)
    if any(r.random_weights for r in points):
        title += "\n(random weights: size and speed hold, accuracy does not)"
    shown_out = [r for r, _ in left_out if r.remeasured_from is None]
    if shown_out:
        title += (
            f"\n{len(shown_out)} row(s) not drawn, nor on any Pareto front "
            "(no number for an axis): listed in the report"
        )
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _place_labels(fig, ax, labels)
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
    return Plot(path.name, path, left_out)


# Label offsets tried in turn (points from the marker, alignment): right, above and below on
# the right, then the same on the left.
_DY = (2, -9, 11, -18, 20, -27, 29, -36, 38)
_OFFSETS = [(6, dy, "left") for dy in _DY] + [(-6, dy, "right") for dy in _DY]


def _place_labels(fig: plt.Figure, ax: plt.Axes, labels: list[tuple[str, tuple, bool]]) -> None:
    """Put each label inside the axes where it covers no marker and no label placed before it.

    Front points are labelled first. A label moved away from its point gets a thin leader line;
    where every offset collides, the one with the fewest overlaps is used.
    """
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    markers = [_box(*ax.transData.transform(xy), 5) for _, xy, _ in labels]
    placed = list(markers)
    for text, xy, on_front in sorted(labels, key=lambda item: (not item[2], item[1][0])):
        style = {
            "fontsize": 7,
            "fontweight": "bold" if on_front else "normal",
            "color": "black" if on_front else "#444444",
        }
        own = _box(*ax.transData.transform(xy), 5)
        others = [o for o in placed if o.bounds != own.bounds]
        best = None  # (overlaps, offset): fewest overlaps wins, earlier offsets on ties
        for offset in _OFFSETS:
            note = ax.annotate(
                text, xy, textcoords="offset points", xytext=offset[:2], ha=offset[2], **style
            )
            box = note.get_window_extent(renderer).expanded(1.04, 1.1)
            note.remove()
            if not (inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)):
                continue
            hits = sum(box.overlaps(o) for o in others)
            if best is None or hits < best[0]:
                best = (hits, offset, box)
            if hits == 0:
                break
        _, (dx, dy, align), box = best or (0, _OFFSETS[0], own)
        ax.annotate(text, xy, textcoords="offset points", xytext=(dx, dy), ha=align, **style)
        if abs(dy) > 11:
            ax.annotate(
                "",
                xy,
                textcoords="offset points",
                xytext=(dx, dy + 3),
                arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.5},
            )
        placed.append(box)


def _box(x: float, y: float, r: float) -> Bbox:
    return Bbox.from_extents(x - r, y - r, x + r, y + r)
