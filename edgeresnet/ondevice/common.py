"""What every on-device script shares: the results schema, machine facts and timing.

Standard library and numpy only: this file is copied next to the scripts in every bundle.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import importlib
import json
import os
import platform
import re
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ContextManager, NoReturn

try:
    import numpy as np
except ImportError:  # a device without numpy: one error line, not a traceback
    raise SystemExit(
        "error: numpy is not installed here.\n  hint: pip3 install numpy, then run this again."
    ) from None

SCHEMA = "edgeresnet.results"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
DEVICE_TOOL = "edgeresnet ondevice/"  # the producer of what these scripts write, then the script
# Alternating pairs a --reference comparison times unless told otherwise.
DEFAULT_PAIRS = 500

# ISA extensions that decide which INT8/BF16 kernels a CPU runtime can use.
_ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
)


def machine_info(name: str | None = None) -> dict[str, Any]:
    """Facts about this machine that decide its speed, recorded with every figure."""
    cpuinfo = _read("/proc/cpuinfo")
    model = _cpuinfo_field(cpuinfo, ("model name", "Hardware", "Processor")) or platform.processor()
    flags = set((_cpuinfo_field(cpuinfo, ("flags", "Features")) or "").split())
    board = _read("/proc/device-tree/model").strip("\x00\n ") or None
    return {
        "name": device_name(name),
        "cpu": model or platform.machine(),
        "arch": platform.machine(),
        "isa": [f for f in _ISA_FLAGS if f in flags],
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "memory_gb": round(_mem_total_kb() / 1024**2, 1) if _mem_total_kb() else None,
        "os": f"{platform.system()} {platform.release()}",
        "board": board,
    }


def device_name(name: str | None = None) -> str:
    """This device's name in reports: ``--device-name``, else the host name."""
    return name or platform.node() or "unknown"


class ScriptError(Exception):
    """What went wrong and how to fix it. A script ends with it as one ``error:`` line and a
    ``hint:`` line (see ``run``); edgeresnet, which imports these scripts, turns it into its
    own typed error."""

    def __init__(self, message: str, hint: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code  # the exit code: 2 a path that is not what the option takes, else 1

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}"


def fail(message: str, hint: str, *, code: int = 1) -> NoReturn:
    raise ScriptError(message, hint, code)


def misused(message: str, hint: str) -> NoReturn:
    """The command line names a path that is not what its option takes (exit 2, as a bad
    option: edgeresnet's own commands exit so for a missing or wrong folder)."""
    fail(message, hint, code=2)


class Terminated(BaseException):
    """SIGTERM, raised where the process is (``sigterm_raises``), so that the blocks it is in
    clean up on the way out: a timing process waited for is killed (``subprocess.run`` kills
    on any exception), staging and temporary folders removed, locks released."""


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise Terminated


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` inside the block, as Ctrl-C raises KeyboardInterrupt."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(main: Callable[[], int]) -> NoReturn:
    """A script's entry point: exit with ``main()``'s code, or 1 with its ``ScriptError``; on
    Ctrl-C (130) or SIGTERM (143) with one line, its timing process stopped and no file written."""
    try:
        with sigterm_raises():
            code = main()
    except ScriptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.code) from None
    except (KeyboardInterrupt, Terminated) as exc:
        print("interrupted: no results were written", file=sys.stderr)
        raise SystemExit(130 if isinstance(exc, KeyboardInterrupt) else 143) from None
    exit_with(code)


def exit_with(code: int) -> NoReturn:
    """Exit with ``code``, the finished command's, whatever signal comes while the process winds
    down: freeing the runtimes (and PyTorch, after a build) takes a second or two, and a Ctrl-C
    or SIGTERM then would otherwise end it as 130 or 143 after its output was written."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ignored signals stay ignored through exit
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(code)


class Parser(argparse.ArgumentParser):
    """A script's options: a bad one ends, like every other error, with one ``error:`` line
    and a ``hint:`` line (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}\n  hint: see '{self.prog} --help'.\n")


def readable_model(path: Path, load: Callable[[Path], Any], runtime: str) -> None:
    """End the script where ``path`` is missing or ``runtime`` cannot ``load`` it."""
    if not path.is_file():
        misused(f"{path} does not exist.", "Pass a model file a build wrote (see its manifest).")
    try:
        load(path)
    except Exception as exc:  # each runtime raises its own types on a damaged or foreign file
        fail(
            f"{runtime} cannot load {path}: {' '.join(str(exc).split())[:300]}",
            "Pass a model file a build wrote for this runtime; copy it again if it was cut short.",
        )


def require(module: str, *, pip: str) -> Any:
    """Import a script's runtime, or end the script (it runs at import, before ``run``) with
    how to install it on this device."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SystemExit(
            f"error: {module} is not installed here.\n  hint: pip3 install {pip}, then run "
            "this again."
        ) from None


def physical_cores() -> int:
    """Physical cores (hyper-threads counted once); falls back to logical cores."""
    cores = set()
    physical = core = None
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            core = value.strip()
            cores.add((physical, core))
    return len(cores) or os.cpu_count() or 1


def results_document(
    *,
    producer: dict[str, Any],
    device: dict[str, Any],
    environment: dict[str, Any],
    model: dict[str, Any],
    data: dict[str, Any],
    target: dict[str, Any],
    rows: list[dict],
) -> dict[str, Any]:
    """The one results.json layout that builds and on-device runs both write."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "producer": producer,
        "device": device,
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            **environment,
        },
        "model": model,
        "data": data,
        "target": target,
        "rows": rows,
    }


def bundle_document(
    manifest: dict[str, Any],
    rows: list[dict],
    *,
    script: str,
    device: dict[str, Any],
    environment: dict[str, Any],
    target: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results document of rows that ``script`` measured from a bundle on this device."""
    return results_document(
        producer={
            "tool": f"{DEVICE_TOOL}{script}",
            "version": manifest.get("edgeresnet_version"),
            "command": command_line(),
        },
        device=device,
        environment=environment,
        model=manifest["model"],
        data=manifest.get("data", {}),
        target=target or manifest["target"],
        rows=rows,
    )


def command_line(program: str = "python3") -> str:
    """This command as typed, from the folder it ran in (its paths may be relative to it):
    what measures again. ``program`` runs ``sys.argv``, or is the command itself (a name
    without ".py", e.g. "edgeresnet")."""
    argv = [program, *sys.argv] if program == "python3" else [program, *sys.argv[1:]]
    return f"cd {shlex.quote(os.getcwd())} && " + " ".join(shlex.quote(part) for part in argv)


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write JSON atomically: a reader never sees half a file, and a failed write leaves none."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def to_rgb(img: Any) -> Any:
    """A PIL image as 8-bit RGB, as the build and the on-device evaluation both read images:
    16- and 32-bit greyscale (``I;16*``, ``I``, ``F``) rescaled to 8 bits, never clipped; other
    modes through PIL, alpha dropped. A mode PIL cannot convert raises ``ValueError``/``OSError``.
    """
    from PIL import Image  # only where images are read: the bench scripts never need PIL

    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.nan_to_num(np.asarray(img).astype(np.float64))
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if mode == "F" and lo >= 0 and hi <= 1:
            values = values * 255.0
        elif mode == "F" and lo >= 0 and hi <= 255:
            pass
        elif lo >= 0 and hi <= 65535:
            values = values / 257.0  # 16-bit full scale -> 8-bit full scale
        else:
            values = (values - lo) * (255.0 / (hi - lo)) if hi > lo else values * 0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return img.convert("RGB")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def not_a_bundle(bundle: Path) -> str | None:
    """Why ``bundle`` is no bundle at all (it holds no manifest), or None."""
    if (bundle / MANIFEST).is_file():
        return None
    return (
        f"{bundle} holds no {MANIFEST}: it is not a bundle (the folder a build writes per "
        "target; its ondevice/ folder is inside it)."
    )


def manifest_problems(bundle: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The bundle's manifest and every way its files differ from it (empty when whole)."""
    manifest_path = bundle / MANIFEST
    missing = not_a_bundle(bundle)
    if missing:
        return None, [missing]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        entries = manifest["files"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return None, [f"{manifest_path} is not a readable manifest: {exc}."]
    shape = _manifest_shape(manifest, entries)
    if shape:
        return None, [f"{manifest_path} is not a readable manifest: {shape}."]
    problems = []
    for entry in entries:
        path = bundle / entry["path"]
        if not path.is_file():
            problems.append(f"{path} is listed in the manifest but missing.")
        elif path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            problems.append(f"{path} does not match its sha256 in {manifest_path}.")
    listed = {entry["path"]: entry["sha256"] for entry in entries}
    for variant in manifest["variants"]:
        sha = (variant.get("artifact") or {}).get("sha256")
        if variant["file"] not in listed:
            problems.append(
                f"{variant['file']} (variant {variant['variant']}) is not in its files."
            )
        elif sha and sha != listed[variant["file"]]:
            problems.append(
                f"{variant['file']} (variant {variant['variant']}) has two sha256s in "
                f"{manifest_path}."
            )
    return manifest, problems


def _manifest_shape(manifest: Any, entries: Any) -> str | None:
    """What is wrong with the manifest's layout, or None: listed files and variants."""
    if not isinstance(entries, list) or not isinstance(manifest.get("variants"), list):
        return "'files' and 'variants' must be lists"
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("sha256"), str)
        ):
            return f"files[{i}] needs a path, bytes and sha256"
        path = Path(entry["path"])
        if path.is_absolute() or ".." in path.parts or not path.parts:
            return f"files[{i}] path {entry['path']!r} must lie inside the bundle"
    for i, variant in enumerate(manifest["variants"]):
        if not (
            isinstance(variant, dict)
            and isinstance(variant.get("variant"), str)
            and isinstance(variant.get("file"), str)
            and isinstance(variant.get("precision"), str)
        ):
            return f"variants[{i}] needs a variant name, a file and a precision"
    for key in ("model", "target"):
        if not isinstance(manifest.get(key), dict):
            return f"'{key}' must be an object"
    return None


def model_input_size(manifest: dict[str, Any]) -> int:
    """The input resolution a bundle's model was built at, from its manifest."""
    size = manifest["model"].get("input_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        fail(
            f"The manifest's model.input_size is {size!r}, not a whole number of pixels. The "
            "bundle is damaged or was changed.",
            "Copy the bundle again from the build machine (edgeresnet verify BUNDLE checks it).",
        )
    return size


def variants_for(manifest: dict[str, Any], bundle: Path, suffix: str, script: str) -> list[dict]:
    """The bundle's variants whose files end in ``suffix``: what ``script`` times. A bundle
    with none is another runtime's (or holds no artifacts): nothing here could be measured."""
    variants = [v for v in manifest["variants"] if v["file"].endswith(suffix)]
    if not variants:
        target = manifest["target"].get("name", "another")
        fail(
            f"{bundle} lists no {suffix} artifacts for {script} to time: it is a bundle of the "
            f"{target} target.",
            "Run the scripts in that bundle's own ondevice/ folder.",
        )
    return variants


def check_manifest(bundle: Path) -> dict[str, Any]:
    """Load a bundle's manifest and refuse the bundle if any listed file differs from it."""
    missing = not_a_bundle(bundle)
    if missing:
        misused(missing, "Pass that folder, e.g. --bundle . from inside it.")
    manifest, problems = manifest_problems(bundle)
    if problems or manifest is None:
        fail(
            " ".join(problems) + " The bundle is damaged or was changed.",
            "Copy the bundle again from the build machine (edgeresnet verify BUNDLE checks it).",
        )
    return manifest


def json_from_process(
    command: list[str], what: str, *, timeout_s: float | None = None
) -> dict[str, Any]:
    """Run ``COMMAND --json FILE`` in a process of its own and return the JSON it wrote.

    Every figure is taken this way, in the build as on the device: a process's peak memory only
    ever grows, and a runtime's thread pools outlive the model that made them. ``what`` names
    the job in errors.
    """
    with tempfile.TemporaryDirectory(prefix="edgeresnet-bench-") as tmp:
        out = Path(tmp) / "result.json"
        alone = f"Run it alone for its whole output: {shlex.join(command)}"
        try:
            proc = subprocess.run(
                [*command, "--json", str(out)], capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            fail(f"{what} did not finish within {timeout_s:.0f} s.", alone)
        if proc.returncode != 0 or not out.is_file():
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            fail(f"{what} failed (exit {proc.returncode}): {tail}", alone)
        try:
            document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        except ValueError as exc:  # a script that wrote half its file and still exited 0
            fail(f"{what} wrote unreadable results: {exc}", alone)
    return document


def in_fresh_process(script: str, args: list[str], what: str) -> dict[str, Any]:
    """``json_from_process`` of ``script``, a file next to this one: a bundle's variants are
    timed this way, one process each, as the build times them."""
    path = Path(__file__).resolve().with_name(script)
    return json_from_process([sys.executable, str(path), *args], what)


def batch_sizes(text: str) -> list[int]:
    """``--batch-sizes``: whole numbers of at least 1, the first 1 (the batch-1 latency)."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1,8, got {text!r}") from None
    if sizes[0] != 1:
        raise argparse.ArgumentTypeError(
            f"batch sizes must start with 1 (the batch-1 latency), got {text!r}"
        )
    if min(sizes) < 1 or len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be at least 1, each once, got {text!r}")
    return sizes


def a_name(text: str) -> str:
    """``--device-name``: a name, not blank (blank would fall back to the host name unsaid)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name the device, got a blank name")
    return text.strip()


def a_folder(text: str) -> Path:
    """``--out``: a folder path, not blank (blank would mean the current folder unsaid)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got a blank path (. is this one)")
    return Path(text)


def at_least(minimum: float, kind: type = int) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` no smaller than ``minimum``."""

    def number(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not minimum <= value < float("inf"):  # NaN fails every comparison
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return number


def a_thread_count(text: str) -> int:
    """``--threads``: 1 up to this device's logical cores; more only queue for the cores."""
    value = at_least(1)(text)
    cores = os.cpu_count() or 1
    if value > cores:
        raise argparse.ArgumentTypeError(
            f"must be 1 to {cores}, this device's logical cores, got {value}"
        )
    return value


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """The timing options of the CPU benchmark scripts, with the target profiles' defaults."""
    parser.add_argument("--threads", type=a_thread_count, default=physical_cores())
    parser.add_argument("--batch-sizes", type=batch_sizes, default=[1, 8])
    parser.add_argument("--input-size", type=at_least(32), default=224)
    parser.add_argument("--warmup", type=at_least(0), default=10)
    parser.add_argument("--min-iterations", type=at_least(1), default=50)
    parser.add_argument("--min-seconds", type=at_least(0.0, float), default=3.0)


def add_rounds_argument(parser: argparse.ArgumentParser) -> None:
    """``--rounds N``: a bundle's variants timed N times (see ``in_rounds``)."""
    parser.add_argument(
        "--rounds",
        type=at_least(1),
        default=1,
        help="with --bundle: time every variant N times, the order reversed each round, and "
        "keep each variant's fastest run (on a device other work shares; default 1)",
    )


def rounds_wanted(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--rounds``, after checking it goes with ``--bundle``."""
    if args.rounds > 1 and not args.bundle:
        parser.error("--rounds goes with --bundle: it times a bundle's variants in turn")
    return int(args.rounds)


def in_rounds(
    jobs: list[tuple[str, Callable[[], dict[str, Any] | None]]],
    rounds: int,
    announce: Callable[[str], ContextManager[Any]] | None = None,
) -> list[dict[str, Any] | None]:
    """Run every ``(label, measure)`` job ``rounds`` times, the order reversed each round, and
    return each job's ``fastest_run`` (None for a job that never gave a figure).

    Other processes only ever slow a run down, so the fastest round is the least disturbed one
    (the reasoning of Python's ``timeit``); alternating the order keeps a burst of load from
    always landing on the same rows. A ``measure`` that returns None cannot be timed here and is
    not tried again. ``announce(title)`` wraps each run (default: a line on standard output).
    """
    announce = announce or _announced
    runs: list[list[dict[str, Any]]] = [[] for _ in jobs]
    given_up: set[int] = set()
    for r in range(rounds):
        for i in list(range(len(jobs)))[:: 1 if r % 2 == 0 else -1]:
            if i in given_up:
                continue
            label, measure = jobs[i]
            of = f", round {r + 1} of {rounds}" if rounds > 1 else ""
            with announce(f"benchmarking {label}{of}"):
                result = measure()
            if result is None:
                given_up.add(i)
            else:
                runs[i].append(result)
    return [_fastest_run(measured) if measured else None for measured in runs]


@contextlib.contextmanager
def _announced(title: str) -> Iterator[None]:
    print(f"{title} ...", flush=True)
    yield


def _fastest_run(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the lowest p50; throughput from the run with the most images/s.

    A burst of load can slow a throughput loop without touching the latency loop of the same
    run (seen: one OpenVINO INT8 round at 52 img/s, the others at 84-98), so each figure is
    taken from its own least disturbed round. Every round's p50 and images/s are kept in
    ``rounds``.
    """
    if len(measured) == 1:
        return measured[0]
    chosen = dict(min(measured, key=lambda b: b["latency"]["p50_ms"]))
    rates = [(b.get("throughput") or {}).get("images_per_s") for b in measured]
    if all(isinstance(r, (int, float)) for r in rates):
        chosen["throughput"] = measured[rates.index(max(rates))]["throughput"]
    chosen["rounds"] = {
        "count": len(measured),
        "p50_ms": [b["latency"]["p50_ms"] for b in measured],
        "images_per_s": rates,
        "kept": "fastest",
    }
    return chosen


def output_file(args: argparse.Namespace, suffix: str = ".json") -> Path | None:
    """Where the results go, checked before anything is measured: ``--json``, else with
    ``--bundle`` BUNDLE/results.<device>.<target><suffix> (one device's results of several
    bundles can share a folder), else None (standard output)."""
    bundle = getattr(args, "bundle", None)
    if bundle is not None and not Path(bundle).is_dir():
        misused(
            f"--bundle {bundle} is not a folder: it takes the bundle a build wrote, the folder "
            "holding manifest.json.",
            "Pass that folder, e.g. --bundle . from inside it.",
        )
    if args.json is None and not bundle:
        return None
    device = _safe(device_name(args.device_name)) or "device"
    name = ".".join(filter(None, (device, _target(bundle))))
    out = Path(args.json or Path(args.bundle) / f"results.{name}{suffix}")
    if out.is_dir():
        misused(f"{out} is a folder.", "Pass --json with a file name, e.g. results.mydevice.json.")
    if out.exists() and not _device_output(out):
        fail(
            f"{out} exists and is not the output of an on-device run: writing there would "
            "replace it.",
            "Pass --json with a new file name, e.g. results.mydevice.json.",
        )
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        fail(
            f"cannot write {out}: {out.parent} is not a folder this user can write.",
            "Pass --json with a path in a folder that exists and is writable.",
        )
    return out


def _device_output(path: Path) -> bool:
    """Whether ``path`` holds what these scripts write, which a new run may replace: a
    bundle's results (named by their producer) or one model's timing (no schema, a figure)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(document, dict):
        return False
    producer = document.get("producer")
    if producer is not None:
        tool = producer.get("tool") if isinstance(producer, dict) else None
        return isinstance(tool, str) and tool.startswith(DEVICE_TOOL)
    return "schema" not in document and ("latency" in document or "ratio" in document)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")


def _target(bundle: Path | None) -> str:
    """The target a bundle was built for, from its manifest; "" where it cannot be read (the
    manifest check that follows says why)."""
    try:
        manifest = json.loads((Path(bundle) / MANIFEST).read_text(encoding="utf-8"))
        return _safe(str(manifest["target"]["name"]))
    except (TypeError, OSError, ValueError, KeyError):
        return ""


def timing(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments ``measure`` takes from the timing options."""
    return {
        "threads": args.threads,
        "batch_sizes": args.batch_sizes,
        "warmup": args.warmup,
        "min_iterations": args.min_iterations,
        "min_seconds": args.min_seconds,
    }


def with_load_average(measure: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``measure(*args)``'s result, with the machine's load average (1, 5, 15 min) at its start
    and end: a report names the figures timed while other work competed for the cores."""
    if not hasattr(os, "getloadavg"):  # not on every system
        return measure(*args)
    before = os.getloadavg()
    result = measure(*args)
    result["load_average"] = {"start": list(before), "end": list(os.getloadavg())}
    return result


def timing_flags(
    *,
    threads: int | None,
    batch_sizes: list[int],
    input_size: int,
    warmup: int,
    min_iterations: int,
    min_seconds: float,
) -> list[str]:
    """The timing options above as a command line (``threads`` None: the script's default)."""
    return [
        *([] if threads is None else ["--threads", str(threads)]),
        *("--batch-sizes", ",".join(map(str, batch_sizes))),
        *("--input-size", str(input_size)),
        *("--warmup", str(warmup)),
        *("--min-iterations", str(min_iterations)),
        *("--min-seconds", str(min_seconds)),
    ]


def add_pairing_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--reference`` and ``--pairs``: one model timed against another, call for call."""
    parser.add_argument(
        "--reference",
        type=Path,
        help=f"another {what}: instead of the full benchmark, time the two at batch 1 in "
        "alternating pairs and report the ratio of their p50s with a 95%% interval",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        help=f"alternating pairs ({DEFAULT_PAIRS} by default with --reference); with --bundle, "
        "also time each variant against the reference its manifest names (default: no)",
    )


def pairs_wanted(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The pairs to time (0: none), after checking ``--reference`` and ``--pairs``."""
    if args.reference is None:
        if args.pairs is not None and (args.pairs < 0 or args.pairs == 1):
            parser.error(f"--pairs must be 0 (off) or at least 2, got {args.pairs}")
        if args.pairs and not args.bundle:
            parser.error("--pairs with --model times it against --reference, and none was given")
        return args.pairs or 0
    if args.bundle:
        parser.error(
            "--reference goes with a single model; with --bundle, pass --pairs N and each "
            "variant is timed against the reference its manifest names"
        )
    if not args.reference.is_file():
        parser.error(f"--reference {args.reference} does not exist")
    pairs = DEFAULT_PAIRS if args.pairs is None else args.pairs
    if pairs < 2:
        parser.error(f"--pairs must be at least 2 with --reference, got {pairs}")
    return pairs


def paired_rows(
    manifest: dict[str, Any],
    rows: list[dict[str, Any]],
    pair: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
) -> None:
    """Add ``bench.paired`` to each row whose variant names a reference in the manifest.

    ``pair(variant, reference)`` times two manifest variants against each other; a reference
    that was not benchmarked here (another runtime's file, a failed engine) is left out.
    """
    variants = {v["variant"]: v for v in manifest["variants"]}
    measured = {row["variant"] for row in rows if row.get("bench")}
    for row in rows:
        name = variants.get(row["variant"], {}).get("reference")
        if row["variant"] not in measured or name not in measured:
            continue
        reference = variants[name]
        print(f"timing {row['variant']} against {reference['variant']} ...", flush=True)
        paired = pair(variants[row["variant"]], reference)
        row["bench"]["paired"] = {"reference": reference["variant"], **paired}


# Figures of a variant's own network where it is not the model's (pruned): params, MACs.
PER_VARIANT_MODEL = ("params", "macs")


def bundle_row(variant: dict[str, Any], bench: dict[str, Any]) -> dict[str, Any]:
    """A results row for one variant of a bundle, timed on the device (no accuracy here)."""
    return {
        **{k: variant[k] for k in ("variant", "precision", "artifact")},
        **{k: variant[k] for k in PER_VARIANT_MODEL if k in variant},
        "accuracy": None,
        "fidelity": None,
        "bench": bench,
    }


def emit(document: dict[str, Any], out: Path | None) -> None:
    """Write ``document`` to ``out``, or to stdout without one."""
    if out is None:
        json.dump(document, sys.stdout, indent=2)
    else:
        write_json(out, document)
        print(f"wrote {out}")


def per_batch(count: int, batch: int, *, floor: int) -> int:
    """Calls that cover ``count`` images at ``batch`` images a call, and at least ``floor``.

    Warm-up and minimum iterations count images, so a batch of 8 is not timed 8 times longer
    than a batch of 1; ``min_seconds`` still bounds every loop from below.
    """
    return max(floor, -(-count // max(batch, 1)))


def time_loop(
    fn: Callable[[], Any], *, warmup: int, min_iterations: int, min_seconds: float
) -> list[float]:
    """Wall-clock seconds of each call after ``warmup`` calls; runs at least both minimums."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iterations or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def alternate(
    run: Callable[[], Any], reference: Callable[[], Any], *, pairs: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Seconds of ``pairs`` calls each of ``run`` and ``reference``, called in turn.

    The order flips every pair (A B, B A, ...), so neither call always follows the other, and a
    burst of load on a shared machine, or a clock that drifts, falls on both alike.
    """
    for _ in range(warmup):
        run()
        reference()
    times: tuple[list[float], list[float]] = ([], [])
    calls = ((run, times[0]), (reference, times[1]))
    for i in range(pairs):
        for fn, into in calls if i % 2 == 0 else calls[::-1]:
            t0 = time.perf_counter()
            fn()
            into.append(time.perf_counter() - t0)
    return times


def paired_ratio(
    times_s: list[float], reference_s: list[float], *, resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """p50 of ``times_s`` over p50 of ``reference_s``, with a 95 % bootstrap interval.

    The interval resamples whole pairs, so it keeps what the two series share. It holds the
    noise within one run, not a change of the machine between runs: ResNet-50 30 % pruned
    against dense, OpenVINO INT8 on 2 shared cores, gave 0.52-0.68x timed in separate runs,
    and 0.566-0.622x in paired runs at different times (README, "Paired ratios").
    """
    ms = np.asarray(times_s) * 1000.0
    ref = np.asarray(reference_s) * 1000.0
    if ms.size != ref.size or ms.size < 2:
        raise ValueError(f"need two equal series of at least 2 pairs, got {ms.size}, {ref.size}")
    picks = np.random.default_rng(seed).integers(0, ms.size, (resamples, ms.size))
    ratios = np.median(ms[picks], axis=1) / np.median(ref[picks], axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {
        "pairs": int(ms.size),
        "p50_ms": round(float(np.median(ms)), 4),
        "reference_p50_ms": round(float(np.median(ref)), 4),
        "ratio": round(float(np.median(ms) / np.median(ref)), 4),
        "ratio_ci95": [round(float(low), 4), round(float(high), 4)],
        "order": "alternating, flipped every pair",
    }


def latency_stats(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50_ms": round(float(p50), 4),
        "p90_ms": round(float(p90), 4),
        "p99_ms": round(float(p99), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "min_ms": round(float(ms.min()), 4),
        "iterations": int(ms.size),
    }


def rss_mb() -> float:
    """Resident memory of this process now."""
    pages = _read("/proc/self/statm").split()
    return round(int(pages[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1) if pages else 0.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far.

    Linux's VmHWM restarts at exec; ru_maxrss would include the parent that spawned us.
    """
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo_field(text: str, keys: tuple[str, ...]) -> str | None:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return None


def _mem_total_kb() -> int | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return None
