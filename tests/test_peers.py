"""Peers: the by-hand references are built with their tools' defaults and timed like our own."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgeresnet.cli import main
from edgeresnet.report import load_results

SIZE = 32
HAS_OPENVINO = all(importlib.util.find_spec(m) for m in ("openvino", "nncf"))
OPENVINO_PEERS = {"openvino-f32", "nncf-default-int8"}
FAST = ["--batch-sizes", "1,2", "--warmup", "1", "--min-iterations", "3", "--min-seconds", "0.05"]


def test_bench_needs_compare_peers(capsys):
    assert main(["bench"]) == 2
    assert "--compare-peers" in capsys.readouterr().err


def test_against_must_be_a_bundle(tmp_path, capsys):
    assert main(["bench", "--compare-peers", "--against", str(tmp_path)]) == 2
    assert "not an edgeresnet bundle" in capsys.readouterr().err


@pytest.mark.slow
def test_peers_are_measured_side_by_side_and_reported_as_ratios(
    digits: dict[str, Path], fast_profile: Path, tmp_path: Path, capsys
):
    common = ["--model", "resnet18", "--weights", "random", "--calib", str(digits["train"])]
    common += ["--calib-size", "8", "--input-size", str(SIZE)]
    build = tmp_path / "build"
    assert main(["build", "--target", str(fast_profile), *common, "--out", str(build)]) == 0
    peers_out = tmp_path / "peers"
    argv = ["bench", "--compare-peers", *common, "--threads", "1", *FAST, "--rounds", "2"]
    assert main([*argv, "--against", str(build / "onnx"), "--out", str(peers_out)]) == 0

    document = load_results(peers_out / "results.json")
    assert document["target"]["name"] == "peers"
    assert set(document["producer"]["load_average"]) == {"start", "end"}
    rows = {r["variant"]: r for r in document["rows"]}
    peers = {name: r for name, r in rows.items() if r.get("peer")}
    assert set(peers) == {
        "pytorch-fp32",
        "ort-fp32",
        "openvino-f32",
        "nncf-default-int8",
        "ort-default-int8",
    }
    if not HAS_OPENVINO:  # the peers OpenVINO needs say why they are missing, the rest run
        assert all(peers[name]["notes"] and not peers[name]["bench"] for name in OPENVINO_PEERS)
        peers = {name: r for name, r in peers.items() if name not in OPENVINO_PEERS}
    for name, r in peers.items():
        assert r["bench"]["latency"]["p50_ms"] > 0, name
        rounds = r["bench"]["rounds"]
        assert rounds["count"] == 2 and r["bench"]["latency"]["p50_ms"] == min(rounds["p50_ms"])
        rate = r["bench"]["throughput"]["images_per_s"]
        assert rate == max(rounds["images_per_s"])
        assert r["bench"]["threads"] == 1, name
        assert r["fidelity"]["images"] == 8, name
    executed = {name: r["bench"]["precision_executed"]["label"] for name, r in peers.items()}
    assert executed["pytorch-fp32"] == executed["ort-fp32"] == "fp32"
    assert "int8" in executed["ort-default-int8"]
    if HAS_OPENVINO:
        assert executed["openvino-f32"] == "fp32" and "int8" in executed["nncf-default-int8"]
    assert rows["pytorch-fp32"]["bench"]["runtime"] == "torch"
    assert peers["ort-fp32"]["fidelity"]["top1_agreement"] == 100.0
    assert peers["pytorch-fp32"]["fidelity"]["top1_agreement"] == 100.0
    assert "quantize_static" in peers["ort-default-int8"]["build"]["method"]
    # The build's own artifacts were timed again in this run, next to the peers.
    again = {name: r for name, r in rows.items() if r.get("remeasured")}
    assert set(again) == {"fp32", "int8"}
    assert all(r["bench"]["latency"]["p50_ms"] > 0 for r in again.values())

    report = tmp_path / "report"
    results = [str(build / "onnx" / "results.json"), str(peers_out / "results.json")]
    assert main(["report", *results, "--out", str(report)]) == 0
    md = (report / "report.md").read_text()
    section = md.split("## Peer comparison")[1].split("\n## ")[0]
    assert "Same run" in section and "fastest of 2 rounds" in md
    assert "p50 / ORT quantize_static defaults" in section and "p50 / PyTorch eager FP32" in section
