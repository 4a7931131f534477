"""Per-gene agreement between measured and imputed expression: SPCC, SSIM, RMSE and JS."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import rel_entr
from scipy.stats import rankdata

from .._expression import zscore
from .._validation import check_nonnegative, format_names, validate_pair

#: Constants of the global SSIM: C1 = (K1 * L)^2, C2 = (K2 * L)^2 with L = 1 (genes are scaled to a maximum of 1).
_SSIM_K1, _SSIM_K2, _SSIM_L = 0.01, 0.03, 1.0


def spearman_columns(a: np.ndarray, b: np.ndarray, min_rows: int = 3) -> np.ndarray:
    """Spearman correlation of each column of ``a`` with the same column of ``b`` over the rows where both are finite.

    Average ranks for ties. A constant column, or fewer than ``min_rows`` rows, gives NaN. The one implementation
    of the per-gene Spearman correlation: :func:`spcc` scores with it and the interval calibration ranks with it.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = np.full(a.shape[1], np.nan)
    for j in range(a.shape[1]):
        ok = np.isfinite(a[:, j]) & np.isfinite(b[:, j])
        if ok.sum() < min_rows:
            continue
        ra, rb = rankdata(a[ok, j]), rankdata(b[ok, j])
        sa, sb = ra.std(), rb.std()
        if sa > 0 and sb > 0:
            out[j] = float(((ra - ra.mean()) * (rb - rb.mean())).mean() / (sa * sb))
    return out


def _spcc(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.clip(spearman_columns(t, p, min_rows=2), -1.0, 1.0)


def _scale_max(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=0)
    return x / np.where(m == 0, 1.0, m)


def _ssim(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    x, y = _scale_max(t), _scale_max(p)
    c1, c2 = (_SSIM_K1 * _SSIM_L) ** 2, (_SSIM_K2 * _SSIM_L) ** 2
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    dx, dy = x - mu_x, y - mu_y
    var_x, var_y = (dx**2).mean(axis=0), (dy**2).mean(axis=0)
    cov = (dx * dy).mean(axis=0)
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def _rmse(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.sqrt(((zscore(t, constant=np.nan) - zscore(p, constant=np.nan)) ** 2).mean(axis=0))


def _js(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    st, sp = t.sum(axis=0), p.sum(axis=0)
    undefined = (st == 0) | (sp == 0)
    pt = t / np.where(st == 0, 1.0, st)
    pp = p / np.where(sp == 0, 1.0, sp)
    m = (pt + pp) / 2
    out = 0.5 * rel_entr(pt, m).sum(axis=0) + 0.5 * rel_entr(pp, m).sum(axis=0)
    out = np.clip(out, 0.0, np.log(2))
    out[undefined] = np.nan
    return out


def spcc(y_true: Any, y_pred: Any) -> np.ndarray:
    r"""Spearman correlation per gene between measured and imputed values over cells (SPCC).

    .. math::
        \mathrm{SPCC}(i) = \operatorname{corr}(\operatorname{rank}(T_{\cdot i}), \operatorname{rank}(P_{\cdot i}))

    the Pearson correlation of the ranks over cells, ties given their average rank (as
    :func:`scipy.stats.spearmanr`). Without ties this equals the paper's eq. 7,
    :math:`1 - 6 \sum_j d_{ij}^2 / (n (n^2 - 1))` with :math:`d_{ij}` the difference of the *ranks* of cell
    :math:`j`. Higher is better; range [-1, 1].

    Parameters
    ----------
    y_true
        Measured expression, ``cells x genes``: :class:`numpy.ndarray` (a 1-D array is one gene), sparse matrix,
        :class:`pandas.DataFrame` (index cells, columns genes) or :class:`anndata.AnnData`.
    y_pred
        Imputed expression, same cells and genes. When both inputs carry names, ``y_pred`` is aligned to
        ``y_true`` by cell and gene names.

    Returns
    -------
    One value per gene, in ``y_true``'s column order. A gene that is constant over cells in ``y_true`` or in
    ``y_pred`` has an undefined correlation: its value is NaN (use :func:`numpy.nanmedian` to summarise).

    Raises
    ------
    ValueError
        On mismatched shapes or names and on NaN or infinite values (the message names the genes).

    Examples
    --------
    >>> import numpy as np
    >>> from spalstf.metrics import spcc
    >>> y_true = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    >>> y_pred = np.array([[1.0, 5.0], [3.0, 1.0], [2.0, 2.0], [4.0, 3.0]])
    >>> spcc(y_true, y_pred)  # 1 - 6 * 2 / (4 * 15) = 0.8; the second gene is constant in y_true
    array([0.8, nan])
    """
    t, p, _ = validate_pair(y_true, y_pred)
    return _spcc(t, p)


def ssim(y_true: Any, y_pred: Any) -> np.ndarray:
    r"""Structural similarity per gene, one global window over all cells (SSIM).

    Each gene vector is divided by its maximum over cells, :math:`x = T_{\cdot i} / \max_j T_{ji}` and
    :math:`y = P_{\cdot i} / \max_j P_{ji}`, then

    .. math::
        \mathrm{SSIM}(i) = \frac{(2 \mu_x \mu_y + C_1)(2 \sigma_{xy} + C_2)}
                                {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
        \quad C_1 = (0.01 L)^2,\ C_2 = (0.03 L)^2,\ L = 1,

    with means, variances and the covariance taken over all cells with the population normalisation
    (``ddof=0``, divide by :math:`n`), as in the stDiff/SpaLSTF evaluation code (the paper's eq. 8 writes
    :math:`C_1^2, C_2^2` for the same constants). The window is not spatial. Higher is better; at most 1.

    Parameters
    ----------
    y_true
        Measured expression, ``cells x genes`` (see :func:`spcc` for the accepted types).
    y_pred
        Imputed expression, same cells and genes (aligned by names when both carry them).

    Returns
    -------
    One value per gene, in ``y_true``'s column order. Constant genes are well defined (identical constant
    vectors score 1). A gene whose maximum is 0 (e.g. an all-zero gene) is not rescaled (divisor 1), so an
    all-zero gene is compared as a vector of zeros. Division by the maximum assumes non-negative data.

    Raises
    ------
    ValueError
        On mismatched shapes or names and on NaN or infinite values (the message names the genes).

    Examples
    --------
    >>> import numpy as np
    >>> from spalstf.metrics import ssim
    >>> y_true = np.array([[0.0, 0.0], [1.0, 1.0]])
    >>> y_pred = np.array([[0.0, 1.0], [2.0, 0.0]])
    >>> ssim(y_true, y_pred).round(4)  # gene 2: (2 * -0.25 + C2) / (0.25 + 0.25 + C2)
    array([ 1.    , -0.9964])
    """
    t, p, _ = validate_pair(y_true, y_pred)
    return _ssim(t, p)


def rmse(y_true: Any, y_pred: Any) -> np.ndarray:
    r"""Root mean squared error per gene between z-scored measured and imputed values (RMSE).

    .. math::
        \mathrm{RMSE}(i) = \sqrt{\frac{1}{n} \sum_{j=1}^n (z'_{ji} - z_{ji})^2}, \quad
        z_{ji} = \frac{T_{ji} - \mu(T_{\cdot i})}{\sigma(T_{\cdot i})}, \quad
        z'_{ji} = \frac{P_{ji} - \mu(P_{\cdot i})}{\sigma(P_{\cdot i})}

    with the population standard deviation (``ddof=0``, as :func:`scipy.stats.zscore`). Equivalently
    :math:`\sqrt{2 (1 - r)}` with :math:`r` the Pearson correlation, so it lies in [0, 2]. Lower is better.

    Parameters
    ----------
    y_true
        Measured expression, ``cells x genes`` (see :func:`spcc` for the accepted types).
    y_pred
        Imputed expression, same cells and genes (aligned by names when both carry them).

    Returns
    -------
    One value per gene, in ``y_true``'s column order. A gene that is constant in ``y_true`` or in ``y_pred``
    cannot be z-scored: its value is NaN.

    Raises
    ------
    ValueError
        On mismatched shapes or names and on NaN or infinite values (the message names the genes).

    Examples
    --------
    >>> import numpy as np
    >>> from spalstf.metrics import rmse
    >>> rmse(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]))  # z = (-1.22, 0, 1.22) and its reverse
    array([2.])
    """
    t, p, _ = validate_pair(y_true, y_pred)
    return _rmse(t, p)


def js(y_true: Any, y_pred: Any) -> np.ndarray:
    r"""Jensen-Shannon divergence per gene between the measured and imputed distributions over cells (JS).

    Each gene vector is divided by its sum, :math:`\varphi(x)_j = x_j / \sum_k x_k`, a distribution over cells;
    with :math:`T = \varphi(T_{\cdot i})`, :math:`P = \varphi(P_{\cdot i})` and :math:`M = (T + P) / 2`,

    .. math::
        \mathrm{JS}(i) = \tfrac{1}{2} \mathrm{KL}(T \,\|\, M) + \tfrac{1}{2} \mathrm{KL}(P \,\|\, M), \quad
        \mathrm{KL}(A \,\|\, B) = \sum_j A_j \ln \frac{A_j}{B_j}

    with the natural logarithm and :math:`0 \ln 0 = 0` (eq. 10). Range [0, ln 2]; lower is better.

    Parameters
    ----------
    y_true
        Measured expression, ``cells x genes``, non-negative (see :func:`spcc` for the accepted types).
    y_pred
        Imputed expression, same cells and genes, non-negative (aligned by names when both carry them).

    Returns
    -------
    One value per gene, in ``y_true``'s column order. A gene whose sum is 0 in ``y_true`` or in ``y_pred``
    (an all-zero gene) is not a distribution: its value is NaN.

    Raises
    ------
    ValueError
        If a value is negative (the message names the genes; no clipping is done), on mismatched shapes or
        names, and on NaN or infinite values.

    Examples
    --------
    >>> import numpy as np
    >>> from spalstf.metrics import js
    >>> js(np.array([1.0, 0.0]), np.array([0.0, 1.0])).round(4)  # disjoint supports: ln 2
    array([0.6931])
    """
    t, p, genes = validate_pair(y_true, y_pred)
    check_nonnegative(t, p, genes, "JS")
    return _js(t, p)


_GENE_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "SPCC": _spcc,
    "SSIM": _ssim,
    "RMSE": _rmse,
    "JS": _js,
}


def gene_metrics(
    y_true: Any,
    y_pred: Any,
    metrics: Sequence[str] | str = ("SPCC", "SSIM", "RMSE", "JS"),
) -> pd.DataFrame:
    """Per-gene SPCC, SSIM, RMSE and JS between measured and imputed expression.

    The inputs are validated and aligned once; each metric is defined in :func:`spcc`, :func:`ssim`,
    :func:`rmse` and :func:`js` (see there for the formulas and the NaN conventions). The field summarises a
    dataset by the median over genes: ``gene_metrics(...).median()`` (pandas skips NaN).

    Parameters
    ----------
    y_true
        Measured expression, ``cells x genes``: :class:`numpy.ndarray`, sparse matrix, :class:`pandas.DataFrame`
        (index cells, columns genes) or :class:`anndata.AnnData`.
    y_pred
        Imputed expression, same cells and genes. When both inputs carry names, ``y_pred`` is aligned to
        ``y_true`` by cell and gene names (the sets must be equal).
    metrics
        Which metrics to compute, any of ``"SPCC"``, ``"SSIM"``, ``"RMSE"``, ``"JS"`` (case-insensitive). JS
        requires non-negative input; leave it out to score z-scored values.

    Returns
    -------
    :class:`pandas.DataFrame` with one row per gene (index: the gene names in ``y_true``'s column order, or
    ``"0", "1", ...`` for unnamed inputs) and one column per requested metric.

    Raises
    ------
    ValueError
        On an unknown metric name, mismatched shapes or names, NaN or infinite values, or negative values when
        JS is requested (the message names the genes).

    Examples
    --------
    >>> import pandas as pd
    >>> from spalstf.metrics import gene_metrics
    >>> y_true = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 4.0]}, index=["c1", "c2", "c3"])
    >>> gene_metrics(y_true, y_true)  # identical inputs
       SPCC  SSIM  RMSE   JS
    a   1.0   1.0   0.0  0.0
    b   1.0   1.0   0.0  0.0
    """
    requested = [metrics] if isinstance(metrics, str) else list(metrics)
    canonical = {name.upper(): name for name in _GENE_METRICS}
    unknown = [m for m in requested if str(m).upper() not in canonical]
    if unknown:
        raise ValueError(f"Unknown metric(s) {format_names(unknown)}; choose from {list(_GENE_METRICS)}.")
    names = list(dict.fromkeys(canonical[str(m).upper()] for m in requested))
    if not names:
        raise ValueError(f"No metric requested; choose from {list(_GENE_METRICS)}.")
    t, p, genes = validate_pair(y_true, y_pred)
    if "JS" in names:
        check_nonnegative(t, p, genes, "JS")
    return pd.DataFrame({name: _GENE_METRICS[name](t, p) for name in names}, index=genes)
