"""Peak memory and time of model construction, one training epoch and imputation as the number of genes grows.

For each total number of genes in ``--genes`` (``--measured-fraction`` of them measured by the spatial panel, the
rest imputed), a fresh Python process builds a synthetic reference (``--ref-cells`` cells, sparse Poisson counts)
and spatial panel (``--st-cells`` cells) and runs, with the ``"cpu"`` preset: model construction (reference
statistics, ridge fit), one training epoch, and imputation of every spatial cell. The peak resident memory of each
phase is measured separately (the kernel's high-water mark, reset between phases).

A second fresh process per size measures the denoiser alone (XCiT blocks, cross-covariance attention over gene
tokens): one forward and backward pass on a batch of ``--batch`` cells, reporting its peak memory above the memory
before the pass, and its parameter count. Both should grow linearly with the number of genes.

Usage::

    python benchmarks/gene_scale.py --genes 1000,2000,5000,10000,20000 --threads 1 --out results/benchmarks/gene_scale
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import GB, PeakMemory, machine, markdown_table, rss_bytes, run_worker, save


def synthetic_pair(n_genes: int, n_measured: int, n_ref: int, n_st: int) -> tuple[ad.AnnData, ad.AnnData]:
    """Sparse Poisson(0.3) reference and dense spatial panel (the first ``n_measured`` genes)."""
    rng = np.random.default_rng(0)
    names = [f"g{i}" for i in range(n_genes)]
    blocks = [
        sparse.csr_matrix(rng.poisson(0.3, (min(500, n_ref - s), n_genes)).astype(np.float32))
        for s in range(0, n_ref, 500)
    ]
    adata_sc = ad.AnnData(sparse.vstack(blocks).tocsr(), var=pd.DataFrame(index=names))
    adata_st = ad.AnnData(
        rng.poisson(0.3, (n_st, n_measured)).astype(np.float32), var=pd.DataFrame(index=names[:n_measured])
    )
    return adata_st, adata_sc


def pipeline_worker(args) -> dict:
    from spalstf.model import SpaLSTF

    n_measured = round(args.size * args.measured_fraction)
    adata_st, adata_sc = synthetic_pair(args.size, n_measured, args.ref_cells, args.st_cells)
    SpaLSTF.setup_anndata(adata_sc)
    row = {"genes": args.size, "measured": n_measured, "imputed": args.size - n_measured, "data_gb": rss_bytes() / GB}
    phases = {}

    def phase(name, run):
        with PeakMemory() as memory:
            t0 = time.perf_counter()
            result = run()
            seconds = time.perf_counter() - t0
        phases[name] = seconds, memory.peak_bytes / GB
        return result

    model = phase("init", lambda: SpaLSTF(adata_sc, adata_st, n_top_genes=args.size))
    phase(
        "train_epoch",
        lambda: model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False),
    )
    phase("impute", lambda: model.impute(adata_st, progress_bar=False))
    row.update({f"{name}_s": seconds for name, (seconds, _) in phases.items()})
    row.update({f"{name}_peak_gb": peak for name, (_, peak) in phases.items()})
    row["peak_gb"] = max(p for _, p in phases.values())
    return row


def denoiser_worker(args) -> dict:
    from spalstf.model._defaults import PRESETS
    from spalstf.model._network import Denoiser

    cpu = PRESETS["cpu"]
    torch.manual_seed(0)
    net = Denoiser(args.size, 256, n_hidden=cpu["n_hidden"], n_blocks=cpu["n_blocks"], n_heads=cpu["n_heads"])
    x = torch.randn(args.batch, args.size)
    mask = (torch.arange(args.size) < args.size // 2).float()
    t, cond = torch.randint(1, 1000, (args.batch,)), torch.randn(args.batch, 256)
    net(x[:2], mask, t[:2], cond[:2]).sum().backward()  # allocate gradients and warm up
    with PeakMemory() as memory:
        t0 = time.perf_counter()
        net(x, mask, t, cond).square().mean().backward()
        seconds = time.perf_counter() - t0
    return {
        "denoiser_params": sum(p.numel() for p in net.parameters()),
        "denoiser_fwd_bwd_s": seconds,
        "denoiser_fwd_bwd_mb": memory.increase_bytes / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", default="1000,2000,5000,10000,20000", help="comma-separated total genes")
    parser.add_argument("--measured-fraction", type=float, default=0.5)
    parser.add_argument("--ref-cells", type=int, default=3000)
    parser.add_argument("--st-cells", type=int, default=500)
    parser.add_argument("--batch", type=int, default=256, help="cells of the denoiser-only pass")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/gene_scale"))
    parser.add_argument(
        "--worker", nargs="?", const="pipeline", choices=["pipeline", "denoiser"], help=argparse.SUPPRESS
    )
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from spalstf.benchmark import silence_libraries

    silence_libraries()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps((pipeline_worker if args.worker == "pipeline" else denoiser_worker)(args)))
        return
    common = ["--measured-fraction", str(args.measured_fraction), "--ref-cells", str(args.ref_cells)]
    common += ["--st-cells", str(args.st_cells), "--batch", str(args.batch), "--threads", str(args.threads)]
    rows = []
    for size in [int(g) for g in args.genes.split(",")]:
        row = run_worker(__file__, ["pipeline", "--size", str(size), *common], args.threads)
        row.update(run_worker(__file__, ["denoiser", "--size", str(size), *common], args.threads))
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    command = "python benchmarks/gene_scale.py " + " ".join(sys.argv[1:])
    save(rows, args.out, "gene_scale", {"command": command, "machine": machine()})
    print(f"{command}\n{machine()}; {args.ref_cells} reference cells, {args.st_cells} spatial cells, preset 'cpu'\n")
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
