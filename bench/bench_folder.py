"""Per-shape stalls of a folder run: compilations, compile seconds and their share of the wall time, cold and warm.

    python bench/bench_folder.py [--count 20] [--long-side 640] [--aspects camera|random] [--mode r20]
                                 [--grouped-conv auto native] [--buckets] [--shapes-only] [--weights-dir DIR]
                                 [--json OUT]

Writes ``--count`` photos of the sizes and aspect ratios of real cameras and phones (4:3, 3:4, 3:2, 2:3, 16:9,
9:16, 1:1, at several resolutions, scaled so the long side is at most ``--long-side``; with ``--aspects random``
user crops instead: aspect ratios drawn between 1:2 and 2:1, long sides between half and all of ``--long-side``)
cut from the golden images, counts the distinct whole-image network input shapes the folder needs in parity
mode and with buckets (host only: the resolution search and the input rules, no network), then runs
``hrjax boost FOLDER`` on them twice per grouped-conv formulation (and with ``--buckets`` also with bucketed
whole-image passes), each time in a fresh process: *cold* with an empty persistent compilation cache, *warm*
with the cache the cold run filled. The child process counts XLA compilations through ``jax.monitoring``
(backend compiles and their seconds; a program loaded from the persistent cache is counted apart, with its
loading time) and tracing/lowering time, and reports the run's wall time. Prints one table and optionally
writes the figures as JSON. Not a test.

Without ``--weights-dir``, the golden synthetic weights are converted into a temporary store (same
architecture, so the same programs and compile times as with the real weights).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (width, height) of real sensors and exports: phones 4:3 and 3:4 (12 MP), DSLR 3:2 and 2:3, video 16:9 and 9:16,
# square crops, and a few odd ones (panorama-ish 2:1, scans)
SENSOR_SIZES = [(4032, 3024), (3024, 4032), (6000, 4000), (4000, 6000), (1920, 1080), (1080, 1920), (2048, 2048),
                (4000, 3000), (3000, 4000), (5184, 3456), (3456, 5184), (3840, 2160), (2160, 3840), (1080, 1080),
                (4096, 2048), (2480, 3508), (3264, 2448), (2448, 3264), (1600, 1200), (1200, 1600)]

CHILD = r"""
import json, sys, time
from hrjax.cpu_backend import use_xla_convolutions
use_xla_convolutions()  # as hrjax.cli.main
import jax
ev = {"programs": 0, "program_s": 0.0, "hits": 0, "load_s": 0.0, "trace_s": 0.0}
def on_duration(name, secs, **_):
    if name == "/jax/core/compile/backend_compile_duration":   # a compile or a persistent-cache load
        ev["programs"] += 1
        ev["program_s"] += secs
    elif name == "/jax/compilation_cache/cache_retrieval_time_sec":
        ev["load_s"] += secs
    elif name in ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration"):
        ev["trace_s"] += secs
def on_event(name, **_):
    if name == "/jax/compilation_cache/cache_hits":
        ev["hits"] += 1
jax.monitoring.register_event_duration_secs_listener(on_duration)
jax.monitoring.register_event_listener(on_event)
from hrjax.cli import app
t0 = time.perf_counter()
try:
    app(sys.argv[1:], standalone_mode=False)
    code = 0
except SystemExit as e:
    code = e.code
ev.update(exit=code, wall=time.perf_counter() - t0, compiles=ev["programs"] - ev["hits"],
          compile_s=ev["program_s"] - ev["load_s"])
print("BENCH " + json.dumps(ev))
"""


def photo_size(i: int, long_side: int, aspects: str, rng) -> tuple[int, int]:
    """(width, height) of photo ``i``: a sensor format of SENSOR_SIZES scaled to ``long_side`` (``camera``), or
    a user crop with a random aspect ratio in [1:2, 2:1] and long side in [long_side / 2, long_side]."""
    if aspects == "random":
        ratio = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))   # width / height
        long = int(rng.integers(long_side // 2, long_side + 1))
        return (long, max(32, round(long / ratio))) if ratio >= 1 else (max(32, round(long * ratio)), long)
    w, h = SENSOR_SIZES[i % len(SENSOR_SIZES)]
    scale = min(1.0, long_side / max(w, h)) * (1.0 if i < len(SENSOR_SIZES) else 0.75)
    return max(32, round(w * scale)), max(32, round(h * scale))


def make_photos(folder: Path, count: int, long_side: int, aspects: str = "camera") -> list[tuple[int, int]]:
    """``count`` PNGs cut from the golden images at the sizes of :func:`photo_size`; returns their (h, w)."""
    import cv2
    import numpy as np

    golden = Path(os.environ.get("HRJAX_GOLDEN_DIR", ROOT.parent / "shared" / "golden"))
    sources = [cv2.imread(str(golden / "images" / n)) for n in ("lunch_640.png", "synthetic_480.png")]
    folder.mkdir(parents=True, exist_ok=True)
    shapes = []
    rng = np.random.default_rng(0)
    for i in range(count):
        w, h = photo_size(i, long_side, aspects, rng)
        src = sources[i % len(sources)]
        sh, sw = src.shape[:2]
        # the largest crop of the source with the photo's aspect ratio, then resized to the photo's size
        cw, ch = (sw, round(sw * h / w)) if sw * h <= sh * w else (round(sh * w / h), sh)
        y0, x0 = (sh - ch) // 2, (sw - cw) // 2
        img = cv2.resize(src[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
        noise = np.random.default_rng(i).integers(-6, 7, img.shape)
        cv2.imwrite(str(folder / f"photo_{i:02d}.png"), np.clip(img + noise, 0, 255).astype(np.uint8))
        shapes.append((h, w))
    return shapes


def network_shapes(folder: Path, mode: str, max_res: float | None, model: str = "midas_v21") -> dict:
    """The whole-image network input shapes (rows, cols) each photo of ``folder`` needs, in parity mode and with
    buckets: the low pass at the receptive field and the high pass at R (from the resolution search), through
    the base network's input rule, as ``boost`` asks for them. Host only (no network, no compilation)."""
    from hrjax.bases import get_base
    from hrjax.io import read_image
    from hrjax.pipeline.buckets import bucketed_input_size
    from hrjax.pipeline.config import BoostConfig
    from hrjax.pipeline.image import to_rgb_float64
    from hrjax.pipeline.patches import plan

    base = get_base(model)
    cfg = BoostConfig(mode=mode, **({"max_res": max_res} if max_res else {})).for_base(base)
    rf, cap = cfg.receptive_field, cfg.max_net_input
    bucketed = bucketed_input_size(base, rf, cap)
    photos = {}
    for f in sorted(folder.iterdir()):
        img = to_rgb_float64(read_image(f))
        h, w = img.shape[:2]
        p = plan(img, cfg.mode, rf, cfg.max_res, cfg.output_resolution_flag)
        sizes = (min(rf, cap), min(p.R, cap))
        photos[f.name] = {"R": int(p.R), "parity": [list(base.input_size(h, w, s)) for s in sizes],
                          "buckets": [list(bucketed(h, w, s)) for s in sizes]}
    distinct = {k: len({tuple(s) for v in photos.values() for s in v[k]}) for k in ("parity", "buckets")}
    return {"photos": photos, "distinct": distinct}


def run_child(folder: Path, out: Path, cache: Path, weights: Path, mode: str, grouped: str,
              extra: list[str]) -> dict:
    args = [sys.executable, "-c", CHILD, "boost", str(folder), "--output", str(out), "--mode", mode,
            "--weights-dir", str(weights), "--cache-dir", str(cache), "--grouped-conv", grouped, "--overwrite",
            "--quiet", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    line = [s for s in p.stdout.splitlines() if s.startswith("BENCH ")]
    if p.returncode != 0 or not line:
        raise SystemExit(f"the folder run failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    rec = json.loads(line[-1][len("BENCH "):])
    if rec["exit"] not in (0, None):
        raise SystemExit(f"hrjax boost exited {rec['exit']}:\n{p.stderr[-3000:]}")
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--long-side", type=int, default=640, help="cap on the photos' long side (px)")
    ap.add_argument("--aspects", default="camera", choices=("camera", "random"),
                    help="camera: SENSOR_SIZES' formats; random: user crops of any aspect in [1:2, 2:1]")
    ap.add_argument("--shapes-only", action="store_true", help="only count the network input shapes (no run)")
    ap.add_argument("--mode", default="r20", choices=("r0", "r20", "final"))
    ap.add_argument("--max-res", type=int, default=None, help="--max-res of the run (Final)")
    ap.add_argument("--grouped-conv", nargs="+", default=["auto", "native"])
    ap.add_argument("--buckets", action="store_true", help="also run every formulation with --buckets")
    ap.add_argument("--weights-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    extra = ["--max-res", str(a.max_res)] if a.max_res else []

    with tempfile.TemporaryDirectory(prefix="hrjax-bench-folder-") as tmp:
        tmp = Path(tmp)
        shapes = make_photos(tmp / "photos", a.count, a.long_side, a.aspects)
        net = network_shapes(tmp / "photos", a.mode, a.max_res)
        print(f"{a.count} photos ({a.aspects}, {len(set(shapes))} distinct sizes): distinct whole-image network "
              f"input shapes {net['distinct']['parity']} in parity mode, {net['distinct']['buckets']} with "
              f"buckets", flush=True)
        if a.shapes_only:
            if a.json:
                a.json.write_text(json.dumps({"count": a.count, "aspects": a.aspects, "shapes": shapes,
                                              "mode": a.mode, "network_shapes": net}, indent=1))
            return
        weights = a.weights_dir
        if weights is None:
            from hrjax.convert.synthetic import synthetic_store
            golden = Path(os.environ.get("HRJAX_GOLDEN_DIR", ROOT.parent / "shared" / "golden"))
            weights = synthetic_store(golden, tmp / "weights")
        rows = []
        for grouped in a.grouped_conv:
            for buckets in (False, True) if a.buckets else (False,):
                variant = grouped + (" buckets" if buckets else "")
                cache = tmp / f"cache-{grouped}-{buckets}"
                for state in ("cold", "warm"):
                    t0 = time.perf_counter()
                    rec = run_child(tmp / "photos", tmp / "out", cache, weights, a.mode, grouped,
                                    extra + (["--buckets"] if buckets else []))
                    rec.update(variant=variant, cache=state, process_wall=time.perf_counter() - t0)
                    rows.append(rec)
                    print(f"  {variant:>14} {state}: {rec['wall']:.0f} s, {rec['compiles']} compiles, "
                          f"{rec['hits']} loaded from the cache", flush=True)

    print(f"\n{a.count} photos ({a.aspects}, {len(set(shapes))} distinct sizes, long side <= {a.long_side}), "
          f"--mode {a.mode}{' --max-res ' + str(a.max_res) if a.max_res else ''}, {os.cpu_count()} CPUs")
    print(f"{'variant':>14} {'cache':>5} {'wall s':>7} {'img/h':>7} {'compiles':>8} {'compile s':>9} "
          f"{'share':>6} {'loaded':>6} {'load s':>6} {'trace s':>7}")
    for r in rows:
        print(f"{r['variant']:>14} {r['cache']:>5} {r['wall']:7.1f} {3600 * a.count / r['wall']:7.0f} "
              f"{r['compiles']:8d} {r['compile_s']:9.1f} {r['compile_s'] / r['wall']:6.0%} {r['hits']:6d} "
              f"{r['load_s']:6.1f} {r['trace_s']:7.1f}")
    if a.json:
        a.json.write_text(json.dumps({"count": a.count, "aspects": a.aspects, "shapes": shapes, "mode": a.mode,
                                      "network_shapes": net, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
