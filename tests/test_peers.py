"""Peers: the by-hand references are built with their tools' defaults and timed like our own."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import read_until

from edgeresnet.cli import main
from edgeresnet.lock import LOCK_NAME, output_lock
from edgeresnet.models import RANDOM_INIT
from edgeresnet.ondevice.common import SCHEMA, results_document
from edgeresnet.report import load_results, write_report

SIZE = 32
HAS_OPENVINO = all(importlib.util.find_spec(m) for m in ("openvino", "nncf"))
OPENVINO_PEERS = {"openvino-f32", "nncf-default-int8"}
FAST = ["--batch-sizes", "1,2", "--warmup", "1", "--min-iterations", "3", "--min-seconds", "0.05"]


def test_bench_needs_compare_peers(capsys):
    assert main(["bench"]) == 2
    assert "--compare-peers" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--input-size", "16"], "--input-size must be 32 to 1024 pixels, got 16."),
        (["--calib-size", "0"], "--calib-size must be at least 1, got 0."),
    ],
)
def test_peer_options_are_checked_as_a_builds_are(tmp_path, capsys, option, message):
    out = tmp_path / "peers"
    assert (
        main(["bench", "--compare-peers", "--weights", "random", *option, "--out", str(out)]) == 2
    )
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "hint:" in err and not out.exists()


def test_against_must_be_a_bundle(tmp_path, capsys):
    assert main(["bench", "--compare-peers", "--against", str(tmp_path)]) == 2
    assert "not an edgeresnet bundle" in capsys.readouterr().err


# The model the quick peer runs below use; a bundle's manifest records its model the same way.
QUICK_MODEL = {
    "arch": "resnet18",
    "num_classes": 1000,
    "width": 64,
    "input_size": SIZE,
    "weights": {
        "kind": "random",
        "name": "random",
        "url": None,
        "sha256": None,
        "seed": 0,
        "init": RANDOM_INIT,
    },
}


def _quick(digits: dict[str, Path], out: Path, *more: str) -> list[str]:
    """A peer run of QUICK_MODEL that the tests stop before any peer is made."""
    argv = ["bench", "--compare-peers", "--model", "resnet18", "--weights", "random"]
    argv += ["--calib", str(digits["train"]), "--calib-size", "2", "--input-size", str(SIZE)]
    return [*argv, "--threads", "1", *FAST, *more, "--out", str(out)]


def _fake_bundle(path: Path, model: dict[str, Any], results_model: dict | None = None) -> Path:
    """A bundle folder whose manifest lists no files: enough for the model check."""
    path.mkdir(parents=True)
    manifest = {
        "model": model,
        "target": {"name": "onnx", "backend": "onnxruntime", "device": "CPU"},
        "variants": [],
        "files": [],
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    if results_model is not None:
        document = results_document(
            producer={},
            device={"name": "here"},
            environment={},
            model=results_model,
            data={},
            target=manifest["target"],
            rows=[],
        )
        (path / "results.json").write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"arch": "resnet50"}, "architecture resnet50 there, resnet18 here"),
        ({"input_size": 64}, f"input size 64 there, {SIZE} here"),
        ({"num_classes": 10, "width": 16}, "width 16 there, 64 here; class count 10 there"),
        (
            {"weights": {**QUICK_MODEL["weights"], "seed": 1}},
            "weights random (seed 1) there, random (seed 0) here",
        ),
        (  # built before random weights had BatchNorm statistics: another model
            {"weights": {k: v for k, v in QUICK_MODEL["weights"].items() if k != "init"}},
            "weights random (seed 0, identity BatchNorm: an older recipe) there",
        ),
        (
            {"weights": {"kind": "file", "name": "mine.pth", "sha256": "ab" * 32}},
            "weights file mine.pth, sha256 abababababab there",
        ),
    ],
)
def test_against_a_bundle_of_another_model_is_refused(
    digits: dict[str, Path], tmp_path: Path, capsys, change: dict[str, Any], said: str
):
    """Dividing the timings of two different models is no comparison: refused before any work."""
    bundle = _fake_bundle(tmp_path / "bundle", {**QUICK_MODEL, **change})
    out = tmp_path / "peers"
    assert main(_quick(digits, out, "--against", str(bundle))) == 2
    err = capsys.readouterr().err
    assert f"--against {bundle} was built from another model than the peers'" in err
    assert said in err
    assert "hint: Run the peers on the bundle's model (--model" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_against_weights_recorded_only_in_the_results_are_checked(
    digits: dict[str, Path], tmp_path: Path, capsys
):
    manifest_model = {k: v for k, v in QUICK_MODEL.items() if k != "weights"}
    results_model = {**QUICK_MODEL, "weights": {**QUICK_MODEL["weights"], "seed": 7}}
    bundle = _fake_bundle(tmp_path / "bundle", manifest_model, results_model)
    assert main(_quick(digits, tmp_path / "peers", "--against", str(bundle))) == 2
    err = capsys.readouterr().err
    assert "weights random (seed 7) there, random (seed 0) here" in err
    assert "--weights random --seed 7 --input-size 32" in err


def test_against_a_damaged_bundle_is_one_error_with_one_hint(digits, tmp_path: Path, capsys):
    bundle = _fake_bundle(tmp_path / "bundle", QUICK_MODEL)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = [{"path": "model.onnx", "bytes": 4, "sha256": "0" * 64}]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    (bundle / "model.onnx").write_bytes(b"onnx")
    assert main(_quick(digits, tmp_path / "peers", "--against", str(bundle))) != 0
    err = capsys.readouterr().err
    assert "model.onnx does not match its sha256" in err, err
    assert err.count("error:") == 1 and err.count("hint:") == 1, err
    assert "Traceback" not in err


def test_against_a_bundle_of_the_same_model_passes_the_check(tmp_path: Path):
    from edgeresnet.peers.against import check_against

    # Another copy of the same weights file (other name, same sha256) is the same model.
    same_file = {"kind": "file", "name": "a.pth", "sha256": "cd" * 32}
    bundle = _fake_bundle(tmp_path / "b", {**QUICK_MODEL, "weights": same_file})
    check_against(bundle, {**QUICK_MODEL, "weights": {**same_file, "name": "b.pth"}})
    check_against(_fake_bundle(tmp_path / "c", QUICK_MODEL), QUICK_MODEL)


def test_ort_fp32_claims_the_same_file_only_when_the_sha256_match():
    from edgeresnet.peers import byhand

    assert "same file" not in byhand.ORT_FP32.how
    ours = {"artifact": {"sha256": "a" * 64}, "remeasured": {"source": "build/onnx"}}
    same = byhand.ort_fp32_how("a" * 64, ours)
    assert "the same file as edgeresnet's fp32 in build/onnx" in same and "noise" in same
    other = byhand.ort_fp32_how("b" * 64, ours)
    assert "not the same file as edgeresnet's fp32 in build/onnx" in other
    assert "bbbbbbbbbbbb here, aaaaaaaaaaaa there" in other and "noise" not in other
    alone = byhand.ort_fp32_how("b" * 64, None)
    assert "was not checked" in alone and "noise" not in alone


def test_load_above_the_threads_in_use_is_a_warning():
    from edgeresnet.peers.run import load_warning

    assert load_warning(3.0, 2) is None  # the timing's own 2 threads and one more process
    assert load_warning(0.3, 1) is None
    text = load_warning(3.51, 2)
    assert text is not None and "3.51" in text and "more than the 2 threads in use" in text
    assert "artefacts" in text


def test_out_under_a_file_is_an_output_error(digits: dict[str, Path], tmp_path: Path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(_quick(digits, blocker / "sub" / "peers")) == 1
    err = capsys.readouterr().err
    assert f"error: Cannot write under {blocker / 'sub' / 'peers'}: {blocker} is a file" in err
    assert "Traceback" not in err and "hint:" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    assert blocker.read_text() == "not a folder"


def test_out_that_is_a_file_is_an_output_error(digits: dict[str, Path], tmp_path: Path, capsys):
    out = tmp_path / "peers"
    out.write_text("keep me")
    assert main(_quick(digits, out)) == 1
    assert f"error: --out {out} is a file, not a folder" in capsys.readouterr().err
    assert out.read_text() == "keep me" and [p.name for p in tmp_path.iterdir()] == ["peers"]


def test_unwritable_out_is_an_output_error(
    digits: dict[str, Path], tmp_path: Path, capsys, monkeypatch
):
    from edgeresnet import publish

    def refuse(*args: Any, **kwargs: Any) -> str:  # what mkdtemp raises in a read-only folder
        raise PermissionError(errno.EACCES, "Permission denied", str(kwargs.get("dir")))

    monkeypatch.setattr(publish.tempfile, "mkdtemp", refuse)
    assert main(_quick(digits, tmp_path / "peers")) == 1
    err = capsys.readouterr().err
    assert f"error: Cannot write under {tmp_path / 'peers'}: Permission denied ({tmp_path})" in err
    assert "Traceback" not in err and not (tmp_path / "peers").exists()


# What an earlier peer run left in --out (the run replaces only such a folder).
PREVIOUS = json.dumps({"schema": SCHEMA, "producer": {"tool": "edgeresnet bench --compare-peers"}})


def _previous_output(out: Path) -> None:
    out.mkdir()
    (out / "results.json").write_text(PREVIOUS)


def test_a_failed_write_leaves_the_previous_output_whole(
    digits: dict[str, Path], tmp_path: Path, capsys, monkeypatch
):
    import edgeresnet.peers.run as run

    def half_written(*args: Any) -> None:  # the disk fills up while the report is written
        staging = args[-1]
        (staging / "results.json").write_text("new")
        raise OSError(errno.ENOSPC, "No space left on device", str(staging / "report.md"))

    out = tmp_path / "peers"
    _previous_output(out)
    monkeypatch.setattr(run, "_run", half_written)
    assert main(_quick(digits, out)) == 1
    err = capsys.readouterr().err
    assert f"error: No space left on the device while writing under {out}" in err
    assert "Traceback" not in err
    assert _beside(tmp_path) == ["peers"]  # no staging folder left
    assert [p.name for p in out.iterdir()] == ["results.json"]
    assert (out / "results.json").read_text() == PREVIOUS


def test_a_failed_publish_puts_the_previous_output_back(
    digits: dict[str, Path], tmp_path: Path, capsys, monkeypatch
):
    import edgeresnet.peers.run as run

    monkeypatch.setattr(run, "_run", lambda *a: (a[-1] / "results.json").write_text("new"))
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if ".staging-" in Path(src).name:
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        real_replace(src, dst)

    out = tmp_path / "peers"
    _previous_output(out)
    monkeypatch.setattr(run.os, "replace", replace)
    assert main(_quick(digits, out)) == 1
    assert f"error: Cannot write under {out}: Invalid cross-device link" in capsys.readouterr().err
    assert _beside(tmp_path) == ["peers"]
    assert (out / "results.json").read_text() == PREVIOUS


def _beside(folder: Path) -> list[str]:
    """What ``folder`` holds but the lock file: a peer run locks the folder ``--out`` is in."""
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)


@pytest.mark.parametrize("held", ["a build", "the user's files", "a foreign results.json"])
def test_an_out_that_no_peer_run_wrote_is_refused_before_any_work(
    digits: dict[str, Path], tmp_path: Path, capsys, held: str
):
    """The run replaces --out as a whole: `--out build` deleted every bundle there."""
    out = tmp_path / "out"
    out.mkdir()
    if held == "a build":
        (out / "onnx").mkdir()
        (out / "onnx" / "model.int8.onnx").write_bytes(b"bundle")
    elif held == "the user's files":
        (out / "notes.txt").write_text("mine")
    else:
        tool = {"schema": SCHEMA, "producer": {"tool": "edgeresnet build"}}
        (out / "results.json").write_text(json.dumps(tool))
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    assert main(_quick(digits, out)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: {out} holds files that `edgeresnet bench --compare-peers` did not write" in err
    assert "they would be deleted" in err and "hint: Pass an --out where out/ is new" in err
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_an_input_inside_out_or_an_out_inside_the_images_is_refused(
    digits: dict[str, Path], tmp_path: Path, capsys
):
    out = tmp_path / "peers"
    _previous_output(out)
    bundle = _fake_bundle(out / "onnx", {"arch": "resnet18"})
    assert main([*_quick(digits, out), "--against", str(bundle)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: --against {bundle} lies inside {out}, which the peer comparison" in err
    assert (bundle / "manifest.json").is_file()
    inside = digits["train"] / "peers"
    assert main(_quick(digits, inside)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: --out {inside} lies inside --calib {digits['train']}" in err
    assert not inside.exists()


def test_a_second_run_beside_the_same_out_is_refused(digits: dict[str, Path], tmp_path, capsys):
    """Runs sweep the folder beside ``--out`` of what killed runs left: one at a time there."""
    out = tmp_path / "peers"
    _previous_output(out)
    with output_lock(tmp_path):
        assert main(_quick(digits, out)) == 2
    err = capsys.readouterr().err
    assert f"Another edgeresnet build is writing to {tmp_path} (pid {os.getpid()})" in err
    assert "hint:" in err and _beside(tmp_path) == ["peers"]
    assert (out / "results.json").read_text() == PREVIOUS


def test_kill_9_leaves_nothing_in_the_system_temp_and_the_next_run_sweeps_up(
    digits: dict[str, Path], tmp_path: Path, capsys, monkeypatch
):
    import edgeresnet.peers.run as run

    out = tmp_path / "peers"
    _previous_output(out)
    # The system's temporary folder, watched. Not a work file: ONNX Runtime's shared session id
    # ".ses". Nor is torch._dynamo's cache folder "torchinductor_USER", but it would be there if
    # the MACs were counted (which imports torch._dynamo) outside the work folder.
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()

    def left_in_temp() -> list[str]:
        return sorted(p.name for p in system_temp.iterdir() if p.name != ".ses")

    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeresnet", *_quick(digits, out)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(system_temp)},
        start_new_session=True,  # SIGKILL the timing process with its parent
    )
    seen = read_until(proc, "benchmarking")
    # Killed while a timing process runs: its folder made, wherever the run keeps them.
    give_up = time.monotonic() + 240
    while proc.poll() is None and not list(tmp_path.rglob("edgeresnet-bench-*")):
        if time.monotonic() > give_up:  # a hang: the assertions below say what is missing
            proc.kill()
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # A child killed between fork and exec still shares the run's lock until it is gone: on a
    # loaded machine the next run found the folder "being written" by it.
    _wait_until_gone(proc.pid)
    assert any("benchmarking" in line for line in seen), "".join(seen)
    assert left_in_temp() == []
    assert [p for p in tmp_path.glob(".peers.*staging-*")], _beside(tmp_path)
    assert (out / "results.json").read_text() == PREVIOUS
    # The next run removes what the killed one left beside --out, then publishes as ever; the
    # folder holding --out is the user's: another tool's folders there are left alone.
    (tmp_path / ".other.staging-1").mkdir()
    monkeypatch.setattr(run, "_run", lambda *a: (a[-1] / "results.json").write_text("new"))
    assert main(_quick(digits, out)) == 0, capsys.readouterr().err
    assert _beside(tmp_path) == [".other.staging-1", "peers", "system-temp"]
    assert left_in_temp() == []
    assert (out / "results.json").read_text() == "new"


def _wait_until_gone(group: int, timeout_s: float = 30) -> None:
    """Until no process of ``group`` is left to signal (a zombie nobody reaps stays: the wait
    then ends at ``timeout_s``; it holds no files)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _peer_document(images_per_s: float, **producer: Any) -> dict[str, Any]:
    """A peer run's results with one slow peer and one re-measured edgeresnet row."""
    bench = {"runtime": "torch", "threads": 1, "precision_executed": {"label": "fp32"}}
    peer = {
        "variant": "pytorch-fp32",
        "precision": "fp32",
        "peer": {
            "label": "PyTorch eager FP32",
            "how": "by hand",
            "counterparts": [{"backend": "onnxruntime", "variant": "fp32"}],
        },
        "bench": {
            **bench,
            "latency": {"p50_ms": 1000.0 / images_per_s, "p99_ms": 1100.0 / images_per_s},
            "throughput": {"batch": 1, "images_per_s": images_per_s},
        },
        "notes": [],
    }
    ours = {
        "variant": "fp32",
        "precision": "fp32",
        "remeasured": {"source": "build/onnx", "target": "onnx", "backend": "onnxruntime"},
        "bench": {
            **bench,
            "runtime": "onnxruntime",
            "latency": {"p50_ms": 62.0, "p99_ms": 70.0},
            "throughput": {"batch": 1, "images_per_s": 16.1},
        },
        "notes": [],
    }
    return results_document(
        producer=producer,
        device={"name": "here"},
        environment={},
        model=QUICK_MODEL,
        data={},
        target={"name": "peers", "backend": "peers", "device": "CPU"},
        rows=[peer, ours],
    )


def _peer_section(document: dict[str, Any], out: Path) -> str:
    write_report({"peers/results.json": document}, out, command="test")
    md = (out / "report.md").read_text()
    return md.split("## Peer comparison")[1].split("\n## ")[0]


def test_a_slow_peer_keeps_the_digits_of_its_throughput(tmp_path: Path):
    section = _peer_section(_peer_document(0.38), tmp_path)
    assert "| PyTorch eager FP32 | fp32 | 2631.58 |" in section
    assert "| 0.380 @1 |" in section and "| 0 @1 |" not in section


def test_a_slow_peer_keeps_the_digits_of_its_rounds(tmp_path: Path):
    document = _peer_document(0.38)
    rounds = {"count": 2, "p50_ms": [2631.6, 2702.7], "images_per_s": [0.38, 0.37]}
    document["rows"][0]["bench"]["rounds"] = {**rounds, "kept": "fastest"}
    write_report({"peers/results.json": document}, tmp_path, command="test")
    assert "img/s 0.380/0.370, the most kept" in (tmp_path / "report.md").read_text()


def test_the_load_warning_stands_next_to_the_peer_figures(tmp_path: Path):
    from edgeresnet.peers.run import load_warning

    warning = load_warning(3.9, 2)
    section = _peer_section(_peer_document(0.38, load_warning=warning), tmp_path)
    assert "timed under load: the 1-minute load average reached 3.90" in section


@pytest.mark.slow
def test_peers_are_measured_side_by_side_and_reported_as_ratios(
    digits: dict[str, Path], fast_profile: Path, tmp_path: Path, capsys, monkeypatch
):
    common = ["--model", "resnet18", "--weights", "random", "--calib", str(digits["train"])]
    common += ["--calib-size", "8", "--input-size", str(SIZE)]
    build = tmp_path / "build"
    assert main(["build", "--target", str(fast_profile), *common, "--out", str(build)]) == 0
    capsys.readouterr()
    # A busy machine: 1-minute load 2.5 at first, rising with every reading: more than the 1
    # thread in use and one other process.
    loads = iter(2.5 + i / 100 for i in range(10_000))
    monkeypatch.setattr(os, "getloadavg", lambda: (next(loads), 1.0, 1.0))
    peers_out = tmp_path / "peers"
    argv = ["bench", "--compare-peers", *common, "--threads", "1", *FAST, "--rounds", "2"]
    assert main([*argv, "--against", str(build / "onnx"), "--out", str(peers_out)]) == 0
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "warning: the 1-minute load average is 2.50 before any timing" in err
    assert "warning: timed under load: the 1-minute load average reached" in err

    document = load_results(peers_out / "results.json")
    assert document["target"]["name"] == "peers"
    assert set(document["producer"]["load_average"]) == {"start", "end"}
    peak = document["producer"]["load_average"]["end"][0]
    assert document["producer"]["load_warning"].startswith(
        f"timed under load: the 1-minute load average reached {peak:.2f} during this peer "
        "comparison, more than the 1 thread in use and one other process"
    )
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
    # Every timed row records its load and says it was timed under load.
    for name, r in {**peers, **again}.items():
        assert set(r["bench"]["load_average"]) == {"start", "end"}, name
        assert [n for n in r["notes"] if n.startswith("timed under load: ")], name
    # The ORT FP32 peer is the build's fp32 file byte for byte, and says so with the sha256.
    sha = again["fp32"]["artifact"]["sha256"]
    assert peers["ort-fp32"]["artifact"]["sha256"] == sha
    assert (
        f"the same file as edgeresnet's fp32 in {build / 'onnx'} (sha256 {sha[:12]})"
        in (peers["ort-fp32"]["peer"]["how"])
    )

    report = tmp_path / "report"
    results = [str(build / "onnx" / "results.json"), str(peers_out / "results.json")]
    assert main(["report", *results, "--out", str(report)]) == 0
    md = (report / "report.md").read_text()
    section = md.split("## Peer comparison")[1].split("\n## ")[0]
    assert "Same run" in section and "fastest of 2 rounds" in md
    assert "the same file as edgeresnet's fp32" in section
    assert "- peers/pytorch-fp32: timed under load: 1-minute load average" in md
    assert "p50 / ORT quantize_static defaults" in section and "p50 / PyTorch eager FP32" in section
