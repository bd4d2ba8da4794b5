"""Bad input never crashes or corrupts; builds resume, lock, are deterministic and verifiable."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgeresnet import pipeline, publish
from edgeresnet.backends import Artifact
from edgeresnet.cache import StageCache
from edgeresnet.cli import main
from edgeresnet.config import load_target
from edgeresnet.errors import ConfigError, ReportError, UsageError
from edgeresnet.lock import check_unlocked, output_lock
from edgeresnet.models import build_model
from edgeresnet.ondevice.common import sha256_file
from edgeresnet.report import load_results, rows_of

REPO = Path(__file__).resolve().parents[1]


def photos(folder: Path, n: int = 4, size: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    return folder


def tiny_weights(path: Path, classes: int = 10) -> Path:
    torch.manual_seed(0)
    torch.save(build_model("resnet18", num_classes=classes, width=8).state_dict(), path)
    return path


def run_build(tmp_path: Path, *args: str) -> int:
    return main(["build", "--model", "resnet18", "--out", str(tmp_path / "out"), *args])


# ----------------------------------------------------------------------------- the catalogue
def case_missing_folder(tmp):
    return ["--weights", "random", "--target", "onnx", "--calib", str(tmp / "nope")], "nope"


def case_empty_folder(tmp):
    (tmp / "empty").mkdir()
    return ["--weights", "random", "--target", "onnx", "--calib", str(tmp / "empty")], "empty"


def _calib(folder):
    return ["--weights", "random", "--target", "onnx", "--calib", str(folder), "--input-size", "32"]


def case_truncated_image(tmp):
    folder = photos(tmp / "calib")
    data = (folder / "img0.png").read_bytes()
    (folder / "img0.png").write_bytes(data[: len(data) // 2])
    return _calib(folder), "img0.png"


def case_not_an_image(tmp):
    folder = photos(tmp / "calib")
    (folder / "notes.jpg").write_text("this is text")
    return _calib(folder), "notes.jpg"


def case_huge_image(tmp):
    folder = photos(tmp / "calib")
    Image.new("RGB", (13000, 13000)).save(folder / "huge.png")  # 169 Mpx > PIL's 2x limit
    return _calib(folder), "huge.png"


def _labels(tmp, lines):
    folder = photos(tmp / "eval")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")
    return [
        "--weights",
        str(tiny_weights(tmp / "w.pth")),
        "--target",
        "onnx",
        "--eval",
        str(folder),
        "--input-size",
        "32",
    ]


def case_labels_bad_line(tmp):
    return _labels(tmp, ["img0.png 1", "img1.png one"]), "labels.txt:2"


def case_labels_unknown_class(tmp):
    return _labels(tmp, ["img0.png 1", "img1.png 42"]), "class index 42, but the model has 10"


def case_labels_duplicate(tmp):
    return _labels(tmp, ["img0.png 1", "img0.png 2"]), "labels.txt:2"


def case_labels_outside_root(tmp):
    return _labels(tmp, ["img0.png 1", "../secret.png 2"]), "labels.txt:2"


def case_weights_truncated(tmp):
    data = tiny_weights(tmp / "w.pth").read_bytes()
    (tmp / "w.pth").write_bytes(data[: len(data) // 3])
    return ["--weights", str(tmp / "w.pth"), "--target", "onnx"], "w.pth"


def case_weights_text_file(tmp):
    (tmp / "w.pth").write_text("model weights will go here\n")
    return ["--weights", str(tmp / "w.pth"), "--target", "onnx"], "is not a PyTorch checkpoint"


def case_weights_missing_a_tensor(tmp):
    state = build_model("resnet18", num_classes=10, width=8).state_dict()
    del state["layer1.0.bn1.running_var"]
    torch.save(state, tmp / "w.pth")
    args = ["--model", "resnet18", "--weights", str(tmp / "w.pth"), "--target", "onnx"]
    return args, "does not fit the model"


def case_weights_other_architecture(tmp):
    torch.save(build_model("resnet34", num_classes=10, width=8).state_dict(), tmp / "r34.pth")
    return ["--weights", str(tmp / "r34.pth"), "--target", "onnx"], "holds resnet34 weights"


MARKER = "pickle-code-ran"  # created in the test's folder if the pickle's code runs


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def case_weights_malicious_pickle(tmp):
    with open(tmp / "evil.pth", "wb") as f:
        pickle.dump({"conv1.weight": Payload(tmp / MARKER)}, f)
    return ["--weights", str(tmp / "evil.pth"), "--target", "onnx"], "could execute code"


def case_weights_a_renamed_channel_spec(tmp):
    (tmp / "p30.json").write_text('{"format": "edgeresnet.channels", "version": 1}')
    args = ["--weights", str(tmp / "p30.json"), "--target", "onnx"]
    return args, "taken as one by its name, ending in .channels.json"


def case_profile_unknown_key(tmp):
    path = tmp / "p.toml"
    path.write_text('name="p"\nbackend="onnxruntime"\ndevice="CPU"\nprecisions=["fp32"]\nspeed=9\n')
    return ["--weights", "random", "--target", str(path)], "unknown key(s) speed"


def case_eval_is_the_calibration_set(tmp):
    folder = photos(tmp / "calib")
    return [*_calib(folder), "--eval", str(folder)], "also a calibration image"


def case_profile_wrong_type(tmp):
    path = tmp / "p.toml"
    path.write_text('name="p"\nbackend="onnxruntime"\ndevice="CPU"\nprecisions="fp32"\n')
    return ["--weights", "random", "--target", str(path)], "precisions must be a list of str"


def _edited_profile(tmp, target, old, new):
    path = tmp / f"{target}-edited.toml"
    text = (REPO / "targets" / f"{target}.toml").read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return ["--weights", "random", "--target", str(path)]


def case_profile_unknown_runtime_key(tmp):
    args = _edited_profile(tmp, "onnx", "[runtime]\n", "[runtime]\nbogus_key = 1\n")
    return args, "[runtime]: unknown key(s) bogus_key"


def case_profile_unknown_graph_optimization(tmp):
    args = _edited_profile(tmp, "onnx", 'graph_optimization = "all"', 'graph_optimization = "fast"')
    return args, "graph_optimization 'fast' is unknown"


def case_profile_unreadable_tensorrt_range(tmp):
    args = _edited_profile(tmp, "jetson", '">=10.0,<11"', '"10.0"')
    return args, "tensorrt_versions '10.0' is not a version range"


def case_profile_tensorrt_range_without_a_lowest_version(tmp):
    args = _edited_profile(tmp, "jetson", '">=10.0,<11"', '"<11"')
    return args, "tensorrt_versions '<11' is not a version range with a lowest version"


def case_profile_batch_sizes_not_whole_numbers(tmp):
    args = _edited_profile(tmp, "onnx", "batch_sizes = [1, 8]", "batch_sizes = [1, 8.0]")
    return args, "batch_sizes must be a list of int, got list [1, 8.0]"


def case_profile_activation_type_ort_does_not_take(tmp):
    args = _edited_profile(tmp, "onnx", 'activation_type = "uint8"', 'activation_type = "uint4"')
    return args, 'activation_type = "uint4" is not one the ort-static method takes'


def case_profile_unknown_calibrate_method(tmp):
    args = _edited_profile(tmp, "onnx", 'calibrate_method = "minmax"', 'calibrate_method = "kl"')
    return args, 'calibrate_method = "kl" is not one the ort-static method takes'


def case_profile_activation_type_tensorrt_does_not_take(tmp):
    args = _edited_profile(tmp, "jetson", 'activation_type = "int8"', 'activation_type = "uint8"')
    return args, 'activation_type = "uint8" is not one the trt-qdq method takes'


def case_profile_precision_the_backend_does_not_build(tmp):
    args = _edited_profile(tmp, "onnx", 'precisions = ["fp32", "int8"]', 'precisions = ["fp16"]')
    return args, "subset of what the onnxruntime backend builds, ['fp32', 'int8']"


def case_profile_unknown_backend(tmp):
    args = _edited_profile(tmp, "onnx", 'backend = "onnxruntime"', 'backend = "tflite"')
    return args, "onnx-edited.toml: unknown backend 'tflite'"


def case_profile_dynamo_below_its_opset(tmp):
    args = _edited_profile(tmp, "onnx", 'exporter = "torchscript"', 'exporter = "dynamo"')
    return args, "the dynamo exporter writes opset 18 or newer, and the profile asks for 17"


def case_profile_threads_beyond_the_cores(tmp):
    args = _edited_profile(tmp, "onnx", "threads = 0", f"threads = {(os.cpu_count() or 1) + 1}")
    return args, f"threads = {(os.cpu_count() or 1) + 1} is more than this machine's"


def _onnx(*extra):
    return ["--weights", "random", "--target", "onnx", *extra]


def case_percentile_out_of_range(tmp):
    return _onnx("--calib-method", "percentile", "--percentile", "101"), "between 90 and 100"


def case_percentile_without_percentile_calibration(tmp):
    return _onnx("--percentile", "99.9"), "calibrates with minmax"


def case_calib_method_where_nncf_sets_ranges(tmp):
    args = ["--weights", "random", "--target", "openvino", "--calib-method", "entropy"]
    return args, "quantizes with nncf, which sets its own ranges"


def case_distillation_without_pruning(tmp):
    return _onnx("--distill-steps", "10"), "no --prune ratio above 0"


def case_pruning_options_without_a_ratio(tmp):
    args = _onnx("--prune", "0", "--prune-round-to", "16", "--no-bn-recalibrate")
    return args, "--prune-round-to and --no-bn-recalibrate apply to the models --prune prunes"


def case_importance_without_pruning(tmp):
    return _onnx("--prune-importance", "l1"), "--prune-importance applies to the models --prune"


def case_eval_size_without_eval(tmp):
    return _onnx("--eval-size", "10"), "--eval-size picks images of --eval"


def case_input_size_beyond_any_resnet(tmp):
    return _onnx("--input-size", "100000"), "--input-size must be 32 to 1024"


def case_out_is_a_file(tmp):
    (tmp / "out").write_text("not a folder")
    return _onnx(), "is a file"


def case_profile_opset_without_per_channel_qdq(tmp):
    return _edited_profile(tmp, "onnx", "opset = 17", "opset = 7"), "export.opset must be 13"


def case_prune_ratios_with_one_name(tmp):
    return _onnx("--prune", "0.3,0.301"), "two variants named p30"


def case_prune_ratio_given_twice(tmp):
    return _onnx("--prune", "0.3,0.5,0.3"), "gives 0.3 twice"


def case_profile_latency_not_at_batch_1(tmp):
    args = _edited_profile(tmp, "onnx", "batch_sizes = [1, 8]", "batch_sizes = [8, 1]")
    return args, "must start with 1"


def case_unknown_target(tmp):
    return ["--weights", "random", "--target", "jetsn"], "Unknown target 'jetsn'"


def case_calib_size_zero(tmp):
    return ["--weights", "random", "--target", "onnx", "--calib-size", "0"], "at least 1"


CATALOGUE = [f for name, f in sorted(globals().items()) if name.startswith("case_")]


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda f: f.__name__[5:])
def test_bad_input_gives_one_clear_message_and_writes_nothing(case, tmp_path, capsys):
    args, expected = case(tmp_path)
    code = run_build(tmp_path, *args)
    err = capsys.readouterr().err
    assert code != 0
    assert expected in err, err
    assert err.count("error:") == 1 and "hint:" in err and "Traceback" not in err
    assert "warning:" not in err, "a warning before the error"
    out = tmp_path / "out"
    assert not out.is_dir() or not [p for p in out.iterdir() if not p.name.startswith(".")]
    assert not out.is_dir() or not list(out.glob("*staging*"))
    assert not (tmp_path / MARKER).exists(), "the pickle's code ran"


def test_ratio_one_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["build", "--target", "onnx", "--prune", "1.0"])
    assert info.value.code == 2 and "must be in [0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, damage",
    [
        ("--calib", "truncate"),
        ("--eval", "text"),
        ("--eval", "huge"),
        ("--train", "text"),
        ("--train", "empty"),
    ],
)
def test_a_bad_image_is_found_before_any_stage_runs(option, damage, tmp_path, monkeypatch, capsys):
    folder = photos(tmp_path / "images", n=6)
    if damage == "truncate":  # the header parses; only decoding finds it
        data = (folder / "img3.png").read_bytes()
        (folder / "img3.png").write_bytes(data[: len(data) // 2])
    elif damage == "text":
        (folder / "img3.png").write_text("<html>not an image</html>")
    elif damage == "huge":  # over PIL's limit, scaled down: the others have 1600 pixels
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
        Image.new("RGB", (64, 64)).save(folder / "img3.png")
    else:
        (folder / "img3.png").write_bytes(b"")
    loads = []
    monkeypatch.setattr(pipeline, "_load", lambda request: loads.append(request))
    args = ["--weights", "random", "--target", "onnx", "--input-size", "32", option, str(folder)]
    if option == "--train":
        args += ["--prune", "0.3", "--distill-steps", "1"]
    if damage == "huge":  # calibration images under the lowered limit too
        args += ["--calib", str(photos(tmp_path / "calib"))]
    assert run_build(tmp_path, *args) != 0
    err = capsys.readouterr().err
    assert f"error: {option}: " in err and "img3.png" in err and "hint:" in err, err
    if damage == "huge":
        assert "too large to decode safely" in err and "Downscale the image" in err
    assert not loads, "the weights were loaded before the images were checked"


@pytest.mark.slow
def test_odd_but_valid_images_are_converted(digits_build, fast_profile, tmp_path):
    folder = photos(tmp_path / "calib", n=2)
    Image.new("CMYK", (40, 40), (10, 20, 30, 0)).save(folder / "cmyk.jpg")
    Image.new("L", (40, 40), 128).save(folder / "grey.png")
    Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(folder / "deep.png")
    Image.new("P", (40, 40), 3).save(folder / "palette.png")
    Image.new("RGBA", (40, 40), (1, 2, 3, 100)).save(folder / "alpha.png")
    args = digits_build(fast_profile, tmp_path / "out", calib=folder)
    assert main(["build", *args]) == 0
    doc = json.loads((tmp_path / "out" / "onnx" / "results.json").read_text())
    assert doc["data"]["calibration"]["images"] == 7


# -------------------------------------------------------------------- atomicity and resume
@pytest.mark.slow
def test_disk_full_keeps_previous_output(digits_build, fast_profile, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    args = digits_build(fast_profile, out, 32)
    assert main(["build", *args]) == 0
    before = sha256_file(out / "onnx" / "results.json")

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "write_json", full)
    assert main(["build", *args]) == 1
    assert "No space left on the device" in capsys.readouterr().err
    assert sha256_file(out / "onnx" / "results.json") == before
    assert not list(out.glob("*staging*"))


def test_second_build_into_the_same_folder_is_refused(tmp_path, capsys):
    with output_lock(tmp_path / "out"):
        code = main(
            [
                "build",
                "--target",
                "onnx",
                "--weights",
                "random",
                "--model",
                "resnet18",
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert code == 2
    assert "Another edgeresnet build is writing to" in capsys.readouterr().err


def test_a_locked_folder_is_refused_before_the_inputs_are_checked(tmp_path, capsys):
    out = tmp_path / "out"
    with output_lock(out):
        code = main(
            ["build", "--target", "onnx", "--weights", str(tmp_path / "no.pt"), "--out", str(out)]
        )
    assert code == 2
    err = capsys.readouterr().err
    assert f"Another edgeresnet build is writing to {out} (pid {os.getpid()})" in err
    assert "no.pt" not in err


def test_the_lock_probe_creates_nothing_and_passes_a_free_folder(tmp_path):
    check_unlocked(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()
    with output_lock(tmp_path):
        pass
    check_unlocked(tmp_path)  # a lock file left by a finished run holds no lock
    with output_lock(tmp_path):  # and the probe released what it took
        with pytest.raises(UsageError, match=r"writing to .* \(pid \d+\)"):
            check_unlocked(tmp_path)


def test_a_failed_first_run_leaves_no_folder_behind(tmp_path):
    made = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), output_lock(made):
        raise RuntimeError("a stage failed")
    assert not (tmp_path / "new").exists()
    # A folder that was there, or one the run wrote into, stays.
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), output_lock(tmp_path / "kept"):
        raise RuntimeError("a stage failed")
    with pytest.raises(RuntimeError), output_lock(made):
        (made / ".cache").mkdir()
        raise RuntimeError("a stage failed")
    assert (tmp_path / "kept").is_dir() and (made / ".cache").is_dir()


@pytest.mark.slow
def test_sigterm_cleans_up_as_ctrl_c_does(digits_build, fast_profile, tmp_path):
    """`timeout` or `kill` stops a build with its timing process, staging and work folders gone
    (they were left for the next run to sweep, the timing process to run on alone)."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeresnet", "build", *digits_build(fast_profile, out, 16)],
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = read_until(proc, "benchmarking")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert any("benchmarking" in line for line in seen), "".join(seen)
    assert proc.returncode == 143 and "interrupted: no output was changed" in err, err
    assert sorted(p.name for p in out.iterdir()) == [".cache", ".edgeresnet.lock"]
    timing = [
        cmd
        for cmd in Path("/proc").glob("[0-9]*/cmdline")
        if str(out).encode() in _read_or_empty(cmd)
    ]
    assert timing == []


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_kill_9_keeps_outputs_and_the_next_run_resumes(digits_build, fast_profile, tmp_path):
    out = tmp_path / "out"
    args = digits_build(fast_profile, out, 32)
    assert main(["build", *args]) == 0
    before = sha256_file(out / "onnx" / "results.json")
    # A new calibration size changes every stage after export: the killed run has work to do.
    args[args.index("--calib-size") + 1] = "48"
    # The system's temporary folder, watched: a killed build leaves no work files there. (ONNX
    # Runtime's native library keeps one shared session id there, ".ses": not a work file.)
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    env = {**os.environ, "TMPDIR": str(system_temp)}

    def left_in_temp() -> list[str]:
        return sorted(p.name for p in system_temp.iterdir() if p.name != ".ses")

    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeresnet", "build", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    seen = read_until(proc, "benchmarking")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any("benchmarking" in line for line in seen), "".join(seen)
    assert left_in_temp() == []
    assert sha256_file(out / "onnx" / "results.json") == before
    resumed = subprocess.run(
        [sys.executable, "-m", "edgeresnet", "build", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from the cache" in resumed.stderr
    assert "int8 artifact" in resumed.stderr and "compiling" not in resumed.stderr
    assert not list(out.glob("*staging*")) and left_in_temp() == []
    doc = json.loads((out / "onnx" / "results.json").read_text())
    assert doc["data"]["calibration"]["images"] == 48


def test_an_artifacts_identity_covers_its_weights_and_the_precision_it_runs_at(tmp_path):
    xml, weights = tmp_path / "model.fp32.xml", tmp_path / "model.fp32.bin"
    xml.write_text("<net/>")
    weights.write_bytes(b"one")
    fp32 = Artifact("fp32", "fp32", xml)
    bf16 = Artifact("bf16", "bf16", xml, {"inference_precision_hint": "bf16"})
    assert fp32.files == [xml, weights] and fp32.identity() != bf16.identity()
    before = fp32.identity()
    weights.write_bytes(b"two")
    assert fp32.identity() != before


@pytest.mark.slow
def test_a_stage_cut_between_its_files_and_its_record_is_done_again(
    digits_build, fast_profile, tmp_path, monkeypatch, capsys
):
    """A cache entry is complete only with its record: a folder without one is rebuilt."""
    args = ["build", *digits_build(fast_profile, tmp_path / "out", 16)]
    store_json = StageCache.store_json

    def cut(self, key, value):  # killed after the first artifact's folder, before its record
        if "precision" in value:
            raise KeyboardInterrupt
        store_json(self, key, value)

    monkeypatch.setattr(StageCache, "store_json", cut)
    assert main(args) == 130
    cache = tmp_path / "out" / ".cache"
    records = [p for p in cache.glob("*.json") if not p.name.endswith(".files.json")]
    assert len([p for p in cache.iterdir() if p.is_dir()]) > len(records)
    monkeypatch.undo()
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "ONNX export dense" in " ".join(err.split()) and "compiling fp32" in err
    doc = json.loads((tmp_path / "out" / "onnx" / "results.json").read_text())
    assert "ONNX export dense" in doc["producer"]["reused_from_cache"]


def test_a_damaged_cache_entry_counts_as_missing(tmp_path, capsys):
    cache = StageCache(tmp_path / "cache")
    source = tmp_path / "stage"
    source.mkdir()
    (source / "model.onnx").write_bytes(b"a whole model")
    cache.store_entry("folder", source, {"done": True})
    assert cache.entry("folder") == (tmp_path / "cache" / "folder", {"done": True})
    (tmp_path / "cache" / "folder" / "model.onnx").write_bytes(b"a whole")  # cut short
    assert cache.entry("folder") is None
    cache.store_json("timing", {"p50_ms": 1.0})
    (tmp_path / "cache" / "timing.json").write_text('{"p50_ms"')
    assert cache.json("timing") is None
    cache.store_array("logits", np.zeros((2, 3), dtype=np.float32))
    (tmp_path / "cache" / "logits.npy").write_bytes(b"\x93NUMPY")
    assert cache.array("logits") is None
    assert capsys.readouterr().err.count("running") == 3


@pytest.mark.slow
def test_same_inputs_give_byte_identical_artifacts(digits_build, fast_profile, tmp_path):
    docs = []
    for name in ("a", "b"):
        args = digits_build(fast_profile, tmp_path / name, 32, "--fresh", evaluate=True)
        assert main(["build", *args]) == 0
        docs.append(json.loads((tmp_path / name / "onnx" / "results.json").read_text()))
    for a, b in zip(docs[0]["rows"], docs[1]["rows"], strict=True):
        assert a["artifact"]["sha256"] == b["artifact"]["sha256"], a["variant"]
        assert a["accuracy"] == b["accuracy"] and a["fidelity"] == b["fidelity"]


# ------------------------------------------------------------------------- verify command
def test_verify_passes_a_whole_bundle_and_names_a_changed_file(tmp_path, capsys):
    from edgeresnet.bundle import write_manifest

    (tmp_path / "model.onnx").write_bytes(b"weights" * 100)
    write_manifest(
        tmp_path,
        files=[tmp_path / "model.onnx"],
        variants=[],
        model={},
        data={},
        target={},
        options={},
    )
    assert main(["verify", str(tmp_path)]) == 0
    assert "all match manifest.json" in capsys.readouterr().out
    (tmp_path / "model.onnx").write_bytes(b"weights" * 99 + b"tamper!")
    assert main(["verify", str(tmp_path)]) == 1
    assert "model.onnx does not match its sha256" in capsys.readouterr().err


@pytest.mark.parametrize(
    "given, said",
    [
        ("nope", "nope does not exist"),
        ("out/onnx/manifest.json", "manifest.json is a file"),
        ("out", "is an output folder holding the bundles onnx, not a bundle"),
        ("out/onnx/ondevice", "holds no manifest.json: it is not a bundle"),
    ],
)
def test_verify_says_what_was_given_instead_of_a_bundle(tmp_path, capsys, given, said):
    from edgeresnet.bundle import write_manifest

    bundle = tmp_path / "out" / "onnx"
    (bundle / "ondevice").mkdir(parents=True)
    write_manifest(bundle, files=[], variants=[], model={}, data={}, target={}, options={})
    assert main(["verify", str(tmp_path / given)]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("error:") == 1 and "hint:" in err


# ----------------------------------------------------------------- parsers under fuzzing
_scalars = st.one_of(
    st.integers(-5, 5),
    st.booleans(),
    st.text(max_size=6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    top=st.dictionaries(
        st.sampled_from(["name", "backend", "device", "precisions", "x"]), _values, max_size=5
    ),
    bench=st.dictionaries(
        st.sampled_from(["warmup", "threads", "batch_sizes", "y"]), _values, max_size=3
    ),
)
def test_any_profile_loads_or_raises_config_error(tmp_path, top, bench):
    text = "".join(f"{k} = {_toml(v)}\n" for k, v in top.items())
    text += "[benchmark]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in bench.items())
    path = tmp_path / "fuzz.toml"
    path.write_text(text)
    try:
        load_target(str(path))
    except ConfigError:
        pass


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_json, rows=_json)
def test_any_results_file_is_read_or_refused_with_a_report_error(tmp_path, body, rows):
    doc = {
        "schema": "edgeresnet.results",
        "schema_version": 1,
        "device": body,
        "model": body,
        "target": body,
        "rows": rows,
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    try:
        rows_of(load_results(path), "r.json")
    except ReportError:
        pass


def test_distillation_never_trains_on_the_images_it_is_judged_by(tmp_path, capsys):
    images = photos(tmp_path / "images", n=6)
    request = pipeline.BuildRequest(
        target="onnx",
        model="resnet18",
        weights="random",
        input_size=32,
        calib=photos(tmp_path / "calib", n=2, size=36),
        eval=images,
        eval_size=2,
        train=images,
        prune=(0.3,),
        distill_steps=1,
    )
    inputs = pipeline.resolve(request)
    evaluated = {s.path for s in inputs.evaluation.samples}
    assert len(evaluated) == 2 and len(inputs.train) == 4
    assert not evaluated & {s.path for s in inputs.train.samples}
    assert "2 images of --train are evaluation images" in " ".join(capsys.readouterr().err.split())
    with pytest.raises(UsageError, match="Every image of --train"):
        pipeline.resolve(replace(request, eval_size=None))


@pytest.mark.parametrize("before", [None, "/somewhere/torchinductor_me"])
def test_the_work_folder_leaves_no_environment_pointing_into_it(tmp_path, monkeypatch, before):
    """torch._dynamo names the cache folder it makes in TORCHINDUCTOR_CACHE_DIR: one made in
    the work folder must not be named after the folder is gone."""
    import torch._inductor.runtime.cache_dir_utils as torch_cache

    for key, value in (("TORCHINDUCTOR_CACHE_DIR", before), ("TMPDIR", None)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    with publish.work_folder(tmp_path, "out") as work:
        if before is None:
            assert Path(torch_cache.cache_dir()).parent == work  # what the import does
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / "torchinductor_me")
    assert not work.exists()
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == before and "TMPDIR" not in os.environ


@pytest.mark.parametrize("command", ["edgeresnet", "on-device script"])
def test_a_signal_while_a_finished_command_exits_keeps_its_exit_code(command):
    """Exiting frees PyTorch and the runtimes, a second or two after a build: a Ctrl-C or
    SIGTERM then must not end a published build as 130 or 143."""
    run = "cli.main = finished; cli.run()" if command == "edgeresnet" else "common.run(finished)"
    script = f"""
import os, signal, subprocess, sys, time
from edgeresnet import cli
from edgeresnet.ondevice import common

KILL = "import os, signal, sys, time; time.sleep(0.5); pid = int(sys.argv[1]); "
KILL += "os.kill(pid, signal.SIGINT); os.kill(pid, signal.SIGTERM)"


class Teardown:  # freed as the interpreter exits, slowly
    def __del__(self):
        time.sleep(2)


def finished():
    global held
    held = Teardown()
    subprocess.Popen([sys.executable, "-c", KILL, str(os.getpid())])
    return 0


{run}
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
