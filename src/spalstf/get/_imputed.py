"""`imputed`: the imputed genes of a result as an AnnData that scanpy, squidpy and spatialdata take as it is."""

from __future__ import annotations

import copy as _copy
import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._constants import IMPUTED_KEY, IMPUTED_VAR_KEY, SPATIAL_KEY
from .._outputs import read_result
from .._spatialdata import add_table, is_spatialdata, resolve_table
from .._validation import format_names, get_matrix

if TYPE_CHECKING:
    from spatialdata import SpatialData


def _graph_uns(adata: AnnData) -> dict:
    """The ``uns`` entries that go with the cells: those describing graphs of ``obsp``, and ``uns["spatial"]``.

    The first are squidpy's ``"spatial_neighbors"`` and scanpy's ``"neighbors"``; the second holds scanpy's images
    and scale factors of Visium-like data.
    """
    keep = {}
    for name, value in adata.uns.items():
        if name == SPATIAL_KEY or (isinstance(value, dict) and value.get("connectivities_key") in adata.obsp):
            keep[name] = _copy.deepcopy(value)
    return keep


def _dense(X) -> np.ndarray:
    if sparse.issparse(X):
        return X.toarray()
    if hasattr(X, "to_memory"):  # a backed dataset
        X = X.to_memory()
    return np.array(X, copy=True)


def _imputed_anndata(
    adata: AnnData,
    key: str,
    *,
    include_measured: bool,
    layer_measured: str | None,
    imputed_suffix: str,
    out: str | os.PathLike | None,
) -> AnnData:
    """The worker of :func:`imputed` on one AnnData (the spatial cells)."""
    result = read_result(adata, key, out)
    genes = pd.Index([f"{g}{imputed_suffix}" for g in result.mean.columns])
    X = result.mean.to_numpy(copy=True)
    layers = {name: frame.to_numpy(copy=True) for name, frame in result.layers.items()}
    is_imputed = np.ones(len(genes), dtype=bool)
    if include_measured:
        clash = adata.var_names.intersection(genes)
        if len(clash):
            raise ValueError(
                f"{len(clash)} imputed gene(s) are also measured in adata_st ({format_names(list(clash))}), so the "
                "joined AnnData would have two columns of one name; pass imputed_suffix='_imputed' to name the "
                "imputed ones apart."
            )
        measured = _dense(get_matrix(adata, layer_measured, "adata_st", "layer_measured"))
        dtype = np.result_type(measured.dtype, X.dtype)
        X = np.hstack([measured.astype(dtype, copy=False), X.astype(dtype, copy=False)])
        missing = np.full((adata.n_obs, adata.n_vars), np.nan, dtype=np.float32)
        layers = {name: np.hstack([missing.astype(v.dtype), v]) for name, v in layers.items()}
        genes = adata.var_names.append(genes)
        is_imputed = np.concatenate([np.zeros(adata.n_vars, dtype=bool), is_imputed])
    new = AnnData(
        X=X,
        obs=adata.obs.copy(),
        var=pd.DataFrame({IMPUTED_VAR_KEY: is_imputed}, index=genes),
        layers=layers,
    )
    if SPATIAL_KEY in adata.obsm:
        new.obsm[SPATIAL_KEY] = np.array(adata.obsm[SPATIAL_KEY], copy=True)
    for name, graph in adata.obsp.items():
        new.obsp[name] = graph.copy()
    new.uns.update(_graph_uns(adata))
    if result.metadata:
        new.uns[key] = _copy.deepcopy(result.metadata)
    return new


def imputed(
    data: AnnData | SpatialData,
    key: str = IMPUTED_KEY,
    *,
    table_key: str | None = None,
    include_measured: bool = False,
    layer_measured: str | None = None,
    imputed_suffix: str = "",
    out: str | os.PathLike | None = None,
    key_added: str | None = None,
    overwrite: bool = False,
) -> AnnData:
    """The imputed genes as an AnnData of the spatial cells, for scanpy, squidpy and spatialdata.

    ``X`` holds the imputed values of ``sp.tl.spalstf_impute(..., key_added=key)`` (in memory: ``obsm[key]``; or
    the ``out=`` file), with ``layers["std"]``, ``layers["lower"]`` and ``layers["upper"]`` when the result has them.
    The cells keep their ``obs``, ``obsm["spatial"]``, every graph of ``obsp`` (e.g. squidpy's
    ``"spatial_connectivities"``) with the ``uns`` entries that describe them, and scanpy's ``uns["spatial"]``;
    ``var["imputed"]`` says which genes were imputed (``True``) and which measured (``False``); ``uns[key]`` is the
    result's metadata. Every array is a copy: the input is not modified (except with ``key_added``, below).

    With ``include_measured=True`` the measured genes of the spatial data come first, so that
    ``sq.gr.spatial_autocorr`` or ``sq.pl.spatial_scatter(color=gene)`` treat measured and imputed genes side by side.
    Their values are those of ``.X`` (or ``layer_measured``) as measured, not transformed into the imputation's units
    (``uns[key]["output_space"]``); their ``std``/``lower``/``upper`` are NaN.

    Parameters
    ----------
    data
        The spatial data the result was written into: an AnnData, or a :class:`spatialdata.SpatialData` whose table
        ``table_key`` was imputed.
    key
        The ``key_added`` of the imputation.
    table_key
        With a SpatialData object, the table that was imputed (``None``: its only table). Not used with an AnnData.
    include_measured
        Join the measured genes (before the imputed ones).
    layer_measured
        Layer of the measured values (``None``: ``.X``).
    imputed_suffix
        Appended to the imputed genes' names, to tell apart genes that are both measured and imputed (e.g. held-out
        genes imputed for a cross-check) when ``include_measured=True``.
    out
        Read the values from this ``out=`` file of :func:`~spalstf.tl.spalstf_impute` (by default the file named by
        ``uns[key]["out"]`` when the values are not in ``obsm``). Its cells must be those of the data.
    key_added
        With a SpatialData object: also add the AnnData as the table ``key_added``, annotating the same region with
        the same region and instance keys, so that spatialdata-plot shows it and ``sdata.write()`` keeps it.
    overwrite
        Replace an existing table ``key_added``.

    Returns
    -------
    The AnnData of the spatial cells (cells x [measured +] imputed genes); with ``key_added``, the table as added.

    Raises
    ------
    KeyError
        No result under ``key`` (run :func:`~spalstf.tl.spalstf_impute` first or pass its ``key_added``), or an
        unknown ``table_key``.
    ValueError
        A file without the metadata or of other cells, a table that annotates no region, a table ``key_added`` that
        exists (without ``overwrite``), genes both measured and imputed without ``imputed_suffix``, or ``table_key``
        / ``key_added`` given with an AnnData.

    Examples
    --------
    >>> import spalstf as sp
    >>> import squidpy as sq
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    >>> sp.tl.spalstf_impute(adata_st, adata_sc, n_top_genes=100)  # doctest: +SKIP
    >>> sq.gr.spatial_neighbors_knn(adata_st, n_neighs=8)  # doctest: +SKIP
    >>> genes = sp.get.imputed(adata_st, include_measured=True)  # doctest: +SKIP
    >>> sq.gr.spatial_autocorr(genes, mode="moran")  # doctest: +SKIP
    >>> genes.uns["moranI"].join(genes.var["imputed"])  # doctest: +SKIP

    A SpatialData object; the imputed genes become a table of their own:

    >>> sdata = sp.datasets.drosophila_embryo(as_spatialdata=True)
    >>> sp.tl.spalstf_impute(sdata, sdata.tables["rna"], table_key="table")  # doctest: +SKIP
    >>> sp.get.imputed(sdata, table_key="table", key_added="imputed")  # doctest: +SKIP
    >>> sdata.write("embryo.zarr")  # doctest: +SKIP
    """
    options = {
        "include_measured": include_measured,
        "layer_measured": layer_measured,
        "imputed_suffix": imputed_suffix,
        "out": out,
    }
    if not is_spatialdata(data):
        if not isinstance(data, AnnData):
            raise TypeError(f"data must be an AnnData or a SpatialData object, got {type(data).__name__}.")
        for name, value in (("table_key", table_key), ("key_added", key_added)):
            if value is not None:
                raise ValueError(
                    f"{name} is for a SpatialData object; with an AnnData, use the returned AnnData itself."
                )
        return _imputed_anndata(data, key, **options)
    name, table, keys = resolve_table(data, table_key)
    new = _imputed_anndata(table, key, **options)
    if key_added is None:
        return new
    if key_added == name:
        raise ValueError(f"key_added {key_added!r} is the imputed table itself; pass another name for the new table.")
    return add_table(data, key_added, new, keys, overwrite=overwrite)
