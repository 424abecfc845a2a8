"""Deviation report: how far the opt-in fast modes (arithmetic, bucketed whole-image passes) land from the
reference goldens. Not a test.

    python bench/precision.py [--precision bfloat16 tf32 ...] [--buckets] [--cases synthetic_480_R0 ...] [--json OUT]

For every golden pipeline case (default: all six) and every precision (default: float32, then bfloat16; tf32 is
float32 on CPU), runs hrjax's pipeline with the synthetic weights and prints, against the golden
``written_float`` (the final depth) and ``written_png`` (the 16-bit file): max|diff| / range, RMS diff / range,
the largest 16-bit difference and the share of pixels off by more than 8 LSB, the R the resolution search
picked (content decisions can flip in fast mode), and the wall time (compilation included; bench/bench.py
--precision gives warm timings). float32 is the parity mode; its row is the yardstick. Runs unchanged on CPU,
GPU and TPU. ``--buckets`` adds, for every precision, a row with ``BoostConfig(buckets=True)``
(hrjax.pipeline.buckets) and the whole-image network input shapes it used.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench import synthetic_weights  # noqa: E402

GOLDEN = ROOT.parent / "shared" / "golden"
CASES = [f"{img}_{mode}" for img in ("synthetic_480", "lunch_640") for mode in ("R0", "R20", "Final")]
SMALL_FINALS = ["synthetic_480_Final_mr1500", "lunch_640_Final_mr1728"]  # golden README 8 (3 and 4 patches)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--cases", nargs="+", default=CASES, choices=CASES + SMALL_FINALS)
    ap.add_argument("--buckets", action="store_true", help="also run every precision with buckets=True")
    ap.add_argument("--golden", type=Path, default=GOLDEN)
    ap.add_argument("--weights-dir", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from hrjax.cpu_backend import use_xla_convolutions
    use_xla_convolutions()  # as the CLI does, before JAX starts its CPU backend

    import jax

    from hrjax.pipeline.networks import load_models

    rows = []
    print(f"backend {jax.default_backend()} {jax.devices()[0].device_kind}")
    print(f"{'case':26s} {'mode':17s} {'R':>5s} {'max/range':>10s} {'rms/range':>10s} {'max LSB':>8s} "
          f"{'>8 LSB':>7s} {'wall s':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        wd = a.weights_dir or synthetic_weights(Path(tmp))
        base = load_models(wd)
        for prec in a.precision:
            models = base if prec == "float32" else base.configured(precision=prec)
            for buckets in (False, True) if a.buckets else (False,):
                variant = prec + ("+buckets" if buckets else "")
                for case in a.cases:
                    rows.append(_row(models, a.golden, case, variant, buckets))
    if a.json:
        a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "backend": jax.default_backend(),
                                      "rows": rows}, indent=1))


def _row(models, golden: Path, case: str, variant: str, buckets: bool) -> dict:
    from hrjax.io import quantize_16bit, read_image
    from hrjax.pipeline.boost import boost
    from hrjax.pipeline.config import BoostConfig

    gold = np.load(golden / "pipeline" / f"{case}.npz")
    opts = json.loads(str(gold["options_json"]))
    cfg = BoostConfig(mode=str(gold["mode"]).lower(),
                      max_res=opts["max_res"] if opts["max_res"] is not None else float("inf"),
                      output_resolution="input" if opts["output_resolution"] == 1 else "native", buckets=buckets)
    img = read_image(golden / str(gold["image_path"]))
    t0 = time.perf_counter()
    res = boost(models, img, cfg)
    wall = time.perf_counter() - t0
    g = gold["written_float"].astype(np.float64)
    c = np.asarray(res.depth, np.float64)
    rng = float(g.max() - g.min()) or 1.0
    png_d = np.abs(quantize_16bit(res.depth).astype(np.int64) - gold["written_png"].astype(np.int64))
    row = {"case": case, "variant": variant, "R": int(res.plan.R), "R_golden": int(gold["R"]),
           "max_over_range": float(np.abs(c - g).max() / rng),
           "rms_over_range": float(np.sqrt(np.mean((c - g) ** 2)) / rng),
           "png_max_lsb": int(png_d.max()), "png_share_over_8_lsb": float(np.mean(png_d > 8)),
           "whole_net_shapes": [list(s) for s in res.net_shapes[:2]], "wall_s": wall}
    golden_shapes = [list(s[2:]) for s in gold["midas_call_shapes"][:2].tolist()]
    print(f"{case:26s} {variant:17s} {row['R']:5d} {row['max_over_range']:10.2e} "
          f"{row['rms_over_range']:10.2e} {row['png_max_lsb']:8d} "
          f"{100 * row['png_share_over_8_lsb']:6.2f}% {wall:7.1f}"
          + ("" if row["R"] == row["R_golden"] else f"  (golden R {row['R_golden']})")
          + ("" if row["whole_net_shapes"] == golden_shapes else
             f"  whole-image inputs {row['whole_net_shapes']} (golden {golden_shapes})"), flush=True)
    return row


if __name__ == "__main__":
    main()
