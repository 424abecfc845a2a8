"""Set-up checks of a folder run, before any image: the weights are installed, the device exists, the mesh."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from hrjax.run.exits import UsageError

def missing_weights_message(weights_dir: Path, explicit_dir: Path | None, models: Iterable[str]) -> str | None:
    """None when every model in ``models`` is installed in ``weights_dir``, else the error with fix-it commands."""
    from hrjax.weights.catalog import fix_it_commands
    from hrjax.weights.store import list_installed

    installed = {i.model for i in list_installed(weights_dir)}
    missing = [m for m in models if m not in installed]
    if not missing:
        return None
    lines = [f"missing model weights in {weights_dir}: {', '.join(missing)}"]
    for m in missing:
        lines.append(f"To install {m}:\n{fix_it_commands(m, explicit_dir)}")
    return "\n".join(lines)


def select_device(platform: str | None):
    """Pick the JAX platform (before jax initialises its backends when possible); returns the device to use,
    or None for JAX's default. Raises UsageError when the platform is not available."""
    import jax

    if platform is None:
        return None
    # JAX reads jax_platforms when it initialises its backends: set before that, only ``platform`` is started
    # (no probing of the others); set later, it changes nothing and the device lookup below decides.
    previous = jax.config.jax_platforms
    jax.config.update("jax_platforms", platform)
    from hrjax.accelerators import device_unavailable  # names the extra that installs JAX's GPU/TPU build
    try:
        devices = jax.local_devices(backend=platform)  # this process's own (jax.devices() spans all processes)
    except RuntimeError as e:
        devices, reason = [], str(e).splitlines()[0]
    else:
        reason = None
    if not devices:
        # put the setting back: a process that goes on (a library caller, hrjax serve's tests) would otherwise
        # fail to start any backend later, the one it asked for being absent
        jax.config.update("jax_platforms", previous)
        raise UsageError(device_unavailable(platform, reason))
    return devices[0]


def mesh_for(platform: str | None, local_devices: int = 0):
    """A 1-D data mesh over the first ``local_devices`` local devices of ``platform``, or None when that is a
    single device. 0 = every accelerator (GPU/TPU) device, but one CPU device: XLA's host "devices" are slices
    of the same cores, so sharding over them gains nothing unless asked for explicitly."""
    import jax

    from hrjax.pipeline.batching import data_mesh

    devices = jax.local_devices(backend=platform)
    if local_devices == 0 and devices[0].platform == "cpu":
        local_devices = 1
    if local_devices > len(devices):
        raise UsageError(f"--local-devices {local_devices}: only {len(devices)} {devices[0].platform} "
                         f"device(s) here")
    devices = devices[:local_devices or len(devices)]
    return data_mesh(devices) if len(devices) > 1 else None


def load_run_models(weights_dir: Path, *, model: str, merge_weights_dir: Path | None = None,
                    platform: str | None = None, precision: str = "float32", grouped_impl: str = "auto",
                    local_devices: int = 0, cache_dir: Path | None | bool = None):
    """What a run needs before its first image, shared by ``hrjax boost`` and ``hrjax serve``: the device
    (``select_device``), the persistent compilation cache (None = the default folder, False = none), the mesh
    (``mesh_for``) and the networks. Returns ``(models, device or None, mesh or None)``; raises UsageError for an
    unavailable device or unusable weights."""
    dev = select_device(platform)
    if cache_dir is not False:
        from hrjax import compile_cache
        compile_cache.enable(cache_dir if cache_dir is not None else None)
    from hrjax.pipeline.networks import load_models
    from hrjax.weights.store import WeightsError
    mesh = mesh_for(platform, local_devices)
    from hrjax.models.layers import resolve_grouped_impl
    try:
        resolve_grouped_impl(grouped_impl)  # before any image: a formulation this machine cannot run
    except ValueError as e:
        raise UsageError(f"--grouped-conv {grouped_impl}: {e}") from None
    try:
        models = load_models(weights_dir, base=model, merge_weights_dir=merge_weights_dir,
                             precision=precision, grouped_impl=grouped_impl, mesh=mesh)
    except WeightsError as e:
        raise UsageError(str(e)) from None
    return models, dev, mesh
