"""Test configuration in the equinox style: strict dtype promotion, rank promotion raises, 8 CPU devices.

The flags must be set before jax is imported anywhere, hence at the top of this file.
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from hrjax.host_memory import limit_malloc_arenas  # noqa: E402

limit_malloc_arenas()  # like the CLI: keeps the test process's heap from fragmenting (hrjax.host_memory)

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

ROOT = Path(__file__).resolve().parents[1]


def golden_dir() -> Path | None:
    env = os.environ.get("HRJAX_GOLDEN_DIR")
    cand = Path(env) if env else ROOT.parent / "shared" / "golden"
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def golden() -> Path:
    """The golden folder; on CI (CI=true) its absence is a failure, elsewhere a skip."""
    g = golden_dir()
    if g is None:
        msg = "golden fixtures not found (../shared/golden or $HRJAX_GOLDEN_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return g


def _golden_module(golden: Path, filename: str, name: str):
    spec = importlib.util.spec_from_file_location(name, golden / filename)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def synth(golden):
    """The golden folder's synth_weights module (numpy-only weight rule, README section 2)."""
    return _golden_module(golden, "synth_weights.py", "synth_weights")


@pytest.fixture(scope="session")
def golden_compare(golden):
    """The golden folder's compare.py (the tolerance table of README section 6)."""
    return _golden_module(golden, "compare.py", "golden_compare")


def _synthetic_checkpoint(tmp_path_factory, golden, synth, manifest: str, name: str) -> Path:
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("ckpt") / name
    synth.save_torch(synth.synth_state_dict(synth.load_manifest(golden / "manifests" / manifest), seed=0), out)
    return out


@pytest.fixture(scope="session")
def midas_checkpoint(tmp_path_factory, golden, synth) -> Path:
    """Synthetic MiDaS v2.1 checkpoint in the official layout (plain torch state_dict)."""
    return _synthetic_checkpoint(tmp_path_factory, golden, synth, "midas_v21.json", "midas_v21-f6b98070.pt")


@pytest.fixture(scope="session")
def mergenet_checkpoint(tmp_path_factory, golden, synth) -> Path:
    """Synthetic merge-net checkpoint in the official layout (plain torch state_dict)."""
    return _synthetic_checkpoint(tmp_path_factory, golden, synth, "mergenet.json", "latest_net_G.pth")


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory, midas_checkpoint, mergenet_checkpoint) -> Path:
    """A weights store holding both synthetic models, converted with hrjax's own converter."""
    from convert import convert_checkpoint

    wd = tmp_path_factory.mktemp("weights")
    convert_checkpoint("midas_v21", midas_checkpoint, wd, allow_unknown=True)
    convert_checkpoint("mergenet", mergenet_checkpoint, wd, allow_unknown=True)
    return wd
