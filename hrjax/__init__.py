"""hrjax: high-resolution monocular depth in JAX (Boosting Monocular Depth, Miangoleh et al. CVPR 2021)."""

__version__ = "0.1.0"
