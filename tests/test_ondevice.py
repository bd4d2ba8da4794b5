"""On-device scripts: standalone (stdlib, numpy, runtime), measure, refuse damaged bundles."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import assert_ratio_of_p50s
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from edgeresnet.bundle import add_scripts, write_manifest
from edgeresnet.config import ExportOptions
from edgeresnet.export import export_onnx
from edgeresnet.models import build_model
from edgeresnet.ondevice import bench_onnxruntime, common

ONDEVICE = Path(common.__file__).parent
# PIL only for decoding images in evaluate_tensorrt.py; the scripts' own files beside them.
ALLOWED = {"numpy", "onnxruntime", "tensorrt", "openvino", "PIL", "__future__"}
ALLOWED |= {p.stem for p in ONDEVICE.glob("*.py")}


@pytest.mark.parametrize("script", sorted(p.name for p in ONDEVICE.glob("*.py")))
def test_scripts_import_only_the_runtime_numpy_and_stdlib(script):
    tree = ast.parse((ONDEVICE / script).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or "common"] if node.level == 0 else ["common"]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in ALLOWED or top in sys.stdlib_module_names, f"{script} imports {name}"


# Builtins that take [] only from Python 3.9 on, outside annotations.
GENERIC_FROM_39 = {"list", "dict", "tuple", "set", "frozenset", "type"}


def _annotation_nodes(tree: ast.AST) -> set[int]:
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for root in roots for n in ast.walk(root)}


def _newer_than_38(tree: ast.AST) -> list[str]:
    """What ast can see that Python 3.8 (JetPack 5) or Pillow 7 (its python3-pil) lacks."""
    annotations, found = _annotation_nodes(tree), []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Call) and any(k.arg == "strict" for k in node.keywords):
            found.append(f"line {line}: zip(strict=...) needs 3.10")
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.BitOr):
            found.append(f"line {line}: |= (dict union) needs 3.9; use update()")
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id in GENERIC_FROM_39
            and id(node) not in annotations
        ):
            found.append(f"line {line}: {node.value.id}[...] outside an annotation needs 3.9")
        elif isinstance(node, ast.Attribute) and node.attr in {"removeprefix", "removesuffix"}:
            found.append(f"line {line}: str.{node.attr} needs 3.9")
        elif isinstance(node, ast.Attribute) and node.attr == "Resampling":
            found.append(f"line {line}: Image.Resampling needs Pillow 9.1")
    return sorted(found, key=lambda f: int(f.split()[1].rstrip(":")))


@pytest.mark.parametrize("script", sorted(p.name for p in ONDEVICE.glob("*.py")))
def test_scripts_run_on_python_3_8(script):
    """JetPack 5 (the jetson-jp5 and jetson-dla targets) ships Python 3.8 and Pillow 7."""
    source = (ONDEVICE / script).read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    assert _newer_than_38(tree) == [], script
    if _annotation_nodes(tree):
        assert "from __future__ import annotations" in source, f"{script} evaluates annotations"
    # The standard library's functions and modules by the version that added them.
    vermin = [str(Path(sys.executable).with_name("vermin")), "--target=3.8-", "--violations"]
    proc = subprocess.run([*vermin, str(ONDEVICE / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_the_python_3_8_check_finds_what_3_8_lacks():
    source = """
d = {}
d |= {"a": 1}
pairs = list(zip([1], [2], strict=True))
Alias = dict[str, int]
name = "x".removeprefix("y")
def f(x: list[int]) -> dict[str, int]:
    return {}
"""
    found = _newer_than_38(ast.parse(source))
    assert [f.split(":")[0] for f in found] == ["line 3", "line 4", "line 5", "line 6"], found


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, width=8)
    export_onnx(model, folder / "model.fp32.onnx", input_size=32, options=ExportOptions())
    scripts = add_scripts(folder, [Path(bench_onnxruntime.__file__), ONDEVICE / "common.py"])
    artifact = {"file": "model.fp32.onnx", "bytes": (folder / "model.fp32.onnx").stat().st_size}
    write_manifest(
        folder,
        files=[folder / "model.fp32.onnx", *scripts],
        variants=[
            {
                "variant": "fp32",
                "precision": "fp32",
                "file": "model.fp32.onnx",
                "artifact": artifact,
            }
        ],
        model={"arch": "resnet18", "input_size": 32, "weights": {"kind": "random"}},
        data={},
        target={"name": "onnx", "backend": "onnxruntime", "device": "CPU"},
        options={},
    )
    return folder


def run_script(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    # Run as a user on a device would: the copied file, from another folder.
    return subprocess.run(
        [
            sys.executable,
            str(bundle / "ondevice" / "bench_onnxruntime.py"),
            "--bundle",
            str(bundle),
            "--threads",
            "1",
            "--min-iterations",
            "3",
            "--min-seconds",
            "0.01",
            "--warmup",
            "1",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=bundle.parent,
    )


def test_bundle_benchmark_writes_results_in_the_shared_schema(bundle, tmp_path):
    out = tmp_path / "device.json"
    proc = run_script(bundle, "--json", str(out), "--device-name", "bench-box")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == common.SCHEMA and doc["schema_version"] == common.SCHEMA_VERSION
    assert doc["device"]["name"] == "bench-box"
    assert "ondevice/bench_onnxruntime.py --bundle" in doc["producer"]["command"]
    (row,) = doc["rows"]
    assert row["bench"]["latency"]["batch"] == 1 and row["bench"]["threads"] == 1
    assert row["bench"]["precision_executed"]["label"] == "fp32"
    load = row["bench"]["load_average"]  # so a report can say it was timed under load
    assert len(load["start"]) == len(load["end"]) == 3
    from edgeresnet.report import load_results, rows_of

    (timed,) = rows_of(load_results(out), "device.json")
    assert timed.p50_ms > 0 and timed.peak_load == max(load["start"][0], load["end"][0])


def test_a_bundle_timed_in_rounds_keeps_each_variants_fastest_run(bundle, tmp_path):
    out = tmp_path / "device.json"
    proc = run_script(bundle, "--json", str(out), "--rounds", "3")
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("benchmarking")] == [
        f"benchmarking model.fp32.onnx, round {r} of 3 ..." for r in (1, 2, 3)
    ]
    (row,) = json.loads(out.read_text())["rows"]
    rounds = row["bench"]["rounds"]
    assert rounds["count"] == 3 and rounds["kept"] == "fastest"
    assert row["bench"]["latency"]["p50_ms"] == min(rounds["p50_ms"])
    assert row["bench"]["throughput"]["images_per_s"] == max(rounds["images_per_s"])


def test_rounds_go_with_a_bundle(bundle):
    proc = subprocess.run(
        [
            sys.executable,
            str(bundle / "ondevice" / "bench_onnxruntime.py"),
            *("--model", str(bundle / "model.fp32.onnx"), "--rounds", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--rounds goes with --bundle" in proc.stderr, proc.stderr
    assert "benchmarking" not in proc.stdout


def test_rounds_reverse_the_order_and_keep_each_jobs_least_disturbed_figures(capsys):
    """The rule of the build's --rounds and the bundle scripts', one function."""
    calls: list[str] = []
    p50 = {"a": iter([5.0, 3.0, 4.0]), "b": iter([2.0, 2.5, 1.5])}
    rate = {"a": iter([10.0, 30.0, 20.0]), "b": iter([50.0, 40.0, 45.0])}

    def job(name: str):
        def measure() -> dict:
            calls.append(name)
            return {
                "latency": {"p50_ms": next(p50[name])},
                "throughput": {"images_per_s": next(rate[name])},
            }

        return name, measure

    a, b = common.in_rounds([job("a"), job("b")], 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert (a["latency"]["p50_ms"], a["throughput"]["images_per_s"]) == (3.0, 30.0)
    assert (b["latency"]["p50_ms"], b["throughput"]["images_per_s"]) == (1.5, 50.0)
    assert a["rounds"] == {
        "count": 3,
        "p50_ms": [5.0, 3.0, 4.0],
        "images_per_s": [10.0, 30.0, 20.0],
        "kept": "fastest",
    }
    assert "benchmarking b, round 2 of 3 ..." in capsys.readouterr().out
    (once,) = common.in_rounds([("a", lambda: {"latency": {"p50_ms": 1.0}})], 1)
    assert once == {"latency": {"p50_ms": 1.0}}  # one round: the run itself, no rounds record


def test_damaged_bundle_is_refused(bundle, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    with open(damaged / "model.fp32.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    proc = run_script(damaged)
    assert proc.returncode != 0
    assert "does not match its sha256" in proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-sizes", "0"], "batch sizes must start with 1"),
        (["--batch-sizes", "8"], "batch sizes must start with 1 (the batch-1 latency)"),
        (["--batch-sizes", "1,8,8"], "batch sizes must be at least 1, each once, got '1,8,8'"),
        (["--device-name", " "], "--device-name: must name the device, got a blank name"),
        (["--batch-sizes", "1,,8"], "expected batch sizes like 1,8, got '1,,8'"),
        (["--threads", "0"], "must be at least 1, got 0"),
        (["--pairs", "1"], "--pairs must be 0 (off) or at least 2, got 1"),
        (["--json", "/nonexistent/x.json"], "/nonexistent is not a folder this user can write"),
        (["--rounds", "0"], "--rounds: must be at least 1, got 0"),
        (["--providers", "FooExecutionProvider"], "has no FooExecutionProvider; it has"),
        (["--threads", "100000"], "this device's logical cores, got 100000"),
        (["--min-seconds", "nan"], "--min-seconds: must be at least 0.0, got nan"),
    ],
)
def test_bad_options_are_refused_before_anything_is_timed(bundle, extra, message):
    proc = run_script(bundle, *extra)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert proc.stderr.count("error:") == 1 and proc.stderr.count("hint:") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "timing" not in proc.stdout


def test_pairs_with_one_model_and_no_reference_are_refused(bundle):
    model = bundle / "model.fp32.onnx"
    script = bundle / "ondevice" / "bench_onnxruntime.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--model", str(model), "--pairs", "20"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "none was given" in proc.stderr, proc.stderr
    assert "--pairs with --model times it against --reference" in proc.stderr


def test_a_provider_that_falls_back_is_refused_not_timed_under_its_name(bundle, monkeypatch):
    """CUDA whose libraries fail to load: ONNX Runtime runs on CPU, which is not what was asked."""

    class FellBack:
        def __init__(self, *args, **kwargs):
            pass

        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(bench_onnxruntime.ort, "InferenceSession", FellBack)
    with pytest.raises(common.ScriptError) as info:
        bench_onnxruntime.open_session(
            bundle / "model.fp32.onnx", None, ["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
    assert "could not start CUDAExecutionProvider" in str(info.value)
    assert "fell back to CPUExecutionProvider" in str(info.value)


def test_sigterm_stops_the_timing_process_and_writes_nothing(bundle, tmp_path):
    """`timeout` or `kill` sends SIGTERM to the script alone: its timing process, and that
    process's temporary folder, went on without it."""
    temp = tmp_path / "temp"
    temp.mkdir()
    out = tmp_path / "device.json"
    script = bundle / "ondevice" / "bench_onnxruntime.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--bundle", str(bundle), "--threads", "1"]
        + ["--min-seconds", "60", "--json", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    deadline = time.monotonic() + 120
    while not _children(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    children = _children(proc.pid)
    assert children, "no timing process started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip() == "interrupted: no results were written"
    # ONNX Runtime's native library keeps a shared session id there, ".ses": not a work file.
    assert not out.exists() and [p.name for p in temp.iterdir() if p.name != ".ses"] == []
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("script", ["bench_onnxruntime.py", "bench_openvino.py"])
@pytest.mark.parametrize(
    ("given", "message", "code"),
    [
        (["--model", "garbage.bin"], "cannot load garbage.bin", 1),
        # A path that is not what the option takes: 2, as edgeresnet verify exits for it.
        (["--model", "missing.bin"], "missing.bin does not exist", 2),
        (["--bundle", "missing"], "--bundle missing is not a folder", 2),
        (["--bundle", "."], "holds no manifest.json: it is not a bundle", 2),
        (["--bundle", "ondevice"], "ondevice holds no manifest.json", 2),
    ],
)
def test_a_model_or_bundle_that_cannot_be_read_is_one_error(script, given, message, code, tmp_path):
    copy = tmp_path / "ondevice"
    shutil.copytree(ONDEVICE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "garbage.bin").write_bytes(b"not a model at all")
    proc = subprocess.run(
        [sys.executable, str(copy / script), *given],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == code and message in proc.stderr, proc.stderr
    assert "hint:" in proc.stderr and "Traceback" not in proc.stderr


def test_bundle_results_are_named_by_device_and_target(bundle, tmp_path):
    """A device name with a slash still names a file in the bundle, and two bundles timed on one
    device can be gathered into one folder without a clash."""
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    proc = run_script(copy, "--device-name", "lab/orin 1")
    assert proc.returncode == 0, proc.stderr
    written = copy / "results.lab-orin-1.onnx.json"
    assert f"wrote {written}" in proc.stdout
    document = json.loads(written.read_text())
    assert document["device"]["name"] == "lab/orin 1" and document["target"]["name"] == "onnx"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("a file entry lost its size", "files[0] needs a path, bytes and sha256"),
        ("the files list was emptied", "model.fp32.onnx (variant fp32) is not in its files"),
        ("a path leaves the bundle", "files[0] path '../../etc/hostname' must lie inside"),
        ("a path is absolute", "files[0] path '/etc/hostname' must lie inside the bundle"),
        ("the model record was removed", "'model' must be an object"),
        ("a variant lost its precision", "variants[0] needs a variant name, a file and a"),
        ("the input size is not a number", "model.input_size is '32', not a whole number"),
    ],
)
def test_a_manifest_that_was_edited_is_refused(bundle, tmp_path, damage, message):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / common.MANIFEST).read_text())
    if damage == "a file entry lost its size":
        del manifest["files"][0]["bytes"]
    elif damage == "the model record was removed":
        del manifest["model"]
    elif damage == "a variant lost its precision":
        del manifest["variants"][0]["precision"]
    elif damage == "the input size is not a number":
        manifest["model"]["input_size"] = "32"
    elif damage == "a path leaves the bundle":
        manifest["files"][0]["path"] = "../../etc/hostname"
    elif damage == "a path is absolute":
        manifest["files"][0]["path"] = "/etc/hostname"
    else:
        manifest["files"] = []
    (copy / common.MANIFEST).write_text(json.dumps(manifest))
    proc = run_script(copy)
    assert proc.returncode == 1 and message in proc.stderr and "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_json_never_replaces_a_file_the_run_did_not_write(bundle, tmp_path):
    """Only an earlier device run's results are replaced: not the bundle's model, nor a build's
    results.json (its accuracy), nor any other file."""
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    build_results = copy / "results.json"
    build = {"schema": common.SCHEMA, "producer": {"tool": "edgeresnet build"}}
    common.write_json(build_results, build)
    model = (copy / "model.fp32.onnx").read_bytes()
    for target in ("model.fp32.onnx", "results.json", common.MANIFEST):
        kept = (copy / target).read_bytes()
        proc = run_script(copy, "--json", str(copy / target))
        assert proc.returncode == 1, proc.stdout
        assert "exists and is not the output of an on-device run" in proc.stderr
        assert "benchmarking" not in proc.stdout and (copy / target).read_bytes() == kept
    assert (copy / "model.fp32.onnx").read_bytes() == model
    device = tmp_path / "device.json"
    assert run_script(copy, "--json", str(device)).returncode == 0
    again = run_script(copy, "--json", str(device))  # an earlier run's results: replaced
    assert again.returncode == 0, again.stderr


def test_a_bundle_of_another_runtime_is_refused_not_reported_empty(bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / common.MANIFEST).read_text())
    manifest["variants"] = []  # as an OpenVINO bundle lists no .onnx variants
    manifest["target"]["name"] = "openvino"
    (copy / common.MANIFEST).write_text(json.dumps(manifest))
    proc = run_script(copy, "--json", str(tmp_path / "device.json"))
    assert proc.returncode == 1 and not (tmp_path / "device.json").exists()
    assert "lists no .onnx artifacts for bench_onnxruntime.py to time" in proc.stderr
    assert "the openvino target" in proc.stderr and "Traceback" not in proc.stderr


def test_alternate_flips_the_order_every_pair():
    calls: list[str] = []
    a, b = common.alternate(lambda: calls.append("a"), lambda: calls.append("b"), pairs=4, warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(a) == len(b) == 4 and min(a + b) >= 0


@given(
    times=st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=60),
    scale=st.floats(0.05, 20.0),
)
@settings(max_examples=50, deadline=None)
def test_paired_ratio_of_a_scaled_series_is_the_scale(times, scale):
    """Pairs whose times differ by one factor give that factor, with no spread at all."""
    result = common.paired_ratio([t * scale for t in times], times, resamples=200)
    assert result["pairs"] == len(times)
    assert result["ratio"] == pytest.approx(scale, rel=1e-3, abs=1e-4)
    assert result["ratio_ci95"] == pytest.approx([scale, scale], rel=1e-3, abs=1e-4)


def test_paired_ratio_needs_two_equal_series():
    with pytest.raises(ValueError, match="two equal series"):
        common.paired_ratio([0.1, 0.2, 0.3], [0.1, 0.2])


def conv_chain(path: Path, convs: int, size: int = 64) -> Path:
    """A plain ONNX chain of 3x3 convolutions, 32 channels wide: work grows with ``convs``."""
    rng = np.random.default_rng(0)
    nodes, weights, name, channels = [], [], "input", 3
    for i in range(convs):
        w = (rng.standard_normal((32, channels, 3, 3)) * 0.1).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        out = "output" if i == convs - 1 else f"x{i}"
        nodes.append(helper.make_node("Conv", [name, f"w{i}"], [out], pads=[1, 1, 1, 1]))
        name, channels = out, 32
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 32, size, size])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("script", ["bench_onnxruntime.py", "bench_openvino.py"])
def test_reference_timing_tells_a_light_model_from_a_heavy_one(script, tmp_path):
    """One conv against nine (86x the MACs), call for call in a fresh process: 0.02-0.03x in
    ONNX Runtime and 0.1x in OpenVINO (its fixed cost per call) on 2 Zen 5 cores."""
    light, heavy = conv_chain(tmp_path / "light.onnx", 1), conv_chain(tmp_path / "heavy.onnx", 9)
    out = tmp_path / "paired.json"
    command = [sys.executable, str(ONDEVICE / script), "--model", str(light)]
    command += ["--reference", str(heavy), "--pairs", "30", "--threads", "1"]
    command += ["--input-size", "64", "--warmup", "2", "--json", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["model_file"] == str(light) and result["reference_file"] == str(heavy)
    assert result["pairs"] == 30 and result["threads"] == 1
    low, high = result["ratio_ci95"]
    assert low <= result["ratio"] <= high < 0.25
    assert_ratio_of_p50s(result)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pairs", "1"], "--pairs must be at least 2 with --reference, got 1"),
        (["--reference", "missing.onnx"], "--reference missing.onnx does not exist"),
    ],
)
def test_reference_timing_refuses_bad_options(extra, message, tmp_path):
    light = conv_chain(tmp_path / "light.onnx", 1)
    command = [sys.executable, str(ONDEVICE / "bench_onnxruntime.py"), "--model", str(light)]
    if "--reference" not in extra:
        extra = ["--reference", str(light), *extra]
    proc = subprocess.run([*command, *extra], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("open(out, 'w').write('{\"rows\": [')", "wrote unreadable results"),
        ("raise SystemExit(3)", "failed (exit 3)"),
    ],
)
def test_a_benchmark_process_that_fails_or_writes_half_its_file_is_a_backend_error(
    tmp_path, monkeypatch, body, message
):
    from edgeresnet.backends.script import run_ondevice
    from edgeresnet.errors import BackendUnavailableError

    script = f"import sys\nout = sys.argv[sys.argv.index('--json') + 1]\n{body}\n"
    (tmp_path / "half_written.py").write_text(script)
    monkeypatch.chdir(tmp_path)  # `python -m` finds the module in the current folder
    with pytest.raises(BackendUnavailableError, match=re.escape(message)):
        run_ondevice("half_written", [])
