"""Imputation methods compared by :func:`spalstf.tl.cross_validate`, one small function per method.

Every function has the same signature::

    impute_<name>(adata_st, adata_sc, held_genes, *, random_state, **kwargs) -> pandas.DataFrame

``adata_st`` holds only the measured (kept) genes of the fold, values as the spatial source gives them in ``.X``
(and the coordinates in ``obsm["spatial"]`` when known); ``adata_sc`` is the reference with raw counts in ``.X``;
``held_genes`` are reference genes to predict. The result is a ``cells x held_genes`` frame indexed by
``adata_st.obs_names``. The functions never modify their inputs.

Shared-gene space of the simple baselines and of SpaGE: the reference is library-normalised and log-transformed,
``log1p(counts / library * 1e4)`` (library = total counts over all reference genes); the spatial values are used as
given. Predictions of held-out genes are in the reference's log1p(CP10k) units for ``knn``, ``ridge``, ``spage``,
``tangram`` and ``spalstf``; ``gimvi`` returns its normalised expression (``get_imputed_values(normalized=True)``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from .._expression import TARGET_SUM, is_count_matrix, log1p_normalize, to_dense, zscore
from .._state import global_seed
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
        See the module docstring (``random_state`` is unused: the method is deterministic).
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
        See the module docstring (``random_state`` is unused).
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
    """SpaGE (this project's implementation, :func:`spalstf.tl._spage.spage_impute`).

    Shared genes: the kept genes, reference in log1p(CP10k), spatial as given (each z-scored within its dataset);
    targets: the reference's held-out genes in log1p(CP10k).

    Parameters
    ----------
    adata_st, adata_sc, held_genes, random_state
        See the module docstring (``random_state`` seeds the PCA solver).
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
        See the module docstring.
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
    from ._impute import _spalstf_impute, spalstf_impute

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


# gimVI -----------------------------------------------------------------------------------------------------------
@contextmanager
def _scvi_seed(seed: int):
    """Set ``scvi.settings.seed`` (scvi-tools' data splits read it) for a block, then restore all it changed.

    Besides the seed and the global generators, scvi-tools' setter turns on cuDNN's deterministic mode and writes the
    ``XLA_FLAGS`` and ``PL_GLOBAL_SEED`` environment variables; those are restored too.
    """
    import scvi

    previous = scvi.settings.seed
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    environment = {name: os.environ.get(name) for name in ("XLA_FLAGS", "PL_GLOBAL_SEED")}
    with global_seed(seed):
        scvi.settings.seed = seed  # also seeds the global generators (lightning's seed_everything)
        try:
            yield
        finally:
            scvi.settings.seed = previous  # re-seeds when not None; the generators are restored just after
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
            for name, value in environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def gimvi_spatial_counts(st: np.ndarray, ref_kept_counts: np.ndarray) -> tuple[np.ndarray, float]:
    """Make the spatial values count-like for gimVI's negative binomial likelihood.

    Integer-valued data is returned unchanged (factor 1). Otherwise the values are multiplied by
    ``s = median_ref(library) / median_st(library)`` (libraries: per-cell totals over the kept genes, medians over
    cells with a positive total), so that a typical spatial cell has the counts of a typical reference cell on those
    genes, and rounded to integers.

    Parameters
    ----------
    st
        ``cells x kept genes`` spatial values (non-negative).
    ref_kept_counts
        ``reference cells x kept genes`` raw counts.

    Returns
    -------
    The count-like matrix and the factor ``s``.

    Examples
    --------
    >>> import numpy as np
    >>> counts, s = gimvi_spatial_counts(np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([[10, 10], [5, 5]]))
    >>> s, counts.tolist()
    (15.0, [[8.0, 8.0], [15.0, 0.0]])
    """
    if is_count_matrix(st):
        return st.copy(), 1.0
    lib_st, lib_ref = st.sum(axis=1), ref_kept_counts.sum(axis=1)
    med_st = np.median(lib_st[lib_st > 0]) if (lib_st > 0).any() else 1.0
    med_ref = np.median(lib_ref[lib_ref > 0]) if (lib_ref > 0).any() else 1.0
    factor = float(med_ref / med_st)
    return np.round(st * factor), factor


def impute_gimvi(
    adata_st: AnnData,
    adata_sc: AnnData,
    held_genes: Sequence[str],
    *,
    random_state: int = 0,
    max_epochs: int = 200,
    n_latent: int = 10,
    accelerator: str = "auto",
    generative_distributions: list[str] | None = None,
    **train_kwargs: Any,
) -> pd.DataFrame:
    """The gimVI model (Lopez et al. 2019) via :class:`scvi.external.GIMVI`.

    The reference is restricted to the shared genes (kept + held-out; raw counts), the spatial data to the kept
    genes. gimVI's likelihoods are count distributions (``"zinb"``, ``"nb"``, ``"poisson"``; there is no Gaussian
    option), so non-integer spatial values are scaled and rounded by :func:`gimvi_spatial_counts`. Both AnnData are
    registered with :meth:`~scvi.external.GIMVI.setup_anndata` (no batch or label keys), the model is built with
    its defaults (``generative_distributions=["zinb", "nb"]``, ``n_latent=10``) and trained with
    :meth:`~scvi.external.GIMVI.train` (default 200 epochs, its own 90/10 train/validation split). The imputed
    values are the spatial cells' ``get_imputed_values(normalized=True)``: the decoder's normalised expression
    (``px_scale``, a proportion whose sum over the spatial genes is 1 per cell).

    Parameters
    ----------
    adata_st, adata_sc, held_genes, random_state
        See the module docstring (``random_state`` sets ``scvi.settings.seed`` for the call; the global generators
        are restored afterwards).
    max_epochs
        Training epochs (gimVI's default 200; lower it for quick tests).
    n_latent
        Latent dimensions.
    accelerator
        Lightning accelerator.
    generative_distributions
        Likelihoods of ``[reference, spatial]``; default ``["zinb", "nb"]``.
    **train_kwargs
        Passed to :meth:`~scvi.external.GIMVI.train` (e.g. ``batch_size``, ``kappa``).

    Returns
    -------
    ``cells x held_genes`` of normalised expression (proportions).

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> st, ref = mdata["spatial"], mdata["rna"]
    >>> impute_gimvi(st[:, 10:].copy(), ref, list(st.var_names[:10]), max_epochs=2).shape  # doctest: +SKIP
    (3039, 10)
    """
    from scvi.external import GIMVI

    kept = list(adata_st.var_names)
    genes = kept + [g for g in held_genes if g not in set(kept)]
    ref_counts = to_dense(adata_sc.X[:, adata_sc.var_names.get_indexer(genes)])
    st_counts, _ = gimvi_spatial_counts(to_dense(adata_st.X), ref_counts[:, : len(kept)])
    seq = ad.AnnData(
        X=sparse.csr_matrix(ref_counts.astype(np.float32)),
        obs=pd.DataFrame(index=adata_sc.obs_names.copy()),
        var=pd.DataFrame(index=pd.Index(genes)),
    )
    spatial = ad.AnnData(
        X=st_counts.astype(np.float32),
        obs=pd.DataFrame(index=adata_st.obs_names.copy()),
        var=pd.DataFrame(index=pd.Index(kept)),
    )
    train_kwargs.setdefault("enable_progress_bar", False)
    train_kwargs.setdefault("enable_model_summary", False)
    with _scvi_seed(random_state):
        GIMVI.setup_anndata(seq)
        GIMVI.setup_anndata(spatial)
        model = GIMVI(
            seq, spatial, generative_distributions=generative_distributions or ["zinb", "nb"], n_latent=n_latent
        )
        model.train(max_epochs=max_epochs, accelerator=accelerator, **train_kwargs)
        _, imputed = model.get_imputed_values(normalized=True)
    pos = [genes.index(g) for g in held_genes]
    return _frame(np.asarray(imputed)[:, pos], adata_st, held_genes)


# Tangram ---------------------------------------------------------------------------------------------------------
TANGRAM_MISSING = (
    "tangram-sc is not installed; install the optional extra with `pip install 'spalstf[peers]'` "
    "(or `pip install tangram-sc`) to benchmark Tangram."
)


def _import_tangram():
    """Import tangram and undo its import's root-logger set-up (level INFO and a handler).

    Left in place, it would print every training step into the user's output.
    """
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        return importlib.import_module("tangram")
    except ImportError as err:
        raise MethodUnavailableError(TANGRAM_MISSING) from err
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def impute_tangram(
    adata_st: AnnData,
    adata_sc: AnnData,
    held_genes: Sequence[str],
    *,
    random_state: int = 0,
    mode: str = "cells",
    num_epochs: int = 1000,
    learning_rate: float = 0.1,
    density_prior: str | None = "rna_count_based",
    device: str | None = None,
) -> pd.DataFrame:
    r"""Tangram (Biancalani et al. 2021) via the ``tangram-sc`` package (optional extra ``peers``).

    The reference in log1p(CP10k) and the spatial values as given are prepared with ``tangram.pp_adatas``
    (training genes = the kept genes; gene names left as they are, not lower-cased), the cells are mapped to space
    with ``tangram.map_cells_to_space`` (its defaults: ``mode="cells"``, 1000 epochs, learning rate 0.1), and the
    held-out genes are projected with the learned mapping :math:`M` (reference cells x spatial cells):
    :math:`\hat Y = M^\top Y_{ref}` (what ``tangram.project_genes`` computes, done here on the held-out genes only).

    Parameters
    ----------
    adata_st, adata_sc, held_genes, random_state
        See the module docstring. ``random_state`` seeds the mapping: Tangram seeds its initial mapping only when
        ``random_state`` is truthy (so not for 0) and otherwise draws it from NumPy's global generator, which is
        therefore seeded with ``random_state`` for the call (and restored afterwards).
    mode, num_epochs, learning_rate, density_prior
        Passed to ``tangram.map_cells_to_space``.
    device
        Torch device; default ``"cuda:0"`` when available, else ``"cpu"``.

    Returns
    -------
    ``cells x held_genes`` in log1p(CP10k) units.

    Raises
    ------
    MethodUnavailableError
        If ``tangram`` cannot be imported.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> st, ref = mdata["spatial"], mdata["rna"]
    >>> impute_tangram(st[:, 10:].copy(), ref, list(st.var_names[:10]), num_epochs=10).shape  # doctest: +SKIP
    (3039, 10)
    """
    tg = _import_tangram()
    kept = list(adata_st.var_names)
    st, ref_kept, ref_held = _kept_and_targets(adata_st, adata_sc, held_genes)
    ref = ad.AnnData(
        X=sparse.csr_matrix(ref_kept.astype(np.float32)),
        obs=pd.DataFrame(index=adata_sc.obs_names.copy()),
        var=pd.DataFrame(index=pd.Index(kept)),
    )
    spatial = ad.AnnData(
        X=st.astype(np.float32),
        obs=pd.DataFrame(index=adata_st.obs_names.copy()),
        var=pd.DataFrame(index=pd.Index(kept)),
    )
    tg.pp_adatas(ref, spatial, genes=kept, gene_to_lowercase=False)
    device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    with global_seed(random_state):
        mapping = tg.map_cells_to_space(
            ref,
            spatial,
            mode=mode,
            num_epochs=num_epochs,
            learning_rate=learning_rate,
            density_prior=density_prior,
            device=device,
            random_state=random_state,
            verbose=False,
        )
    M = to_dense(mapping.X)  # reference cells x spatial cells
    return _frame(M.T @ ref_held, adata_st, held_genes)


#: The methods :func:`spalstf.tl.cross_validate` knows, by name (looked up at call time).
PEERS: dict[str, PeerFunction] = {
    "spalstf": impute_spalstf,
    "gimvi": impute_gimvi,
    "tangram": impute_tangram,
    "spage": impute_spage,
    "knn": impute_knn,
    "ridge": impute_ridge,
}

#: The arguments :func:`spalstf.tl.cross_validate` passes to every method itself (not options).
_ARGS_SET_BY_CROSS_VALIDATE = ("adata_st", "adata_sc", "held_genes", "random_state")


def check_options(method: str, options: dict[str, Any]) -> None:
    """Raise a `TypeError` naming an option of ``method_kwargs[method]`` that the method does not take.

    Checked before any fold runs, so a typo fails at once instead of being recorded as an error of every fold. For
    ``"spalstf"`` the options are those of :func:`~spalstf.tl.spalstf_impute` and of what it routes them to; a
    method whose function takes arbitrary keywords (gimVI's training, Tangram's mapping) is checked by its library.
    """
    func = PEERS[method]
    taken = [k for k in options if k in _ARGS_SET_BY_CROSS_VALIDATE]
    if taken:
        raise TypeError(f"method_kwargs[{method!r}] sets {taken}, which cross_validate sets itself; remove it.")
    if func is impute_spalstf:
        from ..model._workflow import route_options
        from ._impute import spalstf_impute

        own = set(inspect.signature(spalstf_impute).parameters)
        try:
            route_options({k: v for k, v in options.items() if k not in own}, own)
        except TypeError as err:
            raise TypeError(f"method_kwargs[{method!r}]: {err}") from None
        return
    parameters = inspect.signature(func).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    valid = sorted(set(parameters) - set(_ARGS_SET_BY_CROSS_VALIDATE))
    unknown = [k for k in options if k not in parameters]
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f". Valid options: {valid}."
        raise TypeError(f"method_kwargs[{method!r}] has an unknown option {unknown[0]!r}{hint}")


#: Methods that are known but cannot be run here, with the reason.
NOT_RUNNABLE: dict[str, str] = {
    "stdiff": (
        "stDiff is not runnable here: its only release (stdiff-sc 1.1.4) pins numpy 1.19.5, torch 1.9.0, scanpy 1.7.2 "
        "and pandas 1.1.5 (not installable on Python >= 3.11), imports timm/ray, and sets CUDA default tensors. "
        "docs/benchmarks.md compares against its published figures instead."
    ),
}
