"""On-device scripts: standalone (stdlib, numpy, runtime), measure, refuse damaged bundles."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgeresnet.bundle import add_scripts, write_manifest
from edgeresnet.config import ExportOptions
from edgeresnet.export import export_onnx
from edgeresnet.models import build_model
from edgeresnet.ondevice import bench_onnxruntime, common

ONDEVICE = Path(common.__file__).parent
# PIL only for decoding images in evaluate_tensorrt.py.
ALLOWED = {"numpy", "onnxruntime", "tensorrt", "openvino", "PIL", "common", "__future__"}


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
    (row,) = doc["rows"]
    assert row["bench"]["latency"]["batch"] == 1 and row["bench"]["threads"] == 1
    assert row["bench"]["precision_executed"]["label"] == "fp32"
    from edgeresnet.report.schema import load_results, rows_of

    assert rows_of(load_results(out), "device.json")[0].p50_ms > 0


def test_damaged_bundle_is_refused(bundle, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    with open(damaged / "model.fp32.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    proc = run_script(damaged)
    assert proc.returncode != 0
    assert "does not match its sha256" in proc.stderr
