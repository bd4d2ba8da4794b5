"""ResNet-18/34/50/101/152 with torchvision-identical state_dict keys, weights registry, loading.

The modules mirror ``torchvision.models.resnet`` (v1.5: stride on the 3x3 conv of a
Bottleneck) so torchvision's published ``.pth`` files load with ``strict=True``, without
depending on torchvision.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from edgeresnet.checkpoints import common_prefix, read_weights_file, strip_prefix, unwrap_state_dict
from edgeresnet.data import Preprocess
from edgeresnet.errors import ConfigError, UsageError, WeightsError
from edgeresnet.ondevice.common import sha256_file

# Input sizes a model takes: a ResNet halves its input 5 times; beyond 1024 px one image's
# activations alone run to gigabytes.
MIN_INPUT, MAX_INPUT = 32, 1024


__all__ = [
    "ARCHITECTURES",
    "DEFAULT_WEIGHTS",
    "WEIGHTS",
    "BasicBlock",
    "Bottleneck",
    "LoadedModel",
    "ResNet",
    "WeightsInfo",
    "build_model",
    "check_input_size",
    "count_macs",
    "count_parameters",
    "detect_architecture",
    "load_model",
]


def check_input_size(size: int | None) -> None:
    """Refuse an ``--input-size`` a ResNet cannot take (None: the weights' own)."""
    if size is not None and not MIN_INPUT <= size <= MAX_INPUT:
        raise UsageError(
            f"--input-size must be {MIN_INPUT} to {MAX_INPUT} pixels, got {size}.",
            hint=f"A ResNet halves its input 5 times ({MIN_INPUT} leaves 1x1); ImageNet "
            "models take 224.",
        )


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus identity (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # Out-of-place add: friendlier to graph capture (export, FX/PT2E quantization).
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, torchvision v1.5), 1x1 expand (ResNet-50+)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """ResNet whose attribute names (and so state_dict keys) match torchvision's."""

    def __init__(
        self, block: Block, layers: list[int], *, num_classes: int = 1000, width: int = 64
    ) -> None:
        super().__init__()
        if num_classes < 1 or width < 1:
            raise UsageError(f"num_classes and width must be >= 1, got {num_classes}, {width}.")
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


ARCHITECTURES: dict[str, tuple[Block, list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


def canonical_arch(arch: str) -> str:
    name = arch.strip().lower().replace("-", "").replace("_", "")
    if name not in ARCHITECTURES:
        raise ConfigError(
            f"Unknown architecture {arch!r}.",
            hint=f"Choose one of: {', '.join(ARCHITECTURES)}.",
        )
    return name


def build_model(arch: str, *, num_classes: int = 1000, width: int = 64) -> ResNet:
    """Build a randomly initialised ResNet by name (raises ConfigError for unknown names)."""
    block, layers = ARCHITECTURES[canonical_arch(arch)]
    return ResNet(block, layers, num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------- weights registry


@dataclass(frozen=True)
class WeightsInfo:
    """Published metadata of one torchvision ImageNet checkpoint."""

    arch: str
    name: str
    url: str
    sha256_prefix: str
    top1: float
    top5: float
    params: int
    gflops: float  # torchvision's "_ops": really GMACs at 224x224
    file_size_mb: float
    resize_size: int
    crop_size: int


# torchvision's published metadata (torchvision/models/resnet.py, ResNet*_Weights: url hash,
# _metrics acc@1/acc@5, num_params, _ops, _file_size; V1 transforms resize 256, V2 resize 232).
# (arch, version, sha256 prefix, top1, top5, params, gflops, file_size_mb)
_PUBLISHED: list[tuple[str, str, str, float, float, int, float, float]] = [
    ("resnet18", "V1", "f37072fd", 69.758, 89.078, 11689512, 1.814, 44.661),
    ("resnet34", "V1", "b627a593", 73.314, 91.420, 21797672, 3.664, 83.275),
    ("resnet50", "V1", "0676ba61", 76.130, 92.862, 25557032, 4.089, 97.781),
    ("resnet50", "V2", "11ad3fa6", 80.858, 95.434, 25557032, 4.089, 97.79),
    ("resnet101", "V1", "63fe2227", 77.374, 93.546, 44549160, 7.801, 170.511),
    ("resnet101", "V2", "cd907fc2", 81.886, 95.780, 44549160, 7.801, 170.53),
    ("resnet152", "V1", "394f9c45", 78.312, 94.046, 60192808, 11.514, 230.434),
    ("resnet152", "V2", "f82ba261", 82.284, 96.002, 60192808, 11.514, 230.474),
]


def _registry() -> dict[str, dict[str, WeightsInfo]]:
    reg: dict[str, dict[str, WeightsInfo]] = {a: {} for a in ARCHITECTURES}
    for arch, ver, sha, top1, top5, params, gflops, size in _PUBLISHED:
        url = f"https://download.pytorch.org/models/{arch}-{sha}.pth"
        resize = 256 if ver == "V1" else 232
        reg[arch][f"IMAGENET1K_{ver}"] = WeightsInfo(
            arch, f"IMAGENET1K_{ver}", url, sha, top1, top5, params, gflops, size, resize, 224
        )
    return reg


#: arch -> weights name -> info. "imagenet" means IMAGENET1K_V1 for every arch.
WEIGHTS = _registry()
DEFAULT_WEIGHTS = "IMAGENET1K_V1"

_OFFLINE_HINT = (
    "Pass --weights FILE with a local state_dict (e.g. torchvision's {file} copied from another "
    "machine; copied into {cache_dir}/ it also serves --weights imagenet offline), or "
    "--weights random to measure size/speed only (no accuracy)."
)


# --------------------------------------------------------------------- what a state_dict holds


def detect_architecture(state_dict: Mapping[str, Any]) -> tuple[str, int, int]:
    """Infer (arch, num_classes, width) from a ResNet state_dict's keys and shapes."""
    sd = {strip_prefix(k): v for k, v in state_dict.items() if isinstance(k, str)}
    keys = sd.keys()
    conv1, fc = sd.get("conv1.weight"), sd.get("fc.weight")
    if not isinstance(conv1, Tensor) or not isinstance(fc, Tensor):
        raise _not_a_resnet(sd)
    if conv1.dim() != 4 or fc.dim() != 2 or fc.shape[0] < 1 or conv1.shape[0] < 1:
        raise WeightsError(
            f"fc.weight has shape {list(fc.shape)} and conv1.weight {list(conv1.shape)}: a "
            "ResNet has at least one class and one stem channel.",
            hint="The file is damaged or was edited: use the weights as training saved them.",
        )
    _check_rgb_stem(conv1)
    blocks = [0, 0, 0, 0]
    for key in keys:
        m = re.match(r"layer([1-4])\.(\d+)\.", key)
        if m:
            i = int(m.group(1)) - 1
            blocks[i] = max(blocks[i], int(m.group(2)) + 1)
    block = Bottleneck if "layer1.0.conv3.weight" in keys else BasicBlock
    for name, (arch_block, layers) in ARCHITECTURES.items():
        if arch_block is block and layers == blocks:
            return name, int(fc.shape[0]), int(conv1.shape[0])
    raise WeightsError(
        f"Not a known ResNet state_dict: {block.__name__} blocks per layer {blocks}.",
        hint=f"Supported architectures: {', '.join(ARCHITECTURES)}.",
    )


def _not_a_resnet(sd: Mapping[str, Any]) -> WeightsError:
    """Why ``sd`` is not a ResNet state_dict: the key missing, and what is there instead."""
    hint = (
        "Pass the state_dict of a torchvision-style ResNet (keys conv1.weight, layer1.0..., "
        "fc.weight)."
    )
    if "conv1.weight" in sd:
        head = sorted(k for k in sd if k.startswith("fc."))
        if head:
            return WeightsError(
                f"Not a supported ResNet state_dict: fc.weight is missing, the head is "
                f"{_describe_keys(head)}; only a single Linear head fc (fc.weight, fc.bias) is "
                "supported.",
                hint="Give the model torchvision's head, one nn.Linear: model.fc = "
                "nn.Linear(in_features, num_classes); fine-tune it and save model.state_dict().",
            )
        return WeightsError(
            "Not a ResNet state_dict: fc.weight is missing (a backbone without its classifier?).",
            hint="Save the whole model's state_dict, classifier included (keys conv1.weight, "
            "layer1.0..., fc.weight).",
        )
    nested = sorted(
        {
            k.removesuffix("conv1.weight")
            for k in sd
            if k.endswith(".conv1.weight") and not re.search(r"layer\d+\.\d+\.conv1\.weight$", k)
        }
    )
    missing = "conv1.weight is" if "fc.weight" in sd else "conv1.weight and fc.weight are"
    if nested:
        return WeightsError(
            f"Not a ResNet state_dict: {missing} missing at the top level; ResNet keys sit under "
            f"{', '.join(map(repr, nested))}, among {_describe_keys(sd)}.",
            hint="Save the ResNet's own keys from the state_dict sd, without the prefix: "
            "torch.save({k.removeprefix("
            f"{nested[0]!r}): v for k, v in sd.items() if k.startswith({nested[0]!r})}}, "
            "'weights.pth').",
        )
    prefix = common_prefix(sd) if len(sd) > 1 else ""
    found = f"every key starts with {prefix!r}" if prefix else "it holds"
    return WeightsError(
        f"Not a ResNet state_dict: {missing} missing; {found}: {_describe_keys(sd)}.",
        hint=hint,
    )


def _describe_keys(keys: Any) -> str:
    """A few keys by name, or many by their first component past a prefix they all share, with
    counts."""
    keys = list(keys)
    if len(keys) <= 4:
        return ", ".join(keys)
    prefix = common_prefix(keys)
    groups = Counter(prefix + re.sub(r"\..*", ".", k[len(prefix) :]) for k in keys)
    shown = ", ".join(f"{group!r} ({n})" for group, n in groups.most_common(5))
    more = f" and {len(groups) - 5} more" if len(groups) > 5 else ""
    return f"{len(keys)} keys under {shown}{more}"


def _check_rgb_stem(conv1: Tensor) -> None:
    """Refuse a stem for other than 3 input channels, saying how to convert a greyscale one."""
    channels = conv1.shape[1]
    if channels == 3:
        return
    raise WeightsError(
        f"conv1.weight has shape {list(conv1.shape)}: a stem for {channels}-channel inputs; "
        "only 3-channel RGB inputs are supported.",
        hint="Convert the greyscale stem to RGB: repeat its weights over 3 channels and divide "
        "by 3, sd['conv1.weight'] = sd['conv1.weight'].repeat(1, 3, 1, 1) / 3, and save sd "
        "(on a greyscale image read as RGB, 3 equal channels, it computes what the 1-channel stem "
        "did)."
        if channels == 1
        else "edgeresnet feeds the model RGB images: train or fine-tune it with 3 input channels.",
    )


def _load_strict(model: nn.Module, sd: dict[str, Tensor], source: str) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
        raise WeightsError(
            f"{source} does not fit the model: {' '.join(lines[:4])[:600]}",
            hint="Check --model, and that the file holds this model's whole state_dict "
            "(the class count is read from fc.weight).",
        ) from e


# ------------------------------------------------------------------------------------ loading


@dataclass
class LoadedModel:
    """A model in eval mode plus what it is and where its weights came from."""

    model: ResNet
    arch: str
    num_classes: int
    width: int
    weights: dict[str, Any]  # JSON-able provenance
    info: WeightsInfo | None = None

    @property
    def origin(self) -> dict[str, Any]:
        """Provenance of the dense weights: a pruned model's ``pruned_from``, else its own
        (less the local path)."""
        if self.weights.get("pruned_from"):
            return dict(self.weights["pruned_from"])
        return {k: v for k, v in self.weights.items() if k != "path"}

    @property
    def random_weights(self) -> bool:
        """Random weights, or pruned from random ones: accuracy means nothing for either."""
        return self.origin.get("kind") == "random"

    @property
    def own_input_size(self) -> int | None:
        """The input size the weights were made for, where known: published weights', or the
        size a pruned model was pruned and recovered at (its channel spec's)."""
        if self.info is not None:
            return self.info.crop_size
        sizes = self.weights.get("preprocess")
        return sizes["crop_size"] if sizes else None

    def preprocess(self, input_size: int | None) -> Preprocess:
        """The weights' own resize and crop (published weights, a pruned model's channel
        spec) at their input size, else the standard ratio at ``input_size`` (default 224)."""
        if self.info is not None and input_size in (None, self.info.crop_size):
            return Preprocess(crop_size=self.info.crop_size, resize_size=self.info.resize_size)
        sizes = self.weights.get("preprocess")  # a pruned model's channel spec
        if sizes and input_size in (None, sizes["crop_size"]):
            return Preprocess(crop_size=sizes["crop_size"], resize_size=sizes["resize_size"])
        return Preprocess.for_input_size(input_size or 224)


# The fields every weights' provenance has (None where they do not apply).
PROVENANCE_FIELDS = ("kind", "name", "url", "sha256", "seed", "top1", "top5")


def _provenance(kind: str, **fields: Any) -> dict[str, Any]:
    return {**dict.fromkeys(PROVENANCE_FIELDS), "kind": kind, **fields}


def _imagenet_version(arch: str, spec: str) -> WeightsInfo:
    version = spec.split(":", 1)[1] if ":" in spec else spec
    version = version.strip().upper()
    if version in ("", "IMAGENET", "DEFAULT"):
        version = DEFAULT_WEIGHTS
    elif not version.startswith("IMAGENET1K_"):
        version = f"IMAGENET1K_{version}"
    available = WEIGHTS[arch]
    if version not in available:
        raise WeightsError(
            f"{arch} has no ImageNet weights {spec!r}.",
            hint=f"Available for {arch}: {', '.join(available)} (e.g. --weights imagenet:V1).",
        )
    return available[version]


def _load_imagenet(
    arch: str, info: WeightsInfo, num_classes: int | None, progress: bool
) -> LoadedModel:
    if num_classes not in (None, 1000):
        raise WeightsError(
            f"ImageNet weights have 1000 classes, not {num_classes}.",
            hint="Leave the class count unset with ImageNet weights.",
        )
    file = Path(urlparse(info.url).path).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file
    try:
        sd = torch.hub.load_state_dict_from_url(
            info.url, progress=progress, check_hash=True, weights_only=True, map_location="cpu"
        )
    except Exception as e:  # URLError/OSError offline, RuntimeError on hash mismatch or bad cache
        raise WeightsError(
            f"{arch} {info.name} weights could not be downloaded or verified from {info.url} "
            f"(cache: {cached}): {type(e).__name__}: {str(e).strip()[:200]}.",
            hint=_OFFLINE_HINT.format(file=file, cache_dir=cached.parent),
        ) from e
    sha = sha256_file(cached) if cached.is_file() else None
    # torch.hub checks the hash only when downloading; re-check the cached file we used.
    if sha is not None and not sha.startswith(info.sha256_prefix):
        raise WeightsError(
            f"Cached weights {cached} do not match the published sha256 prefix "
            f"{info.sha256_prefix}; the file is corrupt or was replaced.",
            hint=f"Delete {cached} and retry. Or: "
            + _OFFLINE_HINT.format(file=file, cache_dir=cached.parent),
        )
    model = build_model(arch)
    _load_strict(model, unwrap_state_dict(sd, info.url)[0], f"{arch} {info.name} weights")
    prov = _provenance(
        "imagenet", name=info.name, url=info.url, sha256=sha, top1=info.top1, top5=info.top5
    )
    return LoadedModel(model.eval(), arch, 1000, 64, prov, info)


def _load_file(arch: str, path: Path, num_classes: int | None) -> LoadedModel:
    sd, sha, fields = read_weights_file(path)
    try:
        detected, file_classes, width = detect_architecture(sd)
    except WeightsError as e:
        raise WeightsError(f"Weights file {path}: {e.message}", hint=e.hint) from e
    if detected != arch:
        raise WeightsError(
            f"Weights file {path} holds {detected} weights, not {arch}.",
            hint=f"Pass --model {detected}.",
        )
    if num_classes is not None and num_classes != file_classes:
        raise WeightsError(
            f"Weights file {path} has a {file_classes}-class classifier, not {num_classes}.",
            hint=f"Leave the class count unset to use the file's {file_classes} classes.",
        )
    model = build_model(arch, num_classes=file_classes, width=width)
    _load_strict(model, sd, f"Weights file {path}")
    prov = _provenance("file", name=path.name, path=str(path.resolve()), sha256=sha, **fields)
    return LoadedModel(model.eval(), arch, file_classes, width, prov, None)


# How random weights are made; part of their provenance, so a change of recipe is a new model.
RANDOM_INIT = "kaiming-normal convs, random BatchNorm affine and statistics"


def _trained_like_batchnorm(model: nn.Module) -> None:
    """Give every BatchNorm random, non-trivial parameters and statistics, as training does.

    Freshly initialised BatchNorm is the identity (scale 1, shift 0, mean 0, variance 1), which
    folds into convolutions as all-zero biases that OpenVINO and ONNX Runtime then drop: a
    random model would run a lighter graph than any trained ResNet or any pruned variant with
    re-estimated statistics, and look faster than it is. Values stay near the identity, so
    activations keep their scale.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(1 + 0.1 * torch.randn(n))
                m.bias.copy_(0.1 * torch.randn(n))
                m.running_mean.copy_(0.1 * torch.randn(n))
                m.running_var.copy_(1 + 0.1 * torch.rand(n))


def _load_random(arch: str, seed: int, num_classes: int | None) -> LoadedModel:
    classes = 1000 if num_classes is None else num_classes
    # fork_rng: seed deterministically without disturbing the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(arch, num_classes=classes)
        _trained_like_batchnorm(model)
    prov = _provenance("random", name="random", seed=seed, init=RANDOM_INIT)
    return LoadedModel(model.eval(), arch, classes, 64, prov, None)


def load_model(
    arch: str,
    weights: str = "imagenet",
    *,
    num_classes: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> LoadedModel:
    """Build ``arch`` with weights: imagenet[:V1|V2], IMAGENET1K_V*, random[:SEED] or a path."""
    arch = canonical_arch(arch)
    spec = str(weights).strip()
    low = spec.lower()
    if not spec:
        raise UsageError(
            "--weights is empty.",
            hint="Pass imagenet[:V1|V2], random[:SEED], a weights file or a pruned build's "
            "model.channels.json.",
        )
    # torchvision's names (IMAGENET1K_V2) are also a natural file name for a fine-tune
    # (imagenet1k_ft.pth): a file of that name is the file.
    named_file = low.startswith("imagenet1k_") and Path(os.path.expanduser(spec)).is_file()
    if (low == "imagenet" or low.startswith(("imagenet:", "imagenet1k_"))) and not named_file:
        return _load_imagenet(arch, _imagenet_version(arch, spec), num_classes, progress)
    if low == "random" or low.startswith("random:"):
        if ":" in low:
            try:
                seed = int(low.split(":", 1)[1])
            except ValueError:
                seed = -1
        if not 0 <= seed < 2**32:
            raise UsageError(
                f"Bad random seed in {spec!r}.",
                hint=f"Use --weights random:SEED with a whole number SEED from 0 to {2**32 - 1}.",
            )
        return _load_random(arch, seed, num_classes)
    return _load_file(arch, Path(os.path.expanduser(spec)), num_classes)


# ------------------------------------------------------------------------------------ counting


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one forward pass on a 1x3xSxS input (FlopCounterMode FLOPs / 2)."""
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    if input_size < 1:
        raise UsageError(f"input_size must be >= 1, got {input_size}.")
    param = next(model.parameters(), torch.zeros(()))
    shape = (1, 3, input_size, input_size)
    was_training = model.training
    model.eval()
    try:
        # Shapes decide the count, so run on "meta" tensors: no arithmetic, no memory.
        state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        meta = {name: t.to("meta") for name, t in state.items()}
        counter = FlopCounterMode(display=False)
        try:
            with torch.no_grad(), counter:
                functional_call(model, meta, (torch.zeros(shape, device="meta"),))
        except (NotImplementedError, RuntimeError):  # an op without a meta kernel
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                model(torch.zeros(shape, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
