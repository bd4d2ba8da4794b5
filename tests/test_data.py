"""Tests for edgeresnet.data: preprocessing, image loading and dataset discovery."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgeresnet.data import (
    IMAGE_EXTENSIONS,
    ImageSet,
    Preprocess,
    Sample,
    _resized_size,
    default_calibration_dir,
    discover,
    load_image,
)
from edgeresnet.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGENET_SAMPLES = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-samples"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def write_image(path: Path, size=(8, 6), color=(10, 20, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def labels_of(imageset: ImageSet, root: Path) -> dict[str, int | None]:
    return {s.path.relative_to(root).as_posix(): s.label for s in imageset.samples}


# --------------------------------------------------------------------------- preprocessing


def test_preprocess_defaults_and_for_input_size():
    p = Preprocess()
    assert (p.crop_size, p.resize_size) == (224, 256)
    assert Preprocess.for_input_size(224) == p
    assert Preprocess.for_input_size(320).resize_size == 366
    assert Preprocess.for_input_size(224, crop_pct=1.0).resize_size == 224
    d = p.to_dict()
    assert d["crop_size"] == 224 and d["resize_size"] == 256
    assert d["mean"] == [0.485, 0.456, 0.406] and d["std"] == [0.229, 0.224, 0.225]


@pytest.mark.parametrize(
    "kwargs",
    [{"crop_size": 0}, {"resize_size": -1}, {"crop_size": 2.5}, {"std": (1, 0, 1)}, {"mean": (1,)}],
)
def test_preprocess_rejects_bad_settings(kwargs):
    with pytest.raises(DataError):
        Preprocess(**kwargs)


@pytest.mark.parametrize("size, crop_pct", [(0, 0.875), (224, 0.0), (224, 1.5)])
def test_for_input_size_rejects_bad_values(size, crop_pct):
    with pytest.raises(DataError):
        Preprocess.for_input_size(size, crop_pct=crop_pct)


def test_constant_colour_normalizes_to_expected_constants():
    rgb = (200, 100, 50)
    out = Preprocess()(Image.new("RGB", (300, 200), rgb))
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    expected = (np.array(rgb, np.float32) / np.float32(255) - MEAN) / STD
    for c in range(3):
        np.testing.assert_array_equal(out[c], np.full((224, 224), expected[c], np.float32))


def test_preprocess_converts_greyscale_input():
    out = Preprocess(crop_size=4, resize_size=4)(Image.new("L", (5, 4), 128))
    assert out.shape == (3, 4, 4)


def test_resize_keeps_aspect_like_torchvision():
    assert _resized_size(300, 200, 256) == (384, 256)
    assert _resized_size(333, 250, 256) == (340, 256)  # int() truncation: 340.99 -> 340
    assert _resized_size(250, 333, 256) == (256, 340)
    assert _resized_size(256, 256, 256) == (256, 256)


def test_centre_crop_geometry_on_non_square_image():
    # Pixel red = x, green = y: the crop origin can be read back from the output.
    w, h = 301, 200
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    pixels = np.stack([xs % 256, ys % 256, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    out = Preprocess(crop_size=100, resize_size=200)(Image.fromarray(pixels))  # no resize
    back = np.rint((out.transpose(1, 2, 0) * STD + MEAN) * 255).astype(int)
    left, top = int(round((w - 100) / 2.0)), int(round((h - 100) / 2.0))
    assert (left, top) == (100, 50)  # round(100.5) == 100, as torchvision
    np.testing.assert_array_equal(back[..., 0], (xs[top : top + 100, left : left + 100] % 256))
    np.testing.assert_array_equal(back[..., 1], (ys[top : top + 100, left : left + 100] % 256))


def test_crop_larger_than_image_pads_with_zeros():
    out = Preprocess(crop_size=10, resize_size=6)(Image.new("RGB", (6, 6), (255, 255, 255)))
    assert out.shape == (3, 10, 10)
    np.testing.assert_allclose(out[:, 0, 0], -MEAN / STD, rtol=1e-6)
    np.testing.assert_allclose(out[:, 5, 5], (1 - MEAN) / STD, rtol=1e-6)
    np.testing.assert_allclose(out[:, 9, 9], -MEAN / STD, rtol=1e-6)


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize(
    "mode, color, suffix, expected",
    [
        ("L", 100, ".png", (100, 100, 100)),
        ("RGBA", (10, 20, 30, 0), ".png", (10, 20, 30)),  # alpha dropped, not composited
        ("LA", (77, 0), ".png", (77, 77, 77)),
        ("CMYK", (0, 0, 0, 0), ".tif", (255, 255, 255)),
        ("RGB", (1, 2, 3), ".bmp", (1, 2, 3)),
    ],
)
def test_modes_load_as_rgb(tmp_path, mode, color, suffix, expected):
    path = write_image(tmp_path / f"img{suffix}", (5, 4), color, mode)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (5, 4)
    assert img.getpixel((2, 2)) == expected


def test_palette_image_loads_as_rgb(tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (6, 6), (200, 10, 10)).quantize(4).save(path)
    assert Image.open(path).mode == "P"
    img = load_image(path)
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (200, 10, 10)


def test_16bit_image_is_scaled_not_clipped(tmp_path):
    values = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16).reshape(16, 16)
    values[-1, -1] = 65535
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    img = load_image(path)
    grey = np.asarray(img)[..., 0]
    assert img.mode == "RGB" and grey.max() == 255 and grey.min() == 0
    np.testing.assert_array_equal(grey.ravel(), np.arange(256))  # k * 257 -> k


def test_32bit_integer_and_float_images(tmp_path):
    ints = tmp_path / "i.tif"
    Image.fromarray(np.array([[0, 65535]], np.int32)).save(ints)
    assert Image.open(ints).mode == "I"
    assert np.asarray(load_image(ints))[0, :, 0].tolist() == [0, 255]
    floats = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(floats)
    assert np.asarray(load_image(floats))[0, :, 0].tolist() == [0, 128, 255]


def test_truncated_jpeg_is_data_error(tmp_path):
    path = tmp_path / "cut.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.jpg") as info:
        load_image(path)
    assert info.value.hint


@pytest.mark.parametrize("content", [b"hello, I am text\n", b""])
def test_non_image_and_empty_files_are_data_errors(tmp_path, content):
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError, match=str(path)):
        load_image(path)


def test_a_link_to_a_missing_image_is_an_image_that_cannot_be_read(tmp_path):
    """In a flat folder too: it was left out unsaid, and the evaluation set shrank."""
    write_image(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "gone" / "photo.jpg")
    found = discover(tmp_path)
    assert [s.path.name for s in found.samples] == ["a.jpg", "b.jpg"]
    with pytest.raises(DataError, match=r"b\.jpg is a link to .*gone/photo\.jpg, which does not"):
        found.check_readable(decode=False)


def test_missing_image_and_folder_are_data_errors(tmp_path):
    for path in (tmp_path / "nope.png", tmp_path):
        with pytest.raises(DataError, match=str(path)):
            load_image(path)


@pytest.mark.parametrize("side", [40, 100])  # 1600 px: warning range; 10000 px: error range
def test_decompression_bomb_is_data_error(tmp_path, monkeypatch, side):
    path = write_image(tmp_path / "bomb.png", (side, side))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match="too large") as info:
        load_image(path)
    assert "bomb.png" in info.value.message


def test_a_strip_too_long_to_resize_is_a_data_error_naming_it(tmp_path, monkeypatch):
    """2 x 1,000,000 pixels is under PIL's limit, but resized to a 256-pixel shorter side it
    would not be: one clear error, not a MemoryError."""
    write_image(tmp_path / "strip.png", (2, 2000))
    write_image(tmp_path / "photo.png", (40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    found = discover(tmp_path)
    found.check_readable(decode=True)  # each file decodes: the size is the trouble
    with pytest.raises(DataError, match="strip.png") as info:
        list(found.batches(Preprocess(), batch_size=2))
    assert "would be 256 x 256000 once its shorter side is resized to 256" in info.value.message


# --------------------------------------------------------------------------- discovery


def test_a_labels_line_with_an_extra_field_or_a_folder_says_so(tmp_path):
    write_image(tmp_path / "a.jpg")
    (tmp_path / "sub.jpg").mkdir()
    (tmp_path / "extra.txt").write_text("a.jpg 1 2\n")
    with pytest.raises(DataError, match="extra.txt:1: the line has more than a path and a label"):
        discover(tmp_path / "extra.txt")
    (tmp_path / "folder.txt").write_text("sub.jpg 1\n")
    with pytest.raises(DataError, match="is a folder, not an image file"):
        discover(tmp_path / "folder.txt")


def test_labels_file_both_separators_comments_and_blank_lines(tmp_path):
    for name in ("b.jpg", "sub/a.png", "c c.JPEG"):
        touch(tmp_path / name)
    (tmp_path / "list.txt").write_text("# header comment\n\nb.jpg 3\n  sub/a.png, 1\nc c.JPEG,0\n")
    found = discover(tmp_path / "list.txt")
    assert found.layout == "labels-file" and found.labelled
    assert labels_of(found, tmp_path) == {"b.jpg": 3, "c c.JPEG": 0, "sub/a.png": 1}
    assert [s.path.name for s in found.samples] == ["b.jpg", "c c.JPEG", "a.png"]  # sorted


@pytest.mark.parametrize("name", ["labels.tsv", "labels.txt", "labels.csv"])
def test_folder_with_labels_file(tmp_path, name):
    touch(tmp_path / "x.jpg")
    touch(tmp_path / "y.jpg")
    (tmp_path / name).write_text("x.jpg\t5\ny.jpg\t2\n")
    found = discover(tmp_path, require_labels=True)
    assert found.layout == "labels-file" and found.source == str(tmp_path / name)
    assert labels_of(found, tmp_path) == {"x.jpg": 5, "y.jpg": 2}


def test_imagenet_style_tsv_header(tmp_path):
    touch(tmp_path / "n01440764_tench.JPEG")
    touch(tmp_path / "n01443537_goldfish.JPEG")
    (tmp_path / "labels.tsv").write_text(
        "file\tsynset\tclass_index\tname\n"
        "n01443537_goldfish.JPEG\tn01443537\t1\tgoldfish\n"
        "n01440764_tench.JPEG\tn01440764\t0\ttench\n"
    )
    found = discover(tmp_path)
    assert labels_of(found, tmp_path) == {"n01440764_tench.JPEG": 0, "n01443537_goldfish.JPEG": 1}
    assert found.class_names == ["tench", "goldfish"]


def test_csv_header(tmp_path):
    touch(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text("class_index,file\n7,a.png\n")
    assert labels_of(discover(tmp_path), tmp_path) == {"a.png": 7}


def test_unlabelled_list_file(tmp_path):
    touch(tmp_path / "imgs" / "a.jpg")
    touch(tmp_path / "imgs" / "my photo.jpg")
    (tmp_path / "calib.txt").write_text("imgs/a.jpg\nimgs/my photo.jpg\n")
    found = discover(tmp_path / "calib.txt")
    assert not found.labelled and len(found) == 2
    with pytest.raises(DataError, match="no labels"):
        discover(tmp_path / "calib.txt", require_labels=True)


def test_class_folders(tmp_path):
    write_image(tmp_path / "zebra" / "1.jpg")
    write_image(tmp_path / "ant" / "deep" / "2.png")
    write_image(tmp_path / "ant" / "1.JPG")
    touch(tmp_path / "ant" / ".hidden.jpg")
    touch(tmp_path / "ant" / "notes.txt")
    (tmp_path / ".git").mkdir()
    found = discover(tmp_path, require_labels=True)
    assert found.layout == "class-folders" and found.class_names == ["ant", "zebra"]
    assert labels_of(found, tmp_path) == {"ant/1.JPG": 0, "ant/deep/2.png": 0, "zebra/1.jpg": 1}
    # What is not read as an image is named, hidden files aside.
    assert found.skipped == [tmp_path / "ant" / "notes.txt"]
    assert "1 file(s) in" in found.skipped_note() and "ant/notes.txt (images end in" in (
        found.skipped_note()
    )


def test_synset_prefixed_files(tmp_path):
    for name in ("n02000000_b.jpg", "n01000000_a.png", "n01000000_10026.JPEG"):
        touch(tmp_path / name)
    found = discover(tmp_path, require_labels=True)
    assert found.layout == "synset-prefix" and found.class_names == ["n01000000", "n02000000"]
    assert labels_of(found, tmp_path) == {
        "n01000000_10026.JPEG": 0,
        "n01000000_a.png": 0,
        "n02000000_b.jpg": 1,
    }


def test_copies_of_held_out_images_are_left_out_too(tmp_path):
    calib = discover(write_image(tmp_path / "calib" / "a.png", color=(1, 2, 3)).parent)
    write_image(tmp_path / "eval" / "copy-of-a.png", color=(1, 2, 3))
    write_image(tmp_path / "eval" / "other.png", color=(9, 9, 9))
    left = discover(tmp_path / "eval").without(calib)
    assert [s.path.name for s in left.samples] == ["other.png"]


def test_flat_folder_is_unlabelled(tmp_path):
    for name in ("b.webp", "a.tiff", ".DS_Store", "readme.md"):
        touch(tmp_path / name)
    (tmp_path / "empty-subfolder").mkdir()
    found = discover(tmp_path)
    assert found.layout == "flat" and not found.labelled and found.class_names is None
    assert [s.path.name for s in found.samples] == ["a.tiff", "b.webp"]
    with pytest.raises(DataError) as info:
        discover(tmp_path, require_labels=True)
    assert str(tmp_path) in info.value.message
    assert "labels file" in info.value.hint and "synset" in info.value.hint


@pytest.mark.parametrize(
    "lines, line_no, pattern",
    [
        (["a.jpg 1", "a.jpg cat"], 2, "cannot read line"),
        (["a.jpg 1", "", "missing.jpg 2"], 3, "does not exist"),
        (["../escape.jpg 1"], 1, r"'\.\.'"),
        (["a.jpg 1", "sub/../a.jpg 2"], 2, r"'\.\.'"),
        (["/etc/passwd.jpg 1"], 1, "absolute"),
        (["a.jpg 1", "# c", "./a.jpg 2"], 3, "listed twice"),
        (["a.jpg -1"], 1, "negative"),
        (["a.jpg 1.5"], 1, "cannot read line"),
        (["a.jpg 1", "b.jpg"], 2, "no label"),
        (["notes.txt 1"], 1, "not an image"),
        (["file\tclass_index", "a.jpg\t1\textra"], 2, "columns"),
        (["file\tclass_index", "a.jpg\tx"], 2, "not an integer"),
        (["a.jpg 1", "b.jpg \u0663"], 2, "cannot read line"),  # an Arabic-Indic 3
        (["file\tclass_index", "a.jpg\t\u0663"], 2, "not an integer"),
    ],
)
def test_labels_file_errors_name_file_and_line(tmp_path, lines, line_no, pattern):
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("x")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=pattern) as info:
        discover(tmp_path)
    assert f"{labels}:{line_no}:" in info.value.message
    assert info.value.message[0].isupper() and info.value.hint


def test_empty_labels_file(tmp_path):
    (tmp_path / "labels.txt").write_text("# nothing\n\n")
    with pytest.raises(DataError, match="lists no images"):
        discover(tmp_path)


def test_missing_empty_and_imageless_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "nowhere")
    with pytest.raises(DataError, match="is empty"):
        discover(tmp_path)
    (tmp_path / "readme.md").write_text("no images here")
    with pytest.raises(DataError, match="contains no images"):
        discover(tmp_path)
    image = write_image(tmp_path / "one.jpg")
    with pytest.raises(DataError, match="single image"):
        discover(image)


def test_mixed_and_empty_class_folders_are_errors(tmp_path):
    write_image(tmp_path / "cat" / "1.jpg")
    (tmp_path / "dog").mkdir()
    with pytest.raises(DataError, match="dog"):
        discover(tmp_path)
    write_image(tmp_path / "dog" / "1.jpg")
    write_image(tmp_path / "loose.jpg")
    with pytest.raises(DataError, match="mixes"):
        discover(tmp_path)


# --------------------------------------------------------------------------- ImageSet


def make_set(root: Path, n: int) -> ImageSet:
    for i in range(n):
        write_image(root / f"c{i % 3}" / f"{i:03d}.png", (9, 7), (i, 2 * i % 256, 50))
    return discover(root)


def test_subset_is_deterministic_sized_and_ordered(tmp_path):
    full = make_set(tmp_path, 30)
    a, b = full.subset(10, seed=1), full.subset(10, seed=1)
    assert a.samples == b.samples and len(a) == 10
    assert full.subset(10, seed=2).samples != a.samples
    order = [full.samples.index(s) for s in a.samples]
    assert order == sorted(order)
    assert full.subset(30).samples == full.subset(500).samples == full.samples
    assert a.layout == full.layout and a.class_names == full.class_names
    with pytest.raises(DataError):
        full.subset(0)


def test_sha256_is_stable_location_independent_and_content_sensitive(tmp_path):
    full = make_set(tmp_path / "one", 6)
    digest = full.sha256()
    assert len(digest) == 64 and digest == discover(tmp_path / "one").sha256()
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    assert discover(tmp_path / "two").sha256() == digest
    target = tmp_path / "two" / "c0" / "000.png"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    assert discover(tmp_path / "two").sha256() != digest
    relabelled = ImageSet(
        [Sample(s.path, 0) for s in full.samples], full.source, full.layout, None, full.root
    )
    assert relabelled.sha256() != digest
    assert full.subset(3, seed=0).sha256() != digest


def test_batches_shapes_and_labels(tmp_path):
    full = make_set(tmp_path, 5)
    batches = list(full.batches(Preprocess(crop_size=8, resize_size=8), batch_size=2))
    assert [b[0].shape for b in batches] == [(2, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8)]
    assert all(b[0].dtype == np.float32 and b[1].dtype == np.int64 for b in batches)
    assert np.concatenate([b[1] for b in batches]).tolist() == [s.label for s in full.samples]
    unlabelled = ImageSet([Sample(s.path, None) for s in full.samples], "x", "flat", None)
    assert all(labels is None for _, labels in unlabelled.batches(Preprocess(), 4))
    with pytest.raises(DataError):
        next(full.batches(Preprocess(), 0))


# --------------------------------------------------------------------------- property test

_segment = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_ -]{0,7}", fullmatch=True)
_relpath = st.tuples(
    st.lists(_segment, max_size=2), _segment, st.sampled_from(sorted(IMAGE_EXTENSIONS) + [".JPEG"])
).map(lambda t: "/".join([*t[0], t[1] + t[2]]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.dictionaries(_relpath, st.integers(0, 10**6), min_size=1, max_size=8),
    seps=st.lists(st.sampled_from([" ", "  ", ",", ", ", " , ", "\t"]), min_size=8, max_size=8),
)
def test_labels_file_round_trip(entries, seps):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = []
        for (rel, label), sep in zip(entries.items(), seps, strict=False):
            touch(root / rel)
            lines.append(f"{rel}{sep}{label}")
        (root / "list.txt").write_text("\n".join(lines) + "\n")
        found = discover(root / "list.txt")
        assert labels_of(found, root) == entries
        # Sorted by relative path as text: "0.bmp" before "0/0.bmp" (Path order has it after).
        paths = [s.path.relative_to(root).as_posix() for s in found.samples]
        assert paths == sorted(paths)


# --------------------------------------------------------------------------- real data sets


@pytest.mark.skipif(
    not (IMAGENET_SAMPLES / "labels.tsv").is_file(),
    reason=f"ImageNet sample set not present at {IMAGENET_SAMPLES}",
)
def test_shared_imagenet_samples(tmp_path):
    found = discover(IMAGENET_SAMPLES, require_labels=True)
    assert len(found) == 1000 and found.layout == "labels-file"
    by_name = {s.path.name: s.label for s in found.samples}
    assert by_name["n01440764_tench.JPEG"] == 0
    assert found.class_names is not None and found.class_names[0] == "tench"
    # Without labels.tsv the synset-prefix layout gives the same class indices.
    for name in by_name:
        touch(tmp_path / name)
    assert {s.path.name: s.label for s in discover(tmp_path).samples} == by_name
    for sample in found.subset(3, seed=0).samples:
        assert load_image(sample.path).mode == "RGB"


def test_default_calibration_set():
    folder = default_calibration_dir()
    assert folder == REPO_ROOT / "calibration" / "default"
    found = discover(folder)
    assert found.layout == "flat" and len(found) == 6
    sources = (folder / "SOURCES.md").read_text()
    for sample in found.samples:
        img = load_image(sample.path)
        assert img.mode == "RGB" and min(img.size) == 256
        assert sample.path.name in sources
    assert sum(s.path.stat().st_size for s in found.samples) < 1_000_000


def test_a_second_pass_over_a_set_reuses_its_preprocessed_images(tmp_path, monkeypatch):
    """A build reads its calibration images several times; each is decoded once per version."""
    from edgeresnet import data

    files = [write_image(tmp_path / f"{i}.png", color=(i * 40, 0, 0)) for i in range(3)]
    decoded: list[str] = []
    real = data.load_image
    monkeypatch.setattr(data, "load_image", lambda p: decoded.append(Path(p).name) or real(p))
    monkeypatch.setattr(data, "_PREPROCESSED", data.LRUCache(1 << 20, getsizeof=lambda a: a.nbytes))
    images = discover(tmp_path)
    pre = Preprocess(crop_size=8, resize_size=8)
    first = np.concatenate([x for x, _ in images.batches(pre, 2)])
    again = np.concatenate([x for x, _ in images.batches(pre, 2)])
    assert np.array_equal(first, again) and len(decoded) == 3
    write_image(files[1], color=(0, 200, 0), size=(9, 6))  # a new version of one file
    changed = np.concatenate([x for x, _ in images.batches(pre, 2)])
    assert decoded[3:] == ["1.png"]
    assert np.array_equal(changed[[0, 2]], first[[0, 2]]) and not np.array_equal(changed, first)
    list(images.batches(Preprocess(crop_size=6, resize_size=6), 3))  # another transform
    assert len(decoded) == 7


def test_the_preprocessed_image_cache_keeps_to_its_size(tmp_path, monkeypatch):
    from edgeresnet import data

    one = 3 * 8 * 8 * 4  # bytes of one 8 x 8 image
    monkeypatch.setattr(data, "_PREPROCESSED", data.LRUCache(2 * one, getsizeof=lambda a: a.nbytes))
    for i in range(4):
        write_image(tmp_path / f"{i}.png")
    list(discover(tmp_path).batches(Preprocess(crop_size=8, resize_size=8), 4))
    assert len(data._PREPROCESSED) == 2 and data._PREPROCESSED.currsize == 2 * one
    cached = next(iter(data._PREPROCESSED.values()))
    with pytest.raises(ValueError, match="read-only"):
        cached[0, 0, 0] = 1.0
