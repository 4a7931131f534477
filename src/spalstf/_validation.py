"""Checks of user input that raise errors naming the problem and the fix (AnnData inputs and metric inputs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._expression import count_check_sample, is_count_matrix

#: Names shown at most in an error message (the rest are counted).
MAX_NAMES_SHOWN = 10


def format_names(names: Sequence[Any], limit: int = MAX_NAMES_SHOWN) -> str:
    """``'a', 'b' and 3 more``: at most ``limit`` names, quoted, and how many more there are."""
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return shown


def check_nonempty(adata: AnnData, name: str) -> None:
    """Raise if ``adata`` has no cells or no genes."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"`{name}` must be an AnnData, got {type(adata).__name__}.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"`{name}` is empty ({adata.n_obs} cells x {adata.n_vars} genes); pass an AnnData with cells and genes."
        )


def check_unique_names(names: pd.Index, name: str, axis: str = "var") -> None:
    """Raise if gene (or cell) names are duplicated."""
    if not names.is_unique:
        dup = names[names.duplicated()].unique()[:5].tolist()
        fix = "adata.var_names_make_unique()" if axis == "var" else "adata.obs_names_make_unique()"
        raise ValueError(f"`{name}` has duplicated {axis}_names, e.g. {dup}; make them unique first ({fix}).")


def get_matrix(adata: AnnData, layer: str | None, name: str, argument: str = "layer"):
    """Return ``adata.X`` or ``adata.layers[layer]``, raising a `KeyError` that lists the layers if missing.

    ``argument`` is the name of the caller's layer argument (e.g. ``"layer_sc"``), which the messages name.
    """
    if layer is None:
        X = adata.X
        if X is None:
            raise ValueError(
                f"`{name}.X` is None; pass `{argument}=` naming the layer that holds the expression values."
            )
        return X
    if layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} (`{argument}`) not found in `{name}.layers` (available: {list(adata.layers.keys())})."
        )
    return adata.layers[layer]


def check_in_memory(adata: AnnData, name: str) -> None:
    """Raise a `ValueError` when ``adata`` is backed (read with ``backed="r"``), saying how to load it."""
    if adata.isbacked:
        raise ValueError(
            f"`{name}` is backed (read with backed='r'); the reference is read whole to fit the model. Load it with "
            f"`{name} = {name}.to_memory()` (only the spatial data may stay on disk)."
        )


def check_counts(X, name: str, where: str) -> None:
    """Raise a `ValueError` when ``X`` does not hold raw counts (integers), saying ``where`` to pass them."""
    if not is_count_matrix(X):
        sample = count_check_sample(X)
        fractional = sample[sample != np.round(sample)][:3].tolist()
        raise ValueError(
            f"`{name}` does not hold raw counts: it has non-integer values such as {fractional} (log-normalised or "
            f"scaled data?). Pass the raw counts ({where}), or require_counts=False if these values are meant as "
            "counts."
        )


def check_values(X, name: str, var_names: Sequence[str], argument: str = "layer") -> None:
    """Raise if the expression matrix holds NaN/inf or negative values, naming up to five offending genes.

    ``argument`` is the caller's layer argument, named in the fix.
    """
    data = X.data if sparse.issparse(X) else np.asarray(X)
    if data.size == 0:
        return
    if not np.isfinite(data).all():
        bad = _offending_genes(X, lambda v: ~np.isfinite(v), var_names)
        raise ValueError(
            f"`{name}` contains NaN or infinite values (genes {bad}); remove or fill them before imputation."
        )
    if (data < 0).any():
        bad = _offending_genes(X, lambda v: v < 0, var_names)
        raise ValueError(
            f"`{name}` contains negative values (genes {bad}); spalstf expects raw counts or non-negative "
            f"expression. If the values are scaled or centred, pass the raw data (e.g. `{argument}='counts'`)."
        )


def _offending_genes(X, predicate, var_names: Sequence[str]) -> list[str]:
    if sparse.issparse(X):
        coo = X.tocoo()
        cols = np.unique(coo.col[predicate(coo.data)])
    else:
        cols = np.where(predicate(np.asarray(X)).any(axis=0))[0]
    return [str(var_names[c]) for c in cols[:5]]


# metric inputs ---------------------------------------------------------------------------------------------------
def _as_matrix(x: Any, name: str) -> tuple[np.ndarray, pd.Index | None, pd.Index | None]:
    """Convert one input to a dense float64 ``cells x genes`` matrix.

    Returns the matrix (a new array, never a view of the caller's data), the cell names and the gene names
    (``None`` for inputs that carry no names).
    """
    cells: pd.Index | None = None
    genes: pd.Index | None = None
    if isinstance(x, pd.DataFrame):
        cells, genes = x.index, x.columns
        for axis_name, labels in (("cell (index)", cells), ("gene (column)", genes)):
            if labels.has_duplicates:
                dup = labels[labels.duplicated()].unique()
                raise ValueError(f"{name} has duplicated {axis_name} names: {format_names(dup)}.")
        values: Any = x.to_numpy()
    elif hasattr(x, "X") and hasattr(x, "obs_names") and hasattr(x, "var_names"):  # AnnData, without importing it
        cells, genes = pd.Index(x.obs_names), pd.Index(x.var_names)
        values = x.X
    else:
        values = x
    if sparse.issparse(values):
        values = values.toarray()
    try:
        arr = np.array(values, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric (cells x genes); converting it to float failed: {err}") from err
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D cells x genes matrix (or a 1-D vector of one gene); got shape {arr.shape}."
        )
    return arr, cells, genes


def _check_finite(arr: np.ndarray, genes: pd.Index, name: str) -> None:
    bad = ~np.isfinite(arr).all(axis=0)
    if bad.any():
        raise ValueError(
            f"{name} contains NaN or infinite values in gene(s) {format_names(genes[bad])}; "
            "remove those genes or fill the missing values before scoring."
        )


def _check_same_labels(true_labels: pd.Index, pred_labels: pd.Index, what: str) -> None:
    if true_labels.equals(pred_labels):
        return
    missing = true_labels.difference(pred_labels, sort=False)
    extra = pred_labels.difference(true_labels, sort=False)
    if len(missing) or len(extra) or len(true_labels) != len(pred_labels):
        parts = []
        if len(missing):
            parts.append(f"in y_true but not in y_pred: {format_names(missing)}")
        if len(extra):
            parts.append(f"in y_pred but not in y_true: {format_names(extra)}")
        raise ValueError(f"y_true and y_pred have different {what} names ({'; '.join(parts)}).")


def validate_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Validate and align a measured and an imputed matrix.

    Parameters
    ----------
    y_true, y_pred
        ``cells x genes`` matrices: :class:`numpy.ndarray` (a 1-D array is one gene), :mod:`scipy.sparse` matrix,
        :class:`pandas.DataFrame` (index cells, columns genes) or :class:`anndata.AnnData`.

    Returns
    -------
    Dense float64 copies of ``y_true`` and ``y_pred`` with the same row and column order, and the gene names
    (in ``y_true``'s column order; ``"0", "1", ...`` when neither input carries names).

    Raises
    ------
    ValueError
        If the shapes differ, if both inputs carry names and the cell or gene sets differ, if there are duplicated
        names, or if a value is NaN or infinite (the message names the genes).
    """
    t, t_cells, t_genes = _as_matrix(y_true, "y_true")
    p, p_cells, p_genes = _as_matrix(y_pred, "y_pred")
    if t_genes is not None and p_genes is not None:
        _check_same_labels(t_genes, p_genes, "gene")
        _check_same_labels(t_cells, p_cells, "cell")
        if not (t_genes.equals(p_genes) and t_cells.equals(p_cells)):
            p = p[np.ix_(p_cells.get_indexer(t_cells), p_genes.get_indexer(t_genes))]
        genes = t_genes
    else:
        if t.shape[0] != p.shape[0]:
            raise ValueError(f"y_true has {t.shape[0]} cells (rows) but y_pred has {p.shape[0]}.")
        if t.shape[1] != p.shape[1]:
            raise ValueError(f"y_true has {t.shape[1]} genes (columns) but y_pred has {p.shape[1]}.")
        names = t_genes if t_genes is not None else p_genes
        genes = names if names is not None else pd.Index([str(i) for i in range(t.shape[1])])
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"y_true and y_pred must have at least one cell and one gene; got shape {t.shape}.")
    _check_finite(t, genes, "y_true")
    _check_finite(p, genes, "y_pred")
    return t, p, genes


def check_nonnegative(t: np.ndarray, p: np.ndarray, genes: pd.Index, metric: str) -> None:
    """Raise a :class:`ValueError` naming the genes with negative values (``metric`` needs non-negative input)."""
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = (arr < 0).any(axis=0)
        if bad.any():
            raise ValueError(
                f"{metric} needs non-negative values (each gene is turned into a distribution over cells), but {name} "
                f"has negative values in gene(s) {format_names(genes[bad])}. Score {metric} on non-negative data "
                "(e.g. counts, normalised or min-max scaled values), not on z-scores."
            )
