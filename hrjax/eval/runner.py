"""Evaluating folders of estimates against a dataset, and producing estimates with the pipeline first.

Random ORD pairs come from ``numpy.random.default_rng([seed, crc32(name)])`` per GT image: the same seed gives
the same pairs for an image whatever other images are evaluated, and every method (``--pred``, the boosted and
the base estimates of ``--run``) is scored on the same superpixels and pairs of a GT image.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hrjax.eval.datasets import Sample, find_estimate, read_estimate
from hrjax.eval.metrics import (
    METRIC_NAMES,
    ImageMetrics,
    evaluate_normalised,
    mean_metrics,
    normalise_gt,
    sample_points,
)
from hrjax.eval.superpixels import COMPACTNESS, N_SEGMENTS, SLIC_ZERO

# An estimator maps an image ((H, W, 3) RGB float64 in [0, 1]) to an (H, W) relative inverse depth.
Estimator = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[str], None]


def image_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


@dataclass
class EvalReport:
    methods: list[str]
    names: list[str] = field(default_factory=list)                              # GT images, in order
    per_image: dict[str, dict[str, ImageMetrics]] = field(default_factory=dict)  # method -> name -> metrics
    missing: dict[str, list[str]] = field(default_factory=dict)                 # method -> names w/o estimate
    errors: dict[str, dict[str, str]] = field(default_factory=dict)             # method -> name -> message

    def mean(self, method: str) -> dict[str, float]:
        return mean_metrics(list(self.per_image.get(method, {}).values()))

    def to_json(self, **extra) -> dict:
        def clean(v):
            return None if isinstance(v, float) and math.isnan(v) else v

        return {
            **extra,
            "metrics": list(METRIC_NAMES),
            "methods": {
                m: {
                    "per_image": {n: {k: clean(v) for k, v in r.to_dict().items()}
                                  for n, r in self.per_image.get(m, {}).items()},
                    "mean": {k: clean(v) for k, v in self.mean(m).items()},
                    "images": len(self.per_image.get(m, {})),
                    "missing": self.missing.get(m, []),
                    "errors": self.errors.get(m, {}),
                }
                for m in self.methods
            },
        }


def evaluate_folders(samples: list[Sample], pred_dirs: dict[str, Path], *, superpixel_scale: float,
                     seed: int = 0, n_segments: int = N_SEGMENTS, compactness: float = COMPACTNESS,
                     slic_zero: bool = SLIC_ZERO, progress: Progress | None = None) -> EvalReport:
    """Score every method's estimates (``pred_dirs``: method -> folder of ``<name>.png``) on ``samples``."""
    report = EvalReport(list(pred_dirs))
    say = progress or (lambda _: None)
    for m in report.methods:
        report.per_image[m], report.missing[m], report.errors[m] = {}, [], {}
    for s in samples:
        report.names.append(s.name)
        found = {}
        for m, d in pred_dirs.items():
            p = find_estimate(d, s.name)
            if p is None:
                report.missing[m].append(s.name)
            else:
                found[m] = p
        if not found:
            continue
        say(s.name)
        try:
            gt = normalise_gt(s.load_gt(), s.gt_type)
            pts = sample_points(gt, superpixel_scale, image_rng(seed, s.name), n_segments=n_segments,
                                compactness=compactness, slic_zero=slic_zero)
        except (ValueError, OSError) as e:
            for m in found:
                report.errors[m][s.name] = f"GT: {e}"
            continue
        for m, p in found.items():
            try:
                report.per_image[m][s.name] = evaluate_normalised(gt, read_estimate(p), pts)
            except (ValueError, OSError) as e:
                report.errors[m][s.name] = str(e)
    return report


def write_estimates(samples: list[Sample], estimators: dict[str, Estimator], out_dir: Path, *,
                    progress: Progress | None = None) -> tuple[dict[str, Path], list[str]]:
    """Run each estimator on each sample's image and write ``out_dir/<method>/<name>.png`` (16-bit, the
    reference's quantisation). Returns the folders per method and the names that have no image."""
    from hrjax.io import read_image, write_png16

    say = progress or (lambda _: None)
    dirs = {m: Path(out_dir) / m for m in estimators}
    no_image = []
    for s in samples:
        if s.image_path is None:
            no_image.append(s.name)
            continue
        image = read_image(s.image_path)
        for m, est in estimators.items():
            say(f"{m}: {s.name}")
            depth = np.asarray(est(image), np.float32)
            if depth.shape != image.shape[:2]:
                raise ValueError(f"estimator {m!r} returned {depth.shape} for a {image.shape[:2]} image")
            write_png16(dirs[m] / f"{s.name}.png", depth)
    return dirs, no_image


def pipeline_estimators(weights_dir: Path | None = None, *, mode: str = "final",
                        max_res: float = math.inf) -> dict[str, Estimator]:
    """The hook ``evaluate --run`` uses: the boosted result (``boost`` with ``BoostConfig(mode=mode)``) and the
    base network alone at its native resolution (one base-network pass at ``receptive_field``, resized back to the
    image and min-maxed: ``image_estimates``, SPEC 3.2)."""
    from hrjax.pipeline.boost import boost
    from hrjax.pipeline.config import BoostConfig
    from hrjax.pipeline.estimates import image_estimates
    from hrjax.pipeline.image import to_rgb_float64
    from hrjax.pipeline.networks import load_models

    models = load_models(weights_dir)
    cfg = BoostConfig(mode=mode, max_res=max_res)

    def boosted(image: np.ndarray) -> np.ndarray:
        return boost(models, image, cfg).depth

    def base(image: np.ndarray) -> np.ndarray:
        return image_estimates(models.base, models.base_graphdef, models.base_state, to_rgb_float64(image)[None],
                               cfg.receptive_field, batcher=models.batcher(cfg.max_batch),
                               max_net_input=cfg.max_net_input)[0]

    return {"base": base, f"boost-{mode}": boosted}
