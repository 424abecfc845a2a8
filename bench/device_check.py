"""Accelerator check, ready to run: parity and speed of hrjax on whatever device JAX sees, in one command.

    python bench/device_check.py [--out device_check.json] [--golden ../shared/golden] [--budget-s 450]
    python bench/device_check.py --quick          # shrunk sizes: a smoke test on a CPU in a few minutes

Stages (each timed, with the compilations it caused, their seconds and the peak device memory so far):
  weights   the golden folder's synthetic weights converted into a temporary store (hrjax.convert.synthetic)
  networks  MiDaS on the golden inputs (256x320, and 384x384 unless --quick) and the merge net on merge_in,
            at parity ("float32"): max|diff|/range against the goldens, tolerances of golden README 6
  golden    one pipeline golden at parity, every key by compare.py's rules: synthetic_480_Final_mr1500 (golden
            README 8: 3 patches), synthetic_480_R0 with --quick
  midas     one MiDaS pass at 384^2, 768^2, 1568^2 (64^2, 128^2 with --quick): first call (compile) and warm
  merge     one merge-net pass at 1024^2 (the merge net's only size)
  final     a Final run of a 2000x1500 photo (bench/bench.py's; 160x120 at receptive field 128 with --quick),
            cold (compiling) and warm, per precision (--precisions; hrjax.models.precision.PRECISIONS), the fast
            modes' deviation from the float32 depth, images per hour from the warm run

Writes one JSON (--out) and prints a short table. A stage that would start after --budget-s is skipped (and
listed as such), so a slow device still gives the early figures. Exit status 1 if a parity check failed or a
stage raised, else 0. Needs no torch (the weights are converted from memory without it) and no pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrjax.cpu_backend import use_xla_convolutions  # noqa: E402

use_xla_convolutions()  # as the CLI does (on a CPU only run), before JAX starts its backend

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from hrjax.models.precision import GROUPED_IMPLS, PRECISIONS  # noqa: E402

MIDAS_TOL, MERGE_TOL = 5e-5, 2e-5  # golden README 6: range metric
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class Recorder:
    """Compilations (count, seconds: jax.monitoring's backend-compile events) and peak device memory, per stage."""

    def __init__(self):
        self.compiles: list[float] = []
        self.stages: dict[str, dict] = {}
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, name, secs, **_):
        if name == COMPILE_EVENT:
            self.compiles.append(float(secs))

    def close(self):
        jax.monitoring.unregister_event_duration_listener(self._on_event)

    @staticmethod
    def peak_bytes() -> int | None:
        """The device's peak bytes in use since the process started, where the backend reports it (GPU, TPU)."""
        try:
            stats = jax.local_devices()[0].memory_stats()
        except Exception:  # noqa: BLE001 (backends without memory stats raise or return None)
            return None
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None

    @contextlib.contextmanager
    def stage(self, name: str):
        n0, t0 = len(self.compiles), time.perf_counter()
        rec = self.stages.setdefault(name, {})
        try:
            yield rec
            rec.setdefault("status", "ok")
        except Exception as e:  # noqa: BLE001 (recorded; the remaining stages still run)
            rec["status"] = "error"
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["traceback"] = traceback.format_exc(limit=6)
        finally:
            rec["wall_s"] = time.perf_counter() - t0
            rec["compilations"] = len(self.compiles) - n0
            rec["compile_s"] = sum(self.compiles[n0:])
            rec["peak_device_bytes"] = self.peak_bytes()


def range_err(cand, gold) -> float:
    cand, gold = np.asarray(cand, np.float64), np.asarray(gold, np.float64)
    return float(np.abs(cand - gold).max() / (gold.max() - gold.min()))


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t, out


# --- stages ----------------------------------------------------------------------------------------------------

def stage_weights(rec, golden: Path, weights_dir: Path | None, tmp: Path) -> Path:
    if weights_dir is not None:
        rec["weights_dir"], rec["converted"] = str(weights_dir), False
        return weights_dir
    from hrjax.convert.synthetic import synthetic_store
    wd = synthetic_store(golden, tmp / "weights")
    rec["weights_dir"], rec["converted"] = str(wd), True
    return wd


def stage_networks(rec, models, golden: Path, quick: bool) -> None:
    from hrjax.models import mergenet, midas_v21
    predict = midas_v21.predictor(models.base_graphdef)
    gold = np.load(golden / "midas_v21_forward.npz")
    for hw in ("256x320",) if quick else ("256x320", "384x384"):
        x = jnp.asarray(gold[f"midas_in_{hw}"].transpose(0, 2, 3, 1))
        err = range_err(predict(models.base_state, x), gold[f"midas_out_{hw}"])
        rec[f"midas_{hw}_range_err"] = err
        rec[f"midas_{hw}_ok"] = err <= MIDAS_TOL
    with np.load(golden / "mergenet_forward.npz") as z:
        x, want = z["merge_in"].transpose(0, 2, 3, 1), z["merge_out"][:, 0]
    y = mergenet.forward(models.merge_graphdef, models.merge_state, jnp.asarray(x))
    rec["merge_range_err"] = range_err(np.asarray(y)[..., 0], want)
    rec["merge_ok"] = rec["merge_range_err"] <= MERGE_TOL
    if not all(v for k, v in rec.items() if k.endswith("_ok")):
        rec["status"] = "parity failed"


def stage_golden(rec, models, golden: Path, name: str) -> None:
    from hrjax.golden import candidate, compare, compare_module, golden_run
    from hrjax.pipeline.boost import boost
    gold, img, cfg = golden_run(golden, name)
    t = time.perf_counter()
    result = boost(models, img, cfg, keep_intermediates=True)
    rec["case"], rec["boost_s"] = name, time.perf_counter() - t
    lines, failures = compare(gold, candidate(result), compare_module(golden), name)
    rec["keys"], rec["failures"] = len(lines), failures
    if failures:
        rec["status"] = "parity failed"


def stage_midas(rec, models, sizes: list[int], repeats: int) -> None:
    from hrjax.models import midas_v21
    predict = midas_v21.predictor(models.base_graphdef)
    for s in sizes:
        x = jnp.asarray(np.random.default_rng(s).standard_normal((1, s, s, 3)), jnp.float32)
        first, _ = timed(predict, models.base_state, x)
        warm = min(timed(predict, models.base_state, x)[0] for _ in range(repeats))
        rec[f"{s}"] = {"first_s": first, "warm_s": warm}


def stage_merge(rec, models, repeats: int) -> None:
    from hrjax.models import mergenet
    x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (1, 1024, 1024, 2)), jnp.float32)
    first, _ = timed(mergenet.forward, models.merge_graphdef, models.merge_state, x)
    warm = min(timed(mergenet.forward, models.merge_graphdef, models.merge_state, x)[0] for _ in range(repeats))
    rec["1024"] = {"first_s": first, "warm_s": warm}


def final_input(golden: Path, quick: bool):
    """(image, BoostConfig) of the Final stage: at full size bench/bench.py's 2000x1500 photo (lunch_640
    upscaled and softened: R = 1920, 65 patches, comparable to the reference's own 2000x1543 figure)."""
    import importlib.util

    import cv2

    from hrjax.io import read_image
    from hrjax.pipeline.config import BoostConfig
    if quick:  # the invariance tests' small configuration (tests/test_pipeline_behaviour.py: 3 patches)
        img = cv2.resize(read_image(golden / "images" / "synthetic_480.png"), (160, 120), interpolation=cv2.INTER_AREA)
        return img, BoostConfig(mode="final", max_res=476, receptive_field=128)
    sys.path.insert(0, str(ROOT / "bench"))  # bench.py imports its neighbour rss.py
    spec = importlib.util.spec_from_file_location("hrjax_bench", ROOT / "bench" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.photo_image("2000x1500", golden), BoostConfig(mode="final")


def stage_final(rec, models, image, cfg, precision: str, reference_depth=None):
    from hrjax.pipeline.boost import boost
    m = models if precision == "float32" else models.configured(precision=precision)
    t = time.perf_counter()
    cold = boost(m, image, cfg)
    rec["cold_s"] = time.perf_counter() - t
    t = time.perf_counter()
    warm = boost(m, image, cfg)
    rec["warm_s"] = time.perf_counter() - t
    rec.update(image=list(image.shape[:2]), R=int(warm.plan.R), patches=int(warm.plan.n_patches),
               images_per_hour=3600.0 / rec["warm_s"],
               stage_s={k: round(v, 3) for k, v in warm.timings.items()})
    if reference_depth is not None:
        rec["depth_range_err_vs_float32"] = range_err(warm.depth, reference_depth)
    return warm.depth


# --- driver ----------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--golden", type=Path,
                    default=Path(os.environ.get("HRJAX_GOLDEN_DIR", ROOT.parent / "shared" / "golden")))
    ap.add_argument("--out", type=Path, default=Path("device_check.json"))
    ap.add_argument("--weights-dir", type=Path, help="an existing store of the synthetic weights (skips converting)")
    ap.add_argument("--quick", action="store_true", help="shrunk sizes: a smoke test on a CPU")
    ap.add_argument("--stages", default="weights,networks,golden,midas,merge,final",
                    help="comma-separated subset of the stages (weights always runs)")
    ap.add_argument("--precisions", default="float32,bfloat16,tf32",
                    help=f"for the final stage, float32 (parity) first; of {PRECISIONS}")
    ap.add_argument("--grouped-impl", default="auto", help=f"MiDaS grouped convolutions, of {GROUPED_IMPLS}")
    ap.add_argument("--repeats", type=int, default=3, help="warm calls per timing (the minimum is kept)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="start no stage after this many seconds")
    args = ap.parse_args(argv)
    bad = [p for p in args.precisions.split(",") if p and p not in PRECISIONS]
    if bad:
        ap.error(f"--precisions: {bad} not among {PRECISIONS}")
    return args


def run(args) -> dict:
    t_start = time.perf_counter()
    stages = [s for s in args.stages.split(",") if s]
    precisions = [p for p in args.precisions.split(",") if p]
    dev = jax.local_devices()[0]
    report = {"jax": jax.__version__, "platform": dev.platform, "device_kind": dev.device_kind,
              "n_devices": jax.local_device_count(), "host": platform.node(), "quick": args.quick,
              "grouped_impl": args.grouped_impl, "stages": {}}
    rec = Recorder()
    report["stages"] = rec.stages

    def budget_left(name) -> bool:
        if time.perf_counter() - t_start <= args.budget_s:
            return True
        rec.stages[name] = {"status": "skipped (budget)"}
        return False

    with tempfile.TemporaryDirectory(prefix="hrjax-device-check-") as tmp:
        with rec.stage("weights") as r:
            wd = stage_weights(r, args.golden, args.weights_dir, Path(tmp))
        models = None
        if rec.stages["weights"]["status"] == "ok":
            from hrjax.pipeline.networks import load_models
            with rec.stage("load") as r:
                models = load_models(wd, grouped_impl=args.grouped_impl)
        if models is not None:
            plan = [("networks", lambda r: stage_networks(r, models, args.golden, args.quick)),
                    ("golden", lambda r: stage_golden(r, models, args.golden,
                                                      "synthetic_480_R0" if args.quick else "synthetic_480_Final_mr1500")),
                    ("midas", lambda r: stage_midas(r, models, [64, 128] if args.quick else [384, 768, 1568],
                                                    args.repeats)),
                    ("merge", lambda r: stage_merge(r, models, args.repeats))]
            for name, fn in plan:
                if name in stages and budget_left(name):
                    with rec.stage(name) as r:
                        fn(r)
            if "final" in stages:
                image, cfg = final_input(args.golden, args.quick)
                ref = None
                for p in precisions:
                    name = f"final_{p}"
                    if budget_left(name):
                        with rec.stage(name) as r:
                            depth = stage_final(r, models, image, cfg, p, ref)
                            ref = depth if ref is None else ref
    rec.close()
    report["total_s"] = time.perf_counter() - t_start
    report["compilations"] = len(rec.compiles)
    report["compile_s"] = sum(rec.compiles)
    report["peak_device_bytes"] = Recorder.peak_bytes()
    report["ok"] = all(s.get("status") in ("ok", "skipped (budget)") for s in rec.stages.values())
    return report


def table(report: dict) -> str:
    out = [f"hrjax device check: {report['platform']} {report['device_kind']} x{report['n_devices']}, jax "
           f"{report['jax']}{' (quick)' if report['quick'] else ''}; {report['total_s']:.0f} s, "
           f"{report['compilations']} compilations ({report['compile_s']:.0f} s)",
           f"{'stage':18s} {'status':14s} {'wall s':>8s} {'compiles':>8s} {'comp s':>7s} {'peak GiB':>8s}  figures"]
    for name, s in report["stages"].items():
        peak = s.get("peak_device_bytes")
        figures = []
        for k, v in s.items():
            if k.endswith("range_err") or k.endswith("_vs_float32"):
                figures.append(f"{k}={v:.1e}")
            elif isinstance(v, dict) and "warm_s" in v:
                figures.append(f"{k}: {v['first_s']:.2f}/{v['warm_s']:.3f} s")
        if "warm_s" in s:
            figures.append(f"cold {s['cold_s']:.1f} s, warm {s['warm_s']:.1f} s, {s['patches']} patches, "
                           f"{s['images_per_hour']:.0f} img/h")
        if "keys" in s:
            figures.append(f"{s['case']}: {s['keys'] - len(s['failures'])}/{s['keys']} keys within tolerance")
        if "error" in s:
            figures.append(s["error"][:80])
        out.append(f"{name:18s} {s.get('status', ''):14s} {s.get('wall_s', float('nan')):8.1f} "
                   f"{s.get('compilations', 0):8d} {s.get('compile_s', 0.0):7.1f} "
                   f"{'-' if peak is None else f'{peak / 2**30:8.2f}':>8s}  {'; '.join(figures)}")
    out.append("OK" if report["ok"] else "FAILED (see the JSON)")
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.out.write_text(json.dumps(report, indent=1, default=float))
    print(table(report))
    print(f"written: {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
