"""Reading results.json files (schema ``edgeresnet.results``) into flat report rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeresnet.errors import ReportError
from edgeresnet.ondevice.common import SCHEMA, SCHEMA_VERSION

_REQUIRED = ("schema_version", "device", "model", "target", "rows")
MB = 1_000_000  # reports use MB = 10^6 bytes throughout


@dataclass(frozen=True)
class Row:
    """One measured variant on one device, with what is needed to read its numbers."""

    source: str
    device: str
    target: str
    runtime: str
    variant: str
    precision: str
    executed: str
    weights: str
    random_weights: bool
    threads: int | None
    params: int | None
    gmacs: float | None
    size_mb: float | None
    top1: float | None
    top5: float | None
    agreement: float | None
    sqnr_db: float | None
    mean_kl: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    throughput: float | None
    throughput_batch: int | None
    load_s: float | None
    peak_rss_mb: float | None
    notes: tuple[str, ...] = ()

    @property
    def group(self) -> tuple[str, str]:
        return (self.device, self.target)


def load_results(path: Path) -> dict[str, Any]:
    """Load one results.json, refusing files of another kind or a newer schema."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path} is not a readable JSON file: {exc}.") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ReportError(
            f'{path} is not an edgeresnet results file (no "schema": "{SCHEMA}").',
            hint="Pass results.json files written by `edgeresnet build` or a bundle's scripts.",
        )
    missing = [key for key in _REQUIRED if key not in document]
    if missing:
        raise ReportError(f"{path} lacks the field(s) {', '.join(missing)}.")
    version = document["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ReportError(
            f"{path} has schema version {version!r}; this edgeresnet reads up to {SCHEMA_VERSION}.",
            hint="Upgrade edgeresnet to read it.",
        )
    return document


def rows_of(document: dict[str, Any], source: str) -> list[Row]:
    """Flatten a results document into rows; a missing measurement becomes None."""
    model, target = document["model"], document["target"]
    weights = model.get("weights", {})
    macs = model.get("macs")
    rows = []
    for entry in document["rows"]:
        bench = entry.get("bench") or {}
        latency = bench.get("latency") or {}
        throughput = bench.get("throughput") or {}
        accuracy = entry.get("accuracy") or {}
        fid = entry.get("fidelity") or {}
        size = (entry.get("artifact") or {}).get("bytes")
        rows.append(
            Row(
                source=source,
                device=document["device"].get("name", "unknown"),
                target=target.get("name", "?"),
                runtime=f"{bench.get('runtime', target.get('backend', '?'))} "
                f"{bench.get('runtime_version', '')}".strip(),
                variant=entry["variant"],
                precision=entry.get("precision", "?"),
                executed=(bench.get("precision_executed") or {}).get("label", "not measured"),
                weights=weights.get("name") or weights.get("kind", "?"),
                random_weights=weights.get("kind") == "random",
                threads=bench.get("threads"),
                params=entry.get("params", model.get("params")),
                gmacs=round(entry.get("macs", macs) / 1e9, 3) if entry.get("macs", macs) else None,
                size_mb=round(size / MB, 2) if size else None,
                top1=accuracy.get("top1"),
                top5=accuracy.get("top5"),
                agreement=fid.get("top1_agreement"),
                sqnr_db=fid.get("sqnr_db"),
                mean_kl=fid.get("mean_kl"),
                p50_ms=latency.get("p50_ms"),
                p90_ms=latency.get("p90_ms"),
                p99_ms=latency.get("p99_ms"),
                throughput=throughput.get("images_per_s"),
                throughput_batch=throughput.get("batch"),
                load_s=bench.get("load_s"),
                peak_rss_mb=bench.get("peak_rss_mb"),
                notes=tuple(entry.get("notes") or ()),
            )
        )
    return rows
