"""Reading and checking results.json files (schema ``edgeresnet.results``).

What a file must have to be read at all is checked up front, and an error names the file and the
exact field; a row whose measurements are not numbers is left out with a warning, never shown as
"not measured". ``rows.py`` turns what is read into report rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgeresnet.errors import ReportError
from edgeresnet.ondevice.common import SCHEMA, SCHEMA_VERSION

# Top-level fields each schema version needs, and the JSON type each must have. Version 1 is the
# first; a later version adds its own entry here and rows_of() keeps reading the older ones.
_REQUIRED = {
    1: {"device": dict, "model": dict, "target": dict, "rows": list},
}
# Row fields that must be objects (or null) when present; anything else would hide a broken file.
_ROW_OBJECTS = ("artifact", "bench", "accuracy", "fidelity", "build", "peer", "remeasured")
_TYPE_NAME = {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}
# Numeric fields the report reads, by the object holding them: each must be a number or null.
# A row with another type here is left out with a warning, never shown as "-" (not measured).
_ROW_NUMBERS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): ("params", "macs"),
    ("artifact",): ("bytes",),
    ("accuracy",): ("top1", "top5"),
    ("fidelity",): ("top1_agreement", "sqnr_db", "mean_kl", "images", "reference_classes"),
    ("bench",): ("threads", "load_s", "peak_rss_mb", "power_w", "samples_per_joule"),
    ("bench", "latency"): ("p50_ms", "p90_ms", "p99_ms"),
    ("bench", "throughput"): ("images_per_s", "batch"),
    ("bench", "paired"): ("p50_ms", "reference_p50_ms", "ratio", "pairs"),
    ("fidelity", "to_own_fp32"): ("top1_agreement", "sqnr_db", "images"),
}
# Percentages, and counts that must be whole numbers.
_PERCENT = {"top1", "top5", "top1_agreement"}
_WHOLE = {"batch", "threads", "images", "pairs", "reference_classes", "params", "macs"}
_MODEL_NUMBERS = ("params", "macs", "input_size")
# What tells two machines apart in ``device`` (one name, another machine: a clash).
_MACHINE_FACTS = ("cpu", "arch", "logical_cores")
# The only row numbers that may be negative: quantization noise louder than the signal.
_SIGNED = {"sqnr_db"}


def load_results(path: Path, *, left_out: list[ReportError] | None = None) -> dict[str, Any]:
    """Load one results.json, refusing files of another kind, a newer schema or missing fields.

    A row whose numeric field has another type (``"p50_ms": "fast"``) raises too, unless
    ``left_out`` is given: then that row is dropped and its error appended there, so a merge
    keeps the file's other rows and warns about the one it left out.
    """
    if Path(path).is_dir():
        inside = sorted(Path(path).glob("results*.json"))
        raise ReportError(
            f"{path} is a folder, not a results file.",
            hint=f"Pass {inside[0]}, the results file in it."
            if inside
            else "Pass the results.json a build or peer run wrote, or the results file of a "
            "bundle's on-device script.",
        )
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(
            f"{path} does not exist.",
            hint="Check the path: a build writes OUT/<target>/results.json, a bundle's "
            "benchmark script BUNDLE/results.<device>.<target>.json.",
        ) from None
    # ValueError: not JSON, or a number too long to read; RecursionError: nested too deep.
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ReportError(
            f"{path} is not a readable JSON file: {str(exc)[:200]}.",
            hint="Copy it again from where it was written (a copy cut short reads so), or "
            "measure again.",
        ) from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ReportError(
            f'{path} is not an edgeresnet results file (no "schema": "{SCHEMA}").',
            hint="Pass results.json files written by `edgeresnet build`, `edgeresnet bench` "
            "or a bundle's on-device scripts run with --bundle (with --model they time one file "
            "and write no results file).",
        )
    if "schema_version" not in document:
        raise ReportError(f"{path} lacks the field(s) schema_version.")
    version = document["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ReportError(
            f"{path} has schema_version {version!r}, which is not a version number.",
            hint="Regenerate the file with edgeresnet, or fix the field by hand.",
        )
    if version > SCHEMA_VERSION:
        raise ReportError(
            f"{path} has schema version {version!r}; this edgeresnet reads up to {SCHEMA_VERSION}.",
            hint="Upgrade edgeresnet to read it.",
        )
    if version not in _REQUIRED:
        raise ReportError(
            f"{path} has schema version {version}, which no edgeresnet release wrote "
            f"(known: {', '.join(map(str, sorted(_REQUIRED)))})."
        )
    required = _REQUIRED[version]
    missing = [key for key in required if key not in document]
    if missing:
        raise ReportError(f"{path} lacks the field(s) {', '.join(missing)}.")
    for key, kind in required.items():
        if not isinstance(document[key], kind):
            raise ReportError(
                f"{path}: field '{key}' must be {_TYPE_NAME[kind]}, "
                f"got {type(document[key]).__name__}."
            )
    for key in _MODEL_NUMBERS:
        value = document["model"].get(key)
        if value is not None and number(value) is None:
            raise ReportError(
                f"{path}: field 'model.{key}' must be a number or null, got {_shown(value)}.",
                hint="Regenerate the file with edgeresnet, or fix the field by hand.",
            )
    kept = []
    seen: dict[tuple[Any, str], int] = {}
    for i, entry in enumerate(document["rows"]):
        problem = _row_shape(path, i, entry)
        if problem is None:
            problem = _row_types(path, i, entry)
            # A run's variant is one row (a peer run re-times each target's variant of that name).
            key = ((entry.get("remeasured") or {}).get("target"), entry["variant"])
            if problem is None and key in seen:
                problem = ReportError(
                    f"{path}: rows[{i}] repeats the variant '{entry['variant']}' of "
                    f"rows[{seen[key]}]; a run holds each variant once.",
                    hint="Regenerate the file with edgeresnet, or remove the repeated row.",
                )
            seen.setdefault(key, i)
        if problem is None:
            kept.append(entry)
        elif left_out is None:
            raise problem
        else:
            left_out.append(problem)
    document["rows"] = kept
    return document


def load_many(paths: list[Path]) -> tuple[dict[str, dict[str, Any]], list[ReportError]]:
    """Read every file that can be read; the errors of the others are returned, not raised.

    A file whose content was already read (the same file twice, or a copy) is left out with a
    problem: its rows would count as a second run of the same measurements."""
    documents: dict[str, dict[str, Any]] = {}
    problems: list[ReportError] = []
    seen: dict[str, Path] = {}
    for path in paths:
        rows_left_out: list[ReportError] = []
        try:
            document = load_results(path, left_out=rows_left_out)
        except ReportError as exc:
            problems.append(exc)
            continue
        content = json.dumps(document, sort_keys=True)
        if content in seen:
            same = Path(path).resolve() == Path(seen[content]).resolve()
            problems.append(
                ReportError(
                    f"{path} is given twice; it is read once."
                    if same
                    else f"{path} holds the same results as {seen[content]}; it is read once.",
                    hint="Pass each results file once.",
                )
            )
            continue
        seen[content] = path
        documents[str(path)] = document
        problems += rows_left_out
    return documents, problems


def device_clashes(documents: dict[str, dict[str, Any]]) -> list[str]:
    """Device names that stand for more than one machine among ``documents`` (source -> results):
    the default name is the host name, and boards often share one ("ubuntu"). Their rows would
    merge as one device's."""
    machines: dict[str, dict[tuple[Any, ...], list[str]]] = {}
    for source, document in documents.items():
        device = document["device"]
        facts = tuple(device.get(k) for k in _MACHINE_FACTS)
        name = str(device.get("name") or "unknown")
        machines.setdefault(name, {}).setdefault(facts, []).append(source)
    return [
        f"the device name '{name}' stands for {len(found)} machines: "
        + "; ".join(
            f"{facts[0] or '?'} ({facts[1] or '?'}, {facts[2] or '?'} cores) in {', '.join(files)}"
            for facts, files in found.items()
        )
        + ". Their rows merge as one device's: run the on-device script again with "
        "--device-name (or the build with --device-name) to tell them apart."
        for name, found in machines.items()
        if len(found) > 1
    ]


def _row_shape(path: Path, i: int, entry: Any) -> ReportError | None:
    """What is wrong with the row's layout (not an object, no variant, a field of another
    kind), as an error; else None."""
    where = f"{path}: rows[{i}]"
    problem = None
    if not isinstance(entry, dict):
        problem = f"{where} must be an object, got {type(entry).__name__}"
    elif not isinstance(entry.get("variant"), str):
        problem = f"{where} lacks the field 'variant' (a string)"
    else:
        wrong = [
            k for k in _ROW_OBJECTS if entry.get(k) is not None and not isinstance(entry[k], dict)
        ]
        notes = entry.get("notes")
        if wrong:
            kind = type(entry[wrong[0]]).__name__
            problem = f"{where}.{wrong[0]} must be an object or null, got {kind}"
        elif notes is not None and not isinstance(notes, list):
            problem = f"{where}.notes must be a list, got {type(notes).__name__}"
    if problem is None:
        return None
    return ReportError(
        f"{problem}; that row is left out, the file's other rows are kept.",
        hint="Regenerate the file with edgeresnet, or fix the row by hand.",
    )


def _row_types(path: Path, i: int, entry: dict[str, Any]) -> ReportError | None:
    """The first numeric field of the row that holds something else, as an error; else None."""
    for parents, keys in _ROW_NUMBERS.items():
        holder: Any = entry
        for depth, key in enumerate(parents):
            holder = holder.get(key)
            if holder is None:
                break
            if not isinstance(holder, dict):
                field = ".".join(parents[: depth + 1])
                return _row_problem(path, i, entry, field, "an object or null", holder)
        if not isinstance(holder, dict):
            continue
        for key in keys:
            value = holder.get(key)
            field = ".".join((*parents, key))
            if value is not None and number(value) is None:
                return _row_problem(path, i, entry, field, "a finite number or null", value)
            if value is not None and value < 0 and key not in _SIGNED:
                return _row_problem(path, i, entry, field, "0 or more, or null", value)
            if value is not None and key in _PERCENT and value > 100:
                return _row_problem(path, i, entry, field, "a percentage (0-100)", value)
            if value is not None and key in _WHOLE and not float(value).is_integer():
                return _row_problem(path, i, entry, field, "a whole number", value)
    return None


def _row_problem(
    path: Path, i: int, entry: dict[str, Any], field: str, kind: str, value: Any
) -> ReportError:
    return ReportError(
        f"{path}: rows[{i}] (variant {entry['variant']!r}): the field '{field}' must be "
        f"{kind}, got {_shown(value)}; that row is left out, the file's other rows are kept.",
        hint="Regenerate the file with edgeresnet, or fix the field by hand.",
    )


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return f"{_TYPE_NAME.get(type(value), type(value).__name__)} ({text[:40]})"


def number(value: Any) -> float | None:
    """A finite number as float, else None (NaN and infinity are no measurement)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
