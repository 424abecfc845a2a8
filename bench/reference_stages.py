"""Run the official BoostingMonocularDepth ``run.py`` on CPU with the golden synthetic weights and time its stages.
Not part of hrjax: run it with the Python that has torch (and the reference's requirements), usually through
``bench/side_by_side.py``.

    REF_PYTHON bench/reference_stages.py --checkout PATH --golden DIR --image IMG --mode final [--max-res N]
                                         --json OUT [--threads N]

The checkout is used as it is (nothing of it is copied into hrjax): a scratch folder gets links to its code
plus the synthetic checkpoints where ``run.py`` looks for them (``midas/model.pt``,
``pix2pix/checkpoints/mergemodel/latest_net_G.pth``), and the module's ``run()`` is called with the reference's
own arguments. Three things are changed from outside, all needed to run at all on a CPU-only machine without
network: the module's ``device`` becomes the CPU and the merge net gets ``--gpu_ids -1``; MiDaS's encoder, which
run.py fetches with ``torch.hub.load("facebookresearch/WSL-Images", "resnext101_32x8d_wsl")``, is built as
torchvision's ``resnext101_32x8d()`` (the same module tree, as for the goldens: golden README, reference
environment; its weights are replaced by the checkpoint's anyway); with numpy 2, ``np.RankWarning`` (removed) is
aliased first. Stages are timed by wrapping the reference's functions:

- whole image: the first ``doubleestimate`` of the image (two MiDaS passes and one merge);
- patch low / high passes: ``singleestimate`` at the receptive field / at twice it inside later calls;
- merges: ``Pix2Pix4DepthModel.test`` outside the whole-image call (a patch's double estimate and its merge
  with the base);
each stage with the reference's own pre- and post-processing around the network call. Peak RSS is this
process's ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def scratch_checkout(checkout: Path, golden: Path, into: Path) -> None:
    """``into`` laid out like the checkout, code linked, synthetic checkpoints written where run.py loads them."""
    for name in ("run.py", "utils.py", "lib"):
        (into / name).symlink_to(checkout / name)
    (into / "midas").mkdir()
    for q in (checkout / "midas").iterdir():
        if q.name != "model.pt":
            (into / "midas" / q.name).symlink_to(q)
    (into / "pix2pix").mkdir()
    for q in (checkout / "pix2pix").iterdir():
        if q.name != "checkpoints":
            (into / "pix2pix" / q.name).symlink_to(q)
    ckpt = into / "pix2pix" / "checkpoints" / "mergemodel"
    ckpt.mkdir(parents=True)
    sys.path.insert(0, str(golden))
    import synth_weights  # the golden folder's numpy weight rule with its torch writer (golden README 2)

    for manifest, path in (("midas_v21", into / "midas" / "model.pt"), ("mergenet", ckpt / "latest_net_G.pth")):
        sd = synth_weights.synth_state_dict(synth_weights.load_manifest(golden / "manifests" / f"{manifest}.json"))
        synth_weights.save_torch(sd, path)


class StageClock:
    """Seconds per stage, attributed by where in ``run()`` a wrapped call happens."""

    def __init__(self, receptive_field: int = 384):
        self.receptive_field = receptive_field  # patch passes at it are the low ones, at twice it the high ones
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.double_calls = 0
        self.in_whole = False

    def add(self, stage: str, secs: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + secs
        self.calls[stage] = self.calls.get(stage, 0) + 1

    def wrap(self, run_module, model_class) -> None:
        double, single, test = run_module.doubleestimate, run_module.singleestimate, model_class.test
        clock = self

        def doubleestimate(img, size1, size2, pix2pixsize, net_type):
            clock.double_calls += 1
            clock.in_whole = clock.double_calls == 1
            t = time.perf_counter()
            try:
                return double(img, size1, size2, pix2pixsize, net_type)
            finally:
                if clock.in_whole:
                    clock.add("whole", time.perf_counter() - t)
                clock.in_whole = False

        def singleestimate(img, msize, net_type):
            t = time.perf_counter()
            try:
                return single(img, msize, net_type)
            finally:
                if not clock.in_whole:
                    low = msize <= clock.receptive_field
                    clock.add("patch_low_passes" if low else "patch_high_passes", time.perf_counter() - t)

        def timed_test(self_model):
            t = time.perf_counter()
            try:
                return test(self_model)
            finally:
                if not clock.in_whole:
                    clock.add("merges", time.perf_counter() - t)

        run_module.doubleestimate, run_module.singleestimate = doubleestimate, singleestimate
        model_class.test = timed_test


def offline_wsl_encoder(torch) -> None:
    """``torch.hub.load`` of the WSL ResNeXt-101 32x8d gives torchvision's architecture, uninitialised weights
    (MidasNet loads the whole checkpoint over them); any other hub call is refused."""
    import torchvision

    def hub_load(repo, model, *args, **kwargs):
        if (repo.split(":")[0], model) != ("facebookresearch/WSL-Images", "resnext101_32x8d_wsl"):
            raise RuntimeError(f"offline: torch.hub.load({repo!r}, {model!r})")
        return torchvision.models.resnext101_32x8d(weights=None)
    torch.hub.load = hub_load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", type=Path, required=True, help="official BoostingMonocularDepth checkout")
    ap.add_argument("--golden", type=Path, required=True, help="the golden folder (synth_weights.py)")
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--mode", default="final", choices=("r0", "r20", "final"))
    ap.add_argument("--max-res", type=float, default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--output", type=Path, help="keep the reference's written map here (default: discarded)")
    a = ap.parse_args()

    t_start = time.perf_counter()
    import numpy as np
    import torch

    if not hasattr(np, "RankWarning"):
        np.RankWarning = np.exceptions.RankWarning  # run.py filters it at import; numpy 2 moved it
    if a.threads:
        torch.set_num_threads(a.threads)
    offline_wsl_encoder(torch)
    checkout, golden = a.checkout.resolve(), a.golden.resolve()
    with tempfile.TemporaryDirectory(prefix="hrjax-reference-") as tmp:
        work = Path(tmp) / "checkout"
        work.mkdir()
        scratch_checkout(checkout, golden, work)
        data, out = Path(tmp) / "in", (a.output.resolve() if a.output else Path(tmp) / "out")
        data.mkdir()
        shutil.copy(a.image, data / a.image.name)
        sys.path.insert(0, str(work))
        # run() parses the merge net's options (TestOptions) from sys.argv: the CPU's --gpu_ids -1 goes there
        sys.argv = ["run.py", "--data_dir", str(data) + "/", "--output_dir", str(out) + "/", f"--{a.mode.upper()}"
                    if a.mode != "final" else "--Final", "--gpu_ids", "-1"]
        if a.max_res:
            sys.argv += ["--max_res", str(a.max_res)]
        prev = os.getcwd()
        os.chdir(work)
        try:
            with contextlib.redirect_stdout(sys.stderr):  # run.py prints its progress; stdout stays clean
                import run as reference
                from pix2pix.models.pix2pix4depth_model import Pix2Pix4DepthModel
                from utils import ImageDataset

                reference.device = torch.device("cpu")
                clock = StageClock()
                clock.wrap(reference, Pix2Pix4DepthModel)
                parser_args = reference_args(data, out, a)
                t_import = time.perf_counter()
                reference.run(ImageDataset(str(data) + "/", "test"), parser_args)
                t_end = time.perf_counter()
        finally:
            os.chdir(prev)
        written = sorted(str(q) for q in out.iterdir()) if out.is_dir() else []
    report = {"tool": "reference", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "process_s": t_end - t_start, "run_s": t_end - t_import, "stages": clock.seconds,
              "calls": clock.calls, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
              "written": written, "png": next((w for w in written if w.endswith(".png")), None)}
    a.json.write_text(json.dumps(report, indent=1))


def reference_args(data: Path, out: Path, a) -> argparse.Namespace:
    """The namespace run.py's ``__main__`` builds for MiDaS (depthNet 0): receptive field 384, patches at 768."""
    ns = argparse.Namespace(data_dir=str(data) + "/", output_dir=str(out) + "/", savepatchs=0, savewholeest=0,
                            output_resolution=1, net_receptive_field_size=384, pix2pixsize=1024, depthNet=0,
                            colorize_results=False, R0=a.mode == "r0", R20=a.mode == "r20", Final=a.mode == "final",
                            max_res=a.max_res if a.max_res else float("inf"))
    ns.patch_netsize = 2 * ns.net_receptive_field_size
    return ns


if __name__ == "__main__":
    main()
