"""The whole pipeline against the reference goldens (golden README 5 and 6): bookkeeping exact, maps within
the tolerance table of compare.py."""

import json

import cv2
import numpy as np
import pytest

from hrjax.io import quantize_16bit, read_image
from hrjax.pipeline.boost import boost
from hrjax.pipeline.config import BoostConfig
from hrjax.pipeline.models import load_models

CASES = [(img, mode) for img in ("synthetic_480", "lunch_640") for mode in ("R0", "R20", "Final")]
RUN_METADATA = {"image_path", "mode", "options_json", "input_shape"}


@pytest.fixture(scope="module")
def models(weights_dir):
    return load_models(weights_dir)


def candidate(result):
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


@pytest.mark.parametrize("name,mode", CASES)
def test_pipeline_matches_reference(golden, golden_compare, models, name, mode, capsys):
    compare = golden_compare
    gold = np.load(golden / "pipeline" / f"{name}_{mode}.npz")
    options = json.loads(str(gold["options_json"]))
    max_res = options["max_res"] if options["max_res"] is not None else float("inf")
    img = read_image(golden / str(gold["image_path"]))
    assert img.shape == tuple(gold["input_shape"])
    cfg = BoostConfig(mode=mode.lower(), max_res=max_res,
                      output_resolution="input" if options["output_resolution"] == 1 else "native")
    result = boost(models, img, cfg, keep_intermediates=True)
    cand = candidate(result)
    failures, lines = [], []
    for key in gold.files:
        if key in RUN_METADATA:
            continue
        metric, tol = compare.rule_for(key)
        assert key in cand, f"candidate lacks {key}"
        g, c = gold[key], np.asarray(cand[key])
        if metric == "exact" and g.dtype.kind in "iu":
            c = c.astype(g.dtype)
        v = compare.measure(metric, g, c)
        lines.append(f"{name}_{mode} {key:28s} {metric:6s} {v if v is not None else float('nan'):.3e} <= {tol:.1e}")
        if v is None or not v <= tol:
            failures.append(lines[-1] + (f" (shape {c.shape} vs {g.shape})" if v is None else ""))
    with capsys.disabled():
        print("\n" + "\n".join(lines) + f"\n{name}_{mode}: {result.timings}")
    assert not failures, "\n".join(failures)
