"""Reading a weights file: a torch.save checkpoint (never unpickling objects) or a safetensors
file, unwrapped from the training checkpoint around it to a plain state_dict, and checked.

What the state_dict holds (which ResNet, how many classes) is ``models.detect_architecture``'s.
"""

from __future__ import annotations

import os
import pickle
import re
import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from edgeresnet.errors import WeightsError
from edgeresnet.ondevice.common import sha256_file


def strip_prefix(key: str) -> str:
    # DataParallel/DDP save "module.", torch.compile saves "_orig_mod.".
    return re.sub(r"^(module\.|_orig_mod\.)+", "", key)


# Where training code keeps the model in a checkpoint, in the order looked for: timm and
# Lightning's "state_dict", the PyTorch tutorial's "model_state_dict", torchvision's references'
# "model", and "net".
_MODEL_ENTRIES = ("state_dict", "model_state_dict", "model", "net")
_STATE_DICT_HINT = (
    "Save the weights with torch.save(model.state_dict(), path) (a checkpoint holding it under "
    "'state_dict', 'model_state_dict', 'model' or 'net' works too)."
)


def _checkpoint_entry(obj: Any) -> tuple[Any, dict[str, Any]]:
    """The state_dict inside a training checkpoint, and provenance naming the entry used and
    an EMA copy beside it, which is not used (e.g. ``state_dict_ema``, ``model_ema``)."""
    if not isinstance(obj, Mapping):
        return obj, {}
    for key in _MODEL_ENTRIES:
        if isinstance(obj.get(key), Mapping):
            fields: dict[str, Any] = {"entry": key}
            ema = [
                k
                for k, v in obj.items()
                if isinstance(k, str) and re.search(r"(^|_)ema($|_)", k) and isinstance(v, Mapping)
            ]
            if ema:
                fields["ema_unused"] = ema[0]
            return obj[key], fields
    return obj, {}


def unwrap_state_dict(obj: Any, source: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Accept a plain state_dict or a checkpoint holding one (see ``_MODEL_ENTRIES``); strip
    wrapper prefixes. Also return provenance: the entry used and the weights' dtype if not
    float32."""
    obj, fields = _checkpoint_entry(obj)
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(
            f"{source} does not hold a state_dict (got {type(obj).__name__}).",
            hint=_STATE_DICT_HINT,
        )
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if isinstance(value, Mapping):
            raise _checkpoint_error(obj, key, source)
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise WeightsError(
                f"{source} is not a state_dict: entry {key!r} is not a tensor.",
                hint=_STATE_DICT_HINT,
            )
        out[strip_prefix(key)] = value
    check_weight_values(
        obj,
        source,
        hint="The training run diverged or the file is damaged: use a checkpoint from before "
        "the loss went NaN.",
    )
    dtype = _source_dtype(out)
    return _stripcommon_prefix(out), {**fields, **({"dtype": dtype} if dtype else {})}


def _checkpoint_error(obj: Mapping[Any, Any], key: Any, source: str) -> WeightsError:
    """A checkpoint whose model sits under an entry name not looked for."""
    nested = [repr(k) for k, v in obj.items() if isinstance(v, Mapping)]
    names = ", ".join(map(repr, _MODEL_ENTRIES[:-1])) + f" or {_MODEL_ENTRIES[-1]!r}"
    # Only an entry of tensors can be a model's weights (an optimizer's state is not).
    tensors = [
        k
        for k, v in obj.items()
        if isinstance(v, Mapping) and v and all(isinstance(t, Tensor) for t in v.values())
    ]
    saved = "torch.save(model.state_dict(), 'weights.pth')"
    return WeightsError(
        f"{source} is a checkpoint, not a state_dict: it holds dicts under "
        f"{', '.join(nested[:6])}, and none of its entries is named {names}.",
        hint=f"Save the model's own entry: torch.save(checkpoint[{tensors[0]!r}], "
        f"'weights.pth'), or {saved}."
        if tensors
        else f"None of its entries holds tensors; save the model's weights: {saved}.",
    )


def _source_dtype(sd: Mapping[str, Tensor]) -> str | None:
    """The floating dtype(s) the weights were saved in, where not float32 (they load as float32)."""
    dtypes = {str(v.dtype).removeprefix("torch.") for v in sd.values() if v.is_floating_point()}
    return "+".join(sorted(dtypes)) if dtypes - {"float32"} else None


def common_prefix(keys: Any) -> str:
    """The dotted prefix every key shares (``"model."``), or ``""``."""
    parts = os.path.commonprefix([key.split(".")[:-1] for key in keys])
    return "".join(f"{part}." for part in parts)


def _stripcommon_prefix(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop a prefix every key shares (Lightning's ``model.``, or ``net.``, ``backbone.``) where
    that leaves a ResNet's ``conv1.weight``; else keep the keys for detect_architecture to name."""
    prefix = common_prefix(sd)
    if not prefix:
        return sd
    stripped = {key[len(prefix) :]: value for key, value in sd.items()}
    return stripped if "conv1.weight" in stripped else sd


def check_weight_values(state: Mapping[str, Tensor], source: str, *, hint: str) -> None:
    """Refuse weights no trained model has: NaN or infinite values, and a negative BatchNorm
    ``running_var`` (the model would take the square root of a negative number and output NaN).
    ``source`` names the file; ``hint`` says what to do about NaN or infinite values."""
    for key, value in state.items():
        if not value.is_floating_point():
            continue
        if not bool(torch.isfinite(value).all()):
            raise WeightsError(f"{source}: {key} holds NaN or infinite values.", hint=hint)
        if key.endswith("running_var") and bool((value < 0).any()):
            raise WeightsError(
                f"{source}: {key} holds negative values (down to {value.min().item():.4g}), and "
                "a BatchNorm variance is never negative: the model would output NaN.",
                hint="BatchNorm's running variance is what training measured: the file was "
                "damaged or edited after it was saved. Use the weights as training saved them.",
            )


def read_weights_file(path: Path) -> tuple[dict[str, Tensor], str, dict[str, Any]]:
    """Read a local torch.save file (weights_only=True) or a safetensors file; return
    (state_dict, sha256, provenance of the entry used and the weights' dtype)."""
    if path.is_dir():
        spec = path / "model.channels.json"
        raise WeightsError(
            f"--weights {path} is a folder; it takes a file.",
            hint=f"Pass the pruned model's channel spec: --weights {spec}."
            if spec.is_file()
            else "Pass the path of a state_dict file inside it.",
        )
    if not path.is_file():
        raise WeightsError(
            f"Weights file {path} does not exist or is not a file.",
            hint="Pass --weights imagenet, --weights random, or the path of a state_dict file.",
        )
    try:
        sha = sha256_file(path)
    except OSError as e:
        raise WeightsError(
            f"Weights file {path} cannot be read: {e.strerror or e}.",
            hint="Check the file's permissions, or copy it again.",
        ) from e
    head = _head(path)
    if not head:
        raise WeightsError(
            f"Weights file {path} is empty (0 bytes).",
            hint="Copy the file again and compare its sha256 with the source.",
        )
    if _is_safetensors(head):
        obj: Any = _load_safetensors(path)
    elif head.startswith((b"PK\x03\x04", b"\x80")):
        obj = _torch_load(path)
    else:
        hint = (
            "Pass the .pth/.pt file torch.save wrote, a .safetensors state_dict, a pruned "
            "model's model.channels.json, --weights imagenet or --weights random."
        )
        if head.lstrip().startswith(b"{"):
            hint = (
                "It reads as JSON: a pruned model's channel spec is taken as one by its name, "
                "ending in .channels.json, as the model.channels.json a pruning run writes."
            )
        raise WeightsError(
            f"Weights file {path} is not a PyTorch checkpoint: torch.save writes a zip archive "
            f"or a pickle, safetensors a header, and this file starts with {head[:8]!r}.",
            hint=hint,
        )
    sd, fields = unwrap_state_dict(obj, f"Weights file {path}")
    return sd, sha, fields


def _torch_load(path: Path) -> Any:
    """torch.load with weights_only=True: tensors and plain containers, never Python objects."""
    try:
        with warnings.catch_warnings():
            # A raw pickle's protocol, which the refusal or the load below settles anyway.
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # Only the object torch names: its advice to allow-list it cannot be taken from here.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        detail = f" ({found[1]} first)" if found else ""
        why = (
            f"it contains Python objects{detail}, not just tensors, and unpickling them could "
            "execute code"
            if "GLOBAL" in str(e)
            else "it holds pickle data that torch's weights-only loader rejects (Python objects "
            "that could execute code, or a corrupt file)"
        )
        raise WeightsError(
            f"Weights file {path} was refused: {why}; it was not loaded (edgeresnet never "
            "loads weights unsafely).",
            hint="In a trusted environment re-save only the tensors: "
            "torch.save(model.state_dict(), 'weights.pth').",
        ) from e
    except Exception as e:  # torch raises RuntimeError/OSError/EOFError/KeyError on bad bytes
        raise _corrupt(path, e) from e


def _is_safetensors(head: bytes) -> bool:
    """A safetensors file opens with its JSON header's length (8 bytes, little-endian, at most
    100 MB) and the header's ``{``."""
    return head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= 100_000_000


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    """A safetensors file's tensors, read by safetensors (no pickle); a pruned model's weights,
    which only fit the channel spec beside them, are refused."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from edgeresnet.prune import SPEC_FORMAT

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except Exception as e:  # SafetensorError, OSError, or a header safetensors cannot parse
        raise _corrupt(path, e) from e
    if metadata.get("format") == SPEC_FORMAT:
        raise WeightsError(
            f"Weights file {path} holds a pruned model's weights, which fit only the channel "
            "spec a pruning run wrote beside them.",
            hint=f"Pass the channel spec: --weights {path.with_name('model.channels.json')}.",
        )
    return tensors


def _corrupt(path: Path, e: Exception) -> WeightsError:
    return WeightsError(
        f"Weights file {path} is truncated or corrupt and could not be read "
        f"({type(e).__name__}: {textwrap.shorten(str(e), 200, placeholder=' ...')}).",
        hint="Copy the file again and compare its sha256 with the source.",
    )


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(9)
    except OSError as e:
        raise WeightsError(
            f"Weights file {path} cannot be read: {e.strerror or e}.",
            hint="Check the file's permissions, or copy it again.",
        ) from e
