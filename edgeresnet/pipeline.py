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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime import __version__ as ort_version_string

from edgeresnet import __version__
from edgeresnet.backends import Artifact, Backend, CalibrationBatches, Session, get_backend
from edgeresnet.bundle import add_scripts, write_manifest
from edgeresnet.config import TargetProfile, load_target
from edgeresnet.data import ImageSet, Preprocess, default_calibration_dir, discover
from edgeresnet.errors import BackendUnavailableError, DataError, UsageError, VerificationError
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
from edgeresnet.progress import progress_bar, stage, warn
from edgeresnet.prune import PruneOptions, channel_spec, prune, save_pruned
from edgeresnet.recover import DistillOptions, distill, reestimate_batchnorm
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
    prune: tuple[float, ...] = ()
    prune_importance: str = "l2"
    prune_round_to: int = 8
    bn_recalibrate: bool = True
    distill_steps: int = 0
    train: Path | None = None
    command: str = ""


@dataclass
class ModelVariant:
    """The dense model or one pruned copy, and what was done to it."""

    tag: str  # "" for the dense model, "p30" for 30 % pruned
    model: torch.nn.Module
    prune: dict[str, Any] | None = None

    def variant(self, precision: str) -> str:
        return f"{self.tag}-{precision}" if self.tag else precision


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
    prune: list[PruneOptions]
    train: ImageSet | None


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
    prune = [
        PruneOptions(r, importance=request.prune_importance, round_to=request.prune_round_to)
        for r in sorted(set(request.prune) - {0.0})
    ]
    if request.distill_steps < 0:
        raise UsageError(f"--distill-steps must be 0 or more, got {request.distill_steps}.")
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
        prune=prune,
        train=discover(request.train) if request.train is not None else None,
    )


def _preprocess(loaded: LoadedModel, input_size: int | None) -> Preprocess:
    info = loaded.info
    if info is not None and input_size in (None, info.crop_size):
        return Preprocess(crop_size=info.crop_size, resize_size=info.resize_size)
    return Preprocess.for_input_size(input_size or 224)


def _run(request: BuildRequest, inputs: Inputs, staging: Path) -> dict[str, Any]:
    profile, pre = inputs.profile, inputs.preprocess
    if inputs.calib_is_default:
        warn(
            f"calibrating on the embedded default set ({len(inputs.calib)} generic photos). "
            "Production INT8 wants ~300 images of your deployment's own data: pass --calib DIR."
        )
    check_set = inputs.evaluation or inputs.calib
    models = [ModelVariant("", inputs.loaded.model)] + [
        _pruned(options, request, inputs, staging) for options in inputs.prune
    ]
    with tempfile.TemporaryDirectory(prefix="edgeresnet-work-") as work:
        artifacts: list[Artifact] = []
        owners: list[ModelVariant] = []
        reference: Session | None = None
        for mv in models:
            fp32_onnx, session, export = _export(mv, inputs, Path(work), check_set)
            # The dense model's verified FP32 ONNX in ONNX Runtime is the reference every
            # variant, pruned ones included, is held to.
            reference = reference or session
            folder = staging / mv.tag if mv.tag else staging
            folder.mkdir(exist_ok=True)
            for precision in profile.precisions:
                name = mv.variant(precision)
                with stage(f"compiling {name} for {profile.name} ({inputs.backend.name})"):
                    artifact = inputs.backend.compile(
                        fp32_onnx,
                        precision,
                        folder,
                        profile=profile,
                        calibration=_calibration(inputs.calib, pre),
                    )
                artifact.variant = name
                artifact.build.setdefault("export", export)
                if mv.prune:
                    artifact.build["prune"] = mv.prune
                artifacts.append(artifact)
                owners.append(mv)
        with stage(f"evaluating {len(artifacts)} artifacts on {len(check_set)} images"):
            rows = _evaluate(artifacts, reference, inputs, check_set)
    for mv, row in zip(owners, rows, strict=True):
        row["params"] = count_parameters(mv.model)
        row["macs"] = count_macs(mv.model, pre.crop_size)
    for artifact, row in zip(artifacts, rows, strict=True):
        with stage(f"benchmarking {artifact.variant} ({inputs.threads} threads)"):
            try:
                row["bench"] = inputs.backend.benchmark(
                    artifact, threads=inputs.threads, input_size=pre.crop_size, profile=profile
                )
            except BackendUnavailableError as exc:
                warn(f"{artifact.variant} was built but could not be benchmarked here: {exc}")
                row["bench"] = None
                row["notes"].append(f"not benchmarked here: {exc.message}")
    return _document(request, inputs, artifacts, rows, staging)


def _export(
    mv: ModelVariant, inputs: Inputs, work: Path, check_set: ImageSet
) -> tuple[Path, Session, dict[str, Any]]:
    """Export one model to FP32 ONNX and check it reproduces its PyTorch model."""
    export = inputs.profile.export
    path = work / f"{mv.tag or 'dense'}.fp32.onnx"
    label = f"{inputs.loaded.arch}{' ' + mv.tag if mv.tag else ''}"
    with stage(f"exporting {label} to ONNX ({export.exporter}, opset {export.opset})"):
        record = export_onnx(mv.model, path, input_size=inputs.preprocess.crop_size, options=export)
        session = get_backend("onnxruntime").load(
            Artifact("reference", "fp32", path), threads=inputs.threads
        )
        verified = _verify_export(mv.model, session, check_set, inputs.preprocess)
    return path, session, {**record.to_dict(), "verified": verified}


def _pruned(
    options: PruneOptions, request: BuildRequest, inputs: Inputs, staging: Path
) -> ModelVariant:
    """Prune the dense model, recover what the request asks for, and save it as spec + weights."""
    loaded, pre = inputs.loaded, inputs.preprocess
    with stage(
        f"pruning {options.ratio:.0%} of channels ({options.importance}, "
        f"multiples of {options.round_to})"
    ):
        model = prune(loaded.model, options, input_size=pre.crop_size)
    record: dict[str, Any] = {**options.to_dict(), "recovery": []}
    if request.bn_recalibrate:
        with stage("re-estimating BatchNorm statistics on the calibration images"):
            seen = reestimate_batchnorm(model, _images(inputs.calib, pre))
        record["recovery"].append({"method": "batchnorm-reestimation", "images": seen})
    if request.distill_steps:
        train = inputs.train or inputs.calib
        holdout, _ = next((inputs.evaluation or inputs.calib).subset(32, seed=1).batches(pre, 32))
        with stage(
            f"distilling from the unpruned model ({request.distill_steps} steps on "
            f"{len(train)} unlabelled images)"
        ):
            result = distill(
                model,
                loaded.model,
                lambda epoch: _images(train.shuffled(epoch), pre),
                holdout,
                DistillOptions(steps=request.distill_steps),
            )
        record["recovery"].append(
            {"method": "distillation", "images": len(train), "source": train.source, **result}
        )
    spec = channel_spec(model, arch=loaded.arch, num_classes=loaded.num_classes, width=loaded.width)
    save_pruned(model, spec, staging / options.tag)
    return ModelVariant(options.tag, model, record)


def _images(images: ImageSet, pre: Preprocess) -> Iterator[np.ndarray]:
    return (x for x, _ in images.batches(pre, BATCH))


def _calibration(images: ImageSet, pre: Preprocess) -> CalibrationBatches:
    def batches(size: int) -> Iterator[np.ndarray]:
        with progress_bar("calibrating", total=len(images)) as advance:
            for x, _ in images.batches(pre, size):
                yield x
                advance(len(x))

    return batches


def _verify_export(
    model: torch.nn.Module, session: Session, images: ImageSet, pre: Preprocess
) -> dict:
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


def _evaluate(
    artifacts: list[Artifact], reference: Session, inputs: Inputs, images: ImageSet
) -> list[dict[str, Any]]:
    """Run every artifact in its own runtime next to the FP32 reference, on the same images."""
    rows: list[dict[str, Any]] = []
    sessions: dict[str, Session] = {"reference": reference}
    for artifact in artifacts:
        rows.append({"notes": []})
        try:
            sessions[artifact.variant] = inputs.backend.load(artifact, threads=inputs.threads)
        except BackendUnavailableError as exc:
            warn(f"{artifact.variant} was built but cannot run here: {exc.message}")
            rows[-1]["notes"].append(f"not evaluated here: {exc.message}")
    logits, labels = collect_logits(
        sessions, images.batches(inputs.preprocess, BATCH), total=len(images)
    )
    # Accuracy only on a labelled --eval set, never on calibration images, and never for random
    # weights, whose "accuracy" means nothing.
    scored = (
        inputs.evaluation is not None
        and labels is not None
        and inputs.loaded.weights["kind"] != "random"
    )
    for artifact, row in zip(artifacts, rows, strict=True):
        out = logits.get(artifact.variant)
        row["fidelity"] = (
            None
            if out is None
            else {
                "reference": "exported FP32 ONNX in onnxruntime",
                **fidelity(logits["reference"], out),
            }
        )
        row["accuracy"] = accuracy(out, labels) if scored and out is not None else None
    return rows


def _document(
    request: BuildRequest,
    inputs: Inputs,
    artifacts: list[Artifact],
    measured: list[dict[str, Any]],
    staging: Path,
) -> dict[str, Any]:
    model = _model_record(inputs)
    data = _data_record(request, inputs)
    profile = inputs.profile
    target = {
        "name": profile.name,
        "backend": profile.backend,
        "device": profile.device,
        "profile": profile.to_dict(),
    }
    rows = []
    for artifact, row in zip(artifacts, measured, strict=True):
        file = {
            "file": artifact.file.relative_to(staging).as_posix(),
            "bytes": _size(artifact.file),
            "sha256": sha256_file(artifact.file),
        }
        rows.append(
            {
                "variant": artifact.variant,
                "precision": artifact.precision,
                "artifact": file,
                "build": artifact.build,
                **row,
            }
        )
    add_scripts(staging, inputs.backend.ondevice_scripts())
    write_manifest(
        staging,
        files=[p for p in staging.rglob("*") if p.is_file()],
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
        "onnxruntime": ort_version_string,
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


def _artifact_files(file: Path) -> list[Path]:
    """An artifact and its companions (an OpenVINO .xml has its .bin)."""
    return [p for p in (file, file.with_suffix(".bin")) if p.is_file()]


def _size(file: Path) -> int:
    return sum(p.stat().st_size for p in _artifact_files(file))


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
