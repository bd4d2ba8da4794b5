"""Tests for edgeresnet.models: architectures, registry, weight loading, counting."""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from edgeresnet import models
from edgeresnet.checkpoints import _corrupt
from edgeresnet.errors import ConfigError, UsageError, WeightsError
from edgeresnet.models import (
    ARCHITECTURES,
    RANDOM_INIT,
    WEIGHTS,
    LoadedModel,
    build_model,
    count_macs,
    count_parameters,
    detect_architecture,
    load_model,
)

TINY = 8  # base width for fast models: channels 8, 16, 32, 64 (x expansion)
EXPECTED_BLOCKS = {
    "resnet18": ("BasicBlock", [2, 2, 2, 2]),
    "resnet34": ("BasicBlock", [3, 4, 6, 3]),
    "resnet50": ("Bottleneck", [3, 4, 6, 3]),
    "resnet101": ("Bottleneck", [3, 4, 23, 3]),
    "resnet152": ("Bottleneck", [3, 8, 36, 3]),
}
# Key names taken from torchvision.models.resnet50().state_dict().
TORCHVISION_RESNET50_KEYS = {
    "conv1.weight",
    "bn1.weight",
    "bn1.bias",
    "bn1.running_mean",
    "bn1.running_var",
    "bn1.num_batches_tracked",
    "layer1.0.conv1.weight",
    "layer1.0.bn1.weight",
    "layer1.0.conv2.weight",
    "layer1.0.conv3.weight",
    "layer1.0.bn3.running_mean",
    "layer1.0.downsample.0.weight",
    "layer1.0.downsample.1.weight",
    "layer1.0.downsample.1.num_batches_tracked",
    "layer2.0.downsample.0.weight",
    "layer2.3.conv3.weight",
    "layer3.5.bn2.bias",
    "layer4.0.downsample.1.running_var",
    "layer4.2.conv3.weight",
    "layer4.2.bn3.running_var",
    "fc.weight",
    "fc.bias",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny convs on a busy machine: OpenMP threads spin against each other (seconds, not ms).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def resnet50() -> torch.nn.Module:
    """One full-width ResNet-50 shared by the tests that only read it."""
    return build_model("resnet50").eval()


def _tiny_state_dict(arch: str, num_classes: int = 10) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return build_model(arch, num_classes=num_classes, width=TINY).state_dict()


def test_architectures_are_the_torchvision_ones() -> None:
    got = {name: (block.__name__, layers) for name, (block, layers) in ARCHITECTURES.items()}
    assert got == EXPECTED_BLOCKS


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_builds_runs_and_round_trips(arch: str) -> None:
    assert arch in EXPECTED_BLOCKS, f"{arch} is registered but not covered by these tests"
    model = build_model(arch, num_classes=7, width=TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    expansion = 4 if EXPECTED_BLOCKS[arch][0] == "Bottleneck" else 1
    assert model.fc.in_features == TINY * 8 * expansion
    assert detect_architecture(model.state_dict()) == (arch, 7, TINY)
    assert set(WEIGHTS[arch]) >= {"IMAGENET1K_V1"}


def test_resnet50_full_width_forward(resnet50: torch.nn.Module) -> None:
    with torch.no_grad():
        out = resnet50(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_parameter_counts_equal_torchvision(resnet50: torch.nn.Module) -> None:
    assert count_parameters(build_model("resnet18")) == 11689512
    assert count_parameters(resnet50) == 25557032
    for arch, params in [("resnet18", 11689512), ("resnet50", 25557032)]:
        assert WEIGHTS[arch]["IMAGENET1K_V1"].params == params


def test_resnet50_state_dict_keys_match_torchvision(resnet50: torch.nn.Module) -> None:
    sd = resnet50.state_dict()
    assert len(sd) == 320
    assert TORCHVISION_RESNET50_KEYS <= set(sd)
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert sd["fc.weight"].shape == (1000, 2048)
    # v1.5: the stride sits on the 3x3 conv, not on the first 1x1.
    block = resnet50.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)


def test_kaiming_init_like_torchvision(resnet50: torch.nn.Module) -> None:
    model = build_model("resnet18", width=TINY)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    w = resnet50.layer4[0].conv2.weight  # fan_out = 512 * 9
    assert abs(w.std().item() - (2 / (512 * 9)) ** 0.5) < 2e-3


def test_unknown_architecture_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        build_model("resnet42")
    assert all(name in str(err.value) for name in ARCHITECTURES)
    with pytest.raises(ConfigError):
        load_model("vgg16", "random")


def test_detect_architecture_rejects_non_resnet() -> None:
    with pytest.raises(WeightsError):
        detect_architecture({"weight": torch.zeros(3, 3)})
    sd = _tiny_state_dict("resnet18")
    for key in [k for k in sd if k.startswith("layer4.1.")]:
        del sd[key]  # a BasicBlock net with [2, 2, 2, 1] blocks is not a known ResNet
    with pytest.raises(WeightsError, match="Not a known ResNet"):
        detect_architecture(sd)


def test_registry_matches_torchvision_metadata() -> None:
    assert {a: sorted(v) for a, v in WEIGHTS.items()} == {
        "resnet18": ["IMAGENET1K_V1"],
        "resnet34": ["IMAGENET1K_V1"],
        "resnet50": ["IMAGENET1K_V1", "IMAGENET1K_V2"],
        "resnet101": ["IMAGENET1K_V1", "IMAGENET1K_V2"],
        "resnet152": ["IMAGENET1K_V1", "IMAGENET1K_V2"],
    }
    v1, v2 = WEIGHTS["resnet50"]["IMAGENET1K_V1"], WEIGHTS["resnet50"]["IMAGENET1K_V2"]
    assert v1.url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert (v1.top1, v1.top5, v1.gflops, v1.file_size_mb) == (76.130, 92.862, 4.089, 97.781)
    assert (v1.resize_size, v1.crop_size, v2.resize_size, v2.crop_size) == (256, 224, 232, 224)
    assert v2.url.endswith("resnet50-11ad3fa6.pth") and v2.top1 == 80.858
    for versions in WEIGHTS.values():
        for info in versions.values():
            assert info.url.endswith(f"/{info.arch}-{info.sha256_prefix}.pth")
            assert len(info.sha256_prefix) == 8
    with pytest.raises(AttributeError):
        v1.top1 = 0.0  # type: ignore[misc]


# --------------------------------------------------------------------------------- from files


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "module_prefix"])
def test_load_model_from_file(tmp_path: Path, layout: str) -> None:
    sd = _tiny_state_dict("resnet34", num_classes=5)
    obj: object = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model": {"model": sd, "optimizer": {"lr": torch.tensor(0.1)}},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
    }[layout]
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    loaded = load_model("resnet34", str(path))
    assert isinstance(loaded, LoadedModel)
    assert (loaded.arch, loaded.num_classes, loaded.width) == ("resnet34", 5, TINY)
    assert not loaded.model.training and loaded.info is None
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, sd[key])
    prov = loaded.weights
    assert prov["kind"] == "file" and prov["name"] == "w.pth"
    assert len(prov["sha256"]) == 64
    json.dumps(prov)


def test_file_with_other_architecture_names_it(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(_tiny_state_dict("resnet18"), path)
    with pytest.raises(WeightsError) as err:
        load_model("resnet50", str(path))
    assert "holds resnet18 weights, not resnet50" in str(err.value)
    assert err.value.hint == "Pass --model resnet18."


def test_file_num_classes_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(_tiny_state_dict("resnet18", num_classes=10), path)
    assert load_model("resnet18", str(path), num_classes=10).num_classes == 10
    with pytest.raises(WeightsError, match="10-class"):
        load_model("resnet18", str(path), num_classes=1000)


def test_file_with_wrong_shapes_fails_strict_load(tmp_path: Path) -> None:
    sd = _tiny_state_dict("resnet18")
    sd["layer2.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match="does not fit"):
        load_model("resnet18", str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        load_model("resnet18", str(tmp_path / "nope.pth"))


class _Payload:
    """Unpickling this calls ``func(*args)``: the classic malicious-checkpoint trick."""

    def __init__(self, func: object, args: tuple[object, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, _Payload]:
    return {
        "os.system": _Payload(os.system, (f"touch {shlex.quote(str(marker))}",)),
        "open": _Payload(open, (str(marker), "w")),
    }


@pytest.mark.parametrize("payload", ["os.system", "open"])
@pytest.mark.parametrize("fmt", ["torch.save", "raw-pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, payload: str, fmt: str) -> None:
    if payload == "os.system" and os.name != "posix":
        pytest.skip("touch needs a POSIX shell")
    # The payload is live: plain pickle.loads would run it.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_payloads(control)[payload]))
    assert control.exists()

    marker = tmp_path / "PWNED"
    evil = {"conv1.weight": torch.zeros(1), "fc.weight": _payloads(marker)[payload]}
    path = tmp_path / "evil.pth"
    if fmt == "torch.save":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(WeightsError) as err:
        load_model("resnet18", str(path))
    assert not marker.exists()
    assert "refused" in str(err.value) and "execute code" in str(err.value)
    # torch's advice to allow-list the object is not passed on: it cannot be taken from the CLI.
    assert "add_safe_globals" not in str(err.value) and ".." not in err.value.message


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file(tmp_path: Path, legacy: bool) -> None:
    path = tmp_path / "cut.pth"
    torch.save(_tiny_state_dict("resnet18"), path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as err:
        load_model("resnet18", str(path))
    assert str(path) in str(err.value) and "corrupt" in str(err.value)


def test_file_that_is_not_a_resnet(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError, match="Not a ResNet") as err:
        load_model("resnet18", str(path))
    assert str(path) in str(err.value)


def test_non_state_dict_file(tmp_path: Path) -> None:
    path = tmp_path / "t.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(WeightsError, match="does not hold a state_dict"):
        load_model("resnet18", str(path))


def test_weights_with_nan_are_refused_at_load(tmp_path: Path) -> None:
    state = build_model("resnet18", num_classes=10, width=8).state_dict()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "diverged.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="layer1.0.conv1.weight holds NaN") as err:
        load_model("resnet18", str(path))
    assert err.value.hint


def test_weights_with_a_negative_running_var_are_refused_at_load(tmp_path: Path) -> None:
    # BatchNorm would take the square root of var + eps < 0: the model would output NaN.
    state = build_model("resnet18", num_classes=10, width=8).state_dict()
    state["layer2.0.bn1.running_var"][3] = -0.5
    path = tmp_path / "edited.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="layer2.0.bn1.running_var holds negative") as err:
        load_model("resnet18", str(path))
    assert str(path) in err.value.message and "never negative" in err.value.message
    assert err.value.hint
    state["layer2.0.bn1.running_var"][3] = 0.0  # zero is a variance (eps keeps it finite)
    torch.save(state, path)
    assert load_model("resnet18", str(path)).num_classes == 10


def test_torch_load_always_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "load", spy)
    path = tmp_path / "w.pth"
    torch.save(_tiny_state_dict("resnet18"), path)
    load_model("resnet18", str(path))
    assert calls and all(c.get("weights_only") is True for c in calls)


# ------------------------------------------------------------------------------- imagenet


def test_imagenet_offline_gives_actionable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args: object, **kwargs: object) -> object:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as err:
        load_model("resnet50", "imagenet", progress=False)
    assert "could not be downloaded or verified" in str(err.value)
    assert "--weights random" in err.value.hint and "--weights FILE" in err.value.hint
    assert "resnet50-0676ba61.pth" in err.value.hint


def test_imagenet_hash_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def bad_hash(*args: object, **kwargs: object) -> object:
        raise RuntimeError('invalid hash value (expected "0676ba61", got "deadbeef")')

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", bad_hash)
    with pytest.raises(WeightsError, match="could not be downloaded or verified"):
        load_model("resnet50", progress=False)


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("imagenet", "IMAGENET1K_V1"),
        ("imagenet:V2", "IMAGENET1K_V2"),
        ("IMAGENET1K_V2", "IMAGENET1K_V2"),
    ],
)
def test_imagenet_load_and_provenance(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resnet50: torch.nn.Module,
    spec: str,
    name: str,
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    published = resnet50.state_dict()
    seen: dict[str, object] = {}

    def fake(url: str, **kwargs: object) -> dict[str, torch.Tensor]:
        seen.update(kwargs, url=url)
        return published

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake)
    loaded = load_model("resnet50", spec, progress=False)
    info = WEIGHTS["resnet50"][name]
    assert seen == {
        "url": info.url,
        "progress": False,
        "check_hash": True,
        "weights_only": True,
        "map_location": "cpu",
    }
    assert loaded.info == info and not loaded.model.training
    assert torch.equal(loaded.model.fc.weight, published["fc.weight"])
    prov = loaded.weights
    assert (prov["kind"], prov["name"], prov["url"]) == ("imagenet", name, info.url)
    assert (prov["top1"], prov["top5"]) == (info.top1, info.top5)
    json.dumps(prov)


def test_imagenet_corrupt_cache_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the published file")
    sd = build_model("resnet18").state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: sd)
    with pytest.raises(WeightsError, match="sha256 prefix f37072fd") as err:
        load_model("resnet18", progress=False)
    assert str(cached) in err.value.hint


def test_imagenet_unknown_version_lists_available() -> None:
    with pytest.raises(WeightsError) as err:
        load_model("resnet18", "imagenet:V2")
    assert "IMAGENET1K_V1" in err.value.hint
    with pytest.raises(WeightsError):
        load_model("resnet50", "IMAGENET1K_V9")


# --------------------------------------------------------------------------------- random


def test_random_weights_are_deterministic() -> None:
    a = load_model("resnet18", "random", seed=3)
    b = load_model("resnet18", "random:3")
    c = load_model("resnet18", "random:4")
    assert a.weights == b.weights and a.weights["seed"] == 3 and a.weights["kind"] == "random"
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.weight"], sc["conv1.weight"])
    assert a.info is None and not a.model.training and a.num_classes == 1000
    assert load_model("resnet18", "random", num_classes=3).model.fc.out_features == 3
    with pytest.raises(UsageError, match="Bad random seed"):
        load_model("resnet18", "random:x")


def test_random_weights_run_the_graph_a_trained_model_runs(tmp_path: Path) -> None:
    """Identity BatchNorm folds to zero conv biases, which OpenVINO drops: a random model would
    run one Add fewer per conv than a trained ResNet and time faster than one."""
    import openvino as ov

    from edgeresnet.config import ExportOptions
    from edgeresnet.export import export_onnx

    model = load_model("resnet18", "random:5").model
    export_onnx(model, tmp_path / "m.onnx", input_size=64, options=ExportOptions())
    ops = [op.get_type_name() for op in ov.convert_model(tmp_path / "m.onnx").get_ops()]
    residual_adds = 8  # resnet18: one per BasicBlock
    assert ops.count("Add") == ops.count("Convolution") + residual_adds + 1  # + the fc bias
    assert "init" in load_model("resnet18", "random:5").weights


def test_random_does_not_disturb_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model("resnet18", "random:9")
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------------------- counting


def test_count_macs_resnet50_matches_torchvision_ops(resnet50: torch.nn.Module) -> None:
    resnet50.train()
    try:
        macs = count_macs(resnet50, 224)
        assert resnet50.training  # mode restored
    finally:
        resnet50.eval()
    assert abs(macs - 4.089e9) / 4.089e9 < 0.01
    assert resnet50.conv1.weight.device.type == "cpu"  # counted on meta, model untouched


def test_count_macs_small_and_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = build_model("resnet18", width=TINY)
    expected = count_macs(tiny, 32)
    assert expected > 0
    # Without meta support (e.g. custom ops) it runs the real model and counts the same.
    monkeypatch.setattr(torch.func, "functional_call", _raise_not_implemented)
    assert count_macs(tiny, 32) == expected


def _raise_not_implemented(*args: object, **kwargs: object) -> object:
    raise NotImplementedError("no meta kernel")


def test_public_names_exist() -> None:
    for name in models.__all__:
        assert hasattr(models, name)


def test_weights_with_no_classes_are_refused_naming_the_file(tmp_path: Path) -> None:
    state = build_model("resnet18", num_classes=10, width=8).state_dict()
    state["fc.weight"] = state["fc.weight"][:0]
    state["fc.bias"] = state["fc.bias"][:0]
    path = tmp_path / "none.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="fc.weight has shape \\[0, 64\\]") as err:
        load_model("resnet18", str(path))
    assert str(path) in err.value.message and err.value.hint


def test_empty_weights_option_says_what_it_takes() -> None:
    with pytest.raises(UsageError, match="--weights is empty") as err:
        load_model("resnet18", "  ")
    assert "random[:SEED]" in err.value.hint


# ---------------------------------------------------------------- training checkpoints, formats


def _sgd_state(sd: dict[str, torch.Tensor]) -> dict[str, object]:
    """A real optimizer's state_dict (momentum buffers after one step), as checkpoints hold."""
    params = [torch.nn.Parameter(v.clone()) for v in sd.values() if v.is_floating_point()]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    sum(p.sum() for p in params).backward()
    opt.step()
    return opt.state_dict()


def _checkpoint(layout: str, sd: dict[str, torch.Tensor]) -> object:
    """``sd`` saved the way a training framework saves it."""
    if layout == "lightning":
        return {
            "epoch": 4,
            "global_step": 120,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"model.{k}": v for k, v in sd.items()},
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"ready": 5}}}},
            "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_score": None}},
            "optimizer_states": [_sgd_state(sd)],
            "lr_schedulers": [],
        }
    if layout == "tutorial":  # the PyTorch tutorial "Saving and loading a general checkpoint"
        return {
            "epoch": 5,
            "model_state_dict": sd,
            "optimizer_state_dict": _sgd_state(sd),
            "loss": 0.25,
        }
    if layout == "net":
        return {"net": sd, "acc": 91.5, "epoch": 30}
    if layout == "ddp_lightning_prefix":
        return {f"module.model.{k}": v for k, v in sd.items()}
    if layout == "backbone_prefix":
        return {"state_dict": {f"net.backbone.{k}": v for k, v in sd.items()}}
    raise AssertionError(layout)


@pytest.mark.parametrize(
    ("layout", "entry"),
    [
        ("lightning", "state_dict"),
        ("tutorial", "model_state_dict"),
        ("net", "net"),
        ("ddp_lightning_prefix", None),
        ("backbone_prefix", "state_dict"),
    ],
)
def test_training_checkpoints_load(tmp_path: Path, layout: str, entry: str | None) -> None:
    sd = _tiny_state_dict("resnet18", num_classes=4)
    path = tmp_path / "last.ckpt"
    torch.save(_checkpoint(layout, sd), path)
    loaded = load_model("resnet18", str(path))
    assert (loaded.arch, loaded.num_classes, loaded.width) == ("resnet18", 4, TINY)
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, sd[key])
    assert loaded.weights.get("entry") == entry
    assert "ema_unused" not in loaded.weights and "dtype" not in loaded.weights
    json.dumps(loaded.weights)


@pytest.mark.parametrize(
    ("plain", "ema", "ema_prefix"),
    [("state_dict", "state_dict_ema", ""), ("model", "model_ema", "module.")],
)
def test_checkpoint_with_an_ema_copy_uses_the_plain_one_and_says_so(
    tmp_path: Path, plain: str, ema: str, ema_prefix: str
) -> None:
    # timm saves state_dict + state_dict_ema; torchvision's references model + model_ema (an
    # AveragedModel: "module." keys and n_averaged).
    sd = _tiny_state_dict("resnet18")
    averaged = {f"{ema_prefix}{k}": v * 0.5 if v.is_floating_point() else v for k, v in sd.items()}
    if ema_prefix:
        averaged["n_averaged"] = torch.tensor(7)
    path = tmp_path / "checkpoint.pth"
    torch.save({ema: averaged, plain: sd, "epoch": 9}, path)
    loaded = load_model("resnet18", str(path))
    assert torch.equal(loaded.model.conv1.weight, sd["conv1.weight"])
    assert (loaded.weights["entry"], loaded.weights["ema_unused"]) == (plain, ema)
    assert loaded.origin["entry"] == plain  # what a pruned model's spec and the report carry


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_load_as_float32_and_say_their_dtype(
    tmp_path: Path, dtype: torch.dtype
) -> None:
    sd = {
        k: v.to(dtype) if v.is_floating_point() else v
        for k, v in _tiny_state_dict("resnet18").items()
    }
    path = tmp_path / "half.pth"
    torch.save({"state_dict": sd}, path)
    loaded = load_model("resnet18", str(path))
    assert loaded.model.conv1.weight.dtype == torch.float32
    assert torch.equal(loaded.model.conv1.weight, sd["conv1.weight"].float())
    assert loaded.weights["dtype"] == str(dtype).removeprefix("torch.")
    assert loaded.weights["entry"] == "state_dict"


@pytest.mark.parametrize("checkpoint", [{"weights": "sd", "epoch": 3}, {"model_ema": "sd"}])
def test_checkpoint_with_the_model_under_another_name_says_which(
    tmp_path: Path, checkpoint: dict[str, object]
) -> None:
    sd = _tiny_state_dict("resnet18")
    path = tmp_path / "c.pth"
    torch.save({k: sd if v == "sd" else v for k, v in checkpoint.items()}, path)
    with pytest.raises(WeightsError, match="is a checkpoint, not a state_dict") as err:
        load_model("resnet18", str(path))
    name = next(k for k, v in checkpoint.items() if v == "sd")
    assert repr(name) in err.value.message and "'model_state_dict'" in err.value.message
    assert f"torch.save(checkpoint[{name!r}]" in err.value.hint


def test_a_checkpoint_without_weights_is_not_told_to_save_its_optimizer(tmp_path: Path) -> None:
    path = tmp_path / "c.pth"
    torch.save({"optimizer": {"state": {}, "param_groups": []}, "epoch": 1}, path)
    with pytest.raises(WeightsError, match="is a checkpoint, not a state_dict") as err:
        load_model("resnet18", str(path))
    assert "checkpoint['optimizer']" not in err.value.hint
    assert "model.state_dict()" in err.value.hint


def test_a_weights_file_named_like_torchvisions_weights_is_the_file(
    tmp_path: Path, monkeypatch
) -> None:
    torch.save(_tiny_state_dict("resnet18"), tmp_path / "imagenet1k_ft.pth")
    monkeypatch.chdir(tmp_path)
    loaded = load_model("resnet18", "imagenet1k_ft.pth")
    assert loaded.weights["kind"] == "file" and loaded.weights["name"] == "imagenet1k_ft.pth"


def test_an_empty_or_cut_short_weights_file_is_said_so_in_whole_words(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match=r"empty\.pth is empty \(0 bytes\)"):
        load_model("resnet18", str(empty))
    whole = tmp_path / "whole.pth"
    torch.save(_tiny_state_dict("resnet18"), whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_model("resnet18", str(cut))
    long = _corrupt(cut, RuntimeError("a long reason " * 40))  # as miniz's, 287 characters
    assert re.search(r"\(RuntimeError: (a long reason )+\.\.\.\)\.$", long.message), long.message


def test_a_folder_as_weights_points_at_the_spec_inside_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="is a folder; it takes a file") as err:
        load_model("resnet18", str(tmp_path))
    assert "state_dict file inside it" in err.value.hint
    (tmp_path / "model.channels.json").write_text("{}")
    with pytest.raises(WeightsError) as err:
        load_model("resnet18", str(tmp_path))
    assert f"--weights {tmp_path / 'model.channels.json'}" in err.value.hint


def test_prefixed_keys_that_are_not_a_resnet_name_the_prefix(tmp_path: Path) -> None:
    lightning = {
        "state_dict": {"model.encoder.weight": torch.zeros(2, 2), "model.head.bias": torch.zeros(2)}
    }
    path = tmp_path / "other.ckpt"
    torch.save(lightning, path)
    with pytest.raises(WeightsError, match="Not a ResNet state_dict") as err:
        load_model("resnet18", str(path))
    assert "every key starts with 'model.'" in err.value.message
    assert "model.encoder.weight" in err.value.message and str(path) in err.value.message


@pytest.mark.parametrize("others", ["teacher", "criterion"])
def test_a_resnet_among_other_keys_is_named_not_guessed(tmp_path: Path, others: str) -> None:
    # Distillation (student + teacher), or a loss with class weights (a buffer of its own).
    sd = _tiny_state_dict("resnet18")
    state = {f"student.{k}": v for k, v in sd.items()}
    if others == "teacher":
        state.update({f"teacher.{k}": v for k, v in sd.items()})
    else:
        state["criterion.weight"] = torch.ones(10)
    path = tmp_path / "mixed.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightsError, match="missing at the top level") as err:
        load_model("resnet18", str(path))
    assert "'student.'" in err.value.message
    assert ("'teacher.'" in err.value.message) == (others == "teacher")
    assert "k.removeprefix('student.')" in err.value.hint


def _greyscale_model() -> torch.nn.Module:
    torch.manual_seed(2)
    model = build_model("resnet18", num_classes=10, width=TINY)
    model.conv1 = torch.nn.Conv2d(1, TINY, kernel_size=7, stride=2, padding=3, bias=False)
    return model.eval()


def test_greyscale_stem_is_refused_with_the_conversion_that_works(tmp_path: Path) -> None:
    grey = _greyscale_model()
    sd = grey.state_dict()
    path = tmp_path / "grey.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match="only 3-channel RGB inputs are supported") as err:
        load_model("resnet18", str(path))
    assert "[8, 1, 7, 7]" in err.value.message and "size mismatch" not in str(err.value)
    recipe = "sd['conv1.weight'] = sd['conv1.weight'].repeat(1, 3, 1, 1) / 3"
    assert recipe in err.value.hint
    exec(recipe, {"sd": sd})  # the hint, as a user would run it
    torch.save(sd, path)
    rgb = load_model("resnet18", str(path)).model
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rgb(image.repeat(1, 3, 1, 1)), grey(image))


def test_a_two_layer_head_is_named_as_unsupported(tmp_path: Path) -> None:
    model = build_model("resnet18", num_classes=10, width=TINY)
    model.fc = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )  # type: ignore[assignment]
    path = tmp_path / "mlp_head.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(WeightsError) as err:
        load_model("resnet18", str(path))
    message = err.value.message
    assert "fc.weight is missing" in message and "fc.0.weight" in message
    assert "fc.2.weight" in message and "single Linear head" in message
    assert "conv1.weight" not in message
    assert "nn.Linear" in err.value.hint


@pytest.mark.parametrize("prefix", ["", "model."])
def test_safetensors_state_dict_loads_without_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    from safetensors.torch import save_file

    sd = _tiny_state_dict("resnet50", num_classes=3)
    path = tmp_path / "model.safetensors"
    save_file({f"{prefix}{k}": v.contiguous() for k, v in sd.items()}, str(path))

    def no_pickle(*args: object, **kwargs: object) -> object:
        raise AssertionError("a safetensors file was read with torch.load")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    loaded = load_model("resnet50", str(path))
    assert (loaded.arch, loaded.num_classes, loaded.width) == ("resnet50", 3, TINY)
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, sd[key])
    assert loaded.weights["kind"] == "file" and loaded.weights["name"] == "model.safetensors"
    assert len(loaded.weights["sha256"]) == 64


def test_truncated_safetensors_is_named_corrupt(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "cut.safetensors"
    save_file(_tiny_state_dict("resnet18"), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt") as err:
        load_model("resnet18", str(path))
    assert str(path) in err.value.message


def test_pruned_safetensors_points_to_its_channel_spec(tmp_path: Path) -> None:
    from edgeresnet.prune import channel_spec, load_pruned, save_pruned

    model = build_model("resnet18", num_classes=10, width=TINY)
    spec = channel_spec(
        model,
        arch="resnet18",
        num_classes=10,
        width=TINY,
        preprocess={"resize_size": 36, "crop_size": 32},
        pruned_from={"kind": "random", "name": "random", "seed": 0, "init": RANDOM_INIT},
    )
    spec_path, weights_path = save_pruned(model, spec, tmp_path / "p30")
    with pytest.raises(WeightsError, match="pruned model's weights") as err:
        load_model("resnet18", str(weights_path))
    assert f"--weights {spec_path}" in err.value.hint
    rebuilt, _ = load_pruned(spec_path)  # the channel spec itself still loads
    assert torch.equal(rebuilt.state_dict()["fc.weight"], model.state_dict()["fc.weight"])
