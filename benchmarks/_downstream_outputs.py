"""The outputs of ``downstream.py``: pooling runs over disjoint folds, the files of a pair and its printed tables."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _downstream_stats import summarise_draws, summarise_tests
from _measure import machine, markdown_table


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def spread(values: pd.Series, first) -> str:
    v = values.astype(float)
    if v.notna().sum() == 0:
        return "nan"
    base = v.loc[first] if first in v.index else v.iloc[0]
    if len(v) == 1:
        return f"{base:.3f}"
    return f"{base:.3f} [{np.nanmin(v):.3f}, {np.nanmax(v):.3f}]"


def seed_table(summary: pd.DataFrame, columns: dict[str, str], first) -> str:
    """One row per method and K of ``summary``: each metric's first-seed value and [min, max] over seeds.

    ``columns`` maps a header to its metric column; ``K`` is ``-`` for single imputation, and a ``calls`` column is
    printed as whole numbers.
    """
    rows = []
    for (method, K), frame in summary.groupby(["method", "K"], sort=False):
        frame = frame.set_index("seed")
        row = {"method": method, "K": "-" if method == "single" else int(K)}
        for header, column in columns.items():
            value = spread(frame[column], first)
            row[header] = value.replace(".000", "") if header == "calls" else value
        rows.append(row)
    return markdown_table(rows, list(rows[0]))


def tidy(frame: pd.DataFrame, kind: str, keys: list[str]) -> pd.DataFrame:
    long = frame.melt(id_vars=keys, var_name="metric", value_name="value")
    long.insert(0, "kind", kind)
    return long


def merge_pair(name: str, args: argparse.Namespace) -> None:
    """Pool the outputs of runs over disjoint folds (``--folds``) written in the ``--merge`` folders."""
    frames: dict[str, list[pd.DataFrame]] = {}
    infos = []
    for folder in args.merge:
        for key in ("tests", "draws", "resources", "moran_genes", "corr"):
            frames.setdefault(key, []).append(pd.read_csv(folder / f"{name}_{key}.csv"))
        infos.append(json.loads((folder / f"{name}_info.json").read_text()))
    merged = {key: pd.concat(values, ignore_index=True) for key, values in frames.items()}
    folds = [f["fold"] for i in infos for f in i["folds"]]
    if len(set(folds)) < len(folds):
        raise SystemExit(f"--merge: folds {folds} overlap")
    info = dict(infos[0])
    info["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    info["merged_from"] = [str(f) for f in args.merge]
    info["folds"] = sorted((f for i in infos for f in i["folds"]), key=lambda f: f["fold"])
    info["folds_run"] = len(folds)
    info["wall_time_s"] = sum(i["wall_time_s"] for i in infos)
    checks: dict[str, Any] = {}
    for i in infos:
        for key, value in i["checks"].items():
            if isinstance(value, list):
                checks.setdefault(key, []).extend(value)
            else:
                checks[key] = max(checks.get(key, value), value)
    info["checks"] = checks
    args.samples, args.seeds = info["samples"], info["seeds"]
    finish(name, merged, info, args)


def finish(name: str, frames: dict[str, pd.DataFrame], info: dict[str, Any], args: argparse.Namespace) -> None:
    """Summaries, files and printed tables of one pair."""
    test_summary = summarise_tests(frames["tests"])
    draw_summary = summarise_draws(frames["draws"])
    smooth = (
        frames["moran_genes"].groupby(["method", "seed"])["abs_delta_I"].median().reset_index(name="median_abs_delta_I")
    )
    corr_columns = ["mean_abs_spearman", "error_pair_sd"]
    corr_summary = frames["corr"].groupby(["method", "seed"])[corr_columns].mean().reset_index()
    truth_corr = float(corr_summary.loc[corr_summary["method"] == "truth", "mean_abs_spearman"].iloc[0])
    corr_summary["gap_to_truth"] = corr_summary["mean_abs_spearman"] - truth_corr
    summary = pd.concat(
        [
            tidy(test_summary, "tests", ["method", "test", "K", "seed"]),
            tidy(draw_summary, "draws", ["method", "K", "seed"]),
            tidy(smooth, "oversmoothing", ["method", "seed"]),
            tidy(corr_summary, "gene_correlation", ["method", "seed"]),
        ],
        ignore_index=True,
    )
    summary.insert(0, "pair", name)

    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out / name
    for key, frame in frames.items():
        frame.to_csv(f"{prefix}_{key}.csv", index=False)
    summary.to_csv(f"{prefix}_summary.csv", index=False)
    Path(f"{prefix}_info.json").write_text(json.dumps(info, indent=2, default=str))
    print_report(name, info, test_summary, draw_summary, smooth, corr_summary, frames["resources"], args)
    log(f"wrote {prefix}_tests.csv, _summary.csv, _draws.csv, _resources.csv, _moran_genes.csv, _corr.csv, _info.json")


def print_report(name, info, test_summary, draw_summary, smooth, corr_summary, resources, args) -> None:
    first = args.seeds[0]
    cells = info["folds"][0]["cells"]
    print(
        f"\n## {name}: {info['model']}; {info['folds_run']} fold(s), {sum(f['held'] for f in info['folds'])} held-out "
        f"genes, {cells} cells; K {args.samples}, seeds {args.seeds} (first seed, [min, max])\n{machine()}\n"
    )
    print("### Tests at BH FDR 0.05 against the same test on the measured genes (pooled over folds and comparisons)\n")
    rows = []
    for (test, method, K), frame in test_summary.groupby(["test", "method", "K"], sort=False):
        frame = frame.set_index("seed")
        base = frame.loc[first] if first in frame.index else frame.iloc[0]
        rows.append(
            {
                "test": test,
                "method": method,
                "K": "-" if method == "single" else int(K),
                "tests": int(base["tests"]),
                "true calls": int(base["true_calls"]),
                "calls": spread(frame["calls"], first).replace(".000", ""),
                "found": spread(frame["found"], first).replace(".000", ""),
                "FDR": spread(frame["FDR"], first),
                "power": spread(frame["power"], first),
                "95% CI covers truth's estimate": spread(frame["ci95_covers_truth"], first),
                "error^2 / imputation var": spread(frame["error2_over_imputation_var"], first),
            }
        )
    rows.sort(key=lambda r: (r["test"], ["single", "tissue", "spalstf"].index(r["method"]), str(r["K"])))
    print(markdown_table(rows, list(rows[0])))

    kinds = sorted(c.removeprefix("ci95_covers_truth_") for c in test_summary if c.startswith("ci95_covers_truth_"))
    if kinds:
        print(
            "\n### Differential expression by kind of comparison: 95% CI coverage of the measured difference and "
            "error^2 / imputation var (half: the tissue's two halves; leiden: a cluster against the rest)\n"
        )
        columns = {}
        for kind in kinds:
            columns[f"{kind}: coverage"] = f"ci95_covers_truth_{kind}"
            columns[f"{kind}: error^2 / var"] = f"error2_over_imputation_var_{kind}"
        print(seed_table(test_summary[test_summary["test"] == "de"], columns, first))

    if "oracle_centred_power" in test_summary:
        print(
            "\n### Differential expression: what each method's standard errors allow (oracle: every test centred on "
            "the measured difference, its SE and df kept; BH 0.05 as above)\n"
        )
        columns = {
            "true calls: median of abs(measured difference) / SE": "true_effect_over_se_median",
            "power centred on the measurement": "oracle_centred_power",
        }
        print(seed_table(test_summary[test_summary["test"] == "de"], columns, first))

    if "I_spearman_with_truth" in test_summary:
        print(
            "\n### Ranking spatially variable genes: Spearman of each method's (pooled) Moran's I with the measured I\n"
        )
        spearman = test_summary.dropna(subset=["I_spearman_with_truth"])
        print(seed_table(spearman, {"Spearman": "I_spearman_with_truth"}, first))
    widened = test_summary.dropna(subset=["widened_tau"]) if "widened_tau" in test_summary else test_summary.iloc[:0]
    if len(widened):
        print(
            "\n### Moran's I with its variance widened by the spread the pooled interval misses (oracle tau from the "
            "held-out measurements: what honesty about each gene's I would cost)\n"
        )
        columns = {
            "tau": "widened_tau",
            "95% CI covers truth": "widened_ci95_covers_truth",
            "calls": "widened_calls",
            "FDR": "widened_FDR",
            "power": "widened_power",
        }
        print(seed_table(widened, columns, first))

    print("\n### Draws of the held-out genes: calibration (max |coverage - level| over 0.5..0.95) and CRPS\n")
    columns = {
        "cal. err (order stats vs level)": "calibration_error_order",
        "cal. err (order stats vs (u-l)/(K+1))": "calibration_error_order_vs_exchangeable",
        "cal. err (PIT)": "calibration_error_pit",
        "PIT cov. 0.9": "pit_coverage_0.9",
        "PIT cov. 0.5": "pit_coverage_0.5",
        "CRPS": "crps",
        "CRPS / constant": "crps_ratio_to_constant",
    }
    print(seed_table(draw_summary, columns, first))

    axes = [c for c in draw_summary.columns if c.startswith("halves_axis")]
    if axes:
        print(
            "\n### Halves cut along each principal axis of the coordinates (longest first): squared error of the "
            "halves' difference over the draws' mean squared deviation (1: as wide as needed; above: over-confident)\n"
        )
        print(seed_table(draw_summary, {f"axis {c[len('halves_axis')]}": c for c in axes}, first))

    print("\n### Over-smoothing and gene-gene structure\n")
    rows = []
    corr_index = corr_summary.set_index(["method", "seed"])
    for method, frame in smooth.groupby("method", sort=False):
        frame = frame.set_index("seed")
        corr = corr_index.loc[method]
        rows.append(
            {
                "values": method,
                "median |I - I(truth)|": spread(frame["median_abs_delta_I"], first),
                "mean |Spearman| among held-out genes": spread(corr["mean_abs_spearman"], first),
                "gap to truth": spread(corr["gap_to_truth"], first),
                "sd of pair corr. of (values - point)": spread(corr["error_pair_sd"], first),
            }
        )
    truth_row = corr_index.loc["truth"]
    rows.insert(
        0,
        {
            "values": "truth",
            "median |I - I(truth)|": "0",
            "mean |Spearman| among held-out genes": spread(truth_row["mean_abs_spearman"], -1),
            "gap to truth": "0",
            "sd of pair corr. of (values - point)": spread(truth_row["error_pair_sd"], -1),
        },
    )
    print(markdown_table(rows, list(rows[0])))
    noise = pd.DataFrame([{"fold": f["fold"], **f["noise"]} for f in info["folds"] if "noise" in f])
    if len(noise):
        print("\n### The draws' noise settings, fitted on each fold's kept genes (median [min, max] over folds)\n")
        columns = [c for c in noise.columns if c not in ("fold", "cluster_shares")]
        rows = [
            {
                "setting": c,
                "value": f"{noise[c].median():.3f} [{noise[c].min():.3f}, {noise[c].max():.3f}]",
            }
            for c in columns
        ]
        print(markdown_table(rows, ["setting", "value"]))

    print(
        "\n### Time and peak memory (RSS increase) per call, median (max for memory) over folds and seeds; "
        f"{cells} cells\n"
    )
    rows = []
    resources = resources.copy()
    resources["K"] = resources.get("K", pd.Series(np.nan, index=resources.index))
    for (call, K), frame in resources.groupby(["call", resources["K"].fillna(0)], sort=False):
        rows.append(
            {
                "call": call,
                "K": "-" if K == 0 else int(K),
                "calls": len(frame),
                "time s": float(frame["time_s"].median()),
                "time s / 10^4 cells": float(frame["time_s_per_1e4_cells"].median()),
                "peak MiB": float(frame["peak_mb"].max()),
                "peak MiB / 10^4 cells": float(frame["peak_mb_per_1e4_cells"].max()),
            }
        )
    print(markdown_table(rows, list(rows[0])))
    checks = {
        k: (np.max(v) if isinstance(v, list) and v and not isinstance(v[0], bool) else v)
        for k, v in info["checks"].items()
    }
    print(f"\nchecks: {json.dumps(checks, default=str)}")
    print(f"wall time {info['wall_time_s']:.0f} s")
