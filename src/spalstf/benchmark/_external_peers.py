"""The imputation methods of the benchmark that run another package's model: gimVI (scvi-tools) and Tangram.

Each follows the signature shared by every method (see :mod:`spalstf.benchmark`).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from .._expression import is_count_matrix, to_dense
from .._state import global_seed
from ._peer_methods import MethodUnavailableError, _frame, _kept_and_targets


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
        See :mod:`spalstf.benchmark` (``random_state`` sets ``scvi.settings.seed`` for the call; the global generators
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
        See :mod:`spalstf.benchmark`. ``random_state`` seeds the mapping: Tangram seeds its initial mapping only when
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
