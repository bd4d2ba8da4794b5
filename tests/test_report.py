"""Reports: merging devices and runs, selection, peer ratios, bad files, the page in a browser."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeresnet.cli import main
from edgeresnet.errors import OutputError, ReportError
from edgeresnet.ondevice.common import results_document, write_json
from edgeresnet.report import (
    Constraints,
    all_rows,
    load_many,
    load_results,
    rows_of,
    select,
    write_report,
)
from edgeresnet.report.plots import pareto_front
from edgeresnet.report.rows import runs
from edgeresnet.report.select import format_text, reasons

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
    arch: str = "resnet50",
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
            "arch": arch,
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


def table(md: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after ``heading``, one dict per row keyed by the column names."""
    lines = md.split(heading, 1)[1].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|--"):
            rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    assert all(len(r) == len(rows[0]) for r in rows), "ragged table"
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


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


def test_a_model_pruned_from_random_weights_stays_marked_random(tmp_path):
    doc = document("box", weights="file", top1=False)
    doc["model"]["weights"] = {
        "kind": "file",
        "name": "model.channels.json",
        "pruned": True,
        "pruned_from": {"kind": "random", "name": "random", "seed": 0},
    }
    write_report({"r.json": doc}, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    assert "Random weights." in md and "model.channels.json (random)" in md


def test_random_weights_say_how_few_classes_their_agreement_covers(tmp_path):
    doc = document("box", weights="random", top1=False)
    for entry in doc["rows"]:
        entry["fidelity"]["reference_classes"] = 1 if entry["variant"] == "int8" else 3
    write_report({"r.json": doc}, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    assert "predicted as few as 1\n> distinct class over 100 images; SQNR says more." in md
    assert "as few as 1\ndistinct class over 100 images" in (tmp_path / "report.html").read_text()
    # Without the count (results written before it was recorded) the sentence is left out.
    write_report({"r.json": document("box", weights="random", top1=False)}, tmp_path, command="c")
    assert "as few as" not in (tmp_path / "report.md").read_text()


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
    command = re.search(r"```\n(edgeresnet report inputs/.* --out \.)\n```", md).group(1)
    # It runs in the report's folder, wherever that was moved, rewriting it from the copies.
    moved = tmp_path / "elsewhere" / "rep"
    out.parent.joinpath("elsewhere").mkdir()
    out.rename(moved)
    (moved / "report.md").unlink()
    command = command.replace("edgeresnet ", f"{shlex.quote(sys.executable)} -m edgeresnet ", 1)
    proc = subprocess.run(command, shell=True, cwd=moved, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "### Device: box-b" in (moved / "report.md").read_text()


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


def test_max_drop_measures_each_variant_against_the_fp32_of_its_own_run(tmp_path):
    # A second run on the same device: a weaker FP32 whose INT8 loses as little; a run without
    # an FP32 row; and one whose FP32 was not evaluated. None may borrow another run's FP32.
    weaker = [row("fp32", "fp32", 40.0, 102_000_000, 74.5, "fp32")]
    weaker.append(row("int8", "int8", 11.0, 25_800_000, 74.0, "int8"))
    alone = [row("int8", "int8", 10.0, 25_800_000, 75.9, "int8")]
    unscored = [row("fp32", "fp32", 40.0, 102_000_000, None, "fp32")]
    unscored.append(row("int8", "int8", 9.0, 25_800_000, 75.0, "int8"))
    rows = selection_rows(tmp_path) + [
        r
        for name, rs in (("c.json", weaker), ("d.json", alone), ("e.json", unscored))
        for r in rows_of(document("box", rows=rs), name)
    ]
    limits = Constraints(max_drop=0.5)
    assert limits.flags() == ["--max-drop", "0.5"]
    assert limits.describe() == ["top-1 drop against its run's FP32 <= 0.5 points"]
    chosen = select(rows, limits)
    # 76.1 -> 75.6 and 74.5 -> 74.0 lose exactly the 0.5 allowed (not 0.50000000000001).
    assert [(r.source, r.variant) for r in chosen.chosen] == [
        ("c.json", "int8"),
        ("a.json", "int8"),
        ("c.json", "fp32"),
        ("a.json", "fp32"),
        ("a.json", "fp16"),
    ]
    why = {(v.row.source, v.row.variant): "; ".join(v.reasons) for v in chosen.excluded}
    assert why[("a.json", "p30-int8")] == (
        "top-1 drop 2.1 points > 0.5 points (FP32 76.10 %, this 74.00 %)"
    )
    assert why[("d.json", "int8")] == "top-1 drop unknown (its run has no FP32 row)"
    assert why[("e.json", "int8")] == "top-1 drop unknown (its run's FP32 top-1 not measured)"
    assert why[("e.json", "fp32")] == "top-1 not measured (no labelled evaluation set)"
    assert why[("b.json", "int8")] == "top-1 not measured (random weights)"
    both = select(rows, Constraints(max_drop=0.5, min_top1=75.0)).excluded
    assert {v.row.source: v.reasons for v in both if v.row.variant == "int8"}["b.json"] == (
        "top-1 not measured (random weights)",
    )


def test_a_variant_its_build_could_not_run_is_not_said_to_lack_labels():
    """A Jetson build without TensorRT: FP16 exists only in an engine, so it was never run."""
    fp16 = {**row("fp16", "fp16", 1.0, 0, None, "fp16"), "bench": None, "fidelity": None}
    doc = document("box", target="jetson", backend="tensorrt", rows=[fp16])
    (verdict,) = select(rows_of(doc, "a.json"), Constraints(min_top1=75.0)).excluded
    assert verdict.reasons == (
        "top-1 not measured (not run where it was built; the bundle's on-device scripts "
        "measure it)",
    )


def test_a_pruned_model_rebuilt_from_its_spec_is_held_against_the_dense_fp32(tmp_path):
    """A build from model.channels.json names its rows fp32 and int8; against that pruned FP32,
    a pruned INT8 at 10 % top-1 looked like it lost nothing and ranked first."""
    dense = document("box")
    pruned = document(
        "box",
        rows=[
            row("fp32", "fp32", 20.0, 50_000_000, 10.2, "fp32"),
            row("int8", "int8", 6.0, 13_000_000, 10.0, "int8"),
        ],
    )
    pruned["model"]["weights"] = {
        "kind": "pruned",
        "name": "model.channels.json",
        "pruned": True,
        "pruned_from": dense["model"]["weights"],
    }
    merged = {"dense.json": dense, "pruned.json": pruned}
    rows = [r for name, doc in merged.items() for r in rows_of(doc, name)]
    why = {
        (v.row.source, v.row.variant): "; ".join(v.reasons)
        for v in select(rows, Constraints(max_drop=1.0)).excluded
    }
    assert why[("pruned.json", "int8")] == (
        "top-1 drop 66.1 points > 1 points (FP32 76.10 %, this 10.00 %)"
    )
    assert ("dense.json", "int8") not in why
    # The rows say which run is pruned; without the dense run, the drop is unknown.
    assert runs(rows).of(rows[-1]) == "resnet50 pruned, pruned"
    alone = select(rows_of(pruned, "pruned.json"), Constraints(max_drop=1.0)).excluded
    assert all("a pruned model rebuilt from its channel spec" in v.reasons[0] for v in alone)


def timed_on_device(build: dict[str, Any], device: str, executed: dict[str, str]) -> dict:
    """What a bundle's benchmark script writes for ``build``'s files on ``device``: timings,
    the precision each ran at, no accuracy."""
    timed = []
    for entry in build["rows"]:
        bench = {**entry["bench"], "precision_executed": {"label": executed[entry["variant"]]}}
        timed.append({**entry, "accuracy": None, "fidelity": None, "bench": bench, "notes": []})
    for entry in timed:
        entry.pop("build", None)
    on_device = json.loads(json.dumps({**build, "rows": timed}))
    on_device["producer"] = {"tool": "edgeresnet ondevice/bench_onnxruntime.py"}
    on_device["device"] = {**DEVICE, "name": device}
    return on_device


def test_of_two_builds_of_one_file_a_device_row_takes_the_one_its_bundle_came_from():
    """Two builds of the same checkpoint give the same bytes, evaluated on other images: the
    figure a device row carries must not depend on the order of the inputs."""
    builds = []
    for top1, images in ((75.6, "cd"), (74.0, "ef")):
        rows = [row("int8", "int8", 12.0, 25_800_000, top1, "int8")]
        rows[0]["artifact"]["sha256"] = "a" * 64
        build = document("builder", rows=rows)
        build["data"]["evaluation"] = {"source": images, "images": 20, "sha256": images * 32}
        builds.append(build)
    edge = timed_on_device(builds[1], "edge", {"int8": "int8"})  # a copy of the second's bundle
    for order in ((0, 1), (1, 0)):
        documents = {f"b{i}.json": builds[i] for i in order} | {"e.json": edge}
        carried = {(r.device, r.variant): r for r in all_rows(documents)}[("edge", "int8")]
        assert carried.top1 == 74.0 and carried.accuracy_from.endswith("b1.json)")


def test_timed_only_rows_take_the_build_accuracy_of_the_same_file_runtime_and_precision(
    tmp_path,
):
    rows = [
        row("fp32", "fp32", 40.0, 102_000_000, 76.1, "fp32"),
        row("int8", "int8", 12.0, 25_800_000, 75.6, "int8"),
        row("bf16", "bf16", 20.0, 102_000_000, 76.0, "bf16"),
    ]
    for entry, digest in zip(rows, "abc", strict=True):
        entry["artifact"]["sha256"] = digest * 64
    build = document("builder", rows=rows)
    # bf16 ran fp32 on the device (no bf16 there): the build's figure is not its own.
    edge = timed_on_device(build, "edge", {"fp32": "fp32", "int8": "int8", "bf16": "fp32"})
    documents = {"b.json": build, "e.json": edge}
    merged = {(r.device, r.variant): r for r in all_rows(documents)}
    carried = merged[("edge", "int8")]
    assert (carried.top1, carried.top5, carried.agreement) == (75.6, 99.0, 98.5)
    assert carried.accuracy_from == "the build on builder (onnxruntime 1.0, b.json)"
    assert merged[("edge", "bf16")].top1 is None and not merged[("edge", "bf16")].accuracy_from
    assert merged[("builder", "int8")].accuracy_from == ""  # the build's own figure
    chosen = select(list(merged.values()), Constraints(min_top1=75.0, max_latency_ms=15))
    assert [(r.device, r.variant) for r in chosen.chosen] == [("builder", "int8"), ("edge", "int8")]
    why = {(v.row.device, v.row.variant): "; ".join(v.reasons) for v in chosen.excluded}
    assert why[("edge", "bf16")] == (
        "p50 20.0 ms > 15 ms; top-1 not measured (timed on the device only; no build of the "
        "same file, runtime and executed precision among the inputs)"
    )
    text = format_text(chosen)
    assert "75.60 ‡" in text and "‡ edge onnx:int8: top-1 from the build on builder" in text
    # A file the build did not make (another sha256) takes nothing.
    other = json.loads(json.dumps(edge))
    other["rows"][1]["artifact"]["sha256"] = "d" * 64
    alone = {(r.device, r.variant): r for r in all_rows({"b.json": build, "e.json": other})}
    assert alone[("edge", "int8")].top1 is None
    write_report(documents, tmp_path, command="c")
    report = (tmp_path / "report.md").read_text()
    assert "**‡ Accuracy from the build.**" in report
    assert "> - edge onnx:int8: the build on builder (onnxruntime 1.0, b.json)" in report
    assert "| edge | onnx | int8 | int8 | file | 75.60 (-0.50) ‡ |" in report
    assert "‡" in (tmp_path / "report.html").read_text()


def test_one_device_name_for_two_machines_is_named_in_warnings_and_the_report(tmp_path, capsys):
    x86, arm = document("ubuntu"), document("ubuntu")
    arm["device"].update(cpu="ARM Cortex-A78AE", arch="aarch64", logical_cores=12)
    paths = []
    for name, doc in (("x86.json", x86), ("arm.json", arm)):
        write_json(tmp_path / name, doc)
        paths.append(str(tmp_path / name))
    clash = (
        "the device name 'ubuntu' stands for 2 machines: Test CPU (x86_64, 2 cores) in "
        f"{paths[0]}; ARM Cortex-A78AE (aarch64, 12 cores) in {paths[1]}."
    )
    assert main(["select", *paths, "--max-latency-ms", "60"]) == 0
    assert clash in " ".join(capsys.readouterr().err.split())
    assert main(["report", *paths, "--out", str(tmp_path / "rep")]) == 0
    assert clash in " ".join(capsys.readouterr().err.split())
    assert f"> **One name, two machines.** {clash}" in (tmp_path / "rep" / "report.md").read_text()
    # The same machine in two files is one device, not a clash.
    write_json(tmp_path / "again.json", document("ubuntu", target="openvino"))
    assert (
        main(["report", paths[0], str(tmp_path / "again.json"), "--out", str(tmp_path / "r2")]) == 0
    )
    assert "stands for" not in capsys.readouterr().err


def test_a_variant_repeated_in_one_file_is_left_out_with_a_warning(tmp_path, capsys):
    doc = document("box")
    doc["rows"].append({**doc["rows"][0], "precision": "int8"})
    write_json(tmp_path / "twice.json", doc)
    assert main(["select", str(tmp_path / "twice.json")]) == 0
    captured = capsys.readouterr()
    assert "rows[2] repeats the variant 'fp32' of rows[0]" in " ".join(captured.err.split())
    assert len(re.findall(r"^\d+\s+box\s+onnx\s+fp32\s", captured.out, re.M)) == 1


def test_an_fp32_baseline_that_ran_another_precision_is_named(tmp_path):
    unpinned = document("box", target="openvino", backend="openvino")
    unpinned["rows"][0]["bench"]["precision_executed"]["label"] = "bf16"
    write_report({"u.json": unpinned, "a.json": document("box")}, tmp_path, command="c")
    report = (tmp_path / "report.md").read_text()
    assert "> **FP32 baseline not run in FP32.**" in report
    assert (
        "against the\n> precision their FP32 row really ran at: box openvino:fp32 ran bf16."
        in report
    )
    assert "box onnx:fp32" not in report.split("FP32 baseline not run")[1].split("\n\n")[0]


def test_names_from_a_results_file_are_escaped_in_html_and_markdown(tmp_path):
    doc = document("<img src=x onerror=alert(1)>")
    doc["rows"][1]["variant"] = "<script>alert(1)</script>"
    write_report({"a.json": doc}, tmp_path, command="c")
    html = (tmp_path / "report.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # In Markdown, a "|" or a line break in a name would end its cell or its row.
    doc = document("lab|box\n2")
    write_report({"a.json": doc}, tmp_path, command="edgeresnet report a|b.json")
    md = (tmp_path / "report.md").read_text()
    assert "| lab\\|box 2 | onnx | **fp32** |" in md
    assert "edgeresnet report a|b.json\n```" in md  # a command stays as typed


def test_across_devices_keeps_each_devices_rows_together(tmp_path):
    documents = {
        "b-onnx.json": document("devB"),
        "c-onnx.json": document("devC"),
        "b-ov.json": document("devB", target="openvino", backend="openvino"),
    }
    write_report(documents, tmp_path, command="c")
    across = table((tmp_path / "report.md").read_text(), "## Across devices")
    assert [(r["device"], r["target"]) for r in across] == [
        ("devB", "onnx"),
        ("devB", "onnx"),
        ("devB", "openvino"),
        ("devB", "openvino"),
        ("devC", "onnx"),
        ("devC", "onnx"),
    ]


def test_a_device_that_lacks_a_variant_the_others_timed_is_named(tmp_path):
    short = document("devC")
    short["rows"] = short["rows"][:1]  # its run stopped after fp32
    other_model = document("devD", arch="resnet18")
    other_model["rows"] = other_model["rows"][:1]  # another model: nothing to compare with
    write_report(
        {"b.json": document("devB"), "c.json": short, "d.json": other_model}, tmp_path, command="c"
    )
    report = (tmp_path / "report.md").read_text()
    assert "> **Variants some devices lack.** devC onnx lacks int8 (timed on devB).\n" in report


def test_select_without_accuracy_limit_ranks_latency_then_size(tmp_path):
    chosen = select(selection_rows(tmp_path), Constraints(max_size_mb=30, min_fps=300))
    ranked = [(r.device, r.variant) for r in chosen.chosen]
    assert ranked == [("box", "p30-int8"), ("box", "int8"), ("rnd", "int8")]
    reasons = {v.row.variant: v.reasons for v in chosen.excluded if v.row.device == "rnd"}
    assert reasons["fp32"] == (
        "size 102.0 MB > 30 MB",
        "throughput 200 img/s (batch 8) < 300 img/s",
    )


def test_a_reason_never_reads_as_its_own_limit(tmp_path):
    """74.996 % against --min-top1 75 is not "75.00 % < 75 %"; the drop's top-1s add up."""
    rows = [
        row("fp32", "fp32", 41.23, 102_000_000, 76.1, "fp32"),
        row("int8", "int8", 12.0, 25_800_000, 74.996, "int8"),
    ]
    (fp32, int8) = rows_of(document("box", rows=rows), "a.json")
    fps = Constraints(min_fps=int8.throughput + 0.0004)
    assert reasons(int8, Constraints(min_top1=75.0)) == ("top-1 74.996 % < 75 %",)
    (slow,) = reasons(int8, fps)
    assert float(slow.split()[1]) < fps.min_fps, slow
    (drop,) = reasons(int8, Constraints(max_drop=1.1), fp32)
    assert drop == "top-1 drop 1.104 points > 1.1 points (FP32 76.100 %, this 74.996 %)"


def test_select_says_why_a_chosen_row_has_no_top1(tmp_path):
    """The table's "-" is not left to guess: random weights measure size and speed only."""
    rows = selection_rows(tmp_path)
    mixed = format_text(select(rows, Constraints(max_size_mb=30)))
    assert "top-1 not measured for rnd onnx:int8 [resnet50, b]: random weights" in mixed
    random_only = [r for r in rows if r.device == "rnd"]
    alone = format_text(select(random_only, Constraints(max_size_mb=30)))
    assert "top-1 not measured in any row: random weights" in alone
    measured = format_text(select(rows, Constraints(min_top1=75.0)))
    assert "top-1 not measured" not in measured.split("excluded:")[0]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (("bench", "latency", "p50_ms"), float("nan"), "must be a finite number or null"),
        (("accuracy", "top1"), float("nan"), "must be a finite number or null"),
        (("artifact", "bytes"), -5, "must be 0 or more, or null"),
    ],
)
def test_nan_and_negative_measurements_never_pass_a_constraint(
    tmp_path, capsys, field, value, message
):
    doc = document("box")
    holder = doc["rows"][1]
    for key in field[:-1]:
        holder = holder[key]
    holder[field[-1]] = value
    bad = write(tmp_path, "bad.json", doc)
    limits = ["--max-latency-ms", "50", "--min-top1", "1", "--max-size-mb", "200"]
    assert main(["select", bad, *limits]) == 0
    captured = capsys.readouterr()
    assert message in " ".join(captured.err.split())
    assert re.search(r"1\s+box\s+onnx\s+fp32", captured.out) and "int8" not in captured.out


@pytest.mark.parametrize(
    "option",
    [
        ("--max-size-mb", "nan"),
        ("--max-latency-ms", "inf"),
        ("--min-top1", "150"),
        ("--max-drop", "-1"),
    ],
)
def test_constraints_that_are_no_limit_are_refused(tmp_path, option):
    with pytest.raises(SystemExit) as info:
        main(["select", write(tmp_path, "a.json", document("box")), *option])
    assert info.value.code == 2


def test_select_on_peer_rows_alone_says_there_are_no_candidates(tmp_path, capsys):
    peers = write(tmp_path, "peers.json", peers_document("box"))
    assert main(["select", peers, "--max-latency-ms", "1000"]) == 3
    assert "no candidates: these files hold no edgeresnet variants" in capsys.readouterr().out
    write_report({"peers.json": peers_document("box")}, tmp_path, command="c")
    for name in ("report.md", "report.html"):
        text = " ".join((tmp_path / name).read_text().split())
        assert "No edgeresnet variants of their own in these results" in text


def test_select_cli_prints_table_writes_report_and_exit_codes(tmp_path, capsys):
    good = write(tmp_path, "a.json", document("box"))
    out = tmp_path / "rep"
    assert main(["select", good, "--max-latency-ms", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ranking: fastest batch-1 p50" in printed and "p50 40.0 ms > 20 ms" in printed
    assert re.search(r"1\s+box\s+onnx\s+int8\s+int8 \(ran int8\+fp32\)\s+12.00", printed)
    md = (out / "report.md").read_text()
    assert "## Selection" in md and "--max-latency-ms 20" in md
    assert main(["select", good, "--max-latency-ms", "5"]) == 3
    assert "no variant meets every constraint" in capsys.readouterr().out
    assert main(["report", good, "--out", str(tmp_path / "r2"), "--min-top1", "76"]) == 0
    assert "- box onnx:int8: top-1 75.60 % < 76 %" in (tmp_path / "r2" / "report.md").read_text()
    assert main(["select", good, "--max-drop", "0.4"]) == 0
    printed = capsys.readouterr().out
    assert "constraints: top-1 drop against its run's FP32 <= 0.4 points" in printed
    assert (
        "box onnx:int8: top-1 drop 0.5 points > 0.4 points (FP32 76.10 %, this 75.60 %)" in printed
    )


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


def _with_a_peer_run(tmp_path: Path, extra: dict[str, Any]) -> tuple[str, str]:
    """The report of a build and a peer run that holds ``extra`` too: its markdown and its
    peer-comparison section."""
    docs = {
        "onnx.json": document("box"),
        "peers.json": peers_document("box", extra_rows=[extra]),
    }
    write_report(docs, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    return md, md.split("## Peer comparison")[1].split("\n## ")[0]


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
    md, section = _with_a_peer_run(tmp_path, remeasured)
    assert "Same run" in section and "(13.00 ms) p50 / ORT quantize_static defaults" in section
    assert "= 0.25x" in section
    # The re-measured row stays out of the device tables: the build's own row is there already.
    device = md.split("### Device: box")[1].split("\n## ")[0]
    assert sum(line.startswith("| onnx | int8 |") for line in device.splitlines()) == 1


def test_a_bundle_the_peer_run_could_not_time_is_not_called_re_measured(tmp_path):
    """A TensorRT bundle given to --against off its device: listed, not timed, and said so."""
    note = "not benchmarked here: TensorRT is not installed here"
    untimed = row(
        "int8",
        "int8",
        None,
        25_800_000,
        None,
        "int8",
        runtime="tensorrt",
        remeasured={"source": "build/jetson", "target": "jetson", "backend": "tensorrt"},
        notes=[note],
    )
    md, section = _with_a_peer_run(tmp_path, untimed)
    assert "Same run" not in section and "separate run" in section
    assert "jetson / int8 (not timed in the peer run)" in md
    assert f"not timed in the peer run ({note})" in md
    assert "re-measured in the peer run" not in md


def test_a_pruned_variant_remeasured_in_a_peer_run_has_one_precision_error_line(tmp_path):
    """A peer run's re-timing of a build's p30-int8 carries the build's evaluation; the
    "Precision error" table lists the variant once, as the device tables do."""
    sha = {"p30-fp32": "1" * 64, "p30-int8": "2" * 64}

    def pruned(variant: str, precision: str, **extra: Any) -> dict[str, Any]:
        r = row(variant, precision, 20.0, 13_000_000, None, precision, **extra)
        r["artifact"]["sha256"] = sha[variant]
        return r

    built = pruned("p30-int8", "int8")
    built["fidelity"]["to_own_fp32"] = {
        "reference": "p30-fp32",
        "top1_agreement": 80.7,
        "sqnr_db": 7.8,
        "images": 300,
    }
    build_rows = [document("box")["rows"][0], pruned("p30-fp32", "fp32"), built]
    # As a peer run writes it: the build's row, its evaluation included, timed again.
    remeasured = {
        **built,
        "remeasured": {"source": "build/onnx", "target": "onnx", "backend": "onnxruntime"},
    }
    docs = {
        "onnx.json": document("box", weights="random", top1=False, rows=build_rows),
        "peers.json": peers_document("box", extra_rows=[remeasured]),
    }
    write_report(docs, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    section = md.split("## Precision error of pruned variants")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if "| p30-int8" in line]
    assert len(lines) == 1 and "| 80.7 | 7.8 |" in lines[0], section


# ----------------------------------------------------------------------------- bad files


def results_json(**fields: Any) -> str:
    """A version-1 results file with empty sections; ``fields`` replace some of them."""
    doc = {"schema": "edgeresnet.results", "schema_version": 1}
    doc |= {"device": {}, "model": {}, "target": {}, "rows": []}
    return json.dumps(doc | fields)


BAD_FILES = [
    ("not json", "is not a readable JSON file"),
    ("[" * 100_000, "is not a readable JSON file"),
    ('{"schema_version": ' + "9" * 5000 + "}", "is not a readable JSON file"),
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


def test_a_missing_or_cut_short_results_file_says_what_to_do(tmp_path):
    with pytest.raises(ReportError, match="missing.json does not exist") as info:
        load_results(tmp_path / "missing.json")
    assert "results.<device>.<target>.json" in info.value.hint
    cut = tmp_path / "cut.json"
    cut.write_text(results_json()[:40])
    with pytest.raises(ReportError, match="cut.json is not a readable JSON file") as info:
        load_results(cut)
    assert "Copy it again" in info.value.hint


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
    assert "Results files and rows left out" in md
    assert "foreign.json is not an edgeresnet results" in md
    assert "### Device: box" in md


def test_report_cli_fails_when_no_file_can_be_read(tmp_path, capsys):
    a, b = tmp_path / "x.json", tmp_path / "y.json"
    a.write_text("{}")
    b.write_text("nope")
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "x.json" in err and "y.json" in err and "None of the 2 results file(s)" in err
    assert not (tmp_path / "r").exists()


def test_a_bundle_folder_given_for_its_results_file_is_named(tmp_path, capsys):
    bundle = tmp_path / "onnx"
    write(bundle, "results.json", document("box"))
    assert main(["report", str(bundle), "--out", str(tmp_path / "r")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"{bundle} is a folder, not a results file" in err
    assert f"hint: Pass {bundle / 'results.json'}, the results file in it." in err


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
        "c.json": document("box-a", arch="resnet18"),  # a second run: "model / run" columns
    }
    out = tmp_path / "rep"
    write_report(docs, out, command="c", constraints=Constraints(max_latency_ms=20))
    html = (out / "report.html").read_text()
    assert '<th class="t">model / run</th>' in html
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


# ----------------------------------------------------------------------------- merged runs


def two_runs_one_device() -> dict[str, dict[str, Any]]:
    """Two builds on one device and target: a dense one whose INT8 is slower than its FP32, a
    pruned one with a slow FP32, and a ResNet-18 run with no FP32 row at all."""
    dense = document(
        "vm",
        rows=[
            row("fp32", "fp32", 40.0, 102_000_000, 76.1, "fp32"),
            row("int8", "int8", 50.0, 25_800_000, 75.6, "int8"),
        ],
    )
    pruned = document(
        "vm",
        rows=[
            row("fp32", "fp32", 100.0, 102_000_000, 70.0, "fp32"),
            row("int8", "int8", 12.0, 25_800_000, 69.0, "int8"),
            row("p30-int8", "int8", 6.0, 12_900_000, 68.0, "int8"),
        ],
    )
    small = document(
        "vm", arch="resnet18", rows=[row("int8", "int8", 5.0, 11_800_000, 60.0, "int8")]
    )
    return {
        "a/onnx/results.json": dense,
        "b/onnx/results.json": pruned,
        "r18/onnx/results.json": small,
    }


def test_fp32_ratios_and_drops_come_from_the_same_run_only(tmp_path):
    write_report(two_runs_one_device(), tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    # Rows in file order: a/onnx fp32, int8; b/onnx fp32, int8, p30-int8; r18/onnx int8.
    across = table(md, "## Across devices")
    ratios = [r["x FP32 p50"] for r in across]
    drops = [r["top-1 % (change)"] for r in across]
    # The dense run's INT8 is slower than its own FP32: 50 / 40, not 50 / 100. The ResNet-18
    # run has no FP32 row: no ratio and no drop, never ResNet-50's.
    assert ratios == ["1.00x", "1.25x", "1.00x", "0.12x", "0.06x", "-"]
    assert drops == ["76.10", "75.60 (-0.50)", "70.00", "69.00 (-1.00)", "68.00 (-2.00)", "60.00"]
    device = table(md, "### Device: vm")
    assert [r["x FP32 size"] for r in device] == ["1.00x", "0.25x", "1.00x", "0.25x", "0.13x", "-"]
    assert [r["x FP32 p50"] for r in device] == ratios


def test_merged_runs_are_told_apart_in_tables_plots_and_select(tmp_path, monkeypatch, capsys):
    labels: list[str] = []
    monkeypatch.setattr(
        "edgeresnet.report.plots._place_labels",
        lambda fig, ax, found: labels.extend(text for text, _, _ in found),
    )
    docs = two_runs_one_device()
    write_report(docs, tmp_path / "r", command="c", constraints=Constraints(max_latency_ms=30))
    md = (tmp_path / "r" / "report.md").read_text()
    for heading in ("## Across devices", "## FP32 baseline", "## Selection", "### Device: vm"):
        names = [(r["model / run"], r.get("variant", "fp32")) for r in table(md, heading)]
        assert len(names) == len(set(names)), heading
    baselines = [r["model / run"] for r in table(md, "## FP32 baseline")]
    assert baselines == ["resnet50, a/onnx", "resnet50, b/onnx"]
    assert "- vm onnx:fp32 [resnet50, a/onnx]: p50 40.0 ms > 30 ms" in md
    # Plot labels: one per point, none twice.
    assert len(labels) == 2 * 6 and len(set(labels)) == 6
    assert "onnx:int8 [resnet50, a/onnx]" in labels and "onnx:int8 [resnet18, r18/onnx]" in labels
    # `edgeresnet select` prints which run each row is from.
    paths = [write(tmp_path, name, doc) for name, doc in docs.items()]
    assert main(["select", *paths, "--max-latency-ms", "60"]) == 0
    printed = capsys.readouterr().out
    ranked = [line for line in printed.splitlines() if re.match(r"\d+\s+vm", line)]
    assert len(ranked) == 5 and len(set(ranked)) == 5
    assert re.search(r"1\s+vm\s+onnx\s+int8\s+int8\s+5.00 .* resnet18, r18/onnx$", printed, re.M)
    assert "vm onnx:fp32 [resnet50, b/onnx]: p50 100.0 ms > 60 ms" in printed


def test_one_run_or_one_model_per_device_shows_no_run_column(tmp_path, capsys):
    docs = {"box-a/results.json": document("box-a"), "box-b/results.json": document("box-b")}
    write_report(docs, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    assert "model / run" not in md and "[resnet50" not in md
    paths = [write(tmp_path, name, doc) for name, doc in docs.items()]
    assert main(["select", *paths]) == 0
    assert "model / run" not in capsys.readouterr().out


def test_plots_name_the_rows_they_leave_out(tmp_path):
    labelled = document(
        "vm",
        rows=[
            row("fp32", "fp32", 40.0, 102_000_000, 76.1, "fp32"),
            row("int8", "int8", None, 25_800_000, 75.6, "-", notes=["not benchmarked here: x"]),
        ],
    )
    random = document("vm", weights="random", top1=False, arch="resnet18")
    write_report({"lab.json": labelled, "rnd.json": random}, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    plots = md.split("## Plots")[1].split("\n## ")[0]
    latency = plots.split("Not in accuracy_vs_latency.png:")[1].split("![")[0]
    assert "- vm onnx:fp32 [resnet18, rnd]: no top-1 (random weights)" in latency
    assert "- vm onnx:int8 [resnet18, rnd]: no top-1 (random weights)" in latency
    assert "- vm onnx:int8 [resnet50, lab]: no p50 latency (not benchmarked here: x)" in latency
    size = plots.split("Not in accuracy_vs_size.png:")[1]
    assert "[resnet50, lab]" not in size and size.count("no top-1 (random weights)") == 2
    html = (tmp_path / "report.html").read_text()
    assert "Not in this plot: vm onnx:fp32 [resnet18, rnd] (no top-1 (random weights))" in html


def test_a_plot_with_no_point_says_why(tmp_path):
    rows = [row("int8", "int8", None, 25_800_000, None, "-", notes=["not benchmarked here: x"])]
    write_report({"a.json": document("box", rows=rows)}, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    assert "accuracy_vs_latency.png is not drawn: no row has both numbers." in md
    assert "- box onnx:int8: no p50 latency (not benchmarked here: x)" in md
    assert not (tmp_path / "accuracy_vs_latency.png").exists()


def test_top5_is_shown_where_top1_is(tmp_path, capsys):
    rows = [
        row("fp32", "fp32", 40.0, 102_000_000, 76.1, "fp32"),
        row("int8", "int8", 12.0, 25_800_000, 75.6, "int8"),
    ]
    rows[0]["accuracy"]["top5"], rows[1]["accuracy"]["top5"] = 92.9, 92.4
    path = write(tmp_path, "a.json", document("box", rows=rows))
    assert main(["report", path, "--out", str(tmp_path / "r"), "--max-latency-ms", "20"]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert table(md, "## Across devices")[1]["top-5 % (change)"] == "92.40 (-0.50)"
    assert table(md, "## FP32 baseline")[0]["top-5 %"] == "92.90"
    assert table(md, "## Selection")[0]["top-5 %"] == "92.40 (-0.50)"
    assert table(md, "### Device: box")[0]["top-5 % (change)"] == "92.90"
    assert "<th>top-5 % (change)</th>" in (tmp_path / "r" / "report.html").read_text()
    capsys.readouterr()
    assert main(["select", path, "--max-latency-ms", "20"]) == 0
    assert re.search(r"top-1 %\s+top-5 %", capsys.readouterr().out)
    random = document("rnd", weights="random", top1=False)
    write_report({"r.json": random}, tmp_path / "rr", command="c")
    md = (tmp_path / "rr" / "report.md").read_text()
    assert table(md, "## Across devices")[0]["top-5 % (change)"] == "n/a (random weights)"


# ----------------------------------------------------------------------------- throughput


def test_small_throughput_keeps_its_digits(tmp_path):
    slow = row("fp32", "fp32", 2500.0, 102_000_000, None, "fp32")
    slow["bench"]["throughput"] = {"batch": 1, "images_per_s": 0.4}
    write_report({"a.json": document("box", rows=[slow])}, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    assert table(md, "## Across devices")[0]["img/s @batch"] == "0.400 @1"
    chosen = select(rows_of(document("box", rows=[slow]), "a.json"), Constraints(min_fps=1))
    assert chosen.excluded[0].reasons == ("throughput 0.400 img/s (batch 1) < 1 img/s",)


def test_rounds_of_a_slow_row_keep_their_digits(tmp_path):
    slow = row("fp32", "fp32", 2631.6, 102_000_000, None, "fp32")
    rounds = {"count": 2, "kept": "fastest", "p50_ms": [2631.6, 2702.7]}
    slow["bench"]["rounds"] = rounds | {"images_per_s": [0.38, 0.37]}
    write_report({"a.json": document("box", rows=[slow])}, tmp_path, command="c")
    assert "img/s 0.380/0.370, the most kept" in (tmp_path / "report.md").read_text()


def test_rows_timed_under_load_are_named_at_the_top(tmp_path):
    """Threads 2: a 1-minute load of 3.0 is the timing and one more process; 3.4 is more."""
    fp32 = row("fp32", "fp32", 40.0, 102_000_000, None, "fp32")
    int8 = row("int8", "int8", 12.0, 25_800_000, None, "int8")
    fp32["bench"]["load_average"] = {"start": [2.1, 1.0, 1.0], "end": [3.0, 1.2, 1.0]}
    int8["bench"]["load_average"] = {"start": [3.0, 1.2, 1.0], "end": [3.4, 1.3, 1.0]}
    write_report({"a.json": document("box", rows=[fp32, int8])}, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    warning = md.split("**Timed under load.**", 1)[1].split("\n\n", 1)[0]
    assert "box onnx:int8" in warning and "onnx:fp32" not in warning
    assert "Timed under load." in (tmp_path / "report.html").read_text()
    fp32["bench"]["load_average"] = int8["bench"]["load_average"] = None
    write_report({"a.json": document("box", rows=[fp32, int8])}, tmp_path / "quiet", command="c")
    assert "Timed under load" not in (tmp_path / "quiet" / "report.md").read_text()


def test_a_peer_run_timed_under_load_says_so_in_its_section(tmp_path):
    peers = peers_document("box")
    peers["producer"]["load_warning"] = "timed under load: the 1-minute load average reached 3.90"
    write_report({"onnx.json": document("box"), "peers.json": peers}, tmp_path, command="c")
    section = (tmp_path / "report.md").read_text().split("## Peer comparison")[1]
    assert "> **Warning:** timed under load: the 1-minute load average reached 3.90" in section
    html = (tmp_path / "report.html").read_text()
    assert "<strong>Warning:</strong> timed under load" in html


def test_openvino_throughput_names_its_streams(tmp_path):
    ov = row("int8", "int8", 10.0, 25_800_000, None, "int8", runtime="openvino")
    ov["bench"]["streams"] = 1
    ov["bench"]["throughput"] |= {"mode": "THROUGHPUT", "streams": 4, "infer_requests": 4}
    ort = row("fp32", "fp32", 40.0, 102_000_000, None, "fp32")
    docs = {"a.json": document("box", target="openvino", backend="openvino", rows=[ort, ov])}
    write_report(docs, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    assert table(md, "## Across devices")[1]["img/s @batch"] == "800 @8, 4 streams"
    assert table(md, "## Across devices")[0]["img/s @batch"] == "200 @8"
    where = table(md, "## Where each number comes from")
    assert where[1]["streams"] == "1 latency / 4 throughput"
    assert where[1]["throughput measured"] == (
        "THROUGHPUT hint, 4 streams, 4 requests in flight, batch 8"
    )
    assert where[0]["throughput measured"] == "batch 8, one call at a time (batch / its p50)"


# ----------------------------------------------------------------------------- malformed fields


def test_a_row_with_a_wrongly_typed_number_is_left_out_with_a_warning(tmp_path, capsys):
    doc = document("box")
    doc["rows"][1]["bench"]["latency"]["p50_ms"] = "fast"
    bad = write(tmp_path, "bad.json", doc)
    with pytest.raises(ReportError, match=r"rows\[1\] \(variant 'int8'\).*bench.latency.p50_ms"):
        load_results(Path(bad))
    out = tmp_path / "r"
    assert main(["report", bad, "--out", str(out)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "left out:" in err and "bad.json: rows[1] (variant 'int8')" in err
    assert "'bench.latency.p50_ms' must be a finite number or null, got a string (\"fast\")" in err
    md = (out / "report.md").read_text()
    assert [r["variant"] for r in table(md, "## Across devices")] == ["**fp32**"]
    assert "Results files and rows left out" in md and "bench.latency.p50_ms" in md
    assert main(["select", bad]) == 0
    assert "bench.latency.p50_ms" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            ("accuracy", "top5"),
            "99",
            "'accuracy.top5' must be a finite number or null, got a string",
        ),
        (
            ("fidelity", "sqnr_db"),
            True,
            "'fidelity.sqnr_db' must be a finite number or null, got a bool",
        ),
        (("bench", "throughput"), 5, "'bench.throughput' must be an object or null, got int"),
        (
            ("artifact", "bytes"),
            [1],
            "'artifact.bytes' must be a finite number or null, got a list",
        ),
    ],
)
def test_every_read_number_is_type_checked(tmp_path, field, value, message):
    doc = document("box")
    doc["rows"][0][field[0]][field[1]] = value
    path = Path(write(tmp_path, "t.json", doc))
    with pytest.raises(ReportError, match=re.escape(message)):
        load_results(path)


def test_a_wrongly_typed_model_number_leaves_the_file_out(tmp_path):
    doc = document("box")
    doc["model"]["macs"] = "many"
    path = Path(write(tmp_path, "m.json", doc))
    with pytest.raises(ReportError, match=r"m.json: field 'model.macs' must be a number or null"):
        load_results(path, left_out=[])


# ----------------------------------------------------------------------------- clocks, power


def test_clocks_show_what_the_tensorrt_scripts_record(tmp_path):
    jetson = row("int8", "int8", 2.0, 25_800_000, None, "int8", runtime="tensorrt")
    jetson["bench"] |= {
        "jetson": {"l4t": "36.3", "jetpack": "6.0", "power_mode": "MAXN", "clocks_locked": False}
    }
    gpu = row("fp16", "fp16", 1.0, 51_000_000, None, "fp16", runtime="tensorrt")
    gpu["bench"] |= {
        "jetson": None,
        "nvidia_smi": {
            "name": "H100",
            "clocks.sm": "1980 MHz",
            "clocks.max.sm": "1980 MHz",
            "power.limit": "700.00 W",
            "persistence_mode": "Enabled",
        },
    }
    docs = {"j.json": document("dev", target="jetson", backend="tensorrt", rows=[jetson, gpu])}
    write_report(docs, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    clocks = [r["clocks"] for r in table(md, "## Where each number comes from")]
    assert clocks == [
        "clocks NOT locked (latency follows DVFS); power mode MAXN",
        "SM clock 1980 MHz of max 1980 MHz; power limit 700.00 W; persistence mode Enabled",
    ]


def test_power_columns_only_where_power_was_measured(tmp_path):
    write_report({"a.json": document("box")}, tmp_path, command="c")
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    assert "power W" not in md and "img/J" not in md and "power W" not in html
    assert "tegrastats" not in md and "tegrastats" not in html


# ----------------------------------------------------------------------------- output errors


def test_out_through_a_file_is_an_output_error_and_writes_nothing(tmp_path, capsys):
    good = write(tmp_path / "in", "results.json", document("box"))
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    before = sorted(tmp_path.rglob("*"))
    for command in (["report", good], ["select", good]):
        assert main([*command, "--out", str(blocker / "sub")]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert f"error: Cannot write the report to {blocker / 'sub'}: {blocker} is a file" in err
        assert "hint: Pass --out a folder" in err
    with pytest.raises(OutputError, match="it is a file, not a folder"):
        write_report({"a.json": document("box")}, blocker, command="c")
    assert blocker.read_text() == "mine" and sorted(tmp_path.rglob("*")) == before


def test_an_inputs_folder_of_the_users_is_refused_and_kept(tmp_path, capsys):
    """The report replaces OUT/inputs/ as a whole: only where it holds results files."""
    good = write(tmp_path / "in", "results.json", document("box"))
    out = tmp_path / "out"
    (out / "inputs").mkdir(parents=True)
    (out / "inputs" / "important.txt").write_text("precious")
    for command in (["report", good], ["select", good]):
        assert main([*command, "--out", str(out)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"error: {out / 'inputs'} holds important.txt, which is not an edgeresnet" in err
        assert "hint: Pass an --out without an inputs/ folder of your own" in err
    assert sorted(p.name for p in out.rglob("*")) == ["important.txt", "inputs"]
    (out / "inputs" / "important.txt").unlink()
    assert main(["report", good, "--out", str(out)]) == 0  # an empty one, then its own copies
    assert main(["report", good, "--out", str(out)]) == 0
    assert [p.name for p in (out / "inputs").iterdir()] == ["in.results.json"]


def test_a_failure_half_way_leaves_the_previous_report_as_it_was(tmp_path, monkeypatch):
    import errno

    from edgeresnet.report import render

    good = write(tmp_path / "in", "results.json", document("box"))
    out = tmp_path / "rep"
    assert main(["report", good, "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real, calls = render.scatter, []

    def full_disk(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # the first plot is written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "scatter", full_disk)
    other = write(tmp_path / "in2", "results.json", document("box-2"))
    with pytest.raises(OutputError, match="No space left on the device") as info:
        render.write_report({"x": document("box-2")}, out, command="c")
    assert "nothing was written" in str(info.value)
    calls.clear()
    assert main(["report", other, "--out", str(out)]) == 1
    calls.clear()
    assert main(["report", other, "--out", str(tmp_path / "new")]) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ------------------------------------------------------------ merged files, limits, odd values


def test_random_weights_never_show_an_accuracy_a_file_claims(tmp_path):
    doc = document("rnd", weights="random")  # rows carry top-1 though the weights are random
    rows = rows_of(doc, "r.json")
    assert all(r.random_weights and r.top1 is None and r.top5 is None for r in rows)
    assert select(rows, Constraints(min_top1=0.05)).chosen == []


def test_the_same_results_twice_are_read_once(tmp_path):
    path = write(tmp_path, "a/results.json", document("box"))
    copy = tmp_path / "copy.json"
    shutil.copyfile(path, copy)
    documents, problems = load_many([Path(path), copy, Path(path)])
    assert list(documents) == [path]
    assert [p.message for p in problems] == [
        f"{copy} holds the same results as {path}; it is read once.",
        f"{path} is given twice; it is read once.",
    ]


def test_limits_are_kept_exactly_and_reasons_show_the_digits_that_decide():
    rows = rows_of(
        document("box", rows=[row("fp32", "fp32", 20.0135, 30_004_900, None, "fp32")]), "a.json"
    )
    limits = Constraints(max_latency_ms=20.01306, max_size_mb=30.0)
    assert limits.flags() == ["--max-latency-ms", "20.01306", "--max-size-mb", "30"]
    (verdict,) = select(rows, limits).excluded
    assert verdict.reasons == ("p50 20.014 ms > 20.01306 ms", "size 30.005 MB > 30 MB")
    huge = rows_of(document("box", rows=[row("fp32", "fp32", 1e308, 1, None, "fp32")]), "b.json")
    assert select(huge, limits).excluded[0].reasons == ("p50 1e+308 ms > 20.01306 ms",)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r["accuracy"].update(top1=150.0), "accuracy.top1"),
        (lambda r: r["bench"]["throughput"].update(batch=8.5), "bench.throughput.batch"),
        (
            lambda r: r["bench"].update(
                paired={"reference": "fp32", "pairs": 50, "p50_ms": 1.0, "ratio": float("nan")}
            ),
            "bench.paired.ratio",
        ),
    ],
)
def test_a_value_out_of_its_range_leaves_its_row_out_with_a_reason(tmp_path, edit, field):
    doc = document("box")
    edit(doc["rows"][1])
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(doc))  # NaN as JSON writes it
    left_out: list = []
    kept = load_results(path, left_out=left_out)
    assert [r["variant"] for r in kept["rows"]] == ["fp32"]
    assert len(left_out) == 1 and f"the field '{field}'" in left_out[0].message


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("a row", "rows[1] must be an object, got str"),
        ({"precision": "int8"}, "rows[1] lacks the field 'variant'"),
        ({"variant": "int8", "artifact": "model.int8.onnx"}, "rows[1].artifact must be an object"),
        ({"variant": "int8", "notes": "slow"}, "rows[1].notes must be a list, got str"),
    ],
)
def test_a_row_of_the_wrong_shape_leaves_that_row_out_not_its_file(tmp_path, bad, message):
    doc = document("box")
    doc["rows"][1] = bad
    path = write(tmp_path, "odd.json", doc)
    left_out: list = []
    kept = load_results(Path(path), left_out=left_out)
    assert [r["variant"] for r in kept["rows"]] == ["fp32"]
    assert len(left_out) == 1 and message in left_out[0].message
    assert "the file's other rows are kept" in left_out[0].message


def test_a_schema_version_that_is_not_a_number_is_refused(tmp_path):
    doc = document("box")
    doc["schema_version"] = True
    path = write(tmp_path, "v.json", doc)
    with pytest.raises(ReportError, match="schema_version True, which is not a version number"):
        load_results(Path(path))


def test_files_with_no_readable_rows_say_so_not_that_peers_hold_them(tmp_path, capsys):
    doc = document("box", rows=[row("fp32", "fp32", 40.0, 102_000_000, 200.0, "fp32")])
    path = write(tmp_path, "bad.json", doc)  # its one row has a top-1 of 200 %: left out
    assert main(["report", path, "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "No rows could be read from these results" in md and "Peer comparison" not in md
    capsys.readouterr()
    assert main(["select", path]) == 3
    assert "no candidates: these files hold no rows that could be read" in capsys.readouterr().out


def test_a_report_written_again_replaces_what_it_owns_and_keeps_the_rest(tmp_path):
    out = tmp_path / "rep"
    first = write(tmp_path, "a/results.json", document("box-a"))
    assert main(["report", first, "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "accuracy_vs_size.png").write_bytes(b"stale")
    second = write(tmp_path, "b/results.json", document("box-b"))
    assert main(["report", second, "--out", str(out)]) == 0
    assert [p.name for p in (out / "inputs").iterdir()] == ["b.results.json"]
    assert (out / "notes.txt").read_text() == "mine"
    size_plot = out / "accuracy_vs_size.png"
    assert not size_plot.exists() or size_plot.read_bytes() != b"stale"
    assert "### Device: box-a" not in (out / "report.md").read_text()


def test_two_weights_of_one_architecture_on_two_devices_are_told_apart():
    from edgeresnet.report.rows import runs

    a, b = document("box-a", weights="random"), document("box-b", weights="random")
    a["model"]["weights"]["seed"], b["model"]["weights"]["seed"] = 0, 1
    assert runs(rows_of(a, "a.json") + rows_of(b, "b.json")).shown
    b["model"]["weights"]["seed"] = 0  # the same model on two devices: nothing to tell apart
    assert not runs(rows_of(a, "a.json") + rows_of(b, "b.json")).shown
