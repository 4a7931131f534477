"""Peak memory of the draws and the pooled tests as the number of draws grows, on a real pair.

A closed-form model (``blend=("ridge", "neighbours")``, no training) of fold 0 of the benchmark's 5-fold gene split
(seed 0) is built and calibrated on the kept genes; then, for each number of draws K in ``--draws``, the draws of
``--genes`` held-out genes are written to an HDF5 file (``posterior_predictive_sample(out=...)``) and pooled in
``differential_expression`` (the tissue's two halves) and ``spatial_autocorr``. Memory is the peak of numpy's and
Python's allocations during the call (``tracemalloc``, above what was held before), with the seconds. Drawing
holds at most :data:`spalstf.model._draws.DRAW_CHUNK_ENTRIES` draws at a time: once one gene's K draws on every cell
exceed that, they are made in runs of draws and the peak should stop growing with K.

To compare with an earlier version, run the same script with that version's ``src`` first on ``PYTHONPATH``
(``git worktree add /tmp/old <commit>``; ``PYTHONPATH=/tmp/old/src python benchmarks/draw_memory.py ...``).

Usage::

    python benchmarks/draw_memory.py --pair drosophila_embryo --draws 20 2000 20000 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _measure import machine, markdown_table

from spalstf.benchmark import limit_threads


def peak(call) -> tuple[float, float]:
    """Seconds and peak traced allocation (GiB) of ``call()``."""
    tracemalloc.start()
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return seconds, top / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="drosophila_embryo")
    parser.add_argument("--draws", type=int, nargs="+", default=[20, 2000, 20000])
    parser.add_argument("--genes", type=int, default=3, help="held-out genes drawn")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    limit_threads(args.threads)
    import squidpy as sq

    import spalstf as sp
    from spalstf.benchmark import gene_folds, load_pair
    from spalstf.model import _draws

    _, mdata = load_pair(args.pair, shared_data=args.shared_data)
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    genes = [g for g in adata_st.var_names if g in set(adata_sc.var_names)]
    kept, held = next(iter(gene_folds(genes, n_folds=5, random_state=0)))
    panel = adata_st[:, kept].copy()
    reference = adata_sc.copy()
    sp.model.SpaLSTF.setup_anndata(reference)
    model = sp.model.SpaLSTF(reference, panel, genes=held, blend=("ridge", "neighbours"))
    model.skip_training("benchmark: closed form")
    model.calibrate_intervals(panel)
    sq.gr.spatial_neighbors(panel, coord_type="generic", n_neighs=6)
    x = np.asarray(panel.obsm["spatial"])[:, 0]
    panel.obs["half"] = np.where(x >= np.median(x), "right", "left")
    chosen = held[: args.genes]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for K in args.draws:
            path = Path(folder) / f"draws_{K}.h5"

            def to_file(path=path, K=K):
                dataset = model.posterior_predictive_sample(panel, n_samples=K, gene_list=chosen, out=path)
                dataset.file.close()

            kw = {"n_samples": K, "gene_list": chosen}
            results = {
                "draws to file": peak(to_file),
                "differential_expression": peak(
                    lambda kw=kw: model.differential_expression(panel, "half", "right", **kw)
                ),
                "spatial_autocorr": peak(lambda kw=kw: model.spatial_autocorr(panel, **kw)),
            }
            # how many runs the draws come in (a version of the package without runs of draws: "-")
            runs = -(-K // max(1, min(K, _draws.DRAW_CHUNK_ENTRIES // panel.n_obs)))
            runs = runs if hasattr(_draws.DrawPlan, "draw_step") else "-"
            for call, (seconds, gib) in results.items():
                rows.append({"K": K, "runs of draws": runs, "call": call, "seconds": seconds, "peak GiB": gib})
    print(f"python benchmarks/draw_memory.py {' '.join(sys.argv[1:])}\n{machine()}\n")
    print(f"{args.pair}: {panel.n_obs} cells, {len(chosen)} held-out genes of fold 0\n")
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
