"""Tests on imputed genes pooled over calibrated draws: thin wrappers that write into ``adata_st.uns``.

The work is done by :meth:`~spalstf.model.SpaLSTF.spatial_autocorr`,
:meth:`~spalstf.model.SpaLSTF.differential_expression` and :meth:`~spalstf.model.SpaLSTF.rank_genes_groups`; these
functions check the output key, call them and store the
table with its settings under ``uns[key_added]``, where :func:`scanpy.tl.rank_genes_groups` stores its results (as a
``{"params", "results"}`` dict with a DataFrame, not scanpy's record arrays).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from anndata import AnnData

from ..model import SpaLSTF
from ..model._defaults import check_option
from ..model._draws_mixin import TEST_PARAMETERS, _as_groups
from ..model._imputation import fill_parameters

#: Default ``uns`` keys of the tests.
MORAN_KEY = "spalstf_moranI"
DE_KEY = "spalstf_de"
RANK_KEY = "spalstf_rank_genes_groups"
#: The wrappers' own options, documented once (with :data:`~spalstf.model._draws_mixin.TEST_PARAMETERS`).
WRAPPER_PARAMETERS: dict[str, str] = {
    **TEST_PARAMETERS,
    "wrapper_gene_list": "Imputed genes to test (default: all the model imputes).",
    "wrapper_random_state": "Seed of the draws.",
    "wrapper_key_added": (
        "Key in ``adata_st.uns``; an entry there that this function did not write (another of these tests', or "
        "anything else) raises a `ValueError`."
    ),
    "wrapper_copy": "Return a copy with the result instead of writing into ``adata_st``.",
}
#: Marks a ``uns`` entry as written by these functions (an entry without it is never replaced).
_METHOD = "multiple imputation over calibrated spalstf draws, pooled with Rubin's rules"


def spatial_autocorr(
    adata_st: AnnData,
    model: SpaLSTF,
    *,
    n_samples: int = 20,
    gene_list: Sequence[str] | None = None,
    connectivity_key: str = "spatial_connectivities",
    two_tailed: bool = False,
    random_state: int = 0,
    key_added: str = MORAN_KEY,
    copy: bool = False,
    **kwargs: Any,
) -> AnnData | None:
    """Moran's I of imputed genes with p-values that account for the imputation (multiple imputation).

    Calls :meth:`~spalstf.model.SpaLSTF.spatial_autocorr` (see there for the pooling rule and what it assumes) and
    writes ``adata_st.uns[key_added]``: a dict with ``"results"`` (DataFrame indexed by gene: ``I``, ``I_point``,
    ``statistic``, ``df``, ``pvalue``, ``pvalue_adj``, ``fraction_missing_information``) and ``"params"``.

    Parameters
    ----------
    adata_st
        Spatial data with the model's measured genes, coordinates in ``obsm["spatial"]`` and squidpy's graph in
        ``obsp[connectivity_key]`` (``squidpy.gr.spatial_neighbors``).
    model
        A trained :class:`~spalstf.model.SpaLSTF`: one you trained and passed to :func:`spalstf_impute` as
        ``model`` (which keeps no model of its own), or one from ``SpaLSTF.load``.
    n_samples
        {test_samples}
    gene_list
        {wrapper_gene_list}
    connectivity_key
        {connectivity_key}
    two_tailed
        {two_tailed}
    random_state
        {wrapper_random_state}
    key_added
        {wrapper_key_added}
    copy
        {wrapper_copy}
    **kwargs
        Passed to :meth:`~spalstf.model.SpaLSTF.spatial_autocorr` (``layer``, ``spatial_key``, ``batch_size``).

    Returns
    -------
    The copy with ``copy=True``, else ``None``.

    Examples
    --------
    >>> sq.gr.spatial_neighbors(adata_st, coord_type="generic", n_neighs=6)  # doctest: +SKIP
    >>> sp.tl.spatial_autocorr(adata_st, model, n_samples=20)  # doctest: +SKIP
    >>> adata_st.uns["spalstf_moranI"]["results"].head()  # doctest: +SKIP
    """
    _check_inputs("spatial_autocorr", adata_st, model, key_added, copy)
    table = model.spatial_autocorr(
        adata_st,
        n_samples=n_samples,
        gene_list=gene_list,
        connectivity_key=connectivity_key,
        two_tailed=two_tailed,
        random_state=random_state,
        **kwargs,
    )
    params = {
        "test": "moran",
        "n_samples": n_samples,
        "connectivity_key": connectivity_key,
        "two_tailed": two_tailed,
        "random_state": random_state,
        "gene_list": "all imputed genes" if gene_list is None else list(gene_list),
    }
    return _store("spatial_autocorr", adata_st, key_added, table, params, kwargs, copy)


def differential_expression(
    adata_st: AnnData,
    model: SpaLSTF,
    groupby: str,
    group1: str | Sequence[str],
    group2: str | Sequence[str] | None = None,
    *,
    n_samples: int = 20,
    gene_list: Sequence[str] | None = None,
    random_state: int = 0,
    key_added: str = DE_KEY,
    copy: bool = False,
    **kwargs: Any,
) -> AnnData | None:
    """Differential expression of imputed genes between two groups of cells, with multiple imputation.

    Calls :meth:`~spalstf.model.SpaLSTF.differential_expression` (pooling rule there) and writes
    ``adata_st.uns[key_added]``: a dict with ``"results"`` (DataFrame indexed by gene: ``mean1``, ``mean2``,
    ``mean_difference``, ``statistic``, ``df``, ``pvalue``, ``pvalue_adj``, ``fraction_missing_information``) and
    ``"params"``.

    Parameters
    ----------
    adata_st
        Spatial data with the model's measured genes and coordinates in ``obsm["spatial"]``.
    model
        A trained :class:`~spalstf.model.SpaLSTF`.
    groupby
        {groupby}
    group1
        {group1}
    group2
        {group2}
    n_samples
        {test_samples}
    gene_list
        {wrapper_gene_list}
    random_state
        {wrapper_random_state}
    key_added
        {wrapper_key_added}
    copy
        {wrapper_copy}
    **kwargs
        Passed to :meth:`~spalstf.model.SpaLSTF.differential_expression` (``layer``, ``spatial_key``,
        ``batch_size``).

    Returns
    -------
    The copy with ``copy=True``, else ``None``.

    Examples
    --------
    >>> sp.tl.differential_expression(adata_st, model, "leiden", "3", n_samples=20)  # doctest: +SKIP
    >>> adata_st.uns["spalstf_de"]["results"].query("pvalue_adj < 0.05")  # doctest: +SKIP
    """
    _check_inputs("differential_expression", adata_st, model, key_added, copy)
    table = model.differential_expression(
        adata_st,
        groupby,
        group1,
        group2,
        n_samples=n_samples,
        gene_list=gene_list,
        random_state=random_state,
        **kwargs,
    )
    params = {
        "test": "t-test (Welch variance)",
        "groupby": groupby,
        "group1": _as_groups(group1),
        "group2": "rest" if group2 is None else _as_groups(group2),
        "n_samples": n_samples,
        "random_state": random_state,
        "gene_list": "all imputed genes" if gene_list is None else list(gene_list),
    }
    return _store("differential_expression", adata_st, key_added, table, params, kwargs, copy)


def rank_genes_groups(
    adata_st: AnnData,
    model: SpaLSTF,
    groupby: str,
    groups: Sequence[str] | str | None = None,
    reference: str = "rest",
    *,
    n_samples: int = 20,
    gene_list: Sequence[str] | None = None,
    random_state: int = 0,
    key_added: str = RANK_KEY,
    copy: bool = False,
    **kwargs: Any,
) -> AnnData | None:
    """Imputed genes that tell each group from the rest, with multiple imputation (scanpy's ``rank_genes_groups``).

    Calls :meth:`~spalstf.model.SpaLSTF.rank_genes_groups` (the pooled t-test of
    :meth:`~spalstf.model.SpaLSTF.differential_expression` for every group, from one set of draws) and writes
    ``adata_st.uns[key_added]``: a dict with ``"results"`` (DataFrame with one row per group and gene: ``group``,
    ``gene``, ``mean1``, ``mean2``, ``mean_difference``, ``statistic``, ``df``, ``pvalue``, ``pvalue_adj``,
    ``fraction_missing_information``) and ``"params"``. This is not scanpy's layout of record arrays
    (``names``, ``scores``, ...): the imputed genes are not in ``adata_st.var``, so scanpy's ``rank_genes_groups``
    plots could not show them; filter the table instead (``sc.get.rank_genes_groups_df`` does not read it).

    Parameters
    ----------
    adata_st
        Spatial data with the model's measured genes and coordinates in ``obsm["spatial"]``.
    model
        A trained :class:`~spalstf.model.SpaLSTF`.
    groupby
        {groupby}
    groups
        Groups to test: a list, or ``None`` / ``"all"`` for every group less ``reference``.
    reference
        ``"rest"`` or the group that every other is compared with.
    n_samples
        {test_samples}
    gene_list
        {wrapper_gene_list}
    random_state
        {wrapper_random_state}
    key_added
        {wrapper_key_added}
    copy
        {wrapper_copy}
    **kwargs
        Passed to :meth:`~spalstf.model.SpaLSTF.rank_genes_groups` (``layer``, ``spatial_key``, ``batch_size``).

    Returns
    -------
    The copy with ``copy=True``, else ``None``.

    Examples
    --------
    >>> sp.tl.rank_genes_groups(adata_st, model, "leiden", n_samples=20)  # doctest: +SKIP
    >>> adata_st.uns["spalstf_rank_genes_groups"]["results"].query("pvalue_adj < 0.05")  # doctest: +SKIP
    """
    _check_inputs("rank_genes_groups", adata_st, model, key_added, copy)
    table = model.rank_genes_groups(
        adata_st,
        groupby,
        groups,
        reference,
        n_samples=n_samples,
        gene_list=gene_list,
        random_state=random_state,
        **kwargs,
    )
    params = {
        "test": "t-test (Welch variance)",
        "groupby": groupby,
        "groups": list(dict.fromkeys(table["group"])),
        "reference": str(reference),
        "n_samples": n_samples,
        "random_state": random_state,
        "gene_list": "all imputed genes" if gene_list is None else list(gene_list),
    }
    return _store("rank_genes_groups", adata_st, key_added, table, params, kwargs, copy)


spatial_autocorr.__doc__ = fill_parameters(spatial_autocorr.__doc__, WRAPPER_PARAMETERS)
differential_expression.__doc__ = fill_parameters(differential_expression.__doc__, WRAPPER_PARAMETERS)
rank_genes_groups.__doc__ = fill_parameters(rank_genes_groups.__doc__, WRAPPER_PARAMETERS)


def _check_inputs(function: str, adata: AnnData, model: SpaLSTF, key_added: str, copy: bool) -> None:
    """Refuse, before any work, arguments in the wrong place, a foreign ``key_added`` and an impossible ``copy``."""
    if not isinstance(adata, AnnData) or not isinstance(model, SpaLSTF):
        raise TypeError(
            f"Call as sp.tl.{function}(adata_st, model, ...): adata_st must be an AnnData and model a trained "
            f"spalstf.model.SpaLSTF, got {type(adata).__name__} and {type(model).__name__}."
        )
    check_option("copy", copy)
    if copy and adata.isbacked:
        raise ValueError(
            "copy=True needs an in-memory adata_st, but it is backed; pass copy=False (the result goes to the "
            "object's in-memory uns, not its file) or load it with `adata_st.to_memory()`."
        )
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"key_added must be a non-empty string, got {key_added!r}.")
    entry = adata.uns.get(key_added)
    ours = isinstance(entry, Mapping) and isinstance(entry.get("params"), Mapping)
    if entry is not None and not (ours and entry["params"].get("method") == _METHOD):
        raise ValueError(
            f"adata_st.uns[{key_added!r}] holds something these functions did not write; pass another key_added."
        )
    if entry is not None and entry["params"].get("function") != function:
        written_by = entry["params"].get("function")
        writer = f"sp.tl.{written_by}" if written_by else "an earlier version of spalstf"
        raise ValueError(
            f"adata_st.uns[{key_added!r}] holds a result of {writer}, not of sp.tl.{function}; pass another "
            "key_added (or delete that entry first)."
        )


def _store(
    function: str,
    adata: AnnData,
    key: str,
    table: pd.DataFrame,
    params: dict[str, Any],
    options: dict[str, Any],
    copy: bool,
) -> AnnData | None:
    """Write ``table`` and its settings: ``params``, the options passed on (``layer``, ``spatial_key``, ...) and who."""
    target = adata.copy() if copy else adata
    settings = {
        "method": _METHOD,
        "function": function,
        **params,
        **{k: v for k, v in options.items() if v is not None},
    }
    target.uns[key] = {"params": settings, "results": table}
    return target if copy else None
