"""``hrjax train-merge`` and ``hrjax make-merge-dataset``: ``register(app)`` adds them to a Typer app."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

# soft_wrap: no line breaks inside paths in a log file (see hrjax.console)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the training commands to ``app`` (the ``hrjax`` Typer application)."""
    app.command("train-merge")(train_merge)
    app.command("make-merge-dataset")(make_merge_dataset)


def _progress():
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=err, transient=False)


def train_merge(
    data: Path = typer.Option(..., "--data", help="Dataset folder: DATA/train/{outer,inner,gtfake}/*.png "
                              "(what make-merge-dataset writes)"),
    out_dir: Path = typer.Option(..., "--out", help="Output folder: checkpoints/, train_log.jsonl, weights/"),
    epochs: int = typer.Option(200, "--epochs", help="Total epochs (the reference: 100 + 100 decay)"),
    decay_epochs: Optional[int] = typer.Option(None, "--decay-epochs",
                                               help="Epochs of linear lr decay at the end (default: half of --epochs)"),
    batch: int = typer.Option(1, "--batch", help="Batch size (the reference: 1); sharded over local devices"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out"),
    save_every: int = typer.Option(2000, "--save-every", help="Checkpoint every N steps (and at the end)"),
    keep: int = typer.Option(3, "--keep", help="Checkpoints to keep"),
    log_every: int = typer.Option(100, "--log-every", help="Write a loss record every N steps"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop at this global step "
                                            "(the lr schedule still spans --epochs; continue with --resume)"),
    workers: int = typer.Option(4, "--workers", help="Loader threads"),
    seed: int = typer.Option(0, "--seed", help="Root seed (init of both nets and the data order)"),
    export_dir: Optional[Path] = typer.Option(None, "--export-dir",
                                              help="Weights folder for the trained generator (default: OUT/weights)"),
    export_name: str = typer.Option("mergenet", "--export-name",
                                    help="Model name of the export (load_model needs a catalog name)"),
    lr_g: float = typer.Option(1e-4, "--lr-g", help="Generator learning rate"),
    lr_d: float = typer.Option(2e-6, "--lr-d", help="Discriminator learning rate"),
    ngf: int = typer.Option(64, "--ngf", help="Generator width (64 = the merge net)"),
    num_downs: int = typer.Option(10, "--num-downs", help="Generator depth (10 = unet_1024)"),
    ndf: int = typer.Option(64, "--ndf", help="Discriminator width"),
    net_size: int = typer.Option(1024, "--net-size", help="Maps are upsampled to this size for the networks"),
    gf_radius: int = typer.Option(64, "--gf-radius", help="Guided-filter radius of the loader"),
):
    """Train the merge network (pix2pix unet_1024 + PatchGAN), as the paper's authors did."""
    import jax

    from hrjax.train.checkpoint import loadable_name
    from hrjax.train.data import DatasetError
    from hrjax.train.loop import TrainError, train
    from hrjax.train.nets import NetConfig
    from hrjax.train.step import TrainConfig

    try:
        cfg = TrainConfig(net=NetConfig(ngf=ngf, num_downs=num_downs, ndf=ndf), net_size=net_size,
                          gf_radius=gf_radius, lr_g=lr_g, lr_d=lr_d, epochs=epochs,
                          decay_epochs=epochs // 2 if decay_epochs is None else decay_epochs,
                          batch_size=batch, seed=seed)
    except ValueError as e:
        err.print(f"[red]invalid options:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(2)
    if not loadable_name(export_name):
        err.print(f"[yellow]note:[/] '{escape(export_name)}' is not a model name the catalog knows; "
                  "hrjax.weights.load.load_model will not load the export under that name", highlight=False)
    err.print(f"jax {jax.__version__} on {jax.local_device_count()} {jax.default_backend()} device(s)")
    with _progress() as bar:
        task = bar.add_task("training", total=None, info="")

        def progress(step, total, rec):
            bar.update(task, completed=step, total=total)
            if rec is not None:
                bar.update(task, info=f"ep {rec['epoch']} G_L1 {rec['G_L1']:.2f} G_GAN {rec['G_GAN']:.3f} "
                                      f"D {rec['D_real']:.3f}/{rec['D_fake']:.3f}")
        try:
            result = train(data, out_dir, cfg, resume=resume, save_every=save_every, keep=keep, log_every=log_every,
                           workers=workers, max_steps=max_steps, export_dir=export_dir, export_name=export_name,
                           progress=progress)
        except (TrainError, DatasetError, FileNotFoundError) as e:
            err.print(f"[red]training failed:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(1)
    if result.resumed_from is not None:
        out.print(f"resumed from step {result.resumed_from}", markup=False, highlight=False)
    out.print(f"trained {result.step}/{result.total_steps} steps ({result.steps_per_epoch} per epoch); "
              f"log: {Path(out_dir) / 'train_log.jsonl'}", markup=False, highlight=False)
    if result.exported is not None:
        out.print(f"generator exported to {result.exported}", markup=False, highlight=False)


def make_merge_dataset(
    images: Path = typer.Option(..., "--images", help="Folder of RGB images"),
    out_dir: Path = typer.Option(..., "--out", help="Output dataset folder (train/, test/, whole_*_est/)"),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Optional ground-truth folder (same stems, relative "
                                      "inverse depth) used as the target instead of the high-res estimate"),
    base_model: str = typer.Option("midas_v21", "--base-model", help="Base depth network (a converted model)"),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Converted weights folder "
                                               "(default: $HRJAX_WEIGHTS_DIR, else weights/ of the checkout)"),
    scales: str = typer.Option("middlebury", "--scales", help="Crop scales: a preset (middlebury, ibims1) or "
                               "'blsize:stride,...' (crop side = 2*blsize)"),
    test_last: int = typer.Option(0, "--test-last", help="The last N images (by name) go to test/ "
                                  "(the reference: 2 for Middlebury)"),
    low_res: int = typer.Option(384, "--low-res", help="Resolution of the whole-image 'outer' estimate"),
    high_res: int = typer.Option(672, "--high-res", help="Resolution of the 'gtfake' and 'inner' estimates"),
    crop_size: int = typer.Option(672, "--crop-size", help="Side of the written crops"),
    max_batch: int = typer.Option(4, "--max-batch", help="Most crops per network call"),
    grouped_conv: str = typer.Option("auto", "--grouped-conv", envvar="HRJAX_GROUPED_CONV",
                                     help="auto, native, split, packed or kernel: as `hrjax boost --grouped-conv`"),
):
    """Build the merge-net training set from RGB images with a base depth network."""
    from hrjax.bases import get_base
    from hrjax.pipeline.networks import configured_graphdef
    from hrjax.train.make_dataset import DatasetConfig, make_merge_dataset as make, parse_scales
    from hrjax.weights.load import load_model
    from hrjax.weights.store import WeightsError, default_weights_dir

    try:
        cfg = DatasetConfig(scales=parse_scales(scales), low_res=low_res, high_res=high_res, crop_size=crop_size,
                            test_last=test_last, max_batch=max_batch)
    except ValueError as e:
        err.print(f"[red]invalid options:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(2)
    try:
        graphdef, state = load_model(get_base(base_model).name,
                                     weights_dir if weights_dir is not None else default_weights_dir())
        graphdef = configured_graphdef(graphdef, state, grouped_impl=grouped_conv)
    except (WeightsError, KeyError, ValueError) as e:
        err.print(f"[red]cannot load the base model:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(1)
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def progress(stage, done, total):
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, info="")
            bar.update(tasks[stage], completed=done, total=total)
        try:
            counts = make(images, out_dir, graphdef, state, cfg, gt_dir=gt, progress=progress,
                          base=base_model)
        except (FileNotFoundError, ValueError) as e:
            err.print(f"[red]dataset generation failed:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(1)
    out.print(f"wrote {counts['train']} train and {counts['test']} test crops to {out_dir}", markup=False,
              highlight=False)
