"""LeReS with the ResNeXt-101 32x8d backbone: the depth network of ``--depthNet 2`` (SPEC 7).

The official ``RelDepthModel(backbone="resnext101")`` (BoostingMonocularDepth @ fa16de0,
``lib/multi_depth_model_woauxi.py``; AdelaiDepth ``LeReS/Minist_Test/lib``) holds everything under
``depth_model``: ``encoder_modules.encoder`` is torchvision's ResNeXt-101 32x8d without avgpool/fc
(``lib/Resnext_torch.py``) and ``decoder_modules`` the FTB/FFM/AO decoder of ``lib/network_auxi.py``.
Attribute paths here are those state_dict keys (``depth_model.decoder_modules.ffm1.ftb2.conv_branch.4.bias``);
Sequential indices are kept with parameter-free ``Stateless`` slots.

Activations are NHWC. Input: (N, H, W, 3) ImageNet-normalised, H and W multiples of 32 (the decoder adds
each upsampled level to the next encoder level, so other sizes do not line up; the reference fails on them
too). Output: (N, H, W) relative *depth* (larger = farther, unlike MiDaS), raw: there is no final activation,
so values may be negative, and ``inference`` in BoostingMonocularDepth applies no shift (its
``depth - depth.min() + 0.01`` is commented out, ``lib/multi_depth_model_woauxi.py`` l. 19-20).
What the reference feeds (BGR order, square resize) is the pipeline's business, not this module's.
"""

from __future__ import annotations

import functools

import jax
from flax import nnx

from hrjax.models.layers import BatchNorm2d, Conv2d, Stateless, max_pool_3x3_s2_p1, relu, run_sequential
from hrjax.models.predict import check_image_batch, checked_predictor
from hrjax.models.resnext import EXPANSION, STAGES, STEM_CHANNELS, stages, stem_conv
from hrjax.models.upsample import upsample_bilinear_x2

# Decoder widths (network_auxi.Decoder l. 18-19): encoder level k has IN_CHANNELS[k] channels, the decoder
# works at MID_CHANNELS[k] there.
IN_CHANNELS = tuple(planes * EXPANSION for planes, _, _ in STAGES)  # (256, 512, 1024, 2048)
MID_CHANNELS = (256, 256, 256, 512)


def _up2(x: jax.Array) -> jax.Array:
    # every nn.Upsample of the decoder: scale 2, bilinear, align_corners=True (network_auxi l. 25, 203, 253)
    return upsample_bilinear_x2(x, align_corners=True)


class ResNeXtEncoder(nnx.Module):
    """``encoder_modules.encoder``: returns the outputs of layer1..layer4 (strides 4, 8, 16, 32;
    Resnext_torch.ResNet._forward_impl)."""

    def __init__(self):
        self.conv1 = stem_conv()
        self.bn1 = BatchNorm2d(STEM_CHANNELS)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages()

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        x = max_pool_3x3_s2_p1(relu(self.bn1(self.conv1(x))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = run_sequential(layer, x)
            features.append(x)
        return features


class EncoderModules(nnx.Module):
    """``encoder_modules`` (network_auxi.DepthNet): only a holder of ``encoder``."""

    def __init__(self):
        self.encoder = ResNeXtEncoder()

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        return self.encoder(x)


class FTB(nnx.Module):
    """Feature transfer block (network_auxi.FTB): conv1, then a residual branch, then ReLU."""

    def __init__(self, in_ch: int, mid_ch: int):
        self.conv1 = Conv2d(in_ch, mid_ch, 3, padding=1)
        self.conv_branch = nnx.List([
            Stateless(relu), Conv2d(mid_ch, mid_ch, 3, padding=1), BatchNorm2d(mid_ch),
            Stateless(relu), Conv2d(mid_ch, mid_ch, 3, padding=1)])

    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.conv1(x)
        # Quirk Q2 (SPEC 7): conv_branch[0] is ReLU(inplace=True) on c itself, so the skip the reference adds
        # (``x + self.conv_branch(x)``, network_auxi l. 121) is ReLU(c), not c.
        rc = relu(c)
        return relu(rc + run_sequential(self.conv_branch[1:], rc))


class FFM(nnx.Module):
    """Feature fusion module (network_auxi.FFM): ftb2(ftb1(lateral) + coarse), upsampled x2."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int):
        self.ftb1 = FTB(in_ch, mid_ch)
        self.ftb2 = FTB(mid_ch, out_ch)

    def __call__(self, lateral: jax.Array, coarse: jax.Array) -> jax.Array:
        return _up2(self.ftb2(self.ftb1(lateral) + coarse))


class AO(nnx.Module):
    """Adaptive output head (network_auxi.AO): conv, BN, ReLU, conv to one channel, upsampled x2."""

    def __init__(self, in_ch: int, out_ch: int = 1):
        self.adapt_conv = nnx.List([
            Conv2d(in_ch, in_ch // 2, 3, padding=1), BatchNorm2d(in_ch // 2), Stateless(relu),
            Conv2d(in_ch // 2, out_ch, 3, padding=1), Stateless(_up2)])

    def __call__(self, x: jax.Array) -> jax.Array:
        return run_sequential(self.adapt_conv, x)


class Decoder(nnx.Module):
    """``decoder_modules`` (network_auxi.Decoder)."""

    def __init__(self):
        self.conv = FTB(IN_CHANNELS[3], MID_CHANNELS[3])
        self.conv1 = Conv2d(MID_CHANNELS[3], MID_CHANNELS[2], 3, padding=1)
        self.ffm2 = FFM(IN_CHANNELS[2], MID_CHANNELS[2], MID_CHANNELS[2])
        self.ffm1 = FFM(IN_CHANNELS[1], MID_CHANNELS[1], MID_CHANNELS[1])
        self.ffm0 = FFM(IN_CHANNELS[0], MID_CHANNELS[0], MID_CHANNELS[0])
        self.outconv = AO(MID_CHANNELS[0])

    def __call__(self, features: list[jax.Array]) -> jax.Array:
        x = _up2(self.conv1(self.conv(features[3])))  # stride 32 -> 16
        x = self.ffm2(features[2], x)                  # -> 8
        x = self.ffm1(features[1], x)                  # -> 4
        x = self.ffm0(features[0], x)                  # -> 2
        return self.outconv(x)                         # -> 1, (N, H, W, 1)


class DepthModel(nnx.Module):
    """``depth_model`` (multi_depth_model_woauxi.DepthModel): what ``RelDepthModel.inference`` runs."""

    def __init__(self):
        self.encoder_modules = EncoderModules()
        self.decoder_modules = Decoder()

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decoder_modules(self.encoder_modules(x))


class LeReS(nnx.Module):
    """``RelDepthModel(backbone="resnext101")``: the checkpoint's root, holding ``depth_model``."""

    def __init__(self):
        self.depth_model = DepthModel()

    def features(self, x: jax.Array) -> dict[str, jax.Array]:
        """The named intermediates of golden README 7 (NHWC): the four encoder levels and the output."""
        enc = self.depth_model.encoder_modules(x)
        t = {f"encoder_{k}": f for k, f in enumerate(enc)}
        t["decoder"] = self.depth_model.decoder_modules(enc)
        t["out"] = t["decoder"][..., 0]
        return t

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.depth_model(x)[..., 0]


def check_input(images: jax.Array) -> None:
    check_image_batch(images, "LeReS")


@functools.lru_cache(maxsize=8)
def predictor(graphdef: nnx.GraphDef):
    """``predict(state, images) -> depth``: jitted forward of the split model, compiled once per shape."""
    return checked_predictor(graphdef, check_input)
