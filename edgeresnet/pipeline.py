"""``edgeresnet build``: load -> export -> quantize -> verify -> benchmark -> results and report.

Everything is written into a staging folder next to the output and moved into place only when
the whole build succeeded, so a failed or interrupted build never leaves half an output behind.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch

from edgeresnet import __version__
from edgeresnet.backends import Backend, get_backend
from edgeresnet.bundle import add_scripts, write_manifest
from edgeresnet.config import TargetProfile, load_target
from edgeresnet.data import ImageSet, Preprocess, default_calibration_dir, discover
from edgeresnet.errors import DataError, UsageError, VerificationError
from edgeresnet.evaluate import accuracy, collect_logits, fidelity
from edgeresnet.export import export_onnx
from edgeresnet.models import LoadedModel, count_macs, count_parameters, load_model
from edgeresnet.ondevice.common import (
    machine_info,
    physical_cores,
    results_document,
    sha256_file,
    write_json,
)
from edgeresnet.progress import stage, warn
from edgeresnet.quantize import get_quantizer
from edgeresnet.report import write_report

RESULTS = "results.json"
BATCH = 16
# FP32 ONNX must reproduce PyTorch: agreement on every image and logits within float noise.
MIN_EXPORT_SQNR_DB = 60.0


@dataclass(frozen=True)
class BuildRequest:
    target: str
    model: str = "resnet50"
    weights: str = "imagenet"
    calib: Path | None = None
    calib_size: int = 300
    eval: Path | None = None
    eval_size: int | None = None
    input_size: int | None = None
    threads: int = 0
    seed: int = 0
    out: Path = Path("build")
    device_name: str | None = None
    command: str = ""


@dataclass
class Variant:
    name: str
    precision: str
    file: Path
    build: dict[str, Any]
    row: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inputs:
    """Everything a build needs, validated before anything is written."""

    profile: TargetProfile
    backend: Backend
    loaded: LoadedModel
    preprocess: Preprocess
    calib: ImageSet
    calib_is_default: bool
    evaluation: ImageSet | None
    threads: int


def build(request: BuildRequest) -> Path:
    """Run the whole build for one target; returns the output folder ``OUT/<target>``."""
    started = time.perf_counter()
    inputs = resolve(request)
    final = request.out / inputs.profile.name
    request.out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{inputs.profile.name}.staging-", dir=request.out))
    try:
        document = _run(request, inputs, staging)
        document["producer"]["build_seconds"] = round(time.perf_counter() - started, 1)
        document["producer"]["build_peak_rss_mb"] = _peak_rss_mb()
        write_json(staging / RESULTS, document)
        with stage("writing report"):
            write_report(
                {f"{inputs.profile.name}/{RESULTS}": document},
                staging,
                command=f"edgeresnet report {final / RESULTS} --out {final}",
            )
        _publish(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def resolve(request: BuildRequest) -> Inputs:
    """Check every input (profile, weights, data, options) before the build writes anything."""
    if request.calib_size < 1:
        raise UsageError(f"--calib-size must be at least 1, got {request.calib_size}.")
    if request.eval_size is not None and request.eval_size < 1:
        raise UsageError(f"--eval-size must be at least 1, got {request.eval_size}.")
    if request.threads < 0:
        raise UsageError(f"--threads must be 0 (one per core) or positive, got {request.threads}.")
    profile = load_target(request.target)
    backend = get_backend(profile.backend, device=profile.device, runtime=profile.runtime)
    calib_dir = request.calib or default_calibration_dir()
    calib = discover(calib_dir).subset(request.calib_size, seed=request.seed)
    evaluation = None
    if request.eval is not None:
        evaluation = discover(request.eval)
        if request.eval_size:
            evaluation = evaluation.subset(request.eval_size, seed=request.seed)
    loaded = load_model(request.model, request.weights, seed=request.seed)
    if evaluation is not None and evaluation.labelled:
        top = max(s.label for s in evaluation.samples)
        if top >= loaded.num_classes:
            raise DataError(
                f"The evaluation set {request.eval} has class index {top}, but the model has "
                f"{loaded.num_classes} classes.",
                hint="Evaluate on data labelled with the model's classes, or pass the matching "
                "--weights file.",
            )
    return Inputs(
        profile=profile,
        backend=backend,
        loaded=loaded,
        preprocess=_preprocess(loaded, request.input_size),
        calib=calib,
        calib_is_default=request.calib is None,
        evaluation=evaluation,
        threads=request.threads or profile.benchmark.threads or physical_cores(),
    )


def _preprocess(loaded: LoadedModel, input_size: int | None) -> Preprocess:
    info = loaded.info
    if info is not None and input_size in (None, info.crop_size):
        return Preprocess(crop_size=info.crop_size, resize_size=info.resize_size)
    return Preprocess.for_input_size(input_size or 224)


def _run(request: BuildRequest, inputs: Inputs, staging: Path) -> dict[str, Any]:
    profile, loaded, pre = inputs.profile, inputs.loaded, inputs.preprocess
    if inputs.calib_is_default:
        warn(
            f"calibrating on the embedded default set ({len(inputs.calib)} generic photos). "
            "Production INT8 wants ~300 images of your deployment's own data: pass --calib DIR."
        )
    check_set = inputs.evaluation or inputs.calib
    variants = []
    with stage(
        f"exporting {loaded.arch} to ONNX ({profile.export.exporter}, opset {profile.export.opset})"
    ):
        fp32 = staging / "model.fp32.onnx"
        record = export_onnx(loaded.model, fp32, input_size=pre.crop_size, options=profile.export)
        variants.append(Variant("fp32", "fp32", fp32, record.to_dict()))
        verified = _verify_export(
            loaded.model, inputs.backend.load(fp32, threads=inputs.threads), check_set, pre
        )
        variants[0].build["verified_against_pytorch"] = verified
    if "int8" in profile.precisions:
        with stage(
            f"quantizing to INT8 ({profile.quantization.method}, "
            f"{len(inputs.calib)} calibration images)"
        ):
            int8 = staging / "model.int8.onnx"
            quantize = get_quantizer(profile.quantization.method)
            # One image per batch: ORT calibrates without graph optimizations, and at batch 16
            # that session alone held 4 GB for ResNet-50; at batch 1 it holds 0.9 GB, as fast.
            batches = (x for x, _ in inputs.calib.batches(pre, 1))
            variants.append(
                Variant("int8", "int8", int8, quantize(fp32, int8, batches, profile.quantization))
            )
    with stage(
        f"evaluating {len(variants)} artifacts in {inputs.backend.name} on {len(check_set)} images"
    ):
        _evaluate(variants, inputs, check_set)
    for variant in variants:
        with stage(f"benchmarking {variant.name} ({inputs.threads} threads)"):
            variant.row["bench"] = inputs.backend.benchmark(
                variant.file,
                threads=inputs.threads,
                input_size=pre.crop_size,
                options=profile.benchmark,
            )
    return _document(request, inputs, variants, staging)


def _verify_export(model: torch.nn.Module, session, images: ImageSet, pre: Preprocess) -> dict:
    """FP32 ONNX against PyTorch on up to 8 real images: they must agree to float precision."""
    x, _ = next(images.subset(min(8, len(images)), seed=0).batches(pre, 8))
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    result = fidelity(expected, session.run(x))
    sqnr = result["sqnr_db"]
    if result["top1_agreement"] < 100.0 or (sqnr is not None and sqnr < MIN_EXPORT_SQNR_DB):
        raise VerificationError(
            f"The exported FP32 ONNX does not reproduce PyTorch: {result}.",
            hint="Try the other exporter in the target profile ([export] exporter).",
        )
    return result


def _evaluate(variants: list[Variant], inputs: Inputs, images: ImageSet) -> None:
    sessions = {v.name: inputs.backend.load(v.file, threads=inputs.threads) for v in variants}
    logits, labels = collect_logits(
        sessions, images.batches(inputs.preprocess, BATCH), total=len(images)
    )
    reference = logits["fp32"]
    # Accuracy only on a labelled --eval set, never on calibration images, and never for random
    # weights, whose "accuracy" means nothing.
    scored = (
        inputs.evaluation is not None
        and labels is not None
        and inputs.loaded.weights["kind"] != "random"
    )
    for v in variants:
        v.row["fidelity"] = {"reference": "fp32 artifact", **fidelity(reference, logits[v.name])}
        v.row["accuracy"] = accuracy(logits[v.name], labels) if scored else None


def _document(
    request: BuildRequest, inputs: Inputs, variants: list[Variant], staging: Path
) -> dict[str, Any]:
    model = _model_record(inputs)
    data = _data_record(request, inputs)
    target = {
        "name": inputs.profile.name,
        "backend": inputs.profile.backend,
        "device": inputs.profile.device,
        "profile": inputs.profile.to_dict(),
    }
    rows = []
    for v in variants:
        artifact = {
            "file": v.file.name,
            "bytes": v.file.stat().st_size,
            "sha256": sha256_file(v.file),
        }
        rows.append(
            {
                "variant": v.name,
                "precision": v.precision,
                "artifact": artifact,
                "build": v.build,
                **v.row,
            }
        )
    scripts = add_scripts(staging, inputs.backend.ondevice_scripts())
    write_manifest(
        staging,
        files=[v.file for v in variants] + scripts,
        variants=[
            {
                "variant": r["variant"],
                "precision": r["precision"],
                "file": r["artifact"]["file"],
                "artifact": r["artifact"],
            }
            for r in rows
        ],
        model=model,
        data=data,
        target={k: v for k, v in target.items() if k != "profile"},
        options={"threads": inputs.threads, "seed": request.seed},
    )
    environment = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        inputs.backend.name: inputs.backend.version(),
        "edgeresnet": __version__,
    }
    return results_document(
        producer={
            "tool": "edgeresnet build",
            "version": __version__,
            "command": request.command,
            "python": platform.python_version(),
        },
        device=machine_info(request.device_name),
        environment=environment,
        model=model,
        data=data,
        target=target,
        rows=rows,
    )


def _model_record(inputs: Inputs) -> dict[str, Any]:
    loaded, size = inputs.loaded, inputs.preprocess.crop_size
    return {
        "arch": loaded.arch,
        "num_classes": loaded.num_classes,
        "width": loaded.width,
        "input_size": size,
        "params": count_parameters(loaded.model),
        "macs": count_macs(loaded.model, size),
        "weights": loaded.weights,
        "preprocess": inputs.preprocess.to_dict(),
    }


def _data_record(request: BuildRequest, inputs: Inputs) -> dict[str, Any]:
    calib = inputs.calib
    record: dict[str, Any] = {
        "calibration": {
            "source": "embedded default (calibration/default)"
            if inputs.calib_is_default
            else calib.source,
            "images": len(calib),
            "seed": request.seed,
            "sha256": calib.sha256(),
        }
    }
    ev = inputs.evaluation
    record["evaluation"] = (
        None
        if ev is None
        else {
            "source": ev.source,
            "images": len(ev),
            "labelled": ev.labelled,
            "sha256": ev.sha256(),
        }
    )
    record["fidelity_images"] = "evaluation set" if ev is not None else "calibration set"
    return record


def _publish(staging: Path, final: Path) -> None:
    """Replace ``final`` with ``staging`` so readers see the old or the new folder, never half."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(own / 1024, 1)
