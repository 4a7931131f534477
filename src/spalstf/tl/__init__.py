"""Tools: imputation, cross-validation against peer methods, and the joint embedding of reference and imputed cells."""

from ..benchmark import CrossValidationResult, cross_validate
from ._alignment import alignment_umap
from ._impute import spalstf_impute

__all__ = ["CrossValidationResult", "alignment_umap", "cross_validate", "spalstf_impute"]
