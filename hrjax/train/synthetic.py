"""A tiny synthetic merge dataset and a tiny training configuration, for tests and smoke runs."""

from pathlib import Path

import cv2
import numpy as np


def write_synthetic_dataset(root: Path, n: int = 6, size: int = 32, seed: int = 0, phase: str = "train") -> Path:
    """``n`` 16-bit PNG triplets in the SPEC-TRAINING 2 layout: a ramp plus a disk (gtfake), its blurred
    version (outer) and a detailed but distorted version (inner)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        a, b = rng.uniform(-1, 1, 2)
        cy, cx = rng.uniform(0.3, 0.7, 2)
        r = rng.uniform(0.15, 0.3)
        base = a * xx + b * yy + ((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2)
        maps = {"gtfake": base + 0.02 * rng.standard_normal(base.shape),
                "outer": cv2.GaussianBlur(base, (0, 0), 3),
                "inner": 0.7 * base + 0.3 * np.sin(xx * 20 + i) + 0.05 * rng.standard_normal(base.shape)}
        for folder, m in maps.items():
            d = Path(root) / phase / folder
            d.mkdir(parents=True, exist_ok=True)
            m = (m - m.min()) / (m.max() - m.min())
            cv2.imwrite(str(d / f"scene{i // 3}_&{i % 3}_{i}&.png"), (65535 * m).astype(np.uint16))
    return Path(root)


def tiny_config(**kw):
    from hrjax.train.nets import NetConfig
    from hrjax.train.step import TrainConfig

    args = dict(net=NetConfig(ngf=4, num_downs=5, ndf=4), net_size=32, gf_radius=4, epochs=2, decay_epochs=1,
                batch_size=4)
    args.update(kw)
    return TrainConfig(**args)
