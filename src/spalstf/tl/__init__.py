"""Tools: imputation."""

from ._impute import spalstf_impute

__all__ = ["spalstf_impute"]
