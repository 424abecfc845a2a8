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
# - "native": one lax.conv with feature_group_count; what cuDNN and the TPU compiler are built for. XLA:CPU
#   compiles it ~10x faster than "split" but runs it 2-10x slower per layer (its grouped kernel is not
#   vectorised; ResNeXt 3x3, 32 groups: 1849 vs 402 ms at 256 ch and 392^2, 15 vs 8 ms at 1024 ch and 24^2).
# - "split": one dense convolution per group on a channel slice, concatenated: the fastest on CPU, but 32
#   convolutions per layer to compile (~0.6-0.9 s per ResNeXt layer, ~20 s per MiDaS input shape on 2 cores).
# - "auto": "split" on CPU, "native" elsewhere, decided when the function is traced.
GROUPED_IMPLS = ("auto", "native", "split")
