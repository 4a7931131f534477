"""Benchmark suite: gene-fold cross-validation of SpaLSTF against peer imputation methods."""

from ._cross_validate import cross_validate
from ._result import CrossValidationResult

__all__ = ["CrossValidationResult", "cross_validate"]
