"""``hrjax serve``: the command that starts the local web page (options checked and ServeConfig built here)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Optional

import typer

from hrjax.io import DEFAULT_MAX_PIXELS
from hrjax.cli_choices import GroupedConv, Platform


def offered_models(weights_dir: Path, merge_weights_dir: Path | None) -> tuple[str, ...]:
    """The bases installed in ``weights_dir`` when a merge network is there too (registry order); else ()."""
    from hrjax.bases import BASES
    from hrjax.weights.store import list_installed

    installed = {i.model for i in list_installed(weights_dir)}
    merge = installed if merge_weights_dir is None else {i.model for i in list_installed(merge_weights_dir)}
    if "mergenet" not in merge:
        return ()
    return tuple(b for b in BASES if b in installed)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 = every interface: "
                                 "the page has no login, anyone who reaches it can use the machine)"),
        port: int = typer.Option(7860, "--port", min=0, max=65535, help="Port (0 = any free one)"),
        weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Converted weights folder "
                                                   "\\[default: $HRJAX_WEIGHTS_DIR, else weights/ of the checkout]"),
        merge_weights: Optional[Path] = typer.Option(None, "--merge-weights", help="Weights folder holding the "
                                                     "merge network to use instead"),
        max_upload_mb: float = typer.Option(64.0, "--max-upload-mb", min=0.001, help="Largest upload accepted"),
        max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Larger images are refused "
                                       "(read from the header before decoding)"),
        queue_size: int = typer.Option(8, "--queue", min=1, help="Most jobs waiting or running; more uploads are "
                                       "refused until one finishes"),
        device: Optional[Platform] = typer.Option(None, "--device", case_sensitive=False, show_default=False,
                                                  help="JAX platform \\[default: JAX's choice]"),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Persistent JAX compilation cache",
                                                 show_default=False),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the persistent compilation cache"),
        fov: float = typer.Option(60.0, "--fov", help="Point clouds: horizontal field of view in degrees"),
        ply_near: float = typer.Option(1.0, "--ply-near", help="Point clouds: depth of the nearest value"),
        ply_far: float = typer.Option(10.0, "--ply-far", help="Point clouds: depth of the farthest value"),
        ply_stride: int = typer.Option(1, "--ply-stride", min=1, help="Point clouds: every N-th pixel"),
        grouped_conv: GroupedConv = typer.Option("auto", "--grouped-conv", case_sensitive=False,
                                                 envvar="HRJAX_GROUPED_CONV", help="As `hrjax boost --grouped-conv`"),
    ):
        """A local web page: upload images, pick the base network, mode, max res and precision, watch the
        progress, compare the plain and boosted estimates, download 16-bit PNG, npy and PLY. One job at a time."""
        from rich.console import Console
        from rich.markup import escape

        from hrjax.pointcloud import PlyOptions
        from hrjax.run.setup import missing_weights_message
        from hrjax.serve.config import ServeConfig
        from hrjax.serve.http import make_server
        from hrjax.weights.store import default_weights_dir

        err = Console(stderr=True, soft_wrap=True)

        def usage(msg: str) -> typer.Exit:
            err.print(f"[red]error:[/] {escape(msg)}", highlight=False)
            return typer.Exit(2)

        if no_cache and cache_dir is not None:
            raise usage("--cache-dir and --no-cache exclude each other")
        try:
            ply = PlyOptions(fov=fov, near=ply_near, far=ply_far, stride=ply_stride)
        except ValueError as e:
            raise usage(str(e))
        wd = weights_dir if weights_dir is not None else default_weights_dir()
        models = offered_models(wd, merge_weights)
        if not models:
            need = ("midas_v21",) if merge_weights else ("midas_v21", "mergenet")
            msg = missing_weights_message(wd, weights_dir, need)
            if merge_weights is not None and msg is None:
                msg = missing_weights_message(merge_weights, merge_weights, ("mergenet",))
            raise usage(msg or f"no base network installed in {wd}")
        config = ServeConfig(weights_dir=wd, host=host, port=port, models=models,
                             max_upload_bytes=int(max_upload_mb * (1 << 20)), max_pixels=max_pixels,
                             queue_size=queue_size, merge_weights_dir=merge_weights,
                             device=device.value if device is not None else None,
                             cache_dir=False if no_cache else cache_dir, ply=ply, grouped_impl=grouped_conv.value)
        try:
            server = make_server(config)
        except OSError as e:
            raise usage(f"cannot listen on {host}:{port}: {e}")
        h, p = server.server_address[:2]
        if not is_loopback(host):
            err.print(f"[yellow]warning:[/] listening on {escape(host)}: the page has no login, anyone who can "
                      f"reach this address can run jobs on this machine", highlight=False)
        err.print(f"hrjax serve: http://{'[' + h + ']' if ':' in h else h}:{p}/  (models: {', '.join(models)}; "
                  f"Ctrl-C stops)", highlight=False, markup=False)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
