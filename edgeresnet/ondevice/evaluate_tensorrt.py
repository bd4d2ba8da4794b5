"""Top-1/top-5 of a bundle's TensorRT engines on a folder of labelled images, on the device.

Imports only tensorrt, numpy and the standard library (plus common.py and trt_runtime.py), and
PIL to decode and resize the images (`pip3 install pillow` or `apt install python3-pil`):

    python3 ondevice/evaluate_tensorrt.py --bundle . --images DIR [--limit 1000]
    python3 ondevice/evaluate_tensorrt.py --bundle . --images DIR --results results.orin.jetson.json

Labels: class folders (index = rank of the folder name), or a labels.tsv/.txt/.csv holding
`relative/path label` lines or a header with `file` and `class_index` columns. Preprocessing is
the manifest's (resize shorter side, bilinear; centre crop; mean/std), as in the build. With
--results, accuracy and agreement with the FP32 engine are merged into that results file.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

try:
    from . import common, trt_runtime  # inside the edgeresnet package
except ImportError:  # standalone, copied into a bundle next to common.py and trt_runtime.py
    import common  # type: ignore[no-redef]
    import trt_runtime  # type: ignore[no-redef]

# isort: split
import numpy as np  # noqa: E402 (common says how to install it where it is missing)

_LABELS_HINT = "Write one `relative/path class_index` per line, or a TSV with file and class_index."
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def labelled_images(folder: Path) -> list[tuple[Path, int]]:
    """(image, class index) pairs from a labels file or class folders, sorted by path."""
    for name in ("labels.tsv", "labels.txt", "labels.csv"):
        if (folder / name).is_file():
            return _from_labels_file(folder / name)
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    pairs = [
        (image, index)
        for index, cls in enumerate(classes)
        for image in sorted(cls.rglob("*"))
        if image.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not pairs:
        common.fail(
            f"{folder} has no labels file and no class folders with images.",
            "Pass --images a folder holding labels.tsv, labels.txt or labels.csv (lines "
            "`relative/path class_index`), or one folder of images per class.",
        )
    return pairs


def _from_labels_file(path: Path) -> list[tuple[Path, int]]:
    try:
        text = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        common.fail(f"Cannot read {path}: {exc}.", "Pass a UTF-8 text labels file.")
    lines = [line for line in text if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        common.fail(f"{path} holds no labels.", _LABELS_HINT)
    delimiter = "\t" if "\t" in lines[0] else ","
    header = [c.strip().lower() for c in lines[0].split(delimiter)]
    if "file" in header:
        column = "class_index" if "class_index" in header else "label"
        rows = csv.DictReader(lines, fieldnames=header, delimiter=delimiter)
        next(rows)
        found = [(r.get("file"), r.get(column)) for r in rows]
    else:
        found = [line.replace(",", " ").rpartition(" ")[::2] for line in lines]
    pairs = []
    for name, label in found:
        try:
            pairs.append((path.parent / str(name).strip(), int(str(label).strip())))
        except ValueError:
            common.fail(
                f"{path}: the label {label!r} of {name!r} is not a class index.", _LABELS_HINT
            )
    return pairs


def preprocess(image_path: Path, spec: dict[str, Any]) -> np.ndarray:
    """torchvision's eval transform with PIL: resize shorter side, centre crop, normalize."""
    try:
        from PIL import Image  # the script's one optional dependency, needed only here
    except ImportError:
        common.fail("evaluate_tensorrt.py needs PIL.", "pip3 install pillow, then run this again.")
    # Pillow before 9.1 (JetPack 5's python3-pil) has the filters on Image itself.
    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    with Image.open(image_path) as img:
        img = common.to_rgb(img)
        width, height = img.size
        size = spec["resize_size"]
        new = (
            (size, int(size * height / width))
            if width <= height
            else (int(size * width / height), size)
        )
        if new != (width, height):
            img = img.resize(new, bilinear)
        pixels = np.asarray(img, dtype=np.uint8)
    crop = spec["crop_size"]
    top = int(round((pixels.shape[0] - crop) / 2.0))
    left = int(round((pixels.shape[1] - crop) / 2.0))
    x = pixels[top : top + crop, left : left + crop].astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def scores(logits: np.ndarray, labels: np.ndarray, reference: np.ndarray | None) -> dict:
    top5 = np.argsort(-logits, axis=1)[:, :5]
    result: dict[str, Any] = {
        "accuracy": {
            "top1": round(100.0 * float((top5[:, 0] == labels).mean()), 3),
            # 100 % by construction with 5 classes or fewer: not a figure.
            "top5": round(100.0 * float((top5 == labels[:, None]).any(axis=1).mean()), 3)
            if logits.shape[1] > 5
            else None,
            "images": int(labels.size),
        },
        "fidelity": None,
    }
    if reference is not None:
        noise = float(np.sum((reference - logits) ** 2, dtype=np.float64))
        signal = float(np.sum(reference**2, dtype=np.float64))
        agree = (reference.argmax(axis=1) == logits.argmax(axis=1)).mean()
        result["fidelity"] = {
            "reference": "fp32 TensorRT engine on this device",
            "top1_agreement": round(100.0 * float(agree), 3),
            "sqnr_db": round(10.0 * np.log10(signal / noise), 2) if noise and signal else None,
            "images": int(labels.size),
            "reference_classes": len(np.unique(reference.argmax(axis=1))),
        }
    return result


def evaluate(bundle: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Scores of every engine build_engine.py made, on the same images."""
    manifest = common.check_manifest(bundle)
    pairs = labelled_images(args.images)[: args.limit or None]
    spec = manifest["model"]["preprocess"]
    trt = trt_runtime.import_tensorrt()
    records = trt_runtime.engine_records(bundle)
    cuda = trt_runtime.Cuda()
    labels = np.array([label for _, label in pairs])
    logits: dict[str, np.ndarray] = {}
    for record in records:
        runner = trt_runtime.EngineRunner(
            trt, bundle / "engines" / record["engine"], cuda, dla_core=record["options"]["dla_core"]
        )
        batch = min(record["options"]["batch_sizes"][-1], 8)
        outs = []
        for start in range(0, len(pairs), batch):
            chunk = pairs[start : start + batch]
            outs.append(runner.run(np.stack([preprocess(p, spec) for p, _ in chunk])))
        runner.close()
        logits[record["variant"]] = np.concatenate(outs)
        print(f"evaluated {record['engine']} on {len(pairs)} images", flush=True)
    reference = logits.get("fp32")
    return {name: scores(out, labels, reference) for name, out in logits.items()}


def _results(path: Path) -> dict[str, Any]:
    """The bench_tensorrt.py results file that ``--results`` names, read before any work."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        why = "it holds no rows of variants"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        document, why = None, str(exc)
    rows = document.get("rows") if isinstance(document, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "variant" in r for r in rows):
        common.fail(
            f"--results {path} is not a results file to merge into: {why}.",
            "Pass the results.<device>.<target>.json that bench_tensorrt.py --bundle wrote, or "
            "leave --results out.",
        )
    return document


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True, help="labelled image folder")
    parser.add_argument(
        "--limit", type=common.at_least(0), default=0, help="first N images only (0: all)"
    )
    parser.add_argument("--results", type=Path, help="merge into this results.json")
    parser.add_argument("--json", type=Path, help="output when --results is not given")
    parser.add_argument("--device-name", type=common.a_name, help="name of this device in reports")
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        parser.error(f"{args.images} is not a folder")
    merged = _results(args.results) if args.results else None
    out = args.results or common.output_file(args, suffix=".eval.json")
    found = evaluate(args.bundle, args)
    if merged is not None:
        document = merged
        for entry in document["rows"]:
            entry.update(found.get(entry["variant"], {}))
    else:
        manifest = json.loads((args.bundle / common.MANIFEST).read_text(encoding="utf-8"))
        images = next(iter(found.values()))["accuracy"]["images"] if found else 0
        # The manifest's own: "int8-mixed" and "p30-int8" name their precision differently.
        precisions = {v["variant"]: v["precision"] for v in manifest["variants"]}
        rows = [
            {
                "variant": name,
                "precision": precisions.get(name, name.rsplit("-", 1)[-1]),
                "artifact": None,
                "bench": None,
                **scored,
            }
            for name, scored in found.items()
        ]
        document = common.results_document(
            producer={
                "tool": "edgeresnet ondevice/evaluate_tensorrt.py",
                "command": common.command_line(),
            },
            device=common.machine_info(args.device_name),
            environment={"tensorrt": trt_runtime.import_tensorrt().__version__},
            model=manifest["model"],
            data={"evaluation": {"source": str(args.images), "images": images}},
            target=manifest["target"],
            rows=rows,
        )
    common.write_json(out, document)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    common.run(main)
