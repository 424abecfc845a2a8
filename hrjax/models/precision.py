"""The convolution arithmetic settings (jax-free, so the command line can offer them without importing jax)."""

# Arithmetic of every convolution (a static module attribute, set with ``configure``):
# - "float32": float32 operands, Precision.HIGHEST (no TF32 / bf16 passes): parity with the reference; default.
# - "tf32": float32 operands at XLA's default precision: TF32 tensor cores on NVIDIA GPUs, one bf16 pass on
#   TPUs, plain float32 on CPUs (there it equals "float32").
# - "bfloat16": operands rounded to bfloat16, products accumulated and returned in float32 (bf16 tensor cores,
#   TPU MXU, AVX512-BF16 / AMX on CPUs that have them). Normalisation, resizes and blending stay float32.
PRECISIONS = ("float32", "tf32", "bfloat16")
