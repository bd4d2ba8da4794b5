"""Structured channel pruning with torch-pruning, and pruned models stored as data.

Channels are physically removed (masks would change neither compute nor speed), residual groups
stay consistent through torch-pruning's dependency graph, and the classifier's outputs are never
pruned. The stem, whose output the max pool reads, keeps a multiple of its own (32 by default),
and so do the convolutions added to it (ResNet-18/34's layer1): OpenVINO's INT8 max pool is fast
over multiples of 32 channels on AVX2 and took 13 times as long over 40. A pruned model is saved
as a channel spec (JSON) plus safetensors weights and rebuilt from them without pickle.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeresnet.checkpoints import check_weight_values
from edgeresnet.errors import ConfigError, PruneError, UsageError, WeightsError
from edgeresnet.models import (
    MAX_INPUT,
    MIN_INPUT,
    PROVENANCE_FIELDS,
    RANDOM_INIT,
    build_model,
    canonical_arch,
)
from edgeresnet.ondevice.common import sha256_file

SPEC_FORMAT = "edgeresnet.channels"
SPEC_VERSION = 1
IMPORTANCES = ("l1", "l2", "bn-scale")
_SPEC_HINT = "Use the model.channels.json a pruning run wrote, unedited."
_SPEC_REQUIRED = ("arch", "num_classes", "width", "preprocess", "pruned_from", "layers")
_SPEC_FIELDS = ("format", "version", *_SPEC_REQUIRED, "weights_sha256")
# What a pruning run writes as pruned_from: the dense weights' provenance (less the local path),
# with random weights' init, and a file's checkpoint entry, unused EMA copy and dtype.
_ORIGIN_FIELDS = frozenset((*PROVENANCE_FIELDS, "init", "entry", "ema_unused", "dtype"))
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The channel counts each resized layer takes.
_LAYER_KEYS = {nn.Conv2d: ("in", "out"), nn.BatchNorm2d: ("features",), nn.Linear: ("in", "out")}
STEM = "conv1"


@dataclass(frozen=True)
class PruneOptions:
    ratio: float
    importance: str = "l2"
    round_to: int = 8
    stem_round_to: int = 32

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise UsageError(
                f"Pruning ratio must be in [0, 1), got {self.ratio}.",
                hint="Pass e.g. --prune 0.3 (30 % of the channels of each group removed).",
            )
        if self.importance not in IMPORTANCES:
            raise UsageError(
                f"Unknown pruning importance '{self.importance}'.",
                hint=f"Choose one of: {', '.join(IMPORTANCES)}.",
            )
        if self.round_to < 1:
            raise UsageError(f"Channel rounding must be at least 1, got {self.round_to}.")
        if self.stem_round_to < 0:
            raise UsageError(
                f"Stem channel rounding must be 0 or more, got {self.stem_round_to}.",
                hint="0 rounds the stem like every other layer.",
            )

    @property
    def tag(self) -> str:
        """Variant prefix, e.g. ``p30`` for ratio 0.3 (halves round up: 0.025 is p03)."""
        return f"p{math.floor(self.ratio * 100 + 0.5):02d}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def planned_channels(model: nn.Module, options: PruneOptions) -> dict[str, int]:
    """Each convolution's output channels after pruning, as torch-pruning's local pruning counts
    them: ``int(C * (1 - ratio))`` kept, rounded down to a multiple of ``round_to``; the stem's
    as ``_stem_channels`` gives them."""
    plan = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
            kept = int(channels * (1.0 - options.ratio))
            plan[name] = kept - kept % options.round_to if kept < channels else channels
    stem = _stem_channels(getattr(model, STEM).out_channels, options)
    if stem is not None:
        plan.update(dict.fromkeys(_stem_group(model), stem))
    return plan


def _stem_group(model: nn.Module) -> list[str]:
    """The stem and the convolutions whose outputs are added to its own, which torch-pruning
    prunes as one group: the last convolution of each layer1 block up to the first that has a
    downsample (ResNet-18/34's layer1 has none; ResNet-50's first block has one, so its stem
    is alone)."""
    group = [STEM]
    for index, block in enumerate(getattr(model, "layer1", ())):
        if getattr(block, "downsample", None) is not None:
            break
        last = "conv3" if hasattr(block, "conv3") else "conv2"
        group.append(f"layer1.{index}.{last}")
    return group


def _stem_channels(channels: int, options: PruneOptions) -> int | None:
    """The stem's width under its own multiple (of both roundings, so torch-pruning keeps it),
    or None where it rounds like every other layer (``stem_round_to`` 0, or a stem narrower
    than the multiple). A 64-channel stem in multiples of 32 has only 32 and 64 to choose from,
    so the multiple nearest to ``int(C * (1 - ratio))`` is taken (ties: the wider), never 0:
    rounding down would halve the stem at ratio 0.1."""
    if not options.stem_round_to or not options.ratio:
        return None
    step = math.lcm(options.stem_round_to, options.round_to)
    if channels < step:
        return None
    kept = int(channels * (1.0 - options.ratio))
    return min(max(step * math.floor(kept / step + 0.5), step), channels)


def check_prunable(model: nn.Module, options: PruneOptions) -> None:
    """Refuse a ratio and rounding that would empty a layer (torch-pruning would skip it and
    leave it whole, so the "pruned" model would keep that layer's every channel)."""
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    empty = [n for n, kept in planned_channels(model, options).items() if kept == 0]
    if not empty:
        return
    channels = convs[empty[0]].out_channels
    smallest = min(m.out_channels for m in convs.values())
    fixes = []
    max_ratio = math.floor((1.0 - options.round_to / smallest) * 100) / 100
    if max_ratio >= 0.01:
        fixes.append(f"--prune at most {max_ratio:.2f}")
    max_round = int(smallest * (1.0 - options.ratio))
    if max_round >= 1:
        fixes.append(f"--prune-round-to at most {max_round}")
    kept = int(channels * (1.0 - options.ratio))
    raise UsageError(
        f"--prune {options.ratio:g} in multiples of {options.round_to} channels would leave "
        f"{empty[0]} ({channels} channels) with none"
        + (f": it keeps {kept}, rounded down to 0." if kept else "."),
        hint=f"Pass {' or '.join(fixes)}." if fixes else "Pass a smaller --prune-round-to.",
    )


def prune(model: nn.Module, options: PruneOptions, *, input_size: int) -> nn.Module:
    """A pruned copy of ``model``; the original is left untouched.

    Every convolution is checked against ``planned_channels`` afterwards, so a layer that
    torch-pruning left at another width is an error, never a quietly mislabelled variant.
    """
    import torch_pruning as tp

    check_prunable(model, options)
    plan = planned_channels(model, options)
    pruned = copy.deepcopy(model).eval()
    importance = {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "bn-scale": tp.importance.BNScaleImportance,
    }[options.importance]()
    stem = getattr(pruned, STEM)
    group = [pruned.get_submodule(name) for name in _stem_group(pruned)]
    ignored: list[nn.Module] = [pruned.fc]
    ratios: dict[nn.Module, float] = {}
    if plan[STEM] == stem.out_channels:
        ignored += group
    else:  # the ratio that makes torch-pruning keep int(C * (1 - ratio)) = plan[STEM]
        ratios.update(dict.fromkeys(group, 1.0 - (plan[STEM] + 0.5) / stem.out_channels))
    pruner = tp.pruner.BasePruner(
        pruned,
        torch.zeros(1, 3, input_size, input_size),
        importance=importance,
        pruning_ratio=options.ratio,
        pruning_ratio_dict=ratios,
        ignored_layers=ignored,
        round_to=options.round_to,
    )
    pruner.step()
    for name, module in pruned.named_modules():
        if isinstance(module, nn.Conv2d) and module.out_channels != plan[name]:
            raise PruneError(
                f"torch-pruning left {name} at {module.out_channels} output channels, where "
                f"--prune {options.ratio:g} in multiples of {options.round_to} gives "
                f"{plan[name]}.",
                hint="The model's layers are coupled in a way this pruning does not cover; "
                "try another --prune or --prune-round-to.",
            )
    return pruned


def channel_spec(
    model: nn.Module,
    *,
    arch: str,
    num_classes: int,
    width: int,
    preprocess: dict[str, int],
    pruned_from: dict[str, Any],
) -> dict[str, Any]:
    """Every conv, batch-norm and linear layer's channel counts: enough to rebuild the model;
    with the ``resize_size``/``crop_size`` its weights expect, so a rebuild feeds it the same,
    and ``pruned_from``, the provenance of the dense weights (random ones stay marked random)."""
    layers: dict[str, dict[str, int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            layers[name] = {"in": module.in_channels, "out": module.out_channels}
        elif isinstance(module, nn.BatchNorm2d):
            layers[name] = {"features": module.num_features}
        elif isinstance(module, nn.Linear):
            layers[name] = {"in": module.in_features, "out": module.out_features}
    return {
        "format": SPEC_FORMAT,
        "version": SPEC_VERSION,
        "arch": arch,
        "num_classes": num_classes,
        "width": width,
        "preprocess": preprocess,
        "pruned_from": pruned_from,
        "layers": layers,
    }


def rebuild(spec: Any) -> nn.Module:
    """The architecture a channel spec describes, with fresh weights.

    Nothing is allocated before every size is checked: the dense model the spec was pruned from
    is built as shapes only, and a forward pass on shapes refuses layers that do not fit
    together, naming the layer."""
    if not isinstance(spec, dict):
        raise WeightsError(
            f"A channel spec is a JSON object, and this one is a {type(spec).__name__}.",
            hint=_SPEC_HINT,
        )
    if spec.get("format") != SPEC_FORMAT or spec.get("version") != SPEC_VERSION:
        raise WeightsError(
            f"Not an edgeresnet channel spec (format {spec.get('format')!r}, version "
            f"{spec.get('version')!r}).",
            hint=f"Expected format '{SPEC_FORMAT}' version {SPEC_VERSION}.",
        )
    missing = [k for k in _SPEC_REQUIRED if k not in spec]
    if missing:
        raise WeightsError(f"The channel spec lacks {', '.join(missing)}.", hint=_SPEC_HINT)
    unknown_fields = sorted(set(spec) - set(_SPEC_FIELDS))
    if unknown_fields:
        raise WeightsError(
            f"The channel spec has fields a pruning run does not write: {unknown_fields}.",
            hint=_SPEC_HINT,
        )
    if not isinstance(spec["arch"], str):
        raise WeightsError(
            f"The channel spec's arch {spec['arch']!r} is not a name.", hint=_SPEC_HINT
        )
    if not isinstance(spec["layers"], dict):
        raise WeightsError("The channel spec's layers are not a JSON object.", hint=_SPEC_HINT)
    origin = spec["pruned_from"]
    if not isinstance(origin, dict) or not isinstance(origin.get("kind"), str):
        raise WeightsError(
            "The channel spec's pruned_from does not say which weights it was pruned from "
            "(an object with their kind).",
            hint=_SPEC_HINT,
        )
    problem = _origin_problem(origin)
    if problem:
        raise WeightsError(
            f"The channel spec's pruned_from is not what a pruning run writes: {problem}.",
            hint=_SPEC_HINT + " It says which weights were pruned, and so whether accuracy "
            "means anything.",
        )
    try:
        canonical_arch(spec["arch"])
    except ConfigError as exc:
        raise WeightsError(f"The channel spec's arch: {exc.message}", hint=_SPEC_HINT) from None
    crop = _count(spec["preprocess"], "crop_size", "preprocess")
    resize = _count(spec["preprocess"], "resize_size", "preprocess")
    if not MIN_INPUT <= crop <= MAX_INPUT or resize < crop:
        raise WeightsError(
            f"The channel spec's preprocess (resize {resize}, crop {crop}) is not one a model "
            f"takes: the crop must be {MIN_INPUT} to {MAX_INPUT} pixels, the resize at least it.",
            hint=_SPEC_HINT,
        )
    # The dense model as shapes only (meta tensors): num_classes and width are the spec's word,
    # which may claim any size, so nothing is allocated until every size is checked.
    with torch.device("meta"):
        model = build_model(
            spec["arch"],
            num_classes=_count(spec, "num_classes", "the model"),
            width=_count(spec, "width", "the model"),
        )
        modules = dict(model.named_modules())
        unknown = sorted(set(spec["layers"]) - set(modules))
        if unknown:
            raise WeightsError(
                f"The channel spec names layers {unknown[:3]} that {spec['arch']} does not have.",
                hint=_SPEC_HINT,
            )
        for name, shape in spec["layers"].items():
            resized = _resized(modules[name], shape, name)
            _check_pruned_from(resized, modules[name], name, spec)
            _set_module(model, name, resized)
    sized = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
    missing = [n for n, m in modules.items() if isinstance(m, sized) and n not in spec["layers"]]
    if missing:
        raise WeightsError(
            f"The channel spec lacks layers {missing[:3]} of {spec['arch']}: a pruning run "
            "writes every convolution, batch-norm and linear layer.",
            hint=_SPEC_HINT,
        )
    _check_layers_fit(model.eval(), spec)
    # Every size is checked: allocate the layers the spec describes, with fresh weights.
    model = model.to_empty(device="cpu")
    for module in model.modules():
        if isinstance(module, sized):
            module.reset_parameters()
    return model.eval()


def _origin_problem(origin: dict[str, Any]) -> str | None:
    """What in ``pruned_from`` no pruning run writes, or None. Its fields must agree with its
    kind: an edit that makes random weights read as published ones would give them accuracy."""
    extra = sorted(set(origin) - _ORIGIN_FIELDS)
    if extra:
        return f"fields {extra}"
    kind, name, seed = origin["kind"], origin.get("name"), origin.get("seed")
    sha, url = origin.get("sha256"), origin.get("url")
    hashed = isinstance(sha, str) and _SHA256.fullmatch(sha) is not None
    if kind == "random":
        seeded = isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32
        if name != "random" or not seeded or origin.get("init") != RANDOM_INIT:
            return "random weights are named 'random', with their seed and initialisation"
        if any(origin.get(k) is not None for k in ("url", "sha256", "top1", "top5")):
            return "random weights have no url, sha256 or published accuracy"
    elif kind == "imagenet":
        published = isinstance(name, str) and name.startswith("IMAGENET1K_")
        if not published or not isinstance(url, str) or not (sha is None or hashed):
            return "ImageNet weights are named IMAGENET1K_..., with their url and sha256"
        if seed is not None or "init" in origin:
            return "ImageNet weights have no seed or initialisation"
    elif kind == "file":
        if not isinstance(name, str) or not hashed:
            return "a weights file is named, with its sha256"
        if seed is not None or url is not None or "init" in origin:
            return "a weights file has no seed, url or initialisation"
    else:
        return f"kind {kind!r} is none of random, imagenet and file"
    return None


def _check_layers_fit(model: nn.Module, spec: dict[str, Any]) -> None:
    """Refuse layers that do not fit together (a batch-norm of other width than the convolution
    before it, a residual branch added to a shortcut of other width): a forward pass on meta
    tensors checks every shape without computing or allocating anything, and the innermost layer
    it was in when a shape did not fit is the one named."""
    inside: list[tuple[str, nn.Module, int]] = []

    def enter(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            inside.append((name, module, args[0].shape[1]))

        return hook

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        inside.pop()

    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
    size = spec["preprocess"]["crop_size"]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device="meta"))
    except RuntimeError as exc:
        name, module, channels = inside[-1] if inside else ("the model", model, 3)
        why = _misfit(name, module, channels) or f"{name}: {str(exc).splitlines()[0][:200]}."
        raise WeightsError(
            f"The channel spec's layers do not fit together: {why}",
            hint="Keep the spec's layers as the pruning run wrote them: each layer takes the "
            "channels the layer before it gives.",
        ) from None
    finally:
        for handle in handles:
            handle.remove()


def _misfit(name: str, module: nn.Module, channels: int) -> str | None:
    """Why ``module`` cannot take an input of ``channels`` channels, in words (None: unknown)."""
    takes = {nn.Conv2d: "in_channels", nn.BatchNorm2d: "num_features", nn.Linear: "in_features"}
    if type(module) in takes:
        wants = getattr(module, takes[type(module)])
        return f"{name} takes {wants} channels, and the layer before it gives {channels}."
    last = getattr(module, "bn3", getattr(module, "bn2", None))
    if isinstance(last, nn.BatchNorm2d):
        downsample = getattr(module, "downsample", None)
        shortcut = downsample[-1].num_features if downsample is not None else channels
        return (
            f"{name} adds its residual branch of {last.num_features} channels to a shortcut of "
            f"{shortcut} channels."
        )
    return None


def _check_pruned_from(layer: nn.Module, dense: nn.Module, name: str, spec: dict[str, Any]) -> None:
    """A spec's layer can only be its dense layer with channels removed: never wider, the image's
    3 channels into the stem and the classifier's ``num_classes`` outputs never pruned. So a spec
    whose ``num_classes`` or ``width`` was edited apart from its layers is refused, not recorded
    as a model it is not."""
    fields = {
        nn.Conv2d: (("in", "in_channels"), ("out", "out_channels")),
        nn.BatchNorm2d: (("features", "num_features"),),
        nn.Linear: (("in", "in_features"), ("out", "out_features")),
    }[type(dense)]
    model = f"{spec['arch']} at width {spec['width']} with {spec['num_classes']} classes"
    for key, attr in fields:
        have, full = getattr(layer, attr), getattr(dense, attr)
        kept = (isinstance(dense, nn.Linear) and key == "out") or (name == "conv1" and key == "in")
        if have > full or (kept and have != full):
            raise WeightsError(
                f"The channel spec gives {name} {key}={have}, where {model} has {full}"
                + (" (never pruned)." if kept else ": pruning only removes channels."),
                hint="Keep the spec's arch, num_classes and width as the pruning run wrote them.",
            )


def save_pruned(model: nn.Module, spec: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write ``model.channels.json`` and ``model.safetensors`` into ``folder``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    spec_path, weights_path = folder / "model.channels.json", folder / "model.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path), metadata={"format": SPEC_FORMAT})
    # The weights it goes with: another run's file of the same shapes is refused at load.
    spec = {**spec, "weights_sha256": sha256_file(weights_path)}
    spec_path.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    return spec_path, weights_path


def load_pruned(spec_path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a pruned model from its spec and the ``model.safetensors`` beside it.

    The spec's sizes are checked against the weights' tensor shapes (read from the file's
    header) before anything is built, so an edited spec is refused, never allocated.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"Cannot read the channel spec {spec_path}: {exc}.", hint=_SPEC_HINT
        ) from None
    weights = Path(spec_path).with_name("model.safetensors")
    keep = "Keep model.safetensors beside model.channels.json, as the pruning run wrote them."
    expected = spec.get("weights_sha256") if isinstance(spec, dict) else None
    if isinstance(spec, dict) and not isinstance(expected, str):
        # Without it, any weights of the same shapes would pass for the pruning run's own.
        raise WeightsError(
            f"The channel spec {spec_path} lacks weights_sha256 (the sha256 of its weights), "
            "which every pruning run writes.",
            hint=_SPEC_HINT,
        )
    if expected is not None and weights.is_file() and sha256_file(weights) != expected:
        raise WeightsError(
            f"{weights} is not the weights file {spec_path} was written with (sha256 differs).",
            hint="Keep model.channels.json and model.safetensors from the same pruning run.",
        )
    try:
        shapes = _tensor_shapes(weights)
    except (OSError, SafetensorError) as exc:
        raise WeightsError(f"Cannot read pruned weights {weights}: {exc}.", hint=keep) from None
    try:
        _check_against_weights(spec, spec_path, weights, shapes)
        model = rebuild(spec)
    except WeightsError as exc:
        if str(spec_path) in exc.message:
            raise
        raise WeightsError(f"{spec_path}: {exc.message}", hint=exc.hint) from None
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise WeightsError(f"Cannot read pruned weights {weights}: {exc}.", hint=keep) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise WeightsError(
            f"The weights {weights} do not match the channel spec {spec_path}: {first[0].strip()}",
            hint="Keep model.channels.json and model.safetensors from the same pruning run.",
        ) from None
    check_weight_values(
        state,
        str(weights),
        hint="The file is damaged, or the run that wrote it diverged: prune again.",
    )
    return model.eval(), spec


def _tensor_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in a safetensors file, from its header: no tensor is read."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


def _check_against_weights(
    spec: Any, spec_path: Path, weights: Path, shapes: dict[str, tuple[int, ...]]
) -> None:
    """Every size the spec gives (``num_classes``, ``width``, each layer's channels) against the
    weights' tensor shapes. Values of the wrong type are left to ``rebuild``, which names them."""
    if not isinstance(spec, dict):
        return
    hint = "Keep model.channels.json and model.safetensors from the same pruning run, unedited."

    def refuse(field: str, value: Any, tensor: str, why: str) -> None:
        raise WeightsError(
            f"The weights {weights} do not match the channel spec {spec_path}: the spec gives "
            f"{field}={value!r}, where {tensor} has shape {list(shapes[tensor])}{why}.",
            hint=hint,
        )

    def count(value: Any) -> bool:  # anything else is named by rebuild
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    fc, conv1 = shapes.get("fc.weight"), shapes.get("conv1.weight")
    classes, width = spec.get("num_classes"), spec.get("width")
    if count(classes) and fc is not None and len(fc) == 2 and classes != fc[0]:
        refuse("num_classes", classes, "fc.weight", f": {fc[0]} classes")
    if count(width) and conv1 is not None and len(conv1) == 4 and width < conv1[0]:
        refuse("width", width, "conv1.weight", f": {conv1[0]} channels, more than the width")
    layers = spec.get("layers")
    if not isinstance(layers, dict):
        return
    for name, entry in layers.items():
        tensor = f"{name}.weight"
        shape = shapes.get(tensor)
        if not isinstance(entry, dict) or shape is None:
            continue  # an unknown layer or a missing tensor: rebuild or the strict load names it
        keys = ("features",) if "features" in entry else ("out", "in")
        for key, size in zip(keys, shape, strict=False):
            value = entry.get(key)
            if count(value) and value != size:
                refuse(f"layers.{name}.{key}", value, tensor, "")


def _resized(module: nn.Module, shape: Any, name: str) -> nn.Module:
    keys = next((k for kind, k in _LAYER_KEYS.items() if isinstance(module, kind)), None)
    if keys is not None and not isinstance(shape, dict):
        example = ", ".join(f'"{k}": ...' for k in keys)
        raise WeightsError(
            f"The channel spec gives {name} as {shape!r}, where an object of its channel counts "
            f"belongs ({{{example}}}).",
            hint=_SPEC_HINT,
        )
    if keys is not None and set(shape) - set(keys):
        raise WeightsError(
            f"The channel spec gives {name} fields a pruning run does not write: "
            f"{sorted(set(shape) - set(keys))} (it writes {', '.join(keys)}).",
            hint=_SPEC_HINT,
        )
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(
            _count(shape, "in", name),
            _count(shape, "out", name),
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            module.bias is not None,
        )
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(_count(shape, "features", name), module.eps, module.momentum)
    if isinstance(module, nn.Linear):
        return nn.Linear(
            _count(shape, "in", name), _count(shape, "out", name), module.bias is not None
        )
    raise WeightsError(
        f"The channel spec resizes {name}, a {type(module).__name__}, which it cannot.",
        hint=_SPEC_HINT,
    )


def _count(entry: Any, key: str, name: str) -> int:
    """``entry[key]`` where it is a whole number of at least 1, else a clear error."""
    if not isinstance(entry, dict):
        raise WeightsError(
            f"The channel spec gives {name} as {entry!r}, where an object with {key} belongs.",
            hint=_SPEC_HINT,
        )
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WeightsError(
            f"The channel spec gives {name} {key}={value!r}, where a whole number of at least 1 "
            "belongs.",
            hint=_SPEC_HINT,
        )
    return value


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
