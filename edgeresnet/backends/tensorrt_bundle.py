"""The generated part of a TensorRT bundle: device settings, a trtexec script and a README.

The scripts in ``ondevice/`` are fixed; these three files carry what depends on the target
profile (TensorRT versions, DLA, workspace, batch sizes, input shape) to the device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeresnet.backends.tensorrt_cache import CACHE_NAME
from edgeresnet.export import INPUT_NAME

SETTINGS = "tensorrt.json"
TRTEXEC = "trtexec.sh"
README = "README.md"


def settings(runtime: dict[str, Any], profile: dict[str, Any] | None) -> dict[str, Any]:
    """What the on-device scripts need (ondevice/tensorrt.json): the backend's [runtime] table
    and, when a profile is given, its name, precisions and batch sizes."""
    profile = profile or {}
    return {
        "target": profile.get("target", "tensorrt"),
        "device": runtime["device"],
        "tensorrt_versions": runtime["tensorrt_versions"],
        "jetpack": runtime["jetpack"] or None,
        "dla_core": runtime["dla_core"],
        "gpu_fallback": runtime["gpu_fallback"],
        "workspace_mb": runtime["workspace_mb"],
        "int8_mode": runtime["int8_mode"],
        "qdq_weights": runtime["qdq_weights"],
        "precisions": profile.get("precisions", ["fp32", "fp16", "int8"]),
        "batch_sizes": profile.get("batch_sizes", [1, 8]),
        "input_name": INPUT_NAME,
        "calibration_cache": CACHE_NAME,
    }


def trtexec_script(s: dict[str, Any]) -> str:
    """A shell script running trtexec with the same settings as build_engine.py."""
    low, high = min(s["batch_sizes"]), max(s["batch_sizes"])
    shape = "3x${size}x${size}"
    dla = f" --useDLACore={s['dla_core']}" if s["dla_core"] >= 0 else ""
    dla += " --allowGPUFallback" if s["dla_core"] >= 0 and s["gpu_fallback"] else ""
    return f"""#!/bin/sh
# trtexec equivalent of ondevice/build_engine.py for target '{s["target"]}'
# (TensorRT {s["tensorrt_versions"]}). Builds the engine and prints trtexec's own timings.
# Usage, from the bundle folder:  sh ondevice/trtexec.sh MODEL.onnx fp32|fp16|int8|best
set -eu
fail() {{ printf 'error: %s\n  hint: %s\n' "$1" "$2" >&2; exit 2; }}
[ $# -eq 2 ] || fail "expected a model and a precision" "sh ondevice/trtexec.sh MODEL.onnx int8"
[ -f manifest.json ] || fail "no manifest.json here" "run it from the bundle folder"
TRTEXEC=${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}
command -v "$TRTEXEC" >/dev/null || fail "no trtexec at $TRTEXEC" "set TRTEXEC=/path/to/trtexec"
model=$1
precision=$2
int8_mode=${{INT8_MODE:-{s["int8_mode"]}}}
size=$(python3 -c 'import json; print(json.load(open("manifest.json"))["model"]["input_size"])')
case $precision in
  fp32) flags="--noTF32" ;;
  fp16) flags="--fp16" ;;
  int8) flags="--int8" ;;
  best) flags="--best" ;;
  *) fail "precision must be fp32, fp16, int8 or best, got $precision" "e.g. int8" ;;
esac
mkdir -p engines
if [ "$precision" = int8 ] || [ "$precision" = best ]; then
  if [ "$int8_mode" = implicit ]; then
    # Implicit INT8: the FP32 ONNX plus the per-tensor scales of the calibration cache, its
    # header naming the TensorRT here (as build_engine.py does), or TensorRT ignores it.
    folder=$(dirname "$model")
    model=$folder/model.fp32.onnx
    python3 -c 'import sys; sys.path.insert(0, "ondevice"); import common, trt_runtime
common.run(lambda: trt_runtime.print_calibration_cache(sys.argv[1]))' \
      "$folder/{s["calibration_cache"]}" > engines/{s["calibration_cache"]}
    flags="$flags --calib=engines/{s["calibration_cache"]}"
  fi
fi
name=$(basename "$model" .onnx).$precision
exec "$TRTEXEC" --onnx="$model" $flags{dla} \\
  --minShapes={s["input_name"]}:{low}x{shape} --optShapes={s["input_name"]}:{low}x{shape} \\
  --maxShapes={s["input_name"]}:{high}x{shape} --shapes={s["input_name"]}:{low}x{shape} \\
  --memPoolSize=workspace:{s["workspace_mb"]}M --timingCacheFile=engines/timing.cache \\
  --profilingVerbosity=detailed --exportLayerInfo=engines/$name.trtexec-layers.json \\
  --saveEngine=engines/$name.trtexec.engine --separateProfileRun
"""


def readme(s: dict[str, Any]) -> str:
    """Step-by-step instructions for the device."""
    jetson = s["jetpack"] is not None
    dla = f" core {s['dla_core']}" if s["dla_core"] >= 0 else ""
    clocks = (
        "sudo nvpmodel -q            # note the power mode; -m 0 is MAXN on most modules\n"
        "sudo jetson_clocks          # lock clocks, or the latency follows DVFS\n"
        if jetson
        else "nvidia-smi -q -d CLOCK      # note the clocks; lock them for stable numbers\n"
    )
    conditions = (
        "the TensorRT and JetPack versions, the power mode (`nvpmodel -q`) and whether clocks "
        "were locked (`jetson_clocks --show`, needs sudo); it warns when they were not"
        if jetson
        else "the TensorRT version and, from `nvidia-smi`, the SM clock against its maximum, "
        "the power limit and persistence mode"
    )
    return f"""# TensorRT bundle for target `{s["target"]}`

Written for TensorRT {s["tensorrt_versions"]}{f", JetPack {s['jetpack']}" if jetson else ""}
({s["device"]}{dla}). TensorRT engines only load with the TensorRT version and GPU that built
them, so the engines are built here, on the device, from the ONNX files in this folder.

## Steps

```
python3 -c "import tensorrt; print(tensorrt.__version__)"    # must print a version in range
{clocks}python3 ondevice/build_engine.py --bundle .     # engines/*.engine + build.json
python3 ondevice/bench_tensorrt.py --bundle . --device-name my-device
python3 ondevice/evaluate_tensorrt.py --bundle . --images LABELLED_DIR \\
    --results results.my-device.{s["target"]}.json            # optional: top-1/top-5 (needs PIL)
```

Then, on the build machine:

```
scp device:bundle/results.my-device.{s["target"]}.json .
edgeresnet report build/{s["target"]}/results.json results.my-device.{s["target"]}.json \\
    --out reports/my-device/
```

Every script first checks every file against `manifest.json` (sha256) and refuses a damaged
bundle, then refuses a TensorRT outside {s["tensorrt_versions"]} (`--ignore-version` to override).
They import only `tensorrt`, `numpy` and the standard library; GPU memory and timing come from
the CUDA driver (`libcuda.so.1`) through ctypes.

`evaluate_tensorrt.py` reads labels as the build does: a `labels.tsv`/`labels.txt`/`labels.csv`
(`relative/path class_index`) or one folder per class (index = rank of the folder name). It
refuses a label the model has no class for, naming the file and line, and (unless the weights
are random) fewer class folders than the model's classes, whose ranks are not the class
indices: give such a folder a labels file. `--limit N` scores a random N of the images drawn
with `--seed` (default 0), in path order: the images the build's `--eval-size N --seed S` draws
from the same folder. The seed and image counts go to the results' `data.evaluation`.

## What is here

- `model.fp32.onnx`: the FP32 model; the `fp32` and `fp16` engines are built from it
  (fp32 with TF32 off, fp16 with the FP16 flag).
- `model.int8.onnx`: INT8 QDQ ONNX for TensorRT's explicit quantization (signed int8,
  zero point 0, per-channel weight scales, float biases), checked against TensorRT's rules
  and run in ONNX Runtime against the FP32 model when it was built.
- `{s["calibration_cache"]}`: per-tensor scales from the same calibration, in TensorRT's
  calibration-cache format, for implicit INT8 (`--int8-mode implicit`: TensorRT 8.x, DLA).
  This bundle's default INT8 mode: **{s["int8_mode"]}**.
- `ondevice/trtexec.sh`: the same builds with `trtexec`
  (`sh ondevice/trtexec.sh model.int8.onnx int8`).
- `ondevice/tensorrt.json`: the profile's settings the scripts read.

## Measurements

`bench_tensorrt.py` times each engine at batch sizes {s["batch_sizes"]}: latency p50/p90/p99
(host clock per batch, copies included), GPU compute time (CUDA events), throughput at the
largest batch, load time and peak memory, and records {conditions}.
"""


def write(folder: Path, s: dict[str, Any]) -> list[Path]:
    """Write the three generated files into ``folder``; returns their paths."""
    files = {
        SETTINGS: json.dumps(s, indent=2) + "\n",
        TRTEXEC: trtexec_script(s),
        README: readme(s),
    }
    paths = []
    for name, text in files.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
