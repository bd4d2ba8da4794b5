"""``edgeresnet bench --compare-peers``: measure the by-hand peers side by side in one run.

Makes each peer from the same model and calibration images as a build (``byhand.PEERS``),
measures its fidelity against the FP32 ONNX in ONNX Runtime (the build's reference), and times it
in a fresh process with the same script and settings as edgeresnet's own artifacts. ``against``
bundles are re-timed in the same run, so the report's ratios come from one stretch of machine load.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from edgeresnet import __version__, publish
from edgeresnet.bench import Job, time_rounds
from edgeresnet.config import BenchmarkOptions, ExportOptions
from edgeresnet.data import ImageSet, Preprocess, default_calibration_dir, discover
from edgeresnet.errors import EdgeResnetError, OutputError, UsageError
from edgeresnet.evaluate import collect_logits, fidelity
from edgeresnet.export import export_onnx
from edgeresnet.lock import check_unlocked, output_lock
from edgeresnet.models import (
    LoadedModel,
    check_input_size,
    count_macs,
    count_parameters,
    load_model,
)
from edgeresnet.ondevice.common import (
    machine_info,
    physical_cores,
    results_document,
    sha256_file,
    write_json,
)
from edgeresnet.peers import byhand, measure
from edgeresnet.peers.against import against_jobs, check_against
from edgeresnet.peers.byhand import PEERS, Peer
from edgeresnet.progress import stage, warn
from edgeresnet.report import write_report
from edgeresnet.report.rows import crowded
from edgeresnet.results import data_record, model_identity, model_record

BATCH = 16
TOOL = "edgeresnet bench --compare-peers"  # the producer its results.json names


@dataclass(frozen=True)
class PeerRequest:
    model: str = "resnet50"
    weights: str = "random"
    calib: Path | None = None
    calib_size: int = 300
    input_size: int | None = None
    threads: int = 0
    seed: int = 0
    out: Path = Path("build/peers")
    device_name: str | None = None
    against: tuple[Path, ...] = ()
    benchmark: BenchmarkOptions = field(default_factory=BenchmarkOptions)
    rounds: int = 1
    command: str = ""


def compare_peers(request: PeerRequest) -> Path:
    """Build, verify and time every peer; write ``OUT/results.json`` and a report. Returns OUT."""
    if request.calib_size < 1:
        raise UsageError(
            f"--calib-size must be at least 1, got {request.calib_size}.",
            hint="Pass the number of calibration images to draw, e.g. 300.",
        )
    check_input_size(request.input_size)
    if request.threads < 0:
        raise UsageError(f"--threads must be 0 (one per core) or positive, got {request.threads}.")
    if request.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {request.rounds}.")
    for bundle in request.against:
        if not (bundle / "manifest.json").is_file():
            raise UsageError(
                f"--against {bundle} is not an edgeresnet bundle (no manifest.json).",
                hint="Pass the folder a build wrote, e.g. build/onnx.",
            )
    check_unlocked(request.out.parent)
    publish.check_out(request.out, "the peer comparison")
    embedded = None if request.calib else default_calibration_dir()
    publish.check_not_inside(
        request.out,
        (
            ("--calib", request.calib),
            ("the embedded calibration folder", embedded),
        ),
        "the peer comparison",
    )
    publish.check_replaceable(
        request.out,
        TOOL,
        "the peer comparison",
        (("--calib", request.calib), ("--weights", request.weights))
        + tuple(("--against", bundle) for bundle in request.against),
    )
    threads = request.threads or physical_cores()
    pool = discover(request.calib or default_calibration_dir())
    images = pool.subset(request.calib_size, seed=request.seed)
    note = pool.skipped_note() if request.calib is not None else None
    if note:
        warn(f"--calib: {note}")
    loaded = load_model(request.model, request.weights, seed=request.seed)
    pre = loaded.preprocess(request.input_size)
    for bundle in request.against:  # before minutes of work: ratios of two models mean nothing
        check_against(bundle, model_identity(loaded, pre))
    staging = None
    try:
        with _publishing(request.out) as staging:
            model = model_record(loaded, pre)  # in the work folder (see model_record)
            _run(request, loaded, pre, model, images, threads, staging)
    except OSError as exc:
        raise publish.output_error(exc, request.out, "the peer comparison") from None
    except OutputError as exc:  # the report writer names the staging folder: name --out instead
        message = exc.message.replace(str(staging), str(request.out)) if staging else exc.message
        raise OutputError(message, hint=exc.hint) from None
    return request.out


@contextmanager
def _publishing(out: Path) -> Iterator[Path]:
    """A staging folder that replaces ``out`` when the block succeeds, written as a build writes.

    The staging and work folders lie beside ``out``, so its parent is what a build's ``--out`` is
    to the build: locked, so that two runs (or a build into the parent) do not sweep each other's
    folders; swept of what a killed run left there; and the temporary folder of this process and
    its timing processes while the block runs, so a ``kill -9`` leaves nothing in the system's.
    """
    with output_lock(out.parent):
        publish.clean_stale(out.parent, out.name)  # the folder holding --out is the user's
        with publish.replaced(out) as staging, publish.work_folder(out.parent, out.name):
            yield staging


def _run(
    request: PeerRequest,
    loaded: LoadedModel,
    pre: Preprocess,
    model: dict[str, Any],
    images: ImageSet,
    threads: int,
    staging: Path,
) -> None:
    """Make, verify and time the peers (and ``--against`` bundles); write both files in staging."""
    load_start = list(os.getloadavg())
    readings = [load_start[0]]  # every 1-minute load average taken during the run
    if load_start[0] > 1:  # before the timing starts, the threads it will use are not counted
        warn(
            f"the 1-minute load average is {load_start[0]:.2f} before any timing: other "
            "processes compete for the cores and can distort the ratios; the report will say so "
            "if the load stays high"
        )
    with stage(f"preprocessing {len(images)} calibration images"):
        calib = [x for batch, _ in images.batches(pre, BATCH) for x in batch]
    rows, jobs = _peers(request, loaded, pre, calib, staging, threads)
    for bundle in request.against:
        again = against_jobs(bundle, threads=threads, options=request.benchmark)
        rows += [job.row for job in again]
        jobs += again
    _same_file(rows)
    time_rounds(
        [Job(j.label, j.row, partial(_timed, j.run, readings)) for j in jobs], request.rounds
    )
    load_end = list(os.getloadavg())
    readings.append(load_end[0])
    producer = {
        "tool": TOOL,
        "version": __version__,
        "command": request.command,
        "python": platform.python_version(),
        "load_average": {"start": load_start, "end": load_end},
        "threads": threads,
    }
    warning = load_warning(max(readings), threads)
    if warning:
        producer["load_warning"] = warning
        warn(warning)
        for row in rows:
            if row["bench"] is not None:
                row["notes"].append(_row_load_note(row["bench"], max(readings), threads))
    document = results_document(
        producer=producer,
        device=machine_info(request.device_name),
        environment=_environment(),
        model=model,
        data={
            **data_record(
                images,
                images.sha256(),
                default=request.calib is None,
                seed=request.seed,
                evaluation=None,
            ),
            "fidelity_images": "calibration set",
        },
        target={"name": "peers", "backend": "peers", "device": "CPU"},
        rows=rows,
    )
    write_json(staging / publish.RESULTS, document)
    write_report(
        {str(request.out / publish.RESULTS): document},
        staging,
        command=f"edgeresnet report {request.out / publish.RESULTS} --out {request.out}",
    )


def load_warning(peak: float, threads: int) -> str | None:
    """The warning for a run whose 1-minute load average reached ``peak``; None when quiet.

    The timing's own threads count in the load; more than one runnable process beyond them
    means others competed for the cores: they only ever slow a timing down, and by how much
    differs from row to row, so a ratio can be an artefact of the load (seen: PyTorch eager
    FP32 at 2623 ms, 62 ms when quiet).
    """
    if not crowded(peak, threads):
        return None
    return (
        f"timed under load: the 1-minute load average reached {peak:.2f} during this peer "
        f"comparison, more than the {_threads(threads)} in use and one other process, so "
        "other processes competed for the cores and these figures and ratios may be artefacts of "
        "that load; re-run on a quiet machine (--rounds 3 keeps each row's least disturbed round)"
    )


def _row_load_note(bench: dict[str, Any], peak: float, threads: int) -> str:
    load = bench.get("load_average") or {}
    own = [v[0] for v in (load.get("start"), load.get("end")) if v]
    while_timed = f"{max(own):.2f} while this row was timed, " if own else ""
    return (
        f"timed under load: 1-minute load average {while_timed}up to {peak:.2f} during the "
        f"peer comparison, above the {_threads(threads)} in use plus one; "
        "this figure and its ratios may be an artefact of other processes"
    )


def _threads(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def _timed(run: Callable[[], dict[str, Any]], readings: list[float]) -> dict[str, Any]:
    """Run one timing and record the machine's load average at its start and end."""
    start = list(os.getloadavg())
    bench = run()
    end = list(os.getloadavg())
    readings += [start[0], end[0]]
    return {**bench, "load_average": {"start": start, "end": end}}


def _same_file(rows: list[dict[str, Any]]) -> None:
    """Say in ORT FP32's "how" whether it times edgeresnet's fp32 file itself (same sha256)."""
    peer = next(
        (r for r in rows if r["variant"] == byhand.ORT_FP32.variant and r.get("peer")), None
    )
    if peer is None:
        return
    counterpart = next(
        (
            r
            for r in rows
            if r.get("remeasured")
            and (r["remeasured"].get("backend"), r["variant"]) in byhand.ORT_FP32.counterparts
        ),
        None,
    )
    sha = (peer.get("artifact") or {}).get("sha256")
    peer["peer"]["how"] = byhand.ort_fp32_how(sha, counterpart)


def _peers(
    request: PeerRequest,
    loaded: LoadedModel,
    pre: Preprocess,
    calib: list[np.ndarray],
    out: Path,
    threads: int,
) -> tuple[list[dict[str, Any]], list[Job]]:
    """Make every peer and measure its fidelity in-process; returns rows and timing jobs."""
    fp32 = out / "model.fp32.onnx"
    with stage("exporting the FP32 ONNX the peers start from"):
        export = export_onnx(loaded.model, fp32, input_size=pre.crop_size, options=ExportOptions())
    weights_file = out / "pytorch.fp32.pt"
    torch.save(loaded.model.state_dict(), weights_file)
    files: dict[str, list[Path]] = {
        byhand.PYTORCH.variant: [weights_file],
        byhand.ORT_FP32.variant: [fp32],
        byhand.OPENVINO_F32.variant: [fp32],
    }
    builds: dict[str, dict[str, Any]] = {
        byhand.PYTORCH.variant: {"file": weights_file.name, "torch_version": torch.__version__},
        byhand.ORT_FP32.variant: {"from": "exported FP32 ONNX", "export": export.to_dict()},
        byhand.OPENVINO_F32.variant: {"from": "exported FP32 ONNX", "hint": "f32"},
    }
    notes: dict[str, list[str]] = {p.variant: [] for p in PEERS}
    makers = (
        (byhand.ORT_DEFAULT, out / "ort-default.int8.onnx", byhand.ort_quantize_static_defaults),
        (byhand.NNCF_DEFAULT, out / "nncf-default.int8.xml", byhand.nncf_quantize_defaults),
    )
    for peer, path, make in makers:
        with stage(f"making {peer.label} on {len(calib)} calibration images"):
            try:
                builds[peer.variant] = make(fp32, path, calib)
                files[peer.variant] = [p for p in (path, path.with_suffix(".bin")) if p.is_file()]
            except (ImportError, EdgeResnetError) as exc:
                warn(f"{peer.label} could not be made here: {exc}")
                notes[peer.variant].append(f"not built here: {exc}")
    if not measure.has_openvino():
        notes[byhand.OPENVINO_F32.variant].append(
            'not measured here: OpenVINO is not installed (pip install "edgeresnet[openvino]")'
        )
    sessions = measure.sessions(loaded.model, files, threads)
    timing = measure.Timing(threads, pre.crop_size, request.benchmark)
    model_args = ["--model", request.model, "--weights", request.weights]
    model_args += ["--seed", str(request.seed)]
    with stage(f"fidelity of {len(sessions) - 1} peers on {len(calib)} images"):
        batches = ((np.stack(calib[i : i + BATCH]), None) for i in range(0, len(calib), BATCH))
        logits, _ = collect_logits(sessions, batches, total=len(calib))
    rows, jobs = [], []
    for peer in PEERS:
        row = _row(peer, files.get(peer.variant), builds.get(peer.variant), notes[peer.variant])
        row["params"] = count_parameters(loaded.model)
        row["macs"] = count_macs(loaded.model, pre.crop_size)
        if peer.variant in logits:
            row["fidelity"] = {
                "reference": "exported FP32 ONNX in onnxruntime",
                **fidelity(logits["reference"], logits[peer.variant]),
            }
        if peer.variant in files and not row["notes"]:
            run = partial(measure.bench, peer, files[peer.variant][0], timing, model=model_args)
            jobs.append(Job(peer.label, row, run))
        rows.append(row)
    return rows, jobs


def _row(
    peer: Peer, files: list[Path] | None, build: dict[str, Any] | None, notes: list[str]
) -> dict[str, Any]:
    artifact = None
    if files:
        artifact = {
            "file": files[0].name,
            "bytes": sum(p.stat().st_size for p in files),
            "sha256": sha256_file(files[0]),
        }
    return {
        "variant": peer.variant,
        "precision": peer.precision,
        "artifact": artifact,
        "build": build,
        "peer": {
            "label": peer.label,
            "runtime": peer.runtime,
            "how": peer.how,
            "counterparts": [{"backend": b, "variant": v} for b, v in peer.counterparts],
        },
        "accuracy": None,
        "fidelity": None,
        "bench": None,
        "notes": list(notes),
    }


def _environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    for package in ("openvino", "nncf"):
        try:
            env[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    env["edgeresnet"] = __version__
    return env
