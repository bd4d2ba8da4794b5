"""End-to-end builds of the ONNX target: real images, real ONNX Runtime, real files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import assert_ratio_of_p50s
from PIL import Image

from edgeresnet import pipeline, publish, stages
from edgeresnet.backends import onnxruntime as ort_backend
from edgeresnet.cli import main
from edgeresnet.errors import DataError, QuantizationError
from edgeresnet.ondevice.common import sha256_file

pytestmark = pytest.mark.slow


def build(*args: str) -> int:
    return main(["build", *args])


def results(out: Path, target: str = "onnx") -> dict:
    return json.loads((out / target / "results.json").read_text())


def rows(document: dict) -> dict[str, dict]:
    return {row["variant"]: row for row in document["rows"]}


def test_int8_keeps_digits_accuracy(digits_build, fast_profile, tmp_path):
    """INT8 of a ResNet trained on real digits: top-1 within 1 point, agreement >= 98 %."""
    out = tmp_path / "out"
    code = build(*digits_build(fast_profile, out, 300, evaluate=True))
    assert code == 0
    doc = results(out)
    fp32, int8 = rows(doc)["fp32"], rows(doc)["int8"]
    assert fp32["accuracy"]["images"] == 360
    assert fp32["accuracy"]["top1"] > 95.0
    assert abs(fp32["accuracy"]["top1"] - int8["accuracy"]["top1"]) <= 1.0
    assert int8["fidelity"]["top1_agreement"] >= 98.0
    assert int8["bench"]["precision_executed"]["label"] == "int8"
    assert doc["data"]["calibration"]["images"] == 300
    assert doc["model"]["weights"]["kind"] == "file"
    assert fp32["build"]["export"]["verified"]["top1_agreement"] == 100.0


def test_calibration_images_are_left_out_of_the_evaluation(
    digits, digits_build, fast_profile, tmp_path, capsys
):
    """--eval on the calibration folder: INT8 is judged only on images it was not fitted to."""
    out = tmp_path / "out"
    args = digits_build(fast_profile, out, 100)
    assert build(*args, "--eval", str(digits["train"]), "--eval-size", "2000") == 0
    err = " ".join(capsys.readouterr().err.split())
    train = len(list(digits["train"].rglob("*.png")))
    assert "100 images of --eval are calibration images" in err
    assert f"--eval-size 2000 asks for more images than the {train - 100} of" in err
    doc = results(out)
    evaluation = doc["data"]["evaluation"]
    assert evaluation["images"] == train - 100 == rows(doc)["int8"]["accuracy"]["images"]
    assert evaluation["calibration_images_left_out"] == 100


def test_distillation_picks_its_best_step_on_images_it_does_not_train_on(
    digits_build, fast_profile, tmp_path
):
    """No --eval and no --train: 32 calibration images are set aside to judge the steps."""
    out = tmp_path / "out"
    args = digits_build(fast_profile, out, 64, "--prune", "0.3", "--distill-steps", "3")
    assert build(*args) == 0
    recovery = rows(results(out))["p30-int8"]["build"]["prune"]["recovery"]
    distilled = next(r for r in recovery if r["method"] == "distillation")
    assert distilled["holdout_apart_from_training"] and distilled["holdout_images"] == 32
    assert distilled["images"] == 64 - 32


def test_bundle_is_complete_and_checksummed(digits_build, fast_profile, tmp_path):
    out = tmp_path / "out"
    assert build(*digits_build(fast_profile, out, 16)) == 0
    bundle = out / "onnx"
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {
        "model.fp32.onnx",
        "model.int8.onnx",
        "results.json",
        "manifest.json",
        "report.md",
        "report.html",
        "accuracy_vs_latency.png",
        "accuracy_vs_size.png",
        "ondevice/bench_onnxruntime.py",
        "ondevice/common.py",
    } <= names
    manifest = json.loads((bundle / "manifest.json").read_text())
    for entry in manifest["files"]:
        assert sha256_file(bundle / entry["path"]) == entry["sha256"]
    doc = results(out)
    # No labels given: fidelity is measured on the calibration images, accuracy is not invented.
    assert all(r["accuracy"] is None for r in doc["rows"])
    assert rows(doc)["int8"]["fidelity"]["images"] == 16
    assert not [p for p in out.iterdir() if "staging" in p.name], "staging left behind"
    # Built in private temporary folders, published with the modes the user's umask gives.
    umask = os.umask(0)
    os.umask(umask)
    for path in [bundle, *bundle.rglob("*")]:
        wanted = (0o777 if path.is_dir() else 0o666) & ~umask  # no executable file in it
        assert stat.S_IMODE(path.stat().st_mode) == wanted, path


def test_a_build_killed_between_its_renames_gets_its_previous_output_back(tmp_path):
    out = tmp_path / "out"
    (out / ".onnx.old-123").mkdir(parents=True)
    (out / ".onnx.old-123" / "results.json").write_text("{}")
    (out / ".jetson.old-77").mkdir()  # replaced, and its new output is in place
    (out / "jetson").mkdir()
    publish.clean_stale(out)
    assert (out / "onnx" / "results.json").read_text() == "{}"
    assert sorted(p.name for p in out.iterdir()) == ["jetson", "onnx"]


def test_resnet50_on_real_images(imagenet_samples, fast_profile, tmp_path):
    """ResNet-50 with random weights: the INT8 file is ~4x smaller and runs int8 kernels."""
    out = tmp_path / "out"
    assert (
        build(
            "--target",
            str(fast_profile),
            "--weights",
            "random",
            "--calib",
            str(imagenet_samples),
            "--calib-size",
            "24",
            "--out",
            str(out),
        )
        == 0
    )
    doc = results(out)
    fp32, int8 = rows(doc)["fp32"], rows(doc)["int8"]
    assert doc["model"]["params"] == 25_557_032
    assert int8["artifact"]["bytes"] <= 27_000_000
    assert int8["bench"]["precision_executed"]["op_counts"]["QLinearConv"] == 53
    assert int8["fidelity"]["sqnr_db"] >= 20.0
    assert fp32["accuracy"] is None and int8["accuracy"] is None  # random weights
    assert "n/a (random weights)" in (out / "onnx" / "report.md").read_text()


def test_failed_build_keeps_previous_output(digits_build, fast_profile, tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = digits_build(fast_profile, out, 8)
    assert build(*args) == 0
    before = sha256_file(out / "onnx" / "results.json")

    def broken(*_args, **_kwargs):
        raise QuantizationError("simulated failure")

    monkeypatch.setattr(ort_backend, "get_quantizer", lambda method: broken)
    assert build(*args, "--fresh") == 1
    assert sha256_file(out / "onnx" / "results.json") == before
    assert sorted(p.name for p in out.iterdir()) == [".cache", ".edgeresnet.lock", "onnx"]


def test_runtime_settings_are_part_of_the_evaluation_and_benchmark_keys(
    digits_build, fast_profile, tmp_path, capsys
):
    """Timings and logits taken with one graph optimization level are not reused for another."""
    out = tmp_path / "out"
    args = digits_build(fast_profile, out, 8, evaluate=20)
    assert build(*args) == 0
    assert build(*args) == 0  # the same settings: every stage reused
    reused = set(results(out)["producer"]["reused_from_cache"])
    assert {"fp32 evaluation", "int8 benchmark"} <= reused
    fast_profile.write_text(fast_profile.read_text() + '[runtime]\ngraph_optimization = "basic"\n')
    assert build(*args) == 0
    reused = set(results(out)["producer"]["reused_from_cache"])
    assert "ONNX export dense" in reused
    assert not {r for r in reused if r.endswith(("evaluation", "benchmark"))}, reused


def test_an_fp32_artifact_that_is_the_reference_is_not_run_twice(
    digits_build, fast_profile, tmp_path, monkeypatch
):
    """The ONNX target's FP32 file is the reference's bytes in the same runtime: its logits are
    the reference's, taken once; with other session settings it is run on its own."""
    ran: list[set[str]] = []
    real = stages.collect_logits

    def spy(sessions, *args, **kwargs):
        ran.append(set(sessions))
        return real(sessions, *args, **kwargs)

    monkeypatch.setattr(stages, "collect_logits", spy)
    out = tmp_path / "out"
    assert build(*digits_build(fast_profile, out, 8, evaluate=20)) == 0
    assert ran == [{"reference", "int8"}]
    fp32 = rows(results(out))["fp32"]["fidelity"]
    assert fp32["top1_agreement"] == 100.0 and fp32["sqnr_db"] is None  # identical logits
    fast_profile.write_text(fast_profile.read_text() + '[runtime]\ngraph_optimization = "basic"\n')
    assert build(*digits_build(fast_profile, out, 8, evaluate=20)) == 0
    assert ran[1] == {"reference", "fp32", "int8"}


def test_the_work_folder_lives_under_out_and_is_removed(
    digits_build, fast_profile, tmp_path, monkeypatch
):
    """Intermediate files go under OUT (not the system's temporary folder), named as staging:
    edgeresnet's own, the libraries' it calls, and those of the processes it starts."""
    out = tmp_path / "out"
    seen, made = [], []
    real_run = pipeline._run
    system_temp = tempfile.gettempdir()
    monkeypatch.delenv("TMPDIR", raising=False)

    def spy(request, inputs, staging, work):
        seen.append(work)
        assert work.is_dir() and os.environ["TMPDIR"] == str(work)
        return real_run(request, inputs, staging, work)

    def recorded(make):
        def made_by(*args, **kwargs):
            result = make(*args, **kwargs)
            made.append(Path(result if isinstance(result, str) else result[1]))
            return result

        return made_by

    monkeypatch.setattr(pipeline, "_run", spy)
    monkeypatch.setattr(tempfile, "mkdtemp", recorded(tempfile.mkdtemp))
    monkeypatch.setattr(tempfile, "mkstemp", recorded(tempfile.mkstemp))
    assert build(*digits_build(fast_profile, out, 8)) == 0
    assert len(seen) == 1 and seen[0].parent == out and ".work.staging-" in seen[0].name
    assert not seen[0].exists()
    # ONNX Runtime's quantizer and the backend's ranges folder among them, all under OUT.
    assert any(p.name.startswith("edgeresnet-ort-") for p in made)
    assert [p for p in made if not p.is_relative_to(out)] == []
    assert tempfile.gettempdir() == system_temp and "TMPDIR" not in os.environ
    assert sorted(p.name for p in out.iterdir()) == [".cache", ".edgeresnet.lock", "onnx"]


def test_calib_size_beyond_the_images_warns_and_uses_them_all(
    digits_build, fast_profile, tmp_path, capsys
):
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(5):
        Image.new("L", (32, 32), color=40 * i).save(calib / f"{i}.png")
    Image.new("L", (32, 32)).save(calib / "moving.gif")  # not an image format read: said
    out = tmp_path / "out"
    assert build(*digits_build(fast_profile, out, 50, calib=calib)) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "--calib-size 50 asks for more images than" in err and "calibrating on all 5" in err
    assert "--calib: 1 file(s) in" in err and "are not read as images: moving.gif" in err
    assert results(out)["data"]["calibration"]["images"] == 5


def test_the_recorded_command_runs_from_any_folder(digits_build, fast_profile, tmp_path):
    """producer.command starts with `cd <folder> &&`, so its relative paths still resolve."""
    out = tmp_path / "out"
    args = digits_build(fast_profile, out, 8)
    proc = subprocess.run(
        [sys.executable, "-m", "edgeresnet", "build", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    command = results(out)["producer"]["command"]
    assert command.startswith(f"cd {tmp_path} && edgeresnet build --target ")


def test_rounds_keep_each_figure_from_its_least_disturbed_round(
    digits_build, fast_profile, tmp_path, capsys
):
    out = tmp_path / "out"
    args = digits_build(fast_profile, out, 16, "--rounds", "3")
    assert build(*args) == 0
    assert "int8 (1 threads), round 3 of 3" in capsys.readouterr().err
    timed = {}
    for row in results(out)["rows"]:
        bench, rounds = row["bench"], row["bench"]["rounds"]
        assert rounds["count"] == 3 and rounds["kept"] == "fastest"
        assert bench["latency"]["p50_ms"] == min(rounds["p50_ms"])
        assert bench["throughput"]["images_per_s"] == max(rounds["images_per_s"])
        timed[row["variant"]] = rounds
    report = (out / "onnx" / "report.md").read_text().splitlines()
    assert "fastest of 3 rounds" in next(x for x in report if "| onnx / int8 |" in x)
    # Each round is its own cache entry: a second build times nothing again.
    assert build(*args) == 0
    reused = " ".join(capsys.readouterr().err.split())
    assert "fp32 benchmark (3 rounds), int8 benchmark (3 rounds)" in reused
    assert {row["variant"]: row["bench"]["rounds"] for row in results(out)["rows"]} == timed


def test_rounds_must_be_at_least_one(digits_build, fast_profile, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        build(*digits_build(fast_profile, tmp_path / "out", 16, "--rounds", "0"))
    assert exit_.value.code == 2
    assert "--rounds: must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pairs_time_each_variant_against_its_reference(
    digits_build, fast_profile, tmp_path, capsys
):
    out = tmp_path / "out"
    args = digits_build(fast_profile, out, 16, "--prune", "0.3", "--pairs", "20")
    assert build(*args) == 0
    assert "timing p30-int8 against int8 (20 pairs)" in capsys.readouterr().err
    expected = {"fp32": None, "int8": "fp32", "p30-fp32": "fp32", "p30-int8": "int8"}
    manifest = json.loads((out / "onnx" / "manifest.json").read_text())
    assert {v["variant"]: v["reference"] for v in manifest["variants"]} == expected
    by_variant = rows(results(out))
    paired = {v: r["bench"].get("paired") for v, r in by_variant.items()}
    assert paired["fp32"] is None
    for variant, reference in expected.items():
        if reference is None:
            continue
        record = paired[variant]
        assert record["reference"] == reference and record["pairs"] == 20
        low, high = record["ratio_ci95"]
        assert low <= record["ratio"] <= high
        assert_ratio_of_p50s(record)
    report = (out / "onnx" / "report.md").read_text()
    assert "## Paired latency ratios" in report
    # INT8's own error on the pruned model, apart from the pruning's (no recovery here).
    own = by_variant["p30-int8"]["fidelity"]["to_own_fp32"]
    assert own["reference"] == "p30-fp32" and own["images"] == 16
    assert own["top1_agreement"] > by_variant["p30-int8"]["fidelity"]["top1_agreement"]
    assert "to_own_fp32" not in by_variant["p30-fp32"]["fidelity"]
    assert "to_own_fp32" not in by_variant["int8"]["fidelity"]
    assert "## Precision error of pruned variants" in report
    assert f"| p30-int8 | p30-fp32 | 16 | {own['top1_agreement']:.1f} |" in report
    p30 = paired["p30-int8"]
    figures = f"{p30['p50_ms']:.2f} | {p30['reference_p50_ms']:.2f} | **{p30['ratio']:.3f}x**"
    assert f"| p30-int8 | int8 | 20 | {figures} |" in report
    # Cached like every benchmark: a second build times no pair again.
    assert build(*args) == 0
    assert "p30-int8 against int8" in results(out)["producer"]["reused_from_cache"]
    assert {v: r["bench"].get("paired") for v, r in rows(results(out)).items()} == paired


def test_bundle_script_times_variants_against_the_manifests_references(
    digits_build, fast_profile, tmp_path
):
    """On the device: `--pairs N` pairs each variant with the reference the build recorded."""
    out = tmp_path / "out"
    assert build(*digits_build(fast_profile, out, 16, "--prune", "0.3")) == 0
    bundle = out / "onnx"
    device = tmp_path / "device.json"
    script = bundle / "ondevice" / "bench_onnxruntime.py"
    timing = ["--threads", "1", "--min-iterations", "3", "--min-seconds", "0.01"]
    proc = subprocess.run(
        [sys.executable, str(script), "--bundle", ".", *timing, "--pairs", "10"]
        + ["--json", str(device)],
        capture_output=True,
        text=True,
        cwd=bundle,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(device.read_text())["rows"]
    paired = {r["variant"]: r["bench"].get("paired") for r in measured}
    assert {v: p and (p["reference"], p["pairs"]) for v, p in paired.items()} == {
        "fp32": None,
        "int8": ("fp32", 10),
        "p30-fp32": ("fp32", 10),
        "p30-int8": ("int8", 10),
    }
    # Each variant in a process of its own, as the build times it: a peak that only grew from
    # variant to variant would give int8 at least FP32's.
    peak = {r["variant"]: r["bench"]["peak_rss_mb"] for r in measured}
    assert peak["int8"] < peak["fp32"] and peak["p30-int8"] < peak["p30-fp32"] < peak["fp32"]
    proc = subprocess.run(
        [sys.executable, str(script), "--bundle", ".", "--reference", "model.fp32.onnx"],
        capture_output=True,
        text=True,
        cwd=bundle,
    )
    assert proc.returncode == 2 and "--reference goes with a single model" in proc.stderr


@pytest.mark.parametrize("pairs", ["1", "-5"])
def test_pairs_must_be_off_or_at_least_two(digits_build, fast_profile, tmp_path, capsys, pairs):
    assert build(*digits_build(fast_profile, tmp_path / "out", 16, "--pairs", pairs)) == 2
    assert f"--pairs must be 0 (off) or at least 2, got {pairs}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ranked_labels_of_a_part_of_the_classes_are_refused(tmp_path, capsys):
    from edgeresnet.data import discover
    from edgeresnet.pipeline import BuildRequest, _check_labels, _warn_about_evaluation

    for synset in ("n01440764", "n15075141"):  # the first and last ImageNet classes
        Image.new("RGB", (8, 8)).save(tmp_path / f"{synset}_1.png")
    found = discover(tmp_path)
    with pytest.raises(DataError, match="rank of their synset among the 2 present"):
        _check_labels(found, 1000, scored=True)
    _check_labels(found, 2, scored=True)  # a 2-class model: ranks are its class indices
    _check_labels(found, 1000, scored=False)  # random weights: no accuracy, labels unused
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "x.png")
    unlabelled = discover(flat)
    _check_labels(unlabelled, 1000, scored=True)  # nothing to check, and no error
    _warn_about_evaluation(unlabelled, unlabelled, 0, BuildRequest(target="onnx", eval=flat))
    assert "has no labels (layout: flat)" in " ".join(capsys.readouterr().err.split())


def test_a_checkpoint_s_unused_ema_copy_is_said_on_the_console(
    digits, digits_weights, fast_profile, tmp_path, capsys
):
    import torch

    state = torch.load(digits_weights, weights_only=True)
    checkpoint = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "state_dict_ema": state, "epoch": 3}, checkpoint)
    request = pipeline.BuildRequest(
        target=str(fast_profile), model="resnet18", weights=str(checkpoint), calib=digits["test"]
    )
    pipeline.resolve(request)
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "--weights last.ckpt: built from the checkpoint's 'state_dict'; its EMA copy "
        "'state_dict_ema' is not used" in err
    )
    pipeline.resolve(replace(request, weights=str(digits_weights)))
    assert "EMA" not in capsys.readouterr().err
