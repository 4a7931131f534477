from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spalstf._genes import GenePlan, plan_genes
from spalstf.benchmark._folds import gene_folds

ST = pd.Index(["a", "b", "c"])
SC = pd.Index(["x", "a", "d", "b", "e", "c", "f", "g"])


# plan_genes ------------------------------------------------------------------------------------------------------
def test_default_genes_in_reference_order():
    plan = plan_genes(ST, SC)
    assert isinstance(plan, GenePlan)
    assert plan.imputed == ("x", "d", "e", "f", "g")
    assert plan.measured == ("a", "b", "c")  # reference order
    assert plan.measured_st == ("a", "b", "c")


def test_default_genes_ranked_and_capped():
    ranking = pd.Series({"x": 0.1, "a": 99.0, "d": 5.0, "b": 50.0, "e": np.nan, "f": 7.0, "g": 0.5})
    plan = plan_genes(ST, SC, gene_ranking=ranking, n_top_genes=3)
    # measured genes are never candidates, even with a high score; missing / NaN scores rank last
    assert plan.imputed == ("f", "d", "g")
    plan = plan_genes(ST, SC, gene_ranking=ranking, n_top_genes=None)
    assert plan.imputed == ("f", "d", "g", "x", "e")
    assert plan_genes(ST, SC, n_top_genes=2).imputed == ("x", "d")


def test_requested_genes_keep_their_order():
    plan = plan_genes(ST, SC, ["g", "d"])
    assert plan.imputed == ("g", "d")
    assert plan.measured == ("a", "b", "c")
    assert plan_genes(ST, SC, "e").imputed == ("e",)  # a single name is one gene, not characters


def test_requested_measured_gene_leaves_the_condition():
    plan = plan_genes(ST, SC, ["b", "d"])
    assert plan.imputed == ("b", "d")
    assert plan.measured == ("a", "c")
    assert plan.measured_st == ("a", "c")
    assert not set(plan.imputed) & set(plan.measured)


def test_all_measured_genes_requested_raises():
    with pytest.raises(ValueError, match="No measured gene is left"):
        plan_genes(ST, SC, ["a", "b", "c", "d"])


def test_everything_measured_raises():
    with pytest.raises(ValueError, match="nothing to impute"):
        plan_genes(SC, SC)
    # ... unless genes to cross-check are named
    plan = plan_genes(SC, SC, ["d"])
    assert plan.imputed == ("d",) and "d" not in plan.measured and len(plan.measured) == len(SC) - 1


def test_unknown_requested_gene_raises():
    with pytest.raises(KeyError, match="zzz"):
        plan_genes(ST, SC, ["d", "zzz"])
    with pytest.raises(ValueError, match="duplicated"):
        plan_genes(ST, SC, ["d", "d"])


def test_no_shared_gene_raises():
    with pytest.raises(ValueError, match="share no gene names") as err:
        plan_genes(pd.Index(["p", "q"]), SC)
    assert "case_sensitive" not in str(err.value)  # no misleading hint


def test_case_insensitive_matching():
    st = pd.Index(["A", "B", "C"])
    with pytest.raises(ValueError, match="case_sensitive=False"):
        plan_genes(st, SC)
    plan = plan_genes(st, SC, ["D", "b"], case_sensitive=False)
    assert plan.imputed == ("d", "b")  # reference spelling
    assert plan.measured == ("a", "c")
    assert plan.measured_st == ("A", "C")  # ST spelling
    with pytest.raises(ValueError, match="differ only by case"):
        plan_genes(pd.Index(["a", "A"]), SC, case_sensitive=False)
    with pytest.raises(ValueError, match="differ only by case"):
        plan_genes(ST, pd.Index(["a", "d", "D"]), case_sensitive=False)


def test_duplicated_names_raise():
    with pytest.raises(ValueError, match="adata_st` has duplicated"):
        plan_genes(pd.Index(["a", "a"]), SC)
    with pytest.raises(ValueError, match="adata_sc` has duplicated"):
        plan_genes(ST, pd.Index(["a", "d", "d"]))


# gene_folds ------------------------------------------------------------------------------------------------------
def test_gene_folds_cover_every_gene_once():
    genes = [f"gene{i}" for i in range(84)]
    folds = gene_folds(genes, n_folds=5, random_state=0)
    assert len(folds) == 5
    held = [g for _, h in folds for g in h]
    assert sorted(held) == sorted(genes) and len(held) == len(set(held))
    for kept, h in folds:
        assert not set(kept) & set(h)
        assert sorted(kept + h) == sorted(genes)
        assert len(h) in (16, 17)
    assert folds == gene_folds(genes, n_folds=5, random_state=0)
    assert folds == gene_folds(pd.Index(genes), n_folds=5, random_state=0)
    assert folds != gene_folds(genes, n_folds=5, random_state=1)
    assert [h for _, h in folds] != [genes[i : i + 17] for i in range(0, 84, 17)]  # shuffled, not contiguous


@pytest.mark.parametrize("n_folds", [0, 1, 85])
def test_gene_folds_out_of_range(n_folds):
    with pytest.raises(ValueError, match="n_folds"):
        gene_folds([f"gene{i}" for i in range(84)], n_folds=n_folds)


def test_gene_folds_leave_one_out():
    folds = gene_folds(["a", "b", "c"], n_folds=3)
    assert sorted(h[0] for _, h in folds) == ["a", "b", "c"]
