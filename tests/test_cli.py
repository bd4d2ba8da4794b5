"""The command line as a user meets it: clear errors, exit codes, nothing half-written."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgeresnet import pipeline
from edgeresnet.cli import main, parser
from edgeresnet.models import build_model


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgeresnet", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def build_random_onnx(calib: Path, out: Path) -> subprocess.CompletedProcess:
    """An ONNX build of random weights calibrated on ``calib``."""
    random_onnx = ["--target", "onnx", "--weights", "random"]
    return run("build", *random_onnx, "--calib", str(calib), "--out", str(out))


def test_help_is_instant():
    proc = run("build", "--help")
    assert proc.returncode == 0 and "--calib-size" in proc.stdout
    # What makes it instant, checked without a wall clock that a busy machine could stop: the
    # command line imports no framework until a command runs.
    heavy = "{'torch', 'onnxruntime', 'openvino', 'nncf'}"
    probe = "import sys, edgeresnet.cli; edgeresnet.cli.parser(); "
    probe += f"print(sorted({heavy} & set(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_every_command_and_option_is_documented_in_the_readme():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (commands,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [
        f"{name} {option}"
        for name, command in commands.choices.items()
        for action in command._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
        if not re.search(rf"`edgeresnet {name}\b", readme)
        or not re.search(rf"{re.escape(option)}(?![\w-])", readme)
    ]
    assert missing == [], f"commands or options the README does not mention: {missing}"


def test_targets_lists_profiles():
    proc = run("targets")
    assert proc.returncode == 0
    header, *lines = proc.stdout.splitlines()
    assert header.split() == ["target", "backend", "device", "precisions", "description"]
    assert {"onnx", "openvino", "jetson", "tensorrt"} <= {line.split()[0] for line in lines}
    # Columns line up under the header, however long a target's precisions.
    start = header.index("description")
    assert all(line[start - 2 : start] == "  " and line[start] != " " for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nosuch"], "Unknown target 'nosuch'"),
        (["--target", "onnx", "--calib", "missing-folder"], "missing-folder"),
        (["--target", "onnx", "--calib-size", "0"], "--calib-size must be at least 1"),
        (["--target", "onnx", "--model", "resnet49"], "resnet49"),
        (["--target", "onnx", "--prune", "0.3", "--prune-round-to", "1000"], "with none"),
        (["--target", "onnx", "--prune-round-to", "x"], "expected a whole number, got 'x'"),
        (["--target", "onnx", "--prune-stem-round-to", "-1"], "must be 0 or more, got -1"),
        (["--target", "onnx", "--prune", "0.3", "--train", "."], "--distill-steps is 0"),
        (["--target", "onnx", "--sensitivity-images", "10"], "sizes the --max-drop search"),
        (["--target", "onnx", "--seed", "99999999999999999999"], "must be 0 to 4294967295"),
        (["--target", "onnx", "--calib-sze", "5"], "build: unrecognized arguments: --calib-sze"),
        (["--target", "onnx", "--threads", "100000"], "this machine's logical cores"),
        (["--target", "onnx", "--device-name", ""], "must name the device, got a blank name"),
    ],
)
def test_bad_input_gives_one_clear_error(tmp_path, args, message):
    proc = run("build", *args, "--weights", "random", "--out", str(tmp_path / "out"))
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "onnx").exists()


def test_an_output_inside_an_input_folder_is_refused(tmp_path):
    """The next run would read this run's report PNGs as calibration or evaluation images."""
    calib_dir = tmp_path / "calib"
    calib_dir.mkdir()
    out = calib_dir / "build"
    proc = build_random_onnx(calib_dir, out)
    assert proc.returncode == 2, proc.stderr
    assert f"--out {out} lies inside --calib {calib_dir}" in " ".join(proc.stderr.split())
    assert not out.exists()


def test_an_output_inside_the_embedded_calibration_folder_is_refused(tmp_path, monkeypatch, capsys):
    """Without --calib the embedded photos calibrate: an --out among them broke every later run."""
    embedded = tmp_path / "calibration" / "default"
    embedded.mkdir(parents=True)
    monkeypatch.setattr(pipeline, "default_calibration_dir", lambda: embedded)
    out = embedded / "build"
    args = ["build", "--target", "onnx", "--weights", "random", "--out", str(out)]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--out {out} lies inside the embedded calibration folder {embedded}" in err
    assert not out.exists()


def test_a_target_folder_that_no_build_wrote_is_refused_before_any_work(tmp_path, capsys):
    """The build replaces OUT/<target> as a whole: the user's own onnx/ folder there would go."""
    out = tmp_path / "models"
    (out / "onnx").mkdir(parents=True)
    (out / "onnx" / "mine.onnx").write_bytes(b"my model")
    args = ["build", "--target", "onnx", "--weights", "random", "--out", str(out)]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: {out / 'onnx'} holds files that `edgeresnet build` did not write" in err
    assert "hint: Pass an --out where onnx/ is new, or move" in err
    assert sorted(p.name for p in out.rglob("*")) == ["mine.onnx", "onnx"]


def test_weights_inside_the_folder_the_build_replaces_are_refused(tmp_path, capsys):
    """A spec passed back to a build of its own target would be deleted by that build."""
    out = tmp_path / "build"
    bundle = out / "onnx"
    (bundle / "p30").mkdir(parents=True)
    (bundle / "results.json").write_text(
        '{"schema": "edgeresnet.results", "producer": {"tool": "edgeresnet build"}}'
    )
    spec = bundle / "p30" / "model.channels.json"
    spec.write_text("{}")
    args = ["build", "--target", "onnx", "--weights", str(spec), "--out", str(out)]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: --weights {spec} lies inside {bundle}, which the build replaces" in err
    assert spec.read_text() == "{}"


@pytest.mark.parametrize(
    "command",
    [
        ["build", "--target", "onnx", "--weights", "random"],
        ["report", "results.json"],
        ["select", "results.json"],
        ["bench", "--compare-peers", "--weights", "random"],
    ],
)
def test_a_blank_out_is_refused_not_read_as_the_current_folder(tmp_path, command):
    proc = run(*command, "--out", " ", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--out: must name a folder, got a blank path" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_verify_of_a_blank_path_is_refused_not_read_as_the_current_folder(tmp_path):
    proc = run("verify", "", cwd=tmp_path)
    assert proc.returncode == 2 and "bundle: must name a folder, got a blank path" in proc.stderr


def test_bench_refuses_a_negative_warmup(tmp_path):
    proc = run("bench", "--compare-peers", "--weights", "random", "--warmup", "-1")
    assert proc.returncode == 2 and "--warmup: must be 0 or more, got -1" in proc.stderr


def test_a_malformed_random_seed_is_a_usage_error(tmp_path):
    proc = run("build", "--target", "onnx", "--weights", "random:abc", "--out", str(tmp_path))
    assert proc.returncode == 2 and "Bad random seed in 'random:abc'" in proc.stderr
    assert "hint: Use --weights random:SEED" in proc.stderr


def test_a_mistyped_option_points_to_its_commands_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["select", "results.json", "--max-latncy-ms", "5"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "error: edgeresnet select: unrecognized arguments: --max-latncy-ms 5" in err
    assert "hint: see 'edgeresnet select --help'." in err


def test_empty_calibration_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = build_random_onnx(tmp_path / "empty", tmp_path / "out")
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "empty" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_weights_of_another_architecture(tmp_path, capsys):
    path = tmp_path / "r18.pth"
    torch.save(build_model("resnet18", num_classes=10, width=8).state_dict(), path)
    assert (
        main(["build", "--target", "onnx", "--weights", str(path), "--out", str(tmp_path / "out")])
        == 1
    )
    err = capsys.readouterr().err
    assert "holds resnet18 weights, not resnet50" in err and "--model resnet18" in err
    assert not (tmp_path / "out").exists()


def test_offline_imagenet_weights_name_the_alternatives(tmp_path, monkeypatch, capsys):
    import urllib.error

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    assert main(["build", "--target", "onnx", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "--weights FILE" in err and "--weights random" in err
    assert "Traceback" not in err


def test_eval_labels_beyond_model_classes(tmp_path, digits, capsys):
    path = tmp_path / "r18-5.pth"
    torch.save(build_model("resnet18", num_classes=5, width=8).state_dict(), path)
    code = main(
        [
            "build",
            "--target",
            "onnx",
            "--model",
            "resnet18",
            "--weights",
            str(path),
            "--eval",
            str(digits["test"]),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 1
    err = " ".join(capsys.readouterr().err.split())
    # The image and its class folder named: the index is the folder's rank, not its name.
    assert re.search(
        r"gives \S+/9/\S+ class index 9, its class folder '9', but the model has 5", err
    )


def test_a_bad_option_is_one_error_line_and_a_hint(capsys):
    with pytest.raises(SystemExit) as info:
        main(["build", "--target", "onnx", "--prune", "abc"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "usage:" not in err
    assert err.splitlines()[0].startswith("error: edgeresnet build: argument --prune")
    assert err.splitlines()[1] == "  hint: see 'edgeresnet build --help'."


def test_debug_is_taken_after_the_command_too(capsys):
    assert main(["targets", "--debug"]) == 0
    assert main(["build", "--target", "nope", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "error: Unknown target 'nope'" in err
