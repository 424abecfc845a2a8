#!/usr/bin/env python
"""Pipeline goldens for LeReS (``run.py --depthNet 2``) from the official BoostingMonocularDepth code, on CPU.

Not part of hrjax or its tests: it imports the official checkout given on the command line, runs its ``run.run``
unchanged with synthetic weights (golden README 2) and records what the MiDaS pipeline goldens record (golden
README 5) by wrapping the reference's functions at run time. No file of the checkout is edited; what needs CUDA
is patched at run time:
- ``run.device`` (``torch.device("cuda")`` at import, run.py l. 32) becomes the CPU;
- ``RelDepthModel.inference`` moves its input with ``rgb.cuda()`` (lib/multi_depth_model_woauxi.py l. 17):
  ``torch.Tensor.cuda`` returns the tensor itself while the run lasts;
- the merge net gets ``--gpu_ids -1`` through ``sys.argv``, which ``TestOptions().parse()`` reads (run.py l. 48).
Also: numpy 2 has no ``np.RankWarning`` (run.py l. 29 uses it at import): aliased to np.exceptions.RankWarning.

The reference loads ``res101.pth`` and ``./pix2pix/checkpoints/mergemodel/latest_net_G.pth`` relative to the
working directory (run.py l. 51, 71): both are written, synthetic, into a scratch folder that becomes the cwd.

Usage (a Python with torch, torchvision, opencv-python-headless 5, scikit-image, matplotlib):
  python tools/make_leres_goldens.py --reference /path/to/BoostingMonocularDepth --golden ../shared/golden \
      --out /tmp/leres_goldens_full [--cases synthetic_480:R0 lunch_640:Final:1500 ...]
Each case writes ``<out>/<image>_<mode>[_mr<max_res>].npz`` with every key of golden README 5 (full maps, float32)
and a line in ``<out>/runs_summary.json``; ``--pack DIR`` then writes the small committed form (see pack()).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RECEPTIVE_FIELD = 448      # run.py l. 570-572 (--depthNet 2)
DEFAULT_CASES = ("synthetic_480:R0", "synthetic_480:R20", "synthetic_480:Final:1500",
                 "lunch_640:R0", "lunch_640:R20", "lunch_640:Final:1500")


def load_golden_module(golden: Path, name: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, golden / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_synthetic_checkpoints(golden: Path, workdir: Path) -> None:
    """res101.pth in the official layout ({"depth_model": {"module." + key: tensor}}) and the merge net's plain
    state_dict, both from synth_weights.py (seed 0)."""
    import torch
    synth = load_golden_module(golden, "synth_weights")
    leres = synth.synth_state_dict(synth.load_manifest(golden / "manifests" / "leres_res101.json"), seed=0)
    sd = collections.OrderedDict((f"module.{k}", torch.from_numpy(np.array(v, order="C", copy=True)))
                                 for k, v in leres.items())
    torch.save({"depth_model": sd}, workdir / "res101.pth")
    merge_dir = workdir / "pix2pix" / "checkpoints" / "mergemodel"
    merge_dir.mkdir(parents=True)
    synth.save_torch(synth.synth_state_dict(synth.load_manifest(golden / "manifests" / "mergenet.json"), seed=0),
                     merge_dir / "latest_net_G.pth")


def import_reference(reference: Path):
    """``run`` of the official checkout, imported as a module (its __main__ block does not run)."""
    if not hasattr(np, "RankWarning"):
        np.RankWarning = np.exceptions.RankWarning  # run.py l. 29, written for numpy 1.x
    sys.path.insert(0, str(reference))
    import run  # noqa: E402  (the official run.py)
    import torch
    run.device = torch.device("cpu")
    return run


class Recorder:
    """Wraps the reference's functions for one run; everything observed lands in ``self.rec``."""

    def __init__(self, run):
        self.run = run
        self.rec = collections.defaultdict(list)

    @contextlib.contextmanager
    def active(self):
        import midas.utils
        import torch
        import utils
        from lib.multi_depth_model_woauxi import RelDepthModel
        from pix2pix.models.pix2pix4depth_model import Pix2Pix4DepthModel

        run, rec = self.run, self.rec
        patches = []

        def wrap(owner, name, make):
            old = getattr(owner, name)
            patches.append((owner, name, old))
            setattr(owner, name, make(old))

        def calc(old):
            def f(img, *a, **k):
                out = old(img, *a, **k)
                rec["processingres"].append(out)
                return out
            return f

        def single(old):
            def f(img, msize, net_type):
                out = old(img, msize, net_type)
                rec["single_calls"].append((img.shape[0], img.shape[1], msize))
                rec["singles"].append(np.array(out, copy=True))
                return out
            return f

        def double(old):
            def f(img, size1, size2, pix2pixsize, net_type):
                out = old(img, size1, size2, pix2pixsize, net_type)
                rec["doubles"].append(np.array(out, copy=True))
                return out
            return f

        def inference(old):
            def f(self, rgb):
                rec["base_call_shapes"].append(tuple(rgb.shape))
                t0 = time.perf_counter()
                out = old(self, rgb)
                rec["base_call_s"].append(time.perf_counter() - t0)
                return out
            return f

        def merge_forward(old):
            def f(self):
                rec["merge_call_shapes"].append(tuple(self.real_A.shape))
                return old(self)
            return f

        def gen_patches(old):
            def f(img, base_size):
                out = old(img, base_size)
                rec["target_size"].append(img.shape[:2])
                rec["patchset"].append(out)
                return out
            return f

        def iap_init(old):
            def f(self, *a, **k):
                old(self, *a, **k)
                rec["imageandpatchs"].append(self)
            return f

        def iap_getitem(old):
            def f(self, index):
                out = old(self, index)
                rec["rects_scaled"].append(np.array(out["rect"]))
                return out
            return f

        def iap_base(old):
            def f(self, est):
                rec["base_estimate"].append(np.array(est, copy=True))
                return old(self, est)
            return f

        def polyfit(old):
            def f(x, y, deg, *a, **k):
                out = old(x, y, deg, *a, **k)
                rec["mapped"].append(np.array(x, copy=True))
                rec["polyfit"].append(np.array(out, copy=True))
                return out
            return f

        def write_depth(old):
            def f(path, depth, bits=1, colored=False):
                rec["written_float"].append(np.array(depth, copy=True))
                rec["written_path"].append(path + ".png")
                return old(path, depth, bits=bits, colored=colored)
            return f

        wrap(run, "calculateprocessingres", calc)
        wrap(run, "singleestimate", single)
        wrap(run, "doubleestimate", double)
        wrap(run, "generatepatchs", gen_patches)
        wrap(RelDepthModel, "inference", inference)
        wrap(Pix2Pix4DepthModel, "forward", merge_forward)
        wrap(utils.ImageandPatchs, "__init__", iap_init)
        wrap(utils.ImageandPatchs, "__getitem__", iap_getitem)
        wrap(utils.ImageandPatchs, "set_base_estimate", iap_base)
        wrap(np, "polyfit", polyfit)
        wrap(midas.utils, "write_depth", write_depth)
        # CPU only: the reference's ``rgb.cuda()`` (lib/multi_depth_model_woauxi.py l. 17) keeps the tensor
        wrap(torch.Tensor, "cuda", lambda old: (lambda self, *a, **k: self))
        try:
            yield self
        finally:
            for owner, name, old in reversed(patches):
                setattr(owner, name, old)


def run_case(run, reference_golden: Path, image: str, mode: str, max_res: float | None, workdir: Path) -> dict:
    import cv2
    import utils

    data_dir = workdir / f"in_{image}"
    out_dir = workdir / f"out_{image}_{mode}"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir()
    src = reference_golden / "images" / f"{image}.png"
    shutil.copy(src, data_dir / src.name)
    argv = ["run.py", "--data_dir", str(data_dir), "--output_dir", str(out_dir), "--depthNet", "2", f"--{mode}",
            "--gpu_ids", "-1"] + (["--max_res", str(max_res)] if max_res is not None else [])
    # run.py's own option defaults (l. 531-574) for --depthNet 2
    option = argparse.Namespace(
        data_dir=str(data_dir), output_dir=str(out_dir), savepatchs=0, savewholeest=0, output_resolution=1,
        net_receptive_field_size=RECEPTIVE_FIELD, patch_netsize=2 * RECEPTIVE_FIELD, pix2pixsize=1024,
        depthNet=2, colorize_results=False, R0=mode == "R0", R20=mode == "R20", Final=mode == "Final",
        max_res=float(max_res) if max_res is not None else np.inf)
    sys.argv = argv
    dataset = utils.ImageDataset(str(data_dir), "test")
    recorder = Recorder(run)
    t0 = time.perf_counter()
    with recorder.active():
        run.run(dataset, option)
    wall = time.perf_counter() - t0
    rec = recorder.rec

    img = utils.read_image(str(data_dir / src.name))
    R, K = rec["processingres"][0]
    R0, R0_K = utils.calculateprocessingres(img, RECEPTIVE_FIELD, 0, 3, 3000)  # run.py l. 118 with x = 0
    c = {
        "image_path": np.array(f"images/{src.name}"), "mode": np.array(mode),
        "options_json": np.array(json.dumps({"depthNet": 2, "max_res": max_res, "output_resolution": 1})),
        "input_shape": np.array(img.shape, np.int64),
        "R": np.int64(R), "K": np.float64(K), "R0": np.int64(R0), "R0_K": np.float64(R0_K),
        "whole_single_low": rec["singles"][0].astype(np.float32),
        "whole_single_high": rec["singles"][1].astype(np.float32),
        "whole_high_msize_requested": np.int64(rec["single_calls"][1][2]),
        "whole_double": rec["doubles"][0].astype(np.float32),
        "written_float": rec["written_float"][-1].astype(np.float32),
        "written_png": cv2.imread(rec["written_path"][-1], cv2.IMREAD_UNCHANGED),
        # "midas_call_shapes": the base network's forwards (LeReS here), named as in the MiDaS goldens
        "midas_call_shapes": np.array(rec["base_call_shapes"], np.int64).reshape(-1, 4),
        "merge_call_shapes": np.array(rec["merge_call_shapes"], np.int64).reshape(-1, 4),
        "single_calls": np.array(rec["single_calls"], np.int64).reshape(-1, 3),
    }
    if mode == "Final" and rec["patchset"]:
        iap = rec["imageandpatchs"][0]
        patchset = rec["patchset"][0]
        n = len(patchset)
        c.update({
            "factor": np.float64(run.factor), "target_size": np.array(rec["target_size"][0], np.int64),
            "n_patches": np.int64(n), "patch_ids": np.array([int(p[0]) for p in patchset], np.int64),
            "patch_rects_target": np.array([p[1]["rect"] for p in patchset], np.int64).reshape(-1, 4),
            "patch_rects_scaled": np.array(rec["rects_scaled"], np.int64).reshape(-1, 4),
            "mergein_scale": np.float64(iap.scale),
            "mergein_shape": np.array(rec["base_estimate"][0].shape, np.int64),
            "base_estimate_resized": rec["base_estimate"][0].astype(np.float32),
            "final_estimate": np.asarray(iap.estimation_updated_image, np.float32),
            "patch_polyfit": np.array(rec["polyfit"], np.float64).reshape(-1, 2),
        })
        if n:
            c.update({"patch_000_single_low": rec["singles"][2].astype(np.float32),
                      "patch_000_single_high": rec["singles"][3].astype(np.float32),
                      "patch_000_double": rec["doubles"][1].astype(np.float32),
                      "patch_000_mapped": rec["mapped"][0].reshape(1024, 1024).astype(np.float32)})
    shapes = collections.Counter(f"{s[2]}x{s[3]}" for s in rec["base_call_shapes"])
    summary = {"wall_s": round(wall, 1), "R": int(R), "K": float(K),
               "factor": float(run.factor) if mode == "Final" else None,
               "target": list(map(int, rec["target_size"][0])) if rec["target_size"] else None,
               "n_patches": int(c.get("n_patches", 0)), "base_passes": len(rec["base_call_shapes"]),
               "base_s": round(sum(rec["base_call_s"]), 1), "base_input_sizes": dict(shapes),
               "merge_passes": len(rec["merge_call_shapes"]), "command": " ".join(argv),
               "options": {"max_res": max_res, "output_resolution": 1}}
    return c, summary


def environment(reference: Path) -> dict:
    import cv2
    import skimage
    import torch
    import torchvision
    try:
        commit = subprocess.run(["git", "-C", str(reference), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "cv2": cv2.__version__, "skimage": skimage.__version__,
            "torch_threads": torch.get_num_threads(), "reference_commit": commit}


def parse_case(text: str) -> tuple[str, str, float | None]:
    parts = text.split(":")
    image, mode = parts[0], parts[1]
    if mode not in ("R0", "R20", "Final"):
        raise argparse.ArgumentTypeError(f"mode must be R0, R20 or Final: {text}")
    max_res = float(parts[2]) if len(parts) > 2 else None
    return image, mode, (int(max_res) if max_res is not None and max_res.is_integer() else max_res)


def case_name(image: str, mode: str, max_res) -> str:
    return f"{image}_{mode}" + (f"_mr{max_res}" if max_res is not None else "")


# --- the small committed form -------------------------------------------------------------------------------

PACK_STEP = 8          # every 8th row and column of each map (from the first)
MIN_MAP_SIDE = 64      # a 2-D array with both sides >= this is a map (image, 1024^2 or patch sized)


def is_map(a: np.ndarray) -> bool:
    return a.ndim == 2 and min(a.shape) >= MIN_MAP_SIDE and a.dtype.kind in "fu"


def pack_arrays(arrays: dict[str, np.ndarray], step: int = PACK_STEP) -> dict[str, np.ndarray]:
    """Every map ``k`` (float maps as float32, written_png as uint16) becomes ``k`` = ``map[::step, ::step]``
    plus ``k__stats`` = [mean, std, min, max] of the full map (float64) and ``k__shape``; every other key
    (bookkeeping, call logs, scalars, patch_polyfit) is kept as it is; ``pack_step`` records ``step``."""
    out: dict[str, np.ndarray] = {"pack_step": np.int64(step)}
    for k, a in arrays.items():
        a = np.asarray(a)
        if not is_map(a):
            out[k] = a
            continue
        full = a.astype(np.float64)
        out[k] = a[::step, ::step].astype(np.uint16 if a.dtype == np.uint16 else np.float32)
        out[f"{k}__stats"] = np.array([full.mean(), full.std(), full.min(), full.max()])
        out[f"{k}__shape"] = np.array(a.shape, np.int64)
    return out


def pack(full_dir: Path, dest: Path, step: int = PACK_STEP) -> None:
    """``<full_dir>/*.npz`` -> ``<dest>/*.npz`` (compressed, :func:`pack_arrays`), and runs_summary.json."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(full_dir.glob("*.npz")):
        with np.load(f) as g:
            packed = pack_arrays({k: g[k] for k in g.files}, step)
        np.savez_compressed(dest / f.name, **packed)
        print(f"{f.name}: {f.stat().st_size / 1e6:.1f} MB -> {(dest / f.name).stat().st_size / 1e3:.0f} kB")
    shutil.copyfile(full_dir / "runs_summary.json", dest / "runs_summary.json")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reference", type=Path, help="BoostingMonocularDepth checkout (fa16de0)")
    p.add_argument("--golden", type=Path, help="the shared golden folder (images, manifests)")
    p.add_argument("--out", type=Path, required=True, help="folder for the full npz files")
    p.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="IMAGE:MODE[:MAX_RES] ...")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pack", type=Path, metavar="DIR", help="only write the small form of the npz files in "
                   "--out to DIR (no reference run): see pack_arrays()")
    a = p.parse_args(argv)
    if a.pack is not None:
        pack(a.out.resolve(), a.pack.resolve())
        return 0
    if a.reference is None or a.golden is None:
        p.error("--reference and --golden are needed to run the reference (or give --pack)")

    import torch
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    reference, golden, out = a.reference.resolve(), a.golden.resolve(), a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "runs_summary.json"
    summaries = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="leres-goldens-") as tmp:
        work = Path(tmp)
        write_synthetic_checkpoints(golden, work)
        os.chdir(work)  # the reference's relative checkpoint paths (run.py l. 51, 71)
        try:
            run = import_reference(reference)
            for text in a.cases:
                image, mode, max_res = parse_case(text)
                name = case_name(image, mode, max_res)
                print(f"== {name}", flush=True)
                arrays, summary = run_case(run, golden, image, mode, max_res, work)
                np.savez(out / f"{name}.npz", **arrays)
                summaries[name] = summary | {"environment": environment(reference)}
                summary_path.write_text(json.dumps(summaries, indent=1) + "\n")
                print(json.dumps(summary), flush=True)
        finally:
            os.chdir(cwd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
