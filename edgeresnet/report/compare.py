"""Peer comparison: edgeresnet's variants against what a user would build by hand, as ratios.

A peer run (``edgeresnet bench --compare-peers``) writes one row per peer. Each peer names its
counterparts (backend, variant), e.g. ONNX Runtime's ``quantize_static`` with all defaults is
compared with edgeresnet's ``onnxruntime`` ``int8``. Ratios come from the same run where the peer
run re-measured edgeresnet's bundles (``--against``), else from the build results on the same
device, and the report says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeresnet.report.rows import Row, Runs


@dataclass(frozen=True)
class PeerLine:
    """One peer, the edgeresnet variant it is compared with, and the fastest edgeresnet variant."""

    peer: Row
    counterpart: Row | None
    fastest: Row | None


@dataclass(frozen=True)
class PeerComparison:
    device: str
    source: str
    same_run: bool  # edgeresnet rows were re-measured in the peer run itself
    lines: list[PeerLine]
    variants: list[Row]  # the edgeresnet rows the ratios use

    @property
    def peers(self) -> list[Row]:
        return [line.peer for line in self.lines]


def ratio(value: float | None, reference: float | None) -> str:
    """``value / reference`` as "0.23x", or "-" when either is unknown."""
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def peer_comparisons(rows: list[Row]) -> list[PeerComparison]:
    """One comparison per peer run (results file and device) among ``rows``."""
    runs: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if row.peer is not None:
            runs.setdefault((row.source, row.device), []).append(row)
    comparisons = []
    for (source, device), peers in runs.items():
        same = [r for r in rows if r.source == source and r.retimed]
        model = (peers[0].model, peers[0].input_size)
        pool = same or [
            r
            for r in rows
            if r.candidate and r.device == device and (r.model, r.input_size) == model
        ]
        timed = [r for r in pool if r.p50_ms is not None]
        fastest = min(timed, key=lambda r: r.p50_ms or 0.0) if timed else None
        lines = [PeerLine(p, _counterpart(p, pool), fastest) for p in peers]
        comparisons.append(PeerComparison(device, source, bool(same), lines, pool))
    return comparisons


def headlines(comparison: PeerComparison, runs: Runs | None = None) -> list[str]:
    """Sentences such as "edgeresnet onnx int8 p50 / ORT quantize_static defaults p50 = 0.23x".

    With ``runs``, a variant is named with its model and run where merged runs need telling apart.
    """
    out = []
    for line in comparison.lines:
        for mine, what in ((line.counterpart, "counterpart"), (line.fastest, "fastest")):
            if mine is None or mine.p50_ms is None or line.peer.p50_ms is None:
                continue
            if what == "fastest" and mine is line.counterpart:
                continue
            prefix = "fastest variant, " if what == "fastest" else ""
            tag = runs.of(mine) if runs else ""
            name = f"{mine.target} {mine.variant}" + (f" [{tag}]" if tag else "")
            out.append(
                f"edgeresnet {name} ({prefix}{mine.p50_ms:.2f} ms) p50 / "
                f"{line.peer.peer} ({line.peer.p50_ms:.2f} ms) p50 = "
                f"{ratio(mine.p50_ms, line.peer.p50_ms)}"
            )
    return out


def _counterpart(peer: Row, pool: list[Row]) -> Row | None:
    for backend, variant in peer.counterparts:
        for row in pool:
            if row.backend == backend and row.variant == variant:
                return row
    return None
