"""Fast-precision report: how far the opt-in arithmetic modes land from the reference goldens. Not a test.

    python bench/precision.py [--precision bfloat16 tf32 ...] [--cases synthetic_480_R0 ...] [--json OUT]

For every golden pipeline case (default: all six) and every precision (default: float32, then bfloat16; tf32 is
float32 on CPU), runs hrjax's pipeline with the synthetic weights and prints, against the golden
``written_float`` (the final depth) and ``written_png`` (the 16-bit file): max|diff| / range, RMS diff / range,
the largest 16-bit difference and the share of pixels off by more than 8 LSB, the R the resolution search
picked (content decisions can flip in fast mode), and the wall time (compilation included; bench/bench.py
--precision gives warm timings). float32 is the parity mode; its row is the yardstick. Runs unchanged on CPU,
GPU and TPU.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    ap.add_argument("--golden", type=Path, default=GOLDEN)
    ap.add_argument("--weights-dir", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()

    import jax

    from hrjax.io import quantize_16bit, read_image
    from hrjax.pipeline.boost import boost
    from hrjax.pipeline.config import BoostConfig
    from hrjax.pipeline.networks import load_models

    rows = []
    print(f"backend {jax.default_backend()} {jax.devices()[0].device_kind}")
    print(f"{'case':22s} {'precision':9s} {'R':>5s} {'max/range':>10s} {'rms/range':>10s} {'max LSB':>8s} "
          f"{'>8 LSB':>7s} {'wall s':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        wd = a.weights_dir or synthetic_weights(Path(tmp))
        base = load_models(wd)
        for prec in a.precision:
            models = base if prec == "float32" else base.configured(precision=prec)
            for case in a.cases:
                gold = np.load(a.golden / "pipeline" / f"{case}.npz")
                opts = json.loads(str(gold["options_json"]))
                cfg = BoostConfig(mode=str(gold["mode"]).lower(),
                                  max_res=opts["max_res"] if opts["max_res"] is not None else float("inf"),
                                  output_resolution="input" if opts["output_resolution"] == 1 else "native")
                img = read_image(a.golden / str(gold["image_path"]))
                t0 = time.perf_counter()
                res = boost(models, img, cfg)
                wall = time.perf_counter() - t0
                g = gold["written_float"].astype(np.float64)
                c = np.asarray(res.depth, np.float64)
                rng = float(g.max() - g.min()) or 1.0
                png_d = np.abs(quantize_16bit(res.depth).astype(np.int64) - gold["written_png"].astype(np.int64))
                row = {"case": case, "precision": prec, "R": int(res.plan.R), "R_golden": int(gold["R"]),
                       "max_over_range": float(np.abs(c - g).max() / rng),
                       "rms_over_range": float(np.sqrt(np.mean((c - g) ** 2)) / rng),
                       "png_max_lsb": int(png_d.max()), "png_share_over_8_lsb": float(np.mean(png_d > 8)),
                       "wall_s": wall}
                rows.append(row)
                print(f"{case:22s} {prec:9s} {row['R']:5d} {row['max_over_range']:10.2e} "
                      f"{row['rms_over_range']:10.2e} {row['png_max_lsb']:8d} "
                      f"{100 * row['png_share_over_8_lsb']:6.2f}% {wall:7.1f}"
                      + ("" if row["R"] == row["R_golden"] else f"  (golden R {row['R_golden']})"), flush=True)
    if a.json:
        a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "backend": jax.default_backend(),
                                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
