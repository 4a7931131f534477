"""`calibration` and `reliability`: how well a cross-validation's intervals and per-gene reliability held up."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..metrics import calibration_error
from ._docs import show_save_doc
from ._utils import SavePath, finish, new_figure

_VARIANT_LABELS = {"per_cell": "per cell and gene (SpaLSTF)", "per_gene": "one width per gene"}


def _table(results: Any, name: str, columns: list[str]) -> pd.DataFrame:
    table = getattr(results, name, None) if not isinstance(results, pd.DataFrame) else results
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"`results` must be the result of sp.tl.cross_validate (with `.{name}`) or its `{name}` DataFrame; got "
            f"{type(results).__name__}."
        )
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise KeyError(f"Column(s) {missing} missing from `{name}`; columns: {list(table.columns)}.")
    if table.empty:
        raise ValueError(
            f"`{name}` is empty: no method gave intervals. Run sp.tl.cross_validate with "
            "method_kwargs={'spalstf': {'interval': 0.9}}."
        )
    return table


def _one_method(table: pd.DataFrame, method: str | None) -> tuple[pd.DataFrame, str]:
    methods = list(dict.fromkeys(table["method"]))
    method = methods[0] if method is None else method
    if method not in methods:
        raise KeyError(f"Method {method!r} has no intervals; methods with intervals: {methods}.")
    return table[table["method"] == method], method


def _diagonal_axes(ax: Axes | None, low: float, label: str = "_nolegend_") -> tuple[Figure, Axes]:
    """A square panel from ``low`` to 1 on both axes (into ``ax``, or a new figure), with the diagonal drawn."""
    fig, ax = new_figure((4.0, 4.0), ax)
    ax = ax if ax is not None else fig.add_subplot()
    ax.plot([low, 1], [low, 1], color="0.6", lw=1, ls="--", label=label)
    ax.set_xlim(low, 1.0)
    ax.set_ylim(low, 1.0)
    ax.set_aspect("equal")
    return fig, ax


@show_save_doc
def calibration(
    results: Any,
    *,
    method: str | None = None,
    ax: Axes | None = None,
    show: bool = True,
    save: SavePath = None,
    return_fig: bool = False,
    dpi: float | None = None,
) -> Figure | Axes | None:
    """Calibration curve of a cross-validation's intervals: nominal vs empirical coverage.

    One line per variant of :attr:`~spalstf.tl.CrossValidationResult.intervals` (the method's intervals, and the
    same calibration with one width per gene), the diagonal of perfect calibration, and in the legend the mean
    absolute gap (calibration error) and the interval score at the nominal level.

    Parameters
    ----------
    results
        The result of :func:`spalstf.tl.cross_validate` with intervals, or its ``intervals`` table.
    method
        Method to show (default: the first with intervals).
    ax
        Axes to draw into.
    {show_save}

    Returns
    -------
    The figure if ``return_fig``; else ``None`` if ``show``; else the Axes.

    Examples
    --------
    >>> result = sp.tl.cross_validate(
    ...     adata_st, adata_sc, methods=["spalstf"], method_kwargs={"spalstf": {"interval": 0.9}}
    ... )  # doctest: +SKIP
    >>> sp.pl.calibration(result)  # doctest: +SKIP
    """
    table = _table(results, "intervals", ["method", "variant", "level", "coverage", "interval_score"])
    table, method = _one_method(table, method)
    low = float(min(table["level"].min(), table["coverage"].min())) - 0.03
    fig, ax = _diagonal_axes(ax, low, "perfect calibration")
    nominal = table[table["nominal"]] if "nominal" in table else table.iloc[:0]
    for variant, rows in table.groupby("variant", sort=False):
        rows = rows.sort_values("level")
        gap = calibration_error(pd.DataFrame({"nominal": rows["level"], "empirical": rows["coverage"]}))
        label = f"{_VARIANT_LABELS.get(variant, variant)}: error {gap:.3f}"
        at_nominal = nominal[nominal["variant"] == variant]
        if len(at_nominal):
            row = at_nominal.iloc[0]
            label += f", score@{row['level']:.0%} {row['interval_score']:.2f}"
        ax.plot(rows["level"], rows["coverage"], marker="o", ms=3, lw=1.5, label=label)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage (held-out genes)")
    ax.set_title(f"{method}: interval calibration")
    ax.legend(fontsize="x-small", loc="upper left")
    return finish(fig, ax, func="calibration", show=show, save=save, return_fig=return_fig, dpi=dpi)


@show_save_doc
def reliability(
    results: Any,
    *,
    method: str | None = None,
    spcc: str = "SPCC",
    ax: Axes | None = None,
    show: bool = True,
    save: SavePath = None,
    return_fig: bool = False,
    dpi: float | None = None,
) -> Figure | Axes | None:
    """Predicted reliability (expected SPCC) against the real per-gene SPCC of a cross-validation's held-out genes.

    Each point is a held-out gene; the title gives their Spearman correlation, and the diagonal is a perfect
    prediction.

    Parameters
    ----------
    results
        The result of :func:`spalstf.tl.cross_validate` with intervals, or its ``reliability`` table.
    method
        Method to show (default: the first with a reliability).
    spcc
        ``"SPCC"`` (default; with the platform's value, what the reliability predicts) or ``"SPCC_truth"`` (with
        the ground truth of the scores).
    ax
        Axes to draw into.
    {show_save}

    Returns
    -------
    The figure if ``return_fig``; else ``None`` if ``show``; else the Axes.

    Examples
    --------
    >>> sp.pl.reliability(result)  # doctest: +SKIP
    """
    if spcc not in ("SPCC", "SPCC_truth"):
        raise ValueError(f"spcc must be 'SPCC' or 'SPCC_truth', got {spcc!r}.")
    table = _table(results, "reliability", ["method", "gene", "reliability", spcc])
    table, method = _one_method(table, method)
    table = table.dropna(subset=["reliability", spcc])
    rho = table["reliability"].corr(table[spcc], method="spearman") if len(table) > 2 else np.nan
    fig, ax = _diagonal_axes(ax, float(min(table["reliability"].min(), table[spcc].min(), 0.0)) - 0.05)
    ax.scatter(table["reliability"], table[spcc], s=14, alpha=0.8, linewidths=0)
    ax.set_xlabel("predicted reliability (expected SPCC)")
    ax.set_ylabel("real SPCC" + (" (platform value)" if spcc == "SPCC" else " (ground truth)"))
    ax.set_title(f"{method}: {len(table)} genes, Spearman {rho:.2f}")
    return finish(fig, ax, func="reliability", show=show, save=save, return_fig=return_fig, dpi=dpi)
