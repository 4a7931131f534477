"""`alignment_umap`: the reference, the measured and the imputed spatial cells embedded in one UMAP."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from .._constants import IMPUTED_KEY
from .._expression import TARGET_SUM, log1p_normalize, to_dense, zscore
from .._outputs import imputed_frame
from .._state import keep_torch_threads
from .._validation import format_names, get_matrix

#: Sources of the joint embedding, in order.
SOURCES = ("reference", "measured ST", "imputed ST")


def _rows(n: int, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_cells is None or n <= max_cells:
        return np.arange(n)
    return np.sort(rng.choice(n, max_cells, replace=False))


def alignment_umap(
    adata_st: AnnData,
    adata_sc: AnnData,
    key: str = IMPUTED_KEY,
    *,
    genes: Sequence[str] | None = None,
    layer_st: str | None = None,
    layer_sc: str | None = None,
    target_sum: float = TARGET_SUM,
    max_cells: int | None = 2000,
    n_pcs: int = 30,
    n_neighbors: int = 15,
    random_state: int = 0,
) -> AnnData:
    """Embed the reference cells, the measured spatial cells and the imputed spatial cells in one UMAP.

    A joint space is built on genes all sources have, in a new AnnData (the inputs are not modified): reference
    counts are library-normalised to ``target_sum`` (library: the cell's total over all its genes) and
    log1p-transformed, measured spatial values are
    log1p-transformed, imputed values (already log1p) are used as they are; every gene is then z-scored within each
    source (which removes the difference of units between the modalities), the cells are stacked, and PCA, a
    k-nearest-neighbour graph and UMAP are computed with scanpy. Imputed cells that fall among the reference cells
    (and among the measured cells) show an imputation consistent with both. :func:`spalstf.pl.alignment_umap` draws
    the result.

    Parameters
    ----------
    adata_st
        Spatial data imputed by :func:`spalstf.tl.spalstf_impute`.
    adata_sc
        The reference scRNA-seq data (counts).
    key
        Key the imputation was written under.
    genes
        Genes of the joint space. Default: the imputed genes that the reference has and, when ``adata_st`` measured
        some of them (cross-validation, where the imputed genes were held out), only those, so the measured spatial
        cells can be placed too. When ``adata_st`` measured none of the genes, the measured source is left out
        (with a warning).
    layer_st, layer_sc
        Layers holding the measured spatial values and the reference counts (``None``: ``.X``).
    target_sum
        Library size of the reference's normalisation (its library is each cell's total over all its genes, while
        the imputation's is over the measured genes only).
    max_cells
        Cells drawn at random per source at most (``None``: all), to keep the UMAP fast.
    n_pcs
        Principal components (fewer when there are fewer genes; no PCA when genes <= ``n_pcs``).
    n_neighbors
        Neighbours of the kNN graph.
    random_state
        Seed of the subsampling, the PCA, the graph and UMAP.

    Returns
    -------
    A new AnnData of the stacked cells (``X``: the per-source z-scores of ``genes``) with ``obs["source"]`` (one of
    ``"reference"``, ``"measured ST"``, ``"imputed ST"``), ``obsm["X_umap"]`` and the neighbour graph, and
    ``uns["alignment_umap"]`` (``key``, ``genes``, ``random_state``).

    Raises
    ------
    KeyError
        If ``key`` or a layer is missing, or a gene of ``genes`` was not imputed or is not in the reference (the
        error names them).

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    >>> st_fold = adata_st[:, 20:].copy()
    >>> sp.tl.spalstf_impute(st_fold, adata_sc, genes=list(adata_st.var_names[:20]))  # doctest: +SKIP
    >>> adata_st.obsm["spalstf_imputed"] = st_fold.obsm["spalstf_imputed"]  # doctest: +SKIP
    >>> joint = sp.tl.alignment_umap(adata_st, adata_sc)  # doctest: +SKIP
    >>> joint.obs["source"].value_counts()  # doctest: +SKIP
    """
    import scanpy as sc

    imputed = imputed_frame(adata_st, key)
    X_st = get_matrix(adata_st, layer_st, "adata_st", "layer_st")
    X_sc = get_matrix(adata_sc, layer_sc, "adata_sc", "layer_sc")
    if genes is None:
        genes = [g for g in imputed.columns if g in adata_sc.var_names]
        if not genes:
            raise KeyError(
                f"None of the imputed genes in adata_st.obsm[{key!r}] is in adata_sc.var_names; pass the reference "
                "the imputation used."
            )
        measured = [g for g in genes if g in adata_st.var_names]
        if measured:
            genes = measured
    else:
        genes = [genes] if isinstance(genes, str) else list(genes)
        for where, names in (("adata_st.obsm[" + repr(key) + "]", imputed.columns), ("adata_sc", adata_sc.var_names)):
            missing = [g for g in genes if g not in names]
            if missing:
                raise KeyError(f"Gene(s) {format_names(missing)} not in {where}.")
    with_measured = all(g in adata_st.var_names for g in genes)
    if not with_measured:
        warnings.warn(
            "adata_st did not measure the genes of the joint space, so the measured spatial cells are left out; "
            "impute held-out (measured) genes to compare all three sources.",
            stacklevel=3,
        )

    rng = np.random.default_rng(random_state)
    blocks: dict[str, np.ndarray] = {}
    rows_sc = _rows(adata_sc.n_obs, max_cells, rng)
    counts = X_sc[rows_sc]
    library = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    blocks["reference"] = log1p_normalize(counts[:, adata_sc.var_names.get_indexer(genes)], target_sum, library)
    rows_st = _rows(adata_st.n_obs, max_cells, rng)
    if with_measured:
        blocks["measured ST"] = np.log1p(
            np.clip(to_dense(X_st[rows_st][:, adata_st.var_names.get_indexer(genes)]), 0, None)
        )
    blocks["imputed ST"] = imputed[genes].to_numpy(dtype=np.float64)[rows_st]

    joint = ad.AnnData(
        X=np.concatenate([np.clip(np.nan_to_num(zscore(b, ignore_nan=True)), -10, 10) for b in blocks.values()]).astype(
            np.float32
        ),
        obs=pd.DataFrame(
            {
                "source": pd.Categorical(
                    np.repeat(list(blocks), [len(b) for b in blocks.values()]), categories=list(blocks)
                )
            },
            index=[f"{s}-{i}" for s, b in blocks.items() for i in range(len(b))],
        ),
        var=pd.DataFrame(index=list(genes)),
    )
    n_comps = min(n_pcs, joint.n_vars - 1, joint.n_obs - 1)
    if joint.n_vars > n_pcs and n_comps >= 2:
        sc.pp.pca(joint, n_comps=n_comps, random_state=random_state)
        use_rep = "X_pca"
    else:
        use_rep = "X"
    with warnings.catch_warnings(), keep_torch_threads():  # scanpy's neighbours reset torch's thread count
        warnings.simplefilter("ignore")  # numba / umap-learn chatter about threads and seeds
        sc.pp.neighbors(
            joint, n_neighbors=min(n_neighbors, joint.n_obs - 1), use_rep=use_rep, random_state=random_state
        )
        sc.tl.umap(joint, random_state=random_state)
    joint.uns["alignment_umap"] = {"key": key, "genes": list(genes), "random_state": random_state}
    return joint
