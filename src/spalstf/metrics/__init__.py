"""Evaluation metrics of spatial gene imputation, as the field computes them.

Per-gene agreement between measured and imputed expression (:func:`spcc`, :func:`ssim`, :func:`rmse`, :func:`js`,
all at once with :func:`gene_metrics`), agreement of the Leiden clusterings of the measured and the imputed matrix
(:func:`clustering_metrics`), and the accuracy score that ranks methods over metrics (:func:`accuracy_score`).
"""

from ._clustering import clustering_metrics
from ._gene import gene_metrics, js, rmse, spcc, ssim
from ._ranking import HIGHER_IS_BETTER, accuracy_score

__all__ = [
    "HIGHER_IS_BETTER",
    "accuracy_score",
    "clustering_metrics",
    "gene_metrics",
    "js",
    "rmse",
    "spcc",
    "ssim",
]
