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
# - "auto": "native", except on a CPU whose convolutions run on YNNPACK ("split"); decided when traced.
GROUPED_IMPLS = ("auto", "native", "split")
