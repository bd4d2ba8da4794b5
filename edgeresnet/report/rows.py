"""Results documents as flat report rows, and what reports say about them.

Every field a report shows is optional in a row: a missing measurement becomes None and shows as
"-", never as an invented number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any

from edgeresnet.report.schema import number

MB = 1_000_000  # reports use MB = 10^6 bytes throughout
# The producers whose rows are timings only: a bundle's benchmark scripts.
TIMING_SCRIPTS = ("edgeresnet ondevice/bench_",)


@dataclass(frozen=True)
class OwnFidelity:
    """A pruned variant's fidelity to the FP32 variant of the same pruning."""

    reference: str
    agreement: float | None
    sqnr_db: float | None
    images: int | None


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
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    throughput: float | None
    throughput_batch: int | None
    load_s: float | None
    peak_rss_mb: float | None
    power_w: float | None = None
    samples_per_joule: float | None = None
    # Over how many images agreement was measured, and how many classes the reference predicted.
    fidelity_images: int | None = None
    reference_classes: int | None = None
    notes: tuple[str, ...] = ()
    # Provenance of the numbers: how the executed precision was read, clocks, streams.
    executed_detail: str = ""
    clocks: str = ""
    calibration: str = ""  # content hash (first 12 hex digits) of the calibration set
    evaluation: str = ""  # that of the evaluation set its run names
    timing: str = ""  # how many timing rounds the figure was chosen from
    streams: int | str | None = None
    load: str = ""  # the machine's 1-minute load average when the benchmark started and ended
    peak_load: float | None = None  # the higher of those two
    # A by-hand reference ("peer") rather than an edgeresnet artifact.
    peer: str | None = None
    peer_how: str = ""
    counterparts: tuple[tuple[str, str], ...] = ()  # (backend, variant) it is compared with
    # An edgeresnet artifact re-measured in a peer run, so ratios come from one run.
    remeasured_from: str | None = None
    paired: Paired | None = None
    # A pruned variant of another precision against its own FP32: that precision's error alone.
    to_own_fp32: OwnFidelity | None = None
    model: str = "?"  # the architecture, e.g. "resnet18"
    weights_id: str = ""  # which weights exactly: a file's sha256, or random and its seed
    # A run of a pruned model rebuilt from its channel spec (``weights_id`` is its dense one's).
    pruned: bool = False
    input_size: int | None = None
    # How the throughput figure was measured where it was not one call at a time, e.g.
    # OpenVINO's THROUGHPUT hint with several streams; its streams (``streams`` is the latency's).
    throughput_mode: str = ""
    throughput_streams: int | str | None = None
    throughput_requests: int | None = None
    artifact_sha256: str = ""
    # Timed by a bundle's benchmark script on the device, which measures no accuracy.
    timed_only: bool = False
    # Where a timed-only row's accuracy and fidelity come from (see ``with_build_accuracy``).
    accuracy_from: str = ""

    @property
    def group(self) -> tuple[str, str]:
        return (self.device, self.target)

    @property
    def dense_model(self) -> tuple[Any, ...]:
        """Architecture, input size and weights: the dense model, for a pruned one the model
        it was pruned from."""
        return (self.model, self.input_size, self.weights_id)

    @property
    def network(self) -> tuple[Any, ...]:
        """The network the row ran: its dense model, or that model pruned."""
        return (*self.dense_model, self.pruned)

    @property
    def run(self) -> tuple[str, str, str]:
        """Results file, device and target: the rows measured together, whose FP32 row is theirs."""
        return (self.source, self.device, self.target)

    @property
    def retimed(self) -> bool:
        """Re-measured in a peer run and timed there (a TensorRT bundle cannot be, off its
        device: it is listed with its note)."""
        return self.remeasured_from is not None and self.p50_ms is not None

    @property
    def candidate(self) -> bool:
        """An edgeresnet artifact measured by its own build or on-device run."""
        return self.peer is None and self.remeasured_from is None

    @property
    def label(self) -> str:
        return f"{self.target}:{self.variant}"

    @property
    def precision_run(self) -> str:
        """The precision built, and the one the runtime executed where it was another."""
        if self.executed in (self.precision, "not measured"):
            return self.precision
        return f"{self.precision} (ran {self.executed})"


def fp32_rows(rows: Iterable[Row]) -> dict[tuple[str, str, str], Row]:
    """The FP32 row of each run (results file, device, target): what "x FP32" divides by.

    Never another model's: two builds on one device (ResNet-18 and ResNet-50) each have their
    own, and a run without an FP32 row has no ratio. A run of a pruned model rebuilt from its
    channel spec is held against the dense model's FP32 on the same device and target where the
    inputs hold it, as a build with ``--prune`` holds its pruned variants; else its own, which
    is pruned (``Row.pruned`` says so).
    """
    own = {r.run: r for r in rows if r.candidate and r.variant == "fp32"}
    dense = {(*r.group, r.dense_model): r for r in own.values() if not r.pruned}
    return {
        run: dense.get((*r.group, r.dense_model), r) if r.pruned else r for run, r in own.items()
    }


def _runtime(entry: dict[str, Any], bench: dict[str, Any], target: dict[str, Any]) -> str:
    """The runtime the row's figures come from: the benchmark's; else, for a row only
    evaluated, the runtime its build says evaluated it (a TensorRT artifact checked in ONNX
    Runtime where TensorRT is absent); else the target's backend, "(not run)" where the row
    has no figure from any runtime."""
    if bench.get("runtime"):
        return f"{bench['runtime']} {bench.get('runtime_version', '')}".strip()
    evaluated = (entry.get("build") or {}).get("evaluated_in")
    if evaluated and entry.get("fidelity"):
        return str(evaluated)
    backend = str(target.get("backend", "?"))
    return backend if entry.get("fidelity") or entry.get("accuracy") else f"{backend} (not run)"


def _weights_id(weights: dict[str, Any]) -> str:
    origin = _obj(weights, "pruned_from") or weights
    return str(origin.get("sha256") or f"{origin.get('kind')}:{origin.get('seed')}")


# Marks the accuracy and fidelity a timed-only row takes from its build, wherever shown.
FROM_BUILD = "‡"
# What a row's evaluation measured (accuracy and fidelity), as opposed to its timing.
_EVALUATED = (
    "top1",
    "top5",
    "agreement",
    "sqnr_db",
    "fidelity_images",
    "reference_classes",
    "to_own_fp32",
)


def all_rows(documents: dict[str, dict[str, Any]]) -> list[Row]:
    """The rows of every document (source name -> results), timed-only rows given the accuracy
    their build measured on the same file (``with_build_accuracy``)."""
    return with_build_accuracy(
        [row for source, doc in documents.items() for row in rows_of(doc, source)]
    )


def with_build_accuracy(rows: list[Row]) -> list[Row]:
    """A bundle's benchmark script times its files and measures no accuracy; where the build's
    own results are among ``rows``, each timed-only row takes the accuracy and fidelity the build
    measured on the same file (sha256) in the same runtime at the same executed precision, with
    ``accuracy_from`` saying so. Any of those different (a bf16 variant that ran fp32 on a CPU
    without bf16), and the row keeps none. Of several builds of the file, the one whose
    evaluation set the bundle names (the build that made it) is taken, whatever the order of
    the inputs; else the first."""
    measured: dict[tuple[str, str, str], list[Row]] = {}
    for r in rows:
        evaluated = r.top1 is not None or r.agreement is not None
        if r.candidate and not r.timed_only and r.artifact_sha256 and evaluated:
            measured.setdefault((r.artifact_sha256, r.backend, r.executed), []).append(r)
    out = []
    for r in rows:
        builds = measured.get((r.artifact_sha256, r.backend, r.executed), [])
        if not r.timed_only or not builds:
            out.append(r)
            continue
        build = next((b for b in builds if b.evaluation == r.evaluation), builds[0])
        taken = {field: getattr(build, field) for field in _EVALUATED}
        origin = f"the build on {build.device} ({build.runtime}, {build.source})"
        out.append(replace(r, **taken, accuracy_from=origin))
    return out


# Why a timed-only row has no accuracy or fidelity where ``with_build_accuracy`` found none.
NO_BUILD_ROW = (
    "timed on the device only; no build of the same file, runtime and executed precision "
    "among the inputs"
)


def unmeasured_top1(row: Row) -> str:
    """Why ``row`` has no top-1, in words."""
    if row.random_weights:
        return "random weights"
    if row.timed_only:
        return NO_BUILD_ROW
    if row.agreement is None:  # never run where it was built: TensorRT FP16, say
        return "not run where it was built; the bundle's on-device scripts measure it"
    return "no labelled evaluation set"


def rows_of(document: dict[str, Any], source: str) -> list[Row]:
    """Flatten a results document into rows; a missing measurement becomes None."""
    model, target = document["model"], document["target"]
    weights = _obj(model, "weights")
    tool = str(_obj(document, "producer").get("tool") or "")
    timed_only = tool.startswith(TIMING_SCRIPTS)
    return [
        _row(entry, document, model, target, weights, source, timed_only)
        for entry in document["rows"]
    ]


def _row(
    entry: dict[str, Any],
    document: dict[str, Any],
    model: dict[str, Any],
    target: dict[str, Any],
    weights: dict[str, Any],
    source: str,
    timed_only: bool = False,
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
    origin = _obj(weights, "pruned_from") or weights  # a pruned model's dense weights
    random_weights = origin.get("kind") == "random"
    return Row(
        source=source,
        device=str((document["device"]).get("name") or "unknown"),
        target=str(remeasured.get("target") or target.get("name") or "?"),
        backend=str(
            remeasured.get("backend") or bench.get("runtime") or target.get("backend", "?")
        ),
        runtime=_runtime(entry, bench, target),
        variant=entry["variant"],
        precision=str(entry.get("precision", "?")),
        executed=str(executed.get("label") or "not measured"),
        weights=str(weights.get("name") or weights.get("kind") or "?"),
        random_weights=random_weights,
        threads=bench.get("threads"),
        params=entry.get("params", model.get("params")),
        gmacs=round(macs / 1e9, 3) if isinstance(macs, (int, float)) and macs else None,
        # Unrounded: a limit is compared with the size itself; tables round when they show it.
        size_mb=size / MB if isinstance(size, (int, float)) and size else None,
        # Never an accuracy for random weights, whatever a file says (an on-device evaluation
        # scores any engine it is given).
        top1=None if random_weights else number(accuracy.get("top1")),
        top5=None if random_weights else number(accuracy.get("top5")),
        agreement=number(fid.get("top1_agreement")),
        sqnr_db=number(fid.get("sqnr_db")),
        p50_ms=number(latency.get("p50_ms")),
        p90_ms=number(latency.get("p90_ms")),
        p99_ms=number(latency.get("p99_ms")),
        throughput=images_per_s,
        throughput_batch=throughput.get("batch"),
        load_s=number(bench.get("load_s")),
        peak_rss_mb=number(bench.get("peak_rss_mb")),
        power_w=power,
        samples_per_joule=per_joule,
        fidelity_images=_count(fid.get("images")),
        reference_classes=_count(fid.get("reference_classes")),
        notes=tuple(str(n) for n in entry.get("notes") or ()),
        executed_detail=_executed_detail(executed),
        clocks=clocks(bench),
        calibration=_set_hash(document, "calibration"),
        evaluation=_set_hash(document, "evaluation"),
        timing=_rounds(bench.get("rounds")),
        streams=bench.get("streams"),
        load=_load(bench.get("load_average")),
        peak_load=_peak_load(bench.get("load_average")),
        peer=peer.get("label") if peer else None,
        peer_how=str(peer.get("how", "")),
        counterparts=tuple(
            (str(c.get("backend")), str(c.get("variant")))
            for c in peer.get("counterparts") or ()
            if isinstance(c, dict)
        ),
        remeasured_from=remeasured.get("source") if remeasured else None,
        paired=_paired(bench.get("paired")),
        to_own_fp32=_own_fidelity(fid.get("to_own_fp32")),
        model=str(model.get("arch") or "?"),
        weights_id=_weights_id(weights),
        pruned=weights.get("pruned") is True,
        input_size=int(model["input_size"]) if number(model.get("input_size")) else None,
        throughput_mode=str(throughput.get("mode") or ""),
        throughput_streams=throughput.get("streams"),
        throughput_requests=throughput.get("infer_requests")
        if isinstance(throughput.get("infer_requests"), int)
        else None,
        artifact_sha256=str((entry.get("artifact") or {}).get("sha256") or ""),
        timed_only=timed_only and not accuracy and not fid,
    )


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def rate(value: float | None) -> str:
    """Images per second to three digits, trailing zeros kept: "1234", "45.3", "22.0", "0.412"."""
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 99.95 else f"{value:#.3g}"


def _count(value: Any) -> int | None:
    return int(value) if number(value) is not None else None


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


def _set_hash(document: dict[str, Any], which: str) -> str:
    """The content hash (12 hex digits) of the ``which`` image set the run names, or ""."""
    data = document.get("data")
    images = data.get(which) if isinstance(data, dict) else None
    digest = images.get("sha256") if isinstance(images, dict) else None
    return str(digest)[:12] if digest else ""


def _rounds(rounds: Any) -> str:
    if not isinstance(rounds, dict) or not isinstance(rounds.get("p50_ms"), list):
        return ""
    values = "/".join(f"{v:.1f}" for v in rounds["p50_ms"] if isinstance(v, (int, float)))
    kept = rounds.get("kept", "one")
    rates = rounds.get("images_per_s")
    if isinstance(rates, list) and rates and all(isinstance(v, (int, float)) for v in rates):
        values += "; img/s " + "/".join(rate(v) for v in rates) + ", the most kept"
    return f"{kept} of {rounds.get('count', '?')} rounds (p50 ms {values})"


def _own_fidelity(record: Any) -> OwnFidelity | None:
    if not isinstance(record, dict) or not record.get("reference"):
        return None
    images = record.get("images")
    return OwnFidelity(
        str(record["reference"]),
        number(record.get("top1_agreement")),
        number(record.get("sqnr_db")),
        images if isinstance(images, int) else None,
    )


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


def _peak_load(load: Any) -> float | None:
    """The higher 1-minute load average of the benchmark's start and end, where recorded."""
    if not isinstance(load, dict):
        return None
    ends = [v[0] for v in (load.get("start"), load.get("end")) if isinstance(v, list) and v]
    values = [number(v) for v in ends]
    return max((v for v in values if v is not None), default=None)


def missing_variants(rows: list[Row]) -> list[str]:
    """Where devices timed one model for one target, the variants some devices lack that others
    have: e.g. a device whose run stopped early, or a bundle built without a precision."""
    groups: dict[tuple[Any, ...], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        if r.candidate:
            groups[(r.target, r.network)][r.device].add(r.variant)
    lines = []
    for (target, *_), devices in groups.items():
        if len(devices) < 2:
            continue
        every = set().union(*devices.values())
        for device, variants in sorted(devices.items()):
            if variants != every:
                has = sorted(d for d, v in devices.items() if v - variants)
                lines.append(
                    f"{device} {target} lacks {', '.join(sorted(every - variants))} "
                    f"(timed on {', '.join(has)})"
                )
    return lines


def crowded(peak_load: float | None, threads: int | None) -> bool:
    """A 1-minute load average above the timing's own threads and one other process: other
    work competed for the cores, and only ever slows a timing down."""
    return peak_load is not None and peak_load > (threads or 1) + 1


def under_load(row: Row) -> bool:
    """The row was timed on a crowded machine (see :func:`crowded`)."""
    return crowded(row.peak_load, row.threads)


def _load(load: Any) -> str:
    if not isinstance(load, dict):
        return ""
    ends = [load.get(k) for k in ("start", "end")]
    if not all(isinstance(v, list) and v and number(v[0]) is not None for v in ends):
        return ""
    return " / ".join(f"{v[0]:.2f}" for v in ends)


def clocks(bench: dict[str, Any]) -> str:
    """The clock and power state the benchmark recorded, in words; "" where none was.

    ``bench.clocks`` is a free-form record; TensorRT's on-device script writes ``bench.jetson``
    (power mode, whether ``jetson_clocks`` locked the clocks) on a Jetson and
    ``bench.nvidia_smi`` (SM clock against its maximum, power limit) on a discrete GPU.
    """
    parts = []
    given = bench.get("clocks")
    if isinstance(given, dict):
        parts.append(", ".join(f"{k}={v}" for k, v in given.items()))
    elif given is not None:
        parts.append(str(given))
    jetson = bench.get("jetson")
    if isinstance(jetson, dict):
        locked = jetson.get("clocks_locked")
        parts.append(
            "clocks locked (jetson_clocks)"
            if locked is True
            else "clocks NOT locked (latency follows DVFS)"
            if locked is False
            else "clock lock unknown (jetson_clocks --show not readable)"
        )
        if jetson.get("power_mode"):
            parts.append(f"power mode {jetson['power_mode']}")
    smi = bench.get("nvidia_smi")
    if isinstance(smi, dict):
        sm, top = smi.get("clocks.sm"), smi.get("clocks.max.sm")
        if sm:
            parts.append(f"SM clock {sm}" + (f" of max {top}" if top else ""))
        if smi.get("power.limit"):
            parts.append(f"power limit {smi['power.limit']}")
        if smi.get("persistence_mode"):
            parts.append(f"persistence mode {smi['persistence_mode']}")
    return "; ".join(p for p in parts if p)


@dataclass(frozen=True)
class Runs:
    """Short names that tell merged runs apart, and whether a report needs to show them.

    Needed where two results files hold rows of one device and target (two builds on one
    machine: a dense and a pruned one, ResNet-18 and ResNet-50), or the files hold more than one
    model (architecture, input size or weights: two random seeds are two models). A report of
    one run, or of one model on several devices, stays as it was.
    """

    names: dict[str, str]  # results file -> short name, e.g. "a/onnx" for a/onnx/results.json
    shown: bool

    def of(self, row: Row) -> str:
        """E.g. "resnet18, a/onnx", or "" where the rows need no telling apart."""
        if not self.shown:
            return ""
        size = f"@{row.input_size}" if row.input_size and row.input_size != 224 else ""
        pruned = " pruned" if row.pruned else ""
        return f"{row.model}{size}{pruned}, {self.names.get(row.source, row.source)}"


def runs(rows: list[Row]) -> Runs:
    """The run names of ``rows`` (see :class:`Runs`)."""
    sources: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        if r.remeasured_from is None:
            sources[r.group].add(r.source)
    models = {r.network for r in rows}
    shown = len(models) > 1 or any(len(s) > 1 for s in sources.values())
    return Runs(run_names(dict.fromkeys(r.source for r in rows)), shown)


def run_names(sources: Iterable[str]) -> dict[str, str]:
    """The shortest end of each path that no other path shares: "a/onnx" for a/onnx/results.json.

    A file named results.json is named by its folders; other names lose ".json" (and a
    copy's ".results.json", so inputs/a-onnx.results.json is "a-onnx").
    """
    sources = list(dict.fromkeys(sources))
    parts = {}
    for source in sources:
        path = PurePath(source)
        if path.name == "results.json":
            path = path.parent
        elif path.name.endswith(".results.json"):
            path = path.with_name(path.name.removesuffix(".results.json"))
        elif path.suffix == ".json":
            path = path.with_suffix("")
        parts[source] = [p for p in path.parts if p not in ("/", ".", "")] or [source]
    names = dict(zip(sources, sources, strict=True))
    longest = max((len(p) for p in parts.values()), default=0)
    for k in range(1, longest + 1):
        names = {source: "/".join(p[-k:]) for source, p in parts.items()}
        if len(set(names.values())) == len(names):
            return names
    # Paths that differ only in what was stripped (a/results.json, a.json): number the repeats.
    seen: dict[str, int] = defaultdict(int)
    for source in sources:
        seen[names[source]] += 1
        if seen[names[source]] > 1:
            names[source] += f"-{seen[names[source]]}"
    return names


def row_name(r: Row, named: Runs) -> str:
    """E.g. "vm onnx:int8", with "[resnet18, a/onnx]" where runs must be told apart."""
    tag = named.of(r)
    return f"{r.device} {r.target}:{r.variant}" + (f" [{tag}]" if tag else "")
