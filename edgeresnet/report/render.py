"""Render merged rows as report.md and a self-contained report.html (plots embedded)."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2

from edgeresnet.publish import merged
from edgeresnet.report.budgets import budget_lines
from edgeresnet.report.compare import PeerComparison, headlines, peer_comparisons, ratio
from edgeresnet.report.plots import Plot, scatter, y_metric
from edgeresnet.report.rows import (
    FROM_BUILD,
    Row,
    Runs,
    all_rows,
    fp32_rows,
    missing_variants,
    rate,
    row_name,
    runs,
    under_load,
)
from edgeresnet.report.schema import device_clashes
from edgeresnet.report.select import RANKING, Constraints, select


class _Verbatim(str):
    """Text a Markdown report shows as it is: a command in a code block."""


def _markdown_text(value: object) -> object:
    """Any value a Markdown template prints: a "|" or a line break from a results file (a
    device or variant name) would end its table cell or row."""
    if value is None or isinstance(value, _Verbatim):
        return value
    return str(value).replace("|", "\\|").replace("\n", " ")


_OPTIONS: dict[str, Any] = {
    "loader": jinja2.PackageLoader("edgeresnet.report", "templates"),
    "trim_blocks": True,
    "lstrip_blocks": True,
    "undefined": jinja2.StrictUndefined,
}
_TEMPLATES = {
    "report.md": jinja2.Environment(**_OPTIONS, finalize=_markdown_text),
    "report.html": jinja2.Environment(**_OPTIONS, autoescape=True),
}


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

    ``constraints`` adds a selection section; ``skipped`` names results files (or rows) that
    could not be read (and why); ``regenerate`` is a second command that rebuilds the report
    from copies. All files are written or none: a failure raises ``OutputError`` and leaves
    ``out_dir`` as it was.
    """
    with merged(out_dir, owned=OWNED) as staging:
        written = render(
            documents,
            staging,
            command=command,
            constraints=constraints,
            skipped=skipped,
            regenerate=regenerate,
        )
    return [out_dir / p.relative_to(staging) for p in written]


# The files a report writes; a report written again into the same folder replaces them all.
OWNED = ("report.md", "report.html", "accuracy_vs_latency.png", "accuracy_vs_size.png")


def render(
    documents: dict[str, dict[str, Any]],
    folder: Path,
    *,
    command: str | None,
    constraints: Constraints | None = None,
    skipped: list[str] | None = None,
    regenerate: str | None = None,
) -> list[Path]:
    """Write the report's files into the existing ``folder``; an ``OSError`` passes through.

    ``command`` None: the report is rendered from its own copies, and ``regenerate`` says how."""
    rows = all_rows(documents)
    named = runs(rows)
    plots = [
        scatter(
            rows,
            "p50_ms",
            "Batch-1 latency p50 (ms)",
            folder / "accuracy_vs_latency.png",
            title="vs latency",
            runs=named,
        ),
        scatter(
            rows,
            "size_mb",
            "Artifact size (MB = 10^6 bytes)",
            folder / "accuracy_vs_size.png",
            title="vs size",
            runs=named,
        ),
    ]
    drawn = [p.path for p in plots if p.path is not None]
    baselines = fp32_rows(rows)

    def entry(r: Row) -> dict[str, Any]:
        return _entry(r, baselines, named)

    context = {
        "command": None if command is None else _Verbatim(command),
        "regenerate": None if regenerate is None else _Verbatim(regenerate),
        "skipped": skipped or [],
        "producers": [_producer(source, d) for source, d in documents.items()],
        "runs": named,
        "tag": named.of,
        "show_power": any(r.power_w is not None or r.samples_per_joule is not None for r in rows),
        # A device's rows together, each device's in the order its files were given.
        "across": [entry(r) for r in sorted(rows, key=lambda r: r.device) if r.candidate],
        "baselines": [entry(r) for r in rows if r.candidate and r.variant == "fp32"],
        "tables": _tables(rows, entry),
        "peers": [
            _peer_section(c, entry, named, _load_warning(documents.get(c.source)))
            for c in peer_comparisons(rows)
        ],
        "budgets": budget_lines(documents, rows),
        "paired": [r for r in rows if r.paired is not None],
        # The build's rows: a peer run's re-timing of one carries its evaluation, not a new one.
        "own_fp32": [r for r in rows if r.candidate and r.to_own_fp32 is not None],
        "selection": _selection(rows, constraints, entry, named) if constraints else None,
        "metric": y_metric(rows)[1],
        "any_random": any(r.random_weights for r in rows),
        "from_build": FROM_BUILD,
        "clashes": device_clashes(documents),
        "missing": missing_variants(rows),
        # An FP32 row the runtime ran at another precision (an unpinned OpenVINO run: bf16).
        "unpinned": [
            f"{row_name(b, named)} ran {b.executed}"
            for b in baselines.values()
            if b.executed not in ("fp32", "not measured")
        ],
        "carried": [(row_name(r, named), r.accuracy_from) for r in rows if r.accuracy_from],
        "random_classes": _fewest_classes(r for r in rows if r.random_weights),
        "under_load": [row_name(r, named) for r in rows if r.candidate and under_load(r)],
        "measurements": [entry(r) for r in rows],
        "provenance": [_provenance(source, doc) for source, doc in documents.items()],
        "plots": [_plot_entry(p, named) for p in plots if p.path is not None],
        "undrawn": [_plot_entry(p, named) for p in plots if p.path is None and p.left_out],
        "embedded": {p.name: base64.b64encode(p.read_bytes()).decode() for p in drawn},
    }
    written = []
    for name in ("report.md", "report.html"):
        text = _TEMPLATES[name].get_template(f"{name}.j2").render(**context)
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written + drawn


def _plot_entry(plot: Plot, named: Runs) -> dict[str, Any]:
    """A plot and, in words, the rows it leaves out (re-measured peer-run copies last)."""
    left_out = sorted(plot.left_out, key=lambda item: item[0].remeasured_from is not None)
    return {
        "name": plot.name,
        "left_out": [{"who": row_name(r, named), "why": why} for r, why in left_out],
    }


def _entry(r: Row, baselines: dict[tuple[str, str, str], Row], named: Runs) -> dict[str, Any]:
    base = baselines.get(r.run) if r.candidate else None
    return {"row": r, "cells": _cells(r, base), "baseline": base is r, "run": named.of(r)}


def _tables(rows: list[Row], entry: Any) -> list[dict[str, Any]]:
    """One table per device: its edgeresnet rows, then the peers measured on it."""
    by_device: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row.remeasured_from is None:
            by_device[row.device].append(row)
    return [
        {
            "device": device,
            "entries": [entry(r) for r in sorted(device_rows, key=lambda r: r.peer is not None)],
        }
        for device, device_rows in sorted(by_device.items())
    ]


def _cells(r: Row, base: Row | None) -> dict[str, str]:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    # Measured by the build on the same file, not by this row's run (``with_build_accuracy``).
    mark = f" {FROM_BUILD}" if r.accuracy_from else ""

    def accuracy(value: float | None, reference: float | None) -> str:
        if value is None:
            return "n/a (random weights)" if r.random_weights else "-"
        drop = "" if reference is None or base is r else f" ({value - reference:+.2f})"
        return f"{value:.2f}{drop}{mark}"

    top1 = accuracy(r.top1, base.top1 if base else None)
    top5 = accuracy(r.top5, base.top5 if base else None)
    return {
        "precision": r.precision_run,
        "weights": f"{r.weights} (random)"
        if r.random_weights and r.weights != "random"
        else r.weights,
        "size": num(r.size_mb, ".1f"),
        "size_ratio": ratio(r.size_mb, base.size_mb if base else None),
        "params": num(r.params / 1e6 if r.params else None, ".2f"),
        "gmacs": num(r.gmacs, ".2f"),
        "top1": top1,
        "top1_short": "n/a" if r.top1 is None and r.random_weights else top1,
        "top5": top5,
        "top5_short": "n/a" if r.top5 is None and r.random_weights else top5,
        "agreement": num(r.agreement, ".1f") + (mark if r.agreement is not None else ""),
        "sqnr": num(r.sqnr_db, ".1f") + (mark if r.sqnr_db is not None else ""),
        "p50": num(r.p50_ms, ".2f"),
        "p90": num(r.p90_ms, ".2f"),
        "p99": num(r.p99_ms, ".2f"),
        "p50_ratio": ratio(r.p50_ms, base.p50_ms if base else None),
        "throughput": _throughput(r),
        "throughput_how": _throughput_how(r),
        "load": num(r.load_s, ".2f"),
        "rss": num(r.peak_rss_mb, ".0f"),
        "threads": "-" if r.threads is None else str(r.threads),
        "power": num(r.power_w, ".1f"),
        "per_joule": num(r.samples_per_joule, ".1f"),
        "streams": _streams(r),
    }


def _throughput(r: Row) -> str:
    """E.g. "245 @8", or "38.3 @8, 2 streams" where several requests ran at once."""
    if r.throughput is None:
        return "-"
    text = f"{rate(r.throughput)} @{'?' if r.throughput_batch is None else r.throughput_batch}"
    if r.throughput_mode:
        streams = r.throughput_streams
        text += f", {streams} streams" if streams is not None else f", {r.throughput_mode} mode"
    return text


def _throughput_how(r: Row) -> str:
    """How the throughput figure was measured, for "Where each number comes from"."""
    if r.throughput is None:
        return "-"
    batch = "?" if r.throughput_batch is None else r.throughput_batch
    if r.throughput_mode:
        parts = [f"{r.throughput_mode} hint"]
        if r.throughput_streams is not None:
            parts.append(f"{r.throughput_streams} streams")
        if r.throughput_requests is not None:
            parts.append(f"{r.throughput_requests} requests in flight")
        return f"{', '.join(parts)}, batch {batch}"
    return f"batch {batch}, one call at a time (batch / its p50)"


def _streams(r: Row) -> str:
    """Streams of the latency run, and of the throughput run where it used others."""
    latency = "-" if r.streams is None else str(r.streams)
    if r.throughput_streams is None or r.throughput_streams == r.streams:
        return latency
    return f"{latency} latency / {r.throughput_streams} throughput"


def _load_warning(document: dict[str, Any] | None) -> str:
    """The peer run's own warning that it was timed under load (``producer.load_warning``)."""
    producer = (document or {}).get("producer")
    warning = producer.get("load_warning") if isinstance(producer, dict) else None
    return str(warning) if warning else ""


def _fewest_classes(rows: Iterable[Row]) -> dict[str, int | None] | None:
    """The fewest distinct classes a random-weight row's FP32 reference predicted, and over how
    many images: the measure of how little its top-1 agreement says."""
    counted = [
        {"classes": r.reference_classes, "images": r.fidelity_images}
        for r in rows
        if r.reference_classes is not None and r.fidelity_images
    ]
    return min(counted, key=lambda c: c["classes"], default=None)


def _peer_section(
    comparison: PeerComparison, entry: Any, named: Runs, load_warning: str = ""
) -> dict[str, Any]:
    def name(r: Row | None) -> str:
        if r is None:
            return "-"
        tag = named.of(r)
        return f"{r.target} {r.variant}" + (f" [{tag}]" if tag else "")

    lines = []
    for line in comparison.lines:
        peer, mine, fast = line.peer, line.counterpart, line.fastest
        lines.append(
            {
                "peer": entry(peer),
                "counterpart": mine,
                "counterpart_name": name(mine),
                "p50_ratio": ratio(mine.p50_ms if mine else None, peer.p50_ms),
                "fps_ratio": ratio(mine.throughput if mine else None, peer.throughput),
                "size_ratio": ratio(mine.size_mb if mine else None, peer.size_mb),
                "fastest_name": name(fast),
                "fastest_ratio": ratio(fast.p50_ms if fast else None, peer.p50_ms),
            }
        )
    matrix = [
        {
            "row": r,
            "name": name(r),
            "ratios": [ratio(r.p50_ms, p.p50_ms) for p in comparison.peers],
        }
        for r in comparison.variants
    ]
    return {
        "device": comparison.device,
        "source": comparison.source,
        "same_run": comparison.same_run,
        "load_warning": load_warning,
        "lines": lines,
        "headlines": headlines(comparison, named),
        "peers": comparison.peers,
        "matrix": matrix,
    }


def _selection(
    rows: list[Row], constraints: Constraints, entry: Any, named: Runs
) -> dict[str, Any]:
    chosen = select(rows, constraints)
    return {
        "constraints": constraints.describe() or ["none"],
        "ranking": RANKING,
        "chosen": [entry(r) for r in chosen.chosen],
        "excluded": [
            {"row": v.row, "name": row_name(v.row, named), "reasons": "; ".join(v.reasons)}
            for v in chosen.excluded
        ],
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
