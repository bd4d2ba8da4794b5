"""Accuracy-aware INT8 in the report: which layers stayed in float, and what they cost.

A build with ``--max-drop`` adds an ``int8-mixed`` variant (``p30-int8-mixed`` for a pruned
model) whose ``build.accuracy_aware`` record names the layers kept in float. Its latency cost is
read against the all-INT8 variant of the same model, measured in the same build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeresnet.report.compare import ratio
from edgeresnet.report.rows import Row
from edgeresnet.report.schema import number

MIXED_SUFFIX = "int8-mixed"


@dataclass(frozen=True)
class BudgetLine:
    mixed: Row
    int8: Row | None  # the all-INT8 variant of the same model
    budget: str  # e.g. "0.5 top-1 points"
    heldout_drop: float | None
    full_drop: float | None
    full_metric: str  # where it is not the budget's: no labels on all evaluation images
    met: bool | None  # None: disagreement beyond a top-1 budget, which bounds the loss only
    float_layers: tuple[str, ...]

    @property
    def full_drop_text(self) -> str:
        if self.full_drop is None:
            return "-"
        return f"{self.full_drop:.2f}" + (f" ({self.full_metric})" if self.full_metric else "")

    @property
    def verdict(self) -> str:
        return "unknown (no labels)" if self.met is None else "yes" if self.met else "NO"

    @property
    def cost_ms(self) -> float | None:
        if self.int8 is None or self.int8.p50_ms is None or self.mixed.p50_ms is None:
            return None
        return round(self.mixed.p50_ms - self.int8.p50_ms, 2)

    @property
    def cost_ratio(self) -> str:
        return ratio(self.mixed.p50_ms, self.int8.p50_ms if self.int8 else None)


def budget_lines(documents: dict[str, dict[str, Any]], rows: list[Row]) -> list[BudgetLine]:
    """One line per accuracy-aware variant among ``documents`` (source name -> results)."""
    by_key = {(r.source, r.variant): r for r in rows if r.candidate}
    lines = []
    for source, document in documents.items():
        for entry in document["rows"]:
            record = (entry.get("build") or {}).get("accuracy_aware")
            mixed = by_key.get((source, entry["variant"]))
            if not isinstance(record, dict) or mixed is None:
                continue
            plain = entry["variant"].removesuffix(MIXED_SUFFIX) + "int8"
            met = record["met_on_full_set"] if "met_on_full_set" in record else record.get("met")
            full_metric = record.get("full_set_metric")
            lines.append(
                BudgetLine(
                    mixed=mixed,
                    int8=by_key.get((source, plain)),
                    budget=f"{record.get('budget_points')} {record.get('metric', 'points')}",
                    heldout_drop=number(record.get("heldout_drop")),
                    full_drop=number(record.get("full_set_drop")),
                    full_metric=""
                    if full_metric in (None, record.get("metric"))
                    else str(full_metric),
                    met=None if met is None else bool(met),
                    float_layers=tuple(str(n) for n in record.get("float_layers") or ()),
                )
            )
    return lines
