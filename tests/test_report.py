"""Reports: merging results files, rendering md/html/png, refusing foreign or newer files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeresnet.cli import main
from edgeresnet.errors import ReportError
from edgeresnet.ondevice.common import results_document, write_json
from edgeresnet.report import load_results, write_report


def row(
    variant: str, precision: str, p50: float, size: int, top1: float | None, executed: str
) -> dict:
    return {
        "variant": variant,
        "precision": precision,
        "artifact": {"file": f"model.{variant}.onnx", "bytes": size, "sha256": "0" * 64},
        "accuracy": None if top1 is None else {"top1": top1, "top5": 99.0, "images": 100},
        "fidelity": {
            "top1_agreement": 100.0 if variant == "fp32" else 98.5,
            "sqnr_db": 30.0,
            "mean_kl": 0.01,
            "images": 100,
        },
        "bench": {
            "runtime": "onnxruntime",
            "runtime_version": "1.0",
            "threads": 2,
            "load_s": 0.2,
            "peak_rss_mb": 300.0,
            "latency": {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2},
            "throughput": {"batch": 8, "images_per_s": 8000 / p50},
            "precision_executed": {"label": executed},
        },
    }


def document(device: str, *, weights: str = "file", top1: bool = True) -> dict:
    return results_document(
        producer={"tool": "test"},
        environment={"onnxruntime": "1.0"},
        device={
            "name": device,
            "cpu": "Test CPU",
            "arch": "x86_64",
            "isa": ["avx2"],
            "physical_cores": 2,
            "logical_cores": 2,
            "memory_gb": 8,
            "os": "Linux",
        },
        model={
            "arch": "resnet50",
            "params": 25_557_032,
            "macs": 4_089_184_256,
            "input_size": 224,
            "weights": {"kind": weights, "name": weights},
        },
        data={
            "calibration": {"source": "calib", "images": 300, "seed": 0, "sha256": "ab" * 32},
            "evaluation": None,
        },
        target={"name": "onnx", "backend": "onnxruntime", "device": "CPU"},
        rows=[
            row("fp32", "fp32", 40.0, 102_000_000, 76.1 if top1 else None, "fp32"),
            row("int8", "int8", 12.0, 25_800_000, 75.6 if top1 else None, "int8+fp32"),
        ],
    )


def test_report_has_tables_ratios_plots_and_provenance(tmp_path):
    written = write_report({"a.json": document("box-a")}, tmp_path, command="edgeresnet report x")
    assert {p.name for p in written} == {
        "report.md",
        "report.html",
        "accuracy_vs_latency.png",
        "accuracy_vs_size.png",
    }
    md = (tmp_path / "report.md").read_text()
    assert "edgeresnet report x" in md
    assert "| onnx | int8 | int8 (ran int8+fp32) |" in md
    assert "75.60 (-0.50)" in md and "0.30x" in md and "0.25x" in md
    assert "Test CPU" in md and "abababababababab" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html


def test_random_weights_never_show_accuracy(tmp_path):
    write_report({"r.json": document("box", weights="random", top1=False)}, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    assert "Random weights." in md and "n/a (random weights)" in md


def test_report_cli_merges_devices(tmp_path, capsys):
    paths = []
    for name in ("box-a", "box-b"):
        path = tmp_path / f"{name}.json"
        write_json(path, document(name))
        paths.append(str(path))
    assert main(["report", *paths, "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Device: box-a" in md and "## Device: box-b" in md


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not a readable JSON file"),
        (json.dumps({"hello": 1}), "is not an edgeresnet results file"),
        (
            json.dumps(
                {
                    "schema": "edgeresnet.results",
                    "schema_version": 99,
                    "device": {},
                    "model": {},
                    "target": {},
                    "rows": [],
                }
            ),
            "schema version 99",
        ),
        (json.dumps({"schema": "edgeresnet.results", "schema_version": 1}), "lacks the field"),
    ],
)
def test_bad_results_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ReportError) as info:
        load_results(path)
    assert message in str(info.value) and "bad.json" in str(info.value)


def test_report_cli_error_exit(tmp_path, capsys):
    path = Path(tmp_path / "x.json")
    path.write_text("{}")
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 1
    assert "x.json" in capsys.readouterr().err
