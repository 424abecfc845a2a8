"""Evaluation of relative depth estimates with the paper's metrics (SPEC 8): ORD, D3R, RMSE, delta error rates,
AbsRel, SqRel, log10; dataset readers (Middlebury 2014, iBims-1, generic folders) and the ``evaluate`` command
(:mod:`hrjax.eval.cli`). scikit-image (the ``eval`` extra) is needed for the superpixels of ORD and D3R."""

from hrjax.eval.metrics import (
    ImageMetrics,
    evaluate_normalised,
    evaluate_pair,
    matlab_rescale,
    mean_metrics,
    normalise_estimate,
    normalise_gt,
    ordinal,
    sample_points,
)
from hrjax.eval.pfm import read_pfm, write_pfm

__all__ = [
    "ImageMetrics", "evaluate_normalised", "evaluate_pair", "matlab_rescale", "mean_metrics",
    "normalise_estimate", "normalise_gt", "ordinal", "read_pfm", "sample_points", "write_pfm",
]
