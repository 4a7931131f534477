"""`alignment_umap`: draws the joint UMAP of :func:`spalstf.tl.alignment_umap`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._constants import IMPUTED_KEY
from .._expression import TARGET_SUM
from ..tl._alignment import alignment_umap as tl_alignment_umap
from ._docs import show_save_doc
from ._utils import SavePath, check_ax, finish, new_figure

_COLORS = {"reference": "#7f7f7f", "measured ST": "#1f77b4", "imputed ST": "#ff7f0e"}


@show_save_doc
def alignment_umap(
    adata_st: AnnData,
    adata_sc: AnnData | None = None,
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
    palette: Mapping[str, str] | None = None,
    size: float | None = None,
    ax: Axes | None = None,
    show: bool = True,
    save: SavePath = None,
    return_fig: bool = False,
    dpi: float | None = None,
) -> Figure | Axes | None:
    """UMAP of the reference cells, the measured spatial cells and the imputed spatial cells in one space.

    Draws the joint embedding of :func:`spalstf.tl.alignment_umap` (pass its result as ``adata_st``, without
    ``adata_sc``), or computes it first from the imputed spatial data and the reference (with the options below).
    Cells are coloured by source and drawn in random order, so no source hides another.

    Parameters
    ----------
    adata_st
        The joint embedding returned by :func:`spalstf.tl.alignment_umap`, or spatial data imputed by
        :func:`spalstf.tl.spalstf_impute` (then ``adata_sc`` is needed).
    adata_sc
        The reference scRNA-seq data (counts), to compute the embedding; ``None`` when ``adata_st`` is one.
    key, genes, layer_st, layer_sc, target_sum, max_cells, n_pcs, n_neighbors
        Options of :func:`spalstf.tl.alignment_umap` when the embedding is computed here.
    random_state
        Seed of the drawing order (and of the embedding when it is computed here).
    palette
        Colour per source (keys among ``"reference"``, ``"measured ST"``, ``"imputed ST"``).
    size
        Marker area in points² (default from the number of cells).
    ax
        Axes to draw into.
    {show_save}

    Returns
    -------
    The figure if ``return_fig``; else ``None`` if ``show``; else the Axes.

    Raises
    ------
    ValueError
        Without ``adata_sc``, if ``adata_st`` is not a joint embedding (the errors of
        :func:`spalstf.tl.alignment_umap` otherwise).

    Examples
    --------
    >>> import spalstf as sp
    >>> joint = sp.tl.alignment_umap(adata_st, adata_sc)  # doctest: +SKIP
    >>> sp.pl.alignment_umap(joint)  # doctest: +SKIP
    """
    check_ax(ax, 1, "alignment_umap")
    if adata_sc is None:
        if "source" not in adata_st.obs or "X_umap" not in adata_st.obsm:
            raise ValueError(
                "Without adata_sc, pass the joint embedding of sp.tl.alignment_umap(adata_st, adata_sc); or pass "
                "the imputed spatial data and the reference, alignment_umap(adata_st, adata_sc)."
            )
        joint = adata_st
    else:
        joint = tl_alignment_umap(
            adata_st,
            adata_sc,
            key,
            genes=genes,
            layer_st=layer_st,
            layer_sc=layer_sc,
            target_sum=target_sum,
            max_cells=max_cells,
            n_pcs=n_pcs,
            n_neighbors=n_neighbors,
            random_state=random_state,
        )
    blocks = list(joint.obs["source"].cat.categories)
    genes = list(joint.var_names)
    rng = np.random.default_rng(random_state)
    emb = joint.obsm["X_umap"]

    colors = {**_COLORS, **(palette or {})}
    fig, ax = new_figure((6.2, 4.4), ax)
    if ax is None:
        ax = fig.add_subplot()
    order = rng.permutation(joint.n_obs)
    source = joint.obs["source"].to_numpy()[order]
    size = float(np.clip(24000 / joint.n_obs, 1.0, 40.0)) if size is None else size
    ax.scatter(
        emb[order, 0], emb[order, 1], c=[colors[s] for s in source], s=size, linewidths=0, alpha=0.8, rasterized=True
    )
    handles = [
        ax.scatter([], [], color=colors[s], s=30, label=f"{s} ({(joint.obs['source'] == s).sum()})") for s in blocks
    ]
    # outside the axes (scanpy's "right margin"), so the legend never covers cells
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.set_title(f"joint UMAP on {len(genes)} gene{'s' if len(genes) != 1 else ''}")
    ax.set_xlabel("UMAP1")
    ax.set_ylabel("UMAP2")
    ax.set_xticks([])
    ax.set_yticks([])
    return finish(fig, ax, func="alignment_umap", show=show, save=save, return_fig=return_fig, dpi=dpi)
