"""The convolution settings: arithmetic and grouped-conv formulation (jax-free, so the command line can offer them
without importing jax)."""

# Arithmetic of every convolution (a static module attribute, set with ``configure``):
# - "float32": float32 operands, Precision.HIGHEST (no TF32 / bf16 passes): parity with the reference; default.
# - "tf32": float32 operands at XLA's default precision: TF32 tensor cores on NVIDIA GPUs, one bf16 pass on
#   TPUs, plain float32 on CPUs (there it equals "float32").
# - "bfloat16": operands rounded to bfloat16, products accumulated and returned in float32 (bf16 tensor cores,
#   TPU MXU, AVX512-BF16 / AMX on CPUs that have them). Normalisation, resizes and blending stay float32.
PRECISIONS = ("float32", "tf32", "bfloat16")

# Formulations of a grouped convolution (all exact up to float32 summation order; a static module attribute):
# - "native": one lax.conv with feature_group_count; what cuDNN and the TPU compiler are built for, and on CPU as
#   fast as "split" once XLA rather than YNNPACK runs the convolutions (hrjax.cpu_backend), at a sixth of the
#   compile time. Under YNNPACK (jaxlib's CPU default) it runs 1.3-1.9x slower than "split" on MiDaS.
# - "split": one dense convolution per group on a channel slice, concatenated: the fastest on CPU under
#   YNNPACK, but 32 convolutions per layer to compile (~20 s per MiDaS input shape on 2 cores).
# - "packed": "native" with narrow groups merged: where a group has fewer than 32 channels and the input at least
#   64^2 pixels, 32 // channels neighbouring groups become one group whose kernel is block-diagonal (zeros
#   outside the original groups' blocks, so the sums are the same up to order). XLA:CPU's grouped convolution
#   runs 2-4x slower per FLOP on 8- and 16-channel groups than on 32-channel ones, so doing up to 4x the FLOPs
#   is faster there: MiDaS's layer1 (8 channels per group) at 96^2 20.5 -> 9.0 ms per convolution, at 192^2
#   90 -> 42 ms; layer2 (16) at 96^2 41 -> 21 ms (measured 2026-12-07, 2-core Xeon). At 48^2 it gains nothing,
#   and 32-channel groups (layer3, layer4) are faster as they are.
# - "kernel": on a CPU, hrjax's own grouped convolution (hrjax/ops/grouped_conv.cc through XLA's FFI, built on
#   first use with the system's C++ compiler): 1.1-3x faster than XLA's on MiDaS's grouped convolutions, within
#   ~10-60 % of torch's; float32 only (bfloat16 and other group widths fall back to "packed").
# - "auto": on a CPU "kernel" where it builds, else "packed" when XLA's kernels run the convolutions
#   (hrjax.cpu_backend), else "split"; "native" on accelerators; decided when traced.
GROUPED_IMPLS = ("auto", "native", "split", "packed", "kernel")
