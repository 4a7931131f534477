"""`benchmark`: per-gene metrics of a cross-validation as box plots per method, and the accuracy score per method."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._validation import format_names
from ..metrics import HIGHER_IS_BETTER, accuracy_score
from ._docs import show_save_doc
from ._utils import SavePath, check_ax, finish, new_figure

_SCORE_COLUMNS = ("method", "metric", "value")


def _scores_of(results: Any) -> pd.DataFrame:
    scores = results if isinstance(results, pd.DataFrame) else getattr(results, "scores", None)
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(
            "`results` must be the result of sp.tl.cross_validate (an object with `.scores` and `.summary()`) or "
            f"a tidy DataFrame with columns {list(_SCORE_COLUMNS)}; got {type(results).__name__}."
        )
    missing = [c for c in _SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise KeyError(f"Column(s) {format_names(missing)} missing from the scores; columns: {list(scores.columns)}.")
    return scores


def benchmark_as(results: Any, metrics: Sequence[str], higher_is_better: Mapping[str, bool] | None = None) -> pd.Series:
    """AS per method: ``results.summary()["AS"]`` when available, else from the per-method medians of ``metrics``."""
    summary = getattr(results, "summary", None)
    if callable(summary) and not isinstance(results, pd.DataFrame):
        table = summary()
        if isinstance(table, pd.DataFrame) and "AS" in table.columns:
            return table["AS"].astype(float)
    scores = _scores_of(results)
    medians = (
        scores[scores["metric"].isin(metrics)]
        .pivot_table(index="method", columns="metric", values="value", aggfunc="median", sort=False)
        .reindex(columns=list(metrics))
    )
    incomplete = medians.index[medians.isna().any(axis=1)]
    if len(incomplete):
        warnings.warn(
            f"Method(s) {format_names(list(incomplete))} lack a value for some metric and get no AS.", stacklevel=3
        )
    complete = medians.drop(index=incomplete)
    if complete.empty:
        return pd.Series(np.nan, index=medians.index, name="AS")
    as_ = accuracy_score(complete, metric_cols=list(metrics), higher_is_better=higher_is_better)
    return as_.reindex(medians.index)


@show_save_doc
def benchmark(
    results: Any,
    metrics: str | Sequence[str] = ("SPCC", "SSIM", "RMSE", "JS"),
    *,
    show_as: bool = True,
    order: Sequence[str] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    palette: Sequence[str] | Mapping[str, str] | None = None,
    show_points: bool = False,
    ncols: int | None = None,
    panel_size: tuple[float, float] | None = None,
    ax: Axes | None = None,
    show: bool = True,
    save: SavePath = None,
    return_fig: bool = False,
    dpi: float | None = None,
) -> Figure | Axes | list[Axes] | None:
    """Cross-validation benchmark: per-gene metrics as box plots per method, and the accuracy score (AS) per method.

    One panel per metric with one box per method over the held-out genes (the paper's figure 4), then a bar chart of
    the accuracy score of each method (figure 7). Methods appear in the same order and colour in every panel,
    best AS first.

    Parameters
    ----------
    results
        The result of :func:`spalstf.tl.cross_validate` (anything with a tidy ``scores`` DataFrame and a
        ``summary()`` method whose ``"AS"`` column gives the AS), or a tidy scores DataFrame with columns
        ``method``, ``metric`` and ``value`` (``fold``, ``gene`` optional). For a DataFrame, AS is computed with
        :func:`spalstf.metrics.accuracy_score` on the median of each metric per method, over ``metrics``
        (directions from :data:`spalstf.metrics.HIGHER_IS_BETTER`: RMSE and JS lower is better).
    metrics
        Metrics to draw as box plots, each a value of ``scores["metric"]``.
    show_as
        Add the AS bar chart.
    order
        Methods to draw, in this order (default: all, by decreasing AS, else by first appearance).
    higher_is_better
        Direction of metrics not in :data:`~spalstf.metrics.HIGHER_IS_BETTER` (for AS from a DataFrame and titles).
    palette
        Colours of the methods (a list in method order, or a dict method -> colour); default matplotlib's cycle.
    show_points
        Overlay the per-gene values as jittered points.
    ncols
        Panels per row (default: all in one row).
    panel_size
        Size of one panel in inches (default grows with the number of methods).
    ax
        Axes to draw into; only when one panel is drawn (one metric and ``show_as=False``, or no metric and
        ``show_as=True``).
    {show_save}

    Returns
    -------
    The figure if ``return_fig``; else ``None`` if ``show``; else the list of axes (metrics, then AS), or the Axes
    when ``ax`` was given.

    Raises
    ------
    KeyError
        If a metric is not in the scores, a method of ``order`` is unknown, or a column is missing (the error names
        them).

    Notes
    -----
    Reads ``results.scores`` (columns ``method``, ``metric``, ``value``) and ``results.summary()["AS"]``.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> result = sp.tl.cross_validate(mdata["spatial"], mdata["rna"])  # doctest: +SKIP
    >>> sp.pl.benchmark(result)  # doctest: +SKIP
    """
    scores = _scores_of(results)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in set(scores["metric"])]
    if unknown:
        raise KeyError(
            f"Metric(s) {format_names(unknown)} not in the scores; available: {list(pd.unique(scores['metric']))}."
        )
    if not metrics and not show_as:
        raise ValueError("Nothing to draw: pass metrics or show_as=True.")
    n_panels = len(metrics) + bool(show_as)
    check_ax(ax, n_panels, "benchmark")
    directions = {**HIGHER_IS_BETTER, **(higher_is_better or {})}
    methods = list(pd.unique(scores["method"]))
    as_ = benchmark_as(results, metrics or list(pd.unique(scores["metric"])), higher_is_better) if show_as else None
    if as_ is not None:
        methods = list(dict.fromkeys([*as_.index, *methods]))
    if order is not None:
        bad = [m for m in order if m not in methods]
        if bad:
            raise KeyError(f"Method(s) {format_names(bad)} in `order` are not in the results; methods: {methods}.")
        methods = list(order)
    elif as_ is not None:
        methods = sorted(methods, key=lambda m: -np.nan_to_num(as_.get(m, np.nan), nan=-np.inf))
    colors = _method_colors(methods, palette)

    ncols = n_panels if ncols is None else max(1, min(ncols, n_panels))
    nrows = int(np.ceil(n_panels / ncols))
    if panel_size is None:
        panel_size = (max(2.6, 0.45 * len(methods) + 1.0), 3.0)
    fig, ax = new_figure((panel_size[0] * ncols, panel_size[1] * nrows), ax)
    axes = [ax] if ax is not None else list(np.ravel(fig.subplots(nrows, ncols, squeeze=False)))
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    axes = axes[:n_panels]
    positions = np.arange(1, len(methods) + 1)
    rng = np.random.default_rng(0)
    for metric, metric_ax in zip(metrics, axes, strict=False):
        sub = scores[scores["metric"] == metric]
        data = [sub.loc[sub["method"] == m, "value"].dropna().to_numpy(dtype=float) for m in methods]
        has = [len(d) > 0 for d in data]
        boxes = metric_ax.boxplot(
            [d for d in data if len(d)],
            positions=positions[has],
            widths=0.6,
            patch_artist=True,
            showfliers=not show_points,
            flierprops={"markersize": 2, "alpha": 0.5},
            medianprops={"color": "black", "gid": "median"},
        )
        for patch, m in zip(boxes["boxes"], [m for m, h in zip(methods, has, strict=True) if h], strict=True):
            patch.set_facecolor(colors[m])
            patch.set_alpha(0.85)
        if show_points:
            for pos, d in zip(positions, data, strict=True):
                jitter = rng.uniform(-0.15, 0.15, len(d))
                metric_ax.scatter(pos + jitter, d, s=4, color="black", alpha=0.4, linewidths=0, zorder=3)
        direction = directions.get(metric)
        hint = "" if direction is None else (" (higher is better)" if direction else " (lower is better)")
        metric_ax.set_title(f"{metric}{hint}")
        metric_ax.set_xlim(0.4, len(methods) + 0.6)
        _method_ticks(metric_ax, positions, methods)
        metric_ax.grid(axis="y", alpha=0.3)
    if show_as:
        as_ax = axes[-1]
        heights = np.array([as_.get(m, np.nan) for m in methods], dtype=float)
        bars = as_ax.bar(positions, np.nan_to_num(heights), width=0.6, color=[colors[m] for m in methods], alpha=0.85)
        as_ax.bar_label(bars, labels=[f"{h:.2f}" if np.isfinite(h) else "n/a" for h in heights], fontsize="small")
        as_ax.set_ylim(0, 1.1)
        as_ax.set_title("accuracy score (AS)")
        as_ax.set_xlim(0.4, len(methods) + 0.6)
        _method_ticks(as_ax, positions, methods)
        as_ax.grid(axis="y", alpha=0.3)
    return finish(
        fig, ax if ax is not None else axes, func="benchmark", show=show, save=save, return_fig=return_fig, dpi=dpi
    )


def _method_colors(methods: list[str], palette: Sequence[str] | Mapping[str, str] | None) -> dict[str, Any]:
    if isinstance(palette, Mapping):
        missing = [m for m in methods if m not in palette]
        if missing:
            raise KeyError(f"`palette` has no colour for method(s) {format_names(missing)}.")
        return dict(palette)
    if palette is None:
        cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
        palette = [cycle[i % len(cycle)] for i in range(len(methods))]
    palette = list(palette)
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def _method_ticks(ax: Axes, positions: np.ndarray, methods: list[str]) -> None:
    ax.set_xticks(positions, methods)
    if len(methods) > 3 or max(len(str(m)) for m in methods) > 8:
        for label in ax.get_xticklabels():
            label.set(rotation=40, ha="right", rotation_mode="anchor")
