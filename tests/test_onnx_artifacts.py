"""Export and INT8 quantization of a tiny ResNet, checked in ONNX Runtime."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgeresnet.backends import Artifact, get_backend
from edgeresnet.config import ExportOptions, QuantizationOptions
from edgeresnet.errors import ConfigError, ExportError
from edgeresnet.export import export_onnx
from edgeresnet.models import build_model
from edgeresnet.ondevice.bench_onnxruntime import executed_precision

SIZE = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, width=8).eval()
    with torch.no_grad():  # non-trivial BN statistics, as a trained model has
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp("onnx") / "fp32.onnx"
    record = export_onnx(model, path, input_size=SIZE, options=ExportOptions())
    assert (record.exporter, record.opset) == ("torchscript", 17)
    return model, path


def batches(n: int, batch: int = 4):
    rng = np.random.default_rng(1)
    for _ in range(n):
        yield rng.standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32)


def test_fp32_onnx_matches_pytorch_with_dynamic_batch(tiny):
    model, path = tiny
    x = next(batches(1, batch=3))
    session = get_backend("onnxruntime").load(Artifact("fp32", "fp32", path), threads=1)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(x), expected, rtol=1e-4, atol=1e-4)


def test_a_session_of_the_same_bytes_and_settings_gives_the_same_logits(tiny, tmp_path):
    """What lets an evaluation take a copy's logits from the reference instead of running it."""
    path = tiny[1]
    copy, other = tmp_path / "copy.onnx", tmp_path / "other.onnx"
    copy.write_bytes(path.read_bytes())
    model = onnx.load(path)
    weight = next(t for t in model.graph.initializer if t.name == "fc.weight")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 2, weight.name))
    onnx.save(model, other)
    backend = get_backend("onnxruntime")
    reference = backend.load(Artifact("reference", "fp32", path), threads=2)
    same = backend.load(Artifact("fp32", "fp32", copy), threads=2)
    assert same.runs_like(reference)
    x = next(batches(1, batch=8))
    assert np.array_equal(same.run(x), reference.run(x))
    assert not backend.load(Artifact("fp32", "fp32", copy), threads=1).runs_like(reference)
    assert not backend.load(Artifact("fp32", "fp32", other), threads=2).runs_like(reference)
    basic = get_backend("onnxruntime", runtime={"graph_optimization": "basic"})
    assert not basic.load(Artifact("fp32", "fp32", copy), threads=2).runs_like(reference)
    assert not same.runs_like(object())


def test_dynamo_exporter_refuses_opsets_below_18(tiny, tmp_path):
    with pytest.raises(ExportError, match="opset 17"):
        export_onnx(
            tiny[0],
            tmp_path / "m.onnx",
            input_size=SIZE,
            options=ExportOptions(exporter="dynamo", opset=17),
        )


def quantize(src: Path, dst: Path, **options) -> dict:
    from edgeresnet.quantize import get_quantizer

    return get_quantizer("ort-static")(src, dst, batches(4), QuantizationOptions(**options))


def test_int8_is_qdq_with_u8_activations_and_per_channel_s8_weights(tiny, tmp_path):
    _, path = tiny
    out = tmp_path / "int8.onnx"
    record = quantize(path, out)
    assert record["calibration_images"] == 16
    graph = onnx.load(str(out)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quant = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert quant and all(inits[n.input[2]].dtype == np.uint8 for n in quant)
    conv_weights = [
        n
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and inits.get(n.input[0]) is not None
        and inits[n.input[0]].ndim == 4
    ]
    assert len(conv_weights) == 20  # every conv of a ResNet-18
    for node in conv_weights:
        assert inits[node.input[0]].dtype == np.int8
        assert inits[node.input[1]].size == inits[node.input[0]].shape[0]  # one scale per channel
    executed = executed_precision(out, 1, (1, 3, SIZE, SIZE), "all", ["CPUExecutionProvider"])
    assert executed["label"] == "int8"
    assert executed["op_counts"]["QLinearConv"] == 20


@pytest.mark.parametrize("method", ["ort-static", "trt-qdq"])
def test_quantizing_leaves_the_callers_logging_as_it_was(tiny, tmp_path, monkeypatch, method):
    """ORT's quantizer logs on the root logger; it is quieted for the call, not for good."""
    from edgeresnet.quantize import get_quantizer

    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.WARNING)  # whatever ran before in this process
    signed = {"activation_type": "int8"} if method == "trt-qdq" else {}
    get_quantizer(method)(tiny[1], tmp_path / "q.onnx", batches(2), QuantizationOptions(**signed))
    assert root.level == logging.WARNING


def test_fp32_onnx_executes_float_kernels(tiny):
    executed = executed_precision(tiny[1], 1, (1, 3, SIZE, SIZE), "all", ["CPUExecutionProvider"])
    assert executed["label"] == "fp32" and executed["int8_kernels"] == 0


def test_unknown_quantization_setting_is_named(tiny, tmp_path):
    with pytest.raises(ConfigError, match="int4"):
        quantize(tiny[1], tmp_path / "q.onnx", weight_type="int4")


def test_a_quieted_logger_is_restored_and_never_made_louder():
    from edgeresnet.progress import quiet_logger

    logger = logging.getLogger("edgeresnet-test-library")
    logger.setLevel(logging.INFO)
    with quiet_logger("edgeresnet-test-library", logging.WARNING):
        assert logger.level == logging.WARNING
    assert logger.level == logging.INFO
    logger.setLevel(logging.CRITICAL)
    with quiet_logger("edgeresnet-test-library", logging.WARNING):
        assert logger.level == logging.CRITICAL
    assert logger.level == logging.CRITICAL
