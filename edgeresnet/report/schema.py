"""Reading results.json files (schema ``edgeresnet.results``) into flat report rows.

Every field a report shows is optional in a row: a missing measurement becomes None and shows as
"-", never as an invented number. What a file must have to be read at all is checked up front,
and an error names the file and the exact field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeresnet.errors import ReportError
from edgeresnet.ondevice.common import SCHEMA, SCHEMA_VERSION

MB = 1_000_000  # reports use MB = 10^6 bytes throughout
# Top-level fields each schema version needs, and the JSON type each must have. Version 1 is the
# first; a later version adds its own entry here and rows_of() keeps reading the older ones.
_REQUIRED = {
    1: {"device": dict, "model": dict, "target": dict, "rows": list},
}
# Row fields that must be objects (or null) when present; anything else would hide a broken file.
_ROW_OBJECTS = ("artifact", "bench", "accuracy", "fidelity", "build", "peer", "remeasured")
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string"}


@dataclass(frozen=True)
class Paired:
    """A batch-1 latency ratio timed call for call against another variant (``--pairs``)."""

    reference: str
    pairs: int
    p50_ms: float
    reference_p50_ms: float
    ratio: float
    low: float  # the 95 % interval of ``ratio``
    high: float


@dataclass(frozen=True)
class Row:
    """One measured variant on one device, with what is needed to read its numbers."""

    source: str
    device: str
    target: str
    backend: str
    runtime: str
    variant: str
    precision: str
    executed: str
    weights: str
    random_weights: bool
    threads: int | None
    params: int | None
    gmacs: float | None
    size_mb: float | None
    top1: float | None
    top5: float | None
    agreement: float | None
    sqnr_db: float | None
    mean_kl: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    throughput: float | None
    throughput_batch: int | None
    load_s: float | None
    peak_rss_mb: float | None
    power_w: float | None = None
    samples_per_joule: float | None = None
    notes: tuple[str, ...] = ()
    # Provenance of the numbers: how the executed precision was read, clocks, streams.
    executed_detail: str = ""
    clocks: str = ""
    calibration: str = ""  # content hash (first 12 hex digits) of the calibration set
    timing: str = ""  # how many timing rounds the figure was chosen from
    streams: int | str | None = None
    load: str = ""  # the machine's 1-minute load average when the benchmark started and ended
    # A by-hand reference ("peer") rather than an edgeresnet artifact.
    peer: str | None = None
    peer_how: str = ""
    counterparts: tuple[tuple[str, str], ...] = ()  # (backend, variant) it is compared with
    # An edgeresnet artifact re-measured in a peer run, so ratios come from one run.
    remeasured_from: str | None = None
    paired: Paired | None = None

    @property
    def group(self) -> tuple[str, str]:
        return (self.device, self.target)

    @property
    def candidate(self) -> bool:
        """An edgeresnet artifact measured by its own build or on-device run."""
        return self.peer is None and self.remeasured_from is None

    @property
    def label(self) -> str:
        return f"{self.target}:{self.variant}"


def load_results(path: Path) -> dict[str, Any]:
    """Load one results.json, refusing files of another kind, a newer schema or missing fields."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path} is not a readable JSON file: {exc}.") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ReportError(
            f'{path} is not an edgeresnet results file (no "schema": "{SCHEMA}").',
            hint="Pass results.json files written by `edgeresnet build`, `edgeresnet bench` "
            "or a bundle's on-device scripts.",
        )
    if "schema_version" not in document:
        raise ReportError(f"{path} lacks the field(s) schema_version.")
    version = document["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
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
                f"{path}: field '{key}' must be {_TYPE_NAMES[kind]}, "
                f"got {type(document[key]).__name__}."
            )
    for i, entry in enumerate(document["rows"]):
        _check_row(path, i, entry)
    return document


def load_many(paths: list[Path]) -> tuple[dict[str, dict[str, Any]], list[ReportError]]:
    """Read every file that can be read; the errors of the others are returned, not raised."""
    documents: dict[str, dict[str, Any]] = {}
    problems: list[ReportError] = []
    for path in paths:
        try:
            documents[str(path)] = load_results(path)
        except ReportError as exc:
            problems.append(exc)
    return documents, problems


def _check_row(path: Path, i: int, entry: Any) -> None:
    where = f"{path}: rows[{i}]"
    if not isinstance(entry, dict):
        raise ReportError(f"{where} must be an object, got {type(entry).__name__}.")
    if not isinstance(entry.get("variant"), str):
        raise ReportError(f"{where} lacks the field 'variant' (a string).")
    for key in _ROW_OBJECTS:
        if entry.get(key) is not None and not isinstance(entry[key], dict):
            raise ReportError(
                f"{where}.{key} must be an object or null, got {type(entry[key]).__name__}."
            )
    notes = entry.get("notes")
    if notes is not None and not isinstance(notes, list):
        raise ReportError(f"{where}.notes must be a list, got {type(notes).__name__}.")


def rows_of(document: dict[str, Any], source: str) -> list[Row]:
    """Flatten a results document into rows; a missing measurement becomes None."""
    model, target = document["model"], document["target"]
    weights = model.get("weights") or {}
    return [_row(entry, document, model, target, weights, source) for entry in document["rows"]]


def _row(
    entry: dict[str, Any],
    document: dict[str, Any],
    model: dict[str, Any],
    target: dict[str, Any],
    weights: dict[str, Any],
    source: str,
) -> Row:
    bench = entry.get("bench") or {}
    latency = _obj(bench, "latency")
    throughput = _obj(bench, "throughput")
    accuracy = entry.get("accuracy") or {}
    fid = entry.get("fidelity") or {}
    peer = entry.get("peer") or {}
    remeasured = entry.get("remeasured") or {}
    size = (entry.get("artifact") or {}).get("bytes")
    macs = entry.get("macs", model.get("macs"))
    images_per_s = number(throughput.get("images_per_s"))
    power = number(bench.get("power_w"))
    per_joule = number(bench.get("samples_per_joule"))
    if per_joule is None and power and images_per_s is not None:
        per_joule = round(images_per_s / power, 2)
    executed = _obj(bench, "precision_executed")
    return Row(
        source=source,
        device=str((document["device"]).get("name") or "unknown"),
        target=str(remeasured.get("target") or target.get("name") or "?"),
        backend=str(
            remeasured.get("backend") or bench.get("runtime") or target.get("backend", "?")
        ),
        runtime=f"{bench.get('runtime', target.get('backend', '?'))} "
        f"{bench.get('runtime_version', '')}".strip(),
        variant=entry["variant"],
        precision=str(entry.get("precision", "?")),
        executed=str(executed.get("label") or "not measured"),
        weights=str(weights.get("name") or weights.get("kind") or "?"),
        random_weights=weights.get("kind") == "random",
        threads=bench.get("threads"),
        params=entry.get("params", model.get("params")),
        gmacs=round(macs / 1e9, 3) if isinstance(macs, (int, float)) and macs else None,
        size_mb=round(size / MB, 2) if isinstance(size, (int, float)) and size else None,
        top1=number(accuracy.get("top1")),
        top5=number(accuracy.get("top5")),
        agreement=number(fid.get("top1_agreement")),
        sqnr_db=number(fid.get("sqnr_db")),
        mean_kl=number(fid.get("mean_kl")),
        p50_ms=number(latency.get("p50_ms")),
        p90_ms=number(latency.get("p90_ms")),
        p99_ms=number(latency.get("p99_ms")),
        throughput=images_per_s,
        throughput_batch=throughput.get("batch"),
        load_s=number(bench.get("load_s")),
        peak_rss_mb=number(bench.get("peak_rss_mb")),
        power_w=power,
        samples_per_joule=per_joule,
        notes=tuple(str(n) for n in entry.get("notes") or ()),
        executed_detail=_executed_detail(executed),
        clocks=_clocks(bench.get("clocks")),
        calibration=_calibration_hash(document),
        timing=_rounds(bench.get("rounds")),
        streams=bench.get("streams"),
        load=_load(bench.get("load_average")),
        peer=peer.get("label") if peer else None,
        peer_how=str(peer.get("how", "")),
        counterparts=tuple(
            (str(c.get("backend")), str(c.get("variant")))
            for c in peer.get("counterparts") or ()
            if isinstance(c, dict)
        ),
        remeasured_from=remeasured.get("source") if remeasured else None,
        paired=_paired(bench.get("paired")),
    )


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _executed_detail(executed: dict[str, Any]) -> str:
    """What the runtime reported: ONNX Runtime kernel counts or OpenVINO layer precisions."""
    if "int8_kernels" in executed:
        return (
            f"{executed.get('int8_kernels', 0)} int8 / {executed.get('float_kernels', 0)} float "
            "kernels (ORT profiler)"
        )
    counts = executed.get("counts")
    if isinstance(counts, dict) and counts:
        parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        hint = executed.get("hint")
        return f"compute layers: {parts}" + (f" (hint {hint})" if hint else "")
    return str(executed.get("source", ""))


def _calibration_hash(document: dict[str, Any]) -> str:
    data = document.get("data")
    calibration = data.get("calibration") if isinstance(data, dict) else None
    digest = calibration.get("sha256") if isinstance(calibration, dict) else None
    return str(digest)[:12] if digest else ""


def _rounds(rounds: Any) -> str:
    if not isinstance(rounds, dict) or not isinstance(rounds.get("p50_ms"), list):
        return ""
    values = "/".join(f"{v:.1f}" for v in rounds["p50_ms"] if isinstance(v, (int, float)))
    kept = rounds.get("kept", "one")
    rates = rounds.get("images_per_s")
    if isinstance(rates, list) and rates and all(isinstance(v, (int, float)) for v in rates):
        values += "; img/s " + "/".join(f"{v:.0f}" for v in rates) + ", the most kept"
    return f"{kept} of {rounds.get('count', '?')} rounds (p50 ms {values})"


def _paired(paired: Any) -> Paired | None:
    """The ``bench.paired`` record, or None where it is missing or not whole."""
    if not isinstance(paired, dict):
        return None
    interval = paired.get("ratio_ci95")
    bounds = interval if isinstance(interval, list) and len(interval) == 2 else [None, None]
    fields = [paired.get(k) for k in ("p50_ms", "reference_p50_ms", "ratio")] + bounds
    values = [v for v in map(number, fields) if v is not None]
    count = paired.get("pairs")
    if len(values) != 5 or not isinstance(count, int) or not paired.get("reference"):
        return None
    return Paired(str(paired["reference"]), count, *values)


def _load(load: Any) -> str:
    if not isinstance(load, dict):
        return ""
    ends = [load.get(k) for k in ("start", "end")]
    if not all(isinstance(v, list) and v and number(v[0]) is not None for v in ends):
        return ""
    return " / ".join(f"{v[0]:.2f}" for v in ends)


def _clocks(clocks: Any) -> str:
    if isinstance(clocks, dict):
        return ", ".join(f"{k}={v}" for k, v in clocks.items())
    return "" if clocks is None else str(clocks)
