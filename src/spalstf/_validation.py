"""Checks of user input that raise errors naming the problem and the fix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse


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


def get_matrix(adata: AnnData, layer: str | None, name: str):
    """Return ``adata.X`` or ``adata.layers[layer]``, raising a `KeyError` that lists the layers if missing."""
    if layer is None:
        X = adata.X
        if X is None:
            raise ValueError(f"`{name}.X` is None; pass `layer=` naming the layer that holds the expression values.")
        return X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in `{name}.layers` (available: {list(adata.layers.keys())}).")
    return adata.layers[layer]


def check_values(X, name: str, var_names: Sequence[str]) -> None:
    """Raise if the expression matrix holds NaN/inf or negative values, naming up to five offending genes."""
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
            "expression. If the values are scaled or centred, pass the raw data (e.g. `layer='counts'`)."
        )


def _offending_genes(X, predicate, var_names: Sequence[str]) -> list[str]:
    if sparse.issparse(X):
        coo = X.tocoo()
        cols = np.unique(coo.col[predicate(coo.data)])
    else:
        cols = np.where(predicate(np.asarray(X)).any(axis=0))[0]
    return [str(var_names[c]) for c in cols[:5]]
