"""Evaluation metrics of spatial gene imputation, as the field computes them.

Per-gene agreement between measured and imputed expression (:func:`spcc`, :func:`ssim`, :func:`rmse`, :func:`js`,
all at once with :func:`gene_metrics`), agreement of the Leiden clusterings of the measured and the imputed matrix
(:func:`clustering_metrics`), the accuracy score that ranks methods over metrics (:func:`accuracy_score`), and the
quality of prediction intervals (:func:`interval_coverage`, :func:`interval_score`, :func:`calibration_curve`,
:func:`calibration_error`).
"""

from ._clustering import clustering_metrics
from ._gene import gene_metrics, js, rmse, spcc, ssim
from ._intervals import calibration_curve, calibration_error, interval_coverage, interval_score
from ._ranking import HIGHER_IS_BETTER, accuracy_score

__all__ = [
    "HIGHER_IS_BETTER",
    "accuracy_score",
    "calibration_curve",
    "calibration_error",
    "clustering_metrics",
    "gene_metrics",
    "interval_coverage",
    "interval_score",
    "js",
    "rmse",
    "spcc",
    "ssim",
]
