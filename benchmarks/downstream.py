"""Are tests on imputed genes trustworthy? Differential expression and Moran's I on held-out genes, with and without
multiple imputation, against the same tests on their measurement.

For each pair (``drosophila_embryo``, ``osmfish``) and each fold of the benchmark's 5-fold gene split
(:func:`spalstf.benchmark.gene_folds`, seed 0, as ``benchmarks/cross_validate.py``), a SpaLSTF model is built on the
fold's kept genes for its held-out genes (default settings and training, as :func:`spalstf.benchmark.impute_spalstf`
does; ``--closed-form``: the ridge + neighbour blend, not trained) and calibrated on the kept genes only
(``calibrate_intervals``). Everything is in the platform's space ``log1p(x / L * 1e4)``, ``L`` the cell's total over
the kept genes; cells with ``L == 0`` are left out everywhere. ``--cells N`` imitates a smaller section: the
benchmark runs on N spatial cells drawn at random (seeded by ``--random-state``), whose neighbours are farther apart.

Groups of cells come from measured panel genes only: ``half`` (the tissue split at the median of the first
coordinate; ``right`` against ``left``) and the Leiden clusters of the kept genes (normalize_total, log1p, PCA with
``min(30, n_kept - 1)`` components, 15 neighbours, resolution 0.5, seed 0; each cluster of at least 30 cells against
the rest). Tests:

``de``
    per (comparison, gene): two-sided t-test of the mean difference with the Welch variance.
``moran``
    per gene: Moran's I on squidpy's 6-nearest-neighbour graph (``coord_type="generic"``) restricted to the cells
    with signal, normality p-value (upper tail of ``|z|``, as squidpy's ``pval_norm``).

The truth is the same test on the measured held-out genes (one value per cell, degrees of freedom ``n1 + n2 - 2``),
called at Benjamini-Hochberg FDR 0.05 (within each comparison across the fold's held-out genes; for Moran within the
fold). Methods:

``single``
    the point estimate (``model.impute(..., interval=0.9).mean``) treated as data, the truth's tests.
``tissue``
    TISSUE's multiple imputation (``tissue-sc``) around the same point estimate: cell-centric variability on its
    documented spatial graph (``build_spatial_graph(method="fixed_radius", n_neighbors=15)``),
    ``conformalize_spatial_uncertainty(grouping_method="kmeans_gene_cell", k=4, k2=2)``, the t-test of
    ``multiple_imputation_testing(test="ttest", n_imputations=K)`` and, for Moran, K imputations from its
    ``sample_new_imputation_from_scores`` (with the calibration set its t-test uses: asymmetric, top 20% of scores
    trimmed) pooled with :func:`spalstf.model._draws.pooled_moran`. Its calibration genes are the kept genes, whose
    cross-validated predictions come from an inner 5-fold split of the kept genes: per inner fold, a closed-form
    SpaLSTF model (ridge + neighbours; the same kind of copy ``calibrate_intervals`` uses) on the other kept genes,
    calibrated on them, predicts the fold's genes in the platform space of its own panel, mapped to the full panel's
    library (``log1p(expm1(p) * L_inner / L)``).
``spalstf``
    ``model.differential_expression`` / ``model.spatial_autocorr`` with ``n_samples=K`` (calibrated draws pooled
    with Rubin's rules).

Metrics per method and test, pooled over folds and comparisons: calls, true calls (truth significant), true calls
found (with the truth's sign), FDR = false calls / calls (false: truth not significant or wrong sign), power = found /
true calls; for K in ``--samples`` and each draw seed in ``--seeds`` (``random_state`` of the draws; TISSUE: numpy's
global seed): the first seed's value and [min, max] over seeds.

Draw quality on the held-out genes, for SpaLSTF's draws (``posterior_predictive_sample``), TISSUE's imputations and
the per-gene constant-width predictive of the same calibration (``interval_calibration_.gene_table``, one stratum,
iid uniforms through :func:`spalstf.model._draws.score_quantiles`, clipped at 0 as the draws are): coverage of the
central interval of the K draws at levels 0.5, 0.55, ..., 0.95 from order statistics (draws number
``max(1, floor((K+1)(1-a)/2))`` and ``min(K, ceil((K+1)(1+a)/2))``, closed) and from the randomised PIT;
calibration error = max over levels of ``|coverage - level|`` (for order statistics also against the coverage
``(upper - lower) / (K + 1)`` that an exchangeable truth has, which is below the level for small K and high levels);
fair ensemble CRPS (mean over entries) and its ratio to the constant-width predictive's; over-smoothing: median over
held-out genes of ``|I(draw 0) - I(truth)|`` and ``|I(point) - I(truth)|``; mean absolute Spearman correlation
between held-out genes (per fold, then mean over folds) of the truth, the point estimate and draw 0.

Resources: time and peak resident memory (:class:`spalstf.benchmark.PeakMemory`, RSS increase) of every call of
``posterior_predictive_sample``, ``spatial_autocorr``, ``differential_expression`` (one comparison) and
``rank_genes_groups`` (every Leiden cluster against the rest in one call; its p-values are checked against the calls one
by one), also per 10^4 cells, and of training, calibration, imputation and TISSUE's steps.

Writes ``<out>/<pair>_tests.csv`` (one row per fold, seed, K, method, test, comparison and gene, with the truth's
p-value and sign), ``_summary.csv`` (tidy: kind, method, test, K, seed, metric, value), ``_draws.csv`` (draw
quality per fold, seed, K and method), ``_resources.csv`` and ``_info.json`` (machine, settings, checks), and prints
markdown tables.

Usage::

    python benchmarks/downstream.py --closed-form --folds-to-run 1 --samples 10 --seeds 0 --threads 1 \\
        --out /tmp/downstream_smoke                                   # quick check, both pairs
    python benchmarks/downstream.py --pairs drosophila_embryo,osmfish --samples 10,20,50 --seeds 0,1,2 \\
        --threads 1 --out results/benchmarks/downstream               # full run: default (trained) model
    python benchmarks/downstream.py --closed-form --samples 10,20,50 --seeds 0,1,2 --threads 1 \\
        --out results/benchmarks/downstream_closed_form               # closed-form blend, no training
    python benchmarks/downstream.py --closed-form --cells 750 --samples 10,20,50 --seeds 0,1,2 --threads 1 \
        --out results/benchmarks/downstream_750_cells                 # a small section: 750 random cells
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, markdown_table

from spalstf.benchmark import PeakMemory, limit_threads, silence_libraries

#: Central levels of the coverage curve.
LEVELS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: Benjamini-Hochberg FDR of every call.
ALPHA = 0.05
#: Smallest Leiden cluster tested against the rest.
MIN_CLUSTER_CELLS = 30
#: obsm key of the predictions handed to TISSUE (its uns keys are prefixed by the part before the first "_").
TISSUE_KEY = "spalstf_predicted_expression"
TISSUE_PREFIX = TISSUE_KEY.split("_")[0]
#: TISSUE's settings (its README's tutorial; the default grouping_method=None fails).
TISSUE_GRAPH = {"method": "fixed_radius", "n_neighbors": 15}
TISSUE_GROUPING = {"grouping_method": "kmeans_gene_cell", "k": 4, "k2": 2}
#: Inner folds of the kept genes for TISSUE's cross-validated panel predictions.
N_INNER_FOLDS = 5
#: The closed-form blend (no network).
CLOSED_FORM = ("ridge", "neighbours")

logger = logging.getLogger("downstream")


# ------------------------------------------------------------------------------------------------------ utilities
def dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if sparse.issparse(X) else X, dtype=np.float64)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def measured_call(func, *args, **kwargs) -> tuple[Any, float, float]:
    """``func(*args, **kwargs)``, its wall time (s) and the peak RSS increase during it (MiB)."""
    with PeakMemory() as mem:
        start = time.perf_counter()
        out = func(*args, **kwargs)
        elapsed = time.perf_counter() - start
    return out, elapsed, mem.peak_mb


def machine_info(threads: int | None) -> dict[str, Any]:
    import scanpy

    import spalstf as sp

    versions = {}
    for name in ("tissue-sc", "scanpy", "squidpy", "numpy", "scipy", "scikit-learn", "anndata"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads_option": threads,
        "torch_threads": torch.get_num_threads(),
        "scanpy_n_jobs": scanpy.settings.n_jobs,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "spalstf": sp.__version__,
        **versions,
    }


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


# -------------------------------------------------------------------------------------------------- the pieces
def leiden_labels(raw_kept: np.ndarray, n_kept: int) -> np.ndarray:
    """Leiden clusters of the cells from their kept genes (scanpy; the cells given all have signal)."""
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(raw_kept.astype(np.float32))
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=min(30, n_kept - 1), random_state=0)
    sc.pp.neighbors(adata, n_neighbors=15, random_state=0)
    sc.tl.leiden(adata, resolution=0.5, random_state=0, flavor="igraph", n_iterations=2, directed=False)
    return adata.obs["leiden"].astype(str).to_numpy()


def build_model(rna, panel, held: list[str], closed_form: bool):
    """SpaLSTF for the held genes on the panel, as :func:`spalstf.benchmark.impute_spalstf` builds it (seed 0)."""
    import spalstf as sp
    from spalstf._state import global_seed

    reference = rna.copy()
    start = time.perf_counter()
    with global_seed(0):
        sp.model.SpaLSTF.setup_anndata(reference)
        if closed_form:
            model = sp.model.SpaLSTF(reference, panel, genes=held, blend=CLOSED_FORM)
            model.skip_training("benchmark")
        else:
            model = sp.model.SpaLSTF(reference, panel, genes=held)
            model.train(enable_progress_bar=False)
    return model, time.perf_counter() - start


def panel_predictions(st, rna, kept: list[str], library: np.ndarray) -> pd.DataFrame:
    """Cross-validated platform-space predictions of the kept genes (TISSUE's calibration genes), all cells.

    Inner 5-fold split of the kept genes; per inner fold a closed-form model on the other kept genes, calibrated on
    them, predicts the fold's genes in its own platform space (library ``L_inner`` over its panel), mapped to the full
    panel's: ``log1p(expm1(p) * L_inner / L)`` (the same predicted raw value over the cell's full library).
    """
    from spalstf.benchmark import gene_folds

    out = pd.DataFrame(np.nan, index=st.obs_names, columns=kept)
    for inner_kept, inner_held in gene_folds(kept, n_folds=min(N_INNER_FOLDS, len(kept)), random_state=0):
        inner_panel = st[:, inner_kept].copy()
        model, _ = build_model(rna, inner_panel, inner_held, closed_form=True)
        model.calibrate_intervals(inner_panel)
        p = model.impute(inner_panel, interval=0.9, progress_bar=False).mean[inner_held].to_numpy(np.float64)
        inner_library = dense(inner_panel.X).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(library > 0, inner_library / library, 0.0)
        out[inner_held] = np.log1p(np.expm1(p) * ratio[:, None])
    return out


# ---------------------------------------------------------------------------------------------------- one fold
def run_fold(
    fold: int,
    kept: list[str],
    held: list[str],
    adata_st,
    rna,
    args: argparse.Namespace,
    checks: dict[str, Any],
) -> dict[str, list]:
    import anndata as ad
    import squidpy as sq
    import tissue.downstream
    import tissue.main

    from spalstf.model._calibration import platform_values
    from spalstf.model._defaults import IMPUTE_BATCH_SIZE
    from spalstf.model._draws import MoranGraph, pooled_moran, score_quantiles
    from spalstf.model._spatial_input import SpatialInput

    tests: list[pd.DataFrame] = []
    draws_rows: list[dict] = []
    resources: list[dict] = []
    moran_rows: list[dict] = []  # per-gene |delta I| (over-smoothing)
    corr_rows: list[dict] = []

    def resource(call: str, seconds: float, peak_mb: float, **extra: Any) -> None:
        resources.append({"fold": fold, "call": call, "time_s": seconds, "peak_mb": peak_mb, **extra})

    panel = adata_st[:, kept].copy()
    raw_kept = dense(panel.X)
    library = raw_kept.sum(axis=1)
    signal = library > 0
    n_signal = int(signal.sum())
    coordinates = np.asarray(panel.obsm["spatial"], np.float64)

    # groups from the measured panel only
    median = np.median(coordinates[signal, 0])
    panel.obs["half"] = pd.Categorical(np.where(coordinates[:, 0] >= median, "right", "left"))
    labels = np.full(panel.n_obs, "nosignal", dtype=object)
    labels[signal] = leiden_labels(raw_kept[signal], len(kept))
    panel.obs["leiden"] = pd.Categorical(labels.astype(str))
    sizes = pd.Series(labels[signal]).value_counts()
    clusters = sorted((c for c, n in sizes.items() if n >= MIN_CLUSTER_CELLS), key=lambda c: int(c))
    comparisons = [("half", "right", "half:right_vs_left")] + [("leiden", c, f"leiden:{c}_vs_rest") for c in clusters]
    log(
        f"fold {fold}: {len(kept)} kept, {len(held)} held, {n_signal}/{panel.n_obs} cells with signal, "
        f"{len(sizes)} Leiden clusters ({len(clusters)} with >= {MIN_CLUSTER_CELLS} cells)"
    )

    # squidpy's graph (all cells, as the API reads it) and its restriction to the cells with signal
    sq.gr.spatial_neighbors(panel, coord_type="generic", n_neighs=6)
    W = sparse.csr_matrix(panel.obsp["spatial_connectivities"], dtype=np.float64)
    W_signal = W[signal][:, signal]
    graph = MoranGraph.from_connectivities(W_signal)

    # the model, its calibration and point estimate
    model, train_s = build_model(rna, panel, held, args.closed_form)
    resource("train" if not args.closed_form else "build (closed form)", train_s, np.nan)
    calibration, seconds, peak = measured_call(model.calibrate_intervals, panel)
    resource("calibrate_intervals", seconds, peak)
    noise = model.interval_calibration_.details["draws"]  # the draws' noise settings, fitted on the kept genes
    noise_record = {key: float(value) for key, value in noise.items() if np.isscalar(value) and key != "n_neighbors"}
    noise_record["cluster_shares"] = [float(level["share"]) for level in noise["clusters"]]
    levels = noise["smoothness_levels"]  # the errors' Moran's I by expression level, where it predicts on the panel
    noise_record["smoothness_bins"] = float(len(levels["shift"]))
    noise_record["smoothness_shift_lowest"], noise_record["smoothness_shift_highest"] = (
        levels["shift"][0],
        levels["shift"][-1],
    )
    noise_record["smoothness_cv_error_bins"], noise_record["smoothness_cv_error_median"] = levels["cv_error"]
    imputation, seconds, peak = measured_call(model.impute, panel, interval=0.9, progress_bar=False)
    resource("impute(interval=0.9)", seconds, peak)
    target_sum = float(model.target_sum)
    point_all = imputation.mean[held].to_numpy(np.float64)
    point = point_all[signal]
    truth = platform_values(dense(adata_st[:, held].X), library, target_sum)[signal]
    assert np.isfinite(truth).all() and np.isfinite(point).all()

    # the truth's and the point estimate's tests
    groups = {"half": panel.obs["half"].to_numpy().astype(str), "leiden": labels.astype(str)}
    truth_frames, single_frames = [], []
    for column, group, name in comparisons:
        in1 = groups[column][signal] == group
        in2 = ~in1
        truth_frames.append(test_frame(de_one(truth, in1, in2), held, test="de", comparison=name))
        single_frames.append(test_frame(de_one(point, in1, in2), held, test="de", comparison=name))
    truth_frames.append(test_frame(moran_one(graph, truth), held, test="moran", comparison="moran"))
    single_frames.append(test_frame(moran_one(graph, point), held, test="moran", comparison="moran"))
    truth_table = pd.concat(truth_frames, ignore_index=True).set_index(["test", "comparison", "gene"])
    tests.append(pd.concat(single_frames, ignore_index=True).assign(method="single", K=1, seed=-1))

    # once: our Moran's I of the truth equals squidpy's
    truth_adata = ad.AnnData(truth.astype(np.float64), obs=pd.DataFrame(index=panel.obs_names[signal]))
    truth_adata.var_names = held
    truth_adata.obsp["spatial_connectivities"] = W_signal
    squidpy_table = sq.gr.spatial_autocorr(
        truth_adata, mode="moran", genes=held, n_perms=None, transformation=True, copy=True
    ).reindex(held)
    ours = truth_table.loc[("moran", "moran")].reindex(held)
    finite = np.isfinite(ours["estimate"].to_numpy())
    np.testing.assert_allclose(ours["estimate"].to_numpy()[finite], squidpy_table["I"].to_numpy()[finite], atol=1e-8)
    checks.setdefault("moran_vs_squidpy_max_abs_I", []).append(
        float(np.nanmax(np.abs(ours["estimate"].to_numpy() - squidpy_table["I"].to_numpy())))
    )
    checks.setdefault("moran_vs_squidpy_max_abs_pval_norm", []).append(
        float(np.nanmax(np.abs(ours["pvalue"].to_numpy() - squidpy_table["pval_norm"].to_numpy())))
    )

    # the plan's point equals impute's, and its scale gives the constant-width predictive
    plan, _ = model._draw_plan(SpatialInput.prepare(panel, None), None, 0, IMPUTE_BATCH_SIZE, "spatial")
    checks.setdefault("plan_point_vs_impute_max_abs", []).append(float(np.max(np.abs(plan.point - point_all))))
    checks.setdefault("plan_empty_equals_library_zero", []).append(bool((plan.empty == ~signal).all()))
    scale = np.asarray(plan.scale, np.float64)

    # TISSUE: cross-validated predictions of the kept genes, its graph and its calibration
    tissue_adata = None
    if not args.skip_tissue:
        (predictions, seconds, peak) = measured_call(panel_predictions, adata_st, rna, kept, library)
        resource("tissue: panel predictions (inner CV)", seconds, peak)
        tissue_adata = ad.AnnData(
            platform_values(raw_kept, library, target_sum)[signal],
            obs=pd.DataFrame(
                {"half": groups["half"][signal], "leiden": groups["leiden"][signal]}, index=panel.obs_names[signal]
            ),
        )
        tissue_adata.var_names = kept
        tissue_adata.obsm["spatial"] = coordinates[signal]
        frame = pd.concat(
            [
                pd.DataFrame(point, index=tissue_adata.obs_names, columns=held),
                predictions.loc[tissue_adata.obs_names, kept],
            ],
            axis=1,
        )
        tissue_adata.obsm[TISSUE_KEY] = frame
        checks.setdefault("tissue_panel_spcc_median", []).append(
            float(np.nanmedian([stats.spearmanr(frame[g].to_numpy(), tissue_adata[:, g].X.ravel())[0] for g in kept]))
        )

        def conformalize():
            tissue.main.build_spatial_graph(tissue_adata, **TISSUE_GRAPH)
            tissue.main.conformalize_spatial_uncertainty(tissue_adata, TISSUE_KEY, calib_genes=kept, **TISSUE_GROUPING)

        _, seconds, peak = measured_call(conformalize)
        resource("tissue: graph + conformalize", seconds, peak)
        tissue_scores = tissue.main.build_calibration_scores(
            tissue_adata, TISSUE_KEY, kept, symmetric=False, include_zero_scores=True, trim_quantiles=[None, 0.8]
        )
        _, _, G_stdev, G, tissue_groups = tissue.main.get_spatial_uncertainty_scores_from_metadata(
            tissue_adata, TISSUE_KEY
        )
        held_columns = np.arange(len(held))  # held genes come first in the predictions

    # over-smoothing and correlation of the truth and the point
    moran_truth = graph.moran(truth)
    moran_point = graph.moran(point)
    for j, gene in enumerate(held):
        moran_rows.append(
            {
                "fold": fold,
                "gene": gene,
                "seed": -1,
                "method": "point",
                "abs_delta_I": abs(moran_point[j] - moran_truth[j]),
                "I_truth": moran_truth[j],
                "I": moran_point[j],
            }
        )
    corr_rows.append(
        {
            "fold": fold,
            "seed": -1,
            "method": "truth",
            "mean_abs_spearman": mean_abs_spearman(truth),
            "error_pair_sd": pair_correlation_sd(truth - point),
        }
    )
    corr_rows.append(  # the point has no deviations from itself
        {
            "fold": fold,
            "seed": -1,
            "method": "point",
            "mean_abs_spearman": mean_abs_spearman(point),
            "error_pair_sd": np.nan,
        }
    )

    for seed in args.seeds:
        for K in args.samples:
            # --- SpaLSTF: the pooled tests
            one_by_one = {}
            for column, group, name in comparisons:
                table, seconds, peak = measured_call(
                    model.differential_expression, panel, column, group, n_samples=K, random_state=seed
                )
                resource("differential_expression", seconds, peak, K=K, seed=seed, comparison=name)
                table = table.reindex(held)
                one_by_one[(column, group)] = table
                tests.append(
                    test_frame(
                        {
                            "estimate": table["mean_difference"],
                            "statistic": table["statistic"],
                            "pvalue": table["pvalue"],
                            "df": table["df"],
                            "fraction_missing_information": table["fraction_missing_information"],
                            **pooled_spread(
                                table["mean_difference"], table["statistic"], table["fraction_missing_information"]
                            ),
                        },
                        held,
                        test="de",
                        comparison=name,
                    ).assign(method="spalstf", K=K, seed=seed, api_pvalue_adj=table["pvalue_adj"].to_numpy())
                )
            # every Leiden cluster against the rest from one set of draws: the same tables, one plan and one pass
            ranked, seconds, peak = measured_call(
                model.rank_genes_groups, panel, "leiden", clusters, n_samples=K, random_state=seed
            )
            resource("rank_genes_groups (all clusters)", seconds, peak, K=K, seed=seed, comparisons=len(clusters))
            for group, table in ranked.groupby("group"):
                alone = one_by_one[("leiden", group)]["pvalue"].to_numpy()
                gap = float(np.nanmax(np.abs(table.set_index("gene")["pvalue"].reindex(held).to_numpy() - alone)))
                checks["rank_genes_groups_vs_differential_expression_max_abs_pvalue"] = max(
                    checks.get("rank_genes_groups_vs_differential_expression_max_abs_pvalue", 0.0), gap
                )
            table, seconds, peak = measured_call(model.spatial_autocorr, panel, n_samples=K, random_state=seed)
            resource("spatial_autocorr", seconds, peak, K=K, seed=seed)
            table = table.reindex(held)
            tests.append(
                moran_frame(table, graph, held).assign(
                    method="spalstf", K=K, seed=seed, api_pvalue_adj=table["pvalue_adj"].to_numpy()
                )
            )

            # --- SpaLSTF's draws, the constant-width predictive
            ours, seconds, peak = measured_call(
                model.posterior_predictive_sample, panel, n_samples=K, random_state=seed
            )
            resource("posterior_predictive_sample", seconds, peak, K=K, seed=seed)
            if fold == 0 and seed == args.seeds[0] and K == args.samples[0]:
                _api_consistency(model, panel, ours, signal, graph, comparisons, groups, held, K, seed, checks)
            assert np.isfinite(ours[signal]).all() and np.isnan(ours[~signal]).all()
            ours = ours[signal].astype(np.float64)
            rng = np.random.default_rng([seed, fold, 7])
            uniforms = np.stack([rng.uniform(size=plan.point.shape) for _ in range(K)], axis=2)
            strata = np.zeros(uniforms.shape, dtype=np.int64)
            constant = np.maximum(
                plan.point[:, :, None]
                + scale[None, :, None] * score_quantiles(calibration.gene_table, strata, uniforms),
                0.0,
            )[signal]
            draw_sets = {"spalstf": ours, "constant": constant}

            # --- TISSUE: its t-test for each comparison, its imputations for Moran's I and draw quality
            if tissue_adata is not None:
                for column, group in (("half", "right"), ("leiden", None)):
                    np.random.seed(seed)
                    _, seconds, peak = measured_call(
                        tissue.downstream.multiple_imputation_testing,
                        tissue_adata,
                        TISSUE_KEY,
                        kept,
                        column,
                        test="ttest",
                        n_imputations=K,
                        group1=group,
                    )
                    resource(f"tissue: multiple_imputation_testing ({column})", seconds, peak, K=K, seed=seed)
                for _column, group, name in comparisons:
                    key = f"{TISSUE_PREFIX}_{group}_all"
                    tissue_p = tissue_adata.uns[f"{key}_pvalue"][held].to_numpy(np.float64).ravel()
                    tissue_t = tissue_adata.uns[f"{key}_tstat"][held].to_numpy(np.float64).ravel()
                    tissue_d = tissue_adata.uns[f"{key}_poolmean"][held].to_numpy(np.float64).ravel()
                    within = tissue_adata.uns[f"{key}_varw"][held].to_numpy(np.float64).ravel()
                    varb = tissue_adata.uns[f"{key}_varb"][held].to_numpy(np.float64).ravel()
                    between = (1 + 1 / K) * varb
                    with np.errstate(divide="ignore", invalid="ignore"):  # TISSUE's degrees of freedom
                        tissue_df = (K - 1) * (1 + K * within / ((K + 1) * varb)) ** 2
                    tests.append(
                        test_frame(
                            {
                                "estimate": tissue_d,
                                "statistic": tissue_t,
                                "pvalue": tissue_p,
                                "df": tissue_df,
                                "fraction_missing_information": between / (within + between),
                                "se": np.sqrt(within + between),
                                "imputation_var": between,
                            },
                            held,
                            test="de",
                            comparison=name,
                        ).assign(method="tissue", K=K, seed=seed)
                    )
                np.random.seed(seed)
                start = time.perf_counter()
                tissue_draws = np.stack(
                    [
                        tissue.downstream.sample_new_imputation_from_scores(
                            G, G_stdev, tissue_groups, tissue_scores, symmetric=False
                        )[:, held_columns]
                        for _ in range(K)
                    ],
                    axis=2,
                )
                resource("tissue: K imputations", time.perf_counter() - start, np.nan, K=K, seed=seed)
                n = tissue_draws.shape[0]
                morans = graph.moran(tissue_draws.transpose(0, 2, 1).reshape(n, K * len(held))).reshape(K, len(held))
                with np.errstate(divide="ignore", invalid="ignore"):
                    pooled = pooled_moran(morans, graph)
                tests.append(moran_frame(pooled, graph, held).assign(method="tissue", K=K, seed=seed))
                draw_sets["tissue"] = tissue_draws

            for method, draws in draw_sets.items():
                quality = draw_quality(draws, truth, np.random.default_rng([seed, fold, K, 11]))
                draws_rows.append({"fold": fold, "seed": seed, "K": K, "method": method, **quality})
                if K == args.samples[0]:  # draw 0 does not depend on K
                    moran_draw = graph.moran(draws[:, :, 0])
                    for j, gene in enumerate(held):
                        moran_rows.append(
                            {
                                "fold": fold,
                                "gene": gene,
                                "seed": seed,
                                "method": f"{method} draw 0",
                                "abs_delta_I": abs(moran_draw[j] - moran_truth[j]),
                                "I_truth": moran_truth[j],
                                "I": moran_draw[j],
                            }
                        )
                    corr_rows.append(
                        {
                            "fold": fold,
                            "seed": seed,
                            "method": f"{method} draw 0",
                            "mean_abs_spearman": mean_abs_spearman(draws[:, :, 0]),
                            "error_pair_sd": pair_correlation_sd(draws[:, :, 0] - point),
                        }
                    )
            log(f"fold {fold} seed {seed} K {K} done")

    table = pd.concat(tests, ignore_index=True)
    truth_columns = truth_table[["estimate", "statistic", "pvalue", "pvalue_adj"]].add_prefix("truth_")
    table = table.join(truth_columns, on=["test", "comparison", "gene"])
    table.insert(0, "fold", fold)
    info = {
        "fold": fold,
        "kept": len(kept),
        "held": len(held),
        "cells": int(panel.n_obs),
        "cells_with_signal": n_signal,
        "leiden_clusters": int(len(sizes)),
        "leiden_tested": [c for c in clusters],
        "half_median_x": float(median),
        "train_s": train_s,
        "noise": noise_record,
    }
    return {
        "tests": [table],
        "draws": draws_rows,
        "resources": resources,
        "moran": moran_rows,
        "corr": corr_rows,
        "folds": [info],
    }


def _api_consistency(model, panel, draws, signal, graph, comparisons, groups, held, K, seed, checks) -> None:
    """The pooled tests of the API equal the same pooling of ``posterior_predictive_sample``'s draws."""
    from spalstf.model._draws import pooled_difference, pooled_moran

    sub = draws[signal].astype(np.float64)
    column, group, _ = comparisons[0]
    in1 = groups[column][signal] == group
    mine = pooled_difference(sub[in1], sub[~in1])
    api = model.differential_expression(panel, column, group, n_samples=K, random_state=seed).reindex(held)
    checks["api_de_vs_draws_max_abs_pvalue"] = float(np.nanmax(np.abs(mine["pvalue"] - api["pvalue"].to_numpy())))
    checks["api_de_vs_draws_max_abs_difference"] = float(
        np.nanmax(np.abs(mine["mean_difference"] - api["mean_difference"].to_numpy()))
    )
    n = sub.shape[0]
    morans = graph.moran(sub.transpose(0, 2, 1).reshape(n, K * len(held))).reshape(K, len(held))
    pooled = pooled_moran(morans, graph)
    api = model.spatial_autocorr(panel, n_samples=K, random_state=seed).reindex(held)
    checks["api_moran_vs_draws_max_abs_I"] = float(np.nanmax(np.abs(pooled["I"] - api["I"].to_numpy())))
    checks["api_moran_vs_draws_max_abs_pvalue"] = float(np.nanmax(np.abs(pooled["pvalue"] - api["pvalue"].to_numpy())))
    # the first k draws of n_samples=K are those of n_samples=k
    first = model.posterior_predictive_sample(panel, n_samples=2, random_state=seed)
    checks["draws_prefix_max_abs"] = float(np.nanmax(np.abs(first - draws[:, :, :2])))


# ---------------------------------------------------------------------------------------------------- summaries
def summarise_tests(tests: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (method, test, K, seed), frame in tests.groupby(["method", "test", "K", "seed"], sort=False):
        row = {"method": method, "test": test, "K": K, "seed": seed, **test_metrics(frame)}
        if test == "moran":  # how well the (pooled) I orders the genes as their measured I does
            row["I_spearman_with_truth"] = float(stats.spearmanr(frame["estimate"], frame["truth_estimate"])[0])
        if test == "moran" and method != "single":
            row.update(widened_moran(frame))
        rows.append(row)
    return pd.DataFrame(rows)


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
        row["crps"] = frame["crps_sum"].sum() / entries
        row["crps_ratio_to_constant"] = row["crps"] / constant_crps[(K, seed)]
        rows.append(row)
    return pd.DataFrame(rows)


def spread(values: pd.Series, first) -> str:
    v = values.astype(float)
    if v.notna().sum() == 0:
        return "nan"
    base = v.loc[first] if first in v.index else v.iloc[0]
    if len(v) == 1:
        return f"{base:.3f}"
    return f"{base:.3f} [{np.nanmin(v):.3f}, {np.nanmax(v):.3f}]"


def seed_table(summary: pd.DataFrame, columns: dict[str, str], first) -> str:
    """One row per method and K of ``summary``: each metric's first-seed value and [min, max] over seeds.

    ``columns`` maps a header to its metric column; ``K`` is ``-`` for single imputation, and a ``calls`` column is
    printed as whole numbers.
    """
    rows = []
    for (method, K), frame in summary.groupby(["method", "K"], sort=False):
        frame = frame.set_index("seed")
        row = {"method": method, "K": "-" if method == "single" else int(K)}
        for header, column in columns.items():
            value = spread(frame[column], first)
            row[header] = value.replace(".000", "") if header == "calls" else value
        rows.append(row)
    return markdown_table(rows, list(rows[0]))


def tidy(frame: pd.DataFrame, kind: str, keys: list[str]) -> pd.DataFrame:
    long = frame.melt(id_vars=keys, var_name="metric", value_name="value")
    long.insert(0, "kind", kind)
    return long


# --------------------------------------------------------------------------------------------------------- main
def run_pair(name: str, args: argparse.Namespace) -> None:
    import spalstf as sp  # noqa: F401
    from spalstf.benchmark import gene_folds, load_pair

    _, mdata = load_pair(name, shared_data=args.shared_data)
    adata_st, rna = mdata["spatial"], mdata["rna"]
    if args.cells is not None:  # a smaller section: a random subset of the spatial cells (seeded by --random-state)
        if not 0 < args.cells <= adata_st.n_obs:
            raise SystemExit(f"--cells must be in [1, {adata_st.n_obs}] for {name}, got {args.cells}")
        rows = np.sort(np.random.default_rng(args.random_state).choice(adata_st.n_obs, args.cells, replace=False))
        adata_st = adata_st[rows].copy()
    genes = [g for g in adata_st.var_names if g in set(rna.var_names)]
    folds = gene_folds(genes, n_folds=args.n_folds, random_state=args.random_state)
    if args.folds is not None:
        selected = [f for f in args.folds if 0 <= f < len(folds)]
    else:
        selected = list(range(len(folds) if args.folds_to_run is None else min(args.folds_to_run, len(folds))))
    log(
        f"{name}: spatial {adata_st.shape[0]} x {adata_st.shape[1]}, reference {rna.shape[0]} x {rna.shape[1]}, "
        f"{len(genes)} shared genes, folds {selected} of {len(folds)}, model "
        f"{'closed form ' + str(CLOSED_FORM) if args.closed_form else 'default (trained)'}"
    )
    checks: dict[str, Any] = {}
    collected: dict[str, list] = {}
    start = time.perf_counter()
    for fold in selected:
        kept, held = folds[fold]
        result = run_fold(fold, kept, held, adata_st, rna, args, checks)
        for key, values in result.items():
            collected.setdefault(key, []).extend(values)
    wall = time.perf_counter() - start

    tests = pd.concat(collected["tests"], ignore_index=True)
    tests.insert(0, "pair", name)
    tests["call"] = tests["pvalue_adj"] < ALPHA
    tests["truth_call"] = tests["truth_pvalue_adj"] < ALPHA
    tests["sign"] = np.sign(tests["statistic"])
    tests["truth_sign"] = np.sign(tests["truth_statistic"])
    draws = pd.DataFrame(collected["draws"])
    draws.insert(0, "pair", name)
    resources = pd.DataFrame(collected["resources"])
    resources.insert(0, "pair", name)
    n_cells = int(adata_st.n_obs)
    resources["cells"] = n_cells
    resources["time_s_per_1e4_cells"] = resources["time_s"] * 1e4 / n_cells
    resources["peak_mb_per_1e4_cells"] = resources["peak_mb"] * 1e4 / n_cells
    frames = {
        "tests": tests,
        "draws": draws,
        "resources": resources,
        "moran_genes": pd.DataFrame(collected["moran"]),
        "corr": pd.DataFrame(collected["corr"]),
    }
    info = {
        "pair": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": f"closed form {CLOSED_FORM}, skip_training" if args.closed_form else "default settings, trained",
        "n_folds": args.n_folds,
        "split_random_state": args.random_state,
        "cells": int(adata_st.n_obs),
        "cells_subsampled": args.cells is not None,
        "folds_run": len(selected),
        "samples": args.samples,
        "seeds": args.seeds,
        "alpha": ALPHA,
        "levels": LEVELS,
        "min_cluster_cells": MIN_CLUSTER_CELLS,
        "tissue": None
        if args.skip_tissue
        else {
            "graph": TISSUE_GRAPH,
            "conformalize": TISSUE_GROUPING,
            "test": "multiple_imputation_testing(test='ttest', n_imputations=K), numpy seeded per call",
            "moran": "sample_new_imputation_from_scores (asymmetric, zero scores kept, top 20% trimmed) x K, "
            "pooled_moran",
            "panel_predictions": f"inner {N_INNER_FOLDS}-fold split of the kept genes, closed-form SpaLSTF per "
            "inner fold, calibrated, mapped to the full panel's library",
        },
        "folds": collected["folds"],
        "checks": checks,
        "wall_time_s": wall,
        "machine": machine_info(args.threads),
    }
    finish(name, frames, info, args)


def merge_pair(name: str, args: argparse.Namespace) -> None:
    """Pool the outputs of runs over disjoint folds (``--folds``) written in the ``--merge`` folders."""
    frames: dict[str, list[pd.DataFrame]] = {}
    infos = []
    for folder in args.merge:
        for key in ("tests", "draws", "resources", "moran_genes", "corr"):
            frames.setdefault(key, []).append(pd.read_csv(folder / f"{name}_{key}.csv"))
        infos.append(json.loads((folder / f"{name}_info.json").read_text()))
    merged = {key: pd.concat(values, ignore_index=True) for key, values in frames.items()}
    folds = [f["fold"] for i in infos for f in i["folds"]]
    if len(set(folds)) < len(folds):
        raise SystemExit(f"--merge: folds {folds} overlap")
    info = dict(infos[0])
    info["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    info["merged_from"] = [str(f) for f in args.merge]
    info["folds"] = sorted((f for i in infos for f in i["folds"]), key=lambda f: f["fold"])
    info["folds_run"] = len(folds)
    info["wall_time_s"] = sum(i["wall_time_s"] for i in infos)
    checks: dict[str, Any] = {}
    for i in infos:
        for key, value in i["checks"].items():
            if isinstance(value, list):
                checks.setdefault(key, []).extend(value)
            else:
                checks[key] = max(checks.get(key, value), value)
    info["checks"] = checks
    args.samples, args.seeds = info["samples"], info["seeds"]
    finish(name, merged, info, args)


def finish(name: str, frames: dict[str, pd.DataFrame], info: dict[str, Any], args: argparse.Namespace) -> None:
    """Summaries, files and printed tables of one pair."""
    test_summary = summarise_tests(frames["tests"])
    draw_summary = summarise_draws(frames["draws"])
    smooth = (
        frames["moran_genes"].groupby(["method", "seed"])["abs_delta_I"].median().reset_index(name="median_abs_delta_I")
    )
    corr_columns = ["mean_abs_spearman", "error_pair_sd"]
    corr_summary = frames["corr"].groupby(["method", "seed"])[corr_columns].mean().reset_index()
    truth_corr = float(corr_summary.loc[corr_summary["method"] == "truth", "mean_abs_spearman"].iloc[0])
    corr_summary["gap_to_truth"] = corr_summary["mean_abs_spearman"] - truth_corr
    summary = pd.concat(
        [
            tidy(test_summary, "tests", ["method", "test", "K", "seed"]),
            tidy(draw_summary, "draws", ["method", "K", "seed"]),
            tidy(smooth, "oversmoothing", ["method", "seed"]),
            tidy(corr_summary, "gene_correlation", ["method", "seed"]),
        ],
        ignore_index=True,
    )
    summary.insert(0, "pair", name)

    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out / name
    for key, frame in frames.items():
        frame.to_csv(f"{prefix}_{key}.csv", index=False)
    summary.to_csv(f"{prefix}_summary.csv", index=False)
    Path(f"{prefix}_info.json").write_text(json.dumps(info, indent=2, default=str))
    print_report(name, info, test_summary, draw_summary, smooth, corr_summary, frames["resources"], args)
    log(f"wrote {prefix}_tests.csv, _summary.csv, _draws.csv, _resources.csv, _moran_genes.csv, _corr.csv, _info.json")


def print_report(name, info, test_summary, draw_summary, smooth, corr_summary, resources, args) -> None:
    first = args.seeds[0]
    cells = info["folds"][0]["cells"]
    print(
        f"\n## {name}: {info['model']}; {info['folds_run']} fold(s), {sum(f['held'] for f in info['folds'])} held-out "
        f"genes, {cells} cells; K {args.samples}, seeds {args.seeds} (first seed, [min, max])\n{machine()}\n"
    )
    print("### Tests at BH FDR 0.05 against the same test on the measured genes (pooled over folds and comparisons)\n")
    rows = []
    for (test, method, K), frame in test_summary.groupby(["test", "method", "K"], sort=False):
        frame = frame.set_index("seed")
        base = frame.loc[first] if first in frame.index else frame.iloc[0]
        rows.append(
            {
                "test": test,
                "method": method,
                "K": "-" if method == "single" else int(K),
                "tests": int(base["tests"]),
                "true calls": int(base["true_calls"]),
                "calls": spread(frame["calls"], first).replace(".000", ""),
                "found": spread(frame["found"], first).replace(".000", ""),
                "FDR": spread(frame["FDR"], first),
                "power": spread(frame["power"], first),
                "95% CI covers truth's estimate": spread(frame["ci95_covers_truth"], first),
                "error^2 / imputation var": spread(frame["error2_over_imputation_var"], first),
            }
        )
    rows.sort(key=lambda r: (r["test"], ["single", "tissue", "spalstf"].index(r["method"]), str(r["K"])))
    print(markdown_table(rows, list(rows[0])))

    if "I_spearman_with_truth" in test_summary:
        print(
            "\n### Ranking spatially variable genes: Spearman of each method's (pooled) Moran's I with the measured I\n"
        )
        spearman = test_summary.dropna(subset=["I_spearman_with_truth"])
        print(seed_table(spearman, {"Spearman": "I_spearman_with_truth"}, first))
    widened = test_summary.dropna(subset=["widened_tau"]) if "widened_tau" in test_summary else test_summary.iloc[:0]
    if len(widened):
        print(
            "\n### Moran's I with its variance widened by the spread the pooled interval misses (oracle tau from the "
            "held-out measurements: what honesty about each gene's I would cost)\n"
        )
        columns = {
            "tau": "widened_tau",
            "95% CI covers truth": "widened_ci95_covers_truth",
            "calls": "widened_calls",
            "FDR": "widened_FDR",
            "power": "widened_power",
        }
        print(seed_table(widened, columns, first))

    print("\n### Draws of the held-out genes: calibration (max |coverage - level| over 0.5..0.95) and CRPS\n")
    columns = {
        "cal. err (order stats vs level)": "calibration_error_order",
        "cal. err (order stats vs (u-l)/(K+1))": "calibration_error_order_vs_exchangeable",
        "cal. err (PIT)": "calibration_error_pit",
        "PIT cov. 0.9": "pit_coverage_0.9",
        "PIT cov. 0.5": "pit_coverage_0.5",
        "CRPS": "crps",
        "CRPS / constant": "crps_ratio_to_constant",
    }
    print(seed_table(draw_summary, columns, first))

    print("\n### Over-smoothing and gene-gene structure\n")
    rows = []
    corr_index = corr_summary.set_index(["method", "seed"])
    for method, frame in smooth.groupby("method", sort=False):
        frame = frame.set_index("seed")
        corr = corr_index.loc[method]
        rows.append(
            {
                "values": method,
                "median |I - I(truth)|": spread(frame["median_abs_delta_I"], first),
                "mean |Spearman| among held-out genes": spread(corr["mean_abs_spearman"], first),
                "gap to truth": spread(corr["gap_to_truth"], first),
                "sd of pair corr. of (values - point)": spread(corr["error_pair_sd"], first),
            }
        )
    truth_row = corr_index.loc["truth"]
    rows.insert(
        0,
        {
            "values": "truth",
            "median |I - I(truth)|": "0",
            "mean |Spearman| among held-out genes": spread(truth_row["mean_abs_spearman"], -1),
            "gap to truth": "0",
            "sd of pair corr. of (values - point)": spread(truth_row["error_pair_sd"], -1),
        },
    )
    print(markdown_table(rows, list(rows[0])))
    noise = pd.DataFrame([{"fold": f["fold"], **f["noise"]} for f in info["folds"] if "noise" in f])
    if len(noise):
        print("\n### The draws' noise settings, fitted on each fold's kept genes (median [min, max] over folds)\n")
        columns = [c for c in noise.columns if c not in ("fold", "cluster_shares")]
        rows = [
            {
                "setting": c,
                "value": f"{noise[c].median():.3f} [{noise[c].min():.3f}, {noise[c].max():.3f}]",
            }
            for c in columns
        ]
        print(markdown_table(rows, ["setting", "value"]))

    print(
        "\n### Time and peak memory (RSS increase) per call, median (max for memory) over folds and seeds; "
        f"{cells} cells\n"
    )
    rows = []
    resources = resources.copy()
    resources["K"] = resources.get("K", pd.Series(np.nan, index=resources.index))
    for (call, K), frame in resources.groupby(["call", resources["K"].fillna(0)], sort=False):
        rows.append(
            {
                "call": call,
                "K": "-" if K == 0 else int(K),
                "calls": len(frame),
                "time s": float(frame["time_s"].median()),
                "time s / 10^4 cells": float(frame["time_s_per_1e4_cells"].median()),
                "peak MiB": float(frame["peak_mb"].max()),
                "peak MiB / 10^4 cells": float(frame["peak_mb_per_1e4_cells"].max()),
            }
        )
    print(markdown_table(rows, list(rows[0])))
    checks = {
        k: (np.max(v) if isinstance(v, list) and v and not isinstance(v[0], bool) else v)
        for k, v in info["checks"].items()
    }
    print(f"\nchecks: {json.dumps(checks, default=str)}")
    print(f"wall time {info['wall_time_s']:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="drosophila_embryo,osmfish", help="comma-separated pairs")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/downstream"))
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data",
        help="folder with local copies of pinned pair files (default: ../shared/data beside the repository)",
    )
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--random-state", type=int, default=0, help="seed of the gene folds")
    parser.add_argument("--folds-to-run", type=int, default=None, help="run only the first N folds")
    parser.add_argument(
        "--folds", default=None, help="comma-separated fold numbers to run (e.g. to split a pair over processes)"
    )
    parser.add_argument(
        "--merge",
        default=None,
        help="comma-separated output folders of runs over disjoint --folds: pool them into --out (nothing is run)",
    )
    parser.add_argument(
        "--cells", type=int, default=None, help="test on a random subset of this many spatial cells (a smaller section)"
    )
    parser.add_argument("--samples", default="10,20,50", help="comma-separated numbers of draws K")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the draws")
    parser.add_argument("--closed-form", action="store_true", help="ridge + neighbour blend, no training (quick)")
    parser.add_argument("--skip-tissue", action="store_true", help="leave TISSUE out")
    parser.add_argument("--threads", type=int, default=1, help="torch, BLAS and scanpy threads (default 1)")
    args = parser.parse_args(argv)
    args.samples = [int(x) for x in args.samples.split(",") if x.strip()]
    args.seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    args.folds = [int(x) for x in args.folds.split(",") if x.strip()] if args.folds else None
    args.merge = [Path(x) for x in args.merge.split(",") if x.strip()] if args.merge else None
    if min(args.samples) < 2:
        raise SystemExit("--samples: every K must be at least 2 (the pooled tests need two draws)")

    silence_libraries()
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    limit_threads(args.threads)
    import scanpy

    scanpy.settings.n_jobs = args.threads
    scanpy.settings.verbosity = 0
    print(f"python benchmarks/downstream.py {' '.join(sys.argv[1:] if argv is None else argv)}", flush=True)
    for name in [p.strip() for p in args.pairs.split(",") if p.strip()]:
        if args.merge:
            merge_pair(name, args)
        else:
            run_pair(name, args)


if __name__ == "__main__":
    main()
