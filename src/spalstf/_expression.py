"""Small expression-matrix helpers shared by the model, the peers and the plots."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse


def to_dense(X: Any) -> np.ndarray:
    """Dense float64 copy of a dense or sparse matrix."""
    return np.asarray(X.toarray() if sparse.issparse(X) else X, dtype=np.float64)


def log1p_normalize(X: Any, target_sum: float, library: np.ndarray | None = None) -> np.ndarray:
    """``log1p(X / library * target_sum)`` as float64; ``library`` defaults to the row sums of ``X``.

    Pass ``library`` (one total per cell, e.g. over all reference genes) when ``X`` holds only some of the genes.
    Cells with a library of 0 stay 0.
    """
    X = to_dense(X)
    if library is None:
        library = X.sum(axis=1)
    library = np.asarray(library, dtype=np.float64).ravel()
    scale = np.divide(target_sum, library, out=np.zeros_like(library), where=library > 0)
    return np.log1p(X * scale[:, None])
