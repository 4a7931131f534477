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
global seed): the first seed's value and [min, max] over seeds. What each method's standard errors allow, for
differential expression (an oracle, :func:`_downstream_stats.de_ceiling`): the power of its tests centred on the
measured difference, each test's standard error and degrees of freedom kept, and the median over the true calls of
the measured difference over that standard error.

Draw quality on the held-out genes, for SpaLSTF's draws (``posterior_predictive_sample``), TISSUE's imputations and
the per-gene constant-width predictive of the same calibration (``interval_calibration_.gene_table``, one stratum,
iid uniforms through :func:`spalstf.model._draws.score_quantiles`, clipped at 0 as the draws are): coverage of the
central interval of the K draws at levels 0.5, 0.55, ..., 0.95 from order statistics (draws number
``max(1, floor((K+1)(1-a)/2))`` and ``min(K, ceil((K+1)(1+a)/2))``, closed) and from the randomised PIT;
calibration error = max over levels of ``|coverage - level|`` (for order statistics also against the coverage
``(upper - lower) / (K + 1)`` that an exchangeable truth has, which is below the level for small K and high levels);
fair ensemble CRPS (mean over entries) and its ratio to the constant-width predictive's; over-smoothing: median over
held-out genes of ``|I(draw 0) - I(truth)|`` and ``|I(point) - I(truth)|``; mean absolute Spearman correlation
between held-out genes (per fold, then mean over folds) of the truth, the point estimate and draw 0. Variation
between regions in every direction: the cells with signal cut into halves along each principal axis of their
coordinates, the truth's halves difference minus the point's, squared, over the draws' mean squared deviation from
the point's (summed over genes and folds; 1 where the draws vary between such halves as much as the imputation errs
there, :func:`_downstream_stats.halves_by_axis`; the cuts are made once per fold).

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
import logging
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _downstream_outputs import finish, log, merge_pair
from _downstream_stats import (
    ALPHA,
    LEVELS,
    de_one,
    draw_quality,
    halves_by_axis,
    mean_abs_spearman,
    moran_frame,
    moran_one,
    pair_correlation_sd,
    pooled_spread,
    principal_halves,
    test_frame,
)

from spalstf.benchmark import PeakMemory, limit_threads, silence_libraries

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
@dataclass
class Records:
    """What one fold adds to the pair's tables."""

    fold: int
    tests: list[pd.DataFrame] = field(default_factory=list)
    draws: list[dict] = field(default_factory=list)
    resources: list[dict] = field(default_factory=list)
    moran: list[dict] = field(default_factory=list)  # per-gene |delta I| (over-smoothing)
    corr: list[dict] = field(default_factory=list)

    def resource(self, call: str, seconds: float, peak_mb: float, **extra: Any) -> None:
        self.resources.append({"fold": self.fold, "call": call, "time_s": seconds, "peak_mb": peak_mb, **extra})

    def moran_gaps(self, method: str, seed: int, genes: list[str], moran: np.ndarray, moran_truth: np.ndarray) -> None:
        for j, gene in enumerate(genes):
            self.moran.append(
                {
                    "fold": self.fold,
                    "gene": gene,
                    "seed": seed,
                    "method": method,
                    "abs_delta_I": abs(moran[j] - moran_truth[j]),
                    "I_truth": moran_truth[j],
                    "I": moran[j],
                }
            )


@dataclass
class Fold:
    """One fold's panel, groups, graph, model and values of the held-out genes (cells with signal)."""

    number: int
    kept: list[str]
    held: list[str]
    panel: Any
    raw_kept: np.ndarray
    library: np.ndarray
    signal: np.ndarray
    coordinates: np.ndarray
    groups: dict[str, np.ndarray]
    comparisons: list[tuple[str, str, str]]
    clusters: list[str]
    W_signal: sparse.csr_matrix
    graph: Any
    model: Any
    calibration: Any
    plan: Any
    point: np.ndarray
    truth: np.ndarray
    axis_halves: list[np.ndarray]
    info: dict[str, Any]


@dataclass
class Tissue:
    """TISSUE's calibration around our point estimate, ready to draw imputations and test."""

    adata: Any
    scores: Any
    stdev: Any
    G: Any
    groups: Any


def prepare_fold(fold: int, kept: list[str], held: list[str], adata_st, rna, args, records: Records, checks) -> Fold:
    """Groups from the measured panel, squidpy's graph, the model with its calibration and point estimate."""
    import squidpy as sq

    from spalstf.model._calibration import platform_values
    from spalstf.model._defaults import IMPUTE_BATCH_SIZE
    from spalstf.model._draws import MoranGraph
    from spalstf.model._spatial_input import SpatialInput

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

    # the model, its calibration and point estimate
    model, train_s = build_model(rna, panel, held, args.closed_form)
    records.resource("train" if not args.closed_form else "build (closed form)", train_s, np.nan)
    calibration, seconds, peak = measured_call(model.calibrate_intervals, panel)
    records.resource("calibrate_intervals", seconds, peak)
    imputation, seconds, peak = measured_call(model.impute, panel, interval=0.9, progress_bar=False)
    records.resource("impute(interval=0.9)", seconds, peak)
    point_all = imputation.mean[held].to_numpy(np.float64)
    truth = platform_values(dense(adata_st[:, held].X), library, float(model.target_sum))[signal]
    assert np.isfinite(truth).all() and np.isfinite(point_all[signal]).all()

    # the plan's point equals impute's, and its scale gives the constant-width predictive
    plan, _ = model._draw_plan(SpatialInput.prepare(panel, None), None, 0, IMPUTE_BATCH_SIZE, "spatial")
    checks.setdefault("plan_point_vs_impute_max_abs", []).append(float(np.max(np.abs(plan.point - point_all))))
    checks.setdefault("plan_empty_equals_library_zero", []).append(bool((plan.empty == ~signal).all()))
    info = {
        "fold": fold,
        "kept": len(kept),
        "held": len(held),
        "cells": int(panel.n_obs),
        "cells_with_signal": n_signal,
        "leiden_clusters": int(len(sizes)),
        "leiden_tested": list(clusters),
        "half_median_x": float(median),
        "train_s": train_s,
        "noise": noise_record(model.interval_calibration_.details["draws"]),
    }
    return Fold(
        number=fold,
        kept=kept,
        held=held,
        panel=panel,
        raw_kept=raw_kept,
        library=library,
        signal=signal,
        coordinates=coordinates,
        groups={"half": panel.obs["half"].to_numpy().astype(str), "leiden": labels.astype(str)},
        comparisons=comparisons,
        clusters=clusters,
        W_signal=W_signal,
        graph=MoranGraph.from_connectivities(W_signal),
        model=model,
        calibration=calibration,
        plan=plan,
        point=point_all[signal],
        truth=truth,
        axis_halves=principal_halves(coordinates[signal]),
        info=info,
    )


def noise_record(noise: dict[str, Any]) -> dict[str, Any]:
    """The draws' noise settings fitted on the kept genes, as numbers for the info file."""
    record = {key: float(value) for key, value in noise.items() if np.isscalar(value) and key != "n_neighbors"}
    record["cluster_shares"] = [float(level["share"]) for level in noise["clusters"]]
    levels = noise["smoothness_levels"]  # the errors' Moran's I by expression level, where it predicts on the panel
    record["smoothness_bins"] = float(len(levels["shift"]))
    record["smoothness_shift_lowest"], record["smoothness_shift_highest"] = levels["shift"][0], levels["shift"][-1]
    record["smoothness_cv_error_bins"], record["smoothness_cv_error_median"] = levels["cv_error"]
    regional = noise["regional"]  # how much more the panel genes' errors vary between regions than the law's fields
    shares = np.asarray(regional["shares"], dtype=np.float64)
    record["regional_law_r2"], record["regional_error_r2"] = regional["law_r2"], regional["error_r2"]
    record["regional_regions"], record["regional_width"] = float(regional["n_regions"]), regional["width"]
    record["regional_share_median"] = float(np.median(shares)) if len(shares) else 0.0
    record["regional_share_mean"] = float(shares.mean()) if len(shares) else 0.0
    # how far the regional part's direction learnt from the panel errors was shrunk toward independent weights (1:
    # wholly; NaN: a calibration without a learnt direction)
    record["regional_shrinkage"] = float(regional.get("shrinkage", np.nan))
    return record


def reference_tests(f: Fold, records: Records, checks: dict[str, Any]) -> pd.DataFrame:
    """The truth's tests (returned, indexed by test, comparison and gene) and single imputation's (recorded)."""
    import anndata as ad
    import squidpy as sq

    truth_frames, single_frames = [], []
    for column, group, name in f.comparisons:
        in1 = f.groups[column][f.signal] == group
        in2 = ~in1
        truth_frames.append(test_frame(de_one(f.truth, in1, in2), f.held, test="de", comparison=name))
        single_frames.append(test_frame(de_one(f.point, in1, in2), f.held, test="de", comparison=name))
    truth_frames.append(test_frame(moran_one(f.graph, f.truth), f.held, test="moran", comparison="moran"))
    single_frames.append(test_frame(moran_one(f.graph, f.point), f.held, test="moran", comparison="moran"))
    truth_table = pd.concat(truth_frames, ignore_index=True).set_index(["test", "comparison", "gene"])
    records.tests.append(pd.concat(single_frames, ignore_index=True).assign(method="single", K=1, seed=-1))

    # once: our Moran's I of the truth equals squidpy's
    truth_adata = ad.AnnData(f.truth.astype(np.float64), obs=pd.DataFrame(index=f.panel.obs_names[f.signal]))
    truth_adata.var_names = f.held
    truth_adata.obsp["spatial_connectivities"] = f.W_signal
    squidpy_table = sq.gr.spatial_autocorr(
        truth_adata, mode="moran", genes=f.held, n_perms=None, transformation=True, copy=True
    ).reindex(f.held)
    ours = truth_table.loc[("moran", "moran")].reindex(f.held)
    finite = np.isfinite(ours["estimate"].to_numpy())
    np.testing.assert_allclose(ours["estimate"].to_numpy()[finite], squidpy_table["I"].to_numpy()[finite], atol=1e-8)
    checks.setdefault("moran_vs_squidpy_max_abs_I", []).append(
        float(np.nanmax(np.abs(ours["estimate"].to_numpy() - squidpy_table["I"].to_numpy())))
    )
    checks.setdefault("moran_vs_squidpy_max_abs_pval_norm", []).append(
        float(np.nanmax(np.abs(ours["pvalue"].to_numpy() - squidpy_table["pval_norm"].to_numpy())))
    )
    return truth_table


def prepare_tissue(f: Fold, adata_st, rna, records: Records, checks: dict[str, Any]) -> Tissue:
    """TISSUE's cross-validated predictions of the kept genes, its graph and its calibration."""
    import anndata as ad
    import tissue.main

    from spalstf.model._calibration import platform_values

    (predictions, seconds, peak) = measured_call(panel_predictions, adata_st, rna, f.kept, f.library)
    records.resource("tissue: panel predictions (inner CV)", seconds, peak)
    adata = ad.AnnData(
        platform_values(f.raw_kept, f.library, float(f.model.target_sum))[f.signal],
        obs=pd.DataFrame(
            {"half": f.groups["half"][f.signal], "leiden": f.groups["leiden"][f.signal]},
            index=f.panel.obs_names[f.signal],
        ),
    )
    adata.var_names = f.kept
    adata.obsm["spatial"] = f.coordinates[f.signal]
    frame = pd.concat(  # the held genes come first in the predictions
        [pd.DataFrame(f.point, index=adata.obs_names, columns=f.held), predictions.loc[adata.obs_names, f.kept]],
        axis=1,
    )
    adata.obsm[TISSUE_KEY] = frame
    checks.setdefault("tissue_panel_spcc_median", []).append(
        float(np.nanmedian([stats.spearmanr(frame[g].to_numpy(), adata[:, g].X.ravel())[0] for g in f.kept]))
    )

    def conformalize():
        tissue.main.build_spatial_graph(adata, **TISSUE_GRAPH)
        tissue.main.conformalize_spatial_uncertainty(adata, TISSUE_KEY, calib_genes=f.kept, **TISSUE_GROUPING)

    _, seconds, peak = measured_call(conformalize)
    records.resource("tissue: graph + conformalize", seconds, peak)
    scores = tissue.main.build_calibration_scores(
        adata, TISSUE_KEY, f.kept, symmetric=False, include_zero_scores=True, trim_quantiles=[None, 0.8]
    )
    _, _, stdev, G, groups = tissue.main.get_spatial_uncertainty_scores_from_metadata(adata, TISSUE_KEY)
    return Tissue(adata=adata, scores=scores, stdev=stdev, G=G, groups=groups)


def our_tests(f: Fold, K: int, seed: int, args, records: Records, checks: dict[str, Any]) -> dict[str, np.ndarray]:
    """SpaLSTF's pooled tests (recorded); its draws and the constant-width predictive's (returned)."""
    from spalstf.model._draws import score_quantiles

    model, panel, held = f.model, f.panel, f.held
    one_by_one = {}
    for column, group, name in f.comparisons:
        table, seconds, peak = measured_call(
            model.differential_expression, panel, column, group, n_samples=K, random_state=seed
        )
        records.resource("differential_expression", seconds, peak, K=K, seed=seed, comparison=name)
        table = table.reindex(held)
        one_by_one[(column, group)] = table
        records.tests.append(
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
        model.rank_genes_groups, panel, "leiden", f.clusters, n_samples=K, random_state=seed
    )
    records.resource("rank_genes_groups (all clusters)", seconds, peak, K=K, seed=seed, comparisons=len(f.clusters))
    for group, table in ranked.groupby("group"):
        alone = one_by_one[("leiden", group)]["pvalue"].to_numpy()
        gap = float(np.nanmax(np.abs(table.set_index("gene")["pvalue"].reindex(held).to_numpy() - alone)))
        checks["rank_genes_groups_vs_differential_expression_max_abs_pvalue"] = max(
            checks.get("rank_genes_groups_vs_differential_expression_max_abs_pvalue", 0.0), gap
        )
    table, seconds, peak = measured_call(model.spatial_autocorr, panel, n_samples=K, random_state=seed)
    records.resource("spatial_autocorr", seconds, peak, K=K, seed=seed)
    table = table.reindex(held)
    records.tests.append(
        moran_frame(table, f.graph, held).assign(
            method="spalstf", K=K, seed=seed, api_pvalue_adj=table["pvalue_adj"].to_numpy()
        )
    )

    # the draws, and the constant-width predictive of the same calibration
    ours, seconds, peak = measured_call(model.posterior_predictive_sample, panel, n_samples=K, random_state=seed)
    records.resource("posterior_predictive_sample", seconds, peak, K=K, seed=seed)
    if f.number == 0 and seed == args.seeds[0] and K == args.samples[0]:
        _api_consistency(model, panel, ours, f.signal, f.graph, f.comparisons, f.groups, held, K, seed, checks)
    assert np.isfinite(ours[f.signal]).all() and np.isnan(ours[~f.signal]).all()
    rng = np.random.default_rng([seed, f.number, 7])
    uniforms = np.stack([rng.uniform(size=f.plan.point.shape) for _ in range(K)], axis=2)
    strata = np.zeros(uniforms.shape, dtype=np.int64)
    scale = np.asarray(f.plan.scale, np.float64)
    constant = np.maximum(
        f.plan.point[:, :, None] + scale[None, :, None] * score_quantiles(f.calibration.gene_table, strata, uniforms),
        0.0,
    )[f.signal]
    return {"spalstf": ours[f.signal].astype(np.float64), "constant": constant}


def tissue_tests(f: Fold, t: Tissue, K: int, seed: int, records: Records) -> np.ndarray:
    """TISSUE's t-test for each comparison and its pooled Moran's I (recorded); its K imputations (returned)."""
    import tissue.downstream

    from spalstf.model._draws import pooled_moran

    held = f.held
    for column, group in (("half", "right"), ("leiden", None)):
        np.random.seed(seed)
        _, seconds, peak = measured_call(
            tissue.downstream.multiple_imputation_testing,
            t.adata,
            TISSUE_KEY,
            f.kept,
            column,
            test="ttest",
            n_imputations=K,
            group1=group,
        )
        records.resource(f"tissue: multiple_imputation_testing ({column})", seconds, peak, K=K, seed=seed)
    for _column, group, name in f.comparisons:
        key = f"{TISSUE_PREFIX}_{group}_all"
        tissue_p = t.adata.uns[f"{key}_pvalue"][held].to_numpy(np.float64).ravel()
        tissue_t = t.adata.uns[f"{key}_tstat"][held].to_numpy(np.float64).ravel()
        tissue_d = t.adata.uns[f"{key}_poolmean"][held].to_numpy(np.float64).ravel()
        within = t.adata.uns[f"{key}_varw"][held].to_numpy(np.float64).ravel()
        varb = t.adata.uns[f"{key}_varb"][held].to_numpy(np.float64).ravel()
        between = (1 + 1 / K) * varb
        with np.errstate(divide="ignore", invalid="ignore"):  # TISSUE's degrees of freedom
            tissue_df = (K - 1) * (1 + K * within / ((K + 1) * varb)) ** 2
        records.tests.append(
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
    held_columns = np.arange(len(held))  # held genes come first in the predictions
    draws = np.stack(
        [
            tissue.downstream.sample_new_imputation_from_scores(t.G, t.stdev, t.groups, t.scores, symmetric=False)[
                :, held_columns
            ]
            for _ in range(K)
        ],
        axis=2,
    )
    records.resource("tissue: K imputations", time.perf_counter() - start, np.nan, K=K, seed=seed)
    n = draws.shape[0]
    morans = f.graph.moran(draws.transpose(0, 2, 1).reshape(n, K * len(held))).reshape(K, len(held))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = pooled_moran(morans, f.graph)
    records.tests.append(moran_frame(pooled, f.graph, held).assign(method="tissue", K=K, seed=seed))
    return draws


def run_fold(
    fold: int,
    kept: list[str],
    held: list[str],
    adata_st,
    rna,
    args: argparse.Namespace,
    checks: dict[str, Any],
) -> dict[str, list]:
    records = Records(fold)
    f = prepare_fold(fold, kept, held, adata_st, rna, args, records, checks)
    truth_table = reference_tests(f, records, checks)
    tissue_state = None if args.skip_tissue else prepare_tissue(f, adata_st, rna, records, checks)

    # over-smoothing and correlation of the truth and the point
    moran_truth = f.graph.moran(f.truth)
    records.moran_gaps("point", -1, held, f.graph.moran(f.point), moran_truth)
    records.corr.append(
        {
            "fold": fold,
            "seed": -1,
            "method": "truth",
            "mean_abs_spearman": mean_abs_spearman(f.truth),
            "error_pair_sd": pair_correlation_sd(f.truth - f.point),
        }
    )
    records.corr.append(  # the point has no deviations from itself
        {
            "fold": fold,
            "seed": -1,
            "method": "point",
            "mean_abs_spearman": mean_abs_spearman(f.point),
            "error_pair_sd": np.nan,
        }
    )

    for seed in args.seeds:
        for K in args.samples:
            draw_sets = our_tests(f, K, seed, args, records, checks)
            if tissue_state is not None:
                draw_sets["tissue"] = tissue_tests(f, tissue_state, K, seed, records)
            for method, draws in draw_sets.items():
                quality = draw_quality(draws, f.truth, np.random.default_rng([seed, fold, K, 11]))
                quality.update(halves_by_axis(draws, f.truth, f.point, f.axis_halves))
                records.draws.append({"fold": fold, "seed": seed, "K": K, "method": method, **quality})
                if K == args.samples[0]:  # draw 0 does not depend on K
                    records.moran_gaps(f"{method} draw 0", seed, held, f.graph.moran(draws[:, :, 0]), moran_truth)
                    records.corr.append(
                        {
                            "fold": fold,
                            "seed": seed,
                            "method": f"{method} draw 0",
                            "mean_abs_spearman": mean_abs_spearman(draws[:, :, 0]),
                            "error_pair_sd": pair_correlation_sd(draws[:, :, 0] - f.point),
                        }
                    )
            log(f"fold {fold} seed {seed} K {K} done")

    table = pd.concat(records.tests, ignore_index=True)
    truth_columns = truth_table[["estimate", "statistic", "pvalue", "pvalue_adj"]].add_prefix("truth_")
    table = table.join(truth_columns, on=["test", "comparison", "gene"])
    table.insert(0, "fold", fold)
    return {
        "tests": [table],
        "draws": records.draws,
        "resources": records.resources,
        "moran": records.moran,
        "corr": records.corr,
        "folds": [f.info],
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
