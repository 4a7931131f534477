"""Figures of the uncertainty benchmark for the docs: calibration curve and reliability plot of each pair.

Reads ``<results>/<pair>_intervals.csv`` and ``_reliability.csv`` written by
``benchmarks/cross_validate.py --interval 0.9`` (seed 0 when several seeds ran) and writes
``docs/_static/uncertainty_<pair>.png``, and prints the figures of the docs table that the benchmark does not print:
the Spearman correlation between reliability and real SPCC within each fold, and the median real SPCC of the genes
whose reliability is above and below its median, and the mean absolute gap between reliability and real SPCC.

Usage::

    python benchmarks/cross_validate.py --methods spalstf,ridge --interval 0.9 --seeds 0,1,2 --threads 1 \\
        --out results/uq
    python benchmarks/cross_validate.py --pair osmfish --methods spalstf,ridge --interval 0.9 --seeds 0,1,2 \\
        --threads 1 --out results/uq
    python scripts/make_uncertainty_figures.py --results results/uq
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

import spalstf as sp

STATIC = Path(__file__).resolve().parents[1] / "docs" / "_static"
TITLES = {"drosophila_embryo": "Drosophila embryo", "osmfish": "osmFISH"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="the --out folder of benchmarks/cross_validate.py")
    parser.add_argument("--pairs", default="drosophila_embryo,osmfish")
    args = parser.parse_args()
    for pair in args.pairs.split(","):
        intervals = pd.read_csv(args.results / f"{pair}_intervals.csv")
        reliability = pd.read_csv(args.results / f"{pair}_reliability.csv")
        if "seed" in intervals:
            intervals = intervals[intervals["seed"] == intervals["seed"].min()]
            reliability = reliability[reliability["seed"] == reliability["seed"].min()]
        rho = reliability.groupby("fold")[["reliability", "SPCC"]].apply(
            lambda d: d["reliability"].corr(d["SPCC"], method="spearman")
        )
        above = reliability["reliability"] >= reliability["reliability"].median()
        print(
            f"{pair}: Spearman(reliability, SPCC) per fold {rho.round(3).tolist()}, mean {rho.mean():.3f}; median "
            f"real SPCC all {reliability['SPCC'].median():.3f}, reliability above its median "
            f"{reliability.loc[above, 'SPCC'].median():.3f}, below {reliability.loc[~above, 'SPCC'].median():.3f}; "
            f"mean |reliability - SPCC| {(reliability['reliability'] - reliability['SPCC']).abs().mean():.3f}"
        )
        fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 4.8), layout="constrained")
        sp.pl.calibration(intervals, ax=left, show=False)
        sp.pl.reliability(reliability, ax=right, show=False)
        fig.suptitle(f"{TITLES.get(pair, pair)}: held-out genes of the 5-fold gene cross-validation")
        path = STATIC / f"uncertainty_{pair}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
