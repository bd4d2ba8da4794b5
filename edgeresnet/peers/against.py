"""Re-time the artifacts of edgeresnet bundles inside a peer run, through their own backends.

On a shared machine the load changes from minute to minute; timing edgeresnet's artifacts in
the same run as the peers makes the report's ratios compare like with like.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from edgeresnet.backends import Artifact, get_backend
from edgeresnet.bench import Job
from edgeresnet.config import BenchmarkOptions, TargetProfile
from edgeresnet.errors import DataError, ReportError
from edgeresnet.ondevice import common
from edgeresnet.report import load_results


def against_jobs(bundle: Path, *, threads: int, options: BenchmarkOptions) -> list[Job]:
    """A row and a timing job per variant in ``bundle``'s manifest; build facts are copied."""
    try:
        manifest = common.check_manifest(bundle)
    except SystemExit as exc:  # the on-device helper exits; here it is a data error
        raise DataError(
            str(exc).removeprefix("error: "), hint="Rebuild the bundle or pass another."
        ) from None
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


def _built(bundle: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The bundle's own results rows by variant and its profile's [runtime] options."""
    path = bundle / "results.json"
    if not path.is_file():
        return {}, {}
    try:
        document = load_results(path)
    except ReportError:
        return {}, {}
    profile = document["target"].get("profile") or {}
    return {row["variant"]: row for row in document["rows"]}, profile.get("runtime") or {}
