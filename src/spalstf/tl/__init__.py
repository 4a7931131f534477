"""Tools: imputation, cross-validation against peer methods, and the joint embedding of reference and imputed cells."""

from ..benchmark import CrossValidationResult, cross_validate
from ._alignment import alignment_umap
from ._downstream import differential_expression, rank_genes_groups, spatial_autocorr
from ._impute import spalstf_impute

__all__ = [
    "CrossValidationResult",
    "alignment_umap",
    "cross_validate",
    "differential_expression",
    "rank_genes_groups",
    "spalstf_impute",
    "spatial_autocorr",
]
