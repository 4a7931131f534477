"""Tools: imputation and cross-validation against peer methods."""

from ._cross_validate import CrossValidationResult, cross_validate
from ._impute import spalstf_impute

__all__ = ["CrossValidationResult", "cross_validate", "spalstf_impute"]
