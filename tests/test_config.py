"""Target profiles: bundled ones load; unknown keys, wrong types and unknown names are refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgeresnet.config import available_targets, load_target, shipped
from edgeresnet.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(available_targets()))
def test_every_bundled_profile_loads(name):
    profile = load_target(name)
    assert profile.name == name
    assert profile.precisions


def test_onnx_profile_is_the_fast_int8_flavour():
    q = load_target("onnx").quantization
    assert (q.activation_type, q.weight_type, q.per_channel) == ("uint8", "int8", True)


def write(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\nbackend = "onnxruntime"\ndevice = "CPU"\n' + text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('precisions = ["fp32"]\ncolour = "red"\n', "unknown key(s) colour"),
        ('precisions = ["fp32"]\n[benchmark]\nwarmup = "ten"\n', "warmup must be int"),
        ('precisions = ["fp32"]\n[benchmark]\nbatch_sizes = [0]\n', "list positive sizes"),
        ('precisions = ["int4"]\n', "must be a non-empty subset"),
        ('precisions = ["fp32"]\n[quantization]\nper_channel = 1\n', "per_channel must be bool"),
        ('precisions = ["fp32"]\n[export]\nopset = true\n', "opset must be int"),
        ("", "missing key(s) precisions"),
        ("precisions = [", "not valid TOML"),
        ('precisions = ["fp32", "fp32"]\n', "each once"),
        ('precisions = ["int8"]\n[quantization]\nmethod = "nncf"\n', "quantizes with ort-static"),
        ('precisions = ["fp32"]\n[benchmark]\nbatch_sizes = [1, 1]\n', "each once"),
        ('precisions = ["fp32"]\n[benchmark]\nwarmup = -5\n', "warmup must be 0 or more"),
        ('precisions = ["fp32"]\n[benchmark]\nmin_iterations = 0\n', "min_iterations at least 1"),
        ('precisions = ["fp32"]\n[benchmark]\nmin_seconds = nan\n', "min_seconds must be a finite"),
    ],
)
def test_bad_profiles_are_refused_with_the_key_named(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_target(write(tmp_path, text))
    assert message in str(info.value)
    assert "p.toml" in str(info.value)


@pytest.mark.parametrize("name", ["", "../../elsewhere", ".cache", "a/b"])
def test_a_profile_name_must_be_a_plain_folder_name(tmp_path, name):
    """A build writes OUT/<name>: an empty name would replace OUT, ../ would leave it."""
    path = tmp_path / "p.toml"
    path.write_text(
        f'name = "{name}"\nbackend = "onnxruntime"\ndevice = "CPU"\nprecisions = ["fp32"]\n'
    )
    with pytest.raises(ConfigError, match="must be a plain folder name"):
        load_target(str(path))


def test_an_empty_profiles_variable_means_the_bundled_profiles(monkeypatch):
    monkeypatch.setenv("EDGERESNET_TARGETS", "")
    assert "onnx" in available_targets()


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        load_target("jetsonn")
    assert "onnx" in info.value.hint


def test_a_missing_profiles_folder_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERESNET_TARGETS", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="target profiles are not at") as info:
        load_target("onnx")
    assert "pip install -e ." in info.value.hint and "EDGERESNET_TARGETS" in info.value.hint
    with pytest.raises(ConfigError, match="target profiles are not at"):
        available_targets()  # `edgeresnet targets` says so too, rather than list nothing


def test_shipped_folders_are_found_where_a_wheel_installs_them():
    assert shipped("targets") == REPO / "targets"  # the checkout first
    assert shipped("nowhere") == Path(sys.prefix, "share", "edgeresnet", "nowhere")


@pytest.mark.slow
def test_the_wheel_carries_the_profiles_and_the_calibration_set(tmp_path):
    """Installed from its wheel, outside a checkout, edgeresnet finds them under <prefix>/share."""
    pytest.importorskip("setuptools", minversion="69")
    source = tmp_path / "src"  # a copy: building writes build/ beside pyproject.toml
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("edgeresnet", "targets", "calibration"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("edgeresnet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.data/data/share/edgeresnet"
    for profile in (REPO / "targets").glob("*.toml"):
        assert f"{data}/targets/{profile.name}" in names
    for image in (REPO / "calibration" / "default").iterdir():
        assert f"{data}/calibration/default/{image.name}" in names
