"""OpenVINO target: IR conversion, NNCF INT8, pinned precision, absent devices, bundle script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch

from edgeresnet.backends import Artifact, get_backend
from edgeresnet.backends.openvino import OpenVinoBackend
from edgeresnet.bundle import add_scripts, write_manifest
from edgeresnet.cli import main
from edgeresnet.config import ExportOptions, load_target
from edgeresnet.data import Preprocess, discover
from edgeresnet.errors import BackendUnavailableError, ConfigError
from edgeresnet.evaluate import fidelity
from edgeresnet.export import export_onnx
from edgeresnet.models import build_model
from edgeresnet.ondevice import bench_openvino as script
from edgeresnet.ondevice import common
from edgeresnet.quantize import get_quantizer
from edgeresnet.stages import calibration

SIZE = 32
HAS_BF16 = bool({"avx512_bf16", "amx_bf16"} & set(common.machine_info()["isa"]))
AVAILABLE = ov.Core().available_devices


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, width=8).eval()
    path = tmp_path_factory.mktemp("tiny") / "tiny.fp32.onnx"
    export_onnx(model, path, input_size=SIZE, options=ExportOptions())
    return path


@pytest.fixture(scope="module")
def digit_batches(digits: dict[str, Path]):
    """Calibration as the pipeline hands it over: batch size in, a fresh pass of real images."""
    return calibration(
        discover(digits["train"]).subset(32, seed=0), Preprocess.for_input_size(SIZE)
    )


@pytest.fixture(scope="module")
def built(tiny_onnx, digit_batches, tmp_path_factory) -> dict[str, Artifact]:
    profile = load_target("openvino")
    backend = OpenVinoBackend()
    out = tmp_path_factory.mktemp("ir")
    return {
        p: backend.compile(tiny_onnx, p, out, calibration=digit_batches, profile=profile)
        for p in profile.precisions
    }


def onnx_logits(onnx: Path, x: np.ndarray) -> np.ndarray:
    session = get_backend("onnxruntime").load(Artifact("ref", "fp32", onnx), threads=1)
    return session.run(x)


def bin_size(artifact: Artifact) -> int:
    return artifact.file.with_suffix(".bin").stat().st_size


def compiled(xml: Path, hint: str) -> ov.CompiledModel:
    core = ov.Core()
    config, _ = script.compile_config(core, "CPU", mode="LATENCY", threads=1, hint=hint)
    return script.compile_at(core, xml, "CPU", (1, 3, SIZE, SIZE), config)


def test_fp32_and_fp16_ir_reproduce_the_onnx(built, tiny_onnx, digit_batches):
    fp32, bf16, fp16 = built["fp32"], built["bf16"], built["fp16"]
    assert fp32.file.name == "model.fp32.xml" and bf16.file == fp32.file
    assert fp32.build["compress_to_fp16"] is False and fp16.build["compress_to_fp16"] is True
    assert 0.45 < bin_size(fp16) / bin_size(fp32) < 0.55
    x = next(digit_batches(8))
    reference = onnx_logits(tiny_onnx, x)
    backend = OpenVinoBackend()
    exact = fidelity(reference, backend.load(fp32, threads=1).run(x))
    assert exact["top1_agreement"] == 100.0 and exact["sqnr_db"] > 60.0
    assert fidelity(reference, backend.load(fp16, threads=1).run(x))["sqnr_db"] > 25.0


def test_int8_ir_is_quantized_by_nncf_and_runs_int8(built):
    int8 = built["int8"]
    assert int8.file.name == "model.int8.xml"
    record = int8.build
    assert record["method"] == "nncf.quantize"
    assert record["preset"] == "performance" and record["fast_bias_correction"] is True
    # The profile's 300, cut to the 32 images there are (NNCF would warn otherwise).
    assert record["subset_size"] == 32 and record["calibration_images"] == 32
    assert record["model_type"] is None and record["nncf_version"]
    assert bin_size(int8) < 0.35 * bin_size(built["fp32"])
    executed = script.executed_precision(compiled(int8.file, "f32"))
    assert executed["label"] == "int8"
    # ResNet-18: 17 convolutions on the main path, 3 downsample convolutions, 1 classifier.
    assert executed["layers"] == {"Convolution": {"int8": 20}, "FullyConnected": {"int8": 1}}


def test_excluded_onnx_nodes_stay_float_in_the_int8_ir(tiny_onnx, digit_batches, tmp_path):
    """The accuracy-aware search names ONNX nodes; NNCF must find them in the OpenVINO model."""
    keep = ("/conv1/Conv", "/fc/Gemm")
    artifact = OpenVinoBackend().compile(
        tiny_onnx,
        "int8",
        tmp_path,
        calibration=digit_batches,
        profile=load_target("openvino"),
        exclude=keep,
    )
    assert artifact.build["float_nodes"] == list(keep)
    executed = script.executed_precision(compiled(artifact.file, "f32"))
    assert executed["layers"] == {
        "Convolution": {"fp32": 1, "int8": 19},
        "FullyConnected": {"fp32": 1},
    }


def test_f32_hint_runs_f32_and_bf16_is_its_own_row(built):
    xml = built["fp32"].file
    pinned = script.executed_precision(compiled(xml, "f32"))
    assert pinned["label"] == "fp32"
    as_bf16 = script.executed_precision(compiled(xml, "bf16"))
    unpinned = script.executed_precision(compiled(xml, script.UNPINNED))
    # Without bf16 hardware both run f32: checked either way, never silently skipped.
    assert as_bf16["label"] == ("bf16" if HAS_BF16 else "fp32")
    assert unpinned["label"] == as_bf16["label"], "the trap the f32 pin exists for"
    assert built["bf16"].build["inference_precision_hint"] == "bf16"
    assert built["fp32"].build["inference_precision_hint"] == "f32"


def test_fp16_weights_are_not_taken_for_fp16_arithmetic(built):
    """FP16 weights say "f16" in the runtime graph even where the CPU computes in f32."""
    settled = compiled(built["fp16"].file, "f16")
    executed = script.executed_precision(settled)
    inference = script.properties(settled)["INFERENCE_PRECISION_HINT"]
    assert executed["label"] == {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[inference]
    if inference == "f32":  # the kernels say so too: brgconv_avx2_f32 on an AVX2 CPU
        assert all(kernel.endswith("_f32") for kernel in executed["kernels"])


def test_measure_records_modes_threads_streams_and_version(built):
    result = script.measure(
        built["int8"].file,
        threads=1,
        batch_sizes=[1, 2],
        input_size=SIZE,
        warmup=1,
        min_iterations=3,
        min_seconds=0.01,
    )
    assert result["runtime"] == "openvino" and result["runtime_version"] == script.runtime_version()
    assert result["threads"] == 1 and result["streams"] == 1
    assert result["latency"]["batch"] == 1 and result["latency"]["mode"] == "LATENCY"
    assert [b["batch"] for b in result["per_batch"]] == [1, 2]
    tput = result["throughput"]
    assert tput["mode"] == "THROUGHPUT" and tput["batch"] == 2 and tput["images_per_s"] > 0
    assert result["compiled"]["throughput"]["PERFORMANCE_HINT"] == "THROUGHPUT"
    assert result["precision_executed"]["label"] == "int8"
    assert result["precision_executed"]["inference_precision"] == "f32"


@pytest.mark.skipif("NPU" in AVAILABLE, reason="this machine has an NPU")
def test_absent_device_builds_but_refuses_to_run(tiny_onnx, digit_batches, tmp_path):
    backend = OpenVinoBackend(device="NPU")
    artifact = backend.compile(
        tiny_onnx, "fp16", tmp_path, calibration=digit_batches, profile=load_target("openvino-npu")
    )
    assert artifact.file.is_file() and artifact.file.with_suffix(".bin").is_file()
    with pytest.raises(BackendUnavailableError, match=r"NPU.*available_devices: .*CPU"):
        backend.load(artifact, threads=1)


@pytest.mark.parametrize(
    ("device", "present"),
    [("CPU", True), ("GPU", False), ("AUTO", True), ("HETERO:NPU,CPU", False), ("CPU.0", False)],
)
def test_device_present(device, present):
    assert script.device_present(device, ["CPU"]) is present
    assert script.device_present("GPU", ["CPU", "GPU.0"])


def test_nncf_is_registered_and_ort_quantizer_is_refused(tiny_onnx, digit_batches, tmp_path):
    assert get_quantizer("nncf").__module__ == "edgeresnet.quantize.nncf_ptq"
    profile = load_target("onnx")  # method = "ort-static"
    with pytest.raises(ConfigError, match="quantizes with nncf"):
        OpenVinoBackend().compile(
            tiny_onnx, "int8", tmp_path, calibration=digit_batches, profile=profile
        )


def test_bundle_script_benchmarks_the_ir_where_it_is_copied(built, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    files, variants = [], []
    for precision in ("fp32", "bf16", "int8"):
        artifact = built[precision]
        for part in (artifact.file, artifact.file.with_suffix(".bin")):
            if not (bundle / part.name).exists():
                (bundle / part.name).write_bytes(part.read_bytes())
                files.append(bundle / part.name)
        record = {"file": artifact.file.name, "bytes": artifact.file.stat().st_size}
        variants.append(
            {
                "variant": precision,
                "precision": precision,
                "file": record["file"],
                "artifact": record,
                "reference": None if precision == "fp32" else "fp32",
            }
        )
    scripts = add_scripts(bundle, OpenVinoBackend().ondevice_scripts(load_target("openvino")))
    write_manifest(
        bundle,
        files=files + scripts,
        variants=variants,
        model={"arch": "resnet18", "input_size": SIZE, "weights": {"kind": "random"}},
        data={},
        target={"name": "openvino", "backend": "openvino", "device": "CPU"},
        options={},
    )
    args = ["--threads", "1", "--min-iterations", "3", "--min-seconds", "0.01", "--warmup", "1"]
    command = [sys.executable, str(bundle / "ondevice" / "bench_openvino.py"), "--bundle", "."]
    out = tmp_path / "device.json"
    proc = subprocess.run(
        [*command, *args, "--pairs", "5", "--rounds", "2", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=bundle,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == common.SCHEMA and doc["environment"]["openvino"]
    # --rounds: every IR twice, the second round in reverse order, each row's fastest run.
    timed = [line.split(" (")[0] for line in proc.stdout.splitlines() if "round" in line]
    order = [r["variant"] for r in doc["rows"]]
    assert timed == [f"benchmarking {v}" for v in order + order[::-1]]
    for r in doc["rows"]:
        assert r["bench"]["latency"]["p50_ms"] == min(r["bench"]["rounds"]["p50_ms"])
    executed = {r["variant"]: r["bench"]["precision_executed"]["label"] for r in doc["rows"]}
    assert executed["fp32"] == "fp32" and executed["int8"] == "int8"
    assert executed["bf16"] == ("bf16" if HAS_BF16 else "fp32")
    # --pairs: each variant against its manifest reference, each at its own pinned precision.
    paired = {r["variant"]: r["bench"].get("paired") for r in doc["rows"]}
    assert paired["fp32"] is None
    assert paired["bf16"]["reference"] == "fp32" and paired["bf16"]["pairs"] == 5
    assert paired["bf16"]["precision_hints"] == ["bf16", "f32"]
    assert paired["int8"]["precision_hints"] == ["f32", "f32"]
    if "NPU" not in AVAILABLE:
        proc = subprocess.run(
            [*command, "--device", "NPU"], capture_output=True, text=True, cwd=bundle
        )
        assert proc.returncode != 0 and "NPU is not present" in proc.stderr


def build(*args: str) -> int:
    return main(["build", *args])


def rows(out: Path, target: str) -> dict[str, dict]:
    document = json.loads((out / target / "results.json").read_text())
    return {row["variant"]: row for row in document["rows"]}


@pytest.mark.slow
def test_int8_ir_keeps_digits_accuracy(digits_build, openvino_fast_profile, tmp_path):
    """NNCF INT8 IR of a ResNet trained on real digits: top-1 within 1 point, agreement >= 98 %."""
    out = tmp_path / "out"
    code = build(*digits_build(openvino_fast_profile, out, 300, "--pairs", "10", evaluate=True))
    assert code == 0
    by_variant = rows(out, "openvino")
    fp32, bf16, int8 = by_variant["fp32"], by_variant["bf16"], by_variant["int8"]
    assert fp32["accuracy"]["top1"] > 95.0
    assert abs(fp32["accuracy"]["top1"] - int8["accuracy"]["top1"]) <= 1.0
    assert int8["fidelity"]["top1_agreement"] >= 98.0
    assert int8["build"]["calibration_images"] == 300
    assert fp32["bench"]["precision_executed"]["label"] == "fp32"
    assert int8["bench"]["precision_executed"]["label"] == "int8"
    assert bf16["bench"]["precision_executed"]["label"] == ("bf16" if HAS_BF16 else "fp32")
    assert int8["bench"]["runtime_version"] == script.runtime_version()
    assert int8["bench"]["nncf_version"] == int8["build"]["nncf_version"]
    assert bf16["bench"]["paired"]["precision_hints"] == ["bf16", "f32"]
    assert int8["bench"]["paired"]["reference"] == "fp32"
    bundle = out / "openvino"
    assert (bundle / "model.int8.bin").is_file() and (
        bundle / "ondevice/bench_openvino.py"
    ).is_file()


@pytest.mark.slow
def test_resumed_build_keeps_each_precisions_logits(
    digits_build, openvino_fast_profile, tmp_path, capsys
):
    """bf16 runs the FP32 IR with another hint: its logits are cached apart from fp32's."""
    out = tmp_path / "out"
    args = digits_build(openvino_fast_profile, out, 16, evaluate=60)
    assert build(*args) == 0
    first = {v: r["fidelity"] for v, r in rows(out, "openvino").items()}
    capsys.readouterr()
    assert build(*args) == 0
    assert {"fp32 evaluation", "bf16 evaluation"} <= set(
        json.loads((out / "openvino" / "results.json").read_text())["producer"]["reused_from_cache"]
    )
    assert {v: r["fidelity"] for v, r in rows(out, "openvino").items()} == first
    if HAS_BF16:
        assert first["bf16"]["sqnr_db"] < first["fp32"]["sqnr_db"]


@pytest.mark.slow
@pytest.mark.skipif("NPU" in AVAILABLE, reason="this machine has an NPU")
def test_npu_profile_builds_here_and_says_it_was_not_benchmarked(digits_build, tmp_path):
    out = tmp_path / "out"
    code = build(*digits_build("openvino-npu", out, 16))
    assert code == 0
    by_variant = rows(out, "openvino-npu")
    assert sorted(by_variant) == ["fp16", "int8"]
    for row in by_variant.values():
        assert row["bench"] is None and row["fidelity"] is None
        assert any(n.startswith("not benchmarked here") and "NPU" in n for n in row["notes"])
        assert (out / "openvino-npu" / row["artifact"]["file"]).with_suffix(".bin").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reference-precision-hint", "bf16"], "precision-hint goes with --reference"),
        (["--device", " "], "--device: must name the device, got a blank name"),
    ],
)
def test_bench_script_refuses_options_it_would_ignore(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        script.main(["--model", str(tmp_path / "model.xml"), *extra])
    assert info.value.code == 2 and message in capsys.readouterr().err
