#!/usr/bin/env bash
# Measure this report again on the machine it runs on, then rewrite it:
#   bash reports/cpu-comparison/regenerate.sh
# Two builds (ONNX Runtime and OpenVINO, dense and 30 % pruned; each variant also timed against
# its reference in 500 alternating pairs), one peer run that re-times both bundles back to back
# with the by-hand peers (3 rounds, order reversed each round), the report, which keeps copies of
# the three results files in inputs/. About 20 to 25 minutes on 2 Zen 5 cores, 33 on 2 AVX2-only
# EPYC cores.
# CALIB, OUT and DEVICE override the calibration folder, the build folder and the device name.
set -euo pipefail
cd "$(dirname "$0")/../.."
CALIB=${CALIB:-../shared/datasets/imagenet-samples}
OUT=${OUT:-build/cpu-comparison}
DEVICE=${DEVICE:-$(hostname)}
HERE=reports/cpu-comparison

for target in onnx openvino; do
    edgeresnet build --target "$target" --weights random --calib "$CALIB" --prune 0.3 \
        --pairs 500 --device-name "$DEVICE" --out "$OUT"
done
edgeresnet bench --compare-peers --weights random --calib "$CALIB" \
    --against "$OUT/onnx" "$OUT/openvino" --rounds 3 --device-name "$DEVICE" --out "$OUT/peers"
edgeresnet report "$OUT/onnx/results.json" "$OUT/openvino/results.json" \
    "$OUT/peers/results.json" --out "$HERE"
