"""Per-patch crop+resize and whole-image resizes: dense operator einsums (before) vs bands (after), under jit.

    PYTHONPATH=. python bench/bench_resize.py [--repeats 5] [--json out.json]

Cases (float32, the pipeline's shapes for a 1216x1568 target, SPEC 3.2 step 1, 5.4 steps 4 and 7):
- a 600x600 crop of the RGB image to the 384^2 and 768^2 network inputs (CUBIC, cv2's float64 path);
- a 600x600 crop of the base estimate to the merge net's 1024^2 and the 1024^2 result back to 600x600;
- the whole 1216x1568 estimate to 1024^2 and 1024^2 back to 1216x1568.

"dense" is a full-image operator pair (the pipeline's whole-image resizes); "window" the dense operators on
the crop's window rounded up to 64 px, which is what the pipeline's patch crops ran before (the removed
``batched_window_resize``: the same einsums on a dynamic slice; emulated here on the sliced window).
For each: the device time (min of ``--repeats`` calls after a warm-up, wall and this process's CPU time: on
a shared machine the minimum is the figure least disturbed by other load), XLA's flop count of the compiled
program (``cost_analysis``), the host time to build the operators, and the largest difference between the
two results. The dense formulation is the test twin (tests/reference_ops.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference_ops import batched_crop_resize_dense, stack_crop_resize_matrices  # noqa: E402

from hrjax.ops.crop import batched_crop_resize, stack_crop_resize_bands  # noqa: E402

TARGET = (1216, 1568)
RECT = [500, 300, 600, 600]  # x, y, w, h


def cases():
    """(name, image shape, rect, output size, cv_dtype, channels)."""
    h, w = TARGET
    return [
        ("patch RGB crop -> 384^2", (h, w, 3), RECT, (384, 384), np.float64, 3),
        ("patch RGB crop -> 768^2", (h, w, 3), RECT, (768, 768), np.float64, 3),
        ("patch base crop -> 1024^2", (h, w), RECT, (1024, 1024), np.float32, 1),
        ("patch 1024^2 -> 600^2", (1024, 1024), [0, 0, 1024, 1024], (600, 600), np.float64, 1),
        ("whole 1216x1568 -> 1024^2", (h, w), [0, 0, w, h], (1024, 1024), np.float32, 1),
        ("whole 1024^2 -> 1216x1568", (1024, 1024), [0, 0, 1024, 1024], (h, w), np.float32, 1),
    ]


def _flops(fn, *args) -> float:
    cost = fn.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def _time(fn, args, repeats: int) -> tuple[float, float]:
    jax.block_until_ready(fn(*args))  # compile + warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def run(repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for name, shape, rect, size, cv_dtype, ch in cases():
        img = jnp.asarray(rng.random(shape, np.float32))
        t = time.perf_counter()
        ry, rx = stack_crop_resize_matrices([rect], shape[:2], size, cv_dtype=cv_dtype, channels=ch)
        host_dense = time.perf_counter() - t
        t = time.perf_counter()
        bands = stack_crop_resize_bands([rect], shape[:2], size, cv_dtype=cv_dtype, channels=ch)
        host_banded = time.perf_counter() - t
        dense_args = (img, jnp.asarray(ry), jnp.asarray(rx))
        x, y, w, h = rect
        wh, ww = min(shape[0], -(-h // 64) * 64), min(shape[1], -(-w // 64) * 64)
        y0, x0 = min(y, shape[0] - wh), min(x, shape[1] - ww)
        win_args = (img[y0:y0 + wh, x0:x0 + ww], jnp.asarray(ry[:, :, y0:y0 + wh]), jnp.asarray(rx[:, :, x0:x0 + ww]))
        w_wall, w_cpu = _time(batched_crop_resize_dense, win_args, repeats)
        band_args = (img, *(jnp.asarray(b) for b in bands))
        d_wall, d_cpu = _time(batched_crop_resize_dense, dense_args, repeats)
        b_wall, b_cpu = _time(batched_crop_resize, band_args, repeats)
        diff = float(jnp.max(jnp.abs(batched_crop_resize_dense(*dense_args) - batched_crop_resize(*band_args))))
        rows.append(dict(case=name, dense_flops=_flops(batched_crop_resize_dense, *dense_args),
                         window_flops=_flops(batched_crop_resize_dense, *win_args), window_wall_s=w_wall,
                         window_cpu_s=w_cpu,
                         banded_flops=_flops(batched_crop_resize, *band_args),
                         dense_wall_s=d_wall, dense_cpu_s=d_cpu, banded_wall_s=b_wall, banded_cpu_s=b_cpu,
                         dense_host_s=host_dense, banded_host_s=host_banded, max_abs_diff=diff))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = run(args.repeats)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; min of {args.repeats} calls; ms; GFLOP by XLA")
    print(f"{'case':28s} {'GFLOP dense':>11s} {'window':>7s} {'band':>7s} {'ms: dense wall':>14s} {'cpu':>6s} "
          f"{'window wall':>11s} {'cpu':>6s} {'band wall':>9s} {'cpu':>6s} {'host d/b':>11s} {'max diff':>8s}")
    for r in rows:
        print(f"{r['case']:28s} {r['dense_flops'] / 1e9:11.3f} {r['window_flops'] / 1e9:7.3f} "
              f"{r['banded_flops'] / 1e9:7.4f} {1e3 * r['dense_wall_s']:14.1f} {1e3 * r['dense_cpu_s']:6.1f} "
              f"{1e3 * r['window_wall_s']:11.1f} {1e3 * r['window_cpu_s']:6.1f} {1e3 * r['banded_wall_s']:9.2f} "
              f"{1e3 * r['banded_cpu_s']:6.2f} {1e3 * r['dense_host_s']:5.0f}/{1e3 * r['banded_host_s']:<5.0f} "
              f"{r['max_abs_diff']:8.1e}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
