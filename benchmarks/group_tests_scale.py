"""Time of the pooled two-group tests with many groups: group sums by matrix products against one copy per group.

``rank_genes_groups`` tests every group of cells against the rest from one set of draws. For each gene chunk of
draws it needs, per comparison, the two sets of cells' means and variances over the cells. The package takes them
from sums over all groups at once (:meth:`spalstf.model._draws.GroupMoments.of_masks`, a few matrix products per
chunk); the reference here copies each set of cells' draws and averages them
(:func:`spalstf.model._draws.pooled_difference` on ``draws[in1]`` and ``draws[in2]``, the package's way before). Both
run on the same draws: a :class:`~spalstf.model._draws.DrawPlan` of synthetic cells with a white-noise field and
standard normal scores, random group labels, one thread. Prints the seconds of drawing alone and of each way
(median and [min, max] over ``--repeats``), their ratio, and the largest difference between their p-values.

Usage::

    python benchmarks/group_tests_scale.py --cells 50000 --genes 40 --draws 20 --groups 10 30
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

import numpy as np
import pandas as pd
from _measure import machine, markdown_table


def plan_of(n_cells: int, n_genes: int):
    """A DrawPlan of zeros whose noise is white and whose scores are standard normal."""
    from scipy import sparse

    from spalstf.model import _draws
    from spalstf.model._calibration import ScoreTable
    from spalstf.model._noise import cell_keys, gene_keys

    scores = np.random.default_rng(0).standard_normal(100_000)
    return _draws.DrawPlan(
        point=np.full((n_cells, n_genes), 2.0, np.float32),
        scale=np.ones(n_genes),
        strata=np.zeros((n_cells, n_genes), np.int16),
        empty=np.zeros(n_cells, bool),
        table=ScoreTable.fit(scores, np.zeros(len(scores), np.int64), 1),
        operator=sparse.identity(n_cells, format="csr"),
        shared=0.0,
        cells=cell_keys([f"cell{i}" for i in range(n_cells)], 0),
        genes=gene_keys([f"g{j}" for j in range(n_genes)]),
        factor=gene_keys(["shared"]),
    )


def by_copies(plan, genes, comparisons, n_samples):
    """The reference: each comparison's two sets of cells copied out of every chunk of draws."""
    from spalstf.model import _draws

    tables = [[] for _ in comparisons]
    for columns, runs in plan.chunks(n_samples):
        if runs != slice(0, n_samples):
            raise SystemExit("by_copies pools each chunk at once: it needs chunks that hold every draw of their genes")
        draws = plan.draw(columns, runs)
        for part, (in1, in2) in zip(tables, comparisons, strict=True):
            part.append(pd.DataFrame(_draws.pooled_difference(draws[in1], draws[in2]), index=genes[columns]))
    return [pd.concat(part) for part in tables]


def draw_all(plan, n_samples: int) -> None:
    """Every chunk of draws, dropped at once: the cost of drawing alone."""
    for columns, draws in plan.chunks(n_samples):
        plan.draw(columns, draws)


def seconds(func) -> tuple[float, object]:
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=50_000)
    parser.add_argument("--genes", type=int, default=40)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--groups", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from spalstf.benchmark import limit_threads
    from spalstf.model._draws_mixin import _pooled_comparisons

    limit_threads(1)
    print(f"python benchmarks/group_tests_scale.py {' '.join(sys.argv[1:] if argv is None else argv)}\n{machine()}\n")
    plan = plan_of(args.cells, args.genes)
    genes = pd.Index([f"g{j}" for j in range(args.genes)])
    labels = np.random.default_rng(1).integers(0, max(args.groups), args.cells)
    rows = []
    for n_groups in args.groups:
        group = labels % n_groups
        comparisons = [(group == g, group != g) for g in range(n_groups)]
        names = [(str(g), "rest") for g in range(n_groups)]
        drawing, sums, copies, gap = [], [], [], 0.0
        for _ in range(args.repeats):
            drawing.append(seconds(partial(draw_all, plan, args.draws))[0])
            t, new = seconds(partial(_pooled_comparisons, plan, genes, comparisons, names, args.draws))
            sums.append(t)
            t, old = seconds(partial(by_copies, plan, genes, comparisons, args.draws))
            copies.append(t)
            for a, b in zip(new, old, strict=True):
                gap = max(gap, float(np.nanmax(np.abs(a["pvalue"] - b.reindex(a.index)["pvalue"]))))

        def spread(values):
            return f"{np.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"

        ratios = [c / s for c, s in zip(copies, sums, strict=True)]
        rows.append(
            {
                "cells": args.cells,
                "genes": args.genes,
                "K": args.draws,
                "groups": n_groups,
                "drawing s": spread(drawing),
                "group sums s": spread(sums),
                "copies s": spread(copies),
                "copies / sums": spread(ratios),
                "max |p difference|": f"{gap:.1e}",
            }
        )
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
