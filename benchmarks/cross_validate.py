"""Gene-fold cross-validation of SpaLSTF and peer methods on one ST / scRNA-seq pair (``sp.tl.cross_validate``).

Runs ``sp.tl.cross_validate`` (KFold over the shared genes; held-out genes removed from the ST data before any method
sees it) on the bundled Drosophila pair, on any pair of ``sp.datasets`` by name, or on a local ``.h5mu`` with
modalities ``"spatial"`` and ``"rna"``. A pair whose pinned files lie in ``--shared-data/<name>`` (the project's
``../shared/data``, e.g. ``osmfish``) is read from there through the real loader (the files are put in a temporary
cache, where the loader checks their sha256), so no download is needed. Ground truth: ``--truth auto`` (default),
i.e. ``log1p(CP10k)`` over the whole panel for count data (osmFISH), the values as given otherwise (Drosophila).

With ``--seeds 0,1,2`` the benchmark runs once per method seed on the same folds (``split_random_state`` fixed to
``--random-state``) and the summary gives each method's mean and spread (min-max) over the seeds.

Writes ``<out>/<dataset>_scores.csv`` (tidy per-gene scores, with a ``seed`` column), ``_clustering.csv``,
``_resources.csv`` (time and peak memory per method and fold, errors), ``_summary.csv`` (median per metric per
method and seed, clustering metrics, AS, total time, peak memory), ``_spread.csv`` (mean, min and max over the
seeds) and ``_info.json`` (machine and settings), and prints the summary with the machine.

Usage::

    python benchmarks/cross_validate.py                                  # bundled Drosophila pair, all methods
    python benchmarks/cross_validate.py --dataset osmfish --seeds 0,1,2 --threads 1
    python benchmarks/cross_validate.py --dataset osmfish --methods spalstf,spage,knn,ridge
    python benchmarks/cross_validate.py --local pair.h5mu --spalstf-max-epochs 30 --gimvi-max-epochs 50
    python benchmarks/cross_validate.py --spalstf-opt n_samples=8 --spalstf-opt sampler=\\"ddim\\"
    python benchmarks/cross_validate.py --pair osmfish --methods spalstf --interval 0.9 --seeds 0,1,2 --threads 1

With ``--interval 0.9`` SpaLSTF also gives calibrated intervals and per-gene reliability; the run then writes
``_intervals.csv`` (coverage, width and interval score per level, for SpaLSTF's intervals and for the same calibration
with one width per gene) and ``_reliability.csv`` (predicted vs real per-gene SPCC), and prints their summary.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import spalstf as sp
from spalstf.benchmark import DEFAULT_METHODS, limit_threads, load_pair, silence_libraries


def quiet() -> None:
    """Show the harness's progress on stdout and nothing of the libraries: no warning, log errors only.

    On top of :func:`spalstf.benchmark.silence_libraries`: every warning is ignored, and the root logger (which
    tangram sets to INFO on import and logs every step to) shows errors only.
    """
    silence_libraries()
    warnings.filterwarnings("ignore")
    logging.getLogger("root").setLevel(logging.ERROR)
    try:  # tangram sets the root logger to INFO on import and logs every step there
        import tangram  # noqa: F401
    except ImportError:
        pass
    logging.getLogger().setLevel(logging.ERROR)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    benchmark_logger = logging.getLogger("spalstf.benchmark")
    benchmark_logger.addHandler(handler)
    benchmark_logger.setLevel(logging.INFO)
    benchmark_logger.propagate = False


def _parse_opt(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def machine_info() -> dict[str, Any]:
    """CPU, threads, GPU and versions of the machine the benchmark ran on."""
    import scvi

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "scvi_tools": scvi.__version__,
        "spalstf": sp.__version__,
    }
    try:
        import tangram

        info["tangram"] = getattr(tangram, "__version__", "installed")
    except ImportError:
        info["tangram"] = None
    return info


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        "--pair",
        dest="dataset",
        default="drosophila_embryo",
        help="bundled pair or a name for sp.datasets.load",
    )
    parser.add_argument("--local", type=Path, default=None, help="local .h5mu with modalities 'spatial' and 'rna'")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated method names")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--random-state", type=int, default=0, help="seed of the fold split (and of the methods)")
    parser.add_argument("--seeds", default=None, help="comma-separated method seeds, run on the same folds")
    parser.add_argument("--truth", default="auto", choices=["auto", "as_given", "log1p_cp10k"])
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data",
        help="folder with local copies of pinned pair files (default: ../shared/data beside the repository)",
    )
    parser.add_argument("--spalstf-preset", default=None, choices=["cpu", "paper"])
    parser.add_argument("--spalstf-max-epochs", type=int, default=None)
    parser.add_argument("--spalstf-n-samples", type=int, default=None)
    parser.add_argument(
        "--interval", type=float, default=None, help="central level of SpaLSTF's calibrated intervals (e.g. 0.9)"
    )
    parser.add_argument(
        "--spalstf-opt",
        type=_parse_opt,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other option of sp.tl.spalstf_impute (value parsed as a Python literal); repeatable",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op and BLAS threads (default: torch's default); 1 avoids oversubscription on a shared CPU",
    )
    parser.add_argument("--gimvi-max-epochs", type=int, default=None)
    parser.add_argument("--tangram-num-epochs", type=int, default=None)
    args = parser.parse_args(argv)
    quiet()
    limit_threads(args.threads)

    name, mdata = load_pair(args.dataset, local=args.local, shared_data=args.shared_data)
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    spalstf_kwargs = dict(args.spalstf_opt)
    for key, value in (
        ("preset", args.spalstf_preset),
        ("max_epochs", args.spalstf_max_epochs),
        ("n_samples", args.spalstf_n_samples),
        ("interval", args.interval),
    ):
        if value is not None:
            spalstf_kwargs[key] = value
    method_kwargs: dict[str, dict[str, Any]] = {}
    if spalstf_kwargs and "spalstf" in methods:
        method_kwargs["spalstf"] = spalstf_kwargs
    if args.gimvi_max_epochs is not None and "gimvi" in methods:
        method_kwargs["gimvi"] = {"max_epochs": args.gimvi_max_epochs}
    if args.tangram_num_epochs is not None and "tangram" in methods:
        method_kwargs["tangram"] = {"num_epochs": args.tangram_num_epochs}

    info = machine_info()
    info["threads_option"] = args.threads
    print(
        f"{name}: spatial {adata_st.shape[0]} x {adata_st.shape[1]}, reference {adata_sc.shape[0]} x "
        f"{adata_sc.shape[1]}; methods {methods}; options {method_kwargs or 'defaults'}",
        flush=True,
    )
    print("machine: " + json.dumps(info), flush=True)
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.random_state]
    start = time.perf_counter()
    results = {}
    for seed in seeds:
        results[seed] = sp.tl.cross_validate(
            adata_st,
            adata_sc,
            methods=methods,
            n_folds=args.n_folds,
            random_state=seed,
            split_random_state=args.random_state,
            method_kwargs=method_kwargs,
            truth=args.truth,
        )
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
    wall = time.perf_counter() - start
    result = results[seeds[0]]

    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out / name

    def stacked(frames):
        return pd.concat([f.assign(seed=seed) for seed, f in frames.items()], ignore_index=True)

    summaries = {seed: r.summary().reset_index() for seed, r in results.items()}
    summary_all = stacked(summaries)
    stacked({s: r.scores for s, r in results.items()}).to_csv(f"{prefix}_scores.csv", index=False)
    stacked({s: r.clustering for s, r in results.items()}).to_csv(f"{prefix}_clustering.csv", index=False)
    stacked({s: r.resources for s, r in results.items()}).to_csv(f"{prefix}_resources.csv", index=False)
    summary_all.to_csv(f"{prefix}_summary.csv", index=False)
    has_intervals = any(len(r.intervals) for r in results.values())
    if has_intervals:
        stacked({s: r.intervals for s, r in results.items()}).to_csv(f"{prefix}_intervals.csv", index=False)
        stacked({s: r.reliability for s, r in results.items()}).to_csv(f"{prefix}_reliability.csv", index=False)
    numeric = summary_all.drop(columns="seed").groupby("method", sort=False)
    spread = pd.concat({"mean": numeric.mean(), "min": numeric.min(), "max": numeric.max()}, axis=1)
    spread.to_csv(f"{prefix}_spread.csv")
    summary = summaries[seeds[0]].set_index("method")
    run = {
        "dataset": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "methods": methods,
        "method_kwargs": method_kwargs,
        "n_folds": args.n_folds,
        "split_random_state": args.random_state,
        "seeds": seeds,
        "truth": result.truth,
        "n_shared_genes": sum(len(h) for _, h in result.folds),
        "wall_time_s": wall,
        "machine": info,
    }
    Path(f"{prefix}_info.json").write_text(json.dumps(run, indent=2, default=str))

    errors = result.resources[result.resources["error"].fillna("").astype(str).str.len() > 0]
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(
        f"\n{name}: {run['n_shared_genes']} shared genes, {args.n_folds} folds; median over genes per method; "
        "time = sum over folds, memory = max over folds (RSS increase)"
    )
    print(summary.round(3).to_string())
    if len(seeds) > 1:
        cols = ["SPCC", "AS", "time_s"]
        table = pd.concat({stat: spread[stat][cols] for stat in ("mean", "min", "max")}, axis=1).round(3)
        print(f"\nover seeds {seeds} (same folds): mean, min and max")
        print(table.to_string())
    if has_intervals:
        interval_table = stacked({s: r.interval_summary().reset_index() for s, r in results.items()})
        print("\ncalibrated intervals (nominal level) and reliability, per seed:")
        print(interval_table.round(3).to_string(index=False))
    if len(errors):
        print("\nerrors:")
        for row in errors.itertuples():
            print(f"  {row.method} fold {row.fold}: {row.error}")
    print(
        f"\nwall time {wall:.0f} s; machine: {info['cpu_count']} CPUs ({info['cpu_affinity']} usable), "
        f"{info['torch_threads']} torch threads, GPU {info['gpu']}, torch {info['torch']}, python {info['python']}"
    )
    print(f"ground truth: {result.truth}")
    extra = ", _intervals.csv, _reliability.csv" if has_intervals else ""
    print(f"wrote {prefix}_scores.csv, _clustering.csv, _resources.csv, _summary.csv, _spread.csv, _info.json{extra}")
    return summary


if __name__ == "__main__":
    main()
