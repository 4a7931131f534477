"""Expression-matrix helpers shared by the model, the peers, the metrics and the plots (one normaliser, one z-score).

Library normalisation
    Every ``log1p(CP10k)`` in the package is :func:`log1p_normalize` with :data:`TARGET_SUM` (or a caller's
    ``target_sum``). Which genes form a cell's *library* (its total) differs by use and is always stated: the model
    uses the genes it was built on, the peers the whole reference. :func:`output_space` writes that down in the
    ``output_space`` string of a result.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import sparse

#: Library size of every ``log1p(counts / library * TARGET_SUM)`` normalisation (counts per 10,000).
TARGET_SUM = 1e4


def to_dense(X: Any) -> np.ndarray:
    """Dense float64 copy of a dense or sparse matrix."""
    return np.asarray(X.toarray() if sparse.issparse(X) else X, dtype=np.float64)


def log1p_normalize(X: Any, target_sum: float = TARGET_SUM, library: np.ndarray | None = None) -> np.ndarray:
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


def count_check_sample(X) -> np.ndarray:
    """The stored values of ``X`` (all of them, or about a million evenly spaced ones) that count checks look at."""
    data = np.asarray(X.data if sparse.issparse(X) else X).ravel()
    return data[:: max(1, data.size // 1_000_000)]


def is_count_matrix(X) -> bool:
    """Whether the values are integers (counts), judged from :func:`count_check_sample` (signs are not checked)."""
    data = count_check_sample(X)
    return bool(np.all(data == np.round(data)))


def non_integer_counts(X) -> tuple[int, int]:
    """``(non-integer, nonzero)``: how many of the nonzero values of :func:`count_check_sample` are not integers."""
    data = count_check_sample(X)
    data = data[data != 0]
    return int(np.count_nonzero(data != np.round(data))), int(data.size)


def output_space(target_sum: float, library: str) -> str:
    """The ``output_space`` string of a result: the normalisation and which genes form the library.

    Examples
    --------
    >>> output_space(1e4, "the model's genes")
    "log1p(counts / library * 10000), library = total counts over the model's genes"
    """
    return f"log1p(counts / library * {target_sum:g}), library = total counts over {library}"


def constant_columns(x: np.ndarray) -> np.ndarray:
    """Per-column flag: every value of the column equals its first (an empty column counts as constant)."""
    if x.shape[0] == 0:
        return np.ones(x.shape[1], dtype=bool)
    return (x == x[:1]).all(axis=0)


def zscore(x: np.ndarray, *, constant: float = 0.0, ignore_nan: bool = False) -> np.ndarray:
    """Per-column (gene) z-score over rows (cells), population standard deviation (ddof 0).

    Parameters
    ----------
    x
        cells x genes.
    constant
        Value given to a constant column, whose z-score is undefined: ``0.0`` (no information; for model inputs) or
        ``np.nan`` (undefined; for metrics).
    ignore_nan
        Compute the mean and standard deviation over the non-NaN values (NaN entries stay NaN).

    Examples
    --------
    >>> import numpy as np
    >>> zscore(np.array([[1.0, 5.0], [3.0, 5.0]]))
    array([[-1.,  0.],
           [ 1.,  0.]])
    """
    x = np.asarray(x, dtype=np.float64)
    mean_fn, std_fn = (np.nanmean, np.nanstd) if ignore_nan else (np.mean, np.std)
    with warnings.catch_warnings():  # an all-NaN column warns "mean of empty slice"; it is handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, sd = mean_fn(x, axis=0), std_fn(x, axis=0)
    is_constant = (sd == 0) | ~np.isfinite(sd) if ignore_nan else constant_columns(x)
    z = (x - mean) / np.where(is_constant | (sd == 0), 1.0, sd)
    z[:, is_constant] = constant
    return z
