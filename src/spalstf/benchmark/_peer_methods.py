"""The imputation methods of the benchmark that need no other package: kNN and ridge baselines, SpaGE, SpaLSTF.

Each follows the signature shared by every method (see :mod:`spalstf.benchmark`); this module also holds what they
share with the methods of other packages (gimVI and Tangram): the shared-gene space of the reference, the result
frame, :class:`IntervalPrediction` and :class:`MethodUnavailableError`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._expression import TARGET_SUM, log1p_normalize, to_dense, zscore
from ._spage import spage_impute

PeerFunction = Callable[..., pd.DataFrame]


class MethodUnavailableError(RuntimeError):
    """A method cannot run in this environment (e.g. its optional package is not installed)."""


@dataclass
class IntervalPrediction:
    """A method's prediction with calibrated intervals and per-gene reliability (what cross_validate scores).

    All frames are ``cells x held_genes`` in the platform's space ``log1p(x / L * 1e4)`` (``L`` the cell's total
    over the fold's kept genes).

    Attributes
    ----------
    mean
        The point estimate.
    level
        Nominal level of ``lower``/``upper``.
    lower, upper
        The bounds at ``level``.
    curve
        Bounds at more levels, keyed ``(kind, level)``: ``kind`` ``"lower"``/``"upper"`` (the method's intervals) and
        ``"gene_lower"``/``"gene_upper"`` (the same calibration with one width per gene, the plain conformal
        interval it is compared with).
    reliability
        Expected SPCC per held-out gene.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> st, ref = mdata["spatial"], mdata["rna"]
    >>> held = list(st.var_names[:10])
    >>> pred = sp.benchmark.impute_spalstf(st[:, 10:].copy(), ref, held, interval=0.9)  # doctest: +SKIP
    >>> pred.level, pred.lower.shape  # doctest: +SKIP
    (0.9, (3039, 10))
    """

    mean: pd.DataFrame
    level: float
    lower: pd.DataFrame
    upper: pd.DataFrame
    reliability: pd.Series
    curve: dict[tuple[str, float], pd.DataFrame] = field(default_factory=dict)


# shared helpers --------------------------------------------------------------------------------------------------
def _reference_log1p(adata_sc: AnnData, genes: Sequence[str]) -> np.ndarray:
    """``log1p(counts / library * TARGET_SUM)`` of ``genes``; the library is the total over all reference genes."""
    X = adata_sc.X
    library = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    pos = adata_sc.var_names.get_indexer(list(genes))
    if (pos < 0).any():
        missing = [g for g, p in zip(genes, pos, strict=True) if p < 0]
        raise KeyError(f"Genes {missing[:10]} are not in the reference.")
    return log1p_normalize(X[:, pos], TARGET_SUM, library=library)


def _frame(values: np.ndarray, adata_st: AnnData, held_genes: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(values, dtype=np.float64), index=adata_st.obs_names.copy(), columns=list(held_genes))


def _kept_and_targets(adata_st: AnnData, adata_sc: AnnData, held_genes: Sequence[str]):
    """Spatial kept genes (as given), reference kept genes and reference held-out genes (both log1p(CP10k))."""
    kept = list(adata_st.var_names)
    st = to_dense(adata_st.X)
    ref_kept = _reference_log1p(adata_sc, kept)
    ref_held = _reference_log1p(adata_sc, held_genes)
    return st, ref_kept, ref_held


# baselines -------------------------------------------------------------------------------------------------------
def impute_knn(
    adata_st: AnnData,
    adata_sc: AnnData,
    held_genes: Sequence[str],
    *,
    random_state: int = 0,
    n_neighbors: int = 20,
) -> pd.DataFrame:
    """Baseline kNN regression: mean of the nearest reference cells' held-out genes.

    Reference log1p(CP10k) and spatial values are each z-scored per gene on the kept genes (each modality with its
    own mean and sd); each spatial cell takes the unweighted mean log1p(CP10k) of its ``n_neighbors`` nearest
    reference cells (Euclidean distance in that space).

    Parameters
    ----------
    adata_st, adata_sc, held_genes, random_state
        See :mod:`spalstf.benchmark` (``random_state`` is unused: the method is deterministic).
    n_neighbors
        Reference neighbours per spatial cell (capped at the number of reference cells).

    Returns
    -------
    ``cells x held_genes`` in log1p(CP10k) units.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> st, ref = mdata["spatial"], mdata["rna"]
    >>> impute_knn(st[:, 10:].copy(), ref, list(st.var_names[:10])).shape
    (3039, 10)
    """
    from sklearn.neighbors import NearestNeighbors

    st, ref_kept, ref_held = _kept_and_targets(adata_st, adata_sc, held_genes)
    k = min(n_neighbors, ref_kept.shape[0])
    idx = NearestNeighbors(n_neighbors=k).fit(zscore(ref_kept)).kneighbors(zscore(st), return_distance=False)
    return _frame(ref_held[idx].mean(axis=1), adata_st, held_genes)


def impute_ridge(
    adata_st: AnnData,
    adata_sc: AnnData,
    held_genes: Sequence[str],
    *,
    random_state: int = 0,
    alpha: float = 10.0,
) -> pd.DataFrame:
    r"""Ridge regression baseline: kept genes -> held-out genes, fitted on the reference.

    In the space of :func:`impute_knn` (per-modality z-scores of the kept genes), a multi-output ridge regression
    :math:`\min_B \|Y - X B\|^2 + \alpha \|B\|^2` (with intercept) is fitted on the reference (``X``: z-scored kept
    genes, ``Y``: held-out log1p(CP10k)) and applied to the z-scored spatial cells.

    Parameters
    ----------
    adata_st, adata_sc, held_genes, random_state
        See :mod:`spalstf.benchmark` (``random_state`` is unused).
    alpha
        Ridge penalty.

    Returns
    -------
    ``cells x held_genes`` in log1p(CP10k) units (can be negative).

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> st, ref = mdata["spatial"], mdata["rna"]
    >>> impute_ridge(st[:, 10:].copy(), ref, list(st.var_names[:10])).shape
    (3039, 10)
    """
    from sklearn.linear_model import Ridge

    st, ref_kept, ref_held = _kept_and_targets(adata_st, adata_sc, held_genes)
    model = Ridge(alpha=alpha).fit(zscore(ref_kept), ref_held)
    return _frame(model.predict(zscore(st)), adata_st, held_genes)


# SpaGE -----------------------------------------------------------------------------------------------------------
def impute_spage(
    adata_st: AnnData,
    adata_sc: AnnData,
    held_genes: Sequence[str],
    *,
    random_state: int = 0,
    n_pv: int | None = None,
    n_neighbors: int = 50,
    sim_threshold: float = 0.3,
) -> pd.DataFrame:
    """SpaGE (this project's implementation, :func:`spalstf.benchmark._spage.spage_impute`).

    Shared genes: the kept genes, reference in log1p(CP10k), spatial as given (each z-scored within its dataset);
    targets: the reference's held-out genes in log1p(CP10k).

    Parameters
    ----------
    adata_st, adata_sc, held_genes, random_state
        See :mod:`spalstf.benchmark` (``random_state`` seeds the PCA solver).
    n_pv
        Principal vectors; default half the kept genes.
    n_neighbors
        Reference neighbours (SpaGE: 50, cosine distance).
    sim_threshold
        Minimum cosine similarity of a principal-vector pair (SpaGE: 0.3).

    Returns
    -------
    ``cells x held_genes`` in log1p(CP10k) units.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> st, ref = mdata["spatial"], mdata["rna"]
    >>> impute_spage(st[:, 10:].copy(), ref, list(st.var_names[:10])).shape
    (3039, 10)
    """
    st, ref_kept, ref_held = _kept_and_targets(adata_st, adata_sc, held_genes)
    pred = spage_impute(
        st,
        ref_kept,
        ref_held,
        n_pv=n_pv,
        n_neighbors=n_neighbors,
        sim_threshold=sim_threshold,
        random_state=random_state,
    )
    return _frame(pred, adata_st, held_genes)


# SpaLSTF ---------------------------------------------------------------------------------------------------------
def impute_spalstf(
    adata_st: AnnData,
    adata_sc: AnnData,
    held_genes: Sequence[str],
    *,
    random_state: int = 0,
    **kwargs: Any,
) -> pd.DataFrame:
    """SpaLSTF: :func:`spalstf.tl.spalstf_impute` with ``genes=held_genes`` on a copy of ``adata_st``.

    Parameters
    ----------
    adata_st, adata_sc, held_genes, random_state
        See :mod:`spalstf.benchmark`.
    **kwargs
        Passed to :func:`~spalstf.tl.spalstf_impute` (model options such as ``preset`` or ``n_hidden``, training
        options such as ``max_epochs``, and ``n_samples``, ``sampler``, ``interval``, ...). Defaults are those of
        :func:`~spalstf.tl.spalstf_impute` (the ``"cpu"`` preset, no intervals); the progress bar is off unless
        ``progress_bar=True``.

    Returns
    -------
    With ``interval=`` a level: an :class:`IntervalPrediction` in the platform's space, with the bounds at
    the levels of the calibration curve too (computed in the same pass). Without: the ``cells x held_genes`` frame
    in the model's log1p units.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> st, ref = mdata["spatial"], mdata["rna"]
    >>> impute_spalstf(st[:, 10:].copy(), ref, list(st.var_names[:10]), max_epochs=2).shape  # doctest: +SKIP
    (3039, 10)
    """
    from ..model._calibration import CURVE_LEVELS
    from ..tl._impute import _spalstf_impute, spalstf_impute

    arguments = {
        name: p.default
        for name, p in inspect.signature(spalstf_impute).parameters.items()
        if p.default is not inspect.Parameter.empty and name != "table_key"  # SpatialData only
    }
    arguments.update(progress_bar=False, require_spatial=False)
    arguments.update({k: v for k, v in kwargs.items() if k in arguments})
    options = {k: v for k, v in kwargs.items() if k not in arguments}
    arguments.update(genes=list(held_genes), random_state=random_state, copy=True)
    interval = arguments["interval"]
    if interval is not None and arguments["out"] is not None:
        raise ValueError(
            "cross_validate scores intervals from in-memory results; remove out= from method_kwargs['spalstf']."
        )
    if interval is not None:
        arguments["extra_levels"] = CURVE_LEVELS
    adata, model, result = _spalstf_impute(adata_st, adata_sc, **arguments, **options)
    held = list(held_genes)
    mean = adata.obsm[arguments["key_added"]][held].astype(np.float64)
    if interval is None:
        return mean
    return IntervalPrediction(
        mean=mean,
        level=float(interval),
        lower=result.frames["lower"][held].astype(np.float64),
        upper=result.frames["upper"][held].astype(np.float64),
        reliability=model.get_gene_reliability().reindex(held),
        curve={k: v[held].astype(np.float64) for k, v in result.frames.items() if isinstance(k, tuple)},
    )
