"""Metrics of prediction intervals: coverage, the interval (Winkler) score and the calibration curve."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def _arrays(y_true: Any, lower: Any, upper: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Index | None]:
    """Three float64 arrays of one shape (DataFrames aligned on the columns of ``y_true``) and the gene names."""
    genes = None
    if isinstance(y_true, pd.DataFrame):
        genes = y_true.columns
        lower = lower[genes] if isinstance(lower, pd.DataFrame) else lower
        upper = upper[genes] if isinstance(upper, pd.DataFrame) else upper
    arrays = [np.asarray(a, dtype=np.float64) for a in (y_true, lower, upper)]
    if arrays[0].ndim == 1:
        arrays = [a.reshape(-1, 1) for a in arrays]
    if not arrays[0].shape == arrays[1].shape == arrays[2].shape:
        raise ValueError(
            f"y_true, lower and upper must have one shape, got {arrays[0].shape}, {arrays[1].shape} and "
            f"{arrays[2].shape}."
        )
    if np.any(arrays[1] > arrays[2]):
        raise ValueError("Some lower bounds exceed their upper bounds; pass (lower, upper) in that order.")
    return arrays[0], arrays[1], arrays[2], genes


def _defined(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Entries that count: a finite value and bounds that are not NaN (an infinite bound is a valid side)."""
    return np.isfinite(y) & ~np.isnan(lo) & ~np.isnan(hi)


def _reduce(values: np.ndarray, ok: np.ndarray, genes: pd.Index | None, per_gene: bool, name: str):
    if not per_gene:
        return float(values[ok].mean()) if ok.any() else float("nan")
    with np.errstate(invalid="ignore"):
        out = np.where(ok, values, 0.0).sum(0) / ok.sum(0)
    return pd.Series(out, index=genes if genes is not None else range(len(out)), name=name)


def interval_coverage(y_true: Any, lower: Any, upper: Any, *, per_gene: bool = False) -> float | pd.Series:
    """Fraction of measured values inside their interval, ``lower <= y <= upper``.

    Entries where the value or a bound is NaN (e.g. cells without signal) are left out; an infinite bound is a
    valid (unbounded) side of an interval.

    Parameters
    ----------
    y_true, lower, upper
        Cells x genes (arrays or DataFrames; DataFrames are aligned on the genes of ``y_true``), or one gene.
    per_gene
        Return one coverage per gene (a Series) instead of the pooled fraction.

    Examples
    --------
    >>> import numpy as np
    >>> interval_coverage(np.array([0.0, 1.0, 2.0, 5.0]), np.zeros(4), np.full(4, 2.0))
    0.75
    """
    y, lo, hi, genes = _arrays(y_true, lower, upper)
    ok = _defined(y, lo, hi)
    inside = (y >= lo) & (y <= hi)
    return _reduce(inside.astype(np.float64), ok, genes, per_gene, "coverage")


def interval_score(y_true: Any, lower: Any, upper: Any, level: float, *, per_gene: bool = False) -> float | pd.Series:
    """Mean interval (Winkler) score of central ``level`` intervals: lower is better.

    ``(upper - lower) + 2 / a * (lower - y)`` if ``y < lower``, ``+ 2 / a * (y - upper)`` if ``y > upper``, with
    ``a = 1 - level`` (Gneiting and Raftery 2007): the width, plus a penalty for every miss proportional to its
    distance. A proper score: in expectation it is smallest for the true quantiles. An infinite bound gives an
    infinite score.

    Parameters
    ----------
    y_true, lower, upper
        As in :func:`interval_coverage`.
    level
        Nominal central level of the intervals, in (0, 1).
    per_gene
        One mean score per gene instead of the pooled mean.

    Examples
    --------
    >>> import numpy as np
    >>> score = interval_score(np.array([1.0, 3.0]), np.zeros(2), np.full(2, 2.0), level=0.9)
    >>> round(score, 6)  # width 2 for both; the second misses by 1: + 2 / 0.1 = 20; mean (2 + 22) / 2
    12.0
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}.")
    y, lo, hi, genes = _arrays(y_true, lower, upper)
    ok = _defined(y, lo, hi)
    alpha = 1.0 - level
    with np.errstate(invalid="ignore"):
        score = (hi - lo) + 2.0 / alpha * (np.maximum(lo - y, 0.0) + np.maximum(y - hi, 0.0))
    return _reduce(score, ok, genes, per_gene, "interval_score")


def calibration_curve(y_true: Any, intervals: Mapping[float, tuple[Any, Any]]) -> pd.DataFrame:
    """Nominal vs empirical coverage of intervals at several levels.

    Parameters
    ----------
    y_true
        Measured values (cells x genes).
    intervals
        Level -> ``(lower, upper)`` of that level.

    Returns
    -------
    DataFrame with one row per level (sorted): ``nominal``, ``empirical`` (:func:`interval_coverage`),
    ``mean_width`` and ``interval_score``. :func:`calibration_error` summarises it.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.linspace(0, 1, 101)
    >>> curve = calibration_curve(y, {0.5: (np.full(101, 0.25), np.full(101, 0.75))})
    >>> round(float(curve["empirical"].iloc[0]), 2)  # 50 of the 101 values lie in [0.25, 0.75] in floating point
    0.5
    """
    rows = []
    for level in sorted(intervals):
        lower, upper = intervals[level]
        y, lo, hi, _ = _arrays(y_true, lower, upper)
        ok = _defined(y, lo, hi)
        rows.append(
            {
                "nominal": float(level),
                "empirical": interval_coverage(y, lo, hi),
                "mean_width": float((hi - lo)[ok].mean()) if ok.any() else float("nan"),
                "interval_score": interval_score(y, lo, hi, level),
            }
        )
    return pd.DataFrame(rows, columns=["nominal", "empirical", "mean_width", "interval_score"])


def calibration_error(curve: pd.DataFrame) -> float:
    """Mean absolute gap between nominal and empirical coverage over the levels of a :func:`calibration_curve`.

    Parameters
    ----------
    curve
        A :func:`calibration_curve` (columns ``nominal`` and ``empirical``).

    Returns
    -------
    The mean of ``|nominal - empirical|`` over the rows.

    Examples
    --------
    >>> import pandas as pd
    >>> calibration_error(pd.DataFrame({"nominal": [0.5, 0.9], "empirical": [0.55, 0.87]}))
    0.04
    """
    return round(float((curve["nominal"] - curve["empirical"]).abs().mean()), 12)
