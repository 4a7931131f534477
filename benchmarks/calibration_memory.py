"""Time and peak memory of the interval calibration as the panel grows (synthetic data, fresh process per run).

The calibration holds every inner fold's predictions (cells x measured genes x splits) until its pooled line is
fitted. For each panel size in ``--measured``, a synthetic pair (Poisson counts of 10 cell types; ``--cells`` spatial
cells, 2,000 reference cells, 100 genes to impute) is built and a closed-form SpaLSTF model
(``blend=("ridge", "neighbours")``; the calibration's copies are closed-form whatever the model) is calibrated in a
fresh process, once with the default number of cells (:func:`~spalstf.model._defaults.default_calibration_cells`:
at most 3,000,000 entries) and once with ``max_cells=10000``, the fixed sample of earlier versions. Reported: the
cells used, the calibration's wall time and its peak resident memory above the memory before it.

Usage::

    python benchmarks/calibration_memory.py --measured 100,1000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import GB, PeakMemory, machine, markdown_table, run_worker


def worker(args) -> None:
    """One calibration in this (fresh) process; prints a JSON dict."""
    import spalstf as sp

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n_genes = args.n_measured + 100
    profiles = rng.gamma(0.6, 2.0, (10, n_genes))
    names = [f"g{i}" for i in range(n_genes)]
    reference = ad.AnnData(
        rng.poisson(profiles[rng.integers(0, 10, 2000)]).astype(np.float32), var=pd.DataFrame(index=names)
    )
    st = ad.AnnData(
        rng.poisson(profiles[rng.integers(0, 10, args.cells)][:, : args.n_measured]).astype(np.float32),
        var=pd.DataFrame(index=names[: args.n_measured]),
    )
    sp.model.SpaLSTF.setup_anndata(reference)
    model = sp.model.SpaLSTF(reference, st, genes=names[args.n_measured :], blend=("ridge", "neighbours"))
    max_cells = None if args.max_cells == 0 else args.max_cells
    with PeakMemory() as memory:
        start = time.perf_counter()
        calibration = model.calibrate_intervals(st, max_cells=max_cells)
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "measured": args.n_measured,
                "spatial cells": args.cells,
                "max_cells": "default" if max_cells is None else max_cells,
                "cells used": calibration.n_cells,
                "calibration s": round(seconds, 1),
                "peak GB above start": round((memory.peak_bytes - memory.baseline_bytes) / GB, 2),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measured", default="100,1000", help="comma-separated panel sizes")
    parser.add_argument("--cells", type=int, default=10_000, help="spatial cells")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n-measured", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-cells", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    for n in (int(v) for v in args.measured.split(",")):
        for max_cells in (0, 10_000):
            common = ["--n-measured", str(n), "--cells", str(args.cells), "--threads", str(args.threads)]
            rows.append(run_worker(__file__, [*common, "--max-cells", str(max_cells)], args.threads))
            print(rows[-1], flush=True)
    print(f"\npython benchmarks/calibration_memory.py {' '.join(sys.argv[1:])}\n{machine()}\n")
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
