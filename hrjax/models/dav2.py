"""Depth Anything V2 (ViT-S / ViT-B / ViT-L): a DINOv2 ViT encoder and a DPT head, one definition for all three.

Official code: DepthAnything/Depth-Anything-V2 @ a561b84, ``depth_anything_v2/dpt.py`` (``DepthAnythingV2``,
``DPTHead``), ``dinov2.py`` (``DinoVisionTransformer``), ``dinov2_layers/`` and ``util/blocks.py``. Attribute paths
mirror its state_dict (``pretrained.blocks.7.attn.qkv.weight``, ``depth_head.scratch.refinenet2.out_conv.bias``);
Sequential / ModuleList indices are kept with parameter-free ``Stateless`` slots. Activations are NHWC for maps and
(N, tokens, channels) for token sequences. Input: ImageNet-normalised RGB (N, H, W, 3), H and W multiples of 14
(``dav2_input``). Output: (N, H, W) relative inverse depth (disparity), non-negative.

Numerics: every matmul and convolution runs at the precision chosen with ``hrjax.models.layers.configure``
(default float32 / ``Precision.HIGHEST``: parity with the reference, golden README 7). Attention has three
formulations (:data:`ATTENTION_IMPLS`, :func:`set_attention`):

- ``"exact"`` (default, the parity path): softmax((q * d^-0.5) k^T) v written out, as the official plain
  ``Attention.forward`` (xFormers absent; the goldens were made that way).
- ``"xla"``: ``jax.nn.dot_product_attention(implementation="xla")``, the same math as one fused XLA op (scale
  applied to the logits instead of q: equal up to float32 round-off, tested).
- ``"cudnn"``: ``jax.nn.dot_product_attention(implementation="cudnn")``, cuDNN's flash attention on NVIDIA GPUs
  (never materialises the tokens x tokens matrix: at 1036^2 input ViT-L holds 16 x 5477^2 logits per image
  otherwise). cuDNN takes only float16/bfloat16 operands, so q, k and v are rounded to bfloat16 (~3 significant
  digits; the result is float32); it raises on a CPU. For speed, not parity.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from hrjax.models import bicubic
from hrjax.models.conv_transpose import ConvTranspose2d
from hrjax.models.layers import HIGHEST, Conv2d, Stateless, channels_last, relu, run_sequential
from hrjax.models.predict import check_image_batch, checked_predictor
from hrjax.models.upsample import resize_bilinear
from hrjax.weights.keys import Layout

PATCH = 14
ATTENTION_IMPLS = ("exact", "xla", "cudnn")


@dataclass(frozen=True)
class DAv2Config:
    """One Depth Anything V2 size; the values of ``dinov2.py`` ``vit_small/base/large`` and of the model table
    in the official README / ``run.py`` (``model_configs``), with ``dpt.py``'s ``intermediate_layer_idx``."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    features: int                           # DPT fusion width
    out_channels: tuple[int, int, int, int]  # DPT projections of the four taken blocks
    layer_idx: tuple[int, int, int, int]    # blocks whose outputs feed the head
    mlp_ratio: int = 4
    pos_grid: int = 37                      # position embeddings are learnt for 518 / 14 = 37 x 37 patches
    interpolate_offset: float = 0.1         # DINOv2(..., interpolate_offset=0.1) in dinov2.py
    ln_eps: float = 1e-6                    # partial(nn.LayerNorm, eps=1e-6)


CONFIGS = {
    "vits": DAv2Config("vits", 384, 12, 6, 64, (48, 96, 192, 384), (2, 5, 8, 11)),
    "vitb": DAv2Config("vitb", 768, 12, 12, 128, (96, 192, 384, 768), (2, 5, 8, 11)),
    "vitl": DAv2Config("vitl", 1024, 24, 16, 256, (256, 512, 1024, 1024), (4, 11, 17, 23)),
}


def _zeros(shape) -> nnx.Param:
    # Weights are always loaded from a checkpoint; zeros make an un-loaded model obviously wrong and cheap.
    return nnx.Param(jnp.zeros(shape, jnp.float32))


def matmul(x: jax.Array, w: jax.Array, precision: str) -> jax.Array:
    """``x @ w`` in one of ``layers.PRECISIONS`` (float32 result), like ``layers.lax_conv`` for convolutions."""
    if precision == "float32":
        return jnp.matmul(x, w, precision=HIGHEST)
    if precision == "tf32":
        return jnp.matmul(x, w, precision=jax.lax.Precision.DEFAULT)
    if precision == "bfloat16":
        return jnp.matmul(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    raise ValueError(f"unknown precision {precision!r}")


class Linear(nnx.Module):
    """``torch.nn.Linear``; ``weight`` stored (in, out) (PyTorch: (out, in), transposed by the converter)."""

    def __init__(self, in_f: int, out_f: int, *, precision: str = "float32"):
        self.precision = precision
        self.weight = _zeros((in_f, out_f))
        self.bias = _zeros((out_f,))

    def __call__(self, x: jax.Array) -> jax.Array:
        return matmul(x, self.weight[...], self.precision) + channels_last(self.bias[...], x.ndim)


Linear.torch_layout = {"weight": Layout(perm=(1, 0))}


class LayerNorm(nnx.Module):
    """``torch.nn.LayerNorm`` over the last axis (biased variance)."""

    def __init__(self, dim: int, eps: float):
        self.eps = eps
        self.weight = _zeros((dim,))
        self.bias = _zeros((dim,))

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return ((x - mean) * jax.lax.rsqrt(var + self.eps) * channels_last(self.weight[...], x.ndim)
                + channels_last(self.bias[...], x.ndim))


class LayerScale(nnx.Module):
    def __init__(self, dim: int):
        self.gamma = _zeros((dim,))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * channels_last(self.gamma[...], x.ndim)


class Attention(nnx.Module):
    """``dinov2_layers/attention.py`` (qkv with bias, proj); ``impl`` one of :data:`ATTENTION_IMPLS`."""

    def __init__(self, dim: int, heads: int, *, impl: str = "exact", precision: str = "float32"):
        _check_impl(impl)
        self.heads, self.impl, self.precision = heads, impl, precision
        self.qkv = Linear(dim, 3 * dim)
        self.proj = Linear(dim, dim)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, t, c = x.shape
        hd = c // self.heads
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, hd)   # torch: reshape(B, N, 3, heads, C // heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]   # (N, T, heads, hd) each
        scale = hd ** -0.5
        if self.impl == "exact":
            out = self._exact(q * scale, k, v)
        else:
            if self.impl == "cudnn":
                q, k, v = (a.astype(jnp.bfloat16) for a in (q, k, v))
            with jax.default_matmul_precision("highest" if self.precision == "float32" else "default"):
                out = jax.nn.dot_product_attention(q, k, v, scale=scale, implementation=self.impl)
            out = out.astype(jnp.float32)
        return self.proj(out.reshape(n, t, c))

    def _exact(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        # attention.py Attention.forward: q is scaled before the product (not the logits), then softmax, then @ v.
        if self.precision == "bfloat16":
            q, k, v = (a.astype(jnp.bfloat16) for a in (q, k, v))
            arith = {"preferred_element_type": jnp.float32}
        else:
            arith = {"precision": HIGHEST if self.precision == "float32" else jax.lax.Precision.DEFAULT}
        logits = jnp.einsum("nqhd,nkhd->nhqk", q, k, **arith)
        p = jax.nn.softmax(logits, axis=-1)
        if self.precision == "bfloat16":
            p = p.astype(jnp.bfloat16)
        return jnp.einsum("nhqk,nkhd->nqhd", p, v, **arith)


def _check_impl(impl: str) -> None:
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {impl!r}")


class Mlp(nnx.Module):
    def __init__(self, dim: int, hidden: int):
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))  # nn.GELU(): the exact erf form


class Block(nnx.Module):
    """``dinov2_layers/block.py`` in inference (no drop path): x + ls1(attn(norm1 x)), then + ls2(mlp(norm2 x))."""

    def __init__(self, cfg: DAv2Config, impl: str):
        d = cfg.embed_dim
        self.norm1 = LayerNorm(d, cfg.ln_eps)
        self.attn = Attention(d, cfg.num_heads, impl=impl)
        self.ls1 = LayerScale(d)  # DINOv2(init_values=1.0): LayerScale present
        self.norm2 = LayerNorm(d, cfg.ln_eps)
        self.mlp = Mlp(d, d * cfg.mlp_ratio)
        self.ls2 = LayerScale(d)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nnx.Module):
    def __init__(self, dim: int):
        self.proj = Conv2d(3, dim, PATCH, stride=PATCH)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.proj(x)                               # (N, H/14, W/14, D)
        return y.reshape(y.shape[0], -1, y.shape[-1])  # row-major patches, as torch's flatten(2).transpose(1, 2)


def pos_embed_grid_scale(cfg: DAv2Config, patches: int) -> float:
    """The ``scale_factor`` of one axis in ``interpolate_pos_encoding``: (patches + 0.1) / sqrt(N).

    The 0.1 (``interpolate_offset``, dinov2.py; "to avoid floating point error", facebookresearch/dino#8) makes
    ``floor(37 * s)`` land on ``patches`` and, as ``F.interpolate`` uses the given factor for the source positions,
    shifts every sample slightly against a plain resize to ``patches``."""
    return (float(patches) + cfg.interpolate_offset) / float(cfg.pos_grid)


class DinoVisionTransformer(nnx.Module):
    """``pretrained``: DINOv2 ViT/14 with LayerScale, no register tokens, MLP FFN (dinov2.py, ``DINOv2(...)``)."""

    def __init__(self, cfg: DAv2Config, impl: str = "exact"):
        d = cfg.embed_dim
        self.cfg = cfg
        self.cls_token = _zeros((1, 1, d))
        self.pos_embed = _zeros((1, cfg.pos_grid ** 2 + 1, d))
        self.mask_token = _zeros((1, d))  # training-time masking only; in the checkpoint, so kept for strict loads
        self.patch_embed = PatchEmbed(d)
        self.blocks = nnx.List([Block(cfg, impl) for _ in range(cfg.depth)])
        self.norm = LayerNorm(d, cfg.ln_eps)

    def interpolate_pos_encoding(self, ph: int, pw: int, h: int, w: int) -> jax.Array:
        """dinov2.py ``interpolate_pos_encoding`` for an h x w input of ph x pw patches: (1, 1 + ph*pw, D).

        Untouched only when the patch count is 37^2 *and* the input is square (the official test: ``npatch == N
        and w == h``); otherwise the 37 x 37 grid is resized bicubically (``hrjax.models.bicubic``, torch's
        kernel) with scale_factor (ph + 0.1)/37 x (pw + 0.1)/37. Computed in float32 as the reference does."""
        cfg = self.cfg
        pos = self.pos_embed[...]
        if ph * pw == cfg.pos_grid ** 2 and h == w:
            return pos
        d = pos.shape[-1]
        sh, sw = pos_embed_grid_scale(cfg, ph), pos_embed_grid_scale(cfg, pw)
        out_hw = (bicubic.output_size(cfg.pos_grid, sh), bicubic.output_size(cfg.pos_grid, sw))
        if out_hw != (ph, pw):  # the reference asserts the same
            raise AssertionError(f"position grid {out_hw} != patch grid {(ph, pw)}")
        grid = pos[0, 1:].reshape(cfg.pos_grid, cfg.pos_grid, d)
        patch_pos = bicubic.resize(grid, out_hw, (sh, sw)).reshape(1, ph * pw, d)
        return jnp.concatenate([pos[:, :1], patch_pos], axis=1)

    def tokens(self, x: jax.Array) -> dict[str, jax.Array]:
        """``prepare_tokens_with_masks`` and every block: {"patch_embed", "tokens_in", "blocks_0", ...}."""
        n, h, w, _ = x.shape
        t = {"patch_embed": self.patch_embed(x)}
        ph, pw = h // PATCH, w // PATCH
        cls = jnp.broadcast_to(self.cls_token[...], (n, 1, self.cls_token.shape[-1]))
        y = jnp.concatenate([cls, t["patch_embed"]], axis=1) + self.interpolate_pos_encoding(ph, pw, h, w)
        t["tokens_in"] = y
        for i, blk in enumerate(self.blocks):
            y = blk(y)
            t[f"blocks_{i}"] = y
        return t

    def intermediate_layers(self, t: dict[str, jax.Array]) -> list[jax.Array]:
        """``get_intermediate_layers(x, layer_idx, return_class_token=True)`` with norm=True, class tokens dropped
        (``use_clstoken=False`` in the DPT head): the normed patch tokens of each taken block."""
        return [self.norm(t[f"blocks_{i}"])[:, 1:] for i in self.cfg.layer_idx]


def conv_transpose_blocks(x: jax.Array, wf: jax.Array, precision: str) -> jax.Array:
    """``ConvTranspose2d(k, stride=k, padding=0)``: every input pixel writes its own k x k output block, so it is
    one matmul and a reshape (the dilated formulation would multiply (k^2-1)/k^2 zeros). ``wf`` is the flipped
    HWIO kernel of ``hrjax.models.conv_transpose`` (``wf[a, b] = W[:, :, k-1-a, k-1-b]``), un-flipped here."""
    k = wf.shape[0]
    w = wf[::-1, ::-1]                                   # (k, k, in, out) = W[i, o, a, b] transposed
    n, h, wd, c = x.shape
    y = matmul(x.reshape(n * h * wd, c), w.transpose(2, 0, 1, 3).reshape(c, -1), precision)
    y = y.reshape(n, h, wd, k, k, -1).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, h * k, wd * k, -1)


class BlockConvTranspose2d(ConvTranspose2d):
    """``nn.ConvTranspose2d(c, c, k, stride=k, padding=0)`` of the DPT head's ``resize_layers`` (k = 4 and 2).

    Same parameters and checkpoint layout as ``ConvTranspose2d`` (its ``torch_layout``, inherited); computed by
    :func:`conv_transpose_blocks` (tested against the dilated formulation)."""

    def __init__(self, ch: int, k: int):
        super().__init__(ch, ch, k, stride=k, padding=0, impl="dilated")

    def __call__(self, x: jax.Array, impl: str | None = None) -> jax.Array:
        if impl is not None:
            return super().__call__(x, impl)
        return conv_transpose_blocks(x, self.weight[...], self.precision) + channels_last(self.bias[...], 4)


class ResidualConvUnit(nnx.Module):
    """util/blocks.py ``ResidualConvUnit`` with ``nn.ReLU(False)`` and bn=False, as ``_make_fusion_block`` builds it.

    Not MiDaS's unit (``hrjax.models.midas_v21``): there the first ReLU is in place, so its skip is ReLU(x)
    (quirk Q1, SPEC 6.1); here the activation is not in place and the skip is x itself."""

    def __init__(self, features: int):
        self.conv1 = Conv2d(features, features, 3, padding=1)
        self.conv2 = Conv2d(features, features, 3, padding=1)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv2(relu(self.conv1(relu(x)))) + x


class FeatureFusionBlock(nnx.Module):
    """util/blocks.py ``FeatureFusionBlock`` (deconv=False, bn=False, expand=False, align_corners=True).

    Unlike MiDaS v2.1's block it ends with a 1x1 ``out_conv`` after the resize, and resizes to the next lateral's
    size (``size=``; refinenet1 has none and doubles), which is not 2x when the patch grid is odd (37 -> 19 -> 37)."""

    def __init__(self, features: int):
        self.out_conv = Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def __call__(self, coarse: jax.Array, lateral: jax.Array | None = None,
                 size: tuple[int, int] | None = None) -> jax.Array:
        out = coarse if lateral is None else coarse + self.resConfUnit1(lateral)
        out = self.resConfUnit2(out)
        if size is None:
            size = (2 * out.shape[1], 2 * out.shape[2])
        return self.out_conv(resize_bilinear(out, size, align_corners=True))


class Scratch(nnx.Module):
    def __init__(self, cfg: DAv2Config):
        f, oc = cfg.features, cfg.out_channels
        # _make_scratch(out_channels, features, groups=1, expand=False): 3x3, no bias
        self.layer1_rn = Conv2d(oc[0], f, 3, padding=1, bias=False)
        self.layer2_rn = Conv2d(oc[1], f, 3, padding=1, bias=False)
        self.layer3_rn = Conv2d(oc[2], f, 3, padding=1, bias=False)
        self.layer4_rn = Conv2d(oc[3], f, 3, padding=1, bias=False)
        self.refinenet1 = FeatureFusionBlock(f)
        self.refinenet2 = FeatureFusionBlock(f)
        self.refinenet3 = FeatureFusionBlock(f)
        # refinenet4.resConfUnit1 is in the checkpoint but never used (refinenet4 gets no lateral input).
        self.refinenet4 = FeatureFusionBlock(f)
        self.output_conv1 = Conv2d(f, f // 2, 3, padding=1)
        self.output_conv2 = nnx.List([Conv2d(f // 2, 32, 3, padding=1), Stateless(relu), Conv2d(32, 1, 1),
                                      Stateless(relu), Stateless(_identity)])


def _identity(x: jax.Array) -> jax.Array:
    return x


class DPTHead(nnx.Module):
    """``depth_head``: dpt.py ``DPTHead`` with use_bn=False, use_clstoken=False."""

    def __init__(self, cfg: DAv2Config):
        d, oc = cfg.embed_dim, cfg.out_channels
        self.projects = nnx.List([Conv2d(d, c, 1) for c in oc])
        self.resize_layers = nnx.List([BlockConvTranspose2d(oc[0], 4), BlockConvTranspose2d(oc[1], 2),
                                       Stateless(_identity), Conv2d(oc[3], oc[3], 3, stride=2, padding=1)])
        self.scratch = Scratch(cfg)

    def features(self, tokens: list[jax.Array], ph: int, pw: int) -> dict[str, jax.Array]:
        s, t = self.scratch, {}
        for i, x in enumerate(tokens):
            # torch: x.permute(0, 2, 1).reshape(B, C, ph, pw), i.e. token r*pw + c is pixel (r, c)
            x = x.reshape(x.shape[0], ph, pw, x.shape[-1])
            t[f"layer_{i + 1}"] = self.resize_layers[i](self.projects[i](x))
        for k in (1, 2, 3, 4):
            t[f"layer_{k}_rn"] = getattr(s, f"layer{k}_rn")(t[f"layer_{k}"])

        def hw(a):
            return a.shape[1], a.shape[2]

        t["path_4"] = s.refinenet4(t["layer_4_rn"], size=hw(t["layer_3_rn"]))
        t["path_3"] = s.refinenet3(t["path_4"], t["layer_3_rn"], size=hw(t["layer_2_rn"]))
        t["path_2"] = s.refinenet2(t["path_3"], t["layer_2_rn"], size=hw(t["layer_1_rn"]))
        t["path_1"] = s.refinenet1(t["path_2"], t["layer_1_rn"])
        t["output_conv1"] = s.output_conv1(t["path_1"])
        up = resize_bilinear(t["output_conv1"], (ph * PATCH, pw * PATCH), align_corners=True)
        t["head_out"] = run_sequential(s.output_conv2, up)
        return t


class DepthAnythingV2(nnx.Module):
    def __init__(self, config: DAv2Config, *, attention: str = "exact"):
        _check_impl(attention)
        self.config = config
        self.pretrained = DinoVisionTransformer(config, attention)
        self.depth_head = DPTHead(config)

    def features(self, x: jax.Array) -> dict[str, jax.Array]:
        """Every named intermediate (token sequences (N, T, D), maps NHWC) and ``"out"`` (N, H, W), for tests."""
        check_input(x)
        ph, pw = x.shape[1] // PATCH, x.shape[2] // PATCH
        t = self.pretrained.tokens(x)
        t.update(self.depth_head.features(self.pretrained.intermediate_layers(t), ph, pw))
        t["out"] = relu(t["head_out"])[..., 0]  # DepthAnythingV2.forward: F.relu(depth).squeeze(1)
        return t

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.features(x)["out"]


def dav2_vits() -> DepthAnythingV2:
    return DepthAnythingV2(CONFIGS["vits"])


def dav2_vitb() -> DepthAnythingV2:
    return DepthAnythingV2(CONFIGS["vitb"])


def dav2_vitl() -> DepthAnythingV2:
    return DepthAnythingV2(CONFIGS["vitl"])


def set_attention(model: nnx.Module, impl: str) -> nnx.Module:
    """Choose the attention formulation (:data:`ATTENTION_IMPLS`) of every block (in place; returns it).

    A static attribute, part of the graphdef: split the model after calling this."""
    _check_impl(impl)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, Attention):
            module.impl = impl
    return model


def check_input(images) -> None:
    check_image_batch(images, "Depth Anything V2", multiple=PATCH)


@functools.lru_cache(maxsize=8)
def predictor(graphdef: nnx.GraphDef):
    """``predict(state, images) -> depth``: jitted forward of the split model, compiled once per shape."""
    return checked_predictor(graphdef, check_input)
