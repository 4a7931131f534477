"""The statistics of ``downstream.py``: each test on one set of values, draw quality, and the summaries over runs.

Kept apart from the script's orchestration (models, TISSUE, folds) so that what is measured can be read in one place.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

#: Central levels of the coverage curve.
LEVELS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: Benjamini-Hochberg FDR of every call.
ALPHA = 0.05


# ------------------------------------------------------------------------------------------------------ the tests
def de_one(values: np.ndarray, in1: np.ndarray, in2: np.ndarray) -> dict[str, np.ndarray]:
    """Welch-variance t-test of one value per cell (cells x genes), df ``n1 + n2 - 2``, two-sided."""
    from spalstf.model._draws import welch

    d, v, df = welch(values[in1], values[in2])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = d / np.sqrt(v)
    p = np.where(v > 0, 2 * stats.t.sf(np.abs(t), df), np.where(d == 0, 1.0, 0.0))
    return {
        "estimate": d,
        "statistic": np.where(v > 0, t, np.sign(d) * np.inf),
        "pvalue": p,
        "df": df,
        "se": np.sqrt(v),
        "imputation_var": np.zeros_like(d),
    }


def moran_one(graph, values: np.ndarray) -> dict[str, np.ndarray]:
    """Moran's I of one value per cell with the normality p-value (``pooled_moran`` with one row)."""
    from spalstf.model._draws import pooled_moran

    moran = graph.moran(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = pooled_moran(moran[None, :], graph)
    return {
        "estimate": moran,
        "statistic": pooled["statistic"],
        "pvalue": pooled["pvalue"],
        "df": pooled["df"],
        "se": np.full(moran.shape, np.sqrt(graph.variance)),
        "imputation_var": np.zeros_like(moran),
    }


def pooled_spread(estimate, statistic, missing) -> dict[str, np.ndarray]:
    """Standard error ``sqrt(T)`` of a pooled difference (from its t statistic) and its imputation part ``lambda T``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        total = (np.asarray(estimate, np.float64) / np.asarray(statistic, np.float64)) ** 2
    return {"se": np.sqrt(total), "imputation_var": np.asarray(missing, np.float64) * total}


def moran_spread(graph, missing) -> dict[str, np.ndarray]:
    """Standard error of a pooled Moran's I, ``T = W / (1 - lambda)`` with ``W`` the normality variance."""
    missing = np.asarray(missing, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = graph.variance / (1.0 - missing)
    return {"se": np.sqrt(total), "imputation_var": missing * total}


def test_frame(result: dict[str, np.ndarray], genes: list[str], **labels: Any) -> pd.DataFrame:
    from spalstf.model._draws import benjamini_hochberg

    frame = pd.DataFrame({"gene": genes, **{k: np.asarray(v, np.float64) for k, v in result.items()}})
    frame["pvalue_adj"] = benjamini_hochberg(frame["pvalue"].to_numpy())
    for key, value in labels.items():
        frame.insert(0, key, value)
    return frame


def moran_frame(pooled, graph, held: list[str]) -> pd.DataFrame:
    """The Moran rows of the tests table from a pooled result (``I``, ``statistic``, ``pvalue``, ``df``, ...)."""
    return test_frame(
        {
            "estimate": pooled["I"],
            "statistic": pooled["statistic"],
            "pvalue": pooled["pvalue"],
            "df": pooled["df"],
            "fraction_missing_information": pooled["fraction_missing_information"],
            **moran_spread(graph, pooled["fraction_missing_information"]),
        },
        held,
        test="moran",
        comparison="moran",
    )


def test_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Calls, true calls, found, false calls, FDR and power of a set of tests with their truth."""
    call = (frame["pvalue_adj"] < ALPHA).to_numpy()
    truth = (frame["truth_pvalue_adj"] < ALPHA).to_numpy()
    right = (np.sign(frame["statistic"]) == np.sign(frame["truth_statistic"])).to_numpy()
    found = int((call & truth & right).sum())
    false = int((call & ~(truth & right)).sum())
    calls, true = int(call.sum()), int(truth.sum())
    error = (frame["estimate"] - frame["truth_estimate"]).to_numpy(np.float64)
    se, df = frame["se"].to_numpy(np.float64), frame["df"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = np.abs(error) <= stats.t.ppf(0.975, np.where(np.isfinite(df), df, 1e12)) * se
        imputation = np.nansum(frame["imputation_var"].to_numpy(np.float64))
        ratio = np.nansum(error**2) / imputation if imputation > 0 else np.inf
    return {
        "tests": len(frame),
        "calls": calls,
        "true_calls": true,
        "found": found,
        "false_calls": false,
        "FDR": false / calls if calls else np.nan,
        "power": found / true if true else np.nan,
        "ci95_covers_truth": float(np.nanmean(inside)),
        "error2_over_imputation_var": float(ratio),
        "median_abs_error_over_se": float(np.nanmedian(np.abs(error) / se)),
    }


# ----------------------------------------------------------------------------------------------- draw quality
def interval_ranks(K: int, level: float) -> tuple[int, int]:
    """1-based order statistics of the central ``level`` interval of K draws."""
    lower = max(1, math.floor((K + 1) * (1 - level) / 2 + 1e-9))
    upper = min(K, math.ceil((K + 1) * (1 + level) / 2 - 1e-9))
    return lower, upper


def draw_quality(draws: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Sums over entries (to pool over folds): coverage counts per level (order statistics, PIT) and fair CRPS."""
    K = draws.shape[2]
    ordered = np.sort(draws, axis=2)
    y = truth[..., None]
    out: dict[str, float] = {"entries": float(truth.size)}
    for level in LEVELS:
        lo, hi = interval_ranks(K, level)
        inside = (ordered[..., lo - 1] <= truth) & (truth <= ordered[..., hi - 1])
        out[f"cover_{level}"] = float(inside.sum())
    below = (draws < y).sum(axis=2)
    ties = (draws == y).sum(axis=2)
    pit = (below + rng.uniform(size=below.shape) * (ties + 1)) / (K + 1)
    for level in LEVELS:
        out[f"pit_{level}"] = float((np.abs(pit - 0.5) <= level / 2).sum())
    weights = (2 * np.arange(1, K + 1) - K - 1) / (K * (K - 1))
    crps = np.abs(draws - y).mean(axis=2) - (ordered * weights).sum(axis=2)
    out["crps_sum"] = float(crps.sum())
    return out


#: Principal axes of the coordinates along which the tissue is cut into halves (:func:`principal_halves`).
MAX_AXES = 3


def halves_gap(values: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Mean of the rows in ``upper`` minus the mean of the others (over the first axis)."""
    return values[upper].mean(axis=0) - values[~upper].mean(axis=0)


def principal_halves(coordinates: np.ndarray) -> list[np.ndarray]:
    """The cells cut into halves at the median of their projection on each principal axis of ``coordinates``.

    One mask (the upper half) per axis, longest axis first, at most :data:`MAX_AXES`.
    """
    centred = coordinates - coordinates.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    masks = []
    for axis in axes[:MAX_AXES]:
        projection = centred @ axis
        masks.append(projection >= np.median(projection))
    return masks


def halves_by_axis(
    draws: np.ndarray, truth: np.ndarray, point: np.ndarray, halves: list[np.ndarray]
) -> dict[str, float]:
    """Sums over genes (to pool over folds) of how far the halves' difference is off, along each principal axis.

    ``halves`` are the cuts of :func:`principal_halves`. Per gene, the difference between the halves' means of the
    truth, of the point and of every draw: ``error2_axis{j}`` sums the truth's squared deviation from the point's,
    ``spread2_axis{j}`` the draws' mean squared deviation from it. Their ratio is about 1 where the draws vary between
    halves cut in that direction as much as the imputation errs there; above 1, a comparison of such regions is
    over-confident.
    """
    out: dict[str, float] = {}
    for j, upper in enumerate(halves, start=1):
        point_gap = halves_gap(point, upper)
        out[f"error2_axis{j}"] = float(((halves_gap(truth, upper) - point_gap) ** 2).sum())
        out[f"spread2_axis{j}"] = float(((halves_gap(draws, upper) - point_gap[:, None]) ** 2).mean(axis=1).sum())
    return out


def pair_correlation_sd(deviations: np.ndarray) -> float:
    """Standard deviation of the Pearson correlations between every two columns (genes) of ``deviations``."""
    from spalstf.model._draws import pair_correlations

    pairs = pair_correlations(deviations)
    return float(pairs.std()) if len(pairs) else np.nan


def mean_abs_spearman(values: np.ndarray) -> float:
    """Mean absolute Spearman correlation between the columns (genes) of ``values``."""
    ranks = stats.rankdata(values, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.corrcoef(ranks, rowvar=False)
    upper = corr[np.triu_indices_from(corr, k=1)]
    return float(np.nanmean(np.abs(upper))) if np.isfinite(upper).any() else np.nan


# ---------------------------------------------------------------------------------------------------- summaries
def summarise_tests(tests: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (method, test, K, seed), frame in tests.groupby(["method", "test", "K", "seed"], sort=False):
        row = {"method": method, "test": test, "K": K, "seed": seed, **test_metrics(frame)}
        if test == "moran":  # how well the (pooled) I orders the genes as their measured I does
            row["I_spearman_with_truth"] = float(stats.spearmanr(frame["estimate"], frame["truth_estimate"])[0])
        if test == "moran" and method != "single":
            row.update(widened_moran(frame))
        if test == "de":  # the intervals by kind of comparison: large regions (the halves) or expression clusters
            row.update(de_ceiling(frame))
            for kind, part in frame.groupby(frame["comparison"].str.split(":").str[0], sort=True):
                metrics = test_metrics(part)
                row[f"ci95_covers_truth_{kind}"] = metrics["ci95_covers_truth"]
                row[f"error2_over_imputation_var_{kind}"] = metrics["error2_over_imputation_var"]
        rows.append(row)
    return pd.DataFrame(rows)


def de_ceiling(frame: pd.DataFrame) -> dict[str, float]:
    """What a method's standard errors allow: its tests centred on the measured difference (an oracle).

    Each test's difference is replaced by the measurement's (``truth_estimate``), its standard error and degrees of
    freedom kept; p-values are adjusted as the method's (Benjamini-Hochberg within each fold and comparison). The power
    of these tests is the most the method's intervals could give with a perfect point estimate of every difference: a
    method whose standard errors are as large as its errors cannot call effects smaller than those errors. Also the
    median, over the true calls, of the measured difference over the method's standard error.
    """
    from spalstf.model._draws import benjamini_hochberg

    se = frame["se"].to_numpy(np.float64)
    df = frame["df"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = frame["truth_estimate"].to_numpy(np.float64) / se
    pvalue = pd.Series(2 * stats.t.sf(np.abs(t), np.where(np.isfinite(df), df, 1e12)), index=frame.index)
    groups = [frame["fold"], frame["comparison"]]
    adjusted = pd.concat(
        [pd.Series(benjamini_hochberg(v.to_numpy()), index=v.index) for _, v in pvalue.groupby(groups)]
    )
    call = (adjusted.reindex(frame.index) < ALPHA).to_numpy()
    truth = (frame["truth_pvalue_adj"] < ALPHA).to_numpy()
    return {
        "oracle_centred_power": float((call & truth).sum() / truth.sum()) if truth.sum() else np.nan,
        "true_effect_over_se_median": float(np.nanmedian(np.abs(t[truth]))) if truth.any() else np.nan,
    }


def widened_moran(frame: pd.DataFrame) -> dict[str, float]:
    """What an honest pooled Moran's I would cost: its variance widened by the spread it misses (an oracle).

    ``tau^2 = max(0, mean (I - I_truth)^2 - mean se^2)`` over the genes (it reads the held-out measurements, so no
    method could use it as is): the variance a gene-level term would have to add for the pooled 95% intervals to cover
    the measured Moran's I on average. Returns ``tau``, the coverage of the widened intervals (normal), and the calls,
    FDR and power of the one-sided normal test with the widened variance (BH within each fold, as the others).
    """
    from spalstf.model._draws import benjamini_hochberg

    error = (frame["estimate"] - frame["truth_estimate"]).to_numpy(np.float64)
    se = frame["se"].to_numpy(np.float64)
    tau2 = max(0.0, float(np.nanmean(error**2) - np.nanmean(se**2)))
    total = np.sqrt(se**2 + tau2)
    z = frame["statistic"].to_numpy(np.float64) * se / total  # (I - E[I]) / sqrt(T + tau^2)
    pvalue = pd.Series(stats.norm.sf(z), index=frame.index)
    adjusted = pd.concat(
        [pd.Series(benjamini_hochberg(v.to_numpy()), index=v.index) for _, v in pvalue.groupby(frame["fold"])]
    )
    call = (adjusted.reindex(frame.index) < ALPHA).to_numpy()
    truth = (frame["truth_pvalue_adj"] < ALPHA).to_numpy()
    right = (np.sign(z) == np.sign(frame["truth_statistic"])).to_numpy()
    found, false = int((call & truth & right).sum()), int((call & ~(truth & right)).sum())
    return {
        "widened_tau": float(np.sqrt(tau2)),
        "widened_ci95_covers_truth": float(np.nanmean(np.abs(error) <= stats.norm.ppf(0.975) * total)),
        "widened_calls": int(call.sum()),
        "widened_FDR": false / call.sum() if call.sum() else np.nan,
        "widened_power": found / truth.sum() if truth.sum() else np.nan,
    }


def summarise_draws(draws: pd.DataFrame) -> pd.DataFrame:
    rows = []
    constant = draws[draws["method"] == "constant"].groupby(["K", "seed"])
    constant_crps = {key: f["crps_sum"].sum() / f["entries"].sum() for key, f in constant}
    for (method, K, seed), frame in draws.groupby(["method", "K", "seed"], sort=False):
        entries = frame["entries"].sum()
        row: dict[str, Any] = {"method": method, "K": K, "seed": seed, "entries": entries}
        order_err, exact_err, pit_err = 0.0, 0.0, 0.0
        for level in LEVELS:
            cover = frame[f"cover_{level}"].sum() / entries
            pit = frame[f"pit_{level}"].sum() / entries
            lo, hi = interval_ranks(int(K), level)
            row[f"coverage_{level}"] = cover
            row[f"pit_coverage_{level}"] = pit
            order_err = max(order_err, abs(cover - level))
            exact_err = max(exact_err, abs(cover - (hi - lo) / (K + 1)))
            pit_err = max(pit_err, abs(pit - level))
        row["calibration_error_order"] = order_err
        row["calibration_error_order_vs_exchangeable"] = exact_err
        row["calibration_error_pit"] = pit_err
        for j in range(1, MAX_AXES + 1):
            if f"error2_axis{j}" in frame and frame[f"error2_axis{j}"].notna().all():
                row[f"halves_axis{j}_error2_over_spread2"] = (
                    frame[f"error2_axis{j}"].sum() / frame[f"spread2_axis{j}"].sum()
                )
        row["crps"] = frame["crps_sum"].sum() / entries
        row["crps_ratio_to_constant"] = row["crps"] / constant_crps[(K, seed)]
        rows.append(row)
    return pd.DataFrame(rows)
