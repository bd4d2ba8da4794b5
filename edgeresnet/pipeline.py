"""``edgeresnet build``: resolve inputs, run the stages, publish the bundle atomically.

Everything is written into a staging folder next to the output and moved into place only when
the whole build succeeded, so a failed or interrupted build never leaves half an output behind;
finished stages are kept in ``OUT/.cache`` so the next run resumes where the last one stopped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeresnet import publish, results
from edgeresnet.backends import Artifact, Backend, get_backend
from edgeresnet.bench import Job, time_rounds
from edgeresnet.bundle import add_scripts, write_manifest
from edgeresnet.cache import StageCache, stage_key
from edgeresnet.config import TargetProfile, load_target
from edgeresnet.data import ImageSet, Preprocess, default_calibration_dir, discover
from edgeresnet.errors import (
    BackendUnavailableError,
    ConfigError,
    DataError,
    UsageError,
    WeightsError,
)
from edgeresnet.evaluate import fidelity
from edgeresnet.lock import check_unlocked, output_lock
from edgeresnet.models import (
    LoadedModel,
    canonical_arch,
    check_input_size,
    count_macs,
    count_parameters,
    load_model,
)
from edgeresnet.ondevice.common import (
    PER_VARIANT_MODEL,
    peak_rss_mb,
    physical_cores,
    sha256_file,
    write_json,
)
from edgeresnet.progress import console, stage, warn
from edgeresnet.prune import PruneOptions, check_prunable, load_pruned
from edgeresnet.report import write_report
from edgeresnet.stages import ModelVariant, Stages

CACHE = ".cache"


@dataclass(frozen=True)
class BuildRequest:
    target: str
    model: str | None = None  # resnet50, or what a --weights channel spec names
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
    # None: not given, PruneOptions' defaults (given without a ratio above 0, refused)
    prune_importance: str | None = None
    prune_round_to: int | None = None
    prune_stem_round_to: int | None = None
    bn_recalibrate: bool = True
    distill_steps: int = 0
    train: Path | None = None
    fresh: bool = False
    calib_method: str | None = None
    percentile: float | None = None
    max_drop: float | None = None
    sensitivity_images: int | None = None  # --max-drop's held-out images (SENSITIVITY_IMAGES)
    rounds: int = 1
    pairs: int = 0
    command: str = ""


@dataclass
class Inputs:
    """Everything a build needs, validated before anything is written."""

    profile: TargetProfile
    backend: Backend
    loaded: LoadedModel
    preprocess: Preprocess
    calib: ImageSet
    calib_is_default: bool
    evaluation: ImageSet | None  # never calibration images
    calibration_left_out: int  # images of --eval left out because they calibrated
    threads: int
    prune: list[PruneOptions]
    train: ImageSet | None
    heldout: ImageSet | None  # images for the --max-drop search: never calibration images


def build(request: BuildRequest) -> Path:
    """Run the whole build for one target; returns the output folder ``OUT/<target>``."""
    started = time.perf_counter()
    check_unlocked(request.out)
    inputs = resolve(request)
    final = request.out / inputs.profile.name
    try:
        with output_lock(request.out):
            publish.clean_stale(request.out)
            with publish.replaced(final) as staging:
                with publish.work_folder(request.out, final.name) as work:
                    document = _run(request, inputs, staging, work)
                document["producer"]["build_seconds"] = round(time.perf_counter() - started, 1)
                document["producer"]["build_peak_rss_mb"] = peak_rss_mb()
                write_json(staging / publish.RESULTS, document)
                with stage("writing report"):
                    write_report(
                        {f"{final.name}/{publish.RESULTS}": document},
                        staging,
                        command=f"edgeresnet report {final / publish.RESULTS} --out {final}",
                    )
    except OSError as exc:
        raise publish.output_error(
            exc,
            request.out,
            "the build",
            space_hint=f"Free disk space (the stage cache is {request.out / CACHE}) or pass "
            "--out on another disk.",
        ) from None
    return final


# Held-out images of the --max-drop search unless --sensitivity-images says otherwise.
SENSITIVITY_IMAGES = 500
# Quantizers whose activation ranges --calib-method and --percentile choose.
RANGE_CALIBRATED = ("ort-static", "trt-qdq")


def resolve(request: BuildRequest) -> Inputs:
    """Check every input (profile, weights, data, options) before the build writes anything."""
    if request.calib_size < 1:
        raise UsageError(
            f"--calib-size must be at least 1, got {request.calib_size}.",
            hint="Pass the number of calibration images to draw, e.g. 300.",
        )
    publish.check_out(request.out, "the build")
    check_input_size(request.input_size)
    if request.eval_size is not None and request.eval_size < 1:
        raise UsageError(
            f"--eval-size must be at least 1, got {request.eval_size}.",
            hint="Leave it out to evaluate on every image.",
        )
    if request.distill_steps < 0:
        raise UsageError(
            f"--distill-steps must be 0 or more, got {request.distill_steps}.",
            hint="0 turns distillation off; a few hundred steps is typical.",
        )
    if request.threads < 0:
        raise UsageError(
            f"--threads must be 0 or positive, got {request.threads}.",
            hint="0 uses the profile's setting, else one thread per physical core.",
        )
    twice = sorted({r for r in request.prune if request.prune.count(r) > 1})
    if twice:
        raise UsageError(
            f"--prune {','.join(f'{r:g}' for r in request.prune)} gives {twice[0]:g} twice.",
            hint="Give each ratio once.",
        )
    tuning = {
        key: value
        for key, value in (
            ("importance", request.prune_importance),
            ("round_to", request.prune_round_to),
            ("stem_round_to", request.prune_stem_round_to),
        )
        if value is not None
    }
    prune = [PruneOptions(r, **tuning) for r in sorted(set(request.prune) - {0.0})]
    tags = Counter(p.tag for p in prune)
    clash = sorted(t for t, n in tags.items() if n > 1 or t == "p00")
    if clash:
        name = clash[0]
        what = "a pruned variant named p00" if name == "p00" else f"two variants named {name}"
        raise UsageError(
            f"--prune {','.join(f'{r:g}' for r in request.prune)} would give {what}: variants "
            "are named by whole percent.",
            hint="Give ratios at least 0.01 apart, each 0.005 or more.",
        )
    if prune and request.weights.endswith(".channels.json"):
        # Its results would name the dense weights it came from as what was pruned.
        raise UsageError(
            f"--weights {request.weights} is a pruned model already, and --prune prunes a dense "
            "one.",
            hint="Pass the dense weights with --prune, or leave --prune out to build the pruned "
            "model for this target.",
        )
    for_pruning = [
        option
        for option, given in (
            ("--prune-importance", "importance" in tuning),
            ("--prune-round-to", "round_to" in tuning),
            ("--prune-stem-round-to", "stem_round_to" in tuning),
            ("--no-bn-recalibrate", not request.bn_recalibrate),
            ("--distill-steps", bool(request.distill_steps)),
            ("--train", request.train is not None),
        )
        if given
    ]
    if not prune and for_pruning:
        one = len(for_pruning) == 1
        raise UsageError(
            f"{' and '.join(for_pruning)} {'applies' if one else 'apply'} to the models --prune "
            "prunes in this build, and no --prune ratio above 0 was given.",
            hint=f"Add e.g. --prune 0.3, or leave {'it' if one else 'them'} out.",
        )
    if request.train is not None and not request.distill_steps:
        raise UsageError(
            "--train gives distillation its images, and --distill-steps is 0 (off).",
            hint="Add e.g. --distill-steps 300, or leave --train out.",
        )
    if request.eval_size is not None and request.eval is None:
        raise UsageError(
            "--eval-size picks images of --eval, which was not given.",
            hint="Add --eval DIR, or leave --eval-size out.",
        )
    if request.max_drop is not None and not 0 <= request.max_drop <= 100:
        raise UsageError(
            f"--max-drop must be 0 to 100 points, got {request.max_drop}.",
            hint="For example --max-drop 0.5 (top-1 points against FP32).",
        )
    if request.rounds < 1:
        raise UsageError(
            f"--rounds must be at least 1, got {request.rounds}.",
            hint="1 times each artifact once; 3 on a shared, noisy machine.",
        )
    if request.pairs < 0 or request.pairs == 1:
        raise UsageError(
            f"--pairs must be 0 (off) or at least 2, got {request.pairs}.",
            hint="0 turns paired timing off; 500 pairs of ResNet-50 take 10-35 s on 2 cores.",
        )
    if request.sensitivity_images is not None and request.max_drop is None:
        raise UsageError(
            "--sensitivity-images sizes the --max-drop search, and --max-drop was not given.",
            hint="Add --max-drop POINTS, or leave --sensitivity-images out.",
        )
    if request.sensitivity_images is not None and request.sensitivity_images < 1:
        raise UsageError(
            f"--sensitivity-images must be at least 1, got {request.sensitivity_images}.",
            hint=f"{SENSITIVITY_IMAGES} is the default.",
        )
    embedded = None if request.calib else default_calibration_dir()
    publish.check_not_inside(
        Path(request.out),
        (
            ("--calib", request.calib),
            ("the embedded calibration folder", embedded),
            ("--eval", request.eval),
            ("--train", request.train),
        ),
        "the build",
    )
    profile = _with_calibration(load_target(request.target), request)
    _check_profile_threads(profile, request)
    final = Path(request.out) / profile.name
    publish.check_replaceable(
        final,
        results.BUILD_TOOL,
        "the build",
        (
            ("--calib", request.calib),
            ("--eval", request.eval),
            ("--train", request.train),
            ("--weights", request.weights),
        ),
    )
    backend = get_backend(
        profile.backend,
        device=profile.device,
        runtime=profile.runtime,
        where=profile.source,
    )
    with _naming("--calib"):
        pool = discover(request.calib or default_calibration_dir())
        calib = pool.subset(request.calib_size, seed=request.seed)
        calib.check_readable(decode=True)
    evaluation, overlap, found = None, 0, None
    if request.eval is not None:
        with _naming("--eval"):
            found = discover(request.eval)
            evaluation, overlap = _evaluation(found, calib, request)
            evaluation.check_readable(decode=False)
    train = None
    if request.train is not None:
        with _naming("--train"):
            train = discover(request.train)
    trained_on_eval = 0
    if train is not None and evaluation is not None:
        # Distillation must not train on what the pruned model is judged by.
        kept = train.without(evaluation)
        trained_on_eval = len(train) - len(kept)
        if not kept.samples:
            raise UsageError(
                f"Every image of --train ({train.source}) is an evaluation image, so the pruned "
                "model would be judged on the images it was trained on.",
                hint="Pass --train DIR with images that are not in --eval.",
            )
        train = kept
    if train is not None:
        with _naming("--train"):
            train.check_readable(decode=False)
    loaded = _load(request)
    for options in prune:
        check_prunable(loaded.model, options)
    if found is not None:
        with _naming("--eval"):
            _check_labels(found, loaded.num_classes, scored=not loaded.random_weights)
    heldout = None
    if request.max_drop is not None:
        heldout = _heldout(evaluation or pool, calib, request)
    # Warnings once every input is known to be usable, so that an error stands alone.
    own = loaded.own_input_size
    if request.input_size is not None and own is not None and request.input_size != own:
        warn(
            f"--input-size {request.input_size}: the weights were made for {own} px; their "
            f"accuracy at {request.input_size} px is not the one they were trained or recovered for"
        )
    if request.calib is not None and request.calib_size > len(pool):
        warn(
            f"--calib-size {request.calib_size} asks for more images than {pool.source} holds; "
            f"calibrating on all {len(pool)}"
        )
    ema = loaded.weights.get("ema_unused")
    if ema:
        warn(
            f"--weights {loaded.weights.get('name')}: built from the checkpoint's "
            f"'{loaded.weights.get('entry')}'; its EMA copy '{ema}' is not used (to build from "
            f"it, save checkpoint['{ema}'] as a state_dict and pass that file)"
        )
    given = pool if request.calib is not None else None  # the embedded set holds its sources
    for option, images in (("--calib", given), ("--eval", found), ("--train", train)):
        note = images.skipped_note() if images is not None else None
        if note:
            warn(f"{option}: {note}")
    if found is not None and evaluation is not None:
        _warn_about_evaluation(found, evaluation, overlap, request)
    if trained_on_eval:
        warn(
            f"{trained_on_eval} images of --train are evaluation images; distillation does not "
            "train on them"
        )
    return Inputs(
        profile=profile,
        backend=backend,
        loaded=loaded,
        preprocess=loaded.preprocess(request.input_size),
        calib=calib,
        calib_is_default=request.calib is None,
        evaluation=evaluation,
        calibration_left_out=overlap,
        threads=request.threads or profile.benchmark.threads or physical_cores(),
        prune=prune,
        train=train,
        heldout=heldout,
    )


@contextlib.contextmanager
def _naming(option: str) -> Iterator[None]:
    """A data error inside the block names the option that gave the images."""
    try:
        yield
    except DataError as exc:
        raise DataError(f"{option}: {exc.message}", hint=exc.hint) from exc


def _warn_about_evaluation(
    found: ImageSet, evaluation: ImageSet, left_out: int, request: BuildRequest
) -> None:
    if left_out:
        warn(f"{left_out} images of --eval are calibration images; they are left out of it")
    if request.eval_size and request.eval_size > len(evaluation):
        warn(
            f"--eval-size {request.eval_size} asks for more images than the {len(evaluation)} "
            f"of {found.source} left{' after those' if left_out else ''}; evaluating on all of them"
        )
    if not found.labelled:
        warn(
            f"--eval {found.source} has no labels (layout: {found.layout}): agreement with FP32 "
            "is measured on it, top-1 is not"
        )


def _check_labels(found: ImageSet, num_classes: int, *, scored: bool) -> None:
    """Refuse labels that cannot be the model's class indices where accuracy is ``scored``
    (not for random weights)."""
    if not found.labelled:
        return
    top = max(s.label for s in found.samples)
    if top >= num_classes:
        image = next(s.path for s in found.samples if s.label == top)
        folder = (
            f", its class folder {image.parent.name!r}" if found.layout == "class-folders" else ""
        )
        raise DataError(
            f"The evaluation set {found.source} gives {image} class index {top}{folder}, but the "
            f"model has {num_classes} classes.",
            hint="Evaluate on data labelled with the model's classes, or pass the matching "
            "--weights file.",
        )
    present = len(found.class_names or {s.label for s in found.samples})
    if scored and found.ranked and present < num_classes:
        raise DataError(
            f"The evaluation set {found.source} labels its images by the rank of their "
            f"{'class folder' if found.layout == 'class-folders' else 'synset'} among the "
            f"{present} present, which is not their class index for a model of {num_classes} "
            "classes (a part of ImageNet would be scored against the wrong classes).",
            hint="Give the class indices in a labels file (lines `relative/path class_index`, "
            "or a labels.tsv with file and class_index columns), or a folder with every class.",
        )


def _evaluation(found: ImageSet, calib: ImageSet, request: BuildRequest) -> tuple[ImageSet, int]:
    """``--eval`` less every calibration image (the INT8 ranges were fitted to those), then
    ``--eval-size`` of the rest; with how many images were left out."""
    free = found.without(calib)
    if not free.samples:
        raise UsageError(
            f"Every image of --eval ({found.source}) is also a calibration image, so the "
            "evaluation would measure INT8 on the very images its ranges were fitted to.",
            hint="Pass --eval DIR with images that are not in --calib, or a smaller --calib-size.",
        )
    left_out = len(found) - len(free)
    evaluation = free.subset(request.eval_size, seed=request.seed) if request.eval_size else free
    return evaluation, left_out


def _heldout(source: ImageSet, calib: ImageSet, request: BuildRequest) -> ImageSet:
    """Images for the sensitivity ranking and budget search: the evaluation set (else the
    calibration folder's undrawn images), less every calibration image."""
    free = source.without(calib)
    if not free.samples:
        where = "--eval" if request.eval is not None else "--calib"
        raise UsageError(
            f"--max-drop needs images that were not used for calibration, and every image of "
            f"{where} ({source.source}) is a calibration image.",
            hint="Pass --eval DIR with images of your task that are not in --calib, or a "
            "smaller --calib-size.",
        )
    heldout = free.subset(request.sensitivity_images or SENSITIVITY_IMAGES, seed=request.seed + 1)
    with _naming("--eval" if request.eval is not None else "--calib"):
        heldout.check_readable(decode=False)
    return heldout


def _load(request: BuildRequest) -> LoadedModel:
    """The model: ``--weights`` may also be a pruned model's ``model.channels.json``."""
    if not request.weights.endswith(".channels.json"):
        return load_model(request.model or "resnet50", request.weights, seed=request.seed)
    spec_path = Path(request.weights)
    model, spec = load_pruned(spec_path)
    if request.model is not None and spec["arch"] != canonical_arch(request.model):
        raise WeightsError(
            f"The pruned model {spec_path} is a {spec['arch']}, not {request.model}.",
            hint=f"Pass --model {spec['arch']}, or leave --model out.",
        )
    weights = {
        "kind": "file",
        "name": spec_path.name,
        "path": str(spec_path.resolve()),
        "sha256": sha256_file(spec_path.with_name("model.safetensors")),
        "pruned": True,
        # The sizes the model was pruned (and its weights trained) at, where the spec says.
        "preprocess": spec.get("preprocess"),
        # The dense weights it was pruned from; random ones keep their results marked random.
        "pruned_from": spec.get("pruned_from"),
    }
    return LoadedModel(model, spec["arch"], spec["num_classes"], spec["width"], weights)


def _check_profile_threads(profile: TargetProfile, request: BuildRequest) -> None:
    """The profile's threads, where --threads leaves them in charge, as --threads is checked:
    more threads than this machine's logical cores only queue for the cores."""
    wanted, cores = profile.benchmark.threads, os.cpu_count() or 1
    if request.threads == 0 and wanted > cores:
        raise ConfigError(
            f"{profile.source} [benchmark]: threads = {wanted} is more than this machine's "
            f"{cores} logical cores.",
            hint=f"Pass --threads 1 to {cores} for this build, or set threads = 0 (one per "
            "physical core) in the profile.",
        )


def _with_calibration(profile: TargetProfile, request: BuildRequest) -> TargetProfile:
    """The profile with --calib-method / --percentile applied, where they mean something."""
    changes: dict[str, Any] = {}
    if request.calib_method is not None:
        changes["calibrate_method"] = request.calib_method
    if request.percentile is not None:
        changes["percentile"] = request.percentile
    if not changes:
        return profile
    method = profile.quantization.method
    if method not in RANGE_CALIBRATED:
        raise UsageError(
            f"--calib-method and --percentile choose ONNX Runtime's range calibration, but the "
            f"{profile.name} target quantizes with {method}, which sets its own ranges.",
            hint="Leave them out for this target.",
        )
    quantization = replace(profile.quantization, **changes)
    if request.percentile is not None and quantization.calibrate_method != "percentile":
        raise UsageError(
            f"--percentile applies to percentile calibration, and {profile.name} calibrates "
            f"with {quantization.calibrate_method}.",
            hint="Add --calib-method percentile, or leave --percentile out.",
        )
    if not 90.0 <= quantization.percentile <= 100.0:
        raise UsageError(
            f"--percentile must be between 90 and 100, got {quantization.percentile}.",
            hint="Typical values are 99.99 or 99.999.",
        )
    return replace(profile, quantization=quantization)


def _run(request: BuildRequest, inputs: Inputs, staging: Path, work: Path) -> dict[str, Any]:
    profile, pre, loaded = inputs.profile, inputs.preprocess, inputs.loaded
    if inputs.calib_is_default:
        warn(
            f"calibrating on the embedded default set ({len(inputs.calib)} generic photos). "
            "Production INT8 wants ~300 images of your deployment's own data: pass --calib DIR."
        )
    calib_sha = inputs.calib.sha256()
    load_start = list(os.getloadavg())
    stages = Stages(
        arch=loaded.arch,
        profile=profile,
        backend=inputs.backend,
        preprocess=pre,
        calib=inputs.calib,
        calib_sha=calib_sha,
        threads=inputs.threads,
        cache=StageCache(request.out / CACHE, reuse=not request.fresh),
        work=work,
    )
    check_set = inputs.evaluation or inputs.calib
    dense = ModelVariant(
        "",
        loaded.model,
        stage_key(
            "model",
            arch=loaded.arch,
            classes=loaded.num_classes,
            width=loaded.width,
            weights=loaded.weights,
        ),
    )
    models = [dense] + [
        stages.pruned(
            dense,
            options,
            staging / options.tag,
            bn_recalibrate=request.bn_recalibrate,
            distill_steps=request.distill_steps,
            train=inputs.train,
            holdout_set=check_set,
            pruned_from=loaded.origin,
        )
        for options in inputs.prune
    ]
    artifacts: list[Artifact] = []
    owners: list[ModelVariant] = []
    reference = None
    for mv in models:
        exported = stages.exported(mv, check_set)
        # The dense model's verified FP32 ONNX in ONNX Runtime is the reference every variant,
        # pruned ones included, is held to.
        reference = reference or stages.reference(exported)
        folder = staging / mv.tag if mv.tag else staging
        made = [stages.compiled(exported, p, folder, mv.variant(p)) for p in profile.precisions]
        if request.max_drop is not None and inputs.heldout and "int8" in profile.precisions:
            made.append(
                stages.mixed_int8(
                    exported,
                    folder / "mixed",
                    mv.variant("int8-mixed"),
                    max_drop=request.max_drop,
                    reference=stages.reference(exported),
                    heldout=inputs.heldout,
                    use_labels=not loaded.random_weights,
                )
            )
        for artifact in made:
            if mv.prune:
                artifact.build["prune"] = mv.prune
            artifacts.append(artifact)
            owners.append(mv)
    with stage(f"evaluating {len(artifacts)} artifacts on {len(check_set)} images"):
        logits, labels, notes = stages.logits(artifacts, reference, check_set)
    # Accuracy only on a labelled --eval set, never on calibration images, and never for random
    # weights, whose "accuracy" means nothing.
    scored = inputs.evaluation is not None and not loaded.random_weights
    own_fp32 = {
        a.variant: mv.variant("fp32")
        for a, mv in zip(artifacts, owners, strict=True)
        if mv.tag and a.precision != "fp32"
    }
    rows = results.measured_rows(
        artifacts, logits, labels, notes, scored=scored and labels is not None, own_fp32=own_fp32
    )
    _check_budgets(artifacts, owners, rows, logits)
    for mv, row in zip(owners, rows, strict=True):
        row["params"] = count_parameters(mv.model)
        row["macs"] = count_macs(mv.model, pre.crop_size)
        row["bench"] = None
    jobs = [_bench_job(stages, a, row) for a, row in zip(artifacts, rows, strict=True)]
    time_rounds(jobs, request.rounds)
    references = _references(artifacts, owners)
    if request.pairs:
        _time_pairs(stages, artifacts, rows, references, request.pairs)
    if stages.reused:
        times = Counter(stages.reused)  # a benchmark is reused once a round
        reused = [n if times[n] == 1 else f"{n} ({times[n]} rounds)" for n in times]
        console.print(
            f"  resumed from the cache in {request.out / CACHE}: "
            f"{', '.join(reused)} (pass --fresh to redo every stage)"
        )
    load = {"start": load_start, "end": list(os.getloadavg())}
    document = _document(request, inputs, artifacts, rows, references, staging, calib_sha, load)
    # What an earlier run measured or made: the figures of these stages predate this run.
    document["producer"]["reused_from_cache"] = sorted(set(stages.reused))
    return document


def _references(artifacts: list[Artifact], owners: list[ModelVariant]) -> dict[str, str]:
    """Which variant each is best judged against, call for call (``--pairs``).

    A pruned variant against the dense one of the same precision (what pruning buys), any
    other against FP32 (what the precision buys).
    """
    built = {a.variant for a in artifacts}
    references = {}
    for artifact, mv in zip(artifacts, owners, strict=True):
        name = artifact.variant.removeprefix(f"{mv.tag}-") if mv.tag else "fp32"
        if name in built and name != artifact.variant:
            references[artifact.variant] = name
    return references


def _time_pairs(
    stages: Stages,
    artifacts: list[Artifact],
    rows: list[dict[str, Any]],
    references: dict[str, str],
    pairs: int,
) -> None:
    """Add ``bench.paired`` to each timed row that has a timed reference."""
    by_variant = {a.variant: (a, row) for a, row in zip(artifacts, rows, strict=True)}
    for artifact, row in by_variant.values():
        reference, ref_row = by_variant.get(references.get(artifact.variant, ""), (None, None))
        if reference is None or ref_row is None or not (row["bench"] and ref_row["bench"]):
            continue
        with stage(f"timing {artifact.variant} against {reference.variant} ({pairs} pairs)"):
            try:
                paired = stages.paired(artifact, reference, pairs)
            except BackendUnavailableError as exc:
                warn(f"{artifact.variant} not timed against {reference.variant}: {exc.message}")
                continue
        # The script names the files it was given: paths in the build's scratch folder.
        kept = {k: v for k, v in paired.items() if not k.endswith("_file")}
        row["bench"]["paired"] = {"reference": reference.variant, **kept}


def _bench_job(stages: Stages, artifact: Artifact, row: dict[str, Any]) -> Job:
    """Time ``artifact`` into ``row``; each call is the next round."""
    rounds = itertools.count()
    label = f"{artifact.variant} ({stages.threads} threads)"
    return Job(label, row, lambda: stages.benchmark(artifact, round_index=next(rounds)))


def _check_budgets(
    artifacts: list[Artifact],
    owners: list[ModelVariant],
    rows: list[dict[str, Any]],
    logits: dict[str, np.ndarray | None],
) -> None:
    """Hold each accuracy-aware artifact to its budget on the whole evaluation set too.

    The budget is against the FP32 model the artifact was quantized from, as in the search: a
    pruned model's own FP32, not the dense reference that the row's fidelity compares with. The
    drop is in top-1 points where the evaluation has labels, else in points of disagreement with
    that FP32. Those are never fewer than the top-1 points lost, so a top-1 budget that the
    disagreement exceeds is unknown on the full set (``met_on_full_set`` None), not broken.
    """
    by_variant = {a.variant: row for a, row in zip(artifacts, rows, strict=True)}
    for artifact, mv, row in zip(artifacts, owners, rows, strict=True):
        record = artifact.build.get("accuracy_aware")
        base = by_variant.get(mv.variant("fp32"))
        out = logits.get(artifact.variant)
        own = logits.get(mv.variant("fp32"))
        if own is None and not mv.tag:  # a profile without fp32: the exported dense FP32
            own = logits["reference"]
        if record is None or out is None:
            continue
        if row["accuracy"] and base is not None and base["accuracy"]:
            drop = base["accuracy"]["top1"] - row["accuracy"]["top1"]
            metric = "top-1 points"
        elif own is not None:
            drop = 100.0 - fidelity(own, out)["top1_agreement"]
            metric = "top-1 agreement points"
        else:
            continue
        met = drop <= record["budget_points"]
        bounded = metric != record["metric"] and not met
        record["full_set_drop"] = round(drop, 3)
        record["full_set_metric"] = metric
        record["met_on_full_set"] = None if bounded else met
        kept = len(record["float_layers"])
        verdict = "unknown (no labels)" if bounded else "met" if met else "NOT met"
        row["notes"].append(
            f"accuracy budget {record['budget_points']} {record['metric']} {verdict} on all "
            f"evaluation images (drop {drop:.2f} {metric}; {kept} layers kept in float)"
        )
        if record["met_on_full_set"] is False:
            warn(
                f"{artifact.variant}: the accuracy budget holds on the held-out images but not "
                f"on all of them (drop {drop:.2f} > {record['budget_points']})"
            )


def _document(
    request: BuildRequest,
    inputs: Inputs,
    artifacts: list[Artifact],
    measured: list[dict[str, Any]],
    references: dict[str, str],
    staging: Path,
    calib_sha: str,
    load_average: dict[str, list[float]],
) -> dict[str, Any]:
    model = results.model_record(inputs.loaded, inputs.preprocess)
    data = results.data_record(
        inputs.calib,
        calib_sha,
        default=inputs.calib_is_default,
        seed=request.seed,
        evaluation=inputs.evaluation,
        calibration_left_out=inputs.calibration_left_out,
    )
    target = results.target_record(inputs.profile)
    rows = [
        {
            "variant": a.variant,
            "precision": a.precision,
            "artifact": results.artifact_record(a, staging),
            "build": a.build,
            **row,
        }
        for a, row in zip(artifacts, measured, strict=True)
    ]
    add_scripts(staging, inputs.backend.ondevice_scripts(inputs.profile))
    write_manifest(
        staging,
        files=[p for p in staging.rglob("*") if p.is_file()],
        variants=[
            {
                "variant": r["variant"],
                "precision": r["precision"],
                "file": r["artifact"]["file"],
                "artifact": r["artifact"],
                "reference": references.get(r["variant"]),
                # A pruned variant's own size and compute, which the device's rows carry.
                **{k: r[k] for k in PER_VARIANT_MODEL if k in r},
            }
            for r in rows
        ],
        model=model,
        data=data,
        target={k: v for k, v in target.items() if k != "profile"},
        options={"threads": inputs.threads, "seed": request.seed},
    )
    return results.document(
        command=request.command,
        device_name=request.device_name,
        backend=inputs.backend,
        model=model,
        data=data,
        target=target,
        rows=rows,
        load_average=load_average,
    )
