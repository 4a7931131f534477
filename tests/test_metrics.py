from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import spalstf as sp
from spalstf.metrics import (
    HIGHER_IS_BETTER,
    accuracy_score,
    clustering_metrics,
    gene_metrics,
    js,
    rmse,
    spcc,
    ssim,
)

C1, C2 = 0.01**2, 0.03**2
PER_GENE = [spcc, ssim, rmse, js]


def _pearson(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / np.sqrt((a**2).sum() * (b**2).sum())


@pytest.fixture
def pair():
    rng = np.random.default_rng(1)
    y_true = rng.gamma(2.0, size=(30, 5))
    y_pred = y_true + rng.normal(scale=0.8, size=y_true.shape).clip(-1, None)
    return y_true, np.abs(y_pred)


@pytest.fixture(scope="module")
def clustered():
    """120 cells in three well separated groups of 40 over 12 genes."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 5, size=(3, 12))
    return np.repeat(centers, 40, axis=0) + rng.normal(size=(120, 12))


# --- SPCC --------------------------------------------------------------------------------------------------------


def test_spcc_without_ties_matches_rank_difference_formula():
    # ranks (1,2,3,4) vs (1,3,2,4): d = (0,-1,1,0), 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    x = np.array([10.0, 20.0, 30.0, 40.0])
    y = np.array([0.1, 5.0, 2.0, 7.0])
    np.testing.assert_allclose(spcc(x, y), [0.8])


def test_spcc_with_ties_uses_average_ranks():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([5.0, 6.0, 7.0, 8.0, 7.0])
    ranks_y = [1.0, 2.0, 3.5, 5.0, 3.5]  # the two 7s share ranks 3 and 4
    np.testing.assert_allclose(spcc(x, y), [_pearson([1, 2, 3, 4, 5], ranks_y)])


def test_spcc_is_rank_based_and_signed():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(spcc(x, x**3), [1.0])
    np.testing.assert_allclose(spcc(x, -np.exp(x)), [-1.0])


# --- SSIM --------------------------------------------------------------------------------------------------------


def test_ssim_hand_computed():
    y_true = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 4.0]])
    y_pred = np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    # gene 0: both scale to (0, 1) -> 1
    # gene 1: x = (0, 1), y = (1, 0): mu 0.5 each, var 0.25 each (ddof 0), cov -0.25
    g1 = ((2 * 0.25 + C1) * (2 * -0.25 + C2)) / ((0.25 + 0.25 + C1) * (0.25 + 0.25 + C2))
    # gene 2: x = (0, 1), y all zero (max 0, not rescaled): mu_y = var_y = cov = 0
    g2 = (C1 * C2) / ((0.25 + C1) * (0.25 + C2))
    np.testing.assert_allclose(ssim(y_true, y_pred), [1.0, g1, g2])


def test_ssim_uses_population_variance():
    x = np.array([1.0, 2.0, 4.0])
    y = np.array([2.0, 1.0, 1.0])
    xs, ys = x / 4, y / 2
    mx, my = xs.mean(), ys.mean()
    vx, vy = ((xs - mx) ** 2).sum() / 3, ((ys - my) ** 2).sum() / 3
    cov = ((xs - mx) * (ys - my)).sum() / 3
    expected = ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    np.testing.assert_allclose(ssim(x, y), [expected])


def test_ssim_is_scale_invariant():
    x = np.array([0.0, 1.0, 3.0, 2.0])
    y = np.array([1.0, 0.5, 2.0, 2.0])
    np.testing.assert_allclose(ssim(x, y), ssim(10 * x, 0.1 * y))


# --- RMSE --------------------------------------------------------------------------------------------------------


def test_rmse_hand_computed():
    # z(1, 2, 3) = (-1.2247, 0, 1.2247), z(3, 2, 1) its reverse: squared differences (6, 0, 6), mean 4
    np.testing.assert_allclose(rmse(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])), [2.0])
    # z-scoring removes location and scale
    np.testing.assert_allclose(rmse(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])), [0.0], atol=1e-12)


def test_rmse_equals_sqrt_two_one_minus_pearson(pair):
    y_true, y_pred = pair
    expected = [np.sqrt(2 * (1 - _pearson(y_true[:, g], y_pred[:, g]))) for g in range(y_true.shape[1])]
    np.testing.assert_allclose(rmse(y_true, y_pred), expected)


# --- JS ----------------------------------------------------------------------------------------------------------


def test_js_two_cells_closed_form():
    # disjoint supports: JS = ln 2
    np.testing.assert_allclose(js(np.array([1.0, 0.0]), np.array([0.0, 1.0])), [np.log(2)])
    # p = (1/2, 1/2), q = (1/4, 3/4), m = (3/8, 5/8)
    p, q, m = np.array([0.5, 0.5]), np.array([0.25, 0.75]), np.array([0.375, 0.625])
    expected = 0.5 * (p * np.log(p / m)).sum() + 0.5 * (q * np.log(q / m)).sum()
    np.testing.assert_allclose(js(np.array([2.0, 2.0]), np.array([1.0, 3.0])), [expected])


def test_js_zero_entries_contribute_nothing():
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4): the 0 * log 0 term is 0
    expected = 0.5 * np.log(1 / 0.75) + 0.5 * (0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25))
    np.testing.assert_allclose(js(np.array([3.0, 0.0]), np.array([1.0, 1.0])), [expected])


def test_js_is_symmetric_and_bounded(pair):
    y_true, y_pred = pair
    values = js(y_true, y_pred)
    np.testing.assert_allclose(values, js(y_pred, y_true))
    assert np.all((values >= 0) & (values <= np.log(2)))


# --- edge cases --------------------------------------------------------------------------------------------------


def test_identical_vectors(pair):
    y_true, _ = pair
    out = gene_metrics(y_true, y_true.copy())
    np.testing.assert_allclose(out["SPCC"], 1.0)
    np.testing.assert_allclose(out["SSIM"], 1.0)
    np.testing.assert_allclose(out["RMSE"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["JS"], 0.0, atol=1e-12)


def test_constant_gene():
    y_true = np.array([[2.0, 1.0], [2.0, 2.0], [2.0, 3.0]])
    y_pred = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])  # gene 0 constant in truth, gene 1 in prediction
    np.testing.assert_array_equal(np.isnan(spcc(y_true, y_pred)), [True, True])
    np.testing.assert_array_equal(np.isnan(rmse(y_true, y_pred)), [True, True])
    # SSIM stays defined: gene 0: x = (1, 1, 1), y = (1/3, 2/3, 1)
    y = np.array([1, 2, 3]) / 3
    vy = ((y - y.mean()) ** 2).mean()
    expected0 = ((2 * y.mean() + C1) * C2) / ((1 + y.mean() ** 2 + C1) * (vy + C2))
    np.testing.assert_allclose(ssim(y_true, y_pred)[0], expected0)
    assert np.all(np.isfinite(js(y_true, y_pred)))
    # a constant gene predicted as the same constant
    np.testing.assert_allclose(ssim(np.full(4, 3.0), np.full(4, 3.0)), [1.0])


def test_all_zero_gene():
    y_true = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]])
    y_pred = np.array([[1.0, 1.0], [0.0, 2.0], [2.0, 3.0]])
    np.testing.assert_array_equal(np.isnan(js(y_true, y_pred)), [True, False])
    np.testing.assert_array_equal(np.isnan(js(y_pred, y_true)), [True, False])
    # SSIM: the all-zero gene is compared as zeros: x = 0, y = (1/2, 0, 1)
    y = np.array([0.5, 0.0, 1.0])
    expected = (C1 * C2) / ((y.mean() ** 2 + C1) * (y.var() + C2))
    np.testing.assert_allclose(ssim(y_true, y_pred)[0], expected)
    np.testing.assert_allclose(ssim(np.zeros(3), np.zeros(3)), [1.0])


def test_js_rejects_negative_values_naming_the_gene():
    y_true = pd.DataFrame({"Gata4": [1.0, 2.0], "Sox2": [1.0, -0.5]})
    with pytest.raises(ValueError, match="negative.*'Sox2'"):
        js(y_true, y_true.abs())
    with pytest.raises(ValueError, match="y_pred.*negative.*'Sox2'"):
        gene_metrics(y_true.abs(), y_true)
    # the other metrics accept negative values (e.g. z-scores)
    out = gene_metrics(y_true, y_true, metrics=("SPCC", "SSIM", "RMSE"))
    assert list(out.columns) == ["SPCC", "SSIM", "RMSE"]


@pytest.mark.parametrize("metric", PER_GENE)
def test_nan_input_raises_naming_the_gene(metric):
    y_true = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, np.nan, 3.0]})
    with pytest.raises(ValueError, match="y_true.*NaN.*'b'"):
        metric(y_true, y_true.fillna(0))
    with pytest.raises(ValueError, match="y_pred.*NaN.*'1'"):
        metric(np.ones((3, 2)), np.array([[1.0, 1.0], [1.0, np.inf], [1.0, 1.0]]))


@pytest.mark.parametrize("metric", [*PER_GENE, gene_metrics])
def test_shape_mismatch_raises(metric):
    with pytest.raises(ValueError, match="3 genes.*2"):
        metric(np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="4 cells.*5"):
        metric(np.ones((4, 3)), np.ones((5, 3)))


def test_name_mismatch_raises_saying_which():
    y_true = pd.DataFrame(np.ones((3, 2)), columns=["a", "b"], index=["c1", "c2", "c3"])
    y_pred = pd.DataFrame(np.ones((3, 2)), columns=["a", "z"], index=["c1", "c2", "c3"])
    with pytest.raises(ValueError, match=r"gene names.*y_true but not in y_pred: 'b'.*y_pred but not in y_true: 'z'"):
        gene_metrics(y_true, y_pred)
    y_pred = pd.DataFrame(np.ones((3, 2)), columns=["a", "b"], index=["c1", "c2", "c9"])
    with pytest.raises(ValueError, match="cell names.*'c3'.*'c9'"):
        spcc(y_true, y_pred)
    dup = pd.DataFrame(np.ones((3, 2)), columns=["a", "a"])
    with pytest.raises(ValueError, match="duplicated gene"):
        ssim(dup, dup)


def test_unknown_metric_raises():
    with pytest.raises(ValueError, match="'MSE'"):
        gene_metrics(np.ones((3, 1)), np.ones((3, 1)), metrics=("SPCC", "MSE"))


# --- input types and alignment -----------------------------------------------------------------------------------


def test_gene_metrics_frame_layout(pair):
    y_true, y_pred = pair
    out = gene_metrics(y_true, y_pred)
    assert list(out.columns) == ["SPCC", "SSIM", "RMSE", "JS"]
    assert list(out.index) == ["0", "1", "2", "3", "4"]
    for name, fn in zip(out.columns, PER_GENE, strict=True):
        np.testing.assert_allclose(out[name].to_numpy(), fn(y_true, y_pred))
    sub = gene_metrics(y_true, y_pred, metrics="rmse")
    assert list(sub.columns) == ["RMSE"]


def test_dataframes_aligned_by_gene_and_cell_names(pair):
    y_true, y_pred = pair
    genes = [f"g{i}" for i in range(y_true.shape[1])]
    cells = [f"c{i}" for i in range(y_true.shape[0])]
    df_true = pd.DataFrame(y_true, index=cells, columns=genes)
    df_pred = pd.DataFrame(y_pred, index=cells, columns=genes)
    expected = gene_metrics(y_true, y_pred).to_numpy()
    shuffled = df_pred.iloc[np.random.default_rng(0).permutation(len(cells)), ::-1]
    out = gene_metrics(df_true, shuffled)
    assert list(out.index) == genes
    np.testing.assert_allclose(out.to_numpy(), expected)
    for fn in PER_GENE:
        np.testing.assert_allclose(fn(df_true, shuffled), fn(y_true, y_pred))


def test_sparse_and_mixed_inputs(pair):
    y_true, y_pred = pair
    expected = gene_metrics(y_true, y_pred)
    pd.testing.assert_frame_equal(gene_metrics(sparse.csr_matrix(y_true), y_pred), expected)
    pd.testing.assert_frame_equal(gene_metrics(y_true, sparse.csc_matrix(y_pred)), expected)
    named = pd.DataFrame(y_true, columns=list("abcde"))
    out = gene_metrics(named, y_pred)  # names from the frame, order by position
    assert list(out.index) == list("abcde")
    np.testing.assert_allclose(out.to_numpy(), expected.to_numpy())


def test_inputs_not_modified(pair):
    y_true, y_pred = pair
    df_true = pd.DataFrame(y_true.copy(), columns=list("abcde"))
    df_pred = pd.DataFrame(y_pred.copy(), columns=list("abcde")).iloc[:, ::-1]
    snapshot = (y_true.copy(), y_pred.copy(), df_true.copy(), df_pred.copy())
    for fn in PER_GENE:
        fn(y_true, y_pred)
        fn(df_true, df_pred)
    gene_metrics(y_true, y_pred)
    np.testing.assert_array_equal(y_true, snapshot[0])
    np.testing.assert_array_equal(y_pred, snapshot[1])
    pd.testing.assert_frame_equal(df_true, snapshot[2])
    pd.testing.assert_frame_equal(df_pred, snapshot[3])


# --- clustering --------------------------------------------------------------------------------------------------


def test_clustering_identical_matrices(clustered):
    x = clustered
    before = x.copy()
    out = clustering_metrics(x, x)
    assert list(out) == ["ARI", "AMI", "NMI", "Homogeneity"]
    assert all(isinstance(v, float) for v in out.values())
    assert out == pytest.approx({"ARI": 1.0, "AMI": 1.0, "NMI": 1.0, "Homogeneity": 1.0})
    np.testing.assert_array_equal(x, before)


def test_clustering_shuffled_prediction_is_near_chance(clustered):
    x = clustered
    shuffled = x[np.random.default_rng(1).permutation(x.shape[0])]
    out = clustering_metrics(x, shuffled)
    assert abs(out["ARI"]) < 0.1
    assert abs(out["AMI"]) < 0.1


def test_clustering_accepts_frames_and_sparse_without_modifying_them(clustered):
    x = np.abs(clustered)
    df = pd.DataFrame(x, columns=[f"g{i}" for i in range(x.shape[1])])
    df_before = df.copy()
    noisy = df + np.random.default_rng(2).normal(scale=0.1, size=df.shape)
    out = clustering_metrics(df, noisy.iloc[:, ::-1])
    assert out["ARI"] > 0.9
    pd.testing.assert_frame_equal(df, df_before)
    assert clustering_metrics(sparse.csr_matrix(x), x)["ARI"] == pytest.approx(1.0)


def test_clustering_constant_prediction_is_one_cluster(clustered):
    out = clustering_metrics(clustered, np.zeros_like(clustered))
    assert out == pytest.approx({"ARI": 0.0, "AMI": 0.0, "NMI": 0.0, "Homogeneity": 0.0})


def test_clustering_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 3 cells"):
        clustering_metrics(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        clustering_metrics(np.full((5, 3), np.nan), np.ones((5, 3)))


# --- accuracy score ----------------------------------------------------------------------------------------------


def test_accuracy_score_hand_computed_with_ties_and_lower_is_better():
    scores = pd.DataFrame(
        {
            "method": ["A", "B", "C", "D"],
            "SPCC": [0.50, 0.40, 0.40, 0.10],  # ranks 4, 2.5, 2.5, 1
            "RMSE": [1.00, 0.80, 0.90, 0.80],  # lower is better: ranks 1, 3.5, 2, 3.5
            "ARI": [0.20, 0.30, 0.10, 0.00],  # ranks 3, 4, 2, 1
        }
    )
    expected = {
        "A": (4 + 1 + 3) / 4 / 3,
        "B": (2.5 + 3.5 + 4) / 4 / 3,
        "C": (2.5 + 2 + 2) / 4 / 3,
        "D": (1 + 3.5 + 1) / 4 / 3,
    }
    out = accuracy_score(scores)
    assert out.name == "AS"
    assert list(out.index) == ["A", "B", "C", "D"]
    np.testing.assert_allclose(out.to_numpy(), list(expected.values()))
    # methods as the index, a subset of metrics, a custom metric direction
    by_index = scores.set_index("method").assign(Runtime=[10.0, 1.0, 5.0, 2.0])
    out = accuracy_score(by_index, metric_cols=["RMSE", "Runtime"], higher_is_better={"Runtime": False})
    np.testing.assert_allclose(out.to_numpy(), [(1 + 1) / 8, (3.5 + 4) / 8, (2 + 2) / 8, (3.5 + 3) / 8])


def test_accuracy_score_over_datasets():
    scores = pd.DataFrame(
        {
            "dataset": ["d1", "d1", "d2", "d2", "d2"],
            "method": ["A", "B", "A", "B", "C"],
            "JS": [0.1, 0.2, 0.3, 0.2, 0.1],  # d1: A 2, B 1 (of 2); d2: A 1, B 2, C 3 (of 3)
        }
    )
    out = accuracy_score(scores, dataset_col="dataset")
    np.testing.assert_allclose(out.to_numpy(), [(2 / 2 + 1 / 3) / 2, (1 / 2 + 2 / 3) / 2, 3 / 3])


def test_accuracy_score_errors():
    scores = pd.DataFrame({"method": ["A", "B"], "SPCC": [0.1, np.nan], "Foo": [1.0, 2.0]})
    with pytest.raises(ValueError, match="'Foo'"):
        accuracy_score(scores)
    with pytest.raises(ValueError, match="'B/SPCC'"):
        accuracy_score(scores, metric_cols=["SPCC"])
    with pytest.raises(KeyError, match="'SSIM'"):
        accuracy_score(scores, metric_cols=["SSIM"])
    dup = pd.DataFrame({"method": ["A", "A"], "SPCC": [0.1, 0.2]})
    with pytest.raises(ValueError, match="more than once"):
        accuracy_score(dup)


def test_higher_is_better_constant():
    assert HIGHER_IS_BETTER == {
        "SPCC": True,
        "SSIM": True,
        "RMSE": False,
        "JS": False,
        "ARI": True,
        "AMI": True,
        "NMI": True,
        "Homogeneity": True,
    }
    assert sp.metrics.HIGHER_IS_BETTER is HIGHER_IS_BETTER


# --- docstring examples ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["_gene", "_ranking", "_clustering"])
def test_docstring_examples(module):
    import importlib

    mod = importlib.import_module(f"spalstf.metrics.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_agree_with_scipy_references():
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    y_true = rng.poisson(2.0, size=(40, 6)).astype(float)  # many ties
    y_pred = rng.poisson(2.0, size=(40, 6)).astype(float) + y_true
    expected_spcc = [spearmanr(y_true[:, g], y_pred[:, g]).statistic for g in range(6)]
    expected_js = [jensenshannon(y_true[:, g], y_pred[:, g]) ** 2 for g in range(6)]
    np.testing.assert_allclose(spcc(y_true, y_pred), expected_spcc)
    np.testing.assert_allclose(js(y_true, y_pred), expected_js)


def test_anndata_inputs_aligned_by_names(pair):
    import anndata as ad

    y_true, y_pred = pair
    genes = list("abcde")
    a_true = ad.AnnData(sparse.csr_matrix(y_true), var=pd.DataFrame(index=genes))
    a_pred = ad.AnnData(y_pred, var=pd.DataFrame(index=genes))[:, ::-1]
    out = gene_metrics(a_true, a_pred)
    assert list(out.index) == genes
    np.testing.assert_allclose(out.to_numpy(), gene_metrics(y_true, y_pred).to_numpy())


def test_clustering_metrics_keep_torch_threads():
    """scanpy's neighbours reset torch's thread count; a user's one-thread setting must survive the metrics."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        x = pd.DataFrame(rng.random((120, 12)))
        sp.metrics.clustering_metrics(x, x + 0.1 * rng.random((120, 12)), n_neighbors=10, n_pcs=5)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(n)
