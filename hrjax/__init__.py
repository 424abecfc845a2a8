"""hrjax: high-resolution monocular depth in JAX (Boosting Monocular Depth, Miangoleh et al. CVPR 2021).

Top-level API (imported lazily, so ``import hrjax`` stays cheap and does not import jax)::

    import hrjax
    models = hrjax.load_models()                      # converted weights, see `hrjax weights download`
    result = hrjax.boost(models, image, hrjax.BoostConfig(mode="final"))
    result.depth                                      # (H, W) float32 relative inverse depth, ~[0, 1]
"""

__version__ = "0.1.0"

# The public API (tests/test_public_api.py fixes it): the method, its options and result, the networks, the
# model predictors underneath it, the merge of estimates a user brings and the plain single pass.
_LAZY = {
    "boost": ("hrjax.pipeline.boost", "boost"),
    "BoostResult": ("hrjax.pipeline.boost", "BoostResult"),
    "BoostConfig": ("hrjax.pipeline.config", "BoostConfig"),
    "load_models": ("hrjax.pipeline.networks", "load_models"),
    "Models": ("hrjax.pipeline.networks", "Models"),
    "image_estimates": ("hrjax.pipeline.estimates", "image_estimates"),
    "midas_v21_predictor": ("hrjax.models.midas_v21", "predictor"),
    "merge": ("hrjax.models.mergenet", "merge"),
    "merge_estimates": ("hrjax.pipeline.merge_estimates", "merge_estimates"),
    "predict": ("hrjax.pipeline.single_pass", "predict"),
}

__all__ = ["BoostConfig", "BoostResult", "Models", "__version__", "boost", "image_estimates", "load_models",
           "merge", "merge_estimates", "midas_v21_predictor", "predict"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hrjax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
