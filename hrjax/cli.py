"""The ``hrjax`` command line (Typer; the ``hrjax`` console script is :func:`main`). Configuration objects
are built here, at the edge, and nowhere else."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hrjax.bases import DEFAULT_BASE
from hrjax.cli_choices import BaseModel, GroupedConv, Mode, OutputResolution, Platform, Precision
from hrjax.console import print_table
from hrjax.io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="High-resolution monocular depth in JAX (Boosting Monocular Depth, CVPR 2021).")
weights_app = typer.Typer(no_args_is_help=True, help="Download, convert and list model weights.")
app.add_typer(weights_app, name="weights")

# soft_wrap: without a terminal rich would wrap at 80 columns and split paths, URLs and commands mid-word;
# a soft-wrapped line is left to the terminal or the viewer (tables go through hrjax.console.print_table).
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _hide_flag_types() -> None:
    """Typer's rich help prints ``<bool>`` beside plain flags (``--overwrite <bool>``), which reads as if the
    flag took a value; the type column of an option comes from ``display_type_rich``, so flags get none."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_hrjax_flags_hidden", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._hrjax_flags_hidden = True
    TyperOption.display_type_rich = display_type_rich


_hide_flag_types()


def _version_callback(value: bool) -> None:
    if value:
        from hrjax import __version__
        print(f"hrjax {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="Print hrjax's version and exit")):
    """High-resolution monocular depth in JAX (Boosting Monocular Depth, CVPR 2021)."""

WeightsDir = typer.Option(None, "--weights-dir", help="Converted weights folder "
                          "\\[default: $HRJAX_WEIGHTS_DIR, else weights/ of the checkout]")


def _weights_dir(value: Optional[Path]) -> Path:
    from hrjax.weights.store import default_weights_dir
    return value if value is not None else default_weights_dir()


def _model_names() -> list[str]:
    from hrjax.weights.catalog import MODELS
    return list(MODELS)


@weights_app.command("convert")
def weights_convert(
    model: str = typer.Option(..., "--model", help="Model name (one of `hrjax weights list`)"),
    source: Path = typer.Option(..., "--source", help="The official PyTorch checkpoint file"),
    weights_dir: Optional[Path] = WeightsDir,
    allow_unknown: bool = typer.Option(False, "--allow-unknown", help="Convert a checkpoint whose sha256 is not "
                                       "the official one (e.g. fine-tuned); hrjax.json records it"),
):
    """Convert an official PyTorch checkpoint into the hrjax weights store (sha256 and keys strictly checked)."""
    from hrjax.convert.checkpoint import convert_checkpoint
    from hrjax.weights.keys import CheckpointMismatch

    if model not in _model_names():
        err.print(f"[red]unknown model '{escape(model)}'[/]; known: {', '.join(_model_names())}")
        raise typer.Exit(2)
    try:
        with err.status(escape(f"converting {source} ...")):
            dest = convert_checkpoint(model, source, _weights_dir(weights_dir), allow_unknown=allow_unknown)
    except (CheckpointMismatch, FileNotFoundError, ValueError, RuntimeError) as e:
        # escape: the messages hold text such as ".[convert]" that rich would take for markup
        err.print(f"[red]conversion failed:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    out.print(f"converted {model} -> {dest}", highlight=False, markup=False, soft_wrap=True)


@weights_app.command("list")
def weights_list(weights_dir: Optional[Path] = WeightsDir):
    """Show the converted models installed in the weights folder, and whether their files are complete."""
    from hrjax.weights.catalog import fix_it_commands
    from hrjax.weights.store import damage_text, list_installed, store_damage

    wd = _weights_dir(weights_dir)
    installed = list_installed(wd)
    table = Table(title=escape(f"hrjax weights in {wd}"))
    for col in ("model", "source", "source sha256", "converter", "tensors", "architecture", "files"):
        table.add_column(col)
    damaged = {}
    for i in installed:
        # a train-merge export records its own net (e.g. ngf=4 num_downs=5 input_size=64); official: the catalogue's
        arch = " ".join(f"{k}={v}" for k, v in i.architecture.items()) if i.architecture else "catalogue"
        # sizes only (stat calls): the arrays' digest is checked when the model loads
        damage = store_damage(wd, i)
        if damage:
            damaged[i.model] = damage
        files = "not recorded" if damage is None else ("DAMAGED" if damage else "complete")
        table.add_row(*map(escape, (i.model, i.source_name, i.source_sha256, str(i.converter_version),
                                    str(i.n_tensors), arch, files)))
    print_table(out, table)
    for model, damage in damaged.items():
        fix = fix_it_commands(model, weights_dir) if model in _model_names() else "  convert or export it again"
        out.print(escape(f"{model} is damaged ({damage_text(damage)}); install it again:\n{fix}"),
                  highlight=False, soft_wrap=True)
    missing = [m for m in _model_names() if m not in {i.model for i in installed}]
    if missing:
        out.print(f"not installed: {', '.join(missing)} (hrjax weights download)")


@weights_app.command("download")
def weights_download(
    model: Optional[list[str]] = typer.Option(None, "--model", help="Model(s) to fetch (repeat the option; "
                                              "'all' = every model of `hrjax weights list`) \\[default: midas_v21 "
                                              "and mergenet, what the default boost needs]"),
    weights_dir: Optional[Path] = WeightsDir,
    keep_source: bool = typer.Option(False, "--keep-source", help="Keep the downloaded PyTorch file"),
):
    """Download the official checkpoints (sha256-checked, mirror fall-backs) and convert them."""
    from hrjax.convert.checkpoint import TORCH_HINT, TorchMissing, torch_available
    from hrjax.convert.install import download_and_convert
    from hrjax.weights.catalog import DEFAULT_DOWNLOAD
    from hrjax.weights.download import DownloadError, PlainProgress, RichBar
    from hrjax.weights.keys import CheckpointMismatch

    wd = _weights_dir(weights_dir)
    names = list(DEFAULT_DOWNLOAD) if not model else _model_names() if "all" in model else model
    for name in names:
        if name not in _model_names():
            err.print(f"[red]unknown model '{escape(name)}'[/]; known: {', '.join(_model_names())}")
            raise typer.Exit(2)
    if not torch_available():  # before fetching hundreds of MB that could not be converted
        err.print(f"[red]error:[/] {escape(TORCH_HINT)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    def log(m: str) -> None:
        err.print(m, highlight=False, markup=False, soft_wrap=True)

    # a live bar on a terminal; otherwise a plain line every few seconds (pooch's own bar would need tqdm)
    progress = (lambda what: RichBar(err, what)) if err.is_terminal else (lambda what: PlainProgress(log))
    failed = False
    for name in names:
        try:
            dest = download_and_convert(name, wd, keep_source=keep_source, progress=progress, log=log)
            out.print(f"{name}: installed in {dest}", highlight=False, markup=False, soft_wrap=True)
        except (DownloadError, CheckpointMismatch, TorchMissing, RuntimeError, ValueError) as e:
            err.print(f"[red]{name}: failed[/]\n{escape(str(e))}", highlight=False, soft_wrap=True)
            failed = True
    if failed:
        raise typer.Exit(1)


@app.command("info")
def info(weights_dir: Optional[Path] = WeightsDir):
    """JAX version, devices, installed weights and the compilation cache location."""
    import jax

    from hrjax import __version__
    from hrjax.weights.store import list_installed, store_damage

    wd = _weights_dir(weights_dir)
    out.print(f"hrjax {__version__}, jax {jax.__version__}, backend {jax.default_backend()}")
    for d in jax.devices():
        out.print(f"  device {d.id}: {d.device_kind} ({d.platform})")
    from hrjax.accelerators import summary
    for line in summary({d.platform for d in jax.devices()}):
        out.print(line, markup=False, highlight=False)
    from hrjax.models.layers import resolve_grouped_impl
    from hrjax.pipeline.batching import auto_max_batch
    local = jax.local_devices()
    out.print(f"defaults here: --max-batch 0 -> {auto_max_batch(local[:1])} per device, grouped convolutions "
              f"'{resolve_grouped_impl('auto')}', patch batches over "
              f"{1 if local[0].platform == 'cpu' else len(local)} local device(s)")
    installed = [f"{i.model} (damaged: see hrjax weights list)" if store_damage(wd, i) else i.model
                 for i in list_installed(wd)]
    out.print(f"weights dir {wd}: {', '.join(installed) or 'none installed'}", markup=False)
    from hrjax.compile_cache import cache_dir
    out.print(f"compilation cache: {cache_dir()}", markup=False)
    from hrjax.ops import grouped_conv
    if jax.default_backend() == "cpu":
        built = grouped_conv.library()
        out.print(f"CPU grouped-conv kernel: {built or 'not available (no C++ compiler or a failed build)'}",
                  markup=False)


BOOST_HELP = ("Estimate high-resolution depth for images and folders of images (Boosting Monocular Depth).\n\n"
              "Writes <output>/<stem>.png (16-bit, the reference's quantisation) and the other --save formats; "
              "folder inputs keep their sub-folders under --output. Images already done with the same options, "
              "weights and hrjax version (recorded in <output>/.hrjax/) are skipped unless --overwrite, so an "
              "interrupted run resumes. A bad image (corrupt, not an "
              "image, unreadable, too large) is reported as failed and the run goes on.")
BOOST_EPILOG = ("Exit codes: 0 every image done or skipped; 1 at least one image failed (the others were "
                "processed); 2 usage or setup error, nothing processed (bad option, no images found, missing "
                "weights, unavailable device); 130 interrupted.")


@app.command("boost", help=BOOST_HELP, epilog=BOOST_EPILOG)
def boost_cmd(
    inputs: list[Path] = typer.Argument(..., metavar="INPUT...", show_default=False,
                                        help="Image files and/or folders of images"),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (created if missing)"),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also scan sub-folders of folder inputs "
                                   "(their relative paths are kept under --output)"),
    mode: Mode = typer.Option("final", "--mode", case_sensitive=False,
                              help="final (double estimate + local boosting, the paper's result), r20 or r0 "
                                   "(whole-image double estimate only)"),
    max_res: Optional[float] = typer.Option(None, "--max-res", help="Cap on the long side of the Final target "
                                            "image \\[default: no cap]", show_default=False),
    output_resolution: OutputResolution = typer.Option(
        "input", "--output-resolution", case_sensitive=False,
        help="input (result at the input size) or native (internal size: 1024^2 for r0/r20)"),
    model: BaseModel = typer.Option(DEFAULT_BASE, "--model", case_sensitive=False,
                                    help="Base depth network: midas_v21 (inverse depth, fast), leres_res101 "
                                         "(depth, sharper) or dav2_vits|dav2_vitb|dav2_vitl (Depth Anything V2, "
                                         "inverse depth); others: `hrjax weights download --model NAME`"),
    weights_dir: Optional[Path] = WeightsDir,
    merge_weights: Optional[Path] = typer.Option(None, "--merge-weights", help="Weights folder holding the merge "
                                                 "network to use instead (e.g. one exported by train-merge)"),
    max_batch: int = typer.Option(0, "--max-batch", min=0, help="Most patches per network call (bounds device "
                                  "memory; results do not depend on it); 0 = from the free device memory "
                                  "(1 on CPU, where batching is slower)"),
    save: list[str] = typer.Option(["png16"], "--save", help="Comma-separated outputs: png16 (<stem>.png, "
                                   "16-bit like the reference, min-max scaled), png8 (<stem>_8bit.png, 8-bit "
                                   "gray), npy (<stem>.npy) and pfm (<stem>.pfm, MiDaS's layout): the float32 "
                                   "map the PNGs scale, not rescaled (nominally [0, 1], a little outside it), "
                                   "color (<stem>_color.png, 8-bit preview in --colormap), ply (<stem>.ply, "
                                   "coloured point cloud, see --fov), compare (<stem>_compare.png: input | plain "
                                   "| boosted), plain (<stem>_plain.png, 16-bit: the base network's single "
                                   "pass on the whole image)"),
    colormap: str = typer.Option("inferno", "--colormap", help="Colour map of --save color and compare: inferno "
                                 "(the reference's), magma, plasma, viridis, cividis, turbo or jet"),
    fov: float = typer.Option(60.0, "--fov", help="--save ply: horizontal field of view of the pinhole camera "
                              "in degrees (principal point at the image centre)"),
    ply_near: float = typer.Option(1.0, "--ply-near", help="--save ply: depth the map's nearest value is "
                                   "placed at (the scale is arbitrary: relative maps have none)"),
    ply_far: float = typer.Option(10.0, "--ply-far", help="--save ply: depth of its farthest value; every point "
                                  "lies between the two planes, far/near sets the relief"),
    ply_stride: int = typer.Option(1, "--ply-stride", min=1, help="--save ply: keep every N-th pixel in x and "
                                   "y (a 50 MP image is 50 M points at 1)"),
    save_whole: bool = typer.Option(False, "--save-whole", help="Also write the whole-image double estimate "
                                    "(resized like the result) to <output>/whole/<stem>.png"),
    save_patches: bool = typer.Option(False, "--save-patches", help="Also write each patch's 1024^2 double "
                                      "estimate to <output>/patches/<stem>_<id>.png (+ <stem>.json index); "
                                      "recomputes the patch estimates, so it costs extra time"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images already done with the same "
                                   "options \\[default: skip them, so an interrupted run resumes]"),
    device: Optional[Platform] = typer.Option(None, "--device", case_sensitive=False, show_default=False,
                                              help="JAX platform: cpu, gpu or tpu \\[default: JAX's choice]"),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Larger images fail with a reason"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only failures"),
    json_out: bool = typer.Option(False, "--json", help="One JSON record per image on stdout (input, key, "
                                  "status, R, K, n_patches, factor, input_shape, timings, outputs, error); "
                                  "human text always goes to stderr"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Persistent JAX compilation cache "
                                             "\\[default: $HRJAX_CACHE_DIR, else ~/.cache/hrjax/"
                                             "jax-compilation-cache]", show_default=False),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the persistent compilation cache"),
    precision: Precision = typer.Option(
        "float32", "--precision", case_sensitive=False,
        help="Convolution arithmetic: float32 (reproduces the reference), tf32 (TF32 tensor cores on NVIDIA "
             "GPUs; float32 on CPU) or bfloat16 (fast mode: bf16 operands, float32 accumulation)"),
    buckets: bool = typer.Option(False, "--buckets", help="Whole-image network passes on a fixed set of "
                                 "input shapes (the nearest of 9 aspect ratios, the size unchanged): a folder of "
                                 "mixed photos compiles a fixed set of programs; not parity (docs/benchmarks.md: "
                                 "Bucketed whole-image passes)"),
    grouped_conv: GroupedConv = typer.Option(
        "auto", "--grouped-conv", case_sensitive=False, envvar="HRJAX_GROUPED_CONV",
        help="How the ResNeXt grouped convolutions (MiDaS, LeReS) run: one grouped convolution (native), 32 "
             "dense ones (split), native with the 8- and 16-channel groups merged into 32-channel ones under "
             "block-diagonal kernels (packed: faster on XLA:CPU), or hrjax's own CPU kernel (kernel: the fastest "
             "on a CPU, compiled once per machine with the system's C++ compiler). auto = kernel on a CPU where "
             "it builds, else packed (split if XLA_FLAGS puts convolutions on YNNPACK); native on GPU/TPU. "
             "Results do not depend on it (float32 summation order only)"),
    local_devices: int = typer.Option(0, "--local-devices", min=0, help="Shard patch batches over this many "
                                      "local devices (0 = every GPU/TPU, one CPU device); results do not "
                                      "depend on it"),
    distributed: bool = typer.Option(False, "--distributed", help="Join a jax.distributed run: every process "
                                     "gets the same arguments and boosts its own share of the inputs "
                                     "(sorted, round-robin); on TPU pods and under Slurm nothing else is needed"),
    coordinator: Optional[str] = typer.Option(None, "--coordinator", help="With --distributed outside a TPU "
                                              "pod / Slurm: host:port of process 0", show_default=False),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", min=1, show_default=False,
                                                help="With --coordinator: number of processes"),
    process_id: Optional[int] = typer.Option(None, "--process-id", min=0, show_default=False,
                                             help="With --coordinator: this process's index"),
):
    """Boost a folder run; the work lives in hrjax.run, this function only checks and wires the options."""
    import math
    import time

    from rich.markup import escape

    from hrjax.run.folder import run, summarize
    from hrjax.run.inputs import collect_inputs
    from hrjax.run.outputs import RunOptions, parse_save
    from hrjax.run.report import Reporter, fmt_seconds
    from hrjax.run.setup import missing_weights_message
    from hrjax.run.exits import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,
                                 UsageError)

    t0 = time.perf_counter()

    from hrjax import distributed as dist
    info = dist.ProcessInfo()

    def usage(msg: str) -> typer.Exit:
        prefix = f"process {info.index}/{info.count}: " if info.count > 1 else ""
        msg = msg.removeprefix(prefix)
        err.print(f"[red]error:[/] {escape(prefix + msg)}", highlight=False, soft_wrap=True)
        dist.report_failure(info, msg)  # the other processes of a --distributed run stop too
        return typer.Exit(EXIT_USAGE)

    mode, output_resolution, model = mode.value, output_resolution.value, model.value
    device = device.value if device is not None else None
    if max_res is not None and not max_res > 0:
        raise usage("--max-res must be positive")
    if no_cache and cache_dir is not None:
        raise usage("--cache-dir and --no-cache exclude each other")
    cluster = (coordinator, num_processes, process_id)
    if any(v is not None for v in cluster) and not distributed:
        raise usage("--coordinator, --num-processes and --process-id need --distributed")
    if any(v is not None for v in cluster) and any(v is None for v in cluster):
        raise usage("--coordinator, --num-processes and --process-id go together")
    if process_id is not None and process_id >= num_processes:
        raise usage(f"--process-id {process_id} must be below --num-processes {num_processes}")
    try:
        formats = parse_save(save)
    except UsageError as e:
        raise usage(str(e))
    from hrjax.io import COLORMAPS
    if colormap.lower() not in COLORMAPS:
        raise usage(f"unknown --colormap '{colormap}'; choose from {', '.join(COLORMAPS)}")
    from hrjax.pointcloud import PlyOptions
    try:
        ply_options = PlyOptions(fov=fov, near=ply_near, far=ply_far, stride=ply_stride)
    except ValueError as e:
        raise usage(str(e))
    if output.exists() and not output.is_dir():
        raise usage(f"--output {output} exists and is not a folder")
    from hrjax.pipeline.config import BoostConfig
    try:
        from hrjax.bases import get_base
        config = BoostConfig(mode=mode, max_res=math.inf if max_res is None else max_res,
                             output_resolution=output_resolution, max_batch=max_batch, buckets=buckets,
                             receptive_field=get_base(model).receptive_field)
    except ValueError as e:
        raise usage(str(e))

    records_out = sys.stdout
    if distributed:
        # joined before the checks that depend on this host's files, so that a failing process can tell the
        # others (a process that never joins leaves them waiting for --coordinator's initialization timeout)
        records_out = dist.private_stdout()
        try:
            info = dist.initialize(coordinator, num_processes, process_id, platform=device)
        except Exception as e:  # noqa: BLE001 - any failure to join is a setup error
            raise usage(f"--distributed: could not join the multi-process run: {e}")

    # a mistyped path is a usage error before anything is loaded (not a failed image after the weights)
    absent = [str(p) for p in inputs if not p.exists() and not p.is_symlink()]
    if absent:
        raise usage(f"no such file or folder: {', '.join(absent)}")

    wd = _weights_dir(weights_dir)
    missing = missing_weights_message(wd, weights_dir, (model,) if merge_weights else (model, "mergenet"))
    if not missing and merge_weights is not None:
        missing = missing_weights_message(merge_weights, merge_weights, ("mergenet",))
    if missing:
        raise usage(missing)

    notes: list[str] = []  # renamed outputs, earlier outputs left out of the inputs
    jobs = collect_inputs(inputs, recursive=recursive, output=output, notes=notes)
    if not jobs:
        raise usage(f"no images found in {', '.join(map(str, inputs))} (extensions: "
                    f"{' '.join(IMAGE_EXTENSIONS)}{'' if recursive else '; --recursive for sub-folders'})")
    opts = RunOptions(output=output, save=formats, save_whole=save_whole, save_patches=save_patches,
                      overwrite=overwrite, max_pixels=max_pixels, colormap=colormap.lower(), ply=ply_options)

    def emit(rec):
        if json_out:
            print(rec.to_json(), file=records_out, flush=True)

    where = f"process {info.index}/{info.count}: " if info.count > 1 else ""
    if info.count > 1:
        try:
            dist.agree_inputs([f"{j.source}\t{j.key}" for j in jobs], info)
        except dist.InputsDiffer as e:
            raise usage(f"{where}{e}")
        except dist.PeerFailed as e:
            err.print(f"[red]error:[/] {where}{escape(str(e))}; stopping", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_FAILED)
        jobs = dist.shard(jobs, info)
        dist.start_watcher(info)  # from now on a failure elsewhere interrupts this process's work
    reporter = Reporter(err, total=len(jobs), quiet=quiet)
    try:
        with reporter:
            reporter.message(f"{where}{len(jobs)} image(s) -> {output} (mode {mode}, weights {wd})")
            for note in notes:
                reporter.message(f"{where}note: {note}")
            records = run(jobs, opts, config, weights_dir=wd, model=model, merge_weights_dir=merge_weights,
                          platform=device, precision=precision.value, grouped_impl=grouped_conv.value,
                          local_devices=local_devices,
                          cache_dir=False if no_cache else cache_dir, reporter=reporter, emit=emit)
    except UsageError as e:
        raise usage(where + str(e))
    except dist.PeerFailed as e:
        err.print(f"[red]error:[/] {where}{escape(str(e))}; stopping (finished images are kept, run again to "
                  f"resume)", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED)
    except KeyboardInterrupt:
        dist.report_failure(info, "interrupted")
        err.print("[yellow]interrupted[/]; finished images are kept, run again to resume")
        raise typer.Exit(EXIT_INTERRUPTED)
    except BaseException as e:
        dist.report_failure(info, f"{type(e).__name__}: {e}")
        raise
    c = summarize(records)
    if info.count > 1:
        # Every process learns every process's counts, so all of them exit with the same code.
        dist.stop_watcher()  # from here a failure is seen by the exchange itself
        try:
            counts = dist.gather_json(c, info)
        except dist.PeerFailed as e:
            err.print(f"[red]error:[/] {where}{escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_FAILED)
        c = {k: sum(p[k] for p in counts) for k in c}
        n_total = sum(sum(p.values()) for p in counts)
    else:
        n_total = len(records)
    if info.index == 0 and (not quiet or c["failed"]):
        colour = "red" if c["failed"] else "green"
        err.print(f"[{colour}]{n_total} image(s): {c['done']} done, {c['skipped']} skipped, "
                  f"{c['failed']} failed[/]{' over ' + str(info.count) + ' processes' if info.count > 1 else ''} "
                  f"in {fmt_seconds(time.perf_counter() - t0)}", highlight=False)
    raise typer.Exit(EXIT_FAILED if c["failed"] else EXIT_OK)


SaveOption = typer.Option(["png16"], "--save", help="Comma-separated outputs, as hrjax boost: png16 (<stem>.png), "
                          "png8 (<stem>_8bit.png), npy, pfm (the float32 map, not rescaled), color "
                          "(<stem>_color.png)")
ColormapOption = typer.Option("inferno", "--colormap", help="Colour map of --save color (as hrjax boost)")
DeviceOption = typer.Option(None, "--device", case_sensitive=False, show_default=False,
                            help="JAX platform: cpu, gpu or tpu \\[default: JAX's choice]")


def _output_options(output: Path, save: list[str], colormap: str, usage) -> "RunOptions":
    """--output, --save and --colormap checked as hrjax boost checks them."""
    from hrjax.io import COLORMAPS
    from hrjax.run.exits import UsageError
    from hrjax.run.outputs import RunOptions, parse_save

    try:
        formats = parse_save(save)
    except UsageError as e:
        raise usage(str(e))
    if colormap.lower() not in COLORMAPS:
        raise usage(f"unknown --colormap '{colormap}'; choose from {', '.join(COLORMAPS)}")
    if output.exists() and not output.is_dir():
        raise usage(f"--output {output} exists and is not a folder")
    return RunOptions(output=output, save=formats, colormap=colormap.lower())


def _usage_error(msg: str) -> typer.Exit:
    from hrjax.run.exits import EXIT_USAGE
    err.print(f"[red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def _start_jax(device, cache: bool = True):
    """Device and compilation cache, as hrjax boost sets them up; returns the device (None: JAX's default)."""
    from hrjax.run.exits import UsageError
    from hrjax.run.setup import select_device

    try:
        dev = select_device(device.value if device is not None else None)
    except UsageError as e:
        raise _usage_error(str(e))
    if cache:
        from hrjax import compile_cache
        compile_cache.enable(None)
    return dev


MERGE_HELP = ("Merge two depth maps of one image with the merge network (bring your own estimates): LOW gives "
              "the consistent structure, HIGH the detail, as the pipeline's whole-image double estimate.\n\n"
              "LOW and HIGH: .npy, .pfm or a single-channel image (16-bit PNG as hrjax boost writes it), any scale "
              "and shift, inverse depth (bright = near) unless --depth; the same size or at least the same aspect "
              "ratio (within 5 %). Writes <output>/<name>.png (16-bit) and the other --save formats at HIGH's "
              "size: relative inverse depth.")
MERGE_EPILOG = ("Exit codes: 0 written; 1 a map cannot be merged (unreadable, NaN/inf, constant, not positive "
                "with --depth, another image's aspect ratio), nothing written; 2 usage or setup error.")


@app.command("merge", help=MERGE_HELP, epilog=MERGE_EPILOG)
def merge_cmd(
    low: Path = typer.Argument(..., metavar="LOW", show_default=False, help="Low-resolution estimate"),
    high: Path = typer.Argument(..., metavar="HIGH", show_default=False, help="High-resolution estimate"),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (created if missing)"),
    name: Optional[str] = typer.Option(None, "--name", show_default=False,
                                       help="Stem of the output files \\[default: HIGH's stem]"),
    depth: bool = typer.Option(False, "--depth", help="LOW and HIGH are depth (larger = farther, values > 0): "
                               "inverted (1/d) first, since the merge net expects inverse depth"),
    save: list[str] = SaveOption,
    colormap: str = ColormapOption,
    weights_dir: Optional[Path] = WeightsDir,
    merge_weights: Optional[Path] = typer.Option(None, "--merge-weights", help="Weights folder holding the merge "
                                                 "network to use instead (e.g. one exported by train-merge)"),
    device: Optional[Platform] = DeviceOption,
):
    from hrjax.pipeline.merge_estimates import EstimateError
    from hrjax.run.exits import EXIT_FAILED, UsageError
    from hrjax.run.merge import MergeJob, merge_files, output_files, read_pair
    from hrjax.run.setup import missing_weights_message

    opts = _output_options(output, save, colormap, _usage_error)
    absent = [str(p) for p in (low, high) if not p.is_file()]
    if absent:
        raise _usage_error(f"no such file: {', '.join(absent)}")
    stem = name if name is not None else high.stem
    if not stem or "/" in stem or os.sep in stem or stem.strip(".") == "":
        raise _usage_error(f"--name {stem!r}: a file stem (no folders)")
    job = MergeJob(low, high, stem, depth)
    try:
        output_files(job, opts)
    except UsageError as e:
        raise _usage_error(str(e))
    wd = merge_weights if merge_weights is not None else _weights_dir(weights_dir)
    missing = missing_weights_message(wd, merge_weights if merge_weights is not None else weights_dir,
                                      ("mergenet",))
    if missing:
        raise _usage_error(missing)
    try:
        maps = read_pair(job)
    except EstimateError as e:
        err.print(f"[red]cannot merge:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED)
    dev = _start_jax(device)
    import contextlib

    import jax

    from hrjax.weights.load import load_model
    from hrjax.weights.store import WeightsError
    with jax.default_device(dev) if dev is not None else contextlib.nullcontext():
        try:
            merge_net = load_model("mergenet", wd)
        except WeightsError as e:
            raise _usage_error(str(e))
        written = merge_files(job, opts, *maps, merge_net)
    for w in written:
        out.print(str(w), highlight=False, markup=False, soft_wrap=True)


PREDICT_HELP = ("One plain forward pass of a base network per image, no boosting (to compare with hrjax boost): "
                "at the model's native input rule (midas_v21: long side 384, multiples of 32; leres_res101: "
                "448 x 448; dav2_*: short side 518, multiples of 14), resized back to the image size as its "
                "reference or official code does.\n\n"
                "Inputs, output names, --save formats and the resume rule as hrjax boost (records in "
                "<output>/.hrjax/). midas_v21 and dav2_* give inverse depth (bright = near), leres_res101 depth.")


@app.command("predict", help=PREDICT_HELP, epilog=BOOST_EPILOG)
def predict_cmd(
    inputs: list[Path] = typer.Argument(..., metavar="IMAGE...", show_default=False,
                                        help="Image files and/or folders of images"),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (created if missing)"),
    model: BaseModel = typer.Option(DEFAULT_BASE, "--model", case_sensitive=False, help="Base depth network"),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also scan sub-folders of folder inputs"),
    save: list[str] = SaveOption,
    colormap: str = ColormapOption,
    weights_dir: Optional[Path] = WeightsDir,
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images already done with the same model"),
    device: Optional[Platform] = DeviceOption,
    grouped_conv: GroupedConv = typer.Option("auto", "--grouped-conv", case_sensitive=False,
                                             envvar="HRJAX_GROUPED_CONV", help="As hrjax boost --grouped-conv "
                                             "(MiDaS, LeReS); results do not depend on it"),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Larger images fail with a reason"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only failures"),
):
    import contextlib
    from dataclasses import replace

    from hrjax.run.exits import EXIT_FAILED, EXIT_OK
    from hrjax.run.folder import summarize
    from hrjax.run.inputs import collect_inputs
    from hrjax.run.predict import run_predict
    from hrjax.run.records import predict_identity
    from hrjax.run.setup import missing_weights_message

    model = model.value
    opts = replace(_output_options(output, save, colormap, _usage_error), overwrite=overwrite,
                   max_pixels=max_pixels)
    absent = [str(p) for p in inputs if not p.exists() and not p.is_symlink()]
    if absent:
        raise _usage_error(f"no such file or folder: {', '.join(absent)}")
    wd = _weights_dir(weights_dir)
    missing = missing_weights_message(wd, weights_dir, (model,))
    if missing:
        raise _usage_error(missing)
    notes: list[str] = []
    jobs = collect_inputs(inputs, recursive=recursive, output=output, notes=notes)
    if not jobs:
        raise _usage_error(f"no images found in {', '.join(map(str, inputs))} (extensions: "
                           f"{' '.join(IMAGE_EXTENSIONS)}{'' if recursive else '; --recursive for sub-folders'})")
    for note in notes:
        err.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    ctx = contextlib.ExitStack()

    def load():
        import jax

        from hrjax.bases import get_base
        from hrjax.pipeline.networks import configured_graphdef
        from hrjax.pipeline.single_pass import single_pass
        from hrjax.weights.load import load_model
        from hrjax.weights.store import WeightsError

        dev = _start_jax(device)
        if dev is not None:
            ctx.enter_context(jax.default_device(dev))
        try:
            graphdef, state = load_model(model, wd)
        except WeightsError as e:
            raise _usage_error(str(e))
        # a network without grouped convolutions (DAv2) keeps its graphdef (layers.configure)
        graphdef = configured_graphdef(graphdef, state, grouped_impl=grouped_conv.value)
        base = get_base(model)
        return lambda image: single_pass(base, graphdef, state, image)

    def log(rec):
        if rec.status == "failed":
            err.print(f"[red]failed[/] {escape(rec.input)}: {escape(rec.error or '')}", highlight=False)
        elif not quiet:
            shape = "x".join(str(s) for s in (rec.input_shape or [])[::-1])
            what = f"{shape}, {rec.timings.get('wall', 0.0):.1f} s" if rec.status == "done" else "already done"
            err.print(f"[green]{rec.status}[/] {escape(rec.input)} -> {escape(rec.key)}: {what}", highlight=False)

    with ctx:
        records = run_predict(jobs, opts, predict_identity(weights_dir=wd, model=model), load, log)
    c = summarize(records)
    if not quiet or c["failed"]:
        colour = "red" if c["failed"] else "green"
        err.print(f"[{colour}]{len(records)} image(s): {c['done']} done, {c['skipped']} skipped, "
                  f"{c['failed']} failed[/] ({model} -> {escape(str(output))})", highlight=False)
    raise typer.Exit(EXIT_FAILED if c["failed"] else EXIT_OK)


def _register_subcommands() -> None:
    """Commands that live with their subsystems (evaluation, training)."""
    from hrjax.eval.cli import register as register_evaluate
    from hrjax.serve.cli import register as register_serve
    from hrjax.train.cli import register as register_train

    register_evaluate(app)
    register_train(app)
    register_serve(app)


_register_subcommands()


def main():
    from hrjax.cpu_backend import use_xla_convolutions
    from hrjax.host_memory import reuse_freed_buffers
    reuse_freed_buffers()  # before JAX starts its threads (see hrjax.host_memory)
    use_xla_convolutions()  # before JAX starts its CPU backend (see hrjax.cpu_backend)
    app()


if __name__ == "__main__":
    main()
