"""Re-time the artifacts of edgeresnet bundles inside a peer run, through their own backends.

On a shared machine the load changes from minute to minute; timing edgeresnet's artifacts in
the same run as the peers makes the report's ratios compare like with like.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from edgeresnet import publish
from edgeresnet.backends import Artifact, get_backend
from edgeresnet.bench import Job
from edgeresnet.config import BenchmarkOptions, TargetProfile
from edgeresnet.errors import DataError, ReportError, UsageError
from edgeresnet.ondevice import common
from edgeresnet.report import load_results

# What makes two models the same for a ratio: the network, its input and its weights.
_SHAPE = (("arch", "architecture"), ("width", "width"), ("num_classes", "class count"))


def check_against(bundle: Path, model: dict[str, Any]) -> None:
    """Refuse ``bundle`` unless it was built from the peers' ``model`` (a results "model" record).

    A ratio of two timings means something only for one model: the architecture, width, class
    count and input size must match, and so must the weights wherever the bundle recorded them
    (random seed and recipe, ImageNet version, or sha256 of a weights file).
    """
    theirs = bundle_model(bundle)
    differences = []
    for key, what in (*_SHAPE, ("input_size", "input size")):
        if theirs.get(key) is not None and theirs[key] != model.get(key):
            differences.append(f"{what} {theirs[key]} there, {model.get(key)} here")
    mine_w, theirs_w = model.get("weights") or {}, theirs.get("weights") or {}
    if theirs_w.get("kind") and _weights_differ(mine_w, theirs_w):
        differences.append(
            f"weights {describe_weights(theirs_w)} there, {describe_weights(mine_w)} here"
        )
    if differences:
        raise UsageError(
            f"--against {bundle} was built from another model than the peers' "
            f"({'; '.join(differences)}): its timings cannot be divided by theirs.",
            hint=f"Run the peers on the bundle's model ({_model_options(theirs)}), or pass a "
            "bundle built from the peers' model.",
        )


def bundle_model(bundle: Path) -> dict[str, Any]:
    """The bundle's model record: its manifest's, completed from its results.json."""
    manifest = _manifest(bundle)
    record = dict((_results(bundle) or {}).get("model") or {})
    record.update({k: v for k, v in (manifest.get("model") or {}).items() if v is not None})
    return record


def describe_weights(weights: dict[str, Any]) -> str:
    kind = weights.get("kind")
    if kind == "random":
        older = "" if weights.get("init") else ", identity BatchNorm: an older recipe"
        return f"random (seed {weights.get('seed')}{older})"
    sha = f", sha256 {weights['sha256'][:12]}" if weights.get("sha256") else ""
    if kind == "imagenet":
        return f"ImageNet {weights.get('name')}{sha}"
    return f"{kind or '?'} {weights.get('name') or '?'}{sha}"


def _weights_differ(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    if mine.get("kind") != theirs.get("kind"):
        return True
    if mine.get("sha256") and theirs.get("sha256"):
        return bool(mine["sha256"] != theirs["sha256"])
    if theirs.get("kind") == "random" and mine.get("init") != theirs.get("init"):
        return True  # another recipe for random weights: another model, whatever the seed
    key = "seed" if theirs.get("kind") == "random" else "name"
    return theirs.get(key) is not None and mine.get(key) != theirs.get(key)


def _model_options(model: dict[str, Any]) -> str:
    """The peer options that give ``model``, e.g. "--model resnet18 --weights random --seed 0"."""
    options = [f"--model {model['arch']}"] if model.get("arch") else []
    weights = model.get("weights") or {}
    if weights.get("kind") == "random":
        options.append(f"--weights random --seed {weights.get('seed', 0)}")
    elif weights.get("kind") == "imagenet" and weights.get("name"):
        options.append(f"--weights {weights['name']}")
    elif weights.get("kind"):
        options.append(f"--weights {weights.get('path') or weights.get('name') or 'FILE'}")
    if model.get("input_size"):
        options.append(f"--input-size {model['input_size']}")
    return " ".join(options)


def against_jobs(bundle: Path, *, threads: int, options: BenchmarkOptions) -> list[Job]:
    """A row and a timing job per variant in ``bundle``'s manifest; build facts are copied."""
    manifest = _manifest(bundle)
    target = manifest.get("target") or {}
    built, runtime = _built(bundle)
    backend = get_backend(target["backend"], device=target.get("device", "CPU"), runtime=runtime)
    profile = TargetProfile(
        name=target["name"],
        backend=target["backend"],
        device=target.get("device", "CPU"),
        precisions=sorted({v["precision"] for v in manifest["variants"]}),
        benchmark=options,
    )
    jobs = []
    for variant in manifest["variants"]:
        before = built.get(variant["variant"]) or {}
        artifact = Artifact(
            variant["variant"],
            variant["precision"],
            bundle / variant["file"],
            before.get("build") or {},
        )
        row = {
            "variant": variant["variant"],
            "precision": variant["precision"],
            "artifact": variant["artifact"],
            "remeasured": {
                "source": str(bundle),
                "target": target["name"],
                "backend": target["backend"],
            },
            **{k: before.get(k) for k in ("params", "macs", "fidelity", "accuracy")},
            "bench": None,
            "notes": [],
        }
        run = partial(
            backend.benchmark,
            artifact,
            threads=threads,
            input_size=manifest["model"]["input_size"],
            profile=profile,
        )
        jobs.append(Job(f"{target['name']} {variant['variant']}", row, run))
    return jobs


def _manifest(bundle: Path) -> dict[str, Any]:
    """The bundle's manifest, once every file it lists is checked against its sha256."""
    try:
        return common.check_manifest(bundle)
    except common.ScriptError as exc:
        raise DataError(exc.message, hint=exc.hint) from None


def _results(bundle: Path) -> dict[str, Any] | None:
    path = bundle / publish.RESULTS
    if not path.is_file():
        return None
    try:
        return load_results(path)
    except ReportError:
        return None


def _built(bundle: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The bundle's own results rows by variant and its profile's [runtime] options."""
    document = _results(bundle)
    if document is None:
        return {}, {}
    profile = document["target"].get("profile") or {}
    return {row["variant"]: row for row in document["rows"]}, profile.get("runtime") or {}
