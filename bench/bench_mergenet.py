"""Merge net (unet_1024) speed and memory on this machine: hrjax (both transposed-conv formulations) vs PyTorch.

    python bench/bench_mergenet.py [--threads 2] [--repeats 3] [--batch 4] [--golden DIR]

Prints: warm time of one 1x1024x1024 pass (hrjax jitted, phase / dilated; PyTorch eager, no_grad, same
synthetic weights, ``torch.set_num_threads``), the max |hrjax - torch| on that pass, and for a batch of
``--batch``: XLA's compiled memory analysis and the peak RSS of a fresh process that runs one pass (hrjax and
PyTorch, each in its own subprocess so that neither one's memory counts in the other's figure).
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synth_tensors(golden: Path) -> dict[str, np.ndarray]:
    spec = importlib.util.spec_from_file_location("synth_weights", golden / "synth_weights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sd = mod.synth_state_dict(mod.load_manifest(golden / "manifests" / "mergenet.json"), seed=0)
    return {k: np.asarray(v, np.float32) for k, v in sd.items()}


def torch_unet():
    """pix2pix UnetGenerator(2, 1, 10, ngf=64, norm none, no dropout) from torch.nn layers, same module tree."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False):
            super().__init__()
            self.outermost = outermost
            input_nc = outer_nc if input_nc is None else input_nc
            down = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=False)
            if outermost:
                seq = [down, submodule, nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1),
                       nn.Tanh()]
            elif innermost:
                seq = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                       nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=False), nn.Identity()]
            else:
                seq = [nn.LeakyReLU(0.2, True), down, nn.Identity(), submodule, nn.ReLU(True),
                       nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=False), nn.Identity()]
            self.model = nn.Sequential(*seq)

        def forward(self, x):
            return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)

    class Unet(nn.Module):
        def __init__(self, ngf=64):
            super().__init__()
            b = Block(ngf * 8, ngf * 8, innermost=True)
            for _ in range(5):
                b = Block(ngf * 8, ngf * 8, submodule=b)
            b = Block(ngf * 4, ngf * 8, submodule=b)
            b = Block(ngf * 2, ngf * 4, submodule=b)
            b = Block(ngf, ngf * 2, submodule=b)
            self.model = Block(1, ngf, input_nc=2, submodule=b, outermost=True)

        def forward(self, x):
            return self.model(x)

    return Unet()


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would carry the parent's peak over fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args) -> None:
    """One pass of a batch in a fresh process; prints the peak RSS."""
    with np.load(args.weights) as z:
        tensors = {k: z[k] for k in z.files}
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch, 2, 1024, 1024)).astype(np.float32)
    if args.child == "torch":
        import torch
        torch.set_num_threads(args.threads)
        net = torch_unet().eval()
        net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
        base = peak_rss_mib()
        with torch.no_grad():
            net(torch.from_numpy(x))
    else:
        import jax.numpy as jnp
        from hrjax.models.mergenet import forward
        from hrjax.weights.load import state_from_torch_tensors
        graphdef, state = state_from_torch_tensors("mergenet", tensors)
        del tensors
        base = peak_rss_mib()
        forward(graphdef, state, jnp.asarray(x.transpose(0, 2, 3, 1)), impl=args.child).block_until_ready()
    print(f"{peak_rss_mib():.0f} {base:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--golden", type=Path, default=ROOT.parent / "shared" / "golden")
    ap.add_argument("--child", choices=("torch", "phase", "dilated"), help=argparse.SUPPRESS)
    ap.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from hrjax.cpu_backend import use_xla_convolutions
    use_xla_convolutions()  # as the CLI does, before JAX starts its CPU backend
    if args.child:
        return child(args)

    import jax
    import jax.numpy as jnp
    import torch

    from hrjax.models.mergenet import forward
    from hrjax.weights.load import state_from_torch_tensors

    torch.set_num_threads(args.threads)
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    tensors = synth_tensors(args.golden)
    graphdef, state = state_from_torch_tensors("mergenet", tensors)
    net = torch_unet().eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)

    x = np.random.default_rng(0).uniform(-1, 1, (1, 2, 1024, 1024)).astype(np.float32)
    xj = jnp.asarray(x.transpose(0, 2, 3, 1))
    outs = {}
    for impl in ("phase", "dilated"):
        t0 = time.perf_counter()
        outs[impl] = np.asarray(forward(graphdef, state, xj, impl=impl))[..., 0]
        print(f"hrjax {impl:8s}: first call (compile + run) {time.perf_counter() - t0:.2f} s")
    xt = torch.from_numpy(x)
    with torch.no_grad():
        ref = net(xt)[:, 0].numpy()
    runs = {
        "phase": lambda: forward(graphdef, state, xj, impl="phase").block_until_ready(),
        "dilated": lambda: forward(graphdef, state, xj, impl="dilated").block_until_ready(),
        "torch": lambda: net(xt),
    }
    ts = {k: [] for k in runs}
    with torch.no_grad():
        for _ in range(args.repeats):  # interleaved, so that load from other processes hits all three alike
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                ts[k].append(time.perf_counter() - t0)
    times = {k: min(v) for k, v in ts.items()}
    for k, v in ts.items():
        print(f"{'hrjax ' + k if k != 'torch' else 'torch eager':14s}: warm 1x1024x1024 pass min {min(v):.3f} s "
              f"(all: {', '.join(f'{t:.3f}' for t in v)})")
    rng_ = ref.max() - ref.min()
    for impl in ("phase", "dilated"):
        print(f"max|hrjax {impl} - torch| / range = {np.abs(outs[impl] - ref).max() / rng_:.3g}; "
              f"torch / hrjax {impl} time = {times['torch'] / times[impl]:.2f}x")

    xb = jax.ShapeDtypeStruct((args.batch, 1024, 1024, 2), jnp.float32)
    for impl in ("phase", "dilated"):
        ma = forward.lower(graphdef, state, xb, impl=impl).compile().memory_analysis()
        if ma is not None:
            mib = 1 << 20
            print(f"XLA memory analysis, batch {args.batch}, {impl}: temp {ma.temp_size_in_bytes / mib:.0f} MiB, "
                  f"args {ma.argument_size_in_bytes / mib:.0f} MiB, out {ma.output_size_in_bytes / mib:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        wfile = Path(tmp) / "mergenet_synth.npz"
        np.savez(wfile, **tensors)
        for who in ("phase", "dilated", "torch"):
            cmd = [sys.executable, __file__, "--child", who, "--batch", str(args.batch), "--threads",
                   str(args.threads), "--weights", str(wfile)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
            print(f"peak RSS, batch {args.batch}, {who:8s}: {out[0]} MiB (before the pass, weights loaded: "
                  f"{out[1]} MiB; the pass adds {int(out[0]) - int(out[1])} MiB)")


if __name__ == "__main__":
    main()
