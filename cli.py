"""The ``hrjax`` command line (Typer). Configuration objects are built here, at the edge, and nowhere else."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="High-resolution monocular depth in JAX (Boosting Monocular Depth, CVPR 2021).")
weights_app = typer.Typer(no_args_is_help=True, help="Download, convert and list model weights.")
app.add_typer(weights_app, name="weights")

err = Console(stderr=True)
out = Console()

WeightsDir = typer.Option(None, "--weights-dir", help="Converted weights folder "
                          "[default: $HRJAX_WEIGHTS_DIR, else weights/ of the checkout]")


def _weights_dir(value: Optional[Path]) -> Path:
    from hrjax.weights.store import default_weights_dir
    return value if value is not None else default_weights_dir()


def _model_names() -> list[str]:
    from hrjax.weights.catalog import MODELS
    return list(MODELS)


@weights_app.command("convert")
def weights_convert(
    model: str = typer.Option(..., "--model", help="Model name: midas_v21 or mergenet"),
    source: Path = typer.Option(..., "--source", help="The official PyTorch checkpoint file"),
    weights_dir: Optional[Path] = WeightsDir,
):
    """Convert an official PyTorch checkpoint into the hrjax weights store (strictly checked)."""
    from convert.checkpoint import convert_checkpoint
    from hrjax.weights.keys import CheckpointMismatch

    if model not in _model_names():
        err.print(f"[red]unknown model '{model}'[/]; known: {', '.join(_model_names())}")
        raise typer.Exit(2)
    try:
        with err.status(f"converting {source} ..."):
            dest = convert_checkpoint(model, source, _weights_dir(weights_dir))
    except (CheckpointMismatch, FileNotFoundError, ValueError, RuntimeError) as e:
        err.print(f"[red]conversion failed:[/] {e}", markup=True, highlight=False)
        raise typer.Exit(1)
    out.print(f"converted {model} -> {dest}")


@weights_app.command("list")
def weights_list(weights_dir: Optional[Path] = WeightsDir):
    """Show the converted models installed in the weights folder."""
    from hrjax.weights.store import list_installed

    wd = _weights_dir(weights_dir)
    installed = list_installed(wd)
    table = Table(title=f"hrjax weights in {wd}")
    for col in ("model", "source", "source sha256", "converter", "tensors"):
        table.add_column(col)
    for i in installed:
        table.add_row(i.model, i.source_name, i.source_sha256, str(i.converter_version), str(i.n_tensors))
    out.print(table)
    missing = [m for m in _model_names() if m not in {i.model for i in installed}]
    if missing:
        out.print(f"not installed: {', '.join(missing)} (hrjax weights download)")


@weights_app.command("download")
def weights_download(
    model: Optional[list[str]] = typer.Option(None, "--model", help="Model(s) to fetch [default: all]"),
    weights_dir: Optional[Path] = WeightsDir,
    keep_source: bool = typer.Option(False, "--keep-source", help="Keep the downloaded PyTorch file"),
):
    """Download the official checkpoints (sha256-checked, mirror fall-backs) and convert them."""
    from hrjax.weights.download import DownloadError, download_and_convert
    from hrjax.weights.keys import CheckpointMismatch

    wd = _weights_dir(weights_dir)
    failed = False
    for name in model or _model_names():
        if name not in _model_names():
            err.print(f"[red]unknown model '{name}'[/]; known: {', '.join(_model_names())}")
            raise typer.Exit(2)
        try:
            dest = download_and_convert(name, wd, keep_source=keep_source, progressbar=sys.stderr.isatty(),
                                        log=lambda m: err.print(m, highlight=False))
            out.print(f"{name}: installed in {dest}")
        except (DownloadError, CheckpointMismatch, RuntimeError, ValueError) as e:
            err.print(f"[red]{name}: failed[/]\n{e}", highlight=False)
            failed = True
    if failed:
        raise typer.Exit(1)


@app.command("info")
def info(weights_dir: Optional[Path] = WeightsDir):
    """JAX version, devices, installed weights and the compilation cache location."""
    import jax

    from hrjax.weights.store import list_installed

    wd = _weights_dir(weights_dir)
    out.print(f"jax {jax.__version__}, backend {jax.default_backend()}")
    for d in jax.devices():
        out.print(f"  device {d.id}: {d.device_kind} ({d.platform})")
    installed = list_installed(wd)
    out.print(f"weights dir {wd}: {', '.join(i.model for i in installed) or 'none installed'}")
    from hrjax.compile_cache import cache_dir
    out.print(f"compilation cache: {cache_dir()}")


def main():
    app()


if __name__ == "__main__":
    main()
