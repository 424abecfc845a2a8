"""A boost result in the reference goldens' key layout (golden README 5), and its comparison with a golden.

Shared by the golden tests (tests/test_pipeline_golden.py) and the accelerator check (bench/device_check.py),
so both judge a run by the same keys and by the tolerance table of the golden folder's own ``compare.py``
(golden README 6), loaded from its file.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from hrjax.io import quantize_16bit, read_image

RUN_METADATA = {"image_path", "mode", "options_json", "input_shape"}  # golden keys that describe the run


def compare_module(golden: Path):
    """The golden folder's ``compare.py`` (``rule_for(key)``, ``measure(metric, gold, cand)``)."""
    spec = importlib.util.spec_from_file_location("golden_compare", Path(golden) / "compare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def candidate(result) -> dict[str, np.ndarray]:
    """The golden keys of a :class:`hrjax.pipeline.boost.BoostResult` run with ``keep_intermediates``."""
    p = result.plan
    c = dict(result.intermediates)
    c.update(result.call_log())
    c.update(R=np.int64(p.R), K=np.float64(p.K), R0=np.int64(p.R0), R0_K=np.float64(p.R0_K),
             written_png=quantize_16bit(result.depth))
    if p.boost:
        c.update(factor=np.float64(p.factor), target_size=np.array(p.target_size, np.int64),
                 n_patches=np.int64(p.n_patches), patch_ids=p.patch_ids, patch_rects_target=p.rects_target,
                 patch_rects_scaled=p.rects_scaled, mergein_scale=np.float64(p.mergein_scale),
                 mergein_shape=np.array(p.mergein_shape, np.int64))
    return c


def golden_run(golden: Path, name: str, max_batch: int = 1):
    """``(gold npz, input image, BoostConfig)`` of the pipeline golden ``name`` (e.g. ``synthetic_480_R0``)."""
    from hrjax.pipeline.config import BoostConfig

    gold = np.load(Path(golden) / "pipeline" / f"{name}.npz")
    options = json.loads(str(gold["options_json"]))
    max_res = options["max_res"] if options["max_res"] is not None else float("inf")
    img = read_image(Path(golden) / str(gold["image_path"]))
    if img.shape != tuple(gold["input_shape"]):
        raise ValueError(f"{name}: image {img.shape} is not the golden's {tuple(gold['input_shape'])}")
    cfg = BoostConfig(mode=str(gold["mode"]).lower(), max_res=max_res, max_batch=max_batch,
                      output_resolution="input" if options["output_resolution"] == 1 else "native")
    return gold, img, cfg


def compare(gold, cand: dict, compare_mod, name: str = "") -> tuple[list[str], list[str]]:
    """Every golden key against ``cand`` by compare.py's rule: ``(all lines, failing lines)``."""
    lines, failures = [], []
    for key in gold.files:
        if key in RUN_METADATA:
            continue
        metric, tol = compare_mod.rule_for(key)
        if key not in cand:
            lines.append(f"{name} {key:28s} missing from the candidate")
            failures.append(lines[-1])
            continue
        g, c = gold[key], np.asarray(cand[key])
        if metric == "exact" and g.dtype.kind in "iu":
            c = c.astype(g.dtype)
        v = compare_mod.measure(metric, g, c)
        lines.append(f"{name} {key:28s} {metric:6s} {v if v is not None else float('nan'):.3e} <= {tol:.1e}")
        if v is None or not v <= tol:
            failures.append(lines[-1] + (f" (shape {c.shape} vs {g.shape})" if v is None else ""))
    return lines, failures
