"""Which genes condition the model and which genes it imputes."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._validation import check_unique_names, format_names

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenePlan:
    """Gene sets of one imputation problem.

    Attributes
    ----------
    measured
        Reference gene names that the ST panel measured: the condition of the model, in reference spelling.
    measured_st
        The same genes in the ST panel's spelling (differs from ``measured`` only with ``case_sensitive=False``).
    imputed
        Reference gene names the model imputes.
    """

    measured: tuple[str, ...]
    measured_st: tuple[str, ...]
    imputed: tuple[str, ...]


def _match_key(name: str, case_sensitive: bool) -> str:
    return name if case_sensitive else name.upper()


def plan_genes(
    st_genes: pd.Index,
    sc_genes: pd.Index,
    genes: Sequence[str] | None = None,
    *,
    case_sensitive: bool = True,
    n_top_genes: int | None = 2000,
    gene_ranking: pd.Series | None = None,
) -> GenePlan:
    """Resolve the measured (condition) genes and the genes to impute.

    Parameters
    ----------
    st_genes, sc_genes
        ``var_names`` of the spatial data and of the reference.
    genes
        Genes to impute. ``None`` imputes reference genes absent from the ST panel (at most ``n_top_genes`` of them,
        ranked by ``gene_ranking`` when given, else in reference order). Requested genes that the ST panel measured
        are allowed (e.g. to cross-check a measured gene) but are then excluded from the condition (an INFO log line
        says which and how many measured genes remain).
    case_sensitive
        If ``False``, match gene names between the two modalities ignoring case (``"Sox2"`` == ``"SOX2"``). Names
        are reported in the reference's spelling. Two genes that collide after case folding raise.
    n_top_genes
        Cap on the default gene list.
    gene_ranking
        Score per reference gene (higher first), e.g. normalised dispersion, used to pick the default genes.
    """
    if n_top_genes is not None and (
        isinstance(n_top_genes, bool) or not isinstance(n_top_genes, int | np.integer) or n_top_genes < 1
    ):
        raise ValueError(f"n_top_genes must be an integer >= 1 or None, got {n_top_genes!r}.")
    for names, which in ((st_genes, "adata_st"), (sc_genes, "adata_sc")):
        bad = [g for g in names if not isinstance(g, str)]
        if bad:
            raise TypeError(
                f"{which}.var_names must be gene names (strings), got {type(bad[0]).__name__} values such as "
                f"{bad[0]!r}; set them with `{which}.var_names = {which}.var_names.astype(str)` or to the gene symbols."
            )
    check_unique_names(st_genes, "adata_st")
    check_unique_names(sc_genes, "adata_sc")
    st_keys = pd.Index([_match_key(g, case_sensitive) for g in st_genes])
    sc_keys = pd.Index([_match_key(g, case_sensitive) for g in sc_genes])
    if not case_sensitive:
        for keys, name in ((st_keys, "adata_st"), (sc_keys, "adata_sc")):
            if not keys.is_unique:
                dup = keys[keys.duplicated()].unique()[:5].tolist()
                raise ValueError(
                    f"`{name}` has gene names that differ only by case ({dup}); with case_sensitive=False they "
                    "would collide. Rename them or use case_sensitive=True."
                )
    shared_mask = sc_keys.isin(st_keys)
    if case_sensitive:
        # spatial genes without an exact match that would find one ignoring case (a reference may hold both 'D'
        # and 'd', which are different genes: those are not counted)
        exact = set(sc_genes)
        folded = {g.upper() for g in sc_genes}
        n_more = sum(1 for g in st_genes if g not in exact and g.upper() in folded)
        if n_more and shared_mask.any():
            n_exact = int(pd.Index(st_genes).isin(sc_genes).sum())
            warnings.warn(
                f"{n_more} gene(s) of adata_st match a reference gene only when case is ignored (e.g. 'Sox2' vs "
                f"'SOX2'); the model conditions on the {n_exact} exact matches only. Pass case_sensitive=False to "
                "match names ignoring case.",
                UserWarning,
                stacklevel=3,
            )
    # spatial genes without a match that would find one once surrounding whitespace is removed ('Sox2 ' vs 'Sox2')
    stripped_sc = {_match_key(g, case_sensitive).strip() for g in sc_genes}
    sc_key_set = set(sc_keys)
    unmatched = [g for g, k in zip(st_genes, st_keys, strict=True) if k not in sc_key_set]
    padded = [g for g in unmatched if _match_key(g, case_sensitive).strip() in stripped_sc]
    if padded and shared_mask.any():
        warnings.warn(
            f"{len(padded)} gene(s) of adata_st match a reference gene only when surrounding whitespace is removed "
            f"(e.g. {padded[0]!r}); the model conditions on the {int(shared_mask.sum())} gene(s) that match as "
            "written only. Strip the names first: `adata.var_names = adata.var_names.str.strip()` (on adata_st, "
            "adata_sc or both).",
            UserWarning,
            stacklevel=3,
        )
    if not shared_mask.any():
        hint = ""
        if case_sensitive and pd.Index([g.upper() for g in sc_genes]).isin([g.upper() for g in st_genes]).any():
            hint = " Some names match when case is ignored: pass case_sensitive=False."
        if padded:
            hint += (
                f" {len(padded)} name(s) match once surrounding whitespace is removed (e.g. {padded[0]!r}): strip "
                "them with `adata.var_names = adata.var_names.str.strip()`."
            )
        raise ValueError(
            "adata_st and adata_sc share no gene names, so the reference cannot be conditioned on the spatial "
            f"measurements (e.g. ST {list(st_genes[:3])}, reference {list(sc_genes[:3])}).{hint}"
        )

    if genes is None:
        candidates = sc_genes[~shared_mask]
        if gene_ranking is not None:
            ranking = gene_ranking.reindex(candidates).fillna(-np.inf)
            candidates = pd.Index(ranking.sort_values(ascending=False, kind="stable").index)
        if n_top_genes is not None:
            candidates = candidates[:n_top_genes]
        if len(candidates) == 0:
            raise ValueError(
                "Every reference gene is measured in adata_st, so there is nothing to impute; pass `genes=` to "
                "impute (cross-check) measured genes."
            )
        imputed = list(candidates)
    else:
        if isinstance(genes, str):
            genes = [genes]
        requested = pd.Index(list(genes))
        if len(requested) == 0:
            raise ValueError(
                "`genes` is empty: pass the genes to impute, or genes=None to impute the reference genes the spatial "
                "panel lacks."
            )
        if requested.has_duplicates:
            dup = requested[requested.duplicated()].unique().tolist()
            raise ValueError(f"`genes` has duplicated entries ({format_names(dup)}); pass each gene once.")
        req_keys = pd.Index([_match_key(g, case_sensitive) for g in requested])
        missing = requested[~req_keys.isin(sc_keys)]
        if len(missing):
            raise KeyError(
                f"{len(missing)} requested gene(s) are not in the reference adata_sc: {list(missing[:10])}. "
                "Only genes the reference measured can be imputed."
            )
        sc_by_key = dict(zip(sc_keys, sc_genes, strict=True))
        imputed = [sc_by_key[k] for k in req_keys]

    imputed_keys = {_match_key(g, case_sensitive) for g in imputed}
    st_by_key = dict(zip(st_keys, st_genes, strict=True))
    measured = [g for g, k, s in zip(sc_genes, sc_keys, shared_mask, strict=True) if s and k not in imputed_keys]
    if not measured:
        raise ValueError(
            "No measured gene is left to condition on: every shared gene is also requested for imputation. "
            "Remove some measured genes from `genes`."
        )
    n_shared = int(shared_mask.sum())
    if len(measured) < n_shared:
        moved = [g for g, k, s in zip(sc_genes, sc_keys, shared_mask, strict=True) if s and k in imputed_keys]
        logger.info(
            "%d of the requested genes (%s) are measured in adata_st: they are imputed and left out of the condition, "
            "which keeps %d of the %d measured genes.",
            len(moved),
            format_names(moved),
            len(measured),
            n_shared,
        )
    measured_st = [st_by_key[_match_key(g, case_sensitive)] for g in measured]
    return GenePlan(tuple(measured), tuple(measured_st), tuple(imputed))
