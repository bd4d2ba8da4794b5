"""Target bundles: the artifacts, the on-device scripts and a manifest with every file's sha256."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgeresnet import __version__
from edgeresnet.errors import UsageError, VerificationError
from edgeresnet.ondevice.common import (
    MANIFEST,
    manifest_problems,
    not_a_bundle,
    sha256_file,
    write_json,
)


def file_record(path: Path, root: Path) -> dict[str, Any]:
    return {
        "path": path.relative_to(root).as_posix(),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def add_scripts(bundle: Path, scripts: list[Path]) -> list[Path]:
    """Copy on-device scripts (and their shared module) into ``bundle/ondevice``."""
    folder = bundle / "ondevice"
    folder.mkdir(exist_ok=True)
    copied = []
    for script in scripts:
        target = folder / script.name
        shutil.copyfile(script, target)
        copied.append(target)
    return copied


def write_manifest(
    bundle: Path,
    *,
    files: list[Path],
    variants: list[dict[str, Any]],
    model: dict[str, Any],
    data: dict[str, Any],
    target: dict[str, Any],
    options: dict[str, Any],
) -> Path:
    """Write manifest.json: ``files`` with sizes and sha256, and what they were built from."""
    manifest = {
        "edgeresnet_version": __version__,
        "model": model,
        "data": data,
        "target": target,
        "options": options,
        "variants": variants,
        "files": [file_record(f, bundle) for f in sorted(files)],
    }
    path = bundle / MANIFEST
    write_json(path, manifest)
    return path


def verify_bundle(bundle: Path) -> dict[str, Any]:
    """Check every file a bundle's manifest lists; raises VerificationError naming each problem
    (UsageError where ``bundle`` is not a bundle folder at all)."""
    if not bundle.is_dir():
        raise UsageError(
            f"{bundle} {'is a file' if bundle.exists() else 'does not exist'}: a bundle is the "
            "folder a build writes per target, holding manifest.json.",
            hint="Pass that folder, e.g. edgeresnet verify build/onnx.",
        )
    missing = not_a_bundle(bundle)
    inside = sorted(p.parent.name for p in bundle.glob(f"*/{MANIFEST}"))
    if missing and inside:
        raise UsageError(
            f"{bundle} is an output folder holding the bundles {', '.join(inside)}, not a bundle.",
            hint=f"Verify each, e.g. edgeresnet verify {bundle / inside[0]}.",
        )
    if missing:
        raise UsageError(missing, hint="Pass a bundle folder, e.g. edgeresnet verify build/onnx.")
    manifest, problems = manifest_problems(bundle)
    if problems or manifest is None:
        raise VerificationError(
            f"Bundle {bundle} failed verification: " + " ".join(problems),
            hint="Copy the bundle again from the build machine, or rebuild it.",
        )
    return manifest
