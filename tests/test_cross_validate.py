from __future__ import annotations

import importlib.util
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import spalstf as sp
from spalstf._memory import PeakMemory
from spalstf.benchmark import _external_peers, _peers
from spalstf.benchmark._result import CLUSTERING_COLUMNS, RESOURCES_COLUMNS, SCORES_COLUMNS, SKIPPED_PREFIX
from spalstf.benchmark._spage import principal_vectors, spage_impute
from spalstf.tl import CrossValidationResult

FAST = ("spage", "knn", "ridge")
SUMMARY_COLUMNS = [
    "SPCC",
    "SSIM",
    "RMSE",
    "JS",
    "ARI",
    "AMI",
    "NMI",
    "Homogeneity",
    "AS",
    "time_s",
    "peak_memory_mb",
]
HAS_TANGRAM = importlib.util.find_spec("tangram") is not None


def _snapshot(adata) -> dict:
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.array(adata.X, copy=True)
    return {
        "X": X,
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "obsm": {k: np.array(v, copy=True) for k, v in adata.obsm.items()},
        "uns": set(adata.uns.keys()),
        "layers": set(adata.layers.keys()),
    }


def _assert_unchanged(adata, before: dict) -> None:
    now = _snapshot(adata)
    np.testing.assert_array_equal(now["X"], before["X"])
    pd.testing.assert_frame_equal(now["obs"], before["obs"])
    pd.testing.assert_frame_equal(now["var"], before["var"])
    assert set(now["obsm"]) == set(before["obsm"])
    for k, v in before["obsm"].items():
        np.testing.assert_array_equal(now["obsm"][k], v)
    assert now["uns"] == before["uns"]
    assert now["layers"] == before["layers"]


@pytest.fixture(scope="module")
def fast_run(make_pair):
    adata_st, adata_sc = make_pair()
    return adata_st, sp.tl.cross_validate(adata_st, adata_sc, methods=FAST, n_folds=5, random_state=0)


@pytest.fixture(scope="module")
def all_methods_run(make_pair, tiny_model, tiny_train):
    """Every runnable method once, with tiny settings, plus snapshots of the inputs taken before."""
    adata_st, adata_sc = make_pair()
    before = (_snapshot(adata_st), _snapshot(adata_sc))
    kwargs = {
        "spalstf": {**tiny_model, **tiny_train},
        "gimvi": {"max_epochs": 2, "accelerator": "cpu"},
        "tangram": {"num_epochs": 10},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sp.tl.cross_validate(
            adata_st,
            adata_sc,
            methods=("spalstf", "gimvi", "tangram", "spage", "knn", "ridge"),
            n_folds=5,
            method_kwargs=kwargs,
        )
    return adata_st, adata_sc, before, result


# format ----------------------------------------------------------------------------------------------------------
def test_tidy_format(fast_run):
    adata_st, result = fast_run
    assert isinstance(result, CrossValidationResult)
    assert list(result.scores.columns) == SCORES_COLUMNS
    assert list(result.clustering.columns) == CLUSTERING_COLUMNS
    assert list(result.resources.columns) == RESOURCES_COLUMNS
    assert set(result.scores["metric"]) == {"SPCC", "SSIM", "RMSE", "JS"}
    assert set(result.clustering["metric"]) == {"ARI", "AMI", "NMI", "Homogeneity"}
    assert set(result.scores["method"]) == set(FAST)
    assert len(result.resources) == len(FAST) * 5
    assert (result.resources["error"] == "").all()
    assert (result.resources["time_s"] >= 0).all()
    assert (result.resources["peak_memory_mb"] >= 0).all()


def test_every_gene_predicted_once(fast_run):
    adata_st, result = fast_run
    genes = list(adata_st.var_names)
    held = [g for _, h in result.folds for g in h]
    assert sorted(held) == sorted(genes)
    for kept, h in result.folds:
        assert not set(kept) & set(h)
    counts = result.scores.groupby(["method", "metric", "gene"]).size()
    assert (counts == 1).all()
    assert len(counts) == len(FAST) * 4 * len(genes)
    fold_of = {g: f for f, (_, h) in enumerate(result.folds) for g in h}
    assert (result.scores["gene"].map(fold_of) == result.scores["fold"]).all()
    for method in FAST:
        pred = result.predictions[method]
        assert list(pred.columns) == genes
        assert pred.index.equals(adata_st.obs_names)
        assert np.isfinite(pred.to_numpy()).all()


def test_summary_columns_and_as(fast_run):
    _, result = fast_run
    summary = result.summary()
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(summary.index) == list(FAST)
    assert summary.index.name == "method"
    metrics = SUMMARY_COLUMNS[:8]
    expected = sp.metrics.accuracy_score(summary[metrics])
    np.testing.assert_allclose(summary["AS"].to_numpy(), expected.reindex(summary.index).to_numpy())
    assert ((summary["AS"] > 0) & (summary["AS"] <= 1)).all()
    med = result.scores.query("method == 'knn' and metric == 'SPCC'")["value"].median()
    assert summary.loc["knn", "SPCC"] == pytest.approx(med)
    total = result.resources.query("method == 'ridge'")["time_s"].sum()
    assert summary.loc["ridge", "time_s"] == pytest.approx(total)


def test_scores_match_gene_metrics(fast_run):
    adata_st, result = fast_run
    pred = result.predictions["ridge"]
    truth = adata_st.to_df()
    direct = sp.metrics.gene_metrics(truth, pred, metrics=("SPCC", "RMSE"))
    direct["JS"] = sp.metrics.gene_metrics(truth, pred.clip(lower=0), metrics="JS")["JS"]
    tidy = result.scores.query("method == 'ridge'").pivot(index="gene", columns="metric", values="value")
    for metric in ("SPCC", "RMSE", "JS"):
        np.testing.assert_allclose(tidy.loc[direct.index, metric], direct[metric])


# all methods, inputs ---------------------------------------------------------------------------------------------
def test_all_methods_run(all_methods_run):
    *_, result = all_methods_run
    errors = result.resources.set_index(["method", "fold"])["error"]
    for method in ("spalstf", "gimvi", "spage", "knn", "ridge"):
        assert (errors.loc[method] == "").all(), errors.loc[method].tolist()
    if HAS_TANGRAM:
        assert (errors.loc["tangram"] == "").all(), errors.loc["tangram"].tolist()
    summary = result.summary()
    assert list(summary.columns) == SUMMARY_COLUMNS
    ran = [m for m in summary.index if m != "tangram" or HAS_TANGRAM]
    assert summary.loc[ran, "AS"].notna().all()
    assert summary.loc[ran, ["SPCC", "ARI"]].notna().all().all()


def test_inputs_not_modified(all_methods_run):
    adata_st, adata_sc, (st_before, sc_before), _ = all_methods_run
    _assert_unchanged(adata_st, st_before)
    _assert_unchanged(adata_sc, sc_before)


def test_held_genes_removed_before_method_sees_data(pair, monkeypatch):
    adata_st, adata_sc = pair
    adata_st.layers["counts"] = adata_st.X.copy()  # a layer with every gene must not reach the method
    adata_st.obsm["X_pca"] = np.zeros((adata_st.n_obs, 2))
    adata_st.obs["total_counts"] = np.asarray(adata_st.X.sum(axis=1)).ravel()  # computed from every gene
    seen = []
    real = _peers.PEERS["knn"]

    def spy(st, ref, held_genes, *, random_state, **kwargs):
        assert not set(held_genes) & set(st.var_names)
        assert set(held_genes) <= set(ref.var_names)
        assert not st.layers.keys()
        assert set(st.obsm.keys()) <= {"spatial"}
        assert st.obs.columns.empty and st.obs_names.equals(adata_st.obs_names)
        seen.append((list(st.var_names), list(held_genes)))
        return real(st, ref, held_genes, random_state=random_state, **kwargs)

    monkeypatch.setitem(_peers.PEERS, "knn", spy)
    result = sp.tl.cross_validate(adata_st, adata_sc, methods="knn", n_folds=4)
    assert [(k, h) for k, h in seen] == result.folds
    assert (result.resources["error"] == "").all()


# failures ------------------------------------------------------------------------------------------------------
def test_failing_method_recorded_others_continue(pair, monkeypatch):
    adata_st, adata_sc = pair
    real = _peers.PEERS["ridge"]
    calls = []

    def flaky(st, ref, held_genes, *, random_state, **kwargs):
        calls.append(held_genes)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(st, ref, held_genes, random_state=random_state, **kwargs)

    monkeypatch.setitem(_peers.PEERS, "ridge", flaky)
    result = sp.tl.cross_validate(adata_st, adata_sc, methods=("ridge", "knn"), n_folds=5)
    res = result.resources.set_index(["method", "fold"])
    assert res.loc[("ridge", 1), "error"] == "RuntimeError: boom"
    assert (res.drop(index=("ridge", 1))["error"] == "").all()
    failed_genes = result.folds[1][1]
    assert result.predictions["ridge"][failed_genes].isna().all().all()
    assert np.isfinite(result.predictions["ridge"].drop(columns=failed_genes).to_numpy()).all()
    ridge_genes = set(result.scores.query("method == 'ridge'")["gene"])
    assert not ridge_genes & set(failed_genes)
    assert set(result.scores.query("method == 'knn'")["gene"]) == set(adata_st.var_names)
    assert "ridge" not in set(result.clustering["method"])
    summary = result.summary()
    assert np.isnan(summary.loc["ridge", "AS"])
    assert summary.loc["knn", "AS"] == pytest.approx(1.0)  # the only method ranked


def test_bad_output_recorded(pair, monkeypatch):
    adata_st, adata_sc = pair

    def bad(st, ref, held_genes, *, random_state, **kwargs):
        out = pd.DataFrame(1.0, index=st.obs_names, columns=list(held_genes))
        out.iloc[0, 0] = np.nan
        return out.iloc[::-1]  # cells in another order: aligned by name

    monkeypatch.setitem(_peers.PEERS, "knn", bad)
    result = sp.tl.cross_validate(adata_st, adata_sc, methods="knn", n_folds=5)
    assert result.resources["error"].str.contains("non-finite predictions").all()
    first = [h[0] for _, h in result.folds]
    assert result.predictions["knn"][first].isna().all().all()


def test_tangram_skipped_when_absent(pair, monkeypatch):
    adata_st, adata_sc = pair
    monkeypatch.setitem(sys.modules, "tangram", None)  # makes `import tangram` raise ImportError
    result = sp.tl.cross_validate(adata_st, adata_sc, methods=("tangram", "knn"), n_folds=5)
    res = result.resources[result.resources["method"] == "tangram"]
    assert len(res) == 5
    assert res["error"].str.startswith(SKIPPED_PREFIX).all()
    assert res["error"].str.contains("tangram-sc").all()
    assert res["time_s"].isna().all()
    assert result.predictions["tangram"].isna().all().all()
    summary = result.summary()
    assert summary.loc["tangram"].drop(["AS"]).isna().all()
    assert np.isnan(summary.loc["tangram", "AS"])
    assert summary.loc["knn", "AS"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("methods", "match"),
    [
        (("knn", "magic"), "Unknown method 'magic'; valid methods: .*spalstf.*gimvi.*tangram.*spage.*knn.*ridge"),
        (("stdiff",), "stDiff is not runnable here"),
        ((), "No method"),
        (("knn", "knn"), "given twice"),
    ],
)
def test_invalid_methods(pair, methods, match):
    adata_st, adata_sc = pair
    with pytest.raises(ValueError, match=match):
        sp.tl.cross_validate(adata_st, adata_sc, methods=methods)


def test_invalid_arguments(pair):
    adata_st, adata_sc = pair
    with pytest.raises(ValueError, match="method_kwargs has options for"):
        sp.tl.cross_validate(adata_st, adata_sc, methods="knn", method_kwargs={"ridge": {"alpha": 1.0}})
    with pytest.raises(ValueError, match="share 3 gene"):
        sp.tl.cross_validate(adata_st[:, :3].copy(), adata_sc, methods="knn", n_folds=5)


@pytest.mark.parametrize(
    ("method", "options", "match"),
    [
        ("spalstf", {"n_neighbour": 4}, "'n_neighbour'.*did you mean 'n_neighbors'"),
        ("knn", {"n_neighbour": 4}, "'n_neighbour'.*did you mean 'n_neighbors'"),
        ("knn", {"random_state": 1}, "cross_validate sets itself"),
    ],
)
def test_a_misspelt_method_option_fails_before_any_fold(pair, monkeypatch, method, options, match):
    adata_st, adata_sc = pair
    calls = []
    monkeypatch.setitem(_peers.PEERS, "ridge", lambda *a, **k: calls.append(1))  # nothing may run
    with pytest.raises(TypeError, match=match):
        sp.tl.cross_validate(adata_st, adata_sc, methods=[method, "ridge"], method_kwargs={method: options})
    assert not calls


# SpaGE -----------------------------------------------------------------------------------------------------------
def _linear_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(900, 4))
    loadings = rng.normal(size=(4, 20))
    kept = latent @ loadings + 0.2 * rng.normal(size=(900, 20))
    coef = rng.normal(size=20)
    target = kept @ coef  # the held-out gene is a linear function of the kept genes
    ref, st = slice(0, 600), slice(600, 900)
    # the modalities differ by a per-gene scale and shift (the z-scoring of each dataset removes it)
    st_kept = 3.0 * kept[st] + 5.0
    return st_kept, kept[ref], target[ref, None], target[st]


def test_spage_recovers_linear_gene():
    st, ref, ref_target, truth = _linear_data()
    pred = spage_impute(st, ref, ref_target)
    assert pred.shape == (300, 1)
    assert np.corrcoef(pred[:, 0], truth)[0, 1] > 0.8


def test_spage_through_cross_validate(make_pair):
    adata_st, adata_sc = make_pair()
    result = sp.tl.cross_validate(adata_st, adata_sc, methods="spage", n_folds=5)
    assert result.summary().loc["spage", "SPCC"] > 0.3  # cell-type means drive every gene of the synthetic pair


def test_principal_vectors():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8))
    pv = principal_vectors(a, b, n_pv=4)
    np.testing.assert_allclose(pv.reference @ pv.reference.T, np.eye(4), atol=1e-10)
    np.testing.assert_allclose(pv.spatial @ pv.spatial.T, np.eye(4), atol=1e-10)
    cos = np.sum(pv.reference * pv.spatial, axis=1)
    np.testing.assert_allclose(cos, pv.similarity, atol=1e-10)
    assert np.all(np.diff(pv.similarity) <= 1e-12)
    with pytest.raises(ValueError, match="n_pv"):
        principal_vectors(a, b, n_pv=9)


def test_spage_neighbour_weights():
    from spalstf.benchmark._spage import _neighbour_weights

    w = _neighbour_weights(np.array([0.1, 0.3, 1.2]))
    np.testing.assert_allclose(w, [0.75, 0.25, 0.0])  # (1 - 0.1/0.4) / 1, (1 - 0.3/0.4) / 1; d >= 1 dropped
    np.testing.assert_allclose(_neighbour_weights(np.array([0.2, 1.5])), [1.0, 0.0])
    np.testing.assert_allclose(_neighbour_weights(np.array([1.2, 1.5])), [0.5, 0.5])
    np.testing.assert_allclose(_neighbour_weights(np.zeros(4)), [0.25] * 4)


# pieces ----------------------------------------------------------------------------------------------------------
def test_gimvi_spatial_counts():
    counts = np.array([[1.0, 2.0], [3.0, 0.0]])
    out, factor = _external_peers.gimvi_spatial_counts(counts, np.ones((4, 2)))
    assert factor == 1.0
    np.testing.assert_array_equal(out, counts)
    out, factor = _external_peers.gimvi_spatial_counts(np.array([[0.25, 0.25], [0.5, 0.0]]), np.full((3, 2), 50.0))
    assert factor == pytest.approx(200.0)
    np.testing.assert_array_equal(out, [[50.0, 50.0], [100.0, 0.0]])


def test_peak_memory():
    with PeakMemory(interval=0.01) as mem:
        x = np.ones(25_000_000)  # 200 MB
        x += 1
        del x
    assert 150 < mem.peak_mb < 400


def test_gimvi_seed_leaves_scvi_settings_and_environment_as_found(monkeypatch):
    import os

    import scvi
    import torch

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    before = (scvi.settings.seed, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    for _ in range(2):
        with _external_peers._scvi_seed(3):
            assert scvi.settings.seed == 3
    assert (scvi.settings.seed, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == before
    assert "XLA_FLAGS" not in os.environ  # scvi's setter appends to it on every call
    assert os.environ["PL_GLOBAL_SEED"] == "11"


@pytest.mark.skipif(not HAS_TANGRAM, reason="tangram-sc is not installed")
def test_tangram_seeded_and_global_rng_restored(pair):
    adata_st, adata_sc = pair
    st = adata_st[:, 4:].copy()
    held = list(adata_st.var_names[:4])
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    first = _external_peers.impute_tangram(st, adata_sc, held, random_state=0, num_epochs=5)
    assert np.random.rand() == expected  # the global generator is left as it was
    second = _external_peers.impute_tangram(st, adata_sc, held, random_state=0, num_epochs=5)
    pd.testing.assert_frame_equal(first, second)
    assert list(first.columns) == held
    assert first.index.equals(st.obs_names)


def test_importing_tangram_leaves_the_root_logger_alone(monkeypatch):
    import importlib
    import logging
    import types

    from spalstf.benchmark import _external_peers

    def fake_import(name):  # what tangram's import does: logging.basicConfig(level=INFO)
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger().addHandler(logging.StreamHandler())
        return types.SimpleNamespace(__name__=name)

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    monkeypatch.setattr(importlib, "import_module", fake_import)
    assert _external_peers._import_tangram().__name__ == "tangram"
    assert (root.level, list(root.handlers)) == before


def test_truth_log1p_for_counts_and_split_seed(make_pair):
    adata_st, adata_sc = make_pair()
    res = sp.tl.cross_validate(
        adata_st, adata_sc, methods=("ridge",), truth="auto", random_state=3, split_random_state=0
    )
    assert res.truth == "log1p_cp10k"  # Poisson counts
    X = adata_st.X.astype(float)
    expected = pd.DataFrame(
        np.log1p(X / X.sum(1, keepdims=True) * 1e4), index=adata_st.obs_names, columns=adata_st.var_names
    )
    direct = sp.metrics.gene_metrics(expected, res.predictions["ridge"], metrics="SPCC")["SPCC"]
    tidy = res.scores.query("metric == 'SPCC'").set_index("gene")["value"]
    np.testing.assert_allclose(tidy.loc[direct.index], direct)
    # the folds follow split_random_state, not the methods' seed
    assert res.folds == sp.tl.cross_validate(adata_st, adata_sc, methods=("ridge",), random_state=0).folds
    intensities = adata_st.copy()
    intensities.X = intensities.X / 3.0
    assert sp.tl.cross_validate(intensities, adata_sc, methods=("ridge",), truth="auto").truth == "as_given"
    with pytest.raises(ValueError, match="truth must be one of"):
        sp.tl.cross_validate(adata_st, adata_sc, methods=("ridge",), truth="counts")
