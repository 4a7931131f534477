"""Time and memory of the draws' noise field with many cells (synthetic 2-D coordinates, one thread).

Builds the 6-nearest-neighbour graph, the smoothing series (:class:`spalstf.model._draws.NoiseField`), fits the
smoothing to a target Moran's I of 0.8 and forms the operator, at each size, in one process; then fits and forms one
more (target 0.6: what each expression level of the draws costs, the probes being kept from the first fit); prints the
seconds of each step, the operator's entries and the process's peak resident memory after each size.

Usage::

    python benchmarks/noise_field_scale.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
from _measure import machine, markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    from spalstf.benchmark import limit_threads
    from spalstf.model import _draws

    limit_threads(1)
    rows = []
    for n in args.sizes:
        coords = np.random.default_rng(0).uniform(0, np.sqrt(n), size=(n, 2))
        times = {}
        start = time.perf_counter()
        W = _draws.knn_graph(coords)
        times["graph s"] = time.perf_counter() - start
        start = time.perf_counter()
        field = _draws.NoiseField(W)
        times["series s"] = time.perf_counter() - start
        start = time.perf_counter()
        smoothing = field.fit_smoothing(0.8)
        times["fit s"] = time.perf_counter() - start
        start = time.perf_counter()
        operator = field.operator(smoothing)
        times["operator s"] = time.perf_counter() - start
        start = time.perf_counter()
        field.operator(field.fit_smoothing(0.6))
        times["one more level s"] = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
        rows.append(
            {
                "cells": n,
                **{k: round(v, 2) for k, v in times.items()},
                "total s": round(sum(times.values()), 1),
                "operator entries": operator.nnz,
                "process peak GB": round(peak, 2),
            }
        )
    print(f"python benchmarks/noise_field_scale.py {' '.join(sys.argv[1:])}\n{machine()}\n")
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
