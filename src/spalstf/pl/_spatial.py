"""`spatial_genes`: measured vs imputed expression (and its uncertainty) in space.

Drawn with matplotlib's :meth:`~matplotlib.axes.Axes.scatter`, not :func:`squidpy.pl.spatial_scatter`. squidpy 1.8's
function, called on a plain AnnData without image (``shape=None``), (i) only colours by ``obs`` columns or genes of
``var``, so the imputed values in ``obsm`` would have to be copied into a temporary AnnData per panel; (ii) always
draws the first two columns of ``obsm["spatial"]``, so a view of 3-D coordinates (``dims=(0, 2)``, or a 3-D
scatter) needs another temporary object; (iii) inverts the y axis whenever there is no image (image convention),
which turns a lateral view of an embryo upside down; (iv) converts string columns of the passed ``obs`` to
categoricals in place (``sanitize_anndata``), so it modifies the user's data; and (v) adds one colour bar per panel,
where here one colour bar is shared by the measured and imputed panels of a gene. Plain scatter plots avoid all five.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure, SubFigure
from scipy import sparse

from .._constants import IMPUTED_KEY, LOWER_SUFFIX, SPATIAL_KEY, STD_SUFFIX, UPPER_SUFFIX
from .._outputs import imputed_frame
from .._validation import format_names, get_matrix
from ._docs import show_save_doc
from ._utils import SavePath, check_ax, finish, root_figure

Scale = Literal["minmax", "rank", "none"]
Projection = Literal["2d", "3d"]

_SCALE_LABELS = {
    "minmax": "min-max scaled",
    "rank": "percentile rank",
    "none": "expression",
}
_AXIS_NAMES = "xyz"


def _measured_values(adata: AnnData, gene: str, layer: str | None) -> np.ndarray:
    X = get_matrix(adata, layer, "adata_st")
    col = X[:, adata.var_names.get_loc(gene)]
    col = col.toarray() if sparse.issparse(col) else np.asarray(col)
    return col.ravel().astype(float)


def _bounds(values: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, percentiles)
    return float(lo), float(hi)


def scale_values(values: np.ndarray, scale: Scale, percentiles: tuple[float, float] = (0.0, 100.0)) -> np.ndarray:
    """Map one panel's values to the common colour space of ``scale`` (NaN stays NaN).

    ``"minmax"``: ``(v - lo) / (hi - lo)``, with ``lo``, ``hi`` the ``percentiles`` of the panel (min and max by
    default), so [lo, hi] becomes [0, 1] (a constant panel is all 0); ``"rank"``: percentile rank in [0, 1], ties
    sharing their lowest rank (so cells without expression stay at 0); ``"none"``: unchanged.
    """
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if scale == "none" or not finite.any():
        return values
    if scale == "minmax":
        lo, hi = _bounds(values, percentiles)
        if not hi > lo:  # (nearly) constant panel: fall back to the full range
            lo, hi = float(np.min(values[finite])), float(np.max(values[finite]))
        return (values - lo) / (hi - lo) if hi > lo else np.where(finite, 0.0, np.nan)
    if scale == "rank":
        ranks = pd.Series(values).rank(method="min", na_option="keep").to_numpy()
        n = finite.sum()
        return (ranks - 1) / (n - 1) if n > 1 else np.where(finite, 0.0, np.nan)
    raise ValueError(f"scale must be 'minmax', 'rank' or 'none', got {scale!r}.")


def _limits(*panels: np.ndarray, percentiles: tuple[float, float] = (0.0, 100.0)) -> tuple[float, float]:
    bounds = _bounds(np.concatenate([np.ravel(p) for p in panels]), percentiles)
    if bounds is None:
        return 0.0, 1.0
    lo, hi = bounds
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _extend(values: list[np.ndarray], norm: Normalize) -> str:
    """Colour-bar arrows for values beyond the colour limits."""
    values = np.concatenate([v[np.isfinite(v)] for v in values])
    below, above = bool((values < norm.vmin).any()), bool((values > norm.vmax).any())
    return {(True, True): "both", (True, False): "min", (False, True): "max"}.get((below, above), "neither")


def _coordinates(adata: AnnData, spatial_key: str, dims: Sequence[int] | None, projection: Projection) -> np.ndarray:
    if projection not in ("2d", "3d"):
        raise ValueError(f"projection must be '2d' or '3d', got {projection!r}.")
    if spatial_key not in adata.obsm:
        raise KeyError(
            f"Coordinates {spatial_key!r} not found in adata.obsm (available: {list(adata.obsm.keys())}); pass "
            "spatial_key= naming them."
        )
    coords = np.asarray(adata.obsm[spatial_key], dtype=float)
    n_dims = 2 if projection == "2d" else 3
    dims = tuple(range(n_dims)) if dims is None else tuple(int(d) for d in dims)
    if len(dims) != n_dims:
        raise ValueError(f"projection={projection!r} needs {n_dims} coordinate axes in `dims`, got {dims}.")
    if coords.ndim != 2 or any(d < 0 or d >= coords.shape[1] for d in dims) or len(set(dims)) != n_dims:
        raise ValueError(
            f"dims={dims} are not {n_dims} distinct axes of adata.obsm[{spatial_key!r}] (shape {coords.shape})."
        )
    return coords[:, dims]


class _Panel:
    """One scatter panel: its values, title and colour settings."""

    def __init__(self, gene: str, kind: str, values: np.ndarray, title: str):
        self.gene, self.kind, self.values, self.title = gene, kind, values, title
        self.norm: Normalize | None = None
        self.cmap: Colormap | None = None
        self.label = ""


def _draw_panel(
    ax: Axes,
    coords: np.ndarray,
    panel: _Panel,
    size: float,
    sort_order: bool,
    axis_labels: Sequence[str],
    view_init: tuple[float, float] | None,
):
    order = np.arange(len(panel.values))
    if sort_order and panel.kind not in ("std", "width"):  # high values on top (scanpy's sort_order); NaN first
        order = np.argsort(np.nan_to_num(panel.values, nan=-np.inf), kind="stable")
    xyz = [coords[order, i] for i in range(coords.shape[1])]
    # mplot3d sorts 3-D points by depth itself; its depth shading would change the colours the colour bar maps
    extra = {"depthshade": False} if coords.shape[1] == 3 else {}
    sc = ax.scatter(
        *xyz,
        c=panel.values[order],
        cmap=panel.cmap,
        norm=panel.norm,
        s=size,
        linewidths=0,
        plotnonfinite=True,
        rasterized=True,
        **extra,
    )
    ax.set_title(panel.title)
    if coords.shape[1] == 3:
        ranges = np.ptp(coords, axis=0)
        ax.set_box_aspect(tuple(np.where(ranges > 0, ranges, 1.0)))
        ax.set_xlabel(axis_labels[0], labelpad=-12)
        ax.set_ylabel(axis_labels[1], labelpad=-12)
        ax.set_zlabel(axis_labels[2], labelpad=-12)
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_zticklabels([])
        if view_init is not None:
            ax.view_init(*view_init)
    else:
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(axis_labels[0], labelpad=2, fontsize="small")
        ax.set_ylabel(axis_labels[1], labelpad=2, fontsize="small")
    return sc


@show_save_doc
def spatial_genes(
    adata_st: AnnData,
    genes: str | Sequence[str],
    key: str = IMPUTED_KEY,
    *,
    show_measured: bool = True,
    show_std: bool | None = None,
    show_interval: bool | None = None,
    layer: str | None = None,
    scale: Scale = "minmax",
    percentiles: tuple[float, float] = (1.0, 99.0),
    spatial_key: str = SPATIAL_KEY,
    dims: Sequence[int] | None = None,
    projection: Projection = "2d",
    view_init: tuple[float, float] | None = None,
    cmap: str | Colormap = "viridis",
    std_cmap: str | Colormap = "magma",
    size: float | None = None,
    sort_order: bool = True,
    ncols: int = 1,
    panel_width: float = 3.0,
    ax: Axes | None = None,
    show: bool = True,
    save: SavePath = None,
    return_fig: bool = False,
    dpi: float | None = None,
) -> Figure | Axes | list[Axes] | None:
    """Imputed expression of genes in space, beside their measurement and with the imputation's uncertainty.

    For each gene, one block of panels: the measured pattern (when ``adata_st`` measured the gene, e.g. a gene held
    out in cross-validation), the imputed pattern, the standard deviation over diffusion draws (when
    ``obsm[key + "_std"]`` exists) and the width of the calibrated interval, upper minus lower bound (when
    ``obsm[key + "_lower"]`` and ``obsm[key + "_upper"]`` exist, i.e. after ``spalstf_impute(..., interval=0.9)``).
    The measured and imputed panels of a gene share one colour scale and one colour bar; each uncertainty panel has
    its own colour map and scale (in the imputation's units).
    Nothing of ``adata_st`` is modified.

    Parameters
    ----------
    adata_st
        Spatial data imputed by :func:`spalstf.tl.spalstf_impute`.
    genes
        Gene(s) to show; each must be a column of ``adata_st.obsm[key]``.
    key
        Key the imputation was written under (``key_added`` of :func:`~spalstf.tl.spalstf_impute`).
    show_measured
        Show the measured pattern of genes in ``adata_st.var_names``.
    show_std
        Show the uncertainty map: ``None`` (default) when ``obsm[key + "_std"]`` exists, ``True`` requires it,
        ``False`` never.
    show_interval
        Show the map of interval widths: ``None`` (default) when the bounds exist, ``True`` requires them,
        ``False`` never. Cells without signal (undefined bounds) are drawn grey.
    layer
        Layer of ``adata_st`` with the measured values (``None``: ``.X``).
    scale
        Common colour space of the measured and the imputed panel of a gene. Measured values (e.g. in situ
        intensities in [0, 1]) and imputed values (log1p-normalised counts of the reference) have different units,
        so by default each panel is scaled on its own before they share a colour bar. ``"minmax"`` (default): each
        panel mapped linearly so that its ``percentiles`` become 0 and 1 (the colour limits); ``"rank"``: percentile
        rank of each cell within its panel in [0, 1] (cells with the panel's lowest value at 0); ``"none"``: values
        as stored, colour limits the ``percentiles`` of both panels together (only meaningful when both are in the
        same units).
    percentiles
        Percentiles of a panel's values that map to the ends of the colour scale, for ``scale="minmax"``,
        ``"none"`` and the uncertainty panel. The default ``(1, 99)`` keeps a few outlier cells from washing out the
        pattern (values beyond saturate, and the colour bar shows an arrow); ``(0, 100)`` is the exact minimum and
        maximum.
    spatial_key
        Key of the coordinates in ``adata_st.obsm``.
    dims
        Coordinate axes to draw (0-based columns of ``obsm[spatial_key]``). Default: the first two axes, ``(0, 1)``,
        with ``projection="2d"``; ``(0, 1, 2)`` with ``"3d"``. For 3-D coordinates, a 2-D view is the projection on
        the chosen axes; e.g. ``dims=(0, 2)`` is the lateral view of the bundled Drosophila embryo (anterior-posterior
        axis x against z), where the pair-rule stripes show.
    projection
        ``"2d"``: scatter of two coordinate axes; ``"3d"``: 3-D scatter of three axes.
    view_init
        ``(elevation, azimuth)`` in degrees of the 3-D view (matplotlib's default when ``None``).
    cmap, std_cmap
        Colour maps of the expression and of the uncertainty panels.
    size
        Marker area in points²; default from the number of cells and the panel size.
    sort_order
        Draw cells with higher values on top (as scanpy), so small expressing regions are not hidden. Applies to
        the expression panels; the uncertainty panel is drawn in the cells' order, so that a few high values do not
        cover their neighbours.
    ncols
        Gene blocks per row: ``1`` (default) is one row per gene; larger values make a grid.
    panel_width
        Width of one panel in inches; the height follows the aspect ratio of the coordinates.
    ax
        Axes to draw into; only when a single panel is drawn (one gene, no measured or std panel).
    {show_save}

    Returns
    -------
    The figure if ``return_fig``; else ``None`` if ``show``; else the list of panel axes (measured, imputed, std per
    gene, in order), or the Axes when ``ax`` was given.

    Raises
    ------
    KeyError
        If ``key`` (or ``key + "_std"`` with ``show_std=True``), ``spatial_key`` or ``layer`` is missing, or a gene is
        not among the imputed genes (the error names them).
    ValueError
        For an invalid ``scale``, ``projection`` or ``dims``, or ``ax`` with more than one panel.

    Notes
    -----
    Reads ``adata_st.obsm[key]`` (cells x imputed genes), ``adata_st.obsm[key + "_std"]``,
    ``adata_st.obsm[key + "_lower"]`` and ``adata_st.obsm[key + "_upper"]`` (optional),
    ``adata_st.obsm[spatial_key]``, ``adata_st.X`` or ``adata_st.layers[layer]`` (measured genes), and
    ``adata_st.uns[key]["params"]["n_samples"]`` for the uncertainty title when present.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    >>> held_out = ["sna", "tkv", "Antp"]
    >>> st_fold = adata_st[:, ~adata_st.var_names.isin(held_out)].copy()
    >>> sp.tl.spalstf_impute(st_fold, adata_sc, genes=held_out, n_samples=4)  # doctest: +SKIP
    >>> adata_st.obsm["spalstf_imputed"] = st_fold.obsm["spalstf_imputed"]  # doctest: +SKIP
    >>> adata_st.obsm["spalstf_imputed_std"] = st_fold.obsm["spalstf_imputed_std"]  # doctest: +SKIP
    >>> sp.pl.spatial_genes(adata_st, held_out, dims=(0, 2))  # doctest: +SKIP
    """
    genes = [genes] if isinstance(genes, str) else list(genes)
    if not genes:
        raise ValueError("`genes` is empty; pass at least one gene.")
    if scale not in _SCALE_LABELS:
        raise ValueError(f"scale must be 'minmax', 'rank' or 'none', got {scale!r}.")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}.")
    if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
        raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {percentiles}.")
    imputed = imputed_frame(adata_st, key)
    missing = [g for g in genes if g not in imputed.columns]
    if missing:
        raise KeyError(
            f"Gene(s) {format_names(missing)} not among the imputed genes in adata.obsm[{key!r}] "
            f"({imputed.shape[1]} genes, e.g. {format_names(list(imputed.columns), 5)})."
        )
    std_key = key + STD_SUFFIX
    if show_std is True and std_key not in adata_st.obsm:
        imputed_frame(adata_st, std_key, "uncertainty")  # raises, naming the key
    std = (
        imputed_frame(adata_st, std_key, "uncertainty") if show_std is not False and std_key in adata_st.obsm else None
    )
    if std is not None:
        missing_std = [g for g in genes if g not in std.columns]
        if missing_std:
            raise KeyError(f"Gene(s) {format_names(missing_std)} not in adata.obsm[{std_key!r}].")
    coords = _coordinates(adata_st, spatial_key, dims, projection)
    dims_used = tuple(range(coords.shape[1])) if dims is None else tuple(dims)
    axis_labels = [f"{spatial_key} {_AXIS_NAMES[d]}" if d < 3 else f"{spatial_key} {d + 1}" for d in dims_used]
    if layer is not None:
        get_matrix(adata_st, layer, "adata_st")

    bound_keys = (key + LOWER_SUFFIX, key + UPPER_SUFFIX)
    has_bounds = all(k in adata_st.obsm for k in bound_keys)
    if show_interval is True and not has_bounds:
        for k in bound_keys:
            imputed_frame(adata_st, k, "interval bounds")  # raises, naming the key
    width = None
    if show_interval is not False and has_bounds:
        width = imputed_frame(adata_st, bound_keys[1], "interval bounds") - imputed_frame(
            adata_st, bound_keys[0], "interval bounds"
        )
        missing_width = [g for g in genes if g not in width.columns]
        if missing_width:
            raise KeyError(f"Gene(s) {format_names(missing_width)} not in adata.obsm[{bound_keys[0]!r}].")

    n_draws = level = None
    uns = adata_st.uns.get(key)
    if isinstance(uns, dict) and isinstance(uns.get("params"), dict):
        n_draws = uns["params"].get("n_samples")
    if isinstance(uns, dict) and isinstance(uns.get("interval"), dict):
        level = uns["interval"].get("level")
    std_title = f"uncertainty (std, {n_draws} draws)" if n_draws else "uncertainty (std)"
    width_title = f"{level:.0%} interval width" if level else "interval width"

    # panels per gene ------------------------------------------------------------------------------------------
    cmap = mpl.colormaps[cmap] if isinstance(cmap, str) else cmap
    std_cmap = mpl.colormaps[std_cmap] if isinstance(std_cmap, str) else std_cmap
    blocks: list[list[_Panel | None]] = []
    measured_any = show_measured and any(g in adata_st.var_names for g in genes)
    for gene in genes:
        block: list[_Panel | None] = []
        shared: list[_Panel] = []
        if measured_any:
            if gene in adata_st.var_names:
                raw = _measured_values(adata_st, gene, layer)
                shared.append(_Panel(gene, "measured", scale_values(raw, scale, percentiles), f"{gene} measured"))
                block.append(shared[-1])
            else:
                block.append(None)  # keeps the columns of the grid aligned
        values = imputed[gene].to_numpy(dtype=float)
        shared.append(_Panel(gene, "imputed", scale_values(values, scale, percentiles), f"{gene} imputed"))
        block.append(shared[-1])
        norm = (
            Normalize(0.0, 1.0)
            if scale != "none"
            else Normalize(*_limits(*(p.values for p in shared), percentiles=percentiles))
        )
        for p in shared:
            p.norm, p.cmap, p.label = norm, cmap, _SCALE_LABELS[scale]
        if std is not None:
            p = _Panel(gene, "std", std[gene].to_numpy(dtype=float), f"{gene} {std_title}")
            p.norm, p.cmap, p.label = Normalize(*_limits(p.values, percentiles=percentiles)), std_cmap, "std (log1p)"
            block.append(p)
        if width is not None:
            p = _Panel(gene, "width", width[gene].to_numpy(dtype=float), f"{gene} {width_title}")
            limits = _limits(p.values[np.isfinite(p.values)], percentiles=percentiles)
            p.norm, p.cmap, p.label = Normalize(*limits), std_cmap, "upper - lower (log1p)"
            block.append(p)
        blocks.append(block)
    n_panels = sum(p is not None for block in blocks for p in block)
    check_ax(ax, n_panels, "spatial_genes")

    # geometry ---------------------------------------------------------------------------------------------------
    ranges = np.ptp(coords, axis=0)
    if projection == "3d":
        aspect = 0.75  # mplot3d leaves margins around its box whatever the data
    else:
        aspect = float(np.clip(ranges[1] / ranges[0], 0.25, 2.0)) if ranges[0] > 0 else 1.0
    panel_height = panel_width * aspect
    if size is None:
        area = (panel_width * 72 * 0.85) * (panel_height * 72 * 0.85)
        size = float(np.clip(2.2 * area / adata_st.n_obs, 0.5, 40.0))
    subplot_kw = {"projection": "3d"} if projection == "3d" else {}

    if ax is not None:
        fig = root_figure(ax)
        (panel,) = [p for p in blocks[0] if p is not None]
        if projection == "3d" and getattr(ax, "name", "") != "3d":
            raise ValueError("projection='3d' needs a 3-D `ax` (plt.subplot(projection='3d')).")
        sc = _draw_panel(ax, coords, panel, size, sort_order, axis_labels, view_init)
        ax.figure.colorbar(sc, ax=ax, label=panel.label, shrink=0.8, extend=_extend([panel.values], panel.norm))
        return finish(fig, ax, func="spatial_genes", show=show, save=save, return_fig=return_fig, dpi=dpi)

    n_cols_block = len(blocks[0])
    ncols = min(ncols, len(genes))
    nrows = int(np.ceil(len(genes) / ncols))
    cbar_width = 0.9 * (1 + (std is not None) + (width is not None))
    block_width = n_cols_block * panel_width + cbar_width
    fig = plt.figure(
        figsize=(ncols * block_width, nrows * (panel_height + 0.55)),
        layout="constrained",
    )
    subfigs = np.atleast_1d(fig.subfigures(nrows, ncols, squeeze=False).ravel())
    axes: list[Axes] = []
    for gene, block, subfig in zip(genes, blocks, subfigs, strict=False):
        sub_axes = np.atleast_1d(subfig.subplots(1, n_cols_block, subplot_kw=subplot_kw))
        mappables = {}
        for panel, sub_ax in zip(block, sub_axes, strict=True):
            if panel is None:
                sub_ax.set_axis_off()
                sub_ax.text(
                    0.5, 0.5, f"{gene}\nnot measured", ha="center", va="center", transform=sub_ax.transAxes, color="0.4"
                )
                continue
            group = panel.kind if panel.kind in ("std", "width") else "expression"
            mappables.setdefault(group, []).append(
                (sub_ax, _draw_panel(sub_ax, coords, panel, size, sort_order, axis_labels, view_init), panel)
            )
            axes.append(sub_ax)
        _add_colorbars(subfig, mappables, shrink=0.9 if projection == "2d" else 0.55)
    for subfig in subfigs[len(blocks) :]:
        subfig.set_visible(False)
    return finish(fig, axes, func="spatial_genes", show=show, save=save, return_fig=return_fig, dpi=dpi)


def _add_colorbars(subfig: SubFigure, mappables: dict, shrink: float = 0.9) -> None:
    """One colour bar right of the measured + imputed panels of a gene, one right of each uncertainty panel."""
    for entries in mappables.values():
        axs = [a for a, _, _ in entries]
        _, sc, panel = entries[-1]
        extend = _extend([p.values for _, _, p in entries], panel.norm)
        cbar = subfig.colorbar(sc, ax=axs, label=panel.label, shrink=shrink, aspect=15, pad=0.02, extend=extend)
        cbar.ax.tick_params(labelsize="small")
        cbar.ax.yaxis.label.set_size("small")
