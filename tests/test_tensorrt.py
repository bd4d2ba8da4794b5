"""TensorRT / Jetson target: rules validator, calibration cache, bundle scripts, end to end.

TensorRT itself cannot be installed here, so the tests check what can be checked without it:
the INT8 ONNX against TensorRT's rules and in ONNX Runtime, the cache format, and the bundle's
scripts up to the point where they need TensorRT.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgeresnet.backends import tensorrt_bundle, tensorrt_cache
from edgeresnet.backends.tensorrt import TensorRTSession
from edgeresnet.backends.tensorrt_rules import RULES, check_rules
from edgeresnet.cli import main
from edgeresnet.data import Preprocess, load_image
from edgeresnet.errors import BackendUnavailableError, VerificationError
from edgeresnet.ondevice import bench_tensorrt, common, evaluate_tensorrt, trt_runtime
from edgeresnet.quantize import trt_qdq
from edgeresnet.report.rows import rows_of

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
C = 4  # channels of the hand-made graphs


# --------------------------------------------------------------------------- rules


def _tensor(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, name)


def residual_graph(
    *,
    act_zero: np.ndarray | None = None,
    weight_scale: np.ndarray | None = None,
    int32_bias: bool = False,
    raw_residual: bool = False,
    opset: int = 17,
    contrib: bool = False,
) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv(int8 weights, float bias) -> Q/DQ -> Add(., DQ(x)): a residual block.

    Defaults follow every TensorRT rule; each keyword breaks one.
    """
    zero = np.array(0, np.int8) if act_zero is None else act_zero
    w_scale = np.full(C, 0.01, np.float32) if weight_scale is None else weight_scale
    inits = [
        _tensor("s", np.array(0.02, np.float32)),
        _tensor("z", zero),
        _tensor("w_q", np.ones((C, C, 3, 3), np.int8)),
        _tensor("w_s", w_scale),
        _tensor("w_z", np.zeros(w_scale.shape, np.int8)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["x_q"], name="q_x"),
        helper.make_node("DequantizeLinear", ["x_q", "s", "z"], ["x_dq"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="dq_w", axis=0),
    ]
    if int32_bias:
        inits += [
            _tensor("b_q", np.zeros(C, np.int32)),
            _tensor("b_s", np.full(C, 2e-4, np.float32)),
            _tensor("b_z", np.zeros(C, np.int32)),
        ]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b"], axis=0))
    else:
        inits.append(_tensor("b", np.zeros(C, np.float32)))
    nodes += [
        helper.make_node("Conv", ["x_dq", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["c_q"], name="q_c"),
        helper.make_node("DequantizeLinear", ["c_q", "s", "z"], ["c_dq"], name="dq_c"),
        helper.make_node(
            "Add", ["c" if raw_residual else "c_dq", "x_dq"], ["sum"], name="residual_add"
        ),
        helper.make_node("Relu", ["sum"], ["y"], name="relu"),
    ]
    imports = [helper.make_opsetid("", opset)]
    if contrib:
        nodes.append(helper.make_node("FastGelu", ["y"], ["y2"], domain="com.microsoft"))
        imports.append(helper.make_opsetid("com.microsoft", 1))
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=imports)


def test_a_graph_following_every_rule_passes():
    report = check_rules(residual_graph())
    assert set(report["rules"]) == set(RULES)
    assert report["residual_adds"] == 1 and report["quantized_conv"] == 1


@pytest.mark.parametrize(
    ("rule", "broken"),
    [
        ("signed-int8", {"act_zero": np.array(0, np.uint8)}),
        ("zero-point-zero", {"act_zero": np.array(3, np.int8)}),
        ("weight-per-channel", {"weight_scale": np.array([0.01], np.float32)}),
        ("float-bias", {"int32_bias": True}),
        ("standard-ops", {"contrib": True}),
        ("opset", {"opset": 12}),
        ("residual-add", {"raw_residual": True}),
    ],
)
def test_each_broken_rule_fails_with_its_name(rule, broken):
    with pytest.raises(VerificationError, match=f"rule '{rule}'") as info:
        check_rules(residual_graph(**broken))
    assert info.value.hint and "TensorRT requires" in info.value.hint


def test_unquantized_conv_input_is_refused():
    model = residual_graph()
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.input[0] = "x"
    with pytest.raises(VerificationError, match="rule 'quantized-inputs'.*conv"):
        check_rules(model)


# --------------------------------------------------------------------------- cache


def test_cache_parses_tensorrts_own_format():
    # As TensorRT 8.6.1's calibrator writes it: big-endian hex of the float32 scale.
    text = "TRT-8601-EntropyCalibration2\nimages: 3c010a14\n168: 3dc6cf6e\n"
    cache = tensorrt_cache.parse(text)
    assert (cache.version, cache.algorithm) == (8601, "EntropyCalibration2")
    # The input of that model was scaled to [0, 1]: amax 1.0, scale about 1/127.
    assert cache.scales["images"] == pytest.approx(1 / 127, rel=1e-3)
    assert cache.scales["168"] == pytest.approx(struct.unpack(">f", bytes.fromhex("3dc6cf6e"))[0])


def test_cache_round_trips_and_refuses_garbage():
    scales = {"input": 0.0207874, "/layer1/layer1.0/Add_output_0": 0.1}
    text = tensorrt_cache.render(scales, version=100300)
    assert text.splitlines()[0] == "TRT-100300-EntropyCalibration2"
    assert tensorrt_cache.parse(text).scales == pytest.approx(scales)
    with pytest.raises(VerificationError, match="Not a TensorRT calibration cache"):
        tensorrt_cache.parse("input: 3c010a14\n")
    with pytest.raises(VerificationError, match="line 2"):
        tensorrt_cache.parse("TRT-8601-EntropyCalibration2\ninput: zz\n")


@pytest.mark.parametrize(
    ("version", "code"), [("8.5.2.2", 8502), ("8.6.1", 8601), ("10.3.0.30", 100300)]
)
def test_version_codes_follow_tensorrt_headers(version, code):
    assert trt_runtime.version_code(version) == code


@pytest.mark.parametrize(
    ("version", "spec", "ok"),
    [
        ("10.3.0.30", ">=10.0,<11", True),
        ("11.0.0", ">=10.0,<11", False),
        ("8.6.2.3", ">=8.5,<8.7", True),
        ("8.4.1", ">=8.5,<8.7", False),
    ],
)
def test_tensorrt_version_ranges(version, spec, ok):
    assert trt_runtime.version_matches(version, spec) is ok


@pytest.mark.parametrize(
    ("spec", "lowest"),
    [(">=8.5,<11", "8.5"), ("<11,>=10.0", "10.0"), (">=8.5,>=8.6.1", "8.6.1"), ("<11", None)],
)
def test_a_ranges_lowest_version_names_the_calibration_caches_header(spec, lowest):
    assert trt_runtime.lowest_version(spec) == lowest


def test_a_range_is_read_whole_before_it_is_matched():
    with pytest.raises(common.ScriptError, match="cannot read the TensorRT version range"):
        trt_runtime.version_matches("9.0", ">=10.0,newest")


# --------------------------------------------------------------------------- on-device helpers


def test_standalone_preprocessing_matches_the_build(imagenet_samples, tmp_path):
    pre = Preprocess()
    spec = pre.to_dict()
    paths = [path for path, _ in evaluate_tensorrt.labelled_images(imagenet_samples)[:3]]
    # A 16-bit greyscale scan: rescaled to 8 bits by both, not clipped to white by either.
    deep = np.linspace(0, 65535, 300 * 260).reshape(260, 300).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    for path in [*paths, tmp_path / "deep.png"]:
        expected = pre(load_image(path))
        np.testing.assert_allclose(evaluate_tensorrt.preprocess(path, spec), expected, atol=1e-6)
    assert 0.3 < float(pre(load_image(tmp_path / "deep.png")).std()) < 2.0  # not one flat value


def test_standalone_scores_have_no_sqnr_where_the_reference_is_silent():
    labels = np.array([0, 1])
    silent = evaluate_tensorrt.scores(np.ones((2, 3)), labels, np.zeros((2, 3)))
    assert silent["fidelity"]["sqnr_db"] is None
    same = evaluate_tensorrt.scores(np.ones((2, 3)), labels, np.ones((2, 3)))
    assert same["fidelity"]["sqnr_db"] is None and same["fidelity"]["top1_agreement"] == 100.0
    assert same["accuracy"]["top5"] is None  # 3 classes: all of them are in the top 5


def test_layer_precisions_read_the_engine_inspector():
    layers = {
        "Layers": [
            {"LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": "Int8 NC/32HW32"}]},
            {"LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": "Half"}]},
            {"LayerType": "Reformat", "Inputs": [{"Format/Datatype": "Row major linear FP32"}]},
        ]
    }
    found = trt_runtime.layer_precisions(layers)
    assert found["label"] == "fp16+int8" and found["convolutions"] == 2


class _Numbers:
    def __init__(self, n: int) -> None:
        self._items = iter(range(n))

    def get_next(self):
        return next(self._items, None)


def test_calibration_reaches_ort_in_chunks_and_every_batch_gets_there():
    """ORT's calibrators hold all they get per call: 48 ResNet-50 images with percentile took
    5.9 GB in one call and 1.4 GB in chunks of 8."""
    chunks, calls = trt_qdq._Chunks(_Numbers(19), trt_qdq.CHUNK), []
    while chunks.pending():
        calls.append(list(iter(chunks.get_next, None)))
    assert [len(c) for c in calls] == [8, 8, 3]
    assert sum(calls, []) == list(range(19))
    assert not trt_qdq._Chunks(_Numbers(0), 8).pending()


class _EngineOfBatch8:
    """Stands in for trt_runtime.EngineRunner (TensorRT cannot be installed here)."""

    batch_range = (1, 8)

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) > 8:
            common.fail(f"the engine takes batches of 1 to 8, not {batch.shape}.", "slice it")
        self.batches.append(len(batch))
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)


def test_a_session_runs_an_evaluation_batch_in_slices_the_engine_takes():
    engine = _EngineOfBatch8()
    batch = np.random.default_rng(0).standard_normal((19, 3, 4, 4)).astype(np.float32)
    out = TensorRTSession(engine).run(batch)
    assert engine.batches == [8, 8, 3]
    np.testing.assert_allclose(out[:, 0], batch.reshape(19, -1).sum(axis=1), rtol=1e-6)
    # What the on-device module stops a script with is a typed error inside a build.
    engine.batch_range = (1, 32)
    with pytest.raises(BackendUnavailableError, match="batches of 1 to 8"):
        TensorRTSession(engine).run(np.zeros((40, 3, 4, 4), np.float32))


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def digits_bundle(digits_build, tmp_path_factory) -> Path:
    """`edgeresnet build --target jetson` on the ResNet trained on real digits."""
    out = tmp_path_factory.mktemp("jetson")
    code = main(["build", *digits_build("jetson", out, 300, evaluate=True)])
    assert code == 0
    return out / "jetson"


@pytest.mark.slow
def test_int8_keeps_digits_accuracy_and_follows_tensorrt_rules(digits_bundle):
    doc = json.loads((digits_bundle / "results.json").read_text())
    rows = {r["variant"]: r for r in doc["rows"]}
    fp32, int8 = rows["fp32"], rows["int8"]
    assert fp32["accuracy"]["top1"] > 95.0
    assert abs(fp32["accuracy"]["top1"] - int8["accuracy"]["top1"]) <= 1.0
    assert int8["fidelity"]["top1_agreement"] >= 98.0
    validator = int8["build"]["validator"]
    assert set(validator["rules"].values()) == {"passed"}
    assert validator["fidelity"]["images"] > 0
    assert "TensorRT absent" in int8["build"]["evaluated_in"]
    # No TensorRT here: built, evaluated in ONNX Runtime, latency only from a device.
    assert all(r["bench"] is None for r in doc["rows"])
    assert any("not benchmarked here" in n for n in int8["notes"])
    assert (
        rows["fp16"]["fidelity"] is None and rows["fp16"]["artifact"]["file"] == "model.fp32.onnx"
    )
    # FP16 exists only in an engine built on the device: the FP32 file's size is not its own.
    assert rows["fp16"]["artifact"]["bytes"] is None
    assert rows["fp16"]["artifact"]["file_bytes"] == rows["fp32"]["artifact"]["bytes"]
    # The report names the runtime that measured each row's figures.
    parsed = {r.variant: r for r in rows_of(doc, "results.json")}
    assert parsed["int8"].runtime.startswith("onnxruntime ") and "TensorRT absent" in (
        parsed["int8"].runtime
    )
    assert parsed["fp16"].runtime == "tensorrt (not run)" and parsed["fp16"].size_mb is None


@pytest.mark.slow
def test_bundle_holds_models_cache_scripts_and_checksums(digits_bundle):
    names = {
        p.relative_to(digits_bundle).as_posix() for p in digits_bundle.rglob("*") if p.is_file()
    }
    expected = {
        "model.fp32.onnx",
        "model.int8.onnx",
        "calibration.cache",
        "manifest.json",
        "ondevice/build_engine.py",
        "ondevice/bench_tensorrt.py",
        "ondevice/evaluate_tensorrt.py",
        "ondevice/trt_runtime.py",
        "ondevice/common.py",
        "ondevice/trtexec.sh",
        "ondevice/README.md",
        "ondevice/tensorrt.json",
    }
    assert expected <= names
    manifest = json.loads((digits_bundle / "manifest.json").read_text())
    assert expected - {"manifest.json"} <= {f["path"] for f in manifest["files"]}
    # The cache covers every activation tensor of the FP32 ONNX, by its own names.
    cache = tensorrt_cache.parse((digits_bundle / "calibration.cache").read_text())
    fp32 = onnx.load(str(digits_bundle / "model.fp32.onnx"))
    assert list(cache.scales) == tensorrt_cache.activation_tensors(fp32)
    assert all(s > 0 for s in cache.scales.values())
    assert cache.algorithm == "EntropyCalibration2" and cache.version == 100000


def run_script(bundle: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    # As a user on the device would: the copied file, from another folder.
    return subprocess.run(
        [sys.executable, str(bundle / "ondevice" / script), "--bundle", str(bundle), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=bundle.parent,
    )


@pytest.mark.slow
@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the scripts would run")
@pytest.mark.parametrize("script", ["build_engine.py", "bench_tensorrt.py", "evaluate_tensorrt.py"])
def test_scripts_stop_clearly_without_tensorrt(digits_bundle, digits, script):
    extra = ["--images", str(digits["test"])] if script == "evaluate_tensorrt.py" else []
    proc = run_script(digits_bundle, script, *extra)
    assert proc.returncode != 0
    assert trt_runtime.NOT_INSTALLED in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("extra", "message", "code"),
    [
        (["--pairs", "1"], "--pairs must be at least 2 with --reference, got 1", 2),
        ([], None, 1),  # options accepted: stops at the missing runtime, as without --reference
    ],
)
def test_paired_engine_timing_checks_options_then_needs_tensorrt(extra, message, code, tmp_path):
    """Two engines timed call for call (--reference) on the device; here only up to TensorRT."""
    if HAS_TENSORRT and message is None:
        pytest.skip("TensorRT is installed: the script would run")
    engine = tmp_path / "a.engine"
    engine.write_bytes(b"not an engine")
    script = Path(bench_tensorrt.__file__)
    proc = subprocess.run(
        [sys.executable, str(script), "--engine", str(engine), "--reference", str(engine), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == code
    assert (message or trt_runtime.NOT_INSTALLED) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and (message or "hint:" in proc.stderr)


@pytest.mark.slow
def test_scripts_check_the_manifest_before_tensorrt(digits_bundle, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(digits_bundle, damaged)
    with open(damaged / "model.int8.onnx", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    for script in ("build_engine.py", "bench_tensorrt.py"):
        proc = run_script(damaged, script)
        assert proc.returncode != 0
        assert "does not match its sha256" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_trtexec_script_builds_the_same_engines(digits_bundle, tmp_path):
    script = digits_bundle / "ondevice" / "trtexec.sh"
    fake = tmp_path / "fake"  # stands in for the device's tensorrt package: its version only
    fake.mkdir()
    (fake / "tensorrt.py").write_text("__version__ = '10.3.0'\n")
    env = {**os.environ, "TRTEXEC": "echo", "PYTHONPATH": str(fake)}
    explicit = subprocess.run(
        ["sh", str(script), "model.int8.onnx", "int8"],
        capture_output=True, text=True, env=env, cwd=digits_bundle, check=True,
    ).stdout  # fmt: skip
    assert "--onnx=model.int8.onnx --int8" in explicit
    assert "--minShapes=input:1x3x32x32" in explicit and "--maxShapes=input:8x3x32x32" in explicit
    implicit = subprocess.run(
        ["sh", str(script), "./model.int8.onnx", "int8"],
        capture_output=True, text=True, env={**env, "INT8_MODE": "implicit"},
        cwd=digits_bundle, check=True,
    ).stdout  # fmt: skip
    assert "--onnx=./model.fp32.onnx --int8 --calib=engines/calibration.cache" in implicit
    cache = (digits_bundle / "engines" / "calibration.cache").read_text().splitlines()
    shipped = (digits_bundle / "calibration.cache").read_text().splitlines()
    assert cache == ["TRT-100300-EntropyCalibration2", *shipped[1:]]
    wrong = subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert wrong.returncode == 2 and "error: expected a model" in wrong.stderr


@pytest.mark.slow
def test_device_results_merge_into_reports(digits_bundle):
    """A device run's rows, in the shared schema, read back like a build's."""
    manifest = json.loads((digits_bundle / "manifest.json").read_text())
    settings = json.loads((digits_bundle / "ondevice" / tensorrt_bundle.SETTINGS).read_text())
    assert settings["tensorrt_versions"] == ">=10.0,<11" and settings["batch_sizes"] == [1, 8]
    engine = digits_bundle / "engines" / "int8.engine"
    engine.parent.mkdir(exist_ok=True)
    engine.write_bytes(b"engine bytes")  # stands in for a file only TensorRT can make
    record = {"variant": "int8", "engine": engine.name, "options": {"precision": "int8"}}
    row = bench_tensorrt.row(record, digits_bundle, {v["variant"]: v for v in manifest["variants"]})
    # Figures shaped like measure()'s output; this test checks the document, not a device.
    row["bench"] = {
        "runtime": "tensorrt",
        "runtime_version": "10.3.0",
        "gpu": "Orin",
        "latency": {"batch": 1, "p50_ms": 1.0, "p90_ms": 1.1, "p99_ms": 1.2},
        "throughput": {"batch": 8, "images_per_s": 4000.0},
        "precision_executed": {"label": "int8"},
    }
    doc = bench_tensorrt.document(manifest, [row], {"tensorrt": "10.3.0"}, "orin-test")
    (parsed,) = rows_of(json.loads(json.dumps(doc)), "device.json")
    assert (parsed.device, parsed.target, parsed.variant) == ("orin-test", "jetson", "int8")
    assert parsed.runtime == "tensorrt 10.3.0" and parsed.executed == "int8"
    shutil.rmtree(engine.parent)


def test_engines_timed_in_rounds_keep_their_fastest_run(tmp_path, monkeypatch):
    """The device script's --rounds, with TensorRT and the timing process stood in for (they
    cannot run here); the rounds, the order and the document are the script's own."""
    bundle = _fake_bundle(tmp_path / "bundle", {"num_classes": 10, "input_size": 8})
    (bundle / "engines" / "fp32.engine").write_bytes(b"engine bytes")
    (bundle / "ondevice").mkdir()
    (bundle / "ondevice" / "tensorrt.json").write_text('{"tensorrt_versions": ">=10.0,<11"}')
    monkeypatch.setattr(
        trt_runtime, "import_tensorrt", lambda: type("trt", (), {"__version__": "10.3.0"})
    )
    p50s = iter([3.0, 1.0, 2.0])

    def timed(script, args, what):
        assert script == "bench_tensorrt.py" and "--engine" in args
        return {
            "gpu": "Orin",
            "jetson": {"jetpack": "6.1"},
            "latency": {"batch": 1, "p50_ms": next(p50s)},
            "throughput": {"batch": 8, "images_per_s": 100.0},
        }

    monkeypatch.setattr(common, "in_fresh_process", timed)
    out = tmp_path / "device.json"
    argv = ["--bundle", str(bundle), "--rounds", "3", "--json", str(out)]
    assert bench_tensorrt.main(argv) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["bench"]["latency"]["p50_ms"] == 1.0
    assert row["bench"]["rounds"]["p50_ms"] == [3.0, 1.0, 2.0]
    assert row["artifact"]["file"] == "engines/fp32.engine"


@pytest.mark.slow
def test_resnet50_int8_onnx_is_tensorrt_ready(imagenet_samples, tmp_path):
    """ResNet-50, random weights, real photos: small INT8 file that keeps the FP32 logits."""
    out = tmp_path / "out"
    code = main(
        [
            "build",
            "--target",
            "jetson",
            "--weights",
            "random",
            "--calib",
            str(imagenet_samples),
            "--calib-size",
            "32",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    doc = json.loads((out / "jetson" / "results.json").read_text())
    int8 = next(r for r in doc["rows"] if r["variant"] == "int8")
    assert int8["artifact"]["bytes"] <= 27_000_000
    assert set(int8["build"]["validator"]["rules"].values()) == {"passed"}
    assert int8["build"]["validator"]["quantized_conv"] == 53
    assert int8["build"]["validator"]["residual_adds"] == 16
    # TensorRT's arithmetic on any CPU: a CPU without VNNI, fusing the Q/DQ pairs into its s8/s8
    # kernels, saturates (about 14 dB on this model) and failed the 20 dB floor.
    assert int8["build"]["validator"]["fidelity"]["sqnr_db"] >= 25.0
    assert int8["fidelity"]["sqnr_db"] >= 25.0 and int8["fidelity"]["images"] == 32
    assert "Q/DQ computed in float (TensorRT absent)" in int8["build"]["evaluated_in"]


def test_evaluation_refuses_a_results_file_it_cannot_merge_into(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text('{"rows": "none"}')
    with pytest.raises(common.ScriptError, match="is not a results file to merge into"):
        evaluate_tensorrt._results(bad)


def test_implicit_int8_without_its_calibration_cache_is_refused(tmp_path):
    from edgeresnet.ondevice import build_engine

    model = tmp_path / "model.fp32.onnx"
    model.write_bytes(b"onnx")
    with pytest.raises(common.ScriptError, match="--int8-mode implicit and --calibration-cache go"):
        build_engine.main(["--onnx", str(model), "--precision", "int8", "--int8-mode", "implicit"])


@pytest.mark.parametrize("build_json", ["{not json", '{"engines": [{"engine": "int8.engine"}]}'])
def test_a_damaged_engine_list_is_one_error(tmp_path, build_json):
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "build.json").write_text(build_json)
    with pytest.raises(common.ScriptError, match="is not the engine list build_engine.py") as err:
        trt_runtime.engine_records(tmp_path)
    assert "build_engine.py --bundle ." in err.value.hint


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("a.jpg cat\n", "the label 'cat' of 'a.jpg' is not a class index"),
        ("# only a comment\n", "holds no labels"),
        ("file\tclass_index\na.jpg\tseven\n", "the label 'seven' of 'a.jpg'"),
    ],
)
def test_evaluation_labels_that_cannot_be_read_are_one_error(tmp_path, labels, message):
    (tmp_path / "labels.txt").write_text(labels)
    with pytest.raises(common.ScriptError, match=message):
        evaluate_tensorrt.labelled_images(tmp_path)


# --------------------------------------------------------------------------- on-device labels


def _class_folders(root: Path, classes: int, per_class: int = 2) -> Path:
    """``classes`` class folders of ``per_class`` tiny PNGs each (names c00, c01, ...)."""
    for c in range(classes):
        (root / f"c{c:02d}").mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (c, i, 0)).save(root / f"c{c:02d}" / f"{i}.png")
    return root


def test_evaluation_refuses_class_folders_fewer_than_the_models_classes(tmp_path):
    """Ten class folders for a 37-class model: ranks 0-9 are not the class indices."""
    folder = _class_folders(tmp_path, 10, per_class=1)
    with pytest.raises(common.ScriptError, match="among the 10 present") as err:
        evaluate_tensorrt.labelled_images(folder, 37)
    assert "a model of 37 classes" in err.value.message
    assert "labels file" in err.value.hint
    # As the build: random weights score no accuracy, so their agreement runs on any folder.
    assert len(evaluate_tensorrt.labelled_images(folder, 37, scored=False)) == 10
    assert len(evaluate_tensorrt.labelled_images(folder, 10)) == 10  # every class: its ranks


def test_evaluation_refuses_more_class_folders_than_the_models_classes(tmp_path):
    folder = _class_folders(tmp_path, 4, per_class=1)
    with pytest.raises(common.ScriptError, match="class index 3 \\(class folder 'c03'\\)") as err:
        evaluate_tensorrt.labelled_images(folder, 3, scored=False)
    assert "which has 3 classes (0 to 2)" in err.value.message


def test_evaluation_refuses_loose_images_beside_class_folders(tmp_path):
    """They have no class; the build refuses the same folder."""
    folder = _class_folders(tmp_path, 3, per_class=1)
    Image.new("RGB", (8, 8)).save(folder / "stray.png")
    with pytest.raises(common.ScriptError, match="mixes loose images \\(stray.png"):
        evaluate_tensorrt.labelled_images(folder)


def test_evaluation_refuses_an_empty_class_folder(tmp_path):
    """It would shift the class index of every folder after it, as the build says."""
    folder = _class_folders(tmp_path, 3, per_class=1)
    (folder / "c01" / "0.png").unlink()
    with pytest.raises(common.ScriptError, match="c01 holds no images"):
        evaluate_tensorrt.labelled_images(folder)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("a.png 0\nb.png 37\n", r"labels.txt:2: the label 37 of 'b.png' is not a class of the"),
        ("# header\nfile\tclass_index\na.png\t40\nb.png\t1\n", r"labels.txt:3: the label 40 of"),
    ],
)
def test_evaluation_refuses_a_label_the_model_does_not_have(tmp_path, labels, message):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "labels.txt").write_text(labels)
    with pytest.raises(common.ScriptError, match=message) as err:
        evaluate_tensorrt.labelled_images(tmp_path, 37)
    assert "which has 37 classes (0 to 36)" in err.value.message
    # A labels file gives class indices, not ranks: two labels of a 37-class model are fine.
    assert len(evaluate_tensorrt.labelled_images(tmp_path, 41)) == 2


def test_evaluation_refuses_a_labels_file_with_only_a_header(tmp_path):
    (tmp_path / "labels.tsv").write_text("file\tclass_index\n")
    with pytest.raises(common.ScriptError, match="has a header but no rows"):
        evaluate_tensorrt.labelled_images(tmp_path)


def test_evaluation_refuses_a_negative_label(tmp_path):
    (tmp_path / "labels.txt").write_text("a.png 0\nb.png -1\n")
    with pytest.raises(common.ScriptError, match=r"labels.txt:2: the label '-1' of 'b.png'"):
        evaluate_tensorrt.labelled_images(tmp_path)


def test_the_model_record_gives_the_class_count_and_whether_accuracy_counts():
    imagenet = {"num_classes": 1000, "weights": {"kind": "torchvision", "name": "imagenet"}}
    assert evaluate_tensorrt.model_classes(imagenet) == (1000, True)
    assert evaluate_tensorrt.model_classes({"num_classes": 37, "weights": {"kind": "random"}}) == (
        37,
        False,
    )
    pruned = {"num_classes": 10, "weights": {"kind": "pruned", "pruned_from": {"kind": "random"}}}
    assert evaluate_tensorrt.model_classes(pruned) == (10, False)
    assert evaluate_tensorrt.model_classes({"weights": {}}) == (None, True)


def test_limit_draws_the_builds_seeded_subset_in_order(tmp_path):
    """--limit is the build's --eval-size draw, not the first classes in path order."""
    from edgeresnet.data import discover

    folder = _class_folders(tmp_path / "eval", 10, per_class=5)
    found = evaluate_tensorrt.labelled_images(folder, 10)
    drawn = evaluate_tensorrt.subset(found, 12, seed=0)
    assert len(drawn) == 12 and drawn == sorted(drawn, key=found.index)  # path order kept
    assert len({label for _, label in drawn}) > 3  # not classes 0-2 of the first 12 images
    build = discover(folder, require_labels=True).subset(12, seed=0)
    assert drawn == [(s.path, s.label) for s in build.samples]
    assert evaluate_tensorrt.subset(found, 12, seed=1) != drawn
    assert evaluate_tensorrt.subset(found, 0, seed=0) == list(found)
    assert evaluate_tensorrt.subset(found, 99, seed=0) == list(found)


def test_a_labels_file_is_drawn_in_the_builds_order(tmp_path):
    """Lines in any order: the images are put in the build's order before the draw."""
    from edgeresnet.data import discover

    names = [f"img{i:02d}.png" for i in range(20)]
    for name in names:
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    lines = [f"{name} {i % 5}" for i, name in enumerate(names)]
    (tmp_path / "labels.txt").write_text("\n".join(reversed(lines)) + "\n")
    found = evaluate_tensorrt.labelled_images(tmp_path, 5)
    build = discover(tmp_path, require_labels=True)
    assert list(found) == [(s.path, s.label) for s in build.samples]
    drawn = evaluate_tensorrt.subset(found, 7, seed=3)
    assert drawn == [(s.path, s.label) for s in build.subset(7, seed=3).samples]


def _fake_bundle(root: Path, model: dict) -> Path:
    """A manifest the scripts accept (one stand-in model file) and an engine list: enough up
    to TensorRT."""
    root.mkdir()
    (root / "model.fp32.onnx").write_bytes(b"onnx")
    spec = {"resize_size": 8, "crop_size": 8, "mean": [0.0] * 3, "std": [1.0] * 3}
    file = {
        "path": "model.fp32.onnx",
        "bytes": 4,
        "sha256": common.sha256_file(root / "model.fp32.onnx"),
    }
    manifest = {
        "files": [file],
        "variants": [{"variant": "fp32", "precision": "fp32", "file": "model.fp32.onnx"}],
        "model": {"preprocess": spec, **model},
        "target": {"name": "jetson"},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "engines").mkdir()
    options = {"precision": "fp32", "batch_sizes": [1, 8], "dla_core": -1}
    engines = {"engines": [{"engine": "fp32.engine", "variant": "fp32", "options": options}]}
    (root / "engines" / "build.json").write_text(json.dumps(engines))
    return root


class _FakeRunner:
    """Stands in for an engine: logits of ``classes`` classes, the true class scored highest
    (read back from the image's red channel, which ``_class_folders`` set to the class)."""

    classes = 10

    def __init__(self, *args, **kwargs):
        pass

    def run(self, batch):
        logits = np.zeros((len(batch), self.classes), np.float32)
        logits[np.arange(len(batch)), np.round(batch[:, 0, 0, 0] * 255).astype(int)] = 1.0
        return logits

    def close(self):
        pass


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """The script's TensorRT calls replaced: what it does around them runs for real."""
    seen: list[Path] = []
    real = evaluate_tensorrt.preprocess

    def preprocess(path, spec):
        seen.append(path)
        return real(path, spec)

    monkeypatch.setattr(evaluate_tensorrt, "preprocess", preprocess)
    monkeypatch.setattr(
        evaluate_tensorrt.trt_runtime,
        "import_tensorrt",
        lambda: type("trt", (), {"__version__": "10.3.0"}),
    )
    monkeypatch.setattr(evaluate_tensorrt.trt_runtime, "Cuda", lambda: None)
    monkeypatch.setattr(evaluate_tensorrt.trt_runtime, "EngineRunner", _FakeRunner)
    return seen


def test_evaluation_scores_a_seeded_subset_and_records_the_seed(tmp_path, fake_tensorrt):
    bundle = _fake_bundle(tmp_path / "bundle", {"num_classes": 10, "weights": {"kind": "file"}})
    images = _class_folders(tmp_path / "eval", 10, per_class=3)
    out = tmp_path / "eval.json"
    argv = ["--bundle", str(bundle), "--images", str(images), "--json", str(out)]
    assert evaluate_tensorrt.main([*argv, "--limit", "8", "--seed", "4"]) == 0
    document = json.loads(out.read_text())
    assert document["data"]["evaluation"] == {
        "source": str(images),
        "images": 8,
        "images_found": 30,
        "seed": 4,
        "labelled": True,
    }
    found = evaluate_tensorrt.labelled_images(images)
    assert fake_tensorrt == [path for path, _ in evaluate_tensorrt.subset(found, 8, seed=4)]
    assert len({path.parent for path in fake_tensorrt}) > 3  # drawn across the classes
    (row,) = document["rows"]
    assert row["accuracy"]["top1"] == 100.0 and row["accuracy"]["images"] == 8


def test_merged_results_record_the_evaluations_seed(tmp_path, fake_tensorrt):
    bundle = _fake_bundle(tmp_path / "bundle", {"num_classes": 10, "weights": {"kind": "file"}})
    images = _class_folders(tmp_path / "eval", 10, per_class=1)
    results = tmp_path / "results.json"
    build_data = {"calibration": {"sha256": "abc"}, "evaluation": {"source": "build's own"}}
    results.write_text(json.dumps({"data": build_data, "rows": [{"variant": "fp32"}]}))
    argv = ["--bundle", str(bundle), "--images", str(images), "--results", str(results)]
    assert evaluate_tensorrt.main([*argv, "--limit", "4"]) == 0
    document = json.loads(results.read_text())
    assert document["data"]["calibration"] == {"sha256": "abc"}
    assert document["data"]["evaluation"]["seed"] == 0
    assert document["data"]["evaluation"]["images"] == 4
    assert document["rows"][0]["accuracy"]["images"] == 4


@pytest.mark.parametrize("classes", [37, 10])
def test_evaluation_checks_the_labels_before_tensorrt(tmp_path, classes):
    """The audit's case (10 class folders, a 37-class model), run as on the device: one error
    line and a hint, exit 1, before TensorRT; 10 classes pass on to TensorRT."""
    if HAS_TENSORRT and classes == 10:
        pytest.skip("TensorRT is installed: the script would run")
    bundle = _fake_bundle(tmp_path / "bundle", {"num_classes": classes, "weights": {"kind": "x"}})
    images = _class_folders(tmp_path / "eval", 10, per_class=1)
    script = Path(evaluate_tensorrt.__file__)
    proc = subprocess.run(
        [sys.executable, str(script), "--bundle", str(bundle), "--images", str(images)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    if classes == 37:
        assert "among the 10 present" in proc.stderr and "a model of 37 classes" in proc.stderr
        assert "\n  hint: Give the class indices in a labels file" in proc.stderr
    else:
        assert trt_runtime.NOT_INSTALLED in proc.stderr, proc.stderr


def test_the_engines_output_gives_the_classes_where_the_manifest_does_not(tmp_path, fake_tensorrt):
    bundle = _fake_bundle(tmp_path / "bundle", {"weights": {"kind": "file"}})
    images = _class_folders(tmp_path / "eval", 6, per_class=1)
    _FakeRunner.classes = 37
    try:
        with pytest.raises(common.ScriptError, match="among the 6 present"):
            evaluate_tensorrt.main(["--bundle", str(bundle), "--images", str(images)])
    finally:
        _FakeRunner.classes = 10


def test_seed_and_limit_are_options_of_whole_numbers(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        evaluate_tensorrt.main(["--bundle", ".", "--images", str(tmp_path), "--seed", "-1"])
    assert err.value.code == 2 and "--seed: must be at least 0" in capsys.readouterr().err
