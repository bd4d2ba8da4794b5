"""Shared fixtures: real images on disk, a ResNet trained on real digits, fast target profiles."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from PIL import Image

from edgeresnet.data import Preprocess, discover
from edgeresnet.models import build_model

# Property tests keep no example database, and Hypothesis's other caches (constants, Unicode
# tables) go to the system's temporary folder: nothing is written into the checkout.
settings.register_profile("edgeresnet", database=None)
settings.load_profile("edgeresnet")
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "edgeresnet-hypothesis")
)

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGENET_SAMPLES = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-samples"
DIGITS_SIZE = 32

# Benchmarks cut to a fraction of a second: the tests check what is recorded, not speed.
FAST_BENCHMARK = """
[benchmark]
batch_sizes = [1, 4]
warmup = 2
min_iterations = 5
min_seconds = 0.05
threads = 1
"""

FAST_PROFILE = """
name = "{name}"
backend = "onnxruntime"
device = "CPU"
precisions = ["fp32", "int8"]
[quantization]
method = "ort-static"
"""

FAST_OPENVINO = """
name = "openvino"
backend = "openvino"
device = "CPU"
precisions = ["fp32", "bf16", "int8"]
[quantization]
method = "nncf"
preset = "performance"
subset_size = 300
"""


@pytest.fixture(scope="session")
def imagenet_samples() -> Path:
    if not (IMAGENET_SAMPLES / "labels.tsv").is_file():
        pytest.skip(f"{IMAGENET_SAMPLES} is absent")
    return IMAGENET_SAMPLES


@pytest.fixture
def fast_profile(tmp_path: Path) -> Path:
    """The ONNX target with benchmarks cut to a fraction of a second."""
    path = tmp_path / "onnx-fast.toml"
    path.write_text(FAST_PROFILE.format(name="onnx") + FAST_BENCHMARK)
    return path


@pytest.fixture
def openvino_fast_profile(tmp_path: Path) -> Path:
    """The OpenVINO CPU target (FP32, BF16, NNCF INT8) with benchmarks cut short."""
    path = tmp_path / "openvino-fast.toml"
    path.write_text(FAST_OPENVINO + FAST_BENCHMARK)
    return path


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """scikit-learn's bundled handwritten digits as PNG class folders: train/ and test/."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    root = tmp_path_factory.mktemp("digits")
    data = load_digits()
    train, test = train_test_split(
        np.arange(len(data.target)), test_size=0.2, stratify=data.target, random_state=0
    )
    for split, indices in (("train", train), ("test", test)):
        for i in indices:
            folder = root / split / str(data.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (data.images[i] * (255.0 / 16.0)).astype(np.uint8)
            image = Image.fromarray(pixels, mode="L").resize((DIGITS_SIZE, DIGITS_SIZE))
            image.save(folder / f"{i:04d}.png")
    return {"train": root / "train", "test": root / "test"}


@contextlib.contextmanager
def training_threads() -> Iterator[None]:
    """PyTorch on 2 threads, whatever the machine: the figures the tests state were measured so,
    and another count sums in another order and trains another model (on 1 thread the digits
    ResNet reaches 99.44 % where on 2 it reaches 98.06 %)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits_weights(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 (width 16) trained on the digits train split; ~97 % top-1 on the test split."""
    pre = Preprocess.for_input_size(DIGITS_SIZE)
    x, y = _arrays(digits["train"], pre)
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, width=16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    epochs, batch = 12, 64
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=3e-3, total_steps=epochs * ((len(x) + batch - 1) // batch)
    )
    model.train()
    generator = torch.Generator().manual_seed(0)
    with training_threads():
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch):
                idx = order[start : start + batch]
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
    path = tmp_path_factory.mktemp("weights") / "digits-resnet18.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def digits_build(digits: dict[str, Path], digits_weights: Path):
    """Arguments after ``build`` that build the ResNet trained on digits.

    ``digits_build(target, out, calib_size, *extra, evaluate=False)``: ``target`` is a profile path
    or a target name; ``calib_size`` None leaves ``--calib-size`` out; ``evaluate`` True adds
    ``--eval`` on the test split, an int also ``--eval-size``; ``extra`` goes after ``--out``.
    ``calib`` and ``weights`` replace the train split and the trained weights.
    """

    def args(
        target: str | Path,
        out: Path,
        calib_size: int | None = None,
        *extra: str,
        evaluate: bool | int = False,
        calib: Path | None = None,
        weights: Path | None = None,
    ) -> list[str]:
        argv = ["--target", str(target), "--model", "resnet18"]
        argv += ["--weights", str(weights or digits_weights), "--input-size", str(DIGITS_SIZE)]
        argv += ["--calib", str(calib or digits["train"])]
        if calib_size is not None:
            argv += ["--calib-size", str(calib_size)]
        if evaluate is not False:
            argv += ["--eval", str(digits["test"])]
            if evaluate is not True:
                argv += ["--eval-size", str(evaluate)]
        return [*argv, "--out", str(out), *extra]

    return args


def _arrays(folder: Path, pre: Preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for x, y in discover(folder).batches(pre, 256):
        images.append(x)
        labels.append(y)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def assert_ratio_of_p50s(record: dict) -> None:
    """A paired record's ratio is its p50 over the reference's, up to their 4-decimal rounding."""
    ms, reference_ms, half = record["p50_ms"], record["reference_p50_ms"], 5e-5
    lowest = (ms - half) / (reference_ms + half) - half
    highest = (ms + half) / (reference_ms - half) + half
    assert lowest <= record["ratio"] <= highest, record


def read_until(proc: subprocess.Popen, text: str, *, timeout_s: float = 240) -> list[str]:
    """The lines ``proc`` writes to stderr up to the first holding ``text``; a silent hang is
    ended by killing ``proc`` after ``timeout_s``."""
    seen = []
    deadline = threading.Timer(timeout_s, proc.kill)
    deadline.start()
    try:
        for line in proc.stderr:
            seen.append(line)
            if text in line:
                break
    finally:
        deadline.cancel()
    return seen
