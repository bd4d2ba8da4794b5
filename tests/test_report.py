"""Reports: merging devices and runs, selection, peer ratios, bad files, the page in a browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgeresnet.cli import main
from edgeresnet.errors import ReportError
from edgeresnet.ondevice.common import results_document, write_json
from edgeresnet.report import Constraints, load_results, rows_of, select, write_report
from edgeresnet.report.plots import pareto_front

DEVICE = {
    "cpu": "Test CPU",
    "arch": "x86_64",
    "isa": ["avx2"],
    "physical_cores": 2,
    "logical_cores": 2,
    "memory_gb": 8,
    "os": "Linux",
}


def row(
    variant: str,
    precision: str,
    p50: float | None,
    size: int,
    top1: float | None,
    executed: str,
    *,
    runtime: str = "onnxruntime",
    **extra: Any,
) -> dict[str, Any]:
    bench = None
    if p50 is not None:
        bench = {
            "runtime": runtime,
            "runtime_version": "1.0",
            "threads": 2,
            "load_s": 0.2,
            "peak_rss_mb": 300.0,
            "latency": {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2},
            "throughput": {"batch": 8, "images_per_s": 8000 / p50},
            "precision_executed": {"label": executed},
        }
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
        "bench": bench,
        "notes": [],
        **extra,
    }


def document(
    device: str,
    *,
    weights: str = "file",
    top1: bool = True,
    target: str = "onnx",
    backend: str = "onnxruntime",
    rows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if rows is None:
        rows = [
            row("fp32", "fp32", 40.0, 102_000_000, 76.1 if top1 else None, "fp32"),
            row("int8", "int8", 12.0, 25_800_000, 75.6 if top1 else None, "int8+fp32"),
        ]
    return results_document(
        producer={"tool": "test", "command": f"edgeresnet build --target {target}"},
        environment={"onnxruntime": "1.0"},
        device={"name": device, **DEVICE},
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
        target={"name": target, "backend": backend, "device": "CPU"},
        rows=rows,
    )


def peer_row(
    variant: str, label: str, p50: float, runtime: str, counterpart: tuple[str, str]
) -> dict[str, Any]:
    precision = variant.rsplit("-", 1)[-1]
    return {
        **row(variant, precision, p50, 26_000_000, None, precision, runtime=runtime),
        "peer": {
            "label": label,
            "runtime": runtime,
            "how": f"{label}, every default",
            "counterparts": [{"backend": counterpart[0], "variant": counterpart[1]}],
        },
    }


def peers_document(device: str, *, extra_rows: list[dict[str, Any]] = ()) -> dict[str, Any]:
    rows = [
        peer_row("pytorch-fp32", "PyTorch eager FP32", 80.0, "torch", ("onnxruntime", "fp32")),
        peer_row(
            "ort-default-int8",
            "ORT quantize_static defaults",
            52.0,
            "onnxruntime",
            ("onnxruntime", "int8"),
        ),
    ]
    return document(device, target="peers", backend="peers", rows=rows + list(extra_rows))


def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, doc)
    return str(path)


# ----------------------------------------------------------------------------- tables


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
    assert "## FP32 baseline on each device" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html


def test_random_weights_never_show_accuracy_and_are_marked(tmp_path):
    write_report({"r.json": document("box", weights="random", top1=False)}, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    assert "Random weights." in md and "n/a (random weights)" in md
    assert "| box | onnx | **fp32** † |" in md
    assert 'class="baseline random"' in (tmp_path / "report.html").read_text()


def test_power_pruned_params_and_notes_show_and_missing_is_a_dash(tmp_path):
    rows = [
        row("fp32", "fp32", 40.0, 102_000_000, None, "fp32"),
        row(
            "p30-int8",
            "int8",
            6.0,
            12_900_000,
            None,
            "int8",
            params=13_000_000,
            macs=2_000_000_000,
        ),
        row("int8", "int8", None, 25_800_000, None, "-", notes=["not benchmarked here: no GPU"]),
    ]
    rows[1]["bench"]["power_w"] = 10.0
    rows[1]["bench"]["clocks"] = {"gpu": "1300 MHz", "mode": "MAXN"}
    write_report({"j.json": document("jetson", rows=rows)}, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    across = md.split("## Across devices")[1].split("##")[0]
    p30 = next(line for line in across.splitlines() if "p30-int8" in line)
    # 8000/6 = 1333 img/s at 10 W = 133.3 img/J; params and GMACs are the pruned model's own.
    assert "| 10.0 | 133.3 |" in p30 and "| 13.00 | 2.00 |" in p30
    fp32 = next(line for line in across.splitlines() if "| fp32" in line)
    assert fp32.endswith("| - | - |")
    assert "onnx/int8: not benchmarked here: no GPU" in md
    assert "gpu=1300 MHz, mode=MAXN" in md


def test_report_cli_merges_devices_and_keeps_copies_to_regenerate(tmp_path):
    paths = [write(tmp_path / name, "results.json", document(name)) for name in ("box-a", "box-b")]
    out = tmp_path / "rep"
    assert main(["report", *paths, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "### Device: box-a" in md and "### Device: box-b" in md
    copies = sorted(p.name for p in (out / "inputs").iterdir())
    assert copies == ["box-a.results.json", "box-b.results.json"]
    command = re.search(r"```\n(edgeresnet report .*inputs.*)\n```", md).group(1)
    again = tmp_path / "again"
    assert main([*command.split()[1:-2], "--out", str(again)]) == 0
    assert "### Device: box-b" in (again / "report.md").read_text()


def test_pareto_front_keeps_only_undominated_points():
    points = [(10.0, 99.0), (5.0, 98.0), (20.0, 100.0), (12.0, 97.0), (5.0, 90.0), (30.0, 100.0)]
    assert sorted(pareto_front(points)) == [0, 1, 2]


# ----------------------------------------------------------------------------- selection


def selection_rows(tmp_path: Path) -> list:
    rows = [
        row("fp32", "fp32", 41.23, 102_000_000, 76.1, "fp32"),
        row("int8", "int8", 12.0, 25_800_000, 75.6, "int8"),
        row("p30-int8", "int8", 6.0, 12_900_000, 74.0, "int8"),
        row("fp16", "fp16", None, 51_000_000, 76.0, "-", notes=["not benchmarked here: no GPU"]),
    ]
    real = rows_of(document("box", rows=rows), "a.json")
    random = rows_of(document("rnd", weights="random", top1=False), "b.json")
    peers = rows_of(peers_document("box"), "p.json")
    return real + random + peers


def test_select_ranks_by_latency_and_explains_every_exclusion(tmp_path):
    chosen = select(selection_rows(tmp_path), Constraints(max_latency_ms=20, min_top1=75.0))
    assert [(r.device, r.variant) for r in chosen.chosen] == [("box", "int8")]
    why = {(v.row.device, v.row.variant): "; ".join(v.reasons) for v in chosen.excluded}
    assert why[("box", "fp32")] == "p50 41.2 ms > 20 ms"
    assert why[("box", "p30-int8")] == "top-1 74.00 % < 75 %"
    assert why[("box", "fp16")] == ("p50 not measured (not benchmarked here: no GPU)")
    assert why[("rnd", "int8")] == "top-1 not measured (random weights)"
    assert not any(r.peer for r in chosen.chosen) and ("box", "pytorch-fp32") not in why


def test_select_without_accuracy_limit_ranks_latency_then_size(tmp_path):
    chosen = select(selection_rows(tmp_path), Constraints(max_size_mb=30, min_fps=300))
    ranked = [(r.device, r.variant) for r in chosen.chosen]
    assert ranked == [("box", "p30-int8"), ("box", "int8"), ("rnd", "int8")]
    reasons = {v.row.variant: v.reasons for v in chosen.excluded if v.row.device == "rnd"}
    assert reasons["fp32"] == (
        "size 102.0 MB > 30 MB",
        "throughput 200 img/s (batch 8) < 300 img/s",
    )


def test_select_cli_prints_table_writes_report_and_exit_codes(tmp_path, capsys):
    good = write(tmp_path, "a.json", document("box"))
    out = tmp_path / "rep"
    assert main(["select", good, "--max-latency-ms", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ranking: fastest batch-1 p50" in printed and "p50 40.0 ms > 20 ms" in printed
    assert re.search(r"1\s+box\s+onnx\s+int8\s+12.00", printed)
    md = (out / "report.md").read_text()
    assert "## Selection" in md and "--max-latency-ms 20" in md
    assert main(["select", good, "--max-latency-ms", "5"]) == 3
    assert "no variant meets every constraint" in capsys.readouterr().out
    assert main(["report", good, "--out", str(tmp_path / "r2"), "--min-top1", "76"]) == 0
    assert "- box onnx:int8: top-1 75.60 % < 76 %" in (tmp_path / "r2" / "report.md").read_text()


# ----------------------------------------------------------------------------- peers


def test_peer_table_gives_ratios_against_counterparts_from_another_run(tmp_path):
    docs = {"onnx.json": document("box"), "peers.json": peers_document("box")}
    write_report(docs, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    section = md.split("## Peer comparison")[1].split("\n## ")[0]
    assert "separate run" in section
    assert (
        "edgeresnet onnx int8 (12.00 ms) p50 / ORT quantize_static defaults (52.00 ms) p50 = 0.23x"
        in section
    )
    assert (
        "edgeresnet onnx fp32 (40.00 ms) p50 / PyTorch eager FP32 (80.00 ms) p50 = 0.50x" in section
    )
    assert "fastest variant, 12.00 ms) p50 / PyTorch eager FP32 (80.00 ms) p50 = 0.15x" in section
    # Peers are in the device table but never in the across-devices table or the selection.
    across = md.split("## Across devices")[1].split("\n## ")[0]
    assert "pytorch-fp32" not in across
    assert "| peers (peer) | pytorch-fp32 |" in md


def test_peer_ratios_prefer_rows_remeasured_in_the_same_run(tmp_path):
    remeasured = row(
        "int8",
        "int8",
        13.0,
        25_800_000,
        None,
        "int8",
        remeasured={"source": "build/onnx", "target": "onnx", "backend": "onnxruntime"},
    )
    docs = {
        "onnx.json": document("box"),
        "peers.json": peers_document("box", extra_rows=[remeasured]),
    }
    write_report(docs, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    section = md.split("## Peer comparison")[1].split("\n## ")[0]
    assert "Same run" in section and "(13.00 ms) p50 / ORT quantize_static defaults" in section
    assert "= 0.25x" in section
    # The re-measured row stays out of the device tables: the build's own row is there already.
    device = md.split("### Device: box")[1].split("\n## ")[0]
    assert sum(line.startswith("| onnx | int8 |") for line in device.splitlines()) == 1


# ----------------------------------------------------------------------------- bad files


def results_json(**fields: Any) -> str:
    """A version-1 results file with empty sections; ``fields`` replace some of them."""
    doc = {"schema": "edgeresnet.results", "schema_version": 1}
    doc |= {"device": {}, "model": {}, "target": {}, "rows": []}
    return json.dumps(doc | fields)


BAD_FILES = [
    ("not json", "is not a readable JSON file"),
    (json.dumps({"hello": 1}), "is not an edgeresnet results file"),
    (results_json(schema_version=99), "schema version 99"),
    (
        json.dumps({"schema": "edgeresnet.results", "schema_version": 1}),
        "lacks the field(s) device",
    ),
    (json.dumps({"schema": "edgeresnet.results"}), "lacks the field(s) schema_version"),
    (results_json(rows="x"), "field 'rows' must be a list"),
    (results_json(rows=[{"precision": "int8"}]), "rows[0] lacks the field 'variant'"),
    (
        results_json(rows=[{"variant": "int8", "bench": [1]}]),
        "rows[0].bench must be an object or null",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_bad_results_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ReportError) as info:
        load_results(path)
    assert message in str(info.value) and "bad.json" in str(info.value)


def test_minimal_version_1_file_reads_with_dashes(tmp_path):
    path = tmp_path / "min.json"
    path.write_text(results_json(rows=[{"variant": "int8"}]))
    write_report({str(path): load_results(path)}, tmp_path / "r", command="c")
    assert "| unknown | ? | int8 | ? | ? | - |" in (tmp_path / "r" / "report.md").read_text()


def test_report_cli_leaves_out_bad_files_and_merges_the_rest(tmp_path, capsys):
    good = write(tmp_path, "good.json", document("box"))
    bad = tmp_path / "foreign.json"
    bad.write_text(json.dumps({"hello": 1}))
    out = tmp_path / "r"
    assert main(["report", good, str(bad), "--out", str(out)]) == 0
    assert "left out:" in capsys.readouterr().err
    md = (out / "report.md").read_text()
    assert "Results files left out" in md and "foreign.json is not an edgeresnet results" in md
    assert "### Device: box" in md


def test_report_cli_fails_when_no_file_can_be_read(tmp_path, capsys):
    a, b = tmp_path / "x.json", tmp_path / "y.json"
    a.write_text("{}")
    b.write_text("nope")
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "x.json" in err and "y.json" in err and "None of the 2 results file(s)" in err
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Appended to a copy of the page: lists what the browser rendered, after every image decoded.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => [i.naturalWidth, i.naturalHeight]);
  const tables = [...document.querySelectorAll("table")].map(t => t.rows.length);
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({imgs, tables});
  document.body.appendChild(out);
});
</script>"""


def chromium(tmp_path: Path, page: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1400,2000",
        *flags,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_html_renders_in_a_real_browser(tmp_path):
    docs = {
        "a.json": document("box-a"),
        "b.json": document("box-b", weights="random", top1=False),
        "p.json": peers_document("box-a"),
    }
    out = tmp_path / "rep"
    write_report(docs, out, command="c", constraints=Constraints(max_latency_ms=20))
    html = (out / "report.html").read_text()
    assert "<script" not in html and 'src="http' not in html  # self-contained, no code
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, probe, "--dump-dom")
    errors = [
        line for line in dom.stderr.splitlines() if "Uncaught" in line or "ERROR:CONSOLE" in line
    ]
    assert dom.returncode == 0 and not errors, dom.stderr[-2000:]
    found = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout).group(1))
    assert len(found["imgs"]) == 2 and all(w > 300 and h > 200 for w, h in found["imgs"])
    assert len(found["tables"]) >= 6 and min(found["tables"]) >= 2
    shot = chromium(tmp_path, out / "report.html", f"--screenshot={tmp_path / 'page.png'}")
    assert shot.returncode == 0 and (tmp_path / "page.png").stat().st_size > 10_000


def test_paired_ratios_get_their_own_section_and_broken_records_none(tmp_path):
    paired = {
        "reference": "int8",
        "pairs": 1500,
        "p50_ms": 6.68,
        "reference_p50_ms": 11.43,
        "ratio": 0.5844,
        "ratio_ci95": [0.583, 0.586],
    }
    rows = [
        {"variant": "int8", "bench": {"latency": {"p50_ms": 11.5}}},
        {"variant": "p30-int8", "bench": {"latency": {"p50_ms": 7.0}, "paired": paired}},
        # A record without its interval is left out, not shown half.
        {"variant": "p50-int8", "bench": {"paired": {**paired, "ratio_ci95": None}}},
    ]
    path = tmp_path / "paired.json"
    path.write_text(results_json(rows=rows, device={"name": "box"}, target={"name": "openvino"}))
    write_report({str(path): load_results(path)}, tmp_path / "r", command="c")
    md = (tmp_path / "r" / "report.md").read_text()
    section = md.split("## Paired latency ratios")[1].split("\n## ")[0]
    lines = [x for x in section.splitlines() if x.startswith("| box")]
    assert lines == [
        "| box | openvino | p30-int8 | int8 | 1500 | 6.68 | 11.43 | **0.584x** | 0.583-0.586 |"
    ]
    html = (tmp_path / "r" / "report.html").read_text()
    assert 'href="#paired"' in html and "<strong>0.584x</strong>" in html


def test_no_paired_section_without_paired_records(tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(results_json(rows=[{"variant": "int8"}]))
    write_report({str(path): load_results(path)}, tmp_path / "r", command="c")
    assert "Paired latency ratios" not in (tmp_path / "r" / "report.md").read_text()
    assert 'href="#paired"' not in (tmp_path / "r" / "report.html").read_text()
