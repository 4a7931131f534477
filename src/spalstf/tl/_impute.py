"""`spalstf_impute`: the one-call imputation users run."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import anndata as ad
import pandas as pd
import torch
from anndata import AnnData

from .._constants import IMPUTED_KEY, SPATIAL_KEY, STD_SUFFIX
from .._validation import check_nonempty, get_matrix
from ..model import SpaLSTF
from ..model._module import Sampler
from ..model._preprocessing import model_output_space
from ..model._streaming import check_out_path

_MODEL_ARGS = frozenset(
    {
        "case_sensitive",
        "n_top_genes",
        "preset",
        "n_neighbors",
        "n_hidden",
        "n_blocks",
        "n_heads",
        "n_tokens",
        "n_lstm_hidden",
        "n_lstm_layers",
        "n_diffusion_steps",
        "kl_weight",
        "perturbation_std",
        "cell_scaling",
        "target_sum",
    }
)


def _registration_view(adata: AnnData, layer: str | None) -> AnnData:
    """A new AnnData sharing the reference's matrix, so registration never writes into the user's object."""
    X = get_matrix(adata, layer, "adata_sc")
    return ad.AnnData(X=X, obs=pd.DataFrame(index=adata.obs_names.copy()), var=adata.var.copy())


def spalstf_impute(
    adata_st: AnnData,
    adata_sc: AnnData,
    genes: Sequence[str] | None = None,
    *,
    key_added: str = IMPUTED_KEY,
    layer_st: str | None = None,
    layer_sc: str | None = None,
    n_samples: int = 1,
    sampler: Sampler = "ddim",
    n_sampling_steps: int = 25,
    random_state: int = 0,
    impute_batch_size: int = 1024,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    model: SpaLSTF | None = None,
    require_spatial: bool = True,
    copy: bool = False,
    progress_bar: bool = True,
    **train_kwargs: Any,
) -> AnnData | None:
    """Impute genes of a spatial panel from a scRNA-seq reference with SpaLSTF.

    Trains a :class:`~spalstf.model.SpaLSTF` on ``adata_sc`` conditioned on the genes ``adata_st`` measured (or reuses
    ``model``), then imputes ``genes`` for every spatial cell. Only the documented keys below are written; nothing else
    of either input changes.

    ``adata_st`` may be backed (``anndata.read_h5ad(path, backed="r")``): its cells are read ``impute_batch_size``
    rows at a time, for the model's statistics and for imputation. The results still go to the in-memory ``obsm`` /
    ``uns`` of the AnnData object, never into its backing file; for outputs too large for memory pass ``out``.

    Parameters
    ----------
    adata_st
        Spatial data (cells x measured genes); raw counts or non-negative intensities. Coordinates in
        ``obsm["spatial"]``.
    adata_sc
        Reference scRNA-seq data with raw counts.
    genes
        Genes to impute. ``None``: reference genes the panel lacks, at most ``n_top_genes`` (default 2000) ranked by
        ``adata_sc.var["dispersions_norm"]`` when present, else in reference order.
    key_added
        Key of the outputs in ``adata_st.obsm`` and ``adata_st.uns``.
    layer_st, layer_sc
        Layers holding the expression of each modality (``None``: ``.X``).
    n_samples
        ``1``: the model's posterior-mean estimate; ``> 1``: mean and standard deviation over that many diffusion
        draws (see :meth:`spalstf.model.SpaLSTF.impute`).
    sampler
        ``"ddim"`` (fast, deterministic path per draw) or ``"ddpm"`` (the paper's full chain); used when
        ``n_samples > 1``.
    n_sampling_steps
        Steps of the DDIM sampler.
    random_state
        Seed of training and of the per-cell sampling noise.
    impute_batch_size
        Spatial cells read and imputed at a time (bounds the working memory; the result does not depend on it).
    out
        Path of an ``.h5ad`` file to write the imputed values into, chunk by chunk, instead of ``obsm`` (see
        :meth:`~spalstf.model.SpaLSTF.impute` for its layout: ``X`` mean, ``layers["std"]``, ``obs`` = cells,
        ``var`` = imputed genes). ``obsm[key_added]`` is then not written; ``uns[key_added]["out"]`` holds the path.
    overwrite
        Replace an existing ``out`` file.
    model
        A trained model to reuse (its genes are imputed and ``genes`` must be ``None`` or equal to them).
    require_spatial
        Raise if ``adata_st.obsm["spatial"]`` is missing (the plots and spatial statistics need it).
    copy
        Return a modified copy of ``adata_st`` instead of writing into it.
    progress_bar
        Show progress bars for training and sampling.
    **train_kwargs
        Model options (``preset``, ``n_hidden``, ``n_neighbors``, ``case_sensitive``, ``n_top_genes``, ...; see
        :class:`~spalstf.model.SpaLSTF`) and training options (``max_epochs``, ``batch_size``, ``lr``,
        ``accelerator``, ``devices``, ...; see :meth:`~spalstf.model.SpaLSTF.train`).

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes to ``adata_st``:

    ``obsm[key_added]``
        :class:`pandas.DataFrame` (index ``obs_names``, columns the imputed genes) of log1p-normalised expression in
        the reference's units, ``log1p(counts / library * target_sum)`` (``target_sum`` 10,000 unless given; the
        library is the total over the model's genes); ``uns[key_added]["output_space"]`` says which. Not written
        when ``out`` is given (a stale one is removed).
    ``obsm[key_added + "_std"]``
        Per-cell, per-gene standard deviation over draws (only when ``n_samples > 1`` and no ``out``).
    ``uns[key_added]``
        ``params`` (the call's settings), ``measured_genes`` (genes used as the condition, as spelled in
        ``adata_st``), ``imputed_genes``, ``output_space``, ``train_time_s``, ``impute_time_s`` and, with ``out``,
        ``out`` (the path of the written file).

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    >>> sp.tl.spalstf_impute(adata_st, adata_sc, n_top_genes=100)  # doctest: +SKIP
    >>> adata_st.obsm["spalstf_imputed"].shape  # doctest: +SKIP
    (3039, 100)

    A spatial dataset too large for memory, results written to disk:

    >>> import anndata
    >>> big = anndata.read_h5ad("st_cells.h5ad", backed="r")  # doctest: +SKIP
    >>> sp.tl.spalstf_impute(big, adata_sc, out="imputed.h5ad", require_spatial=False)  # doctest: +SKIP
    >>> anndata.read_h5ad("imputed.h5ad", backed="r").X[:5]  # doctest: +SKIP
    """
    check_nonempty(adata_st, "adata_st")
    check_nonempty(adata_sc, "adata_sc")
    if require_spatial and SPATIAL_KEY not in adata_st.obsm:
        raise KeyError(
            f"adata_st.obsm[{SPATIAL_KEY!r}] is missing: store the cell coordinates there, or pass "
            "require_spatial=False to impute without them."
        )
    get_matrix(adata_st, layer_st, "adata_st")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
    if impute_batch_size < 1:
        raise ValueError(f"impute_batch_size must be >= 1, got {impute_batch_size}.")
    if copy and adata_st.isbacked:
        raise ValueError(
            "copy=True needs an in-memory adata_st, but it is backed; pass copy=False (results go to the object's "
            "in-memory obsm/uns, not its file), load it with `adata_st.to_memory()`, or pass out='imputed.h5ad'."
        )
    if out is not None:
        check_out_path(out, overwrite, [adata_st])  # fail before training
    model_kwargs = {k: train_kwargs.pop(k) for k in list(train_kwargs) if k in _MODEL_ARGS}

    t0 = time.perf_counter()
    if model is None:
        reference = _registration_view(adata_sc, layer_sc)
        SpaLSTF.setup_anndata(reference)
        torch.manual_seed(random_state)
        model = SpaLSTF(reference, adata_st, genes=genes, st_layer=layer_st, **model_kwargs)
        train_kwargs.setdefault("enable_progress_bar", progress_bar)
        model.train(**train_kwargs)
    else:
        if model_kwargs or train_kwargs:
            raise ValueError(
                f"Options {sorted({**model_kwargs, **train_kwargs})} only apply when training; `model` is already "
                "trained."
            )
        if genes is not None and list(genes) != model.imputed_genes:
            raise ValueError("`genes` differs from the genes the passed `model` imputes; pass genes=None.")
    t1 = time.perf_counter()
    result = model.impute(
        adata_st,
        layer=layer_st,
        n_samples=n_samples,
        sampler=sampler,
        n_sampling_steps=n_sampling_steps,
        batch_size=impute_batch_size,
        random_state=random_state,
        progress_bar=progress_bar,
        out=out,
        overwrite=overwrite,
    )
    t2 = time.perf_counter()

    adata = adata_st.copy() if copy else adata_st
    if out is None:
        mean, std = result
        adata.obsm[key_added] = mean
    else:
        result.file.close()
        std = None
        if key_added in adata.obsm:
            del adata.obsm[key_added]  # a stale one from an earlier call would not match the written file
    if std is not None:
        adata.obsm[key_added + STD_SUFFIX] = std
    elif key_added + STD_SUFFIX in adata.obsm:
        del adata.obsm[key_added + STD_SUFFIX]  # a stale one from an earlier call would not match these values
    adata.uns[key_added] = {
        "params": {
            "n_samples": n_samples,
            "sampler": sampler if n_samples > 1 else "posterior_mean",
            "n_sampling_steps": n_sampling_steps,
            "random_state": random_state,
            "impute_batch_size": impute_batch_size,
            **{k: v for k, v in model_kwargs.items()},
            **{k: v for k, v in train_kwargs.items() if isinstance(v, int | float | str | bool)},
        },
        "measured_genes": list(model.gene_plan.measured_st),
        "imputed_genes": model.imputed_genes,
        "output_space": model_output_space(model.target_sum),
        "train_time_s": t1 - t0,
        "impute_time_s": t2 - t1,
    }
    if out is not None:
        adata.uns[key_added]["out"] = str(out)
    return adata if copy else None
