"""MiDaS v2.1 "large": MidasNet with a ResNeXt-101 32x8d (WSL) encoder, features 256 (SPEC 6.1).

Attribute paths mirror the official state_dict (``pretrained.layer3.17.conv2.weight``,
``scratch.refinenet2.resConfUnit1.conv1.bias``, ...); Sequential indices are kept with parameter-free
``Stateless`` slots. Activations are NHWC. Input: ImageNet-normalised RGB, (N, H, W, 3) with H and W
multiples of 32. Output: (N, H, W) relative inverse depth, non-negative.
"""

from __future__ import annotations

import functools

import jax
from flax import nnx

from hrjax.models.layers import BatchNorm2d, Conv2d, Stateless, max_pool_3x3_s2_p1, relu, run_sequential
from hrjax.models.predict import check_image_batch, checked_predictor
from hrjax.models.resnext import STEM_CHANNELS, stages, stem_conv
from hrjax.models.upsample import upsample_bilinear_x2

FEATURES = 256


class Encoder(nnx.Module):
    """``pretrained``: the ResNeXt-101 stages as MiDaS regroups them (layer1 holds the stem)."""

    def __init__(self):
        layer1, self.layer2, self.layer3, self.layer4 = stages()
        self.layer1 = nnx.List([stem_conv(), BatchNorm2d(STEM_CHANNELS), Stateless(relu),
                                Stateless(max_pool_3x3_s2_p1), layer1])


class ResidualConvUnit(nnx.Module):
    def __init__(self, features: int):
        self.conv1 = Conv2d(features, features, 3, padding=1)
        self.conv2 = Conv2d(features, features, 3, padding=1)

    def __call__(self, x: jax.Array) -> jax.Array:
        # Quirk Q1 (SPEC 6.1): the reference's first ReLU runs in place on x, so the skip is ReLU(x), not x.
        rx = relu(x)
        return self.conv2(relu(self.conv1(rx))) + rx


class FeatureFusionBlock(nnx.Module):
    def __init__(self, features: int):
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def __call__(self, coarse: jax.Array, lateral: jax.Array | None = None) -> jax.Array:
        out = coarse if lateral is None else coarse + self.resConfUnit1(lateral)
        return upsample_bilinear_x2(self.resConfUnit2(out), align_corners=True)


def _head_upsample(x: jax.Array) -> jax.Array:
    # output_conv[1]: Interpolate(scale 2, bilinear, align_corners=False) (SPEC 6.1)
    return upsample_bilinear_x2(x, align_corners=False)


class Scratch(nnx.Module):
    def __init__(self, features: int = FEATURES):
        self.layer1_rn = Conv2d(256, features, 3, padding=1, bias=False)
        self.layer2_rn = Conv2d(512, features, 3, padding=1, bias=False)
        self.layer3_rn = Conv2d(1024, features, 3, padding=1, bias=False)
        self.layer4_rn = Conv2d(2048, features, 3, padding=1, bias=False)
        self.refinenet1 = FeatureFusionBlock(features)
        self.refinenet2 = FeatureFusionBlock(features)
        self.refinenet3 = FeatureFusionBlock(features)
        # refinenet4.resConfUnit1 is in the checkpoint but never used by the forward (SPEC 6.1).
        self.refinenet4 = FeatureFusionBlock(features)
        self.output_conv = nnx.List([
            Conv2d(features, 128, 3, padding=1), Stateless(_head_upsample), Conv2d(128, 32, 3, padding=1),
            Stateless(relu), Conv2d(32, 1, 1), Stateless(relu)])  # last ReLU: non_negative=True


class MidasNet(nnx.Module):
    def __init__(self):
        self.pretrained = Encoder()
        self.scratch = Scratch()

    def features(self, x: jax.Array) -> dict[str, jax.Array]:
        """Every named intermediate of SPEC 6.1 / golden README 4 (NHWC), for parity tests."""
        p, s = self.pretrained, self.scratch
        t = {}
        t["layer_1"] = run_sequential(p.layer1, x)
        t["layer_2"] = run_sequential(p.layer2, t["layer_1"])
        t["layer_3"] = run_sequential(p.layer3, t["layer_2"])
        t["layer_4"] = run_sequential(p.layer4, t["layer_3"])
        for k in (1, 2, 3, 4):
            t[f"layer_{k}_rn"] = getattr(s, f"layer{k}_rn")(t[f"layer_{k}"])
        t["path_4"] = s.refinenet4(t["layer_4_rn"])
        t["path_3"] = s.refinenet3(t["path_4"], t["layer_3_rn"])
        t["path_2"] = s.refinenet2(t["path_3"], t["layer_2_rn"])
        t["path_1"] = s.refinenet1(t["path_2"], t["layer_1_rn"])
        head = s.output_conv
        t["head_conv0"] = head[0](t["path_1"])
        t["head_up"] = head[1](t["head_conv0"])
        t["head_conv2"] = head[2](t["head_up"])
        t["head_pre_relu"] = head[4](head[3](t["head_conv2"]))
        t["out"] = head[5](t["head_pre_relu"])[..., 0]
        return t

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.features(x)["out"]


def check_input(images: jax.Array) -> None:
    check_image_batch(images, "MiDaS")


@functools.lru_cache(maxsize=8)
def predictor(graphdef: nnx.GraphDef):
    """The jitted forward pass of a split MiDaS v2.1, compiled once per shape.

    Args:
      graphdef: the network's graph (from ``nnx.split`` or :func:`hrjax.load_models`).

    Returns:
      ``predict(state, images) -> depth``: (N, H, W, 3) ImageNet-normalised images, H and W multiples of 32,
      to (N, H, W) relative inverse depth.
    """
    return checked_predictor(graphdef, check_input)
