"""The build's stages, each resumable from the content-addressed cache.

prune -> export (verified against PyTorch) -> compile per precision -> evaluate -> benchmark.
A stage whose key is cached is not run again; its key covers everything that decides its
output, so a changed model, data set, option or tool version runs it afresh.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeresnet import __version__, sensitivity
from edgeresnet.backends import Artifact, Backend, CalibrationBatches, Session, get_backend
from edgeresnet.cache import StageCache, stage_key
from edgeresnet.config import TargetProfile
from edgeresnet.data import ImageSet, Preprocess
from edgeresnet.errors import BackendUnavailableError, VerificationError
from edgeresnet.evaluate import collect_logits, fidelity
from edgeresnet.export import export_onnx
from edgeresnet.ondevice.common import machine_info, with_load_average
from edgeresnet.progress import progress_bar, stage, warn
from edgeresnet.prune import PruneOptions, channel_spec, load_pruned, prune, save_pruned
from edgeresnet.recover import STEADY_BN_IMAGES, DistillOptions, distill, reestimate_batchnorm

BATCH = 16
# FP32 ONNX must reproduce PyTorch: agreement on every image and logits within float noise.
MIN_EXPORT_SQNR_DB = 60.0


@dataclass
class ModelVariant:
    """The dense model or one pruned copy, and what was done to it."""

    tag: str  # "" for the dense model, "p30" for 30 % pruned
    model: torch.nn.Module
    key: str  # identity of this model's weights, for downstream cache keys
    prune: dict[str, Any] | None = None

    def variant(self, precision: str) -> str:
        return f"{self.tag}-{precision}" if self.tag else precision


@dataclass
class Exported:
    path: Path
    record: dict[str, Any]
    key: str


@dataclass
class Stages:
    """Shared context of one build's stages."""

    arch: str
    profile: TargetProfile
    backend: Backend
    preprocess: Preprocess
    calib: ImageSet
    calib_sha: str
    threads: int
    cache: StageCache
    work: Path
    reused: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ prune
    def pruned(
        self,
        dense: ModelVariant,
        options: PruneOptions,
        folder: Path,
        *,
        bn_recalibrate: bool,
        distill_steps: int,
        train: ImageSet | None,
        holdout_set: ImageSet,
        pruned_from: dict[str, Any],
    ) -> ModelVariant:
        """Prune the dense model and recover as asked; saved as channel spec + weights, the
        spec naming ``pruned_from``, the provenance of the dense weights.

        Distillation keeps the step with the lowest loss on held-out images: those of
        ``holdout_set`` not trained on, else up to 32 (at most half) set aside from the training
        images.
        """
        train = train or self.calib
        held = None
        if distill_steps:
            held, train = _held_out(holdout_set, train)
        key = stage_key(
            "prune",
            model=dense.key,
            options=options.to_dict(),
            bn=bn_recalibrate,
            calib=self.calib_sha,
            distill=distill_steps,
            train=train.sha256() if distill_steps else None,
            holdout=held.sha256() if held else None,
            pruned_from=pruned_from,
            size=self.preprocess.crop_size,
            version=__version__,
        )
        entry = self.cache.entry(key)
        if entry is not None:
            cached, record = entry
            self.reused.append(f"pruned model {options.tag}")
            model, _ = load_pruned(cached / "model.channels.json")
            _copy_tree(cached, folder)
            return ModelVariant(options.tag, model, key, record)
        pre = self.preprocess
        with stage(
            f"pruning {options.ratio:.0%} of channels ({options.importance}, "
            f"multiples of {options.round_to}"
            + (f", the stem's of {options.stem_round_to})" if options.stem_round_to else ")")
        ):
            model = prune(dense.model, options, input_size=pre.crop_size)
        record = {**options.to_dict(), "recovery": []}
        if bn_recalibrate:
            with stage("re-estimating BatchNorm statistics on the calibration images"):
                seen = reestimate_batchnorm(model, images(self.calib, pre))
            record["recovery"].append({"method": "batchnorm-reestimation", "images": seen})
            if seen < STEADY_BN_IMAGES:
                warn(
                    f"BatchNorm statistics of {options.tag} re-estimated on only {seen} "
                    f"image(s); fewer than {STEADY_BN_IMAGES} give noisy statistics. Pass --calib "
                    "with a few hundred images of your data, or --no-bn-recalibrate to keep the "
                    "dense model's statistics"
                )
        if held is not None:
            holdout, _ = next(held.subset(32, seed=1).batches(pre, 32))
            with stage(
                f"distilling from the unpruned model ({distill_steps} steps on "
                f"{len(train)} unlabelled images)"
            ):
                result = distill(
                    model,
                    dense.model,
                    lambda epoch: images(train.shuffled(epoch), pre),
                    holdout,
                    DistillOptions(steps=distill_steps),
                )
            record["recovery"].append(
                {
                    "method": "distillation",
                    "images": len(train),
                    "source": train.source,
                    "holdout_images": min(32, len(held)),
                    "holdout_apart_from_training": held is not train,
                    **result,
                }
            )
            if result["interrupted"]:
                key = stage_key("interrupted", key=key)  # a cut-short run is never reused
        sizes = {"resize_size": pre.resize_size, "crop_size": pre.crop_size}
        spec = channel_spec(
            model, **_identity(dense.model), preprocess=sizes, pruned_from=pruned_from
        )
        save_pruned(model, spec, folder)
        self.cache.store_entry(key, folder, record)
        return ModelVariant(options.tag, model, key, record)

    # ----------------------------------------------------------------- export
    def exported(self, mv: ModelVariant, check_set: ImageSet) -> Exported:
        """FP32 ONNX of ``mv``, verified to reproduce its PyTorch model on real images."""
        export = self.profile.export
        key = stage_key(
            "export",
            model=mv.key,
            exporter=export.exporter,
            opset=export.opset,
            size=self.preprocess.crop_size,
            torch=torch.__version__,
            version=__version__,
        )
        entry = self.cache.entry(key)
        if entry is None:
            label = f"{self.arch}{' ' + mv.tag if mv.tag else ''}"
            with stage(f"exporting {label} to ONNX ({export.exporter}, opset {export.opset})"):
                with tempfile.TemporaryDirectory(dir=self.work) as tmp:
                    path = Path(tmp) / "model.fp32.onnx"
                    record = export_onnx(
                        mv.model, path, input_size=self.preprocess.crop_size, options=export
                    ).to_dict()
                    record["verified"] = self._verify_export(mv.model, path, check_set)
                    cached = self.cache.store_entry(key, Path(tmp), record)
        else:
            self.reused.append(f"ONNX export {mv.tag or 'dense'}")
            cached, record = entry
        return Exported(cached / "model.fp32.onnx", record, key)

    def reference(self, exported: Exported) -> Session:
        return get_backend("onnxruntime").load(
            Artifact("reference", "fp32", exported.path), threads=self.threads
        )

    def _verify_export(self, model: torch.nn.Module, path: Path, images_: ImageSet) -> dict:
        x, _ = next(images_.subset(min(8, len(images_)), seed=0).batches(self.preprocess, 8))
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        if not np.isfinite(expected).all():
            raise VerificationError(
                f"The model's outputs are not finite: PyTorch gives NaN or infinite logits on "
                f"{_non_finite(expected)} of {len(x)} check images, so the export cannot be "
                "checked and nothing built from it would work.",
                hint="Check the weights: a BatchNorm running_var below 0, or weights from a "
                "training run that diverged, make a model output NaN. Use weights that give "
                "finite outputs in PyTorch.",
            )
        session = get_backend("onnxruntime").load(Artifact("check", "fp32", path), threads=1)
        got = np.asarray(session.run(x), dtype=np.float32)
        if not np.isfinite(got).all():
            raise VerificationError(
                f"The exported FP32 ONNX's outputs are not finite: ONNX Runtime gives NaN or "
                f"infinite logits on {_non_finite(got)} of {len(x)} check images, where "
                "PyTorch's are finite.",
                hint="Try the other exporter in the target profile ([export] exporter).",
            )
        result = fidelity(expected, got)
        sqnr = result["sqnr_db"]
        # Written so that a NaN metric fails the check: every comparison with NaN is False.
        agrees = result["top1_agreement"] >= 100.0
        close = sqnr is None or sqnr >= MIN_EXPORT_SQNR_DB
        if not (agrees and close):
            raise VerificationError(
                f"The exported FP32 ONNX does not reproduce PyTorch: {result}.",
                hint="Try the other exporter in the target profile ([export] exporter).",
            )
        return result

    # ---------------------------------------------------------------- compile
    def compiled(
        self, exported: Exported, precision: str, folder: Path, variant: str, **options: Any
    ) -> Artifact:
        """The backend's artifact of ``precision``, copied from the cache into ``folder``."""
        key = stage_key(
            "compile",
            export=exported.key,
            backend=self.backend.name,
            backend_version=self.backend.version(),
            device=self.profile.device,
            precision=precision,
            quantization=self.profile.to_dict()["quantization"],
            runtime=self.profile.runtime,
            calib=self.calib_sha,
            options=options,
            version=__version__,
        )
        entry = self.cache.entry(key)
        if entry is None:
            with stage(f"compiling {variant} for {self.profile.name} ({self.backend.name})"):
                with tempfile.TemporaryDirectory(dir=self.work) as tmp:
                    artifact = self.backend.compile(
                        exported.path,
                        precision,
                        Path(tmp),
                        profile=self.profile,
                        calibration=calibration(self.calib, self.preprocess),
                        **options,
                    )
                    record = {
                        "file": artifact.file.name,
                        "precision": artifact.precision,
                        "build": artifact.build,
                    }
                    self.cache.store_entry(key, Path(tmp), record)
                    _copy_tree(Path(tmp), folder)
        else:
            cached, record = entry
            self.reused.append(f"{variant} artifact")
            _copy_tree(cached, folder)
        return Artifact(
            variant,
            record["precision"],
            folder / record["file"],
            {**record["build"], "export": exported.record},
        )

    # ---------------------------------------------------------- accuracy-aware
    def mixed_int8(
        self,
        exported: Exported,
        folder: Path,
        variant: str,
        *,
        max_drop: float,
        reference: Session,
        heldout: ImageSet,
        use_labels: bool,
    ) -> Artifact:
        """INT8 with the most sensitive layers kept in float until ``max_drop`` holds.

        The layer ranking is cached without the backend in its key: one ranking, measured
        in the first target's runtime, serves every target built from the same model and data.
        """
        x, labels = _arrays(heldout, self.preprocess)
        # Without labels, or with random weights, the budget is on agreement with FP32.
        measure = sensitivity.Measure(_run(reference, x), labels if use_labels else None)
        # The ranking compares KL divergences, steady on fewer images than a top-1 drop.
        ranked = sensitivity.RANKING_IMAGES
        rank_measure = sensitivity.Measure(
            measure.reference[:ranked], None if measure.labels is None else measure.labels[:ranked]
        )
        quantization = self.profile.to_dict()["quantization"]
        base = dict(
            export=exported.key,
            calib=self.calib_sha,
            heldout=heldout.sha256(),
            calibrate_method=quantization["calibrate_method"],
        )
        rank_key = stage_key(
            "ranking", **base, images=ranked, method="quantize-one", version=__version__
        )
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            quantize = self._excluding(exported, Path(tmp))

            runtime = [f"{self.backend.name} {self.backend.version()}"]

            def run(artifact: Artifact, images: np.ndarray = x) -> np.ndarray:
                session = self.backend.load(artifact, threads=self.threads)
                # A backend that evaluates elsewhere (TensorRT absent: ONNX Runtime) says so.
                runtime[0] = artifact.build.get("evaluated_in", runtime[0])
                return _run(session, images)

            ranking = self.cache.json(rank_key)
            if ranking is None:
                candidates = sensitivity.candidate_layers(str(exported.path))
                with stage(
                    f"ranking the INT8 sensitivity of {len(candidates)} layers in "
                    f"{self.backend.name} on {len(rank_measure.reference)} held-out images"
                ):
                    layers = sensitivity.rank_layers(
                        candidates, quantize, lambda a: run(a, x[:ranked]), rank_measure
                    )
                    ranking = {
                        "measured_in": runtime[0],
                        "images": len(rank_measure.reference),
                        "layers": layers,
                    }
                self.cache.store_json(rank_key, ranking)
            else:
                self.reused.append(f"sensitivity ranking ({ranking['measured_in']})")
            order = [entry["layer"] for entry in ranking["layers"]]
            with stage(
                f"keeping sensitive layers in float until the drop is <= {max_drop} "
                f"{measure.metric}"
            ):
                outcome, artifact = sensitivity.fit_budget(order, max_drop, quantize, run, measure)
            if not outcome.met:
                warn(
                    f"the {max_drop}-point budget cannot be met: with every layer in float the "
                    f"held-out drop is {outcome.drop} {measure.metric}; keeping the best "
                    "artifact found"
                )
            _copy_tree(artifact.file.parent, folder)
        record = {
            "budget_points": max_drop,
            "metric": measure.metric,
            "met": outcome.met,
            "heldout_images": len(heldout),
            "ranking_images": ranking.get("images"),
            "heldout_drop": outcome.drop,
            "float_layers": outcome.excluded,
            "search": outcome.history,
            "ranking_measured_in": ranking["measured_in"],
            "ranking_top": ranking["layers"][:10],
        }
        return Artifact(
            variant,
            "int8",
            folder / artifact.file.name,
            {**artifact.build, "export": exported.record, "accuracy_aware": record},
        )

    def _excluding(self, exported: Exported, work: Path):
        """``quantize(excluded)`` for the search: each call compiles into its own folder."""
        count = iter(range(10**6))

        def quantize(excluded: tuple[str, ...]) -> Artifact:
            out = work / f"q{next(count)}"
            out.mkdir()
            return self.backend.compile(
                exported.path,
                "int8",
                out,
                profile=self.profile,
                calibration=calibration(self.calib, self.preprocess),
                exclude=excluded,
            )

        return quantize

    # --------------------------------------------------------------- evaluate
    def logits(
        self, artifacts: list[Artifact], reference: Session, images_: ImageSet
    ) -> tuple[dict[str, np.ndarray | None], np.ndarray | None, dict[str, str]]:
        """Logits of every artifact (None where it cannot run here) and of the reference."""
        images_sha = images_.sha256()
        keys = {
            a.variant: stage_key(
                "logits",
                artifact=a.identity(),
                backend=self.backend.name,
                device=self.profile.device,
                runtime=self.profile.runtime,
                images=images_sha,
                pre=self.preprocess.to_dict(),
            )
            for a in artifacts
        }
        out: dict[str, np.ndarray | None] = {v: self.cache.array(k) for v, k in keys.items()}
        notes: dict[str, str] = {}
        sessions: dict[str, Session] = {"reference": reference}
        twins: list[str] = []  # runs exactly as the reference: its logits, not run again
        for artifact in artifacts:
            if out[artifact.variant] is not None:
                self.reused.append(f"{artifact.variant} evaluation")
                continue
            try:
                session = self.backend.load(artifact, threads=self.threads)
            except BackendUnavailableError as exc:
                warn(f"{artifact.variant} was built but cannot run here: {exc.message}")
                notes[artifact.variant] = f"not evaluated here: {exc.message}"
                continue
            if _runs_like(session, reference):
                twins.append(artifact.variant)
            else:
                sessions[artifact.variant] = session
        computed, labels = collect_logits(
            sessions, images_.batches(self.preprocess, BATCH), total=len(images_)
        )
        computed.update({variant: computed["reference"] for variant in twins})
        for variant, value in computed.items():
            if variant != "reference":
                self.cache.store_array(keys[variant], value)
                out[variant] = value
        out["reference"] = computed["reference"]
        return out, labels, notes

    # -------------------------------------------------------------- benchmark
    def benchmark(self, artifact: Artifact, round_index: int = 0) -> dict[str, Any]:
        """Benchmark in a fresh process; raises BackendUnavailableError where it cannot run.

        Each round of a ``--rounds`` build is its own cache entry, so a resumed build keeps them.
        """
        return self._timed(
            f"{artifact.variant} benchmark",
            lambda: self.backend.benchmark(
                artifact,
                threads=self.threads,
                input_size=self.preprocess.crop_size,
                profile=self.profile,
            ),
            kind="bench",
            round=round_index,
            artifact=artifact.identity(),
        )

    def paired(self, artifact: Artifact, reference: Artifact, pairs: int) -> dict[str, Any]:
        """Time ``artifact`` against ``reference`` in ``pairs`` alternating batch-1 pairs."""
        return self._timed(
            f"{artifact.variant} against {reference.variant}",
            lambda: self.backend.paired(
                artifact,
                reference,
                pairs=pairs,
                threads=self.threads,
                input_size=self.preprocess.crop_size,
                profile=self.profile,
            ),
            kind="paired",
            pairs=pairs,
            artifact=artifact.identity(),
            reference=reference.identity(),
        )

    def _timed(
        self, label: str, measure: Callable[[], dict[str, Any]], *, kind: str, **what: Any
    ) -> dict[str, Any]:
        """A timing from the cache, else ``measure()`` with the machine's load around it."""
        key = stage_key(
            kind,
            **what,
            backend=self.backend.name,
            backend_version=self.backend.version(),
            device=self.profile.device,
            threads=self.threads,
            options=self.profile.to_dict()["benchmark"],
            runtime=self.profile.runtime,
            machine=machine_info(),
        )
        cached = self.cache.json(key)
        if cached is not None:
            if self.cache.from_earlier_run(key):
                self.reused.append(label)
            return cached
        # The load is kept with the figure, which the cache may hand to a later build.
        result = with_load_average(measure)
        self.cache.store_json(key, result)
        return result


def _runs_like(session: Session, reference: Session) -> bool:
    """Whether ``session`` gives ``reference``'s logits by construction (the same file in the
    same runtime and settings, as an ONNX build's FP32 artifact is), so it need not run."""
    runs_like = getattr(session, "runs_like", None)
    return runs_like is not None and bool(runs_like(reference))


def _arrays(image_set: ImageSet, pre: Preprocess) -> tuple[np.ndarray, np.ndarray | None]:
    xs, ys = [], []
    for x, y in image_set.batches(pre, BATCH):
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), (None if ys[0] is None else np.concatenate(ys))


def _run(session: Session, x: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])


def images(image_set: ImageSet, pre: Preprocess) -> Iterator[np.ndarray]:
    return (x for x, _ in image_set.batches(pre, BATCH))


@dataclass(frozen=True)
class _Calibration:
    image_set: ImageSet
    pre: Preprocess

    @property
    def images(self) -> int:
        return len(self.image_set)

    def __call__(self, batch_size: int) -> Iterator[np.ndarray]:
        with progress_bar("calibrating", total=len(self.image_set)) as advance:
            for x, _ in self.image_set.batches(self.pre, batch_size):
                yield x
                advance(len(x))


def calibration(image_set: ImageSet, pre: Preprocess) -> CalibrationBatches:
    return _Calibration(image_set, pre)


def _held_out(pool: ImageSet, train: ImageSet) -> tuple[ImageSet, ImageSet]:
    """Images to judge distillation steps by, and the images left to train on: ``pool``'s that
    are not training images, else up to 32, at most half, set aside from ``train`` (one training
    image: itself)."""
    free = pool.without(train)
    if free.samples or len(train) < 2:
        return (free if free.samples else train), train
    held = train.subset(min(32, len(train) // 2), seed=1)
    return held, train.without(held)


def _non_finite(logits: np.ndarray) -> int:
    """How many rows (images) of ``logits`` hold a NaN or infinite value."""
    return int((~np.isfinite(logits)).reshape(len(logits), -1).any(axis=1).sum())


def _identity(dense: torch.nn.Module) -> dict[str, Any]:
    from edgeresnet.models import detect_architecture

    arch, classes, width = detect_architecture(dense.state_dict())
    return {"arch": arch, "num_classes": classes, "width": width}


def _copy_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            shutil.copyfile(path, target / path.name)
