"""The ``hrjax evaluate`` command. ``register(app)`` adds it to a Typer app.

``register(app, estimators_factory=...)`` is the hook for ``--run``: a callable
``(weights_dir, mode=..., max_res=...) -> {method name: estimator}`` where an estimator maps an RGB float64
image to an (H, W) relative inverse depth. The default, :func:`hrjax.eval.runner.pipeline_estimators`, gives
``base`` (MiDaS alone at its native resolution) and ``boost-<mode>`` (the full method).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Callable, Optional

import typer

from hrjax.eval.runner import Estimator

EstimatorsFactory = Callable[..., dict[str, Estimator]]

COLUMNS = (("ord", "ORD"), ("d3r", "D3R"), ("rmse", "RMSE"), ("delta1_err", "δ>1.25"),
           ("delta2_err", "δ>1.25²"), ("delta3_err", "δ>1.25³"), ("abs_rel", "AbsRel"), ("sq_rel", "SqRel"),
           ("log10", "log10"))


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def register(app: typer.Typer, *, estimators_factory: EstimatorsFactory | None = None) -> None:
    """Add the ``evaluate`` command to ``app``."""

    @app.command("evaluate")
    def evaluate(
        gt: Path = typer.Option(..., "--gt", help="GT folder (dataset root for middlebury2014 / ibims1)"),
        pred: Optional[Path] = typer.Option(None, "--pred", help="Folder of estimates <name>.png (16-bit)"),
        dataset: str = typer.Option("generic", "--dataset", help="middlebury2014, ibims1 or generic"),
        gt_type: str = typer.Option("disparity", "--gt-type",
                                    help="generic only: the GT maps hold disparity or depth"),
        gt_format: str = typer.Option("auto", "--gt-format", help="generic only, when a stem has several GT "
                                      "files (e.g. a folder of `hrjax boost --save png16,npy`): auto (pfm, then "
                                      "npy, then png: unquantised first), pfm, npy or png"),
        images: Optional[Path] = typer.Option(None, "--images",
                                              help="generic --run: folder of the RGB images <stem>.png|jpg"),
        seed: int = typer.Option(0, "--seed", help="Seed of the random ORD pairs"),
        superpixel_scale: Optional[float] = typer.Option(
            None, "--superpixel-scale", help="GT scale for the superpixels (default: 0.2 for middlebury2014, else 1)"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON here"),
        run: bool = typer.Option(False, "--run", help="First estimate every image with the base network and "
                                 "with boosting, then evaluate both (and --pred if given)"),
        mode: str = typer.Option("final", "--mode", help="--run: boosting mode (final, r20, r0)"),
        max_res: float = typer.Option(math.inf, "--max-res", help="--run: cap on the boosted target size"),
        weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="--run: converted weights"),
        keep_estimates: Optional[Path] = typer.Option(
            None, "--keep-estimates", help="--run: write the estimates here (<method>/<name>.png), not to a "
            "temporary folder"),
        ibims_masks: bool = typer.Option(True, "--ibims-masks/--no-ibims-masks",
                                         help="ibims1: zero the GT where mask_invalid or mask_transp is 0"),
    ):
        """Score depth estimates with the paper's metrics (ORD, D3R, RMSE, delta error rates, AbsRel...)."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        from hrjax.console import print_table

        from hrjax.eval.datasets import DATASETS, SUPERPIXEL_SCALE, DatasetError, load_dataset
        from hrjax.eval.metrics import GT_TYPES
        from hrjax.eval.runner import evaluate_folders, pipeline_estimators, write_estimates

        # soft_wrap: no line breaks inside paths and names in a log file (see hrjax.console)
        out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)

        def fail(msg: str, code: int = 2):
            err.print(f"[red]error:[/] {escape(msg)}", highlight=False)
            raise typer.Exit(code)

        if dataset not in DATASETS:
            fail(f"unknown --dataset {dataset!r}; known: {', '.join(DATASETS)}")
        if gt_type not in GT_TYPES:
            fail(f"unknown --gt-type {gt_type!r}; known: {', '.join(GT_TYPES)}")
        if pred is None and not run:
            fail("give --pred DIR, --run, or both")
        if pred is not None and not pred.is_dir():
            fail(f"--pred is not a folder: {pred}")
        scale = SUPERPIXEL_SCALE[dataset] if superpixel_scale is None else superpixel_scale
        if not 0 < scale <= 1:
            fail(f"--superpixel-scale must be in (0, 1], got {scale}")
        try:
            samples = load_dataset(dataset, gt, gt_type=gt_type, images_dir=images, use_masks=ibims_masks,
                                   gt_format=gt_format)
        except DatasetError as e:
            fail(str(e))

        pred_dirs: dict[str, Path] = {}
        if pred is not None:
            pred_dirs["pred"] = pred
        tmp = None
        try:
            if run:
                est_root = keep_estimates
                if est_root is None:
                    tmp = tempfile.TemporaryDirectory(prefix="hrjax-eval-")
                    est_root = Path(tmp.name)
                factory = estimators_factory or pipeline_estimators
                try:
                    with err.status("loading models ..."):
                        estimators = factory(weights_dir, mode=mode, max_res=max_res)
                    with err.status("estimating ...") as st:
                        dirs, no_image = write_estimates(samples, estimators, est_root,
                                                         progress=lambda s: st.update(f"estimating {s} ..."))
                except (OSError, ValueError, RuntimeError) as e:   # WeightsError, ImageReadError, bad config
                    fail(f"--run failed: {e}", 1)
                if no_image:
                    err.print(f"[yellow]no image to run on for {len(no_image)} GT map(s):[/] "
                              f"{escape(', '.join(no_image[:10]))}{' ...' if len(no_image) > 10 else ''}",
                              highlight=False)
                pred_dirs.update(dirs)
            with err.status("evaluating ...") as st:
                report = evaluate_folders(samples, pred_dirs, superpixel_scale=scale, seed=seed,
                                          progress=lambda s: st.update(f"evaluating {s} ..."))
        finally:
            if tmp is not None:
                tmp.cleanup()

        multi = len(report.methods) > 1
        table = Table(title=escape(f"{dataset}: {gt} (seed {seed}, superpixel scale {scale:g})"))
        table.add_column("image")
        if multi:
            table.add_column("method")
        for _, title in COLUMNS:
            table.add_column(title, justify="right")
        for name in report.names:
            for m in report.methods:
                r = report.per_image[m].get(name)
                if r is not None:
                    table.add_row(escape(name), *([escape(m)] if multi else []),
                                  *(_fmt(getattr(r, k)) for k, _ in COLUMNS))
        table.add_section()
        for m in report.methods:
            mean = report.mean(m)
            n = len(report.per_image[m])
            table.add_row(f"mean ({n})", *([escape(m)] if multi else []), *(_fmt(mean[k]) for k, _ in COLUMNS),
                          style="bold")
        print_table(out, table)

        for m in report.methods:
            if report.missing[m]:
                miss = report.missing[m]
                err.print(f"[yellow]{escape(m)}: no estimate for {len(miss)} image(s):[/] "
                          f"{escape(', '.join(miss[:10]))}{' ...' if len(miss) > 10 else ''}", highlight=False)
            for name, msg in report.errors[m].items():
                err.print(f"[red]{escape(m)}: {escape(name)}:[/] {escape(str(msg))}", highlight=False)
        if json_out is not None:
            doc = report.to_json(dataset=dataset, gt=str(gt), seed=seed, superpixel_scale=scale,
                                 names=report.names)
            from hrjax.io import atomic_write_bytes
            atomic_write_bytes(json_out, (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode())
            out.print(f"wrote {json_out}", markup=False, highlight=False)
        if not any(report.per_image[m] for m in report.methods):
            fail("nothing was evaluated", 1)
