"""Target profiles: one TOML file per target under ``targets/``, loaded into frozen records."""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnx.defs import onnx_opset_version

from edgeresnet.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def shipped(*parts: str) -> Path:
    """A folder the project ships beside the package (``targets``, ``calibration/default``):
    at the top of the source checkout, else where a wheel installs it (``<prefix>/share/
    edgeresnet``)."""
    checkout = Path(__file__).resolve().parents[1].joinpath(*parts)
    return checkout if checkout.is_dir() else Path(sys.prefix, "share", "edgeresnet", *parts)


TARGETS_DIR = shipped("targets")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Per-channel QuantizeLinear/DequantizeLinear (the axis attribute) came with opset 13; the
# newest is what the installed onnx knows.
MIN_OPSET, MAX_OPSET = 13, onnx_opset_version()
_FIX = "Compare with the bundled profiles in targets/ (e.g. targets/onnx.toml)."
# What each backend builds, and the quantization method its INT8 takes (``quantize/``, one
# module per method).
BACKEND_PRECISIONS = {
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "fp16", "bf16", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
}
QUANTIZATION_METHODS = {"onnxruntime": "ort-static", "openvino": "nncf", "tensorrt": "trt-qdq"}
# The [quantization] values each method takes, checked when a profile loads, before any stage.
_RANGES = ("minmax", "entropy", "percentile")
QUANTIZATION_CHOICES: dict[str, dict[str, tuple[Any, ...]]] = {
    "ort-static": {
        "activation_type": ("uint8", "int8"),
        "weight_type": ("uint8", "int8"),
        "calibrate_method": _RANGES,
    },
    # What TensorRT's explicit quantization accepts: signed int8, per-channel weight scales.
    "trt-qdq": {
        "activation_type": ("int8",),
        "weight_type": ("int8",),
        "per_channel": (True,),
        "calibrate_method": _RANGES,
    },
    "nncf": {"preset": ("performance", "mixed"), "model_type": ("", "transformer")},
}
EXPORTERS = ("torchscript", "dynamo")
DYNAMO_MIN_OPSET = 18
# A profile's name names its output folder (OUT/<name>): a plain folder name, nothing more.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class ExportOptions:
    exporter: str = "torchscript"
    opset: int = 17


@dataclass(frozen=True)
class QuantizationOptions:
    method: str = "ort-static"
    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True
    calibrate_method: str = "minmax"
    percentile: float = 99.999
    # NNCF (OpenVINO) options
    preset: str = "performance"
    subset_size: int = 300
    fast_bias_correction: bool = True
    model_type: str = ""


@dataclass(frozen=True)
class BenchmarkOptions:
    # ``warmup`` and ``min_iterations`` count images: batch 8 is timed for ceil(50 / 8) calls
    # (at least 5) after ceil(10 / 8) warm-up calls (at least 2), and every loop for at least
    # ``min_seconds``. TensorRT's on-device script counts calls.
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    warmup: int = 10
    min_iterations: int = 50
    min_seconds: float = 3.0
    threads: int = 0


@dataclass(frozen=True)
class TargetProfile:
    name: str
    backend: str
    device: str
    precisions: list[str]
    description: str = ""
    export: ExportOptions = field(default_factory=ExportOptions)
    quantization: QuantizationOptions = field(default_factory=QuantizationOptions)
    benchmark: BenchmarkOptions = field(default_factory=BenchmarkOptions)
    runtime: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def targets_dir() -> Path:
    """Folder of the bundled profiles; a non-empty ``EDGERESNET_TARGETS`` points elsewhere."""
    return Path(os.environ.get("EDGERESNET_TARGETS") or TARGETS_DIR)  # set but empty: unset


def available_targets() -> dict[str, Path]:
    """The profiles by name; a missing profiles folder is an error, not an empty list."""
    folder = targets_dir()
    if not folder.is_dir():
        raise ConfigError(
            f"The target profiles are not at {folder}.",
            hint="Reinstall edgeresnet (pip install -e . from the checkout, or its wheel), set "
            "EDGERESNET_TARGETS to a folder of profiles, or pass a .toml profile's path.",
        )
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def load_target(name_or_path: str) -> TargetProfile:
    """Load a profile by name (``onnx``) or by path to a ``.toml`` file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        known = available_targets()
        if name_or_path not in known:
            raise ConfigError(
                f"Unknown target '{name_or_path}'.",
                hint=f"Choose one of: {', '.join(known) or '(none found)'} "
                f"(profiles in {targets_dir()}), or pass a path to a .toml profile.",
            )
        path = known[name_or_path]
    if not path.is_file():
        raise ConfigError(f"Target profile {path} does not exist.", hint="Check the path.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Target profile {path} is not valid TOML: {exc}.", hint=_FIX) from None
    profile = _build(TargetProfile, {**raw, "source": str(path)}, where=str(path))
    _check(profile, path)
    return profile


def _check(profile: TargetProfile, path: Path) -> None:
    if not _NAME.fullmatch(profile.name):
        raise ConfigError(
            f"{path}: name {profile.name!r} must be a plain folder name (letters, digits, '-' and "
            "'_'): a build writes the target's bundle to OUT/<name>.",
            hint='For example name = "openvino-lab".',
        )
    if profile.backend not in BACKEND_PRECISIONS:
        raise ConfigError(
            f"{path}: unknown backend {profile.backend!r}.",
            hint=f"Choose one of: {', '.join(BACKEND_PRECISIONS)}.",
        )
    builds = BACKEND_PRECISIONS[profile.backend]
    bad = [p for p in profile.precisions if p not in builds]
    repeated = len(set(profile.precisions)) != len(profile.precisions)
    if bad or not profile.precisions or repeated:
        raise ConfigError(
            f"{path}: precisions {profile.precisions} must be a non-empty subset of what the "
            f"{profile.backend} backend builds, {list(builds)}, each once.",
            hint=_FIX,
        )
    check_method(profile)
    _check_quantization(profile.quantization, path)
    _check_export(profile.export, path)
    bench = profile.benchmark
    sizes = bench.batch_sizes
    if not sizes or min(sizes) < 1 or sizes[0] != 1 or len(set(sizes)) != len(sizes):
        raise ConfigError(
            f"{path}: benchmark.batch_sizes must start with 1 (the latency every report compares "
            f"at batch 1) and list positive sizes, each once, got {sizes}.",
            hint="For example batch_sizes = [1, 8].",
        )
    if bench.threads < 0:
        raise ConfigError(
            f"{path}: benchmark.threads must be 0 (one per core) or positive.", hint=_FIX
        )
    if bench.warmup < 0 or bench.min_iterations < 1:
        raise ConfigError(
            f"{path}: benchmark.warmup must be 0 or more and min_iterations at least 1, got "
            f"{bench.warmup} and {bench.min_iterations}.",
            hint="The bundled profiles use warmup = 10, min_iterations = 50.",
        )
    if not (math.isfinite(bench.min_seconds) and bench.min_seconds >= 0):
        raise ConfigError(
            f"{path}: benchmark.min_seconds must be a finite number, 0 or more, got "
            f"{bench.min_seconds}.",
            hint="The bundled profiles use min_seconds = 3.0.",
        )
    if not 90.0 <= profile.quantization.percentile <= 100.0:
        raise ConfigError(
            f"{path}: quantization.percentile must be between 90 and 100, got "
            f"{profile.quantization.percentile}.",
            hint="Typical values are 99.99 or 99.999.",
        )


def _check_quantization(options: QuantizationOptions, path: Path) -> None:
    for key, choices in QUANTIZATION_CHOICES.get(options.method, {}).items():
        value = getattr(options, key)
        if value not in choices:
            raise ConfigError(
                f"{path} [quantization]: {key} = {_toml(value)} is not one the {options.method} "
                "method takes.",
                hint=f"Use {' or '.join(_toml(c) for c in choices)}.",
            )


def _check_export(options: ExportOptions, path: Path) -> None:
    if options.exporter not in EXPORTERS:
        raise ConfigError(
            f"{path} [export]: unknown exporter {_toml(options.exporter)}.",
            hint=f"Use {' or '.join(_toml(e) for e in EXPORTERS)}.",
        )
    if not MIN_OPSET <= options.opset <= MAX_OPSET:
        raise ConfigError(
            f"{path}: export.opset must be {MIN_OPSET} to {MAX_OPSET}, got {options.opset}.",
            hint=f"INT8 QDQ with per-channel weights needs opset {MIN_OPSET} or newer; the "
            "bundled profiles use 17.",
        )
    if options.exporter == "dynamo" and options.opset < DYNAMO_MIN_OPSET:
        raise ConfigError(
            f"{path} [export]: the dynamo exporter writes opset {DYNAMO_MIN_OPSET} or newer, "
            f"and the profile asks for {options.opset}.",
            hint=f'Set opset = {DYNAMO_MIN_OPSET} or newer, or exporter = "torchscript".',
        )


def _toml(value: Any) -> str:
    """``value`` as written in TOML."""
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else repr(value)


def check_method(profile: TargetProfile, backend: str | None = None) -> None:
    """Refuse a quantization method that ``backend`` (by default the profile's) does not take."""
    backend = backend or profile.backend
    wanted = QUANTIZATION_METHODS.get(backend)
    if wanted is not None and profile.quantization.method != wanted:
        raise ConfigError(
            f"The {backend} backend quantizes with {wanted}, not {profile.quantization.method}.",
            hint=f'Set method = "{wanted}" under [quantization] in {profile.source}.',
        )


def check_keywords(func: Any, table: dict[str, Any], *, where: str) -> None:
    """Refuse keys of ``table`` that ``func`` takes no keyword for, and values of another type
    than its annotation: a [runtime] table checked against a backend's constructor."""
    taken = [n for n in inspect.signature(func).parameters if n not in ("self", "device")]
    unknown = sorted(set(table) - set(taken))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}.",
            hint=f"Valid keys: {', '.join(taken)}." if taken else "This backend takes none.",
        )
    hints = typing.get_type_hints(func.__init__ if isinstance(func, type) else func)
    for key, value in table.items():
        _check_type(value, hints[key], where=f"{where}: {key}")


def _build(cls: type, data: Any, *, where: str) -> Any:
    """Build a dataclass from TOML data, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {data!r}.", hint=_FIX)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}.",
            hint=f"Valid keys: {', '.join(sorted(names - {'source'}))}.",
        )
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}.", hint=_FIX)
    values = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, where=f"{where} [{key}]")
        else:
            _check_type(value, hint, where=f"{where}: {key}")
            values[key] = value
    return cls(**values)


def _check_type(value: Any, hint: Any, *, where: str) -> None:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if not any(_matches(value, option) for option in options):
            raise ConfigError(f"{where} has the wrong type: {value!r}.", hint=_FIX)
        return
    if not _matches(value, hint):
        raise ConfigError(
            f"{where} must be {_describe(hint)}, got {type(value).__name__} {value!r}.", hint=_FIX
        )


def _describe(hint: Any) -> str:
    """A type as a profile's author reads it: ``list[int]`` is "a list of int"."""
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint) or (Any,)
        return f"a list of {_describe(item)}" if item is not Any else "a list"
    if typing.get_origin(hint) is dict:
        return "a table"
    return getattr(hint, "__name__", str(hint))


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint) or hint
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin)
