"""hrjax benchmark: prints a table and writes JSON. Not a test.

    python bench/bench.py [--images PATH ...] [--generated 2000x1500] [--mode final] [--max-res N]
                          [--weights-dir DIR] [--max-batch N] [--json OUT] [--skip-layers]

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

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from hrjax.pipeline import device  # noqa: E402
from hrjax.pipeline.boost import boost  # noqa: E402
from hrjax.pipeline.config import BoostConfig  # noqa: E402
from hrjax.pipeline.models import Models, load_models  # noqa: E402

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


def flops_of(jitted, *args) -> float:
    cost = jitted.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


def matmul_peak(n=4096) -> float:
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x, y: jnp.dot(x, y, precision=HIGHEST))
    return 2 * n ** 3 / timeit(f, a, a) / 1e9


def layer_table(peak: float) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []

    def conv(x, w, groups, stride, pad):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=groups, precision=HIGHEST)

    from hrjax.models.conv_transpose import conv_transpose
    cases = [
        ("grouped 3x3 conv (ResNeXt layer1, 32 groups, 256ch @96^2)", (1, 96, 96, 256), (3, 3, 8, 256), 32),
        ("grouped 3x3 conv (ResNeXt layer3, 32 groups, 1024ch @24^2)", (1, 24, 24, 1024), (3, 3, 32, 1024), 32),
        ("dense 3x3 conv (MiDaS decoder, 256ch @96^2)", (1, 96, 96, 256), (3, 3, 256, 256), 1),
    ]
    for name, xs, ws, g in cases:
        x = jnp.asarray(rng.standard_normal(xs), jnp.float32)
        w = jnp.asarray(rng.standard_normal(ws), jnp.float32)
        f = jax.jit(lambda a, b, g=g: conv(a, b, g, 1, 1))
        t = timeit(f, x, w)
        fl = flops_of(f, x, w)
        rows.append({"layer": name, "ms": t * 1e3, "gflops": fl / 1e9, "gflop_s": fl / t / 1e9,
                     "of_peak": fl / t / 1e9 / peak})
    for impl in ("phase", "dilated"):
        x = jnp.asarray(rng.standard_normal((1, 64, 64, 1024)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((4, 4, 1024, 256)), jnp.float32)
        f = jax.jit(lambda a, b, impl=impl: conv_transpose(a, b, stride=2, padding=1, impl=impl))
        t = timeit(f, x, w)
        fl = 2 * 64 * 64 * 4 * 1024 * 256 * 4  # useful FLOPs: each input pixel meets 4 taps per output phase
        rows.append({"layer": f"transposed conv 4x4/2 ({impl}, 1024->256 @64^2)", "ms": t * 1e3,
                     "gflops": fl / 1e9, "gflop_s": fl / t / 1e9, "of_peak": fl / t / 1e9 / peak})
    return rows


def network_flops(models: Models, net_shapes, merge_calls: int) -> dict[str, float]:
    """FLOPs of every network pass of a run, from XLA's cost analysis of the compiled functions per shape."""
    midas = 0.0
    per_shape = {}
    for shape in set(net_shapes):
        x = jax.ShapeDtypeStruct((1, *shape, 3), jnp.float32)
        per_shape[shape] = flops_of(device.midas_on_rgb, models.midas_graphdef, models.midas_state, x)
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
    import importlib.util

    from convert import convert_checkpoint

    golden = Path(os.environ.get("HRJAX_GOLDEN_DIR", ROOT.parent / "shared" / "golden"))
    spec = importlib.util.spec_from_file_location("synth_weights", golden / "synth_weights.py")
    sw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sw)
    for manifest, fname, model in (("midas_v21.json", "midas_v21-f6b98070.pt", "midas_v21"),
                                   ("mergenet.json", "latest_net_G.pth", "mergenet")):
        sw.save_torch(sw.synth_state_dict(sw.load_manifest(golden / "manifests" / manifest)), tmp / fname)
        convert_checkpoint(model, tmp / fname, tmp / "weights")
        (tmp / fname).unlink()
    return tmp / "weights"


def generated_image(spec: str) -> np.ndarray:
    w, h = (int(v) for v in spec.split("x"))
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(0)
    img = np.stack([0.5 + 0.5 * np.sin(20 * xx * (1 + yy)), yy, 1 - xx], axis=2)
    blocks = rng.random((h // 16 + 1, w // 16 + 1, 3)).repeat(16, 0).repeat(16, 1)[:h, :w]
    img[h // 2:] = 0.6 * img[h // 2:] + 0.4 * blocks[h // 2:]
    return np.clip(img, 0, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", nargs="*", type=Path,
                    default=[ROOT.parent / "shared" / "golden" / "images" / "lunch_640.png"])
    ap.add_argument("--generated", default=None, help="also run a generated WxH image, e.g. 2000x1500")
    ap.add_argument("--mode", default="final")
    ap.add_argument("--max-res", type=float, default=float("inf"))
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--weights-dir", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--skip-layers", action="store_true")
    a = ap.parse_args()

    from hrjax.io import read_image

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
            print(f"  {r['layer']:62s} {r['ms']:8.1f} ms {r['gflop_s']:7.1f} GFLOP/s {100 * r['of_peak']:5.1f}% of peak")

    with tempfile.TemporaryDirectory() as tmp:
        wd = a.weights_dir or synthetic_weights(Path(tmp))
        models = load_models(wd)
        inputs = [(p.name, read_image(p)) for p in a.images]
        if a.generated:
            inputs.append((f"generated_{a.generated}", generated_image(a.generated)))
        cfg = BoostConfig(mode=a.mode, max_res=a.max_res, max_batch=a.max_batch)
        report["runs"] = []
        for name, img in inputs:
            c0, s0 = counter.count, counter.seconds
            cold = boost(models, img, cfg)
            c1, s1 = counter.count, counter.seconds
            warm = boost(models, img, cfg)
            recompiles = counter.count - c1
            fl = network_flops(models, warm.net_shapes, warm.merge_calls)
            total = warm.timings["total"]
            run = {"image": name, "shape": list(img.shape[:2]), "R": warm.plan.R, "patches": warm.plan.n_patches,
                   "midas_passes": len(warm.net_shapes), "merge_passes": warm.merge_calls,
                   "cold_s": cold.timings["total"], "compiles_cold": c1 - c0, "compile_s_cold": s1 - s0,
                   "recompiles_warm": recompiles, "warm_stages_s": warm.timings, "tflop": (fl["midas"] + fl["merge"]) / 1e12,
                   "midas_tflop": fl["midas"] / 1e12, "merge_tflop": fl["merge"] / 1e12,
                   "achieved_gflop_s": (fl["midas"] + fl["merge"]) / total / 1e9,
                   "of_peak": (fl["midas"] + fl["merge"]) / total / 1e9 / peak,
                   "images_per_hour": 3600 / total, "peak_rss_gb": peak_rss_gb(), "device_peak_gb": device_peak_gb()}
            report["runs"].append(run)
            print(f"{name} {img.shape[1]}x{img.shape[0]} mode {a.mode}: R={run['R']} patches={run['patches']} "
                  f"passes MiDaS {run['midas_passes']} / merge {run['merge_passes']} ({run['tflop']:.2f} TFLOP)")
            print(f"  cold {run['cold_s']:.1f} s ({run['compiles_cold']} compilations, {run['compile_s_cold']:.1f} s), "
                  f"warm {total:.1f} s, recompilations in warm run: {recompiles}")
            print("  warm stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in warm.timings.items()))
            print(f"  {run['achieved_gflop_s']:.0f} GFLOP/s = {100 * run['of_peak']:.0f}% of matmul peak; "
                  f"{run['images_per_hour']:.0f} images/hour; peak RSS {run['peak_rss_gb']:.2f} GB"
                  + (f"; device peak {run['device_peak_gb']:.2f} GB" if run["device_peak_gb"] else ""))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
