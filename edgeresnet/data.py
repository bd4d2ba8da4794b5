"""Images in, arrays out: image loading, ImageNet eval preprocessing and dataset discovery.

PIL + numpy only (no torchvision). ``Preprocess`` reproduces torchvision's eval pipeline
``Resize(resize) -> CenterCrop(crop) -> ToTensor() -> Normalize(mean, std)`` on PIL images.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import PIL
from cachetools import LRUCache
from PIL import Image

from edgeresnet.config import shipped
from edgeresnet.errors import DataError
from edgeresnet.ondevice.common import sha256_file, to_rgb

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
LABEL_FILE_NAMES = ("labels.tsv", "labels.txt", "labels.csv")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_SYNSET = re.compile(r"^(n[0-9]{8})(?![0-9])")
_LINE = re.compile(r"^(?P<path>.+?)\s*(?:,|\s)\s*(?P<label>[^\s,]+)$")
_INT = re.compile(r"^[+-]?[0-9]+$")  # ASCII digits: int() reads any Unicode digit
_LAYOUT_HINT = (
    "Give labels in one of three ways: a labels file (labels.tsv, labels.txt or labels.csv "
    "with lines 'relative/path label'), one subfolder per class, or file names starting "
    "with a WordNet synset such as n01440764_tench.JPEG."
)


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocess:
    """torchvision-compatible ImageNet eval transform: resize, centre crop, scale, normalize."""

    crop_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("crop_size", "resize_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise DataError(
                    f"Preprocess {name} must be a positive integer, got {value!r}",
                    hint="Use whole pixel counts such as crop_size=224, resize_size=256.",
                )
        for name in ("mean", "std"):
            try:
                values = tuple(float(v) for v in getattr(self, name))
            except (TypeError, ValueError):
                values = ()
            if len(values) != 3 or (name == "std" and min(values) <= 0):
                raise DataError(
                    f"Preprocess {name} must be three numbers (std > 0), "
                    f"got {getattr(self, name)!r}",
                    hint="Give one value per RGB channel, e.g. mean=(0.485, 0.456, 0.406).",
                )
            object.__setattr__(self, name, values)

    @classmethod
    def for_input_size(cls, size: int, *, crop_pct: float = 0.875) -> Preprocess:
        """Preprocessing for a ``size`` x ``size`` input; resize = round(size / crop_pct)."""
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise DataError(
                f"Input size must be a positive integer, got {size!r}",
                hint="Use e.g. 224.",
            )
        if not 0 < crop_pct <= 1:
            raise DataError(
                f"crop_pct must be in (0, 1], got {crop_pct!r}",
                hint="ImageNet eval uses 0.875 (224 of 256).",
            )
        return cls(crop_size=size, resize_size=round(size / crop_pct))

    def __call__(self, img: Image.Image) -> np.ndarray:
        """Return the preprocessed image as a float32 CHW array."""
        img = _to_rgb(img, "the image given to Preprocess")
        width, height = img.size
        new_size = _resized_size(width, height, self.resize_size)
        limit = Image.MAX_IMAGE_PIXELS
        if limit and new_size[0] * new_size[1] > limit:  # a strip: 2 x 1,000,000 pixels
            raise DataError(
                f"an image of {width} x {height} pixels would be {new_size[0]} x {new_size[1]} "
                f"once its shorter side is resized to {self.resize_size}, past PIL's limit of "
                f"{limit} pixels",
                hint="Crop it to a photo's proportions, or remove it from the dataset.",
            )
        if new_size != (width, height):
            img = img.resize(new_size, Image.Resampling.BILINEAR)
        pixels = _center_crop(np.asarray(img, dtype=np.uint8), self.crop_size)
        x = pixels.astype(np.float32) / np.float32(255.0)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data description for provenance records."""
        return {
            "crop_size": self.crop_size,
            "resize_size": self.resize_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": "shorter side, bilinear (PIL)",
            "crop": "centre",
            "pillow": PIL.__version__,
        }


def _resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after torchvision's ``Resize(size)``: shorter side -> size."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def _center_crop(pixels: np.ndarray, crop: int) -> np.ndarray:
    """torchvision ``CenterCrop``: zero-pad if too small, then crop with its rounding."""
    height, width = pixels.shape[:2]
    if crop > width or crop > height:
        pad_w, pad_h = max(crop - width, 0), max(crop - height, 0)
        pads = ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0))
        pixels = np.pad(pixels, pads)
        height, width = pixels.shape[:2]
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return pixels[top : top + crop, left : left + crop]


# --------------------------------------------------------------------------- image loading


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image as 8-bit RGB.

    Greyscale, palette and CMYK images are converted with PIL; 16-bit and 32-bit greyscale
    (``I;16*``, ``I``, ``F``) are rescaled to 8 bits, never clipped. Alpha is dropped, not
    composited (what torchvision's ``pil_loader`` does). EXIF orientation is not applied,
    also like torchvision. Images over PIL's pixel limit (``Image.MAX_IMAGE_PIXELS``) are
    refused as possible decompression bombs.
    """
    image = _read(Path(path), decode=True)
    if image is None:  # _read returns no image only when asked not to decode
        raise DataError(f"Cannot decode {path}.")
    return image


def _read(file: Path, *, decode: bool) -> Image.Image | None:
    """``load_image`` (``decode``), or only its checks up to PIL parsing the header: the file
    exists, is not empty, is an image PIL knows and is under its pixel limit."""
    if file.is_symlink() and not file.exists():
        raise DataError(
            f"Image file {file} is a link to {os.readlink(file)}, which does not exist",
            hint="Point the link at the image again, or remove it from the dataset.",
        )
    if not file.is_file():
        raise DataError(
            f"Image file {file} does not exist or is not a file",
            hint="Check the path, or re-run dataset discovery.",
        )
    if file.stat().st_size == 0:
        raise DataError(f"Image file {file} is empty (0 bytes)", hint="Re-copy it or remove it.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                if not decode:
                    return None
                img.load()
                rgb = _to_rgb(img, str(file))
                return img.copy() if rgb is img else rgb
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"Image file {file} is too large to decode safely: {exc}",
            hint="Downscale the image; raise PIL.Image.MAX_IMAGE_PIXELS only for trusted files.",
        ) from exc
    except Image.UnidentifiedImageError as exc:
        raise DataError(
            f"File {file} is not an image PIL can read",
            hint=f"Remove it or convert it to one of {', '.join(sorted(IMAGE_EXTENSIONS))}.",
        ) from exc
    except Exception as exc:  # anything the decoder raises on a damaged file
        raise DataError(
            f"Image file {file} is truncated or corrupt: {exc}",
            hint="Re-copy or re-download it, or remove it from the dataset.",
        ) from exc


def _to_rgb(img: Image.Image, where: str) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (high bit depths rescaled, alpha dropped)."""
    try:
        return to_rgb(img)
    except (ValueError, OSError) as exc:
        raise DataError(
            f"Cannot convert image mode {img.mode} of {where} to RGB",
            hint="Convert the image to 8-bit RGB or greyscale with an image editor.",
        ) from exc


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Sample:
    """One image file and its class index (None when unlabelled)."""

    path: Path
    label: int | None


@dataclass
class ImageSet:
    """An ordered list of samples plus where they came from and how they were found."""

    samples: list[Sample]
    source: str
    layout: str  # "labels-file", "class-folders", "synset-prefix" or "flat"
    class_names: list[str] | None = None
    root: Path | None = None  # folder relative paths are taken from (for sha256)
    skipped: list[Path] = field(default_factory=list)  # files of a folder scan not read as images

    def __len__(self) -> int:
        return len(self.samples)

    def skipped_note(self) -> str | None:
        """What a folder scan left out as not an image, in one line (None when nothing)."""
        if not self.skipped:
            return None
        base = self._base()
        names = [os.path.relpath(path, base) for path in self.skipped[:3]]
        more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
        return (
            f"{len(self.skipped)} file(s) in {self.source} are not read as images: "
            f"{', '.join(names)}{more} (images end in {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )

    @property
    def labelled(self) -> bool:
        """True when every sample has a label."""
        return bool(self.samples) and all(s.label is not None for s in self.samples)

    def _base(self) -> Path:
        if self.root is not None:
            return self.root
        source = Path(self.source)
        return source if source.is_dir() else source.parent

    def sha256(self) -> str:
        """Content hash over sorted (relative path, label, file SHA-256) triples."""
        base = self._base()
        rows = []
        for sample in self.samples:
            rel = Path(os.path.relpath(sample.path, base)).as_posix()
            label = "-" if sample.label is None else str(sample.label)
            rows.append(f"{rel}\t{label}\t{_file_sha256(sample.path)}\n")
        digest = hashlib.sha256()
        for row in sorted(rows):
            digest.update(row.encode("utf-8"))
        return digest.hexdigest()

    def subset(self, n: int, seed: int = 0) -> ImageSet:
        """A deterministic random sample of ``n`` images (all if n >= len), order kept."""
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise DataError(
                f"Subset size must be a positive integer, got {n!r} (dataset {self.source})",
                hint="Pass e.g. --calib-size 300.",
            )
        if n >= len(self.samples):
            return replace(self, samples=list(self.samples))
        keep = sorted(random.Random(seed).sample(range(len(self.samples)), n))
        return replace(self, samples=[self.samples[i] for i in keep])

    def without(self, other: ImageSet) -> ImageSet:
        """The samples whose files are not in ``other``, as the same path or a copy with the
        same content (held-out images, say), order kept."""
        paths = {s.path.resolve() for s in other.samples}
        contents = {_file_sha256(s.path) for s in other.samples}
        kept = [
            s
            for s in self.samples
            if s.path.resolve() not in paths and _file_sha256(s.path) not in contents
        ]
        return replace(self, samples=kept)

    @property
    def ranked(self) -> bool:
        """Labels are ranks of the class names present (class folders, synset prefixes)."""
        return self.layout in ("class-folders", "synset-prefix")

    def shuffled(self, seed: int) -> ImageSet:
        """The same samples in a seeded random order (for training passes)."""
        samples = list(self.samples)
        random.Random(seed).shuffle(samples)
        return replace(self, samples=samples)

    def check_readable(self, *, decode: bool) -> None:
        """Raise a ``DataError`` for the first file that is not an image PIL can read: every
        file is opened (its header parsed), and with ``decode`` fully decoded, which also finds
        files cut short inside their image data."""
        for sample in self.samples:
            _read(sample.path, decode=decode)

    def batches(
        self, preprocess: Preprocess, batch_size: int = 32
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield (NCHW float32 images, int64 labels or None) in dataset order."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise DataError(
                f"Batch size must be a positive integer, got {batch_size!r}",
                hint="Use e.g. 32.",
            )
        labelled = self.labelled
        for start in range(0, len(self.samples), batch_size):
            chunk = self.samples[start : start + batch_size]
            images = np.stack([_preprocessed(preprocess, s.path) for s in chunk])
            labels = np.array([s.label for s in chunk], dtype=np.int64) if labelled else None
            yield images, labels


# Preprocessed images, the most recently used first, while they fit in 256 MiB (the default
# 300 calibration images at 224 x 224 take 181 MiB): a build reads its calibration images for
# each pruned model's BatchNorm statistics and again for each INT8 calibration.
_PREPROCESSED: LRUCache = LRUCache(maxsize=256 << 20, getsizeof=lambda array: array.nbytes)


def _preprocessed(preprocess: Preprocess, path: Path) -> np.ndarray:
    """``preprocess(load_image(path))``, read-only, kept per version of the file (its path,
    mtime and size) in a bounded cache."""
    try:
        version = path.stat()
        key = (preprocess, str(path.resolve()), version.st_mtime_ns, version.st_size)
    except OSError:
        key = None  # load_image says what is wrong with the file
    cached = None if key is None else _PREPROCESSED.get(key)
    if cached is not None:
        return cached
    try:
        array = preprocess(load_image(path))
    except DataError as exc:
        if str(path) in exc.message:
            raise
        raise DataError(f"Image file {path}: {exc.message}", hint=exc.hint) from None
    array.flags.writeable = False
    if key is not None and array.nbytes <= _PREPROCESSED.maxsize:
        _PREPROCESSED[key] = array
    return array


def _file_sha256(path: Path) -> str:
    try:
        stat = path.stat()
        return _content_sha256(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError as exc:
        raise DataError(
            f"Cannot read {path}: {exc}", hint="Check it exists and is readable."
        ) from exc


@functools.cache
def _content_sha256(path: str, mtime_ns: int, size: int) -> str:
    """A file's SHA-256, hashed once per version of the file (path, mtime and size)."""
    return sha256_file(Path(path))


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def discover(path: str | os.PathLike[str], *, require_labels: bool = False) -> ImageSet:
    """Find the images (and labels) under ``path``.

    Layouts, tried in this order:

    a. ``path`` is a labels file: ``relative/path label`` or ``relative/path, label`` lines
       (``#`` comments and blank lines skipped; label optional for a plain list), or a
       TSV/CSV whose header names ``file`` and ``class_index`` (or ``label``) columns.
       Paths are relative to the file's folder.
    b. a folder holding ``labels.tsv``, ``labels.txt`` or ``labels.csv`` (first found): as a.
    c. a folder of class folders: label = rank of the folder name in sorted order.
    d. a folder of files named ``n########...`` (WordNet synset prefix): label = rank of
       the synset among the sorted distinct synsets present, which equals the ImageNet
       class index when the folder covers all 1000 classes.
    e. a flat folder of images: unlabelled (calibration), refused if ``require_labels``.

    Hidden files are ignored; samples are sorted by relative path.
    """
    where = Path(os.path.abspath(Path(path).expanduser()))
    if not where.exists():
        raise DataError(
            f"Dataset path {where} does not exist",
            hint="Pass a folder of images or a labels file.",
        )
    if where.is_file():
        if _is_image(where):
            raise DataError(
                f"Path {where} is a single image, not a dataset",
                hint="Pass the folder that holds it, or a labels file that lists it.",
            )
        found = _read_labels_file(where)
    elif where.is_dir():
        labels = next((where / n for n in LABEL_FILE_NAMES if (where / n).is_file()), None)
        found = _read_labels_file(labels) if labels else _scan_folder(where)
    else:
        raise DataError(f"Dataset path {where} is neither a file nor a folder", hint=_LAYOUT_HINT)
    if require_labels and not found.labelled:
        raise DataError(
            f"Dataset {where} has no labels (layout: {found.layout})", hint=_LAYOUT_HINT
        )
    return found


def _scan_folder(folder: Path) -> ImageSet:
    try:
        entries = sorted(
            (e for e in folder.iterdir() if not e.name.startswith(".")), key=lambda e: e.name
        )
    except OSError as exc:
        raise DataError(
            f"Cannot list folder {folder}: {exc}", hint="Check its permissions."
        ) from exc
    if not entries:
        raise DataError(
            f"Dataset folder {folder} is empty",
            hint="Put images in it (.jpg, .png, ...). Calibration takes any images; accuracy "
            "needs labels too. " + _LAYOUT_HINT,
        )
    # Anything but a folder counts, as os.walk lists it in a class folder: a link to a missing
    # image is then an image that cannot be read, not a file left out unsaid.
    images = [e for e in entries if not e.is_dir() and _is_image(e)]
    skipped = [e for e in entries if not e.is_dir() and not _is_image(e)]
    classes = {e.name: _images_under(e, skipped) for e in entries if e.is_dir()}
    if any(classes.values()):
        if images:
            raise DataError(
                f"Folder {folder} mixes loose images ({images[0].name}, ...) and class folders",
                hint="Move the loose images into a class folder, or the folders' images out.",
            )
        empty = sorted(name for name, files in classes.items() if not files)
        if empty:
            raise DataError(
                f"Class folder {folder / empty[0]} holds no images",
                hint="Remove empty class folders: each shifts the class indices after it.",
            )
        names = sorted(classes)
        samples = [Sample(f, i) for i, name in enumerate(names) for f in classes[name]]
        return ImageSet(samples, str(folder), "class-folders", names, folder, skipped)
    if not images:
        raise DataError(
            f"Folder {folder} contains no images",
            hint=f"Image files must end in one of {', '.join(sorted(IMAGE_EXTENSIONS))}.",
        )
    matches = [_SYNSET.match(p.name) for p in images]
    if all(matches):
        synsets = sorted({m[1] for m in matches if m})
        rank = {s: i for i, s in enumerate(synsets)}
        samples = [Sample(p, rank[m[1]]) for p, m in zip(images, matches, strict=True) if m]
        return ImageSet(samples, str(folder), "synset-prefix", synsets, folder, skipped)
    return ImageSet([Sample(p, None) for p in images], str(folder), "flat", None, folder, skipped)


def _images_under(folder: Path, skipped: list[Path]) -> list[Path]:
    """Image files below ``folder`` (recursive, hidden skipped, symlinked dirs not followed);
    the other files are added to ``skipped``."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                (found if _is_image(Path(name)) else skipped).append(Path(dirpath, name))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _read_labels_file(file: Path) -> ImageSet:
    root = file.parent
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"Cannot read labels file {file}: {exc}", hint="Save it as UTF-8 text."
        ) from exc
    rows = [
        (n, raw)
        for n, raw in enumerate(text.splitlines(), 1)
        if raw.strip() and not raw.lstrip().startswith("#")
    ]
    if not rows:
        raise DataError(f"Labels file {file} lists no images", hint=_LAYOUT_HINT)
    entries: list[tuple[int, str, int | None, str | None]] = []
    header = _header(rows[0][1])
    if header:
        delim, cols = header
        ifile = cols.index("file")
        ilabel = cols.index("class_index") if "class_index" in cols else cols.index("label")
        iname = cols.index("name") if "name" in cols else None
        for n, raw in rows[1:]:
            parts = [c.strip() for c in raw.split(delim)]
            if len(parts) != len(cols):
                raise DataError(
                    f"Labels file {file}:{n}: expected {len(cols)} columns like the header, "
                    f"got {len(parts)}",
                    hint="Fix the line; values cannot contain the separator (no quoting).",
                )
            name = parts[iname] if iname is not None else None
            entries.append((n, parts[ifile], _parse_label(parts[ilabel], file, n), name))
    else:
        entries = [(n, *_split_line(raw.strip(), file, n), None) for n, raw in rows]
    if not entries:
        raise DataError(f"Labels file {file} has a header but no rows", hint=_LAYOUT_HINT)
    if len({label is None for _, _, label, _ in entries}) > 1:
        n = next(n for n, _, label, _ in entries if label is None)
        raise DataError(
            f"Labels file {file}:{n}: line has no label while other lines have one",
            hint="Label every line, or none (a plain list of images for calibration).",
        )
    seen: dict[str, int] = {}
    samples = []
    for n, raw_path, label, _ in entries:
        rel = _safe_relpath(raw_path, file, n)
        if rel.as_posix() in seen:
            raise DataError(
                f"Labels file {file}:{n}: {rel} is listed twice "
                f"(first on line {seen[rel.as_posix()]})",
                hint="Remove the duplicate line.",
            )
        seen[rel.as_posix()] = n
        target = root.joinpath(*rel.parts)
        if target.is_dir():
            raise DataError(
                f"Labels file {file}:{n}: {target} is a folder, not an image file",
                hint="A line holds one image's path and its class index.",
            )
        first = raw_path.split()[0] if raw_path.split() else raw_path
        if not target.is_file() and first != raw_path and (root / first).is_file():
            raise DataError(
                f"Labels file {file}:{n}: the line has more than a path and a label "
                f"({raw_path!r} is not a file, {first!r} is)",
                hint="Write one image's path and its class index per line: `path label`.",
            )
        if not target.is_file():
            raise DataError(
                f"Labels file {file}:{n}: {target} does not exist",
                hint=f"Paths are relative to the labels file's folder {root}.",
            )
        if target.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(
                f"Labels file {file}:{n}: {rel} is not an image file name",
                hint=f"Image files must end in one of {', '.join(sorted(IMAGE_EXTENSIONS))}.",
            )
        samples.append((rel.as_posix(), Sample(target, label)))
    samples.sort(key=lambda item: item[0])
    return ImageSet([s for _, s in samples], str(file), "labels-file", _class_names(entries), root)


def _header(line: str) -> tuple[str, list[str]] | None:
    delim = "\t" if "\t" in line else ","
    cols = [c.strip().lower() for c in line.split(delim)]
    if "file" in cols and ("class_index" in cols or "label" in cols):
        return delim, cols
    return None


def _split_line(line: str, file: Path, n: int) -> tuple[str, int | None]:
    match = _LINE.match(line)
    if match and _INT.match(match["label"]):
        return match["path"], _parse_label(match["label"], file, n)
    if Path(line).suffix.lower() in IMAGE_EXTENSIONS:
        return line, None
    raise DataError(
        f"Labels file {file}:{n}: cannot read line {line!r}",
        hint="Write 'relative/path label' or 'relative/path, label' with a non-negative "
        "integer label, or just 'relative/path' for an unlabelled list.",
    )


def _parse_label(text: str, file: Path, n: int) -> int:
    if not _INT.match(text.strip()):
        raise DataError(
            f"Labels file {file}:{n}: label {text!r} is not an integer",
            hint="Labels are class indices: 0, 1, 2, ...",
        )
    label = int(text)
    if label < 0:
        raise DataError(
            f"Labels file {file}:{n}: label {label} is negative",
            hint="Labels are class indices: 0, 1, 2, ...",
        )
    return label


def _safe_relpath(raw: str, file: Path, n: int) -> PurePosixPath:
    text = raw.strip().replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise DataError(
            f"Labels file {file}:{n}: path {raw!r} is absolute",
            hint="Write paths relative to the labels file's folder.",
        )
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts:
        raise DataError(f"Labels file {file}:{n}: empty path", hint="Give a relative image path.")
    if ".." in parts:
        raise DataError(
            f"Labels file {file}:{n}: path {raw!r} uses '..' and may leave the dataset folder",
            hint="Move the labels file up, so every image lies below its folder.",
        )
    return PurePosixPath(*parts)


def _class_names(entries: list[tuple[int, str, int | None, str | None]]) -> list[str] | None:
    """Names from a header's ``name`` column when they cover 0..max consistently."""
    names: dict[int, str] = {}
    for _, _, label, name in entries:
        if label is None or not name or names.setdefault(label, name) != name:
            return None
    return [names[i] for i in range(len(names))] if set(names) == set(range(len(names))) else None


def default_calibration_dir() -> Path:
    """The tiny embedded calibration set, ``calibration/default`` as the project ships it."""
    return shipped("calibration", "default")
