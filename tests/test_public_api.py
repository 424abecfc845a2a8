"""The public API of ``import hrjax``: its names are fixed here, each resolves, and each public function says
what it takes and returns."""

import inspect

import hrjax

PUBLIC = ["BoostConfig", "BoostResult", "Models", "__version__", "boost", "image_estimates", "load_models",
          "merge", "merge_estimates", "midas_v21_predictor", "predict"]


def test_all_is_the_fixed_public_api():
    assert sorted(hrjax.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(hrjax, name) is not None, name
    assert set(PUBLIC) <= set(dir(hrjax))


def test_default_config_builds():
    cfg = hrjax.BoostConfig()
    assert cfg.mode == "final" and cfg.output_resolution == "input"


def test_public_functions_document_their_arguments_and_results():
    for name in ("boost", "load_models", "image_estimates", "merge_estimates", "predict"):
        doc = inspect.getdoc(getattr(hrjax, name)) or ""
        assert "Args:" in doc and "Returns:" in doc, name

