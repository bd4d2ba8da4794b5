"""Top-1/top-5 of a bundle's TensorRT engines on a folder of labelled images, on the device.

Imports only tensorrt, numpy and the standard library (plus common.py and trt_runtime.py), and
PIL to decode and resize the images (`pip3 install pillow` or `apt install python3-pil`):

    python3 ondevice/evaluate_tensorrt.py --bundle . --images DIR [--limit 1000 [--seed 0]]
    python3 ondevice/evaluate_tensorrt.py --bundle . --images DIR --results results.orin.jetson.json

Labels: class folders (index = rank of the folder name), or a labels.tsv/.txt/.csv holding
`relative/path label` lines or a header with `file` and `class_index` columns. As in the build,
labels are refused that cannot be the model's class indices (manifest.json's num_classes): a
label of a class the model does not have, and class folders fewer than the model's classes
(their ranks are not the class indices; give a labels file). --limit N scores a random N of the
images drawn with --seed (default 0), in path order, as the build's --eval-size does; the seed
is recorded. Preprocessing is the manifest's (resize shorter side, bilinear; centre crop;
mean/std), as in the build. With --results, accuracy and agreement with the FP32 engine are
merged into that results file.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
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


class Labelled(list):
    """(image, class index) pairs sorted by path, with where their labels came from: the
    labels file (and each image's line in it) or the class folders (ranked by name)."""

    def __init__(
        self,
        pairs: list[tuple[Path, int]],
        source: Path,
        *,
        lines: dict[Path, int] | None = None,
        classes: list[str] | None = None,
    ) -> None:
        super().__init__(pairs)
        self.source = source
        self.lines = lines  # labels file: image -> line number
        self.classes = classes  # class folders: names in rank order


def labelled_images(
    folder: Path, num_classes: int | None = None, *, scored: bool = True
) -> Labelled:
    """(image, class index) pairs from a labels file or class folders, sorted by path; with
    ``num_classes``, refused where they cannot be that model's class indices (``check_labels``).
    """
    for name in ("labels.tsv", "labels.txt", "labels.csv"):
        if (folder / name).is_file():
            found = _from_labels_file(folder / name)
            break
    else:
        found = _from_class_folders(folder)
    if num_classes is not None:
        check_labels(found, num_classes, scored=scored)
    return found


def _from_class_folders(folder: Path) -> Labelled:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    images = {  # each class's images in the build's order: by relative path, as text
        cls.name: sorted(
            (
                image
                for image in cls.rglob("*")
                if image.suffix.lower() in IMAGE_SUFFIXES
                and image.is_file()
                and not any(part.startswith(".") for part in image.relative_to(cls).parts)
            ),
            key=lambda image, cls=cls: image.relative_to(cls).as_posix(),
        )
        for cls in classes
    }
    if not any(images.values()):
        common.fail(
            f"{folder} has no labels file and no class folders with images.",
            "Pass --images a folder holding labels.tsv, labels.txt or labels.csv (lines "
            "`relative/path class_index`), or one folder of images per class.",
        )
    loose = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if loose:  # images with no class, which the build refuses too
        common.fail(
            f"{folder} mixes loose images ({loose[0].name}, ...) and class folders.",
            "Move the loose images into a class folder, or the folders' images out.",
        )
    empty = next((cls for cls in classes if not images[cls.name]), None)
    if empty is not None:  # it would shift the class index of every folder after it
        common.fail(
            f"class folder {empty} holds no images.",
            "Remove empty class folders: each shifts the class indices after it.",
        )
    pairs = [(image, index) for index, cls in enumerate(classes) for image in images[cls.name]]
    return Labelled(pairs, folder, classes=[cls.name for cls in classes])


def _from_labels_file(path: Path) -> Labelled:
    try:
        text = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        common.fail(f"Cannot read {path}: {exc}.", "Pass a UTF-8 text labels file.")
    lines = [
        (n, line)
        for n, line in enumerate(text, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        common.fail(f"{path} holds no labels.", _LABELS_HINT)
    delimiter = "\t" if "\t" in lines[0][1] else ","
    header = [c.strip().lower() for c in lines[0][1].split(delimiter)]
    if "file" in header:
        column = "class_index" if "class_index" in header else "label"
        found = []
        for n, line in lines[1:]:
            row = dict(zip(header, next(csv.reader([line], delimiter=delimiter))))
            found.append((n, row.get("file"), row.get(column)))
    else:
        found = [(n, *line.replace(",", " ").rpartition(" ")[::2]) for n, line in lines]
    if not found:
        common.fail(f"{path} has a header but no rows.", _LABELS_HINT)
    pairs: list[tuple[str, Path, int]] = []
    numbers: dict[Path, int] = {}
    for n, name, label in found:
        text_label = str(label).strip()
        # As the build reads them: an integer, and not a negative one.
        if not re.fullmatch(r"[+-]?[0-9]+", text_label) or int(text_label) < 0:
            common.fail(
                f"{path}:{n}: the label {label!r} of {name!r} is not a class index.", _LABELS_HINT
            )
        relative = str(name).strip()
        image = path.parent / relative
        pairs.append((relative.replace("\\", "/"), image, int(text_label)))
        numbers[image] = n
    # The build's order (by relative path, as text): the same --seed draws the same images.
    pairs.sort(key=lambda entry: entry[0])
    return Labelled([(image, label) for _, image, label in pairs], path, lines=numbers)


def check_labels(found: Labelled, num_classes: int, *, scored: bool = True) -> None:
    """The build's refusals (``_check_labels``): a label that is not one of the model's
    ``num_classes`` classes, and, where accuracy is ``scored`` (not random weights), class
    folders fewer than the model's classes, whose ranks are not the class indices."""
    if not found:
        return
    image, top = max(found, key=lambda pair: pair[1])
    if top >= num_classes:
        if found.lines is not None:
            where = f"{found.source}:{found.lines[image]}: the label {top} of {image.name!r}"
        else:
            folder = found.classes[top] if found.classes else image.parent.name
            where = f"{found.source}: {image} has class index {top} (class folder {folder!r})"
        common.fail(
            f"{where} is not a class of the model, which has {num_classes} classes "
            f"(0 to {num_classes - 1}).",
            "Evaluate on images labelled with the model's classes, or the bundle of the model "
            "they are labelled for.",
        )
    if scored and found.classes is not None and len(found.classes) < num_classes:
        common.fail(
            f"{found.source} labels its images by the rank of their class folder among the "
            f"{len(found.classes)} present, which is not their class index for a model of "
            f"{num_classes} classes (a part of ImageNet would be scored against the wrong "
            "classes).",
            "Give the class indices in a labels file in that folder (labels.txt lines "
            "`relative/path class_index`, or a labels.tsv with file and class_index columns), "
            "or a folder with every class.",
        )


def subset(pairs: list[tuple[Path, int]], limit: int, seed: int) -> list[tuple[Path, int]]:
    """A seeded random ``limit`` of ``pairs`` (all for 0 or more than there are), order kept:
    the build's ``--eval-size`` draw."""
    if not limit or limit >= len(pairs):
        return list(pairs)
    keep = sorted(random.Random(seed).sample(range(len(pairs)), limit))
    return [pairs[i] for i in keep]


def model_classes(model: dict[str, Any]) -> tuple[int | None, bool]:
    """The manifest model record's class count (None where it has none) and whether its
    accuracy means anything (not random weights, nor pruned from random ones)."""
    classes = model.get("num_classes")
    weights = model.get("weights") if isinstance(model.get("weights"), dict) else {}
    origin = weights.get("pruned_from") if isinstance(weights.get("pruned_from"), dict) else None
    random_weights = (origin or weights).get("kind") == "random"
    valid = isinstance(classes, int) and not isinstance(classes, bool) and classes > 0
    return (classes if valid else None), not random_weights


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


def evaluate(
    bundle: Path, args: argparse.Namespace
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Scores of every engine build_engine.py made, on the same images, and the record of
    those images (for the results' data.evaluation)."""
    manifest = common.check_manifest(bundle)
    num_classes, scored = model_classes(manifest["model"])
    found = labelled_images(args.images, num_classes, scored=scored)
    pairs = subset(found, args.limit, args.seed)
    if len(pairs) < len(found):
        print(f"evaluating {len(pairs)} of {len(found)} images (--seed {args.seed})", flush=True)
    elif args.limit > len(found):
        print(f"--limit {args.limit}: {args.images} has {len(found)} images; all of them")
    evaluation = {
        "source": str(args.images),
        "images": len(pairs),
        "images_found": len(found),
        "seed": args.seed,
        "labelled": True,
    }
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
            if num_classes is None:  # a manifest without it: the engine's output says
                num_classes = int(outs[0].shape[1])
                check_labels(found, num_classes, scored=scored)
        runner.close()
        logits[record["variant"]] = np.concatenate(outs)
        print(f"evaluated {record['engine']} on {len(pairs)} images", flush=True)
    reference = logits.get("fp32")
    return {name: scores(out, labels, reference) for name, out in logits.items()}, evaluation


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
        "--limit",
        type=common.at_least(0),
        default=0,
        help="a random N of the images, drawn with --seed, in path order (0: all)",
    )
    parser.add_argument(
        "--seed", type=common.at_least(0), default=0, help="seed of the --limit draw (default 0)"
    )
    parser.add_argument("--results", type=Path, help="merge into this results.json")
    parser.add_argument("--json", type=Path, help="output when --results is not given")
    parser.add_argument("--device-name", type=common.a_name, help="name of this device in reports")
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        parser.error(f"{args.images} is not a folder")
    merged = _results(args.results) if args.results else None
    out = args.results or common.output_file(args, suffix=".eval.json")
    found, evaluation = evaluate(args.bundle, args)
    if merged is not None:
        document = merged
        for entry in document["rows"]:
            entry.update(found.get(entry["variant"], {}))
        # The merged rows' accuracy is this run's: so is the record of its images.
        if isinstance(document.get("data"), dict):
            document["data"]["evaluation"] = evaluation
        else:
            document["data"] = {"evaluation": evaluation}
    else:
        manifest = json.loads((args.bundle / common.MANIFEST).read_text(encoding="utf-8"))
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
            data={"evaluation": evaluation},
            target=manifest["target"],
            rows=rows,
        )
    common.write_json(out, document)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    common.run(main)
