"""Structured channel pruning with torch-pruning, and pruned models stored as data.

Channels are physically removed (masks would change neither compute nor speed), residual groups
stay consistent through torch-pruning's dependency graph, and the classifier's outputs are never
pruned. A pruned model is saved as a channel spec (JSON) plus safetensors weights and rebuilt
from them without pickle.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeresnet.errors import UsageError, WeightsError
from edgeresnet.models import build_model

SPEC_FORMAT = "edgeresnet.channels"
SPEC_VERSION = 1
IMPORTANCES = ("l1", "l2", "bn-scale")


@dataclass(frozen=True)
class PruneOptions:
    ratio: float
    importance: str = "l2"
    round_to: int = 8

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

    @property
    def tag(self) -> str:
        """Variant prefix, e.g. ``p30`` for ratio 0.3."""
        return f"p{round(self.ratio * 100):02d}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune(model: nn.Module, options: PruneOptions, *, input_size: int) -> nn.Module:
    """A pruned copy of ``model``; the original is left untouched."""
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    importance = {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "bn-scale": tp.importance.BNScaleImportance,
    }[options.importance]()
    pruner = tp.pruner.BasePruner(
        pruned,
        torch.zeros(1, 3, input_size, input_size),
        importance=importance,
        pruning_ratio=options.ratio,
        ignored_layers=[pruned.fc],
        round_to=options.round_to,
    )
    pruner.step()
    return pruned


def channel_spec(
    model: nn.Module,
    *,
    arch: str,
    num_classes: int,
    width: int,
    preprocess: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Every conv, batch-norm and linear layer's channel counts: enough to rebuild the model;
    with the ``resize_size``/``crop_size`` its weights expect, so a rebuild feeds it the same."""
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
        **({"preprocess": preprocess} if preprocess else {}),
        "layers": layers,
    }


def rebuild(spec: dict[str, Any]) -> nn.Module:
    """The architecture a channel spec describes, with fresh weights."""
    if spec.get("format") != SPEC_FORMAT or spec.get("version") != SPEC_VERSION:
        raise WeightsError(
            f"Not an edgeresnet channel spec (format {spec.get('format')!r}, version "
            f"{spec.get('version')!r}).",
            hint=f"Expected format '{SPEC_FORMAT}' version {SPEC_VERSION}.",
        )
    missing = [k for k in ("arch", "num_classes", "width", "layers") if k not in spec]
    if missing:
        raise WeightsError(
            f"The channel spec lacks {', '.join(missing)}.",
            hint="Use the model.channels.json a pruning run wrote, unedited.",
        )
    model = build_model(spec["arch"], num_classes=spec["num_classes"], width=spec["width"])
    modules = dict(model.named_modules())
    unknown = sorted(set(spec["layers"]) - set(modules))
    if unknown:
        raise WeightsError(
            f"The channel spec names layers {unknown[:3]} that {spec['arch']} does not have."
        )
    for name, shape in spec["layers"].items():
        _set_module(model, name, _resized(modules[name], shape))
    return model.eval()


def save_pruned(model: nn.Module, spec: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write ``model.channels.json`` and ``model.safetensors`` into ``folder``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    spec_path, weights_path = folder / "model.channels.json", folder / "model.safetensors"
    spec_path.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path), metadata={"format": SPEC_FORMAT})
    return spec_path, weights_path


def load_pruned(spec_path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a pruned model from its spec and the ``model.safetensors`` beside it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"Cannot read the channel spec {spec_path}: {exc}.") from None
    weights = Path(spec_path).with_name("model.safetensors")
    model = rebuild(spec)
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise WeightsError(
            f"Cannot read pruned weights {weights}: {exc}.",
            hint="Keep model.safetensors beside model.channels.json, both as the pruning run "
            "wrote them.",
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise WeightsError(
            f"The weights {weights} do not match the channel spec {spec_path}: {first[0].strip()}",
            hint="Keep model.channels.json and model.safetensors from the same pruning run.",
        ) from None
    return model.eval(), spec


def _resized(module: nn.Module, shape: dict[str, int]) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(
            shape["in"],
            shape["out"],
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            module.bias is not None,
        )
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(shape["features"], module.eps, module.momentum)
    if isinstance(module, nn.Linear):
        return nn.Linear(shape["in"], shape["out"], module.bias is not None)
    raise WeightsError(f"The channel spec resizes a {type(module).__name__}, which it cannot.")


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
