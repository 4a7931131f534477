"""Are the diffusion model's own draws a calibrated multiple imputation? Its draws against the calibrated draws.

For each pair and fold (gene folds of ``sp.benchmark.gene_folds``, 5 folds, seed 0), a default SpaLSTF is trained on
the kept genes and calibrated on them (``calibrate_intervals``; nothing sees a held-out gene). Four predictive
distributions of the held-out genes, each ``K`` draws in the platform space ``log1p(x / L * 1e4)``, are scored
against the measurement:

- ``diffusion``: the reverse diffusion's draws (DDIM, the model's default steps), mapped into the platform space by
  the calibration's point map, as ``SpaLSTF.impute(n_samples=K, interval=...)`` does;
- ``diffusion_qmap``: the same draws' residuals from the posterior mean, ranked per gene and stratum and mapped onto
  the calibrated score quantiles (the diffusion's dependence structure with calibrated marginals);
- ``calibrated``: ``SpaLSTF.posterior_predictive_sample`` (calibrated marginals, spatially smooth noise);
- ``constant``: one width per gene (the calibration's pooled scores, independent uniforms): the CRPS baseline.

Scores: coverage of the central interval between order statistics of the K draws at levels 0.5-0.95 and its largest
gap to the level (calibration error; with few draws the order statistics make it coarse), the same by the randomised
PIT (exact for calibrated draws whatever K, ties at 0 spread uniformly); the fair ensemble CRPS and its ratio to
``constant``'s; the median over genes of |Moran's I(draw 0) - Moran's I(measurement)| (squidpy's 6-nearest-neighbour
graph); the mean absolute Spearman correlation between held-out genes of draw 0 against the measurement's.

Usage::

    python benchmarks/diffusion_draws.py --threads 1                      # fold 0 of both pairs, K = 8
    python benchmarks/diffusion_draws.py --pairs osmfish --folds 0,1,2,3,4 --samples 8 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _measure import machine, markdown_table
from scipy import stats

LEVELS = np.round(np.arange(0.5, 0.951, 0.05), 2)


def order_statistic_coverage(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Coverage at each of :data:`LEVELS` of the closed interval between order statistics of the draws (last axis)."""
    K = draws.shape[-1]
    s = np.sort(draws, axis=-1)
    out = []
    for level in LEVELS:
        lo = max(int(np.floor((K + 1) * (1 - level) / 2)), 1) - 1
        hi = min(int(np.ceil((K + 1) * (1 + level) / 2)), K) - 1
        out.append(np.mean((truth >= s[..., lo]) & (truth <= s[..., hi])))
    return np.array(out)


def pit_coverage(draws: np.ndarray, truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Coverage at each of :data:`LEVELS` by the randomised PIT of the truth among the draws (last axis).

    Ties (a measured 0 among draws at 0) get a uniform position within the tied draws, so that a calibrated predictive
    with point masses still has uniform PIT (the standard treatment of discrete predictive distributions); perfect
    draws give coverage equal to the level whatever K.
    """
    K = draws.shape[-1]
    below = (draws < truth[..., None]).sum(-1)
    ties = (draws == truth[..., None]).sum(-1)
    u = (below + np.random.default_rng(seed).uniform(size=truth.shape) * (ties + 1)) / (K + 1)
    return np.array([np.mean(np.abs(u - 0.5) <= level / 2) for level in LEVELS])


def fair_crps(draws: np.ndarray, truth: np.ndarray) -> float:
    """Mean fair (unbiased) ensemble CRPS over entries; draws on the last axis."""
    K = draws.shape[-1]
    term1 = np.abs(draws - truth[..., None]).mean(-1)
    s = np.sort(draws, axis=-1)
    i = np.arange(1, K + 1)
    pairs = 2 * ((2 * i - K - 1) * s).sum(-1) / (K * (K - 1))
    return float(np.mean(term1 - 0.5 * pairs))


def mean_abs_spearman(X: np.ndarray) -> float:
    R = np.atleast_2d(stats.spearmanr(X).statistic)
    return float(np.nanmean(np.abs(R[np.triu_indices_from(R, k=1)])))


def measure(name: str, fold: int, n_samples: int, shared: Path) -> list[dict]:
    import squidpy as sq

    import spalstf as sp
    from spalstf.benchmark import gene_folds, load_pair, silence_libraries
    from spalstf.model import _draws
    from spalstf.model._calibration import platform_values
    from spalstf.model._defaults import SAMPLING_STEPS
    from spalstf.model._noise import cell_keys
    from spalstf.model._spatial_input import SpatialInput

    _, mdata = load_pair(name, shared_data=shared)
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    genes = [g for g in adata_st.var_names if g in set(adata_sc.var_names)]
    kept, held = gene_folds(genes, n_folds=5, random_state=0)[fold]
    panel = adata_st[:, kept].copy()
    reference = adata_sc.copy()
    sp.model.SpaLSTF.setup_anndata(reference)
    torch.manual_seed(0)
    model = sp.model.SpaLSTF(reference, panel, genes=held)
    start = time.perf_counter()
    silence_libraries()
    model.train(enable_progress_bar=False, accelerator="cpu")
    train_s = time.perf_counter() - start
    calibration = model.calibrate_intervals(panel)

    spatial = SpatialInput.prepare(panel, None)
    module = model.module
    target_mean, target_std = module.target_mean.numpy(), module.target_std.numpy()
    chunks, estimates, libraries = [], [], []
    start = time.perf_counter()
    with torch.no_grad():
        for a, b, values, _, library in model._st_condition_chunks(spatial, 4096):
            cond = torch.from_numpy(values)
            keys = cell_keys(spatial.obs_names[a:b], 0)
            draws = module.sample(cond, keys, n_samples=n_samples, n_sampling_steps=SAMPLING_STEPS).numpy()
            chunks.append(draws)
            estimates.append(module.posterior_mean(cond).numpy())
            libraries.append(library)
    diffusion_s = time.perf_counter() - start
    raw = np.concatenate(chunks, axis=1)  # (K, cells, genes), standardised units
    estimate, library = np.concatenate(estimates), np.concatenate(libraries)
    point, scale = calibration.point(estimate, target_mean, target_std)
    diffusion = np.stack([calibration.point(d, target_mean, target_std)[0] for d in raw], axis=-1)

    # diffusion residuals ranked per gene and stratum, mapped onto the calibrated quantiles
    strata = calibration.strata(point, library)
    residual = raw - estimate[None]
    u = np.empty_like(residual)
    for j in range(residual.shape[2]):
        for s in np.unique(strata[:, j]):
            rows = strata[:, j] == s
            block = residual[:, rows, j]
            u[:, rows, j] = (stats.rankdata(block.ravel()).reshape(block.shape) - 0.5) / block.size
    qmap = np.stack(
        [np.maximum(point + scale * _draws.score_quantiles(calibration.table, strata, u[k]), 0) for k in range(len(u))],
        axis=-1,
    )

    start = time.perf_counter()
    calibrated = model.posterior_predictive_sample(panel, n_samples=n_samples).astype(np.float64)
    calibrated_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    constant = np.stack(
        [
            np.maximum(
                point
                + scale
                * _draws.score_quantiles(calibration.gene_table, np.zeros_like(strata), rng.uniform(size=point.shape)),
                0,
            )
            for _ in range(n_samples)
        ],
        axis=-1,
    )

    X = adata_st[:, held].X
    truth = platform_values(np.asarray(X.toarray() if hasattr(X, "toarray") else X), library, 1e4)
    ok = library > 0
    graph_data = panel[ok].copy()
    sq.gr.spatial_neighbors(graph_data, coord_type="generic", n_neighs=6)
    graph = _draws.MoranGraph.from_connectivities(graph_data.obsp["spatial_connectivities"])
    truth_ok = truth[ok]
    moran_truth = graph.moran(truth_ok)
    rows = []
    base = None
    for method, draws in [
        ("constant", constant),
        ("diffusion", diffusion),
        ("diffusion_qmap", qmap),
        ("calibrated", calibrated),
    ]:
        d = draws[ok]
        coverage = order_statistic_coverage(d, truth_ok)
        pit = pit_coverage(d, truth_ok)
        crps = fair_crps(d, truth_ok)
        base = crps if method == "constant" else base
        rows.append(
            {
                "pair": name,
                "fold": fold,
                "K": n_samples,
                "method": method,
                "coverage_0.5": round(float(coverage[0]), 3),
                "coverage_0.9": round(float(coverage[8]), 3),
                "calibration_error": round(float(np.max(np.abs(coverage - LEVELS))), 3),
                "pit_0.5": round(float(pit[0]), 3),
                "pit_0.9": round(float(pit[8]), 3),
                "pit_calibration_error": round(float(np.max(np.abs(pit - LEVELS))), 3),
                "crps": round(crps, 4),
                "crps_ratio": round(crps / base, 3),
                "moran_gap": round(float(np.nanmedian(np.abs(graph.moran(d[..., 0]) - moran_truth))), 3),
                "correlation": round(mean_abs_spearman(d[..., 0]), 3),
            }
        )
    rows.append(
        {
            "pair": name,
            "fold": fold,
            "K": n_samples,
            "method": "measurement / point",
            "moran_gap": round(float(np.nanmedian(np.abs(graph.moran(point[ok]) - moran_truth))), 3),
            "correlation": f"{mean_abs_spearman(truth_ok):.3f} / {mean_abs_spearman(point[ok]):.3f}",
            "crps": f"train {train_s:.0f} s, diffusion {diffusion_s:.0f} s, calibrated {calibrated_s:.1f} s",
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="drosophila_embryo,osmfish")
    parser.add_argument("--folds", default="0", help="comma-separated fold numbers (0-4)")
    parser.add_argument("--samples", type=int, default=8, help="draws per cell and gene (K)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    from spalstf.benchmark import limit_threads

    limit_threads(args.threads)
    warnings.filterwarnings("ignore")
    rows = []
    for name in args.pairs.split(","):
        for fold in map(int, args.folds.split(",")):
            rows += measure(name, fold, args.samples, args.shared_data)
    print(f"python benchmarks/diffusion_draws.py {' '.join(sys.argv[1:])}\n{machine()}\n")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    print(markdown_table([{c: r.get(c, "") for c in columns} for r in rows], columns))
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
