"""Draws on more cells than the calibration sampled: is the noise as spatially smooth as the errors at full density?

``calibrate_intervals`` samples at most 10,000 spatial cells (``max_cells``). The panel errors' Moran's I measured on
that sample's 6-nearest-neighbour graph is lower than on the graph of all cells of a larger section, whose neighbours
are closer. ``posterior_predictive_sample`` carries it to the drawn cells' graph with the errors' correlogram
(:func:`spalstf.model._draws.moran_target`). This script imitates a large section on the real pairs by calibrating on
a fraction of their cells (``max_cells = n / f``) and drawing on all of them; for each pair, fold of the 5-fold gene
split (seed 0, as ``benchmarks/downstream.py``; closed-form model) and fraction it reports:

- ``sample I``: the panel errors' median Moran's I on the sample's graph (the target before the correlogram);
- ``carried I``: the target on the graph of all cells;
- ``full I``: the panel errors' median Moran's I measured on all cells (the calibration with every cell): the value to
  reach;
- ``draw I`` and ``truth I``: on all cells, the median over held-out genes of the Moran's I of ``draw 0 - point`` and of
  ``measured - point`` (the draws' noise and the real error of the imputed genes).

With ``--synthetic N ...`` it also carries a known field: 20 genes' errors on a 200 x 200 jittered grid (40,000
cells), each a Gaussian blur (2 cells wide) of white noise plus a white part (standard deviation 0.5), sampled at N
cells (evenly spaced pseudo-random cells), against the errors' Moran's I on all 40,000 cells: how far the carry
holds when the sample is a small fraction of a section.

Usage::

    python benchmarks/draw_scale.py --fractions 1 2 3 --threads 1
    python benchmarks/draw_scale.py --pairs none --synthetic 10000 4000 1000 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _measure import machine, markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="drosophila_embryo,osmfish")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1, 2, 3], help="calibrate on n / f cells")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data",
        help="folder with local copies of pinned pair files (default: ../shared/data beside the repository)",
    )
    parser.add_argument("--synthetic", type=int, nargs="*", default=[], help="sample sizes of the synthetic field")
    args = parser.parse_args()
    if 1 not in args.fractions:
        parser.error("--fractions must include 1: the calibration on every cell gives the errors' full-density value")
    warnings.filterwarnings("ignore")
    import spalstf as sp
    from spalstf.benchmark import gene_folds, limit_threads, load_pair
    from spalstf.model._calibration import platform_values
    from spalstf.model._draws import MoranGraph, knn_graph, moran_target

    limit_threads(args.threads)
    print(f"python benchmarks/draw_scale.py {' '.join(sys.argv[1:])}\n{machine()}, {args.threads} thread(s)\n")
    if args.synthetic:
        synthetic(args.synthetic)
    if args.pairs == "none":
        return
    rows = []
    for pair in args.pairs.split(","):
        _, data = load_pair(pair, shared_data=args.shared_data)
        st, rna = data["spatial"], data["rna"]
        for fold, (kept, held) in enumerate(gene_folds(list(st.var_names), 5, 0)):
            panel = st[:, kept].copy()
            library = np.asarray(panel.X.sum(axis=1)).ravel()
            signal = library > 0
            panel = panel[signal].copy()
            coordinates = np.asarray(panel.obsm["spatial"], dtype=np.float64)
            truth = platform_values(np.asarray(st[signal][:, held].X, dtype=np.float64), library[signal], 1e4)
            graph = MoranGraph.from_connectivities(knn_graph(coordinates))
            reference = rna.copy()
            sp.model.SpaLSTF.setup_anndata(reference)
            model = sp.model.SpaLSTF(reference, panel, genes=held, blend=("ridge", "neighbours"))
            model.skip_training("benchmark")
            full_moran = None
            for fraction in sorted(args.fractions):
                n_cells = int(round(panel.n_obs / fraction))
                calibration = model.calibrate_intervals(panel, max_cells=n_cells)
                statistics = calibration.details["draws"]
                if full_moran is None:
                    full_moran = statistics["error_moran"] if fraction == 1 else float("nan")
                point = model.impute(panel, interval=0.9, progress_bar=False).mean[held].to_numpy(np.float64)
                draw = model.posterior_predictive_sample(panel, n_samples=1, random_state=0)[:, :, 0]
                rows.append(
                    {
                        "pair": pair,
                        "fold": fold,
                        "fraction": fraction,
                        "calibration cells": calibration.n_cells,
                        "sample I": statistics["error_moran"],
                        "carried I": moran_target(statistics, coordinates),
                        "full I": full_moran,
                        "draw I": float(np.nanmedian(graph.moran(draw - point))),
                        "truth I": float(np.nanmedian(graph.moran(truth - point))),
                    }
                )
    table = pd.DataFrame(rows)
    table["|sample - full|"] = (table["sample I"] - table["full I"]).abs()
    table["|carried - full|"] = (table["carried I"] - table["full I"]).abs()
    summary = table.groupby(["pair", "fraction"], sort=False).agg(
        {
            "calibration cells": "median",
            "sample I": "median",
            "carried I": "median",
            "full I": "median",
            "|sample - full|": "max",
            "|carried - full|": "max",
            "draw I": "median",
            "truth I": "median",
        }
    )
    summary = summary.reset_index().round(3)
    print("Medians over the 5 folds; the two |...| columns are the largest over folds.\n")
    print(markdown_table(summary.to_dict("records"), list(summary.columns)))


def synthetic(sizes: list[int], side: int = 200, n_genes: int = 20) -> None:
    """Carry the Moran's I of a known error field from samples of ``sizes`` cells to all ``side ** 2`` cells."""
    from scipy import ndimage

    from spalstf.model._draws import error_structure, moran_target

    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.arange(side), np.arange(side))
    coordinates = np.column_stack([x.ravel(), y.ravel()]).astype(float) + rng.uniform(-0.3, 0.3, (side * side, 2))
    fields = [ndimage.gaussian_filter(rng.standard_normal((side, side)), 2.0).ravel() for _ in range(n_genes)]
    errors = np.column_stack([f / f.std() + 0.5 * rng.standard_normal(side * side) for f in fields])
    full = error_structure([errors], coordinates)["error_moran"]
    order = np.argsort(rng.random(side * side))
    rows = []
    for n in sorted(sizes, reverse=True):
        sample = np.sort(order[:n])
        statistics = error_structure([errors[sample]], coordinates[sample])
        rows.append(
            {
                "sampled cells": n,
                "fraction": round(n / side**2, 3),
                "sample I": round(statistics["error_moran"], 3),
                "carried I": round(moran_target(statistics, coordinates), 3),
                "full I": round(full, 3),
            }
        )
    print(f"Synthetic field, {side * side} cells, {n_genes} genes:\n")
    print(markdown_table(rows, list(rows[0])))
    print()


if __name__ == "__main__":
    main()
