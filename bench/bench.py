"""hrjax benchmark: prints a table and writes JSON. Not a test.

    python bench/bench.py [--images PATH ...] [--generated 2000x1500] [--photo 2000x1500] [--mode final]
                          [--max-res N] [--precision float32|tf32|bfloat16] [--weights-dir DIR] [--max-batch N]
                          [--json OUT] [--skip-layers] [--cold-only] [--cache-dir DIR]

Per image: wall time per pipeline stage (plan, whole-image passes, patch work, blend) for a cold run (with
compilation) and a warm run of the same image, the number of network passes, their FLOPs (XLA cost
analysis of the compiled network functions, per input shape), achieved GFLOP/s and the fraction of the
float32 matmul peak measured in the same run, recompilations in the warm run (must be 0), peak host RSS and
peak device memory, and images per hour. Per layer type (grouped 3x3 conv, dense 3x3 conv, 4x4 stride-2
transposed conv): time, GFLOP/s and fraction of peak. Without --weights-dir, synthetic weights (the golden
rule) are converted into a temporary store, so figures are for the real architecture with synthetic values.
Runs unchanged on CPU, GPU and TPU (JAX picks the default backend).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrjax.host_memory import reuse_freed_buffers  # noqa: E402

reuse_freed_buffers()  # the CLI's heap policy, before JAX starts its threads: peak RSS is one of the figures
from hrjax.cpu_backend import use_xla_convolutions  # noqa: E402

use_xla_convolutions()  # as the CLI does, before JAX starts its CPU backend

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from rss import RssSampler  # noqa: E402

from hrjax.pipeline import kernels as device  # noqa: E402
from hrjax.pipeline.boost import boost  # noqa: E402
from hrjax.pipeline.config import BoostConfig  # noqa: E402
from hrjax.pipeline.networks import Models, load_models  # noqa: E402
from hrjax.run.folder import run_memory_releaser  # noqa: E402

HIGHEST = jax.lax.Precision.HIGHEST


class CompileCounter:
    """Counts XLA backend compilations through jax.monitoring."""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, name, secs, **_):
        if name == "/jax/core/compile/backend_compile_duration":
            self.count += 1
            self.seconds += secs


def timeit(fn, *args, repeats=3):
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def flops_of(jitted, *args, **kwargs) -> float:
    cost = jitted.lower(*args, **kwargs).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


def matmul_peak(sizes=(1024, 2048, 4096)) -> float:
    """Best float32 (HIGHEST) matmul rate over a few square sizes, GFLOP/s."""
    best = 0.0
    for n in sizes:
        a = jnp.asarray(np.random.default_rng(n).standard_normal((n, n)), jnp.float32)
        f = jax.jit(lambda x, y: jnp.dot(x, y, precision=HIGHEST))
        best = max(best, 2 * n ** 3 / timeit(f, a, a, repeats=5) / 1e9)
    return best


def layer_table(peak: float) -> list[dict]:
    """Per layer type and formulation: time, useful GFLOP/s (the FLOPs of the plain formulation, from XLA's
    cost analysis) and fraction of the matmul peak. Convolutions can beat a square matmul on CPU."""
    from hrjax.models.conv_transpose import conv_transpose
    from hrjax.models.layers import conv2d

    rng = np.random.default_rng(0)
    rows = []

    def row(name, f, x, w, flops):
        t = timeit(f, x, w)
        rows.append({"layer": name, "ms": t * 1e3, "gflops": flops / 1e9, "gflop_s": flops / t / 1e9,
                     "of_peak": flops / t / 1e9 / peak})

    cases = [
        ("grouped 3x3 conv (ResNeXt layer1, 32 groups, 256ch @96^2)", (1, 96, 96, 256), (3, 3, 8, 256), 32),
        ("grouped 3x3 conv (ResNeXt layer3, 32 groups, 1024ch @24^2)", (1, 24, 24, 1024), (3, 3, 32, 1024), 32),
        ("dense 3x3 conv (MiDaS decoder, 256ch @96^2)", (1, 96, 96, 256), (3, 3, 256, 256), 1),
    ]
    for name, xs, ws, g in cases:
        x = jnp.asarray(rng.standard_normal(xs), jnp.float32)
        w = jnp.asarray(rng.standard_normal(ws), jnp.float32)
        useful = flops_of(jax.jit(lambda a, b, g=g: conv2d(a, b, stride=1, padding=1, groups=g,
                                                            grouped_impl="native")), x, w)
        variants = [("native", "float32"), ("split", "float32"), ("auto", "bfloat16")] if g > 1 else \
            [("auto", "float32"), ("auto", "bfloat16")]
        for impl, prec in variants:
            f = jax.jit(lambda a, b, g=g, impl=impl, prec=prec: conv2d(a, b, stride=1, padding=1, groups=g,
                                                                       grouped_impl=impl, precision=prec))
            label = name + (f" [{impl}]" if g > 1 else "") + ("" if prec == "float32" else f" [{prec}]")
            row(label, f, x, w, useful)
    x = jnp.asarray(rng.standard_normal((1, 64, 64, 1024)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((4, 4, 1024, 256)), jnp.float32)
    useful = 2 * 64 * 64 * 4 * 1024 * 256 * 4  # each input pixel meets 4 taps per output phase
    for impl, prec in (("phase", "float32"), ("dilated", "float32"), ("phase", "bfloat16")):
        f = jax.jit(lambda a, b, impl=impl, prec=prec: conv_transpose(a, b, stride=2, padding=1, impl=impl,
                                                                      precision=prec))
        row(f"transposed conv 4x4/2 (1024->256 @64^2) [{impl}]" + ("" if prec == "float32" else f" [{prec}]"),
            f, x, w, useful)
    return rows


def network_flops(models: Models, net_shapes, merge_calls: int) -> dict[str, float]:
    """FLOPs of every network pass of a run, from XLA's cost analysis of the compiled functions per shape."""
    midas = 0.0
    per_shape = {}
    for shape in set(net_shapes):
        x = jax.ShapeDtypeStruct((1, *shape, 3), jnp.float32)
        per_shape[shape] = flops_of(device.base_on_rgb, models.base_graphdef, models.base_state, x,
                                   normalisation=models.base.normalisation)
    for s in net_shapes:
        midas += per_shape[s]
    m = jax.ShapeDtypeStruct((1, 1024, 1024), jnp.float32)
    merge = flops_of(device.double_from_estimates, models.merge_graphdef, models.merge_state, m, m) * merge_calls
    return {"midas": midas, "merge": merge, "per_shape": {f"{a}x{b}": v for (a, b), v in per_shape.items()}}


def peak_rss_gb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def device_peak_gb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / 2 ** 30 if peak else None


def synthetic_weights(tmp: Path) -> Path:
    from hrjax.convert.synthetic import synthetic_store

    golden = Path(os.environ.get("HRJAX_GOLDEN_DIR", ROOT.parent / "shared" / "golden"))
    return synthetic_store(golden, tmp / "weights")


def synthetic_weights_in_child(tmp: Path) -> Path:
    """:func:`synthetic_weights` in a child process, so that writing the torch checkpoints (GBs of transient
    memory) does not count in this process's peak RSS: a user converts weights once, not per run."""
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(target=synthetic_weights, args=(tmp,))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"converting the synthetic weights failed (exit {proc.exitcode})")
    return tmp / "weights"


def generated_image(spec: str) -> np.ndarray:
    w, h = (int(v) for v in spec.split("x"))
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(0)
    img = np.stack([0.5 + 0.5 * np.sin(20 * xx * (1 + yy)), yy, 1 - xx], axis=2)
    blocks = rng.random((h // 16 + 1, w // 16 + 1, 3)).repeat(16, 0).repeat(16, 1)[:h, :w]
    img[h // 2:] = 0.6 * img[h // 2:] + 0.4 * blocks[h // 2:]
    return np.clip(img, 0, 1)


def photo_image(spec: str, golden: Path) -> np.ndarray:
    """A photo-like WxH input: the golden lunch_640 photo, CUBIC-upscaled and blurred (sigma 2 px) so it looks
    like a soft high-resolution photo. At 2000x1500 the resolution search picks R = 1920 and 65 patches (the
    reference's own 2000x1543 photo figure: 75 patches), so its work is comparable; a sharp upscale gives ~98."""
    import cv2

    from hrjax.io import read_image

    w, h = (int(v) for v in spec.split("x"))
    img = read_image(golden / "images" / "lunch_640.png").astype(np.float32)
    up = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(cv2.GaussianBlur(up, (0, 0), 2.0), 0, 1).astype(np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", nargs="*", type=Path,
                    default=[ROOT.parent / "shared" / "golden" / "images" / "lunch_640.png"])
    ap.add_argument("--generated", default=None, help="also run a generated WxH pattern image, e.g. 2000x1500")
    ap.add_argument("--photo", default=None, help="also run the golden photo upscaled to WxH, e.g. 2000x1500 "
                    "(65 patches: comparable to the reference's 2000x1543 photo)")
    ap.add_argument("--precision", default="float32", help="float32 (parity), tf32 or bfloat16")
    ap.add_argument("--cache-dir", type=Path, help="use this persistent compilation cache (run twice: the "
                    "second run's cold figures are the warm-cache startup)")
    ap.add_argument("--mode", default="final")
    ap.add_argument("--max-res", type=float, default=float("inf"))
    ap.add_argument("--max-batch", type=int, default=0, help="0 = automatic (hrjax.pipeline.batching.auto_max_batch)")
    ap.add_argument("--weights-dir", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--skip-layers", action="store_true")
    ap.add_argument("--cold-only", action="store_true", help="skip the warm run (e.g. to measure peak RSS)")
    a = ap.parse_args()

    from hrjax.io import read_image

    if a.cache_dir:
        from hrjax import compile_cache
        compile_cache.enable(a.cache_dir)
    counter = CompileCounter()
    report = {"date": time.strftime("%Y-%m-%d"), "backend": jax.default_backend(),
              "devices": [d.device_kind for d in jax.devices()], "host": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "jax": jax.__version__}
    peak = matmul_peak()
    report["matmul_peak_gflop_s"] = peak
    print(f"backend {report['backend']} {report['devices'][0]}, float32 matmul peak {peak:.0f} GFLOP/s")
    if not a.skip_layers:
        report["layers"] = layer_table(peak)
        for r in report["layers"]:
            print(f"  {r['layer']:72s} {r['ms']:8.1f} ms {r['gflop_s']:7.1f} GFLOP/s {100 * r['of_peak']:5.1f}% of peak")

    with tempfile.TemporaryDirectory() as tmp:
        wd = a.weights_dir or synthetic_weights_in_child(Path(tmp))
        models = load_models(wd)
        inputs = [(p.name, read_image(p)) for p in a.images]
        if a.generated:
            inputs.append((f"generated_{a.generated}", generated_image(a.generated)))
        if a.photo:
            golden = Path(os.environ.get("HRJAX_GOLDEN_DIR", ROOT.parent / "shared" / "golden"))
            inputs.append((f"photo_{a.photo}", photo_image(a.photo, golden)))
        if a.precision != "float32":
            models = models.configured(precision=a.precision)
        report["precision"] = a.precision
        cfg = BoostConfig(mode=a.mode, max_res=a.max_res, max_batch=a.max_batch)
        report["runs"] = []
        for name, img in inputs:
            c0, s0 = counter.count, counter.seconds
            with RssSampler() as rss_cold:
                with run_memory_releaser():  # as the folder run does
                    cold = boost(models, img, cfg, progress=rss_cold.progress)
            c1, s1 = counter.count, counter.seconds
            with RssSampler() as rss_warm:
                with run_memory_releaser():
                    warm = cold if a.cold_only else boost(models, img, cfg, progress=rss_warm.progress)
            recompiles = counter.count - c1 if not a.cold_only else None
            fl = network_flops(models, warm.net_shapes, warm.merge_calls)
            total = warm.timings["total"]
            run = {"image": name, "shape": list(img.shape[:2]), "R": warm.plan.R, "patches": warm.plan.n_patches,
                   "midas_passes": len(warm.net_shapes), "merge_passes": warm.merge_calls,
                   "cold_s": cold.timings["total"], "compiles_cold": c1 - c0, "compile_s_cold": s1 - s0,
                   "recompiles_warm": recompiles, "warm_stages_s": warm.timings, "tflop": (fl["midas"] + fl["merge"]) / 1e12,
                   "midas_tflop": fl["midas"] / 1e12, "merge_tflop": fl["merge"] / 1e12,
                   "achieved_gflop_s": (fl["midas"] + fl["merge"]) / total / 1e9,
                   "of_peak": (fl["midas"] + fl["merge"]) / total / 1e9 / peak,
                   "images_per_hour": 3600 / total, "peak_rss_gb": peak_rss_gb(), "device_peak_gb": device_peak_gb(),
                   "stage_peak_rss_gb_cold": {k: v / 2 ** 30 for k, v in rss_cold.peaks.items()},
                   "stage_peak_rss_gb_warm": ({} if a.cold_only
                                              else {k: v / 2 ** 30 for k, v in rss_warm.peaks.items()}),
                   "rss_timeline_cold": [(t, b / 2 ** 30, k) for t, b, k in rss_cold.timeline]}
            report["runs"].append(run)
            print(f"{name} {img.shape[1]}x{img.shape[0]} mode {a.mode}: R={run['R']} patches={run['patches']} "
                  f"passes MiDaS {run['midas_passes']} / merge {run['merge_passes']} ({run['tflop']:.2f} TFLOP)")
            print(f"  cold {run['cold_s']:.1f} s ({run['compiles_cold']} compilations, {run['compile_s_cold']:.1f} s), "
                  f"warm {total:.1f} s, recompilations in warm run: {recompiles}")
            print("  warm stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in warm.timings.items()))
            print(f"  {run['achieved_gflop_s']:.0f} GFLOP/s = {100 * run['of_peak']:.0f}% of matmul peak; "
                  f"{run['images_per_hour']:.0f} images/hour; peak RSS {run['peak_rss_gb']:.2f} GB"
                  + (f"; device peak {run['device_peak_gb']:.2f} GB" if run["device_peak_gb"] else ""))
            for when in ("cold", "warm"):
                peaks = run[f"stage_peak_rss_gb_{when}"]
                if peaks:
                    print(f"  peak RSS per stage ({when}): " + ", ".join(f"{k} {v:.2f} GB" for k, v in peaks.items()))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
