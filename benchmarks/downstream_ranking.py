"""How well each method's p-values rank the true calls: power at a matched empirical FDR, from downstream.py's tests.

``benchmarks/downstream.py`` calls at Benjamini-Hochberg 0.05, where methods end at different false-discovery rates,
so their power is not compared at the same error. This script reads its ``<out>/<pair>_tests.csv`` and, for every
method, K and seed, lowers the p-value threshold from the largest to the smallest until the calls' empirical FDR
(false: the measurement does not call the test, or calls it with the other sign) is at most ``--fdr``; it reports the
most power reached so (true calls found with their sign / true calls) and the threshold, for each test; tests are
ordered by p-value and then by ``|statistic|`` (p-values underflow to exactly 0 for many tests, TISSUE's above all), and
tests tied on both are called together. A method whose
p-values order the tests well reaches high power at a low FDR, whatever its own BH calls were.

Usage::

    python benchmarks/downstream.py --closed-form --out results/benchmarks/downstream
    python benchmarks/downstream_ranking.py --out results/benchmarks/downstream --fdr 0.10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from _measure import markdown_table


def power_at_fdr(frame: pd.DataFrame, fdr: float) -> tuple[float, float, int]:
    """Most power over p-value thresholds whose calls have empirical FDR <= ``fdr``: (power, threshold, calls)."""
    truth = frame["truth_call"].to_numpy(bool)
    right = truth & (frame["sign"].to_numpy() == frame["truth_sign"].to_numpy())
    pvalues = frame["pvalue"].to_numpy()
    strength = np.nan_to_num(np.abs(frame["statistic"].to_numpy(np.float64)), nan=0.0)
    order = np.lexsort((-strength, pvalues))  # p-value, then |statistic| where p-values underflow to the same value
    found = np.cumsum(right[order])
    calls = np.arange(1, len(order) + 1)
    false = calls - found
    # a threshold calls every test tied at it: only the last position of each run of equal keys is a threshold
    key_p, key_s = pvalues[order], strength[order]
    last_of_tie = np.append((key_p[1:] != key_p[:-1]) | (key_s[1:] != key_s[:-1]), True)
    ok = (false / calls <= fdr) & last_of_tie
    n_true = max(int(truth.sum()), 1)
    if not ok.any():
        return 0.0, 0.0, 0
    best = int(np.argmax(np.where(ok, found, -1)))
    return float(found[best] / n_true), float(frame["pvalue"].to_numpy()[order][best]), int(calls[best])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="downstream.py's output folder")
    parser.add_argument("--pairs", default="drosophila_embryo,osmfish")
    parser.add_argument("--fdr", type=float, default=0.10)
    args = parser.parse_args()
    for pair in args.pairs.split(","):
        tests = pd.read_csv(args.out / f"{pair}_tests.csv")
        rows = []
        for (test, method, K, seed), frame in tests.groupby(["test", "method", "K", "seed"], sort=True):
            power, threshold, calls = power_at_fdr(frame, args.fdr)
            rows.append(
                {
                    "test": test,
                    "method": method,
                    "K": int(K),
                    "seed": int(seed),
                    f"power at FDR <= {args.fdr:g}": round(power, 3),
                    "calls": calls,
                    "p threshold": f"{threshold:.2g}",
                }
            )
        print(f"\n## {pair}: power at a matched empirical FDR (all folds and comparisons pooled)\n")
        print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
