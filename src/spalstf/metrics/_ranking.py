"""Accuracy score (AS): the mean normalised rank of each method over metrics (and datasets)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .._validation import format_names

#: Direction of every metric of :mod:`spalstf.metrics`: ``True`` if a higher value is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "SPCC": True,
    "SSIM": True,
    "RMSE": False,
    "JS": False,
    "ARI": True,
    "AMI": True,
    "NMI": True,
    "Homogeneity": True,
}


def accuracy_score(
    scores: pd.DataFrame,
    *,
    method_col: str = "method",
    metric_cols: Sequence[str] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    dataset_col: str | None = None,
) -> pd.Series:
    r"""Accuracy score (AS) of each method: its rank among the methods, normalised and averaged over metrics.

    For one dataset with :math:`N` methods and a set :math:`\mathcal{M}` of metrics, the methods are ranked on
    each metric so that the best gets rank :math:`N` and the worst rank 1 (higher-is-better metrics ascending,
    lower-is-better metrics such as RMSE and JS descending; tied values share the average of their ranks), and

    .. math::
        \mathrm{AS}(\text{method}) = \frac{1}{|\mathcal{M}|} \sum_{m \in \mathcal{M}}
                                     \frac{\operatorname{rank}_m(\text{method})}{N}.

    A method that is best on every metric scores 1, one that is worst on every metric :math:`1/N`. With
    ``dataset_col``, AS is computed within each dataset (with that dataset's number of methods) and averaged
    over the datasets in which the method appears.

    Parameters
    ----------
    scores
        Wide table, one row per method (per dataset, with ``dataset_col``) and one column per metric, holding one
        summary value per method and metric (for gene metrics, the median over genes). The method names are the
        column ``method_col`` if present, otherwise the index.
    method_col
        Column (or, if absent, the index) with the method names; they must be unique within a dataset.
    metric_cols
        The metric columns to rank on. Default: every other numeric column (except ``dataset_col``).
    higher_is_better
        Direction of each metric, ``True`` if higher is better; merged over
        :data:`~spalstf.metrics.HIGHER_IS_BETTER`, so only metrics not in it (or to override it) need to be given.
    dataset_col
        Optional column identifying the dataset of each row (tidy multi-dataset table).

    Returns
    -------
    :class:`pandas.Series` named ``"AS"``, indexed by method in order of first appearance.

    Raises
    ------
    KeyError
        If a requested column is missing.
    ValueError
        If a metric has no known direction, a metric value is missing (NaN), a method appears twice within a
        dataset, or no metric column is left.

    Examples
    --------
    >>> import pandas as pd
    >>> from spalstf.metrics import accuracy_score
    >>> scores = pd.DataFrame(
    ...     {"method": ["A", "B", "C"], "SPCC": [0.5, 0.4, 0.4], "RMSE": [0.9, 1.0, 0.8]},
    ... )
    >>> accuracy_score(scores)  # A: (3 + 2) / 3 / 2; B: (1.5 + 1) / 3 / 2; C: (1.5 + 3) / 3 / 2
    method
    A    0.833333
    B    0.416667
    C    0.750000
    Name: AS, dtype: float64
    """
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be a pandas DataFrame (one row per method), got {type(scores).__name__}.")
    if method_col in scores.columns:
        frame = scores.reset_index(drop=True)
    else:
        frame = scores.rename_axis(method_col).reset_index()
    if dataset_col is not None and dataset_col not in frame.columns:
        raise KeyError(f"dataset_col {dataset_col!r} is not a column of scores; columns: {list(scores.columns)}.")
    if metric_cols is None:
        skip = {method_col, dataset_col}
        metric_cols = [c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]
    else:
        metric_cols = [metric_cols] if isinstance(metric_cols, str) else list(metric_cols)
        missing = [c for c in metric_cols if c not in frame.columns]
        if missing:
            raise KeyError(f"metric column(s) {format_names(missing)} not in scores; columns: {list(scores.columns)}.")
    if not metric_cols:
        raise ValueError("No metric column to rank on; pass metric_cols.")
    directions = {**HIGHER_IS_BETTER, **(higher_is_better or {})}
    unknown = [c for c in metric_cols if c not in directions]
    if unknown:
        raise ValueError(
            f"No direction known for metric(s) {format_names(unknown)}; pass higher_is_better={{name: True/False}}."
        )
    values = frame[metric_cols].apply(pd.to_numeric, errors="raise").astype(float)
    if values.isna().to_numpy().any():
        rows, cols = np.nonzero(values.isna().to_numpy())
        where = [f"{frame[method_col].iloc[r]}/{metric_cols[c]}" for r, c in zip(rows, cols, strict=True)]
        raise ValueError(f"Missing metric value(s) for method/metric {format_names(where)}; AS needs every value.")

    groups = frame[dataset_col] if dataset_col is not None else pd.Series(0, index=frame.index)
    methods = frame[method_col]
    per_dataset = []
    for _, idx in groups.groupby(groups, sort=False).groups.items():
        group_methods = methods.loc[idx]
        if group_methods.duplicated().any():
            dup = group_methods[group_methods.duplicated()].unique()
            where = "" if dataset_col is None else f" in dataset {frame.loc[idx[0], dataset_col]!r}"
            raise ValueError(f"Method(s) {format_names(dup)} appear more than once{where}; give one row per method.")
        ranks = pd.DataFrame(
            {c: values.loc[idx, c].rank(method="average", ascending=bool(directions[c])) for c in metric_cols}
        )
        per_dataset.append(pd.Series((ranks / len(idx)).mean(axis=1).to_numpy(), index=group_methods.to_numpy()))
    stacked = pd.concat(per_dataset)
    order = pd.unique(methods)
    result = stacked.groupby(level=0, sort=False).mean().reindex(order)
    result.index.name = method_col
    result.name = "AS"
    return result
