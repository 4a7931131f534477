"""`spalstf_impute`: the one-call imputation users run."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from anndata import AnnData

from .._constants import IMPUTED_KEY, LOWER_SUFFIX, SPATIAL_KEY, STD_SUFFIX, UPPER_SUFFIX
from .._spatialdata import import_spatialdata, is_spatialdata, resolve_table
from .._threads import cpu_threads
from ..model import SpaLSTF
from ..model._defaults import IMPUTE_BATCH_SIZE, SAMPLING_STEPS, Sampler, check_option
from ..model._workflow import ImputationResult, ImputeRequest, SpatialInput, fill_parameters, fit_and_impute

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger(__name__)


def _table_of(
    sdata: SpatialData, table_key: str | None, copy: bool, require_spatial: bool = True
) -> tuple[SpatialData, AnnData]:
    """The SpatialData object to return (a deep copy with ``copy=True``) and its table ``table_key`` to impute into.

    The table is imputed in place; its region and instance keys and every element stay as they are. The table
    annotating a region is what places the cells in space, so ``require_spatial`` asks for that region (not for
    ``obsm["spatial"]``); with ``require_spatial=False`` a table that annotates no region is imputed too.
    """
    _, table, _ = resolve_table(sdata, table_key, require_region=require_spatial)  # checked before any copy
    if copy:
        sdata = import_spatialdata().deepcopy(sdata)
        _, table, _ = resolve_table(sdata, table_key, require_region=require_spatial)
    return sdata, table


def _is_our_result(adata: AnnData, key: str, genes: pd.Index, obsm_key: str | None = None) -> bool:
    """Whether ``uns[key]`` (and ``obsm[obsm_key]``, when given) hold an earlier imputation of spalstf_impute.

    Ours: ``uns[key]`` holds our metadata (``imputed_genes`` and ``output_space``) and the obsm entry is a DataFrame
    whose columns are those imputed genes; or, with no ``uns[key]`` (e.g. the obsm copied to another AnnData), the
    obsm entry is a DataFrame indexed by the cell names whose columns are reference genes (``genes``).
    """
    meta = adata.uns.get(key)
    if meta is None and obsm_key is not None:
        frame = adata.obsm[obsm_key]
        return (
            isinstance(frame, pd.DataFrame)
            and len(frame.columns) > 0
            and frame.index.equals(adata.obs_names)
            and pd.Index(frame.columns.astype(str)).isin(genes).all()
        )
    if not isinstance(meta, Mapping) or "imputed_genes" not in meta or "output_space" not in meta:
        return False
    if obsm_key is None:
        return True
    frame = adata.obsm[obsm_key]
    return isinstance(frame, pd.DataFrame) and [str(c) for c in frame.columns] == [
        str(g) for g in meta["imputed_genes"]
    ]


def check_output_keys(adata: AnnData, key_added: str, genes: Sequence[str]) -> None:
    """Refuse a ``key_added`` whose keys hold something an earlier ``spalstf_impute`` did not write.

    The call writes (or, when stale, removes) ``obsm[key_added]`` and its ``_std``, ``_lower`` and ``_upper`` keys,
    and ``uns[key_added]``; an earlier imputation there (of the reference genes ``genes``) may be replaced, but
    coordinates, embeddings or another tool's results never are. Raised before any training.
    """
    genes = pd.Index([str(g) for g in genes])
    keys = [key_added + suffix for suffix in ("", STD_SUFFIX, LOWER_SUFFIX, UPPER_SUFFIX)]
    foreign = [f"obsm[{k!r}]" for k in keys if k in adata.obsm and not _is_our_result(adata, key_added, genes, k)]
    if key_added in adata.uns and not _is_our_result(adata, key_added, genes):
        foreign.append(f"uns[{key_added!r}]")
    if foreign:
        raise ValueError(
            f"key_added={key_added!r} would replace {', '.join(foreign)} of adata_st, not written by spalstf_impute "
            f"(e.g. cell coordinates or an embedding). Pass another key_added (default {IMPUTED_KEY!r}), or delete "
            "those keys first if they are an old result to discard."
        )


def spalstf_impute(
    adata_st: AnnData | SpatialData,
    adata_sc: AnnData,
    genes: Sequence[str] | None = None,
    *,
    key_added: str = IMPUTED_KEY,
    layer_st: str | None = None,
    layer_sc: str | None = None,
    n_samples: int = 1,
    sampler: Sampler = "ddim",
    n_sampling_steps: int = SAMPLING_STEPS,
    random_state: int = 0,
    impute_batch_size: int = IMPUTE_BATCH_SIZE,
    interval: float | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    model: SpaLSTF | None = None,
    require_spatial: bool = True,
    table_key: str | None = None,
    copy: bool = False,
    progress_bar: bool = True,
    n_jobs: int | None = None,
    **options: Any,
) -> AnnData | SpatialData | None:
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
        ``obsm["spatial"]``. Or a :class:`spatialdata.SpatialData` object: its table ``table_key`` is imputed and
        the keys below are written into that table (region and instance keys and every element unchanged).
    adata_sc
        Reference scRNA-seq data with raw counts.
    genes
        Genes to impute. ``None``: reference genes the panel lacks, at most ``n_top_genes`` (default 2000) ranked by
        ``adata_sc.var["dispersions_norm"]`` when present, else in reference order. Requested genes that the panel
        measured are imputed (to cross-check them) and left out of the condition; a log line says which.
    key_added
        Key of the outputs in ``adata_st.obsm`` and ``adata_st.uns`` (a non-empty string). An earlier result of
        this function under that key is replaced (known by its ``uns`` metadata or, without it, as a DataFrame of
        reference genes indexed by the cells); a key holding anything else (``"spatial"``, an embedding, another
        tool's ``uns`` entry; also ``key_added + "_std"``, ``"_lower"``, ``"_upper"``) raises a `ValueError` before
        any training.
    layer_st, layer_sc
        Layers holding the expression of each modality (``None``: ``.X``).
    n_samples
        {n_samples}
    sampler
        {sampler}
    n_sampling_steps
        {n_sampling_steps}
    random_state
        Seed of training and of the per-cell sampling noise: an integer between 0 and 2**32 - 1. ``None`` and
        non-integers raise a `ValueError` before any work (every result is seeded and reproducible).
    impute_batch_size
        Spatial cells read and imputed at a time (bounds the working memory; the result does not depend on it).
    interval
        {interval}
        The expected SPCC goes to ``uns[key_added]["gene_reliability"]``; a passed ``model`` that was calibrated
        before keeps its calibration.
    out
        {out}
        ``obsm[key_added]`` is then not written; ``uns[key_added]["out"]`` holds the path.
    overwrite
        {overwrite}
    model
        A trained model to reuse (its genes are imputed and ``genes`` must be ``None`` or equal to them).
    require_spatial
        Raise if ``adata_st.obsm["spatial"]`` is missing (the plots and spatial statistics need it). With a
        SpatialData object the table must annotate a region (its shapes or labels place the cells) instead; with
        ``False`` a table that annotates no region is imputed too. A table that annotates a region must identify
        its cells: duplicated instance ids, or ids absent from the shapes' index, raise either way.
    table_key
        With a SpatialData object: the table of the spatial cells (``None``: its only table). Not used with an
        AnnData.
    copy
        Return a modified copy of ``adata_st`` instead of writing into it (of a SpatialData object: a deep copy,
        elements included).
    progress_bar
        Show progress bars for training and sampling.
    n_jobs
        CPU threads of torch and of the BLAS/OpenMP pools during the call (restored afterwards). ``None``:
        :attr:`scanpy.settings.n_jobs` (1 unless set; -1: every core). One thread keeps the call fast on a shared or
        busy machine, where more threads than free cores make it many times slower (:mod:`spalstf._threads`).
    **options
        Model options (``preset``, ``n_hidden``, ``n_neighbors``, ``case_sensitive``, ``n_top_genes``, ...; the
        parameters of :class:`~spalstf.model.SpaLSTF`) and training options (``max_epochs``, ``batch_size``, ``lr``,
        ``accelerator``, ``devices``, ...; the parameters of :meth:`~spalstf.model.SpaLSTF.train` and of the
        Lightning trainer). Each goes to the one that takes it; a name none of them takes raises a `TypeError`
        naming the closest valid one, before any work is done.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes to ``adata_st`` (with a SpatialData object: to its
    table ``table_key``):

    ``obsm[key_added]``
        :class:`pandas.DataFrame` (index ``obs_names``, columns the imputed genes). With ``interval``: the value
        the spatial platform would measure, ``log1p(x / L * target_sum)``, ``x`` in ``adata_st``'s own values and
        ``L`` the cell's total over the measured genes (``target_sum`` 10,000 unless given). Without:
        log1p-normalised expression in the reference's units, ``log1p(counts / library *
        target_sum)`` with the library over the measured genes. ``uns[key_added]["output_space"]`` says which. Not
        written when ``out`` is given (a stale one is removed).
    ``obsm[key_added + "_lower"]``, ``obsm[key_added + "_upper"]``
        Bounds of the central ``interval`` (same index and columns; with ``interval`` and no ``out``). NaN for cells
        whose measured genes are all zero (their platform value is undefined).
    ``obsm[key_added + "_std"]``
        Per-cell, per-gene standard deviation over draws (only when ``n_samples > 1`` and no ``out``).
    ``uns[key_added]``
        ``params`` (every setting of the model, its training and the sampling, as used), ``measured_genes`` (genes
        used as the condition, as spelled in ``adata_st``), ``imputed_genes``, ``output_space``, ``train_time_s``,
        ``impute_time_s``, ``n_cells_without_signal`` and ``cells_without_signal`` (spatial cells whose measured genes
        are all zero: left out of every statistic fitted on the spatial data, imputed from a zero condition), with
        ``interval`` ``interval`` (level, method, calibration genes and cells) and ``gene_reliability`` (imputed gene
        -> expected Spearman correlation between the imputation and what the platform would measure) and, with
        ``out``, ``out`` (the path of the written file, which holds the same metadata in its ``uns[key_added]``). The
        two layouts are described together in :mod:`spalstf._outputs`.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    >>> sp.tl.spalstf_impute(adata_st, adata_sc, n_top_genes=100)  # doctest: +SKIP
    >>> adata_st.obsm["spalstf_imputed"].shape  # doctest: +SKIP
    (3039, 100)
    >>> sp.tl.spalstf_impute(adata_st, adata_sc, n_top_genes=100, interval=0.9)  # doctest: +SKIP
    >>> reliability = pd.Series(adata_st.uns["spalstf_imputed"]["gene_reliability"])  # doctest: +SKIP
    >>> trusted = reliability[reliability > 0.5].index  # genes expected to correlate > 0.5  # doctest: +SKIP

    A spatial dataset too large for memory, results written to disk:

    >>> import anndata
    >>> big = anndata.read_h5ad("st_cells.h5ad", backed="r")  # doctest: +SKIP
    >>> sp.tl.spalstf_impute(big, adata_sc, out="imputed.h5ad", require_spatial=False)  # doctest: +SKIP
    >>> anndata.read_h5ad("imputed.h5ad", backed="r").X[:5]  # doctest: +SKIP

    A SpatialData object (e.g. from a spatialdata-io reader), imputed in its table:

    >>> sdata = sp.datasets.drosophila_embryo(as_spatialdata=True)
    >>> sp.tl.spalstf_impute(sdata, sdata.tables["rna"], table_key="table", n_top_genes=100)  # doctest: +SKIP
    >>> sdata.tables["table"].obsm["spalstf_imputed"].shape  # doctest: +SKIP
    (3039, 100)
    """
    check_option("copy", copy)
    sdata = None
    if is_spatialdata(adata_st):  # the same call on the AnnData of its table
        sdata, adata_st = _table_of(adata_st, table_key, copy, require_spatial)
    elif table_key is not None:
        raise ValueError("table_key is for a SpatialData object; adata_st is an AnnData, so pass no table_key.")
    adata, _, _ = _spalstf_impute(
        adata_st,
        adata_sc,
        genes,
        key_added=key_added,
        layer_st=layer_st,
        layer_sc=layer_sc,
        n_samples=n_samples,
        sampler=sampler,
        n_sampling_steps=n_sampling_steps,
        random_state=random_state,
        impute_batch_size=impute_batch_size,
        interval=interval,
        out=out,
        overwrite=overwrite,
        model=model,
        require_spatial=require_spatial and sdata is None,
        copy=copy and sdata is None,
        progress_bar=progress_bar,
        n_jobs=n_jobs,
        **options,
    )
    if sdata is not None:
        return sdata if copy else None
    return adata if copy else None


spalstf_impute.__doc__ = fill_parameters(spalstf_impute.__doc__)


def _spalstf_impute(
    adata_st: AnnData,
    adata_sc: AnnData,
    genes: Sequence[str] | None = None,
    *,
    key_added: str = IMPUTED_KEY,
    layer_st: str | None = None,
    layer_sc: str | None = None,
    n_samples: int = 1,
    sampler: Sampler = "ddim",
    n_sampling_steps: int = SAMPLING_STEPS,
    random_state: int = 0,
    impute_batch_size: int = IMPUTE_BATCH_SIZE,
    interval: float | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    model: SpaLSTF | None = None,
    require_spatial: bool = True,
    copy: bool = False,
    progress_bar: bool = True,
    n_jobs: int | None = None,
    extra_levels: Sequence[float] = (),
    **options: Any,
) -> tuple[AnnData, SpaLSTF, ImputationResult]:
    """The worker of :func:`spalstf_impute` on an AnnData: the AnnData written into, the model and its raw result.

    Same arguments as :func:`spalstf_impute` (without ``table_key``); ``extra_levels`` (benchmarks) also computes the
    bounds at those levels (:class:`~spalstf.model._imputation.ImputeRequest`): they are in the returned result's
    frames, not written.
    """
    spatial = SpatialInput.prepare(adata_st, layer_st, "layer_st")
    if require_spatial and SPATIAL_KEY not in adata_st.obsm:
        raise KeyError(
            f"adata_st.obsm[{SPATIAL_KEY!r}] is missing: store the cell coordinates there, or pass "
            "require_spatial=False to impute without them."
        )
    if copy and adata_st.isbacked:
        raise ValueError(
            "copy=True needs an in-memory adata_st, but it is backed; pass copy=False (results go to the object's "
            "in-memory obsm/uns, not its file), load it with `adata_st.to_memory()`, or pass out='imputed.h5ad'."
        )
    request = ImputeRequest(
        n_samples=n_samples,
        sampler=sampler,
        n_sampling_steps=n_sampling_steps,
        batch_size=impute_batch_size,
        random_state=random_state,
        progress_bar=progress_bar,
        interval=interval,
        out=out,
        overwrite=overwrite,
        key_added=key_added,
        extra_levels=tuple(extra_levels),
    )
    request.check(batch_size_name="impute_batch_size")  # key_added's type first: the keys below use it
    check_output_keys(adata_st, key_added, adata_sc.var_names if isinstance(adata_sc, AnnData) else [])
    own_arguments = [name for name in inspect.signature(spalstf_impute).parameters if name != "options"]
    with cpu_threads(n_jobs):
        model, result = fit_and_impute(
            spatial,
            adata_sc,
            genes=genes,
            layer_sc=layer_sc,
            model=model,
            request=request,
            options=options,
            also_valid=own_arguments,
        )
    adata = adata_st.copy() if copy else adata_st
    _write_result(adata, key_added, result)
    metadata = result.metadata
    written = f"{out} and uns[{key_added!r}]" if out is not None else f"obsm[{key_added!r}] and uns[{key_added!r}]"
    logger.info(
        "imputed %d genes of %d cells from %d measured genes (training %.1f s, imputation %.1f s): %s; spatial "
        "values %s",
        len(metadata["imputed_genes"]),
        adata.n_obs,
        len(metadata["measured_genes"]),
        metadata["train_time_s"],
        metadata["impute_time_s"],
        written,
        "library-normalised" if model.settings["normalize_st"] else "used as given (normalize_st=False)",
    )
    return adata, model, result


def _write_result(adata: AnnData, key: str, result: ImputationResult) -> None:
    """Write the documented keys (layout: :mod:`spalstf._outputs`); drop stale ones an earlier call left."""
    suffixes = {"mean": "", "std": STD_SUFFIX, "lower": LOWER_SUFFIX, "upper": UPPER_SUFFIX}
    for name, suffix in suffixes.items():
        values = result.get(name)  # None when not computed, or written to the out= file
        if values is not None:
            adata.obsm[key + suffix] = values
        elif key + suffix in adata.obsm:
            del adata.obsm[key + suffix]  # from an earlier call; it would not match this result
    adata.uns[key] = result.metadata
