"""MiDaS v2.1 large: one jitted forward on this machine next to the same network in PyTorch.

    python bench/bench_midas.py [--size 384] [--threads 2] [--repeats 3] [--golden DIR]
                                [--grouped-impl auto|native|split|packed|kernel ...] [--cpu-convolutions xla|ynnpack]

Prints the compile time (first call) and the warm time of one 1 x size x size pass in hrjax (jitted) and
PyTorch (eager, no_grad, ``torch.set_num_threads``), with the same synthetic weights, and the max difference.
``--cpu-convolutions ynnpack`` leaves jaxlib's CPU default (convolutions on YNNPACK) instead of hrjax's
(:mod:`hrjax.cpu_backend`), to measure the difference. The PyTorch net is torchvision's ResNeXt-101 32x8d
module tree + MiDaS's scratch/decoder, written out with torch.nn here (torchvision is not a dependency).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def torch_midas():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, planes, stride, down):
            super().__init__()
            width, out = planes * 4, planes * 4
            self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=32, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3, self.bn3 = nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out)
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out)) \
                if down else None

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = F.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return F.relu(y + (self.downsample(x) if self.downsample is not None else x))

    def layer(cin, planes, n, stride):
        return nn.Sequential(Bottleneck(cin, planes, stride, True), *[Bottleneck(planes * 4, planes, 1, False)
                                                                      for _ in range(n - 1)])

    class RCU(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(256, 256, 3, 1, 1), nn.Conv2d(256, 256, 3, 1, 1)

        def forward(self, x):
            x = F.relu(x)  # the reference's in-place ReLU: the skip is ReLU(x)
            return self.conv2(F.relu(self.conv1(x))) + x

    class Fusion(nn.Module):
        def __init__(self):
            super().__init__()
            self.resConfUnit1, self.resConfUnit2 = RCU(), RCU()

        def forward(self, *xs):
            out = xs[0] if len(xs) == 1 else xs[0] + self.resConfUnit1(xs[1])
            return F.interpolate(self.resConfUnit2(out), scale_factor=2, mode="bilinear", align_corners=True)

    class Interp(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pretrained = nn.Module()
            self.pretrained.layer1 = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                                   nn.ReLU(), nn.MaxPool2d(3, 2, 1), layer(64, 64, 3, 1))
            self.pretrained.layer2 = layer(256, 128, 4, 2)
            self.pretrained.layer3 = layer(512, 256, 23, 2)
            self.pretrained.layer4 = layer(1024, 512, 3, 2)
            self.scratch = nn.Module()
            for k, c in enumerate((256, 512, 1024, 2048), 1):
                setattr(self.scratch, f"layer{k}_rn", nn.Conv2d(c, 256, 3, 1, 1, bias=False))
                setattr(self.scratch, f"refinenet{k}", Fusion())
            self.scratch.output_conv = nn.Sequential(nn.Conv2d(256, 128, 3, 1, 1), Interp(),
                                                     nn.Conv2d(128, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 1, 1),
                                                     nn.ReLU())

        def forward(self, x):
            p, s = self.pretrained, self.scratch
            l1 = p.layer1(x)
            l2 = p.layer2(l1)
            l3 = p.layer3(l2)
            l4 = p.layer4(l3)
            p4 = s.refinenet4(s.layer4_rn(l4))
            p3 = s.refinenet3(p4, s.layer3_rn(l3))
            p2 = s.refinenet2(p3, s.layer2_rn(l2))
            p1 = s.refinenet1(p2, s.layer1_rn(l1))
            return s.output_conv(p1)[:, 0]

    return Net()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--golden", type=Path, default=ROOT.parent / "shared" / "golden")
    ap.add_argument("--grouped-impl", nargs="+", default=["auto"],
                    help="grouped-conv formulations to time (hrjax.models.layers.GROUPED_IMPLS)")
    ap.add_argument("--cpu-convolutions", choices=["xla", "ynnpack"], default="xla",
                    help="who runs the convolutions on CPU: XLA (hrjax's setting) or YNNPACK (jaxlib's default)")
    a = ap.parse_args()
    if a.cpu_convolutions == "xla":
        from hrjax.cpu_backend import use_xla_convolutions
        use_xla_convolutions()  # before JAX starts its CPU backend

    import jax
    import jax.numpy as jnp
    import torch

    from flax import nnx

    from hrjax.models.layers import set_grouped_impl
    from hrjax.models.midas_v21 import predictor
    from hrjax.weights.load import state_from_torch_tensors

    torch.set_num_threads(a.threads)
    spec = importlib.util.spec_from_file_location("synth_weights", a.golden / "synth_weights.py")
    sw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sw)
    tensors = sw.synth_state_dict(sw.load_manifest(a.golden / "manifests" / "midas_v21.json"))
    graphdef, state = state_from_torch_tensors("midas_v21", tensors)
    net = torch_midas().eval()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, strict=True)
    predicts = {impl: predictor(nnx.split(set_grouped_impl(nnx.merge(graphdef, state), impl))[0])
                for impl in a.grouped_impl}

    x = np.random.default_rng(0).standard_normal((1, 3, a.size, a.size)).astype(np.float32)
    xj = jnp.asarray(x.transpose(0, 2, 3, 1))
    compile_s, outs = {}, {}
    for impl, predict in predicts.items():
        t0 = time.perf_counter()
        outs[impl] = np.asarray(predict(state, xj))
        compile_s[impl] = time.perf_counter() - t0
    xt = torch.from_numpy(x)
    ts = {name: [] for name in [*predicts, "torch"]}
    with torch.no_grad():
        ref = net(xt).numpy()
        for _ in range(a.repeats):
            for impl, predict in predicts.items():
                t0 = time.perf_counter()
                predict(state, xj).block_until_ready()
                ts[impl].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            net(xt)
            ts["torch"].append(time.perf_counter() - t0)
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}, convolutions: {a.cpu_convolutions}), "
          f"torch {torch.__version__} ({a.threads} threads)")
    print(f"MiDaS 1x{a.size}x{a.size}: warm pass torch {min(ts['torch']):.3f} s")
    for impl in predicts:
        err = np.abs(outs[impl] - ref).max() / (ref.max() - ref.min())
        print(f"  hrjax grouped_impl={impl}: first call (compile + run) {compile_s[impl]:.2f} s, "
              f"warm {min(ts[impl]):.3f} s (torch/hrjax {min(ts['torch']) / min(ts[impl]):.2f}x), "
              f"max|hrjax - torch| / range = {err:.2e}")


if __name__ == "__main__":
    main()
