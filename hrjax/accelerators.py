"""Which accelerators this machine has, which JAX builds are installed, and the command that joins them.

``pip install -e .`` installs the CPU build of jax; a GPU or TPU needs the matching plugin, installed by the
extras of pyproject.toml (``.[cuda12]``, ``.[cuda13]``, ``.[tpu]``). Nothing here imports jax: the hardware
is found from device files and the builds from the installed distributions, so ``hrjax info`` and the
``--device`` error can say what is missing even when JAX's backend fails to start.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

# extra of hrjax -> the jax plugin distribution it installs
PLUGINS = {"cuda12": "jax-cuda12-plugin", "cuda13": "jax-cuda13-plugin", "tpu": "libtpu",
           "rocm7": "jax-rocm7-plugin"}  # (no hrjax extra for ROCm: AMD's own instructions install it)
INSTALL = 'pip install -e ".[{extra}]"'  # hrjax is installed from its checkout, not from an index


@dataclass(frozen=True)
class Hardware:
    kind: str        # "gpu" or "tpu" (JAX's platform names)
    what: str        # for people: "NVIDIA GPU", "TPU"
    evidence: str    # the file or program that showed it
    extra: str       # the hrjax extra that installs the JAX build for it


def find_hardware(root: Path = Path("/"), which=shutil.which, env=os.environ) -> list[Hardware]:
    """Accelerators visible on this machine (``root``/``which``/``env`` let the tests fake one)."""
    found = []
    nvidia = [root / "proc/driver/nvidia/version", root / "dev/nvidia0"]
    hit = next((p for p in nvidia if p.exists()), None)
    if hit is not None or which("nvidia-smi"):
        found.append(Hardware("gpu", "NVIDIA GPU", str(hit) if hit else "nvidia-smi", "cuda12"))
    accel = sorted((root / "dev").glob("accel[0-9]*")) if (root / "dev").is_dir() else []
    if accel or env.get("TPU_NAME") or env.get("TPU_ACCELERATOR_TYPE"):
        found.append(Hardware("tpu", "TPU", str(accel[0]) if accel else "TPU_* environment", "tpu"))
    return found


def installed_builds(version=importlib.metadata.version) -> dict[str, str]:
    """Installed JAX accelerator plugins: extra -> "distribution version"."""
    out = {}
    for extra, dist in PLUGINS.items():
        try:
            out[extra] = f"{dist} {version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def build_for(kind: str, builds: dict[str, str]) -> str | None:
    """The installed plugin serving JAX platform ``kind`` ("gpu"/"tpu"), if any."""
    extras = ("cuda12", "cuda13", "rocm7") if kind == "gpu" else ("tpu",)
    return next((builds[e] for e in extras if e in builds), None)


def install_hint(kind: str) -> str:
    """The command that installs JAX's build for platform ``kind``."""
    if kind == "gpu":
        return (f"{INSTALL.format(extra='cuda12')} (NVIDIA driver >= 525; {INSTALL.format(extra='cuda13')} "
                f"for CUDA 13 drivers); see the README section \"GPU / TPU\"")
    if kind == "tpu":
        return f"{INSTALL.format(extra='tpu')} (on a Cloud TPU VM); see the README section \"GPU / TPU\""
    return ""


def device_unavailable(kind: str, reason: str | None = None, builds: dict[str, str] | None = None) -> str:
    """The ``--device gpu|tpu`` usage error: what JAX said, and the missing build's install command."""
    builds = installed_builds() if builds is None else builds
    msg = f"--device {kind}: no {kind} device available to JAX"
    have = build_for(kind, builds)
    if kind in ("gpu", "tpu") and have is None:
        # JAX's own reason would only say that its 'rocm'/'cuda' backend is unknown: name the fix instead
        return msg + f": JAX's {kind.upper()} build is not installed; install it with {install_hint(kind)}"
    if reason:
        msg += f" ({reason})"
    if have is not None:
        msg += f"; {have} is installed, so check the driver and the devices this process may see"
    return msg


def summary(jax_platforms: set[str], hardware: list[Hardware] | None = None,
            builds: dict[str, str] | None = None) -> list[str]:
    """Lines for ``hrjax info``: what JAX uses, what the machine has, what to install to use it."""
    hardware = find_hardware() if hardware is None else hardware
    builds = installed_builds() if builds is None else builds
    uses = ", ".join(sorted(jax_platforms))
    lines = [f"JAX sees: {uses}; installed accelerator builds: {', '.join(builds.values()) or 'none (CPU only)'}"]
    for hw in hardware:
        if hw.kind in jax_platforms:
            lines.append(f"{hw.what} found ({hw.evidence}) and used by JAX")
        elif build_for(hw.kind, builds):
            lines.append(f"{hw.what} found ({hw.evidence}) but JAX does not see it although "
                         f"{build_for(hw.kind, builds)} is installed (check the driver / JAX_PLATFORMS)")
        else:
            lines.append(f"{hw.what} found ({hw.evidence}) but JAX cannot use it: {install_hint(hw.kind)}")
    if not hardware and jax_platforms <= {"cpu"}:
        lines.append("no GPU or TPU found on this machine: JAX runs on the CPU")
    return lines
