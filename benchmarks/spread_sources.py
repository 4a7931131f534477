"""What could give the predictive spread of an imputed gene more than one width per gene: CRPS of the candidates.

The issue's target for the draws asks their CRPS to be lower than that of a per-gene constant-width predictive from
the same panel calibration: the per-cell spread must buy something. The shipped spread (strata of the predicted raw
measurement: library and predicted level) buys 5% on osmFISH and nothing on Drosophila. This script scores other
sources of spread on the same folds, each fitted like the shipped one on the calibration's inner-fold scores of the
panel genes only (never a held-out gene), except the last, which reads the held-out measurement (a ceiling):

``level`` (shipped)
    5 strata of the predicted raw measurement (:meth:`IntervalCalibration.strata`).
``one_width``
    the pooled scores, one width per gene (``gene_table``): the reference of the ratios.
``clusters_k``
    k strata: the cell's k-means cluster (k = 4, 8, 16) of the measured genes' conditions of the calibration cells.
``level_x_cluster_scale``
    the level strata on scores divided by their cluster's (k = 8) median absolute score relative to all scores;
    widths multiplied back by it (locally weighted conformal by cluster).
``level_x_gradient``
    the level strata crossed with 3 strata (tertiles over the calibration's entries) of the point's local gradient:
    the root mean square difference between the cell's point and its 6 nearest spatial neighbours', over the gene's
    spread (where a boundary between expression domains is placed a little wrong, the errors are largest).
``reference_distance``
    4 strata of the cell's mean cosine distance to its nearest reference cells (quartiles over the calibration cells).
``gene_width_reliability``
    the level strata on scores divided by a per-gene width, ``exp(a + b * reliability)`` fitted by least squares of
    the panel genes' log RMS score on their reliability (the expected SPCC of ``gene_reliability``, from the
    truth-free statistic the calibration keeps), normalised to the panel's median.
``gene_width_oracle``
    the same with each held-out gene's own RMS score (reads the truth; what a perfect per-gene width would give).

For each pair and fold of the benchmark's 5-fold gene split (seed 0), a closed-form model (``blend=("ridge",
"neighbours")``, no training) is built and calibrated on the kept genes; on the held-out genes (cells with signal,
platform space ``log1p(x / L * 1e4)``) the CRPS of ``max(0, p + s * w * Q(u))`` is computed on a grid of 100
probabilities (``Q`` the stratum's score quantile function, ``w`` the cell's or gene's factor), with the coverage and
interval (Winkler) score of the central 90% interval. Reported per pair: the CRPS pooled over the folds' entries and
its ratio to ``one_width`` (each fold's ratio, min and max), coverage and interval score.

Usage::

    python benchmarks/spread_sources.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, markdown_table

from spalstf.benchmark import limit_threads

GRID = (np.arange(100) + 0.5) / 100
LEVEL = 0.9
CLUSTERS = (4, 8, 16)


def score_quality(point, scale, table, strata, factor, truth) -> dict[str, float]:
    """Sums over entries: CRPS on the probability grid, 90% coverage and interval score."""
    from spalstf.model._draws import score_quantiles

    crps = np.zeros(point.shape)
    for u in GRID:
        predicted = np.maximum(point + scale * factor * score_quantiles(table, strata, np.full(point.shape, u)), 0.0)
        gap = truth - predicted
        crps += np.maximum(u * gap, (u - 1) * gap)
    lo_q, hi_q = table.quantiles(LEVEL)
    strata = np.broadcast_to(strata, point.shape)
    lower = np.maximum(point - lo_q[strata] * scale * factor, 0.0)
    upper = np.maximum(point + hi_q[strata] * scale * factor, lower)
    alpha = 1.0 - LEVEL
    winkler = upper - lower + 2 / alpha * ((lower - truth) * (truth < lower) + (truth - upper) * (truth > upper))
    return {
        "entries": float(truth.size),
        "crps": float((2 * crps / len(GRID)).sum()),
        "covered": float(((lower <= truth) & (truth <= upper)).sum()),
        "winkler": float(winkler.sum()),
    }


def local_gradient(point: np.ndarray, coordinates: np.ndarray, k: int = 6) -> np.ndarray:
    """Root mean square difference between each cell's ``point`` (cells x genes) and its ``k`` nearest neighbours'."""
    from scipy.spatial import cKDTree

    _, neighbours = cKDTree(coordinates).query(coordinates, k + 1)
    out = np.empty(point.shape)
    for j in range(point.shape[1]):
        gap = point[neighbours[:, 1:], j] - point[:, None, j]
        out[:, j] = np.sqrt((gap * gap).mean(axis=1))
    return out


def rms(scores: np.ndarray) -> np.ndarray:
    return np.sqrt(np.nanmean(scores**2, axis=0))


def fold_candidates(model, panel, adata_st, held: list[str]) -> dict[str, dict[str, float]]:
    """The candidates' sums on one fold's held-out genes."""
    from sklearn.cluster import KMeans

    from spalstf.model import _calibration as cal
    from spalstf.model._defaults import N_CALIBRATION_FOLDS, N_CALIBRATION_REPEATS, default_calibration_cells
    from spalstf.model._spatial_input import SpatialInput

    calibration = model.calibrate_intervals(panel)  # the shipped calibration (defaults)
    # its inner folds again, to pair each panel score with its cell and gene
    spatial = SpatialInput.prepare(panel, None)
    n_measured = len(model.measured_genes)
    n_folds = min(N_CALIBRATION_FOLDS, n_measured)
    n_repeats = 1 if n_folds == n_measured else N_CALIBRATION_REPEATS
    S, S_rows = model._calibration_cells(spatial, default_calibration_cells(n_measured, n_repeats))
    R = model._reference_sample(list(model.gene_plan.measured))
    folds = model._calibration_folds(S, R, n_folds=n_folds, n_repeats=n_repeats, random_state=0)
    column = cal.RELIABILITY_STATISTICS.index(calibration.details["reliability_statistic"])
    S_coordinates = np.asarray(panel.obsm["spatial"], np.float64)[S_rows]
    scores, keys, cells, reliability, gene_rms, per_gene, gradient_cal = [], [], [], [], [], [], []
    for f in folds:
        point, fold_scores = cal.fold_errors(f, calibration.shift, calibration.slope)
        rows = np.arange(len(S)) if f.cells is None else np.flatnonzero(f.cells)
        gradient_cal.append(local_gradient(point, S_coordinates[rows]) / f.platform_scale)
        scores.append(fold_scores)
        keys.append(cal.measurement_key(point, f.library, calibration.target_sum))
        cells.append(np.broadcast_to(rows[:, None], fold_scores.shape))
        per_gene.append((calibration.reliability(f.agreement[:, column]), rms(fold_scores)))
        reliability.append(np.broadcast_to(per_gene[-1][0], fold_scores.shape))
        gene_rms.append(np.broadcast_to(per_gene[-1][1], fold_scores.shape))
    ok = np.concatenate([np.isfinite(s).ravel() for s in scores])
    scores, keys, cells, reliability, gene_rms, gradient_cal = (
        np.concatenate([x.ravel() for x in xs])[ok] for xs in (scores, keys, cells, reliability, gene_rms, gradient_cal)
    )
    level_strata = calibration.strata_of_keys(keys)
    n_level = len(calibration.edges) + 1

    # the held-out genes
    chunks = list(model._st_condition_chunks(spatial, 4096))
    condition = np.concatenate([c[2] for c in chunks])
    library = np.concatenate([c[4] for c in chunks])
    signal = library > 0
    module = model.module
    with torch.no_grad():
        estimate = module.posterior_mean(torch.from_numpy(condition)).numpy()
        _, distance = module.find_neighbors(torch.from_numpy(condition))
        _, distance_cal = module.find_neighbors(torch.from_numpy(model._st_conditions(S)).float())
    point, scale = calibration.point(estimate, module.target_mean.numpy(), module.target_std.numpy())
    X = adata_st[:, held].X
    truth = cal.platform_values(np.asarray(X.toarray() if hasattr(X, "toarray") else X), library, 1e4)
    strata = calibration.strata(point, library)[signal]
    point, truth, condition = point[signal], truth[signal], condition[signal].astype(np.float64)
    scale = scale[None, :]
    one = np.ones((1, len(held)))

    out = {
        "level (shipped)": score_quality(point, scale, calibration.table, strata, one, truth),
        "one_width": score_quality(point, scale, calibration.gene_table, np.zeros(point.shape, int), one, truth),
    }
    conditions_cal = model._st_conditions(S).astype(np.float64)
    for k in CLUSTERS:
        km = KMeans(n_clusters=k, n_init=3, random_state=0).fit(conditions_cal)
        label_cal, label = km.labels_[cells], km.predict(condition)
        table = cal.ScoreTable.fit(scores, label_cal, k)
        out[f"clusters_{k}"] = score_quality(point, scale, table, label[:, None], one, truth)
        if k == 8:
            typical = np.median(np.abs(scores))
            ratio = np.array([np.median(np.abs(scores[label_cal == c])) for c in range(k)]) / typical
            table = cal.ScoreTable.fit(scores / ratio[label_cal], level_strata, n_level)
            out["level_x_cluster_scale"] = score_quality(point, scale, table, strata, ratio[label][:, None], truth)
    gradient = local_gradient(point, np.asarray(adata_st.obsm["spatial"], np.float64)[signal]) / scale
    edges = np.quantile(gradient_cal, [1 / 3, 2 / 3])
    table = cal.ScoreTable.fit(scores, level_strata * 3 + np.searchsorted(edges, gradient_cal), n_level * 3)
    out["level_x_gradient"] = score_quality(
        point, scale, table, strata * 3 + np.searchsorted(edges, gradient), one, truth
    )
    mean_cal, mean = distance_cal.mean(1).numpy(), distance.mean(1).numpy()[signal]
    edges = np.quantile(mean_cal, [0.25, 0.5, 0.75])
    table = cal.ScoreTable.fit(scores, np.searchsorted(edges, mean_cal)[cells], 4)
    out["reference_distance"] = score_quality(point, scale, table, np.searchsorted(edges, mean)[:, None], one, truth)
    # one width per gene from its reliability: a line of the panel genes' log RMS score on their reliability
    per_gene = np.concatenate([np.stack(pair) for pair in per_gene], axis=1)  # (reliability, RMS) per gene and fold
    slope, intercept = np.polyfit(per_gene[0], np.log(per_gene[1]), 1)
    typical = np.exp(np.median(intercept + slope * per_gene[0]))
    width_cal = np.exp(intercept + slope * reliability) / typical
    held_reliability = np.array([calibration.gene_reliability[g] for g in held])
    table = cal.ScoreTable.fit(scores / width_cal, level_strata, n_level)
    width = np.exp(intercept + slope * held_reliability) / typical
    out["gene_width_reliability"] = score_quality(point, scale, table, strata, width[None, :], truth)
    typical = np.median(per_gene[1])
    table = cal.ScoreTable.fit(scores / gene_rms * typical, level_strata, n_level)
    width = rms((truth - point) / scale) / typical
    out["gene_width_oracle"] = score_quality(point, scale, table, strata, width[None, :], truth)
    return out


def measure(name: str, shared: Path) -> list[dict]:
    import spalstf as sp
    from spalstf.benchmark import gene_folds, load_pair

    _, mdata = load_pair(name, shared_data=shared)
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    genes = [g for g in adata_st.var_names if g in set(adata_sc.var_names)]
    sums: dict[str, list[dict]] = {}
    for kept, held in gene_folds(genes, n_folds=5, random_state=0):
        panel = adata_st[:, kept].copy()
        reference = adata_sc.copy()  # registration writes into the AnnData it is given
        sp.model.SpaLSTF.setup_anndata(reference)
        model = sp.model.SpaLSTF(reference, panel, genes=held, blend=("ridge", "neighbours"))
        model.skip_training("benchmark: closed form")
        for candidate, values in fold_candidates(model, panel, adata_st, held).items():
            sums.setdefault(candidate, []).append(values)
    reference_crps = [f["crps"] for f in sums["one_width"]]
    rows = []
    for candidate, folds in sums.items():
        entries = sum(f["entries"] for f in folds)
        ratios = [f["crps"] / r for f, r in zip(folds, reference_crps, strict=True)]
        rows.append(
            {
                "pair": name,
                "spread": candidate,
                "CRPS": sum(f["crps"] for f in folds) / entries,
                "CRPS / one width": sum(f["crps"] for f in folds) / sum(reference_crps),
                "fold ratios min": min(ratios),
                "fold ratios max": max(ratios),
                "90% coverage": sum(f["covered"] for f in folds) / entries,
                "interval score": sum(f["winkler"] for f in folds) / entries,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="drosophila_embryo,osmfish")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    limit_threads(args.threads)
    rows = [row for name in args.pairs.split(",") for row in measure(name, args.shared_data)]
    print(f"python benchmarks/spread_sources.py {' '.join(sys.argv[1:])}\n{machine()}\n")
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
