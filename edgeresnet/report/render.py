"""Render merged rows as report.md and a self-contained report.html (plots embedded)."""

from __future__ import annotations

import base64
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2

from edgeresnet.report.budgets import budget_lines
from edgeresnet.report.compare import PeerComparison, headlines, peer_comparisons, ratio
from edgeresnet.report.plots import scatter, y_metric
from edgeresnet.report.schema import Row, rows_of
from edgeresnet.report.select import RANKING, Constraints, select

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("edgeresnet.report", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def write_report(
    documents: dict[str, dict[str, Any]],
    out_dir: Path,
    *,
    command: str,
    constraints: Constraints | None = None,
    skipped: list[str] | None = None,
    regenerate: str | None = None,
) -> list[Path]:
    """Write report.md, report.html and the plots for ``documents`` (source name -> results).

    ``constraints`` adds a selection section; ``skipped`` names results files that could not be
    read (and why); ``regenerate`` is a second command that rebuilds the report from copies.
    """
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
    baselines = _baselines(rows)
    context = {
        "command": command,
        "regenerate": regenerate,
        "skipped": skipped or [],
        "producers": [_producer(source, d) for source, d in documents.items()],
        "across": [_entry(r, baselines) for r in rows if r.candidate],
        "baselines": [_entry(r, baselines) for r in rows if r.candidate and r.variant == "fp32"],
        "tables": _tables(rows, baselines),
        "peers": [_peer_section(c, baselines) for c in peer_comparisons(rows)],
        "budgets": budget_lines(documents, rows),
        "paired": [r for r in rows if r.paired is not None],
        "selection": _selection(rows, constraints, baselines) if constraints else None,
        "metric": y_metric(rows)[1],
        "any_random": any(r.random_weights for r in rows),
        "measurements": [_entry(r, baselines) for r in rows],
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


def _baselines(rows: list[Row]) -> dict[tuple[str, str], Row]:
    """The FP32 row of each (device, target): what the "x FP32" ratios divide by."""
    return {r.group: r for r in rows if r.candidate and r.variant == "fp32"}


def _entry(r: Row, baselines: dict[tuple[str, str], Row]) -> dict[str, Any]:
    base = baselines.get(r.group) if r.candidate else None
    return {"row": r, "cells": _cells(r, base), "baseline": base is r}


def _tables(rows: list[Row], baselines: dict[tuple[str, str], Row]) -> list[dict[str, Any]]:
    """One table per device: its edgeresnet rows, then the peers measured on it."""
    by_device: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row.remeasured_from is None:
            by_device[row.device].append(row)
    return [
        {
            "device": device,
            "entries": [
                _entry(r, baselines) for r in sorted(device_rows, key=lambda r: r.peer is not None)
            ],
        }
        for device, device_rows in sorted(by_device.items())
    ]


def _cells(r: Row, base: Row | None) -> dict[str, str]:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

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
        "weights": f"{r.weights} (random)"
        if r.random_weights and r.weights != "random"
        else r.weights,
        "size": num(r.size_mb, ".1f"),
        "size_ratio": ratio(r.size_mb, base.size_mb if base else None),
        "params": num(r.params / 1e6 if r.params else None, ".2f"),
        "gmacs": num(r.gmacs, ".2f"),
        "top1": top1,
        "top1_short": "n/a" if r.top1 is None and r.random_weights else top1,
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
        "power": num(r.power_w, ".1f"),
        "per_joule": num(r.samples_per_joule, ".1f"),
        "streams": "-" if r.streams is None else str(r.streams),
    }


def _peer_section(
    comparison: PeerComparison, baselines: dict[tuple[str, str], Row]
) -> dict[str, Any]:
    lines = []
    for line in comparison.lines:
        peer, mine, fast = line.peer, line.counterpart, line.fastest
        lines.append(
            {
                "peer": _entry(peer, baselines),
                "counterpart": mine,
                "p50_ratio": ratio(mine.p50_ms if mine else None, peer.p50_ms),
                "fps_ratio": ratio(mine.throughput if mine else None, peer.throughput),
                "size_ratio": ratio(mine.size_mb if mine else None, peer.size_mb),
                "fastest": fast,
                "fastest_ratio": ratio(fast.p50_ms if fast else None, peer.p50_ms),
            }
        )
    matrix = [
        {"row": r, "ratios": [ratio(r.p50_ms, p.p50_ms) for p in comparison.peers]}
        for r in comparison.variants
    ]
    return {
        "device": comparison.device,
        "source": comparison.source,
        "same_run": comparison.same_run,
        "lines": lines,
        "headlines": headlines(comparison),
        "peers": comparison.peers,
        "matrix": matrix,
    }


def _selection(
    rows: list[Row], constraints: Constraints, baselines: dict[tuple[str, str], Row]
) -> dict[str, Any]:
    chosen = select(rows, constraints)
    return {
        "constraints": constraints.describe() or ["none"],
        "ranking": RANKING,
        "chosen": [_entry(r, baselines) for r in chosen.chosen],
        "excluded": [{"row": v.row, "reasons": "; ".join(v.reasons)} for v in chosen.excluded],
    }


def _producer(source: str, doc: dict[str, Any]) -> dict[str, Any]:
    producer = doc.get("producer") or {}
    load = producer.get("load_average")
    return {
        "source": source,
        "command": producer.get("command") or producer.get("tool") or "?",
        "load": _load_text(load) if load else "",
    }


def _load_text(load: Any) -> str:
    if isinstance(load, dict):
        return "; ".join(
            f"{k}: {' '.join(f'{v:.2f}' for v in values)}"
            for k, values in load.items()
            if isinstance(values, list)
        )
    return str(load)


def _provenance(source: str, doc: dict[str, Any]) -> dict[str, Any]:
    data = doc.get("data") or {}
    model = doc["model"]
    return {
        "source": source,
        "created": doc.get("created_utc", "?"),
        "schema_version": doc.get("schema_version"),
        "producer": doc.get("producer") or {},
        "device": {
            key: doc["device"].get(key, "?")
            for key in ("name", "cpu", "arch", "physical_cores", "logical_cores", "memory_gb", "os")
        }
        | {"isa": doc["device"].get("isa") or [], "board": doc["device"].get("board")},
        "environment": doc.get("environment") or {},
        "model": {k: v for k, v in model.items() if k not in ("weights", "preprocess")},
        "weights": model.get("weights") or {},
        "calibration": data.get("calibration"),
        "evaluation": data.get("evaluation"),
        "target": {k: v for k, v in doc["target"].items() if k != "profile"},
        "builds": {
            row["variant"]: row.get("build")
            for row in doc["rows"]
            if isinstance(row.get("build"), dict)
        },
    }
