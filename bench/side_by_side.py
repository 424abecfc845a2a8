"""hrjax next to the official reference, same image, same synthetic weights. Not a test.

    python bench/side_by_side.py (--generated 800x450 | --photo 2000x1500 | --image PATH) [--mode final]
                                 [--max-res 2400] [--reference CHECKOUT --reference-python PY]
                                 [--grouped-conv auto] [--repeats 1] [--json OUT]

Both tools run as fresh processes, one after the other, on the same 8-bit PNG:
- hrjax: ``cli.py boost`` twice with one new compilation cache folder, first empty (cold), then warm; the
  synthetic weights (golden rule) are converted into a temporary store first;
- the reference (when ``--reference`` names an official BoostingMonocularDepth checkout and
  ``--reference-python`` a Python with torch): ``bench/reference_stages.py``, which runs its ``run.py`` on CPU
  with the same synthetic weights and times the same stages.
Printed: the stage table (whole process, whole-image double estimate, patch low / high passes, merges, peak
RSS), hrjax/reference ratios, and whether the written 16-bit maps agree (max LSB difference). Peak RSS is each
process's own ``ru_maxrss`` (a wrapper process per run).

``--repeats N`` runs the trio (hrjax cold with a new empty cache, hrjax warm, the reference) N times in turn, so
a slow spell of the machine touches all three alike; the table then gives each cell's median over the N runs
(the ratios are ratios of medians), and a line per run gives that run's own process-time ratios. On a shared
2-core instance one run's ratio moves by several percent (the reference alone took 149-167 s for the same
800x450 image on one day), so a single run says little about a 10 % margin.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hrjax.models.precision import GROUPED_IMPLS  # noqa: E402 (jax-free)

GOLDEN = ROOT.parent / "shared" / "golden"

# Runs argv[1:] and prints the child's peak RSS (GiB) and wall seconds as the last stderr line.
_MEASURED = ("import resource, subprocess, sys, time; t = time.perf_counter(); r = subprocess.run(sys.argv[1:]); "
             "w = time.perf_counter() - t; "
             "print(f'@@measured {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20:.4f} {w:.3f}', "
             "file=sys.stderr); sys.exit(r.returncode)")

ROWS = (("whole process", "process_s"), ("whole image (2 passes + 1 merge)", "whole"),
        ("patch low passes", "patch_low_passes"), ("patch high passes", "patch_high_passes"),
        ("merges (patch double + base)", "merges"), ("peak RSS (GB)", "peak_rss_gb"))


def run_measured(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    p = subprocess.run([sys.executable, "-c", _MEASURED, *cmd], capture_output=True, text=True)
    last = [ln for ln in p.stderr.splitlines() if ln.startswith("@@measured ")]
    if p.returncode != 0 or not last:
        raise SystemExit(f"{cmd[0]} {cmd[1]} failed (exit {p.returncode}):\n{p.stderr[-4000:]}")
    rss, wall = (float(v) for v in last[-1].split()[1:])
    return p, rss, wall


def write_input(a, tmp: Path) -> Path:
    import cv2

    from bench import generated_image, photo_image

    if a.image:
        return a.image.resolve()
    img = generated_image(a.generated) if a.generated else photo_image(a.photo, GOLDEN)
    path = tmp / f"{'generated' if a.generated else 'photo'}_{a.generated or a.photo}.png"
    rgb8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    assert cv2.imwrite(str(path), rgb8[:, :, ::-1])
    return path


def hrjax_run(image: Path, out: Path, weights: Path, cache: Path, a) -> dict:
    cmd = [sys.executable, str(ROOT / "cli.py"), "boost", str(image), "-o", str(out), "--mode", a.mode,
           "--weights-dir", str(weights), "--cache-dir", str(cache), "--grouped-conv", a.grouped_conv,
           "--save", "png16", "--json", "--overwrite"]
    if a.max_res:
        cmd += ["--max-res", str(a.max_res)]
    p, rss, wall = run_measured(cmd)
    rec = json.loads([ln for ln in p.stdout.splitlines() if ln.strip()][-1])
    t = rec["timings"]
    stages = {k: t.get(k, 0.0) for k in ("whole", "patch_low_passes", "patch_high_passes")}
    stages["merges"] = t.get("patch_double_merges", 0.0) + t.get("patch_base_merges", 0.0)
    return {"process_s": wall, "peak_rss_gb": rss, **stages, "n_patches": rec.get("n_patches"),
            "png": str(out / f"{image.stem}.png")}


def reference_run(image: Path, out_json: Path, a) -> dict:
    cmd = [str(a.reference_python), str(ROOT / "bench" / "reference_stages.py"), "--checkout", str(a.reference),
           "--golden", str(GOLDEN), "--image", str(image), "--mode", a.mode, "--json", str(out_json),
           "--output", str(out_json.parent / "reference_out")]
    if a.max_res:
        cmd += ["--max-res", str(a.max_res)]
    _, rss, wall = run_measured(cmd)
    rep = json.loads(out_json.read_text())
    return {"process_s": wall, "peak_rss_gb": rss, **rep["stages"], "calls": rep["calls"], "torch": rep["torch"],
            "threads": rep["threads"], "png": rep.get("png")}


def max_lsb(a_png: str | None, b_png: str | None) -> int | None:
    import cv2

    if not a_png or not b_png or not Path(a_png).is_file() or not Path(b_png).is_file():
        return None
    a = cv2.imread(a_png, cv2.IMREAD_UNCHANGED).astype(np.int64)
    b = cv2.imread(b_png, cv2.IMREAD_UNCHANGED).astype(np.int64)
    return int(np.abs(a - b).max()) if a.shape == b.shape else None


def median_run(runs: list[dict]) -> dict:
    """One run's record whose numbers are the medians over ``runs`` (other fields from the first run); a count
    stays an int where its median is whole (``n_patches``: 18, not 18.0)."""
    out = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            m = float(np.median([r[k] for r in runs]))
            out[k] = int(m) if isinstance(v, int) and m.is_integer() else m
    return out


def repeat_lines(repeats: dict[str, list[dict]]) -> list[str]:
    """Each run's whole-process ratios to the reference of the same repetition."""
    ref = repeats.get("reference")
    if not ref or len(ref) < 2:
        return []
    lines = []
    for i, r in enumerate(ref):
        cells = [f"{n} {repeats[n][i]['process_s']:.1f} s ({repeats[n][i]['process_s'] / r['process_s']:.2f}x)"
                 for n in repeats if n != "reference" and i < len(repeats[n])]
        lines.append(f"run {i + 1}: reference {r['process_s']:.1f} s, " + ", ".join(cells))
    return lines


def table(runs: dict[str, dict]) -> list[str]:
    names = list(runs)
    ref = runs.get("reference")
    head = f"| stage | {' | '.join(names)} |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    for label, key in ROWS:
        cells = []
        for n in names:
            v = runs[n].get(key)
            cell = "-" if v is None else (f"{v:.2f}" if key == "peak_rss_gb" else f"{v:.1f} s")
            if ref is not None and n != "reference" and v is not None and ref.get(key):
                cell += f" ({v / ref[key]:.2f}x)"
            cells.append(cell)
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--generated", help="a generated WxH pattern (bench.py's), e.g. 800x450")
    src.add_argument("--photo", help="the golden photo upscaled to WxH (bench.py's), e.g. 2000x1500")
    src.add_argument("--image", type=Path, help="an image file")
    ap.add_argument("--mode", default="final", choices=("r0", "r20", "final"))
    ap.add_argument("--max-res", type=float, default=None, help="the reference's --max_res (default: no cap)")
    ap.add_argument("--grouped-conv", default="auto", choices=GROUPED_IMPLS)
    ap.add_argument("--reference", type=Path, help="official BoostingMonocularDepth checkout")
    ap.add_argument("--reference-python", type=Path, help="a Python with torch for the reference")
    ap.add_argument("--skip-hrjax", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="run the trio (cold, warm, reference) N times; "
                    "the table gives medians")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if bool(a.reference) != bool(a.reference_python):
        ap.error("--reference and --reference-python go together")
    if a.repeats < 1:
        ap.error("--repeats must be at least 1")

    sys.path.insert(0, str(ROOT / "bench"))
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "mode": a.mode,
              "max_res": a.max_res, "grouped_conv": a.grouped_conv, "repeats": a.repeats, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="hrjax-side-by-side-") as tmp_:
        tmp = Path(tmp_)
        image = write_input(a, tmp)
        report["image"] = str(image)
        repeats: dict[str, list[dict]] = {}
        weights = None
        if not a.skip_hrjax:
            from hrjax.convert.synthetic import synthetic_store

            weights = synthetic_store(GOLDEN, tmp / "weights")
        for i in range(a.repeats):
            tag = f" ({i + 1}/{a.repeats})" if a.repeats > 1 else ""
            run_dir = tmp / f"run{i + 1}"
            if weights is not None:
                cache = run_dir / "jax-cache"  # empty for each repetition's cold run
                for name in ("hrjax cold", "hrjax warm"):
                    print(f"running {name}{tag} ...", file=sys.stderr, flush=True)
                    repeats.setdefault(name, []).append(
                        hrjax_run(image, run_dir / name.replace(" ", "_"), weights, cache, a))
            if a.reference:
                print(f"running the reference{tag} ...", file=sys.stderr, flush=True)
                run_dir.mkdir(parents=True, exist_ok=True)
                repeats.setdefault("reference", []).append(reference_run(image, run_dir / "reference.json", a))
        runs = report["runs"] = {n: median_run(rs) for n, rs in repeats.items()}
        if a.repeats > 1:
            report["each_run"] = repeats
        what = f", median of {a.repeats} runs each" if a.repeats > 1 else ""
        lines = [f"{image.name}, mode {a.mode}, max_res {a.max_res or 'none'}, grouped conv {a.grouped_conv}, "
                 f"{os.cpu_count()} CPUs{what}"] + table(runs) + repeat_lines(repeats)
        if "hrjax warm" in repeats and "reference" in repeats:
            lsb = [max_lsb(w["png"], r.get("png")) for w, r in zip(repeats["hrjax warm"], repeats["reference"])]
            worst = None if None in lsb else max(lsb)
            report["max_lsb_vs_reference"] = worst
            lines.append(f"written 16-bit maps, max difference: {worst if worst is not None else 'not compared'} LSB")
        print("\n".join(lines))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
