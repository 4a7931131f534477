"""Time and peak memory of imputation as the number of spatial cells grows (synthetic data, streaming imputation).

A model imputing ``--imputed`` genes from ``--measured`` measured genes is trained once, briefly, on a synthetic
reference (Poisson counts of 10 cell types) and saved. Synthetic spatial datasets of each size in ``--sizes`` are
written to ``.h5ad`` files. Then, for each size and each mode, a fresh Python process loads the model, runs a small
warm-up, and imputes every cell:

``memory``
    the spatial data read fully into memory (``anndata.read_h5ad(path)``); the result is returned as a DataFrame.
``backed``
    the spatial data opened with ``anndata.read_h5ad(path, backed="r")``, the result written chunk by chunk to an
    ``.h5ad`` file (``sp.tl.spalstf_impute(adata, reference, model=model, out=...)``, which does not read the file
    back); neither the input nor the output is held in memory.

Reported per run: wall time of ``model.impute``, time per 1,000 cells, the resident memory before imputation
(model + input), the peak during imputation, the size of the in-memory output matrix, and the working memory (peak
minus memory before minus in-memory output). Flat working memory and linear time are the claims checked.

With ``--interval 0.9`` the model is calibrated once (``calibrate_intervals`` on the 2,000 spatial cells it is built
with; the calibration is saved with it) and every run imputes with calibrated intervals (mean, lower and upper bound).

Usage::

    python benchmarks/cell_scale.py --sizes 1000,10000,100000 --threads 1 --out results/benchmarks/cell_scale
    python benchmarks/cell_scale.py --sizes 1000000 --device cuda --batch-size 8192   # on a GPU machine
    python benchmarks/cell_scale.py --sizes 1000,10000,100000 --threads 1 --interval 0.9
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import GB, PeakMemory, machine, markdown_table, run_worker, save

N_TYPES = 10


def _profiles(n_genes: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.gamma(0.6, 2.0, size=(N_TYPES, n_genes)) + 0.05


def _st_counts(n_cells: int, n_measured: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = 2.0 * _profiles(n_measured)
    return rng.poisson(means[rng.integers(0, N_TYPES, n_cells)]).astype(np.float32)


def write_st(path: Path, n_cells: int, n_measured: int) -> None:
    """Synthetic spatial data (measured genes g0..), written in one go (rows generated in blocks)."""
    blocks = [_st_counts(min(100_000, n_cells - s), n_measured, seed=s + 1) for s in range(0, n_cells, 100_000)]
    adata = ad.AnnData(
        np.concatenate(blocks),
        obs=pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=[f"g{i}" for i in range(n_measured)]),
    )
    adata.write_h5ad(path)


def train_model(args, model_dir: Path) -> None:
    """Train the model once on a synthetic reference and save it with its reference."""
    import spalstf as sp

    n_genes = args.measured + args.imputed
    rng = np.random.default_rng(0)
    types = rng.integers(0, N_TYPES, args.ref_cells)
    reference = ad.AnnData(
        rng.poisson(_profiles(n_genes)[types]).astype(np.float32),
        obs=pd.DataFrame(index=[f"ref{i}" for i in range(args.ref_cells)]),
        var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]),
    )
    st = ad.AnnData(
        _st_counts(2000, args.measured, seed=0), var=pd.DataFrame(index=reference.var_names[: args.measured])
    )
    sp.model.SpaLSTF.setup_anndata(reference)
    torch.manual_seed(0)
    model = sp.model.SpaLSTF(reference, st, genes=list(reference.var_names[args.measured :]))
    t0 = time.perf_counter()
    model.train(max_epochs=args.train_epochs, accelerator="cpu", enable_progress_bar=False)
    print(f"trained {model} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.interval is not None:
        t0 = time.perf_counter()
        model.calibrate_intervals(st)
        print(f"calibrated the intervals in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    model.save(str(model_dir), overwrite=True, save_anndata=True)


def worker(args) -> None:
    """One measured imputation in this (fresh) process; prints a JSON dict."""
    import spalstf as sp

    torch.set_num_threads(args.threads)
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    model = sp.model.SpaLSTF.load(str(args.model_dir), accelerator=accelerator)
    st_path = Path(args.st_path)
    adata = ad.read_h5ad(st_path, backed="r") if args.mode == "backed" else ad.read_h5ad(st_path)
    kwargs = {"batch_size": args.batch_size, "n_samples": args.n_samples, "progress_bar": False}
    kwargs["interval"] = args.interval
    out = st_path.with_name(st_path.stem + "_imputed.h5ad") if args.mode == "backed" else None
    warm = ad.AnnData(np.asarray(adata.X[:64]), var=pd.DataFrame(index=adata.var_names))
    model.impute(warm, **kwargs)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with PeakMemory() as memory:
        t0 = time.perf_counter()
        result = None
        if out is None:
            result = model.impute(adata, **kwargs)
        else:
            tl_kwargs = {"impute_batch_size": kwargs["batch_size"], "n_samples": kwargs["n_samples"]}
            sp.tl.spalstf_impute(
                adata,
                model.adata,
                model=model,
                out=out,
                overwrite=True,
                require_spatial=False,
                progress_bar=False,
                interval=kwargs["interval"],
                **tl_kwargs,
            )
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    before, peak = memory.baseline_bytes / GB, memory.peak_bytes / GB
    n_imputed = len(model.imputed_genes)
    n_outputs = 1 + (args.n_samples > 1) + 2 * (args.interval is not None)  # mean, std, lower and upper
    output_gb = adata.n_obs * n_imputed * 4 * n_outputs / GB if out is None else 0.0
    row = {
        "mode": args.mode,
        "device": args.device,
        "cells": adata.n_obs,
        "time_s": seconds,
        "s_per_1k_cells": seconds / adata.n_obs * 1000,
        "rss_before_gb": before,
        "peak_gb": peak,
        "output_in_ram_gb": output_gb,
        "working_gb": peak - before - output_gb,
    }
    if args.device == "cuda":
        row["gpu_peak_gb"] = torch.cuda.max_memory_allocated() / GB
    if out is not None:
        out.unlink()
    del result
    print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated numbers of spatial cells")
    parser.add_argument("--modes", default="memory,backed")
    parser.add_argument("--measured", type=int, default=300)
    parser.add_argument("--imputed", type=int, default=1000)
    parser.add_argument("--ref-cells", type=int, default=3000)
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024, help="cells per imputation chunk")
    parser.add_argument("--n-samples", type=int, default=1)
    parser.add_argument("--interval", type=float, default=None, help="impute with calibrated intervals of this level")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/cell_scale"))
    parser.add_argument("--keep-data", action="store_true", help="keep the synthetic .h5ad files and the model")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--st-path", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from spalstf.benchmark import silence_libraries

    silence_libraries()
    if args.worker:
        worker(args)
        return
    torch.set_num_threads(args.threads)
    data_dir = args.out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    model_dir = data_dir / "model"
    train_model(args, model_dir)
    common = ["--batch-size", str(args.batch_size), "--n-samples", str(args.n_samples), "--device", args.device]
    if args.interval is not None:
        common += ["--interval", str(args.interval)]
    common += ["--threads", str(args.threads), "--model-dir", str(model_dir)]
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        st_path = data_dir / f"st_{size}.h5ad"
        write_st(st_path, size, args.measured)
        for mode in args.modes.split(","):
            row = run_worker(__file__, [*common, "--mode", mode, "--st-path", str(st_path)], args.threads)
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
        st_path.unlink()
    if not args.keep_data:
        shutil.rmtree(data_dir)
    columns = list(rows[0])
    command = "python benchmarks/cell_scale.py " + " ".join(sys.argv[1:])
    meta = {"command": command, "machine": machine(), "measured": args.measured, "imputed": args.imputed}
    meta["interval"] = args.interval
    save(rows, args.out, "cell_scale", meta)
    print(
        f"{command}\n{machine()}; {args.measured} measured -> {args.imputed} imputed genes, batch {args.batch_size}\n"
    )
    print(markdown_table(rows, columns))


if __name__ == "__main__":
    main()
