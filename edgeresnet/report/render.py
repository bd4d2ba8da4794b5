"""Render merged rows as report.md and a self-contained report.html (plots embedded)."""

from __future__ import annotations

import base64
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2

from edgeresnet.report.plots import scatter, y_metric
from edgeresnet.report.schema import Row, rows_of

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("edgeresnet.report", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def write_report(
    documents: dict[str, dict[str, Any]], out_dir: Path, *, command: str
) -> list[Path]:
    """Write report.md, report.html and the plots for ``documents`` (source name -> results)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [row for source, doc in documents.items() for row in rows_of(doc, source)]
    plots = [
        scatter(
            rows,
            "p50_ms",
            "Batch-1 latency p50 (ms)",
            out_dir / "accuracy_vs_latency.png",
            title="Accuracy vs latency",
        ),
        scatter(
            rows,
            "size_mb",
            "Artifact size (MB = 10^6 bytes)",
            out_dir / "accuracy_vs_size.png",
            title="Accuracy vs size",
        ),
    ]
    plots = [p for p in plots if p is not None]
    context = {
        "command": command,
        "producers": [
            d["producer"]["command"]
            for d in documents.values()
            if d.get("producer", {}).get("command")
        ],
        "tables": _tables(rows),
        "metric": y_metric(rows)[1],
        "any_random": any(r.random_weights for r in rows),
        "provenance": [_provenance(source, doc) for source, doc in documents.items()],
        "plots": [p.name for p in plots],
        "embedded": {p.name: base64.b64encode(p.read_bytes()).decode() for p in plots},
    }
    written = []
    for name in ("report.md", "report.html"):
        text = _TEMPLATES.get_template(f"{name}.j2").render(**context)
        path = out_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written + plots


def _tables(rows: list[Row]) -> list[dict[str, Any]]:
    """One table per device; each row carries its ratios to the FP32 row of its target."""
    by_device: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_device[row.device].append(row)
    tables = []
    for device, device_rows in sorted(by_device.items()):
        baselines = {r.target: r for r in device_rows if r.variant == "fp32"}
        entries = []
        for r in device_rows:
            base = baselines.get(r.target)
            entries.append({"row": r, "cells": _cells(r, base)})
        tables.append({"device": device, "entries": entries})
    return tables


def _cells(r: Row, base: Row | None) -> dict[str, str]:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    def ratio(value: float | None, ref: float | None) -> str:
        return "-" if value is None or not ref else f"{value / ref:.2f}x"

    if r.top1 is None:
        top1 = "n/a (random weights)" if r.random_weights else "-"
    else:
        drop = (
            ""
            if base is None or base.top1 is None or base is r
            else f" ({r.top1 - base.top1:+.2f})"
        )
        top1 = f"{r.top1:.2f}{drop}"
    return {
        "precision": r.precision
        if r.executed in (r.precision, "not measured")
        else f"{r.precision} (ran {r.executed})",
        "size": num(r.size_mb, ".1f"),
        "size_ratio": ratio(r.size_mb, base.size_mb if base else None),
        "params": num(r.params / 1e6 if r.params else None, ".2f"),
        "gmacs": num(r.gmacs, ".2f"),
        "top1": top1,
        "agreement": num(r.agreement, ".1f"),
        "sqnr": num(r.sqnr_db, ".1f"),
        "p50": num(r.p50_ms, ".2f"),
        "p90": num(r.p90_ms, ".2f"),
        "p99": num(r.p99_ms, ".2f"),
        "p50_ratio": ratio(r.p50_ms, base.p50_ms if base else None),
        "throughput": "-" if r.throughput is None else f"{r.throughput:.0f} @{r.throughput_batch}",
        "load": num(r.load_s, ".2f"),
        "rss": num(r.peak_rss_mb, ".0f"),
        "threads": "-" if r.threads is None else str(r.threads),
    }


def _provenance(source: str, doc: dict[str, Any]) -> dict[str, Any]:
    data = doc.get("data") or {}
    return {
        "source": source,
        "created": doc.get("created_utc", "?"),
        "producer": doc.get("producer", {}),
        "device": doc["device"],
        "environment": doc.get("environment", {}),
        "model": {k: v for k, v in doc["model"].items() if k != "weights"},
        "weights": doc["model"].get("weights", {}),
        "calibration": data.get("calibration"),
        "evaluation": data.get("evaluation"),
        "target": {k: v for k, v in doc["target"].items() if k != "profile"},
        "builds": {row["variant"]: row.get("build") for row in doc["rows"] if row.get("build")},
    }
