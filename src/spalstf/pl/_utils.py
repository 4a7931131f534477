"""Shared plumbing of the plotting functions (scanpy's ``ax`` / ``show`` / ``save`` / ``return_fig`` conventions)."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

SavePath = str | PathLike | bool | None


def check_ax(ax: Axes | None, n_panels: int, func: str) -> None:
    """Raise if ``ax`` is given to a figure of several panels (an ``ax`` holds exactly one panel)."""
    if ax is None:
        return
    if not isinstance(ax, Axes):
        raise TypeError(f"`ax` must be a matplotlib Axes, got {type(ax).__name__}.")
    if n_panels != 1:
        raise ValueError(
            f"`ax` is only supported when {func} draws a single panel, but this call draws {n_panels} panels; "
            "leave ax=None (a new figure is made) or reduce the call to one panel."
        )


def root_figure(ax: Axes) -> Figure:
    """The top-level figure holding ``ax`` (also when ``ax`` lies in a subfigure)."""
    fig = ax.figure
    return fig.figure if isinstance(fig, SubFigure) else fig


def new_figure(figsize: tuple[float, float], ax: Axes | None = None) -> tuple[Figure, Axes | None]:
    """The figure of ``ax``, or a new figure with constrained layout."""
    if ax is not None:
        return root_figure(ax), ax
    return plt.figure(figsize=figsize, layout="constrained"), None


def save_path(save: SavePath, func: str) -> Path | None:
    """Where ``save`` asks to write the figure.

    ``True``: ``{scanpy.settings.figdir}/{func}.{scanpy.settings.file_format_figs}`` (scanpy's convention); a path:
    exactly there (the extension picks the format, ``.png`` when there is none); ``None``/``False``: nowhere.
    """
    if save is None or save is False:
        return None
    if save is True:
        import scanpy as sc

        return Path(sc.settings.figdir) / f"{func}.{sc.settings.file_format_figs}"
    if not isinstance(save, str | PathLike):
        raise TypeError(f"`save` must be a path or a bool, got {type(save).__name__}.")
    path = Path(save)
    return path if path.suffix else path.with_suffix(".png")


def finish(
    fig: Figure,
    axes: Axes | Sequence[Axes],
    *,
    func: str,
    show: bool,
    save: SavePath,
    return_fig: bool,
    dpi: float | None = None,
) -> Figure | Axes | list[Axes] | None:
    """Save and show ``fig``; return what scanpy returns (the figure, the axes when not shown, else ``None``)."""
    path = save_path(save, func)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi or "figure", bbox_inches="tight")
    if return_fig:
        return fig
    if show:
        plt.show()
        return None
    if isinstance(axes, Axes):
        return axes
    return list(np.ravel(axes))
