"""The results document of a build: model, data and target records, and one row per artifact."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime import __version__ as onnxruntime_version

from edgeresnet import __version__
from edgeresnet.backends import Artifact, Backend
from edgeresnet.config import TargetProfile
from edgeresnet.data import ImageSet, Preprocess
from edgeresnet.evaluate import accuracy, fidelity
from edgeresnet.models import LoadedModel, count_macs, count_parameters
from edgeresnet.ondevice.common import machine_info, results_document, sha256_file

BUILD_TOOL = "edgeresnet build"  # the producer a build's results.json names


def measured_rows(
    artifacts: list[Artifact],
    logits: dict[str, np.ndarray | None],
    labels: np.ndarray | None,
    notes: dict[str, str],
    *,
    scored: bool,
    own_fp32: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Fidelity against the FP32 reference, and accuracy where ``scored``, per artifact.

    ``own_fp32`` maps a pruned variant of another precision to its own FP32 variant: its
    fidelity to that (``fidelity.to_own_fp32``) is the precision's error alone, which the
    fidelity to the dense reference mixes with the pruning's."""
    rows = []
    for artifact in artifacts:
        out = logits.get(artifact.variant)
        row: dict[str, Any] = {
            "notes": [notes[artifact.variant]] if artifact.variant in notes else []
        }
        row["fidelity"] = (
            None
            if out is None
            else {
                "reference": "exported FP32 ONNX in onnxruntime",
                **fidelity(logits["reference"], out),
            }
        )
        own = (own_fp32 or {}).get(artifact.variant)
        if row["fidelity"] is not None and own and logits.get(own) is not None:
            row["fidelity"]["to_own_fp32"] = {"reference": own, **fidelity(logits[own], out)}
        row["accuracy"] = accuracy(out, labels) if scored and out is not None else None
        rows.append(row)
    return rows


def artifact_record(artifact: Artifact, root: Path) -> dict[str, Any]:
    """The artifact's file, its size and sha256. A variant that exists only in an engine built
    on the device (TensorRT FP16, from the FP32 ONNX) has no size here: that file's size is
    another precision's."""
    size = sum(p.stat().st_size for p in artifact.files)
    record = {
        "file": artifact.file.relative_to(root).as_posix(),
        "bytes": None if artifact.build.get("built_on_device") else size,
        "sha256": sha256_file(artifact.file),
    }
    if record["bytes"] is None:
        record["file_bytes"] = size
    return record


def model_identity(loaded: LoadedModel, pre: Preprocess) -> dict[str, Any]:
    """What names the model (architecture, shape, input, weights), with nothing counted."""
    return {
        "arch": loaded.arch,
        "num_classes": loaded.num_classes,
        "width": loaded.width,
        "input_size": pre.crop_size,
        "weights": loaded.weights,
        "preprocess": pre.to_dict(),
    }


def model_record(loaded: LoadedModel, pre: Preprocess) -> dict[str, Any]:
    """``model_identity`` with the parameters and MACs counted. Counting MACs imports
    torch._dynamo, which makes its cache folder in the temporary folder: call it where that is
    the run's work folder."""
    return {
        **model_identity(loaded, pre),
        "params": count_parameters(loaded.model),
        "macs": count_macs(loaded.model, pre.crop_size),
    }


def data_record(
    calib: ImageSet,
    calib_sha: str,
    *,
    default: bool,
    seed: int,
    evaluation: ImageSet | None,
    calibration_left_out: int = 0,
) -> dict[str, Any]:
    return {
        "calibration": {
            "source": "embedded default (calibration/default)" if default else calib.source,
            "images": len(calib),
            "seed": seed,
            "sha256": calib_sha,
        },
        "evaluation": None
        if evaluation is None
        else {
            "source": evaluation.source,
            "images": len(evaluation),
            "labelled": evaluation.labelled,
            "sha256": evaluation.sha256(),
            "calibration_images_left_out": calibration_left_out,
        },
        "fidelity_images": "evaluation set" if evaluation is not None else "calibration set",
    }


def target_record(profile: TargetProfile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "backend": profile.backend,
        "device": profile.device,
        "profile": profile.to_dict(),
    }


def document(
    *,
    command: str,
    device_name: str | None,
    backend: Backend,
    model: dict[str, Any],
    data: dict[str, Any],
    target: dict[str, Any],
    rows: list[dict[str, Any]],
    load_average: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """The results document of a build; ``load_average`` is the machine's load at its start
    and end (1, 5, 15 minutes), so a reader can tell figures measured on a busy machine."""
    environment = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime_version,
        backend.name: backend.version(),
        "edgeresnet": __version__,
    }
    nncf = {(r.get("build") or {}).get("nncf_version") for r in rows} - {None}
    if nncf:
        environment["nncf"] = ", ".join(sorted(nncf))
    return results_document(
        producer={
            "tool": BUILD_TOOL,
            "version": __version__,
            "command": command,
            "python": platform.python_version(),
            **({"load_average": load_average} if load_average else {}),
        },
        device=machine_info(device_name),
        environment=environment,
        model=model,
        data=data,
        target=target,
        rows=rows,
    )
