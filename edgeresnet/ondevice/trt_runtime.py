"""TensorRT engines on the GPU from plain Python, shared by the bundle's TensorRT scripts.

Imports only tensorrt (lazily, so a missing TensorRT is a clear message rather than a
traceback), numpy and the standard library. GPU memory, streams and events come from the CUDA
driver library through ctypes: it ships with every NVIDIA driver and JetPack, so the scripts
need neither cuda-python nor pycuda.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

try:
    from . import common  # inside the edgeresnet package, or a bundle's scripts
except ImportError:  # imported alone from the bundle's ondevice/ folder (trtexec.sh)
    import common  # type: ignore[no-redef]

NOT_INSTALLED = "TensorRT is not installed here"
# The calibrator whose caches edgeresnet writes: the header is TRT-<version code>-<this>.
CALIBRATION_ALGORITHM = "EntropyCalibration2"
_CLAUSE = re.compile(r"^\s*(>=|<=|==|>|<)\s*(\d+(?:\.\d+)*)\s*$")


def import_tensorrt() -> Any:
    """The tensorrt module, or a ``ScriptError`` saying where the scripts must run."""
    try:
        import tensorrt
    except ImportError as exc:
        common.fail(
            f"{NOT_INSTALLED} (import tensorrt failed: {exc}).",
            "Run this script on the device, where JetPack or the TensorRT Python wheel provides "
            "it (python3 -c 'import tensorrt' must work).",
        )
    return tensorrt


def version_range(spec: str) -> list[tuple[str, list[int]]]:
    """The comparisons of ``spec`` ('>=10.0,<11'), each (operator, version numbers)."""
    clauses = []
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        match = _CLAUSE.match(clause)
        if match is None:
            common.fail(
                f"cannot read the TensorRT version range {spec!r}.",
                "Write it as comparisons joined by commas, e.g. >=10.0,<11.",
            )
        clauses.append((match[1], _numbers(match[2])))
    return clauses


def lowest_version(spec: str) -> str | None:
    """The oldest version ``spec`` starts from ('>=8.5,<11' -> '8.5'); None without one."""
    bounds = [want for op, want in version_range(spec) if op in (">=", "==", ">")]
    return ".".join(map(str, max(bounds))) if bounds else None


def version_matches(version: str, spec: str) -> bool:
    """True when ``version`` ('10.3.0.30') satisfies ``spec`` ('>=10.0,<11')."""
    have = _numbers(version)
    for op, want in version_range(spec):
        size = max(len(have), len(want))
        a, b = have + [0] * (size - len(have)), want + [0] * (size - len(want))
        ok = {">=": a >= b, "<=": a <= b, "==": a == b, ">": a > b, "<": a < b}[op]
        if not ok:
            return False
    return True


def check_version(version: str, spec: str, *, ignore: bool = False) -> None:
    if spec and not version_matches(version, spec):
        message = (
            f"TensorRT {version} is outside the range this bundle's profile was written for "
            f"({spec}): engines and INT8 behaviour differ between TensorRT versions."
        )
        if not ignore:
            common.fail(
                message,
                "Use the matching target profile, or pass --ignore-version to build anyway.",
            )
        print(f"warning: {message}", flush=True)


def version_code(version: str) -> int:
    """TensorRT's integer version as its headers define it: '8.6.1' -> 8601, '10.3' -> 100300."""
    major, minor, patch = (_numbers(version) + [0, 0, 0])[:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def engine_records(bundle: Path) -> list[dict[str, Any]]:
    """The engines build_engine.py made, from ``engines/build.json``, checked whole."""
    built = bundle / "engines" / "build.json"
    if not built.is_file():
        common.fail(f"{built} is missing.", "Run ondevice/build_engine.py --bundle . first.")
    try:
        records = json.loads(built.read_text(encoding="utf-8"))["engines"]
        whole = isinstance(records, list) and all(
            isinstance(r, dict)
            and isinstance(r.get("engine"), str)
            and isinstance(r.get("variant"), str)
            and isinstance(r.get("options"), dict)
            and {"precision", "batch_sizes", "dla_core"} <= set(r["options"])
            for r in records
        )
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        whole = False
    if not whole:
        common.fail(
            f"{built} is not the engine list build_engine.py writes (damaged or edited).",
            "Build the engines again: python3 ondevice/build_engine.py --bundle .",
        )
    return records


def print_calibration_cache(path: str) -> int:
    """Write the calibration cache at ``path``, its header naming the TensorRT installed here,
    to standard output (``trtexec.sh``; run it through ``common.run``)."""
    sys.stdout.buffer.write(calibration_cache(Path(path), import_tensorrt().__version__))
    return 0


def calibration_cache(path: Path, version: str) -> bytes:
    """The bundle's calibration cache with its header naming TensorRT ``version``.

    The per-tensor scales do not depend on the TensorRT version, but TensorRT reads a cache only
    when its header names the running version; build_engine.py and trtexec.sh both use this.
    """
    if not path.is_file():
        common.fail(
            f"implicit INT8 needs the calibration cache, {path} is missing.",
            "Copy the bundle again from the build machine.",
        )
    lines = path.read_text(encoding="ascii").splitlines()
    header = f"TRT-{version_code(version)}-{CALIBRATION_ALGORITHM}"
    return "\n".join([header, *lines[1:]]).encode() + b"\n"


def _numbers(version: str) -> list[int]:
    return [int(p) for p in re.findall(r"\d+", version)[:4]]


class Cuda:
    """The few CUDA driver calls the scripts need: memory, copies, a stream, events."""

    def __init__(self, device: int = 0) -> None:
        try:
            self._lib = ctypes.CDLL("libcuda.so.1")
        except OSError as exc:
            common.fail(
                f"no NVIDIA driver here (libcuda.so.1: {exc}).",
                "Run this on the GPU device, with its NVIDIA driver (JetPack) installed.",
            )
        lib = self._lib
        lib.cuGetErrorString.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        lib.cuMemcpyHtoD_v2.argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
        lib.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t]
        lib.cuMemFree_v2.argtypes = [ctypes.c_uint64]
        for name in ("cuStreamSynchronize", "cuEventSynchronize", "cuCtxSetCurrent"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.cuEventRecord.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.cuEventElapsedTime.argtypes = [
            ctypes.POINTER(ctypes.c_float),
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._call("cuInit", 0)
        handle = ctypes.c_int()
        self._call("cuDeviceGet", ctypes.byref(handle), device)
        # The runtime API TensorRT uses works in the device's primary context: share it.
        self._context = ctypes.c_void_p()
        self._call("cuDevicePrimaryCtxRetain", ctypes.byref(self._context), handle)
        self._call("cuCtxSetCurrent", self._context)
        name = ctypes.create_string_buffer(256)
        self._call("cuDeviceGetName", name, 256, handle)
        self.device_name = name.value.decode(errors="replace")
        version = ctypes.c_int()
        self._call("cuDriverGetVersion", ctypes.byref(version))
        # The CUDA version the driver supports (cuDriverGetVersion), not the driver release.
        self.cuda_version = f"{version.value // 1000}.{version.value % 1000 // 10}"

    def _call(self, name: str, *args: Any) -> None:
        code = getattr(self._lib, name)(*args)
        if code != 0:
            text = ctypes.c_char_p()
            self._lib.cuGetErrorString(code, ctypes.byref(text))
            common.fail(
                f"CUDA {name} failed: {(text.value or b'?').decode()}",
                "Check nvidia-smi (or tegrastats) for another process holding the GPU.",
            )

    def malloc(self, nbytes: int) -> int:
        pointer = ctypes.c_uint64()
        self._call("cuMemAlloc_v2", ctypes.byref(pointer), ctypes.c_size_t(max(nbytes, 1)))
        return pointer.value

    def free(self, pointer: int) -> None:
        self._call("cuMemFree_v2", pointer)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        self._call("cuMemcpyHtoD_v2", pointer, array.ctypes.data, array.nbytes)

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        self._call("cuMemcpyDtoH_v2", array.ctypes.data, pointer, array.nbytes)

    def stream(self) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        self._call("cuStreamCreate", ctypes.byref(handle), 0)
        return handle

    def synchronize(self, stream: ctypes.c_void_p) -> None:
        self._call("cuStreamSynchronize", stream)

    def event(self) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        self._call("cuEventCreate", ctypes.byref(handle), 0)
        return handle

    def record(self, event: ctypes.c_void_p, stream: ctypes.c_void_p) -> None:
        self._call("cuEventRecord", event, stream)

    def elapsed_ms(self, start: ctypes.c_void_p, end: ctypes.c_void_p) -> float:
        self._call("cuEventSynchronize", end)
        ms = ctypes.c_float()
        self._call("cuEventElapsedTime", ctypes.byref(ms), start, end)
        return ms.value


class EngineRunner:
    """One deserialized engine with device buffers sized for the current batch."""

    def __init__(self, trt: Any, engine_path: Path, cuda: Cuda, *, dla_core: int = -1) -> None:
        self.trt, self.cuda = trt, cuda
        # The logger and runtime must outlive the engine they made: keep them.
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        if dla_core >= 0:
            self.runtime.DLA_core = dla_core
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            common.fail(
                f"{engine_path} could not be loaded: engines only load with the TensorRT "
                "version and GPU that built them.",
                "Rebuild it here with ondevice/build_engine.py --bundle .",
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == mode)
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self.stream = cuda.stream()
        self._shape: tuple[int, ...] | None = None
        self._buffers: dict[str, tuple[int, np.ndarray]] = {}

    @property
    def batch_range(self) -> tuple[int, int]:
        """The smallest and largest batch of the engine's optimization profile."""
        low, _, high = self.engine.get_tensor_profile_shape(self.input, 0)
        return int(low[0]), int(high[0])

    def _prepare(self, shape: tuple[int, ...]) -> None:
        for pointer, _ in self._buffers.values():
            self.cuda.free(pointer)
        self._buffers = {}
        if not self.context.set_input_shape(self.input, shape):
            low, high = self.batch_range
            common.fail(
                f"the engine takes batches of {low} to {high}, not input shape {shape}.",
                "Rebuild it with build_engine.py --batch-sizes covering that batch.",
            )
        for name in (self.input, *self.outputs):
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            host = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype)
            pointer = self.cuda.malloc(host.nbytes)
            self.context.set_tensor_address(name, pointer)
            self._buffers[name] = (pointer, host)
        self._shape = shape

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Copy in, execute, copy out: what an application pays per batch."""
        if batch.shape != self._shape:
            self._prepare(batch.shape)
        pointer, host = self._buffers[self.input]
        self.cuda.to_device(pointer, np.ascontiguousarray(batch, dtype=host.dtype))
        self.execute()
        out_pointer, out = self._buffers[self.outputs[0]]
        self.cuda.to_host(out, out_pointer)
        return out.astype(np.float32, copy=True)

    def execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.value):
            common.fail(
                "TensorRT execute_async_v3 failed (see the log above).",
                "Rebuild the engine with build_engine.py; if it fails again, see the log.",
            )
        self.cuda.synchronize(self.stream)

    def gpu_ms(self, start: ctypes.c_void_p, end: ctypes.c_void_p) -> float:
        """GPU time of one execution alone, measured with CUDA events."""
        self.cuda.record(start, self.stream)
        self.context.execute_async_v3(self.stream.value)
        self.cuda.record(end, self.stream)
        return self.cuda.elapsed_ms(start, end)

    def close(self) -> None:
        for pointer, _ in self._buffers.values():
            self.cuda.free(pointer)
        self._buffers = {}


def layer_precisions(layer_info: dict[str, Any]) -> dict[str, Any]:
    """What precision the engine's convolutions run in, read from the engine inspector's JSON."""
    convs = [
        layer
        for layer in layer_info.get("Layers", [])
        if isinstance(layer, dict) and "convolution" in str(layer.get("LayerType", "")).lower()
    ]
    counts: dict[str, int] = {}
    for layer in convs:
        fmt = str((layer.get("Inputs") or [{}])[0].get("Format/Datatype", "")).lower()
        kind = next((k for k, words in _KINDS if any(w in fmt for w in words)), "unknown")
        counts[kind] = counts.get(kind, 0) + 1
    label = "+".join(sorted(counts)) if counts else "unknown"
    return {"label": label, "convolutions": len(convs), "conv_input_types": counts}


_KINDS = (("int8", ("int8",)), ("fp16", ("half", "fp16")), ("fp32", ("float", "fp32")))


def jetson_facts() -> dict[str, Any] | None:
    """JetPack / L4T release, power mode and clock lock on a Jetson; None elsewhere."""
    release = _read("/etc/nv_tegra_release")
    if not release:
        return None
    match = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", release)
    l4t = f"{match[1]}.{match[2]}" if match else None
    jetpack = _run(["dpkg-query", "--show", "--showformat=${Version}", "nvidia-jetpack"])
    power = _run(["nvpmodel", "-q"])
    clocks = _run(["jetson_clocks", "--show"])
    return {
        "l4t": l4t,
        "jetpack": jetpack or _JETPACK.get((l4t or "").split(".")[0]),
        "power_mode": power.splitlines()[0].split(":", 1)[-1].strip() if power else None,
        "clocks_locked": _clocks_locked(clocks) if clocks else None,
    }


_JETPACK = {"36": "6.x (from L4T R36)", "35": "5.1.x (from L4T R35)", "32": "4.x (from L4T R32)"}


def _clocks_locked(text: str) -> bool | None:
    """jetson_clocks pins MinFreq to MaxFreq; read that from ``jetson_clocks --show``."""
    pairs = re.findall(r"MinFreq=(\d+) MaxFreq=(\d+)", text)
    return all(lo == hi for lo, hi in pairs) if pairs else None


def gpu_facts() -> dict[str, Any] | None:
    """Name, driver and clocks of a discrete GPU from nvidia-smi; None where it is absent."""
    fields = "name,driver_version,clocks.sm,clocks.max.sm,power.limit,persistence_mode"
    text = _run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"])
    if not text:
        return None
    values = [v.strip() for v in text.splitlines()[0].split(",")]
    return dict(zip(fields.split(","), values))


def load_settings(bundle: Path) -> dict[str, Any]:
    """The profile's TensorRT settings the backend wrote next to the scripts."""
    path = bundle / "ondevice" / "tensorrt.json"
    if not path.is_file():
        common.fail(
            f"{path} is missing: this bundle was not built for TensorRT.",
            "Build the bundle with edgeresnet build --target jetson (or tensorrt).",
        )
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        common.fail(
            f"{path} cannot be read: {exc}.", "Copy the bundle again from the build machine."
        )
    if not isinstance(settings, dict):
        common.fail(
            f"{path} is not the TensorRT settings a build writes.",
            "Copy the bundle again from the build machine.",
        )
    return settings


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _run(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None
