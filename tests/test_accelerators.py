"""GPU/TPU: the extras that install JAX's accelerator builds, what ``hrjax info`` says, the --device error.
Pure functions on a faked machine (device files under tmp_path, a fake ``which``), no jax work."""

import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from hrjax import accelerators as acc

ROOT = Path(__file__).resolve().parents[1]


def test_extras_pull_jax_builds_with_the_same_pin():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    jax_pin = next(d for d in meta["dependencies"] if re.match(r"jax[<>=~]", d))[len("jax"):]
    extras = meta["optional-dependencies"]
    for extra in ("cuda12", "cuda13", "tpu"):
        assert extras[extra] == [f"jax[{extra}]{jax_pin}"], extras[extra]
        assert extra in acc.PLUGINS  # the build each extra installs is what info and --device look for


def _machine(tmp_path, files=()):
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    return tmp_path


def test_find_hardware_from_device_files(tmp_path):
    none = acc.find_hardware(_machine(tmp_path / "a"), which=lambda _: None, env={})
    assert none == []
    gpu = acc.find_hardware(_machine(tmp_path / "b", ["proc/driver/nvidia/version"]), which=lambda _: None, env={})
    assert [(h.kind, h.extra) for h in gpu] == [("gpu", "cuda12")]
    tpu = acc.find_hardware(_machine(tmp_path / "c", ["dev/accel0"]), which=lambda _: None, env={})
    assert [(h.kind, h.extra) for h in tpu] == [("tpu", "tpu")]
    smi = acc.find_hardware(_machine(tmp_path / "d"), which=lambda p: "/usr/bin/nvidia-smi", env={})
    assert [h.evidence for h in smi] == ["nvidia-smi"]


def test_info_summary_says_what_jax_sees_and_what_to_install():
    gpu = acc.Hardware("gpu", "NVIDIA GPU", "/dev/nvidia0", "cuda12")
    lines = acc.summary({"cpu"}, [gpu], {})
    assert lines[0] == "JAX sees: cpu; installed accelerator builds: none (CPU only)"
    assert "NVIDIA GPU found (/dev/nvidia0) but JAX cannot use it: pip install -e \".[cuda12]\"" in lines[1]
    lines = acc.summary({"gpu"}, [gpu], {"cuda12": "jax-cuda12-plugin 0.10.2"})
    assert lines[1] == "NVIDIA GPU found (/dev/nvidia0) and used by JAX"
    lines = acc.summary({"cpu"}, [gpu], {"cuda12": "jax-cuda12-plugin 0.10.2"})
    assert "although jax-cuda12-plugin 0.10.2 is installed" in lines[1]
    assert acc.summary({"cpu"}, [], {})[1] == "no GPU or TPU found on this machine: JAX runs on the CPU"


def test_device_error_names_the_extra():
    msg = acc.device_unavailable("gpu", "Unable to initialize backend 'rocm'", builds={})
    assert 'pip install -e ".[cuda12]"' in msg and "rocm" not in msg  # JAX's ROCm text misled users
    msg = acc.device_unavailable("tpu", "boom", builds={"tpu": "libtpu 0.0.42"})
    assert "(boom)" in msg and "libtpu 0.0.42 is installed" in msg


def test_cli_device_gpu_without_the_build_is_a_usage_error(tmp_path, weights_dir):
    """Checked when the device is selected, before the models load (JAX's own error named ROCm)."""
    if acc.build_for("gpu", acc.installed_builds()):
        pytest.skip("a JAX GPU build is installed here")
    img = tmp_path / "a.png"
    img.write_bytes(b"x")
    r = CliRunner().invoke(cli.app, ["boost", str(img), "-o", str(tmp_path / "o"), "--device", "gpu",
                                     "--weights-dir", str(weights_dir), "--no-cache"])
    assert r.exit_code == 2, r.output
    assert 'pip install -e ".[cuda12]"' in r.output and "GPU / TPU" in r.output
    assert not (tmp_path / "o").exists()
