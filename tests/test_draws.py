"""Calibrated draws (multiple imputation) and the tests pooled over them: shapes, space, seeding, files, calibration,
and the pooled tests on a pair where the truth is known (null genes called at about the nominal rate, patterns found).
"""

from __future__ import annotations

import logging

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import squidpy as sq
from scipy import sparse, stats

import spalstf as sp
from spalstf.model import SpaLSTF, _draws
from spalstf.model._calibration import platform_values
from spalstf.model._spatial_input import SpatialInput

N_TYPES, N_PANEL, N_LIKE_PANEL, N_PATTERN, N_NULL = 4, 30, 20, 6, 30
SIDE = 24  # spatial cells on a SIDE x SIDE grid, one cell type per quadrant


def _pair_with_truth(seed: int = 0):
    """(adata_st, adata_sc, truth): cell types fill the four quadrants of a grid; every gene has Poisson counts.

    The panel measured ``N_PANEL`` type-specific genes whose totals are the same in every type (so that a gene with
    the same counts everywhere has the same platform values everywhere); beyond it, ``N_LIKE_PANEL`` genes drawn as the
    panel's (exchangeable with them: the calibration's promise applies), ``N_PATTERN`` genes with strong type
    differences (a spatial pattern, a difference between the left and right halves) and ``N_NULL`` genes with the
    same mean in every type (no pattern, no difference). ``truth`` holds their platform values.
    """
    rng = np.random.default_rng(seed)
    panel = rng.gamma(2.0, 3.0, size=(N_TYPES, N_PANEL + N_LIKE_PANEL)) + 0.5
    panel[:, :N_PANEL] *= 6.0 * N_PANEL / panel[:, :N_PANEL].sum(axis=1, keepdims=True)  # one library for all types
    # types 0 and 2 fill the left quadrants, 1 and 3 the right ones: the pattern genes are 12x higher on the right
    pattern = np.tile(np.array([[1.0], [12.0], [1.0], [12.0]]), (1, N_PATTERN))
    null = np.full((N_TYPES, N_NULL), 5.0)
    means = np.hstack([panel, pattern, null])
    genes = [f"p{i}" for i in range(N_PANEL)] + [f"like{i}" for i in range(N_LIKE_PANEL)]
    genes += [f"pat{i}" for i in range(N_PATTERN)] + [f"null{i}" for i in range(N_NULL)]
    n_ref = 1200
    ref_types = rng.integers(0, N_TYPES, n_ref)
    adata_sc = ad.AnnData(
        X=rng.poisson(means[ref_types]).astype(np.float32),
        obs=pd.DataFrame(index=[f"sc{i}" for i in range(n_ref)]),
        var=pd.DataFrame(index=genes),
    )
    x, y = np.meshgrid(np.arange(SIDE), np.arange(SIDE))
    coords = np.column_stack([x.ravel(), y.ravel()]).astype(float)
    st_types = (coords[:, 0] >= SIDE / 2).astype(int) + 2 * (coords[:, 1] >= SIDE / 2).astype(int)
    full = rng.poisson(2.0 * means[st_types]).astype(np.float32)
    n_st = len(coords)
    adata_st = ad.AnnData(
        X=full[:, :N_PANEL].copy(),
        obs=pd.DataFrame(
            {"half": np.where(coords[:, 0] >= SIDE / 2, "right", "left")}, index=[f"st{i}" for i in range(n_st)]
        ),
        var=pd.DataFrame(index=genes[:N_PANEL]),
    )
    adata_st.obsm["spatial"] = coords
    truth = pd.DataFrame(
        platform_values(full[:, N_PANEL:], full[:, :N_PANEL].sum(axis=1), 1e4),
        index=adata_st.obs_names,
        columns=genes[N_PANEL:],
    )
    return adata_st, adata_sc, truth


@pytest.fixture(scope="module")
def known(one_thread, tiny_model):
    """A closed-form model (no training) of the pair with truth, with squidpy's graph on the spatial data."""
    adata_st, adata_sc, truth = _pair_with_truth()
    reference = adata_sc.copy()
    SpaLSTF.setup_anndata(reference)
    model = SpaLSTF(reference, adata_st, **{**tiny_model, "blend": ("ridge", "neighbours")})
    model.skip_training("test")
    sq.gr.spatial_neighbors(adata_st, coord_type="generic", n_neighs=6)
    return model, adata_st, truth


def _central_coverage(draws: np.ndarray, truth: np.ndarray, level: float) -> float:
    """Coverage of the central ``level`` interval between order statistics of the K draws (closed interval)."""
    K = draws.shape[-1]
    s = np.sort(draws, axis=-1)
    lo = max(int(np.floor((K + 1) * (1 - level) / 2)), 1) - 1
    hi = min(int(np.ceil((K + 1) * (1 + level) / 2)), K) - 1
    return float(np.mean((truth >= s[..., lo, None]) & (truth <= s[..., hi, None])))


def test_draws_have_scvi_shape_in_the_platform_space_and_cover_at_their_level(known):
    model, adata_st, truth = known
    draws = model.posterior_predictive_sample(adata_st, n_samples=40)
    assert draws.shape == (adata_st.n_obs, len(model.imputed_genes), 40) and draws.dtype == np.float32
    assert np.isfinite(draws).all() and (draws >= 0).all()
    like = [i for i, g in enumerate(model.imputed_genes) if g.startswith("like")]
    values = truth[model.imputed_genes].to_numpy()[:, like, None]
    for level in (0.5, 0.8, 0.9):
        assert abs(_central_coverage(draws[:, like], values, level) - level) <= 0.05, level
    # the draws are spread around the calibrated point: their median is close to the interval's point
    mean, _, lower, upper = model.impute(adata_st, interval=0.9, progress_bar=False)
    assert np.median(np.abs(np.median(draws, axis=2) - mean.to_numpy())) < 0.2 * np.median((upper - lower).to_numpy())


def test_draws_are_seeded_per_cell_gene_and_draw(known):
    model, adata_st, _ = known
    genes = model.imputed_genes
    base = model.posterior_predictive_sample(adata_st, n_samples=6, random_state=3)
    np.testing.assert_array_equal(base, model.posterior_predictive_sample(adata_st, n_samples=6, random_state=3))
    assert not np.array_equal(base, model.posterior_predictive_sample(adata_st, n_samples=6, random_state=4))
    batched = model.posterior_predictive_sample(adata_st, n_samples=6, random_state=3, batch_size=7)
    np.testing.assert_allclose(batched, base, rtol=1e-5, atol=1e-5)  # float32 rounding of the point estimate
    subset = [genes[5], genes[0]]
    np.testing.assert_array_equal(
        base[:, [5, 0]], model.posterior_predictive_sample(adata_st, 6, gene_list=subset, random_state=3)
    )
    np.testing.assert_array_equal(base[..., :2], model.posterior_predictive_sample(adata_st, 2, random_state=3))
    order = np.random.default_rng(0).permutation(adata_st.n_obs)
    shuffled = model.posterior_predictive_sample(adata_st[order].copy(), n_samples=6, random_state=3)
    np.testing.assert_allclose(shuffled, base[order], rtol=1e-5, atol=1e-5)


def test_draws_never_see_an_imputed_gene_and_leave_the_input_unchanged(known):
    model, adata_st, truth = known
    before = model.posterior_predictive_sample(adata_st, n_samples=4)
    # the same cells with the imputed genes measured (as garbage) beside the panel: nothing changes
    extra = ad.AnnData(
        X=np.hstack([adata_st.X, np.random.default_rng(1).poisson(50.0, size=truth.shape).astype(np.float32)]),
        obs=adata_st.obs.copy(),
        var=pd.DataFrame(index=list(adata_st.var_names) + list(truth.columns)),
        obsm={"spatial": adata_st.obsm["spatial"].copy()},
    )
    calibration = model.interval_calibration_  # set by the call above
    del model.interval_calibration_  # recalibrated on the wider data: it must use the panel genes only
    try:
        wider = model.posterior_predictive_sample(extra, n_samples=4)
        assert sorted(model.interval_calibration_.calibration_genes) == sorted(adata_st.var_names)
    finally:
        model.interval_calibration_ = calibration
    np.testing.assert_array_equal(before, wider)
    copy = adata_st.copy()
    model.posterior_predictive_sample(adata_st, n_samples=2)
    assert set(adata_st.obsm) == set(copy.obsm) and set(adata_st.uns) == set(copy.uns)
    np.testing.assert_array_equal(adata_st.X, copy.X)


def test_draws_go_to_a_file_chunk_by_chunk_and_equal_those_in_memory(known, tmp_path, monkeypatch):
    model, adata_st, _ = known
    in_memory = model.posterior_predictive_sample(adata_st, n_samples=5)
    monkeypatch.setattr(_draws, "DRAW_CHUNK_ENTRIES", adata_st.n_obs * 5 * 4)  # four genes per chunk
    dataset = model.posterior_predictive_sample(adata_st, n_samples=5, out=tmp_path / "draws.h5")
    try:
        assert dataset.shape == in_memory.shape
        np.testing.assert_array_equal(dataset[:], in_memory)
        assert [n.decode() for n in dataset.file["var_names"][:]] == model.imputed_genes
    finally:
        dataset.file.close()
    assert not (tmp_path / "draws.h5.partial").exists()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.posterior_predictive_sample(adata_st, n_samples=5, out=tmp_path / "draws.h5")
    with pytest.raises(ValueError, match=r"ending in '\.h5'"):
        model.posterior_predictive_sample(adata_st, n_samples=5, out=tmp_path / "draws.npy")
    with h5py.File(tmp_path / "draws.h5") as f:
        assert f["draws"].attrs["axes"] == "cells, genes, draws"


def test_one_gene_too_many_draws_for_a_chunk_is_drawn_in_runs_with_the_same_draws_and_tests(
    known, tmp_path, monkeypatch
):
    """Where one gene's draws on every cell exceed a chunk, they are made in runs of draws: memory stays bounded,
    and the draws, the file and the pooled tests are those of one chunk."""
    model, adata_st, _ = known
    genes = model.imputed_genes[:3]
    kw = {"n_samples": 7, "gene_list": genes}
    whole = model.posterior_predictive_sample(adata_st, **kw)
    moran = model.spatial_autocorr(adata_st, **kw)
    de = model.differential_expression(adata_st, "half", "left", **kw)
    monkeypatch.setattr(_draws, "DRAW_CHUNK_ENTRIES", adata_st.n_obs * 3)  # runs of 3 draws of one gene
    plan, _ = model._draw_plan(SpatialInput.prepare(adata_st, None), genes, 0, 256, "spatial")
    assert plan.chunks(7)[:4] == [
        (slice(0, 1), slice(0, 3)),
        (slice(1, 2), slice(0, 3)),
        (slice(2, 3), slice(0, 3)),
        (slice(0, 1), slice(3, 6)),
    ]
    np.testing.assert_allclose(model.posterior_predictive_sample(adata_st, **kw), whole, rtol=0, atol=1e-6)
    dataset = model.posterior_predictive_sample(adata_st, out=tmp_path / "runs.h5", **kw)
    try:
        np.testing.assert_allclose(dataset[:], whole, rtol=0, atol=1e-6)
    finally:
        dataset.file.close()
    pd.testing.assert_frame_equal(model.spatial_autocorr(adata_st, **kw), moran, rtol=1e-9)
    pd.testing.assert_frame_equal(model.differential_expression(adata_st, "half", "left", **kw), de, rtol=1e-9)


def test_a_test_the_cells_cannot_make_fails_before_an_uncalibrated_model_is_calibrated(known):
    """Too few cells with signal for Moran's I, or groups without them, raise before the model calibrates itself on
    adata_st: the failed call leaves the model as it was."""
    model, adata_st, _ = known
    saved = model.interval_calibration_ or model.calibrate_intervals(adata_st)
    kw = {"n_samples": 2, "gene_list": model.imputed_genes[:2]}
    silent = adata_st.copy()
    silent.X[2:] = 0  # two cells with signal
    labels = np.full(silent.n_obs, None, dtype=object)
    labels[2:12], labels[12:22] = "a", "b"  # groups of cells without signal
    silent.obs["g"] = pd.Categorical(labels)
    try:
        model.interval_calibration_ = None
        with pytest.raises(ValueError, match="at least 3 cells with signal"):
            model.spatial_autocorr(silent, **kw)
        with pytest.raises(ValueError, match="group1 has 10 labelled cell\\(s\\), 0 of them with signal"):
            model.differential_expression(silent, "g", "a", "b", **kw)
        with pytest.raises(ValueError, match="No group of obs\\['g'\\]"):
            model.rank_genes_groups(silent, "g", **kw)
        assert model.interval_calibration_ is None
    finally:
        model.interval_calibration_ = saved


def test_cells_without_signal_get_undefined_draws(known):
    model, adata_st, _ = known
    silent = adata_st.copy()
    silent.X[:3] = 0
    draws = model.posterior_predictive_sample(silent, n_samples=3)
    assert np.isnan(draws[:3]).all() and np.isfinite(draws[3:]).all()


def test_pooled_tests_call_null_genes_at_about_the_nominal_rate_and_find_strong_patterns(known):
    """Null genes (the same mean everywhere) are called about as often as the level allows, though the point estimate
    treated as data calls nearly all of them; genes with a strong left/right pattern are found by both tests."""
    model, adata_st, truth = known
    nulls = [g for g in model.imputed_genes if g.startswith("null")]
    patterns = [g for g in model.imputed_genes if g.startswith("pat")]

    moran = model.spatial_autocorr(adata_st, n_samples=20)
    de = model.differential_expression(adata_st, "half", "right", n_samples=20)
    assert (moran.loc[patterns, "pvalue_adj"] < 0.05).all()
    assert (de.loc[patterns, "pvalue_adj"] < 0.05).all()
    assert (de.loc[patterns, "mean_difference"].abs() > 1).all()
    assert (moran.loc[nulls, "pvalue"] < 0.05).mean() <= 0.15
    assert (de.loc[nulls, "pvalue"] < 0.05).mean() <= 0.15
    assert moran.loc[nulls, "fraction_missing_information"].median() > 0.5

    # the point estimate treated as data (single imputation): the null genes look patterned and different
    graph = _draws.MoranGraph.from_connectivities(adata_st.obsp["spatial_connectivities"])
    point = model.impute(adata_st, interval=0.9, progress_bar=False).mean[nulls].to_numpy()
    single = _draws.pooled_moran(graph.moran(point)[None], graph)["pvalue"]
    assert (single < 0.05).mean() >= 0.5
    right = adata_st.obs["half"].to_numpy() == "right"
    single_de = stats.ttest_ind(point[right], point[~right], equal_var=False).pvalue
    assert (single_de < 0.05).mean() >= 0.5
    # and the measured values agree with the draws, not with the point estimate
    measured = stats.ttest_ind(truth.loc[right, nulls], truth.loc[~right, nulls], equal_var=False).pvalue
    assert (measured < 0.05).mean() <= 0.15


def test_moran_matches_squidpy_and_pooling_follows_rubins_rules(known):
    _, adata_st, truth = known
    graph = _draws.MoranGraph.from_connectivities(adata_st.obsp["spatial_connectivities"])
    genes = ad.AnnData(truth.to_numpy(), obs=adata_st.obs, obsp=dict(adata_st.obsp), uns=dict(adata_st.uns))
    genes.var_names = truth.columns
    sq.gr.spatial_autocorr(genes, mode="moran", n_perms=None)
    squidpy = genes.uns["moranI"].reindex(truth.columns)
    np.testing.assert_allclose(graph.moran(truth.to_numpy()), squidpy["I"], rtol=1e-6)
    single = _draws.pooled_moran(graph.moran(truth.to_numpy())[None], graph)
    np.testing.assert_allclose(single["pvalue"], squidpy["pval_norm"], rtol=1e-5, atol=1e-12)

    # Rubin: identical draws leave the complete-data test; spread between draws widens the variance by (1 + 1/K) B
    x1, x2 = np.random.default_rng(0).normal(size=(2, 50, 3, 1))
    same = _draws.pooled_difference(np.repeat(x1, 4, axis=2), np.repeat(x2, 4, axis=2))
    np.testing.assert_allclose(same["statistic"], stats.ttest_ind(x1[..., 0], x2[..., 0], equal_var=False).statistic)
    assert (same["fraction_missing_information"] == 0).all()
    q, T, df, lam = _draws.rubin(np.array([[1.0], [3.0]]), np.array([2.0]))
    assert q[0] == 2.0 and T[0] == pytest.approx(2.0 + 1.5 * 2.0) and lam[0] == pytest.approx(0.6)
    assert df[0] == pytest.approx(1 / 0.36)  # (K - 1) / lam**2 with complete-data df infinite


def test_group_sums_give_the_tests_of_each_group_copied_out():
    """rank_genes_groups takes every group's means and variances from sums over all groups at once; they equal those
    of each group's values taken out, including a group against the rest and two groups 10 apart (the span of the
    platform's log1p values), where sums of squares lose the most digits."""
    rng = np.random.default_rng(0)
    values = np.log1p(rng.gamma(0.5, 2.0, (400, 3, 5))) + 10.0 * (np.arange(400) < 200)[:, None, None]
    labels = rng.integers(0, 4, 400)
    masks = np.stack([labels == 0, labels != 0, labels == 1, labels == 2, np.arange(400) < 200, np.arange(400) >= 200])
    moments = _draws.GroupMoments.of_masks(values, masks, rows=4)
    for i, mask in enumerate(masks):
        np.testing.assert_allclose(moments.mean[i], values[mask].mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(moments.var[i], values[mask].var(axis=0, ddof=1), rtol=1e-9)
    for i, j in ((0, 1), (2, 3), (4, 5)):
        pooled = _draws.pooled_difference_moments(moments, moments, i, j)
        direct = _draws.pooled_difference(values[masks[i]], values[masks[j]])
        for key, value in direct.items():
            np.testing.assert_allclose(pooled[key], value, rtol=1e-9, err_msg=key)


def test_tl_wrappers_write_their_tables_into_uns_and_refuse_a_foreign_key(known):
    model, adata_st, _ = known
    genes = model.imputed_genes[:4]
    result = sp.tl.spatial_autocorr(adata_st, model, n_samples=4, gene_list=genes, copy=True)
    assert "spalstf_moranI" not in adata_st.uns
    table = result.uns["spalstf_moranI"]["results"]
    assert sorted(table.index) == sorted(genes) and {"I", "pvalue", "pvalue_adj"} <= set(table.columns)
    pd.testing.assert_frame_equal(table, model.spatial_autocorr(adata_st, n_samples=4, gene_list=genes))
    sp.tl.differential_expression(result, model, "half", "left", "right", n_samples=4, gene_list=genes)
    assert result.uns["spalstf_de"]["params"]["group2"] == ["right"]
    sp.tl.differential_expression(result, model, "half", "left", n_samples=4, gene_list=genes)  # its own key: replaced
    params = result.uns["spalstf_de"]["params"]
    assert params["function"] == "differential_expression" and params["gene_list"] == genes
    sp.tl.spatial_autocorr(result, model, n_samples=4, spatial_key="spatial", key_added="moran_all")
    params = result.uns["moran_all"]["params"]  # what changes the result is recorded: options passed on too
    assert params["gene_list"] == "all imputed genes" and params["spatial_key"] == "spatial"
    result.uns["mine"] = {"something": 1}
    with pytest.raises(ValueError, match="did not write"):
        sp.tl.spatial_autocorr(result, model, n_samples=4, key_added="mine")
    # another test's result under the same key is not replaced
    with pytest.raises(ValueError, match=r"holds a result of sp\.tl\.differential_expression, not of sp\.tl\.spatial"):
        sp.tl.spatial_autocorr(result, model, n_samples=4, gene_list=genes, key_added="spalstf_de")
    assert result.uns["spalstf_de"]["params"]["function"] == "differential_expression"


def test_rank_genes_groups_tests_every_group_from_one_set_of_draws(known, recording_handler):
    """Each group against the rest (or a reference) gives what differential_expression gives for that group, genes
    ranked by statistic as scanpy ranks them, and the strong right-half genes come out for the right quadrants."""
    model, adata_st, _ = known
    adata = adata_st.copy()
    x, y = adata.obsm["spatial"].T
    quadrant = np.where(x >= SIDE / 2, 1, 0) + 2 * np.where(y >= SIDE / 2, 1, 0)
    adata.obs["quadrant"] = pd.Categorical([f"q{q}" for q in quadrant], categories=["q3", "q0", "q1", "q2", "unused"])
    genes = [g for g in model.imputed_genes if g.startswith(("pat", "null"))][:12]

    ranked = model.rank_genes_groups(adata, "quadrant", n_samples=4, gene_list=genes)
    assert list(dict.fromkeys(ranked["group"])) == ["q3", "q0", "q1", "q2"]  # the categories' order, used ones
    for group in ("q3", "q0"):
        one = ranked[ranked["group"] == group].set_index("gene").drop(columns="group")
        assert one["statistic"].is_monotonic_decreasing  # highest first, as scanpy's
        alone = model.differential_expression(adata, "quadrant", group, n_samples=4, gene_list=genes)
        pd.testing.assert_frame_equal(one.loc[alone.index], alone, check_names=False)
    right = ranked[ranked["group"].isin(["q1", "q3"]) & ranked["gene"].str.startswith("pat")]
    assert (right["pvalue_adj"] < 0.05).all() and (right["mean_difference"] > 0).all()
    pd.testing.assert_frame_equal(
        ranked, model.rank_genes_groups(adata, "quadrant", "all", n_samples=4, gene_list=genes)
    )

    against = model.rank_genes_groups(adata, "quadrant", reference="q0", n_samples=4, gene_list=genes)
    assert "q0" not in set(against["group"])
    q1 = against[against["group"] == "q1"].set_index("gene").drop(columns="group")
    alone = model.differential_expression(adata, "quadrant", "q1", "q0", n_samples=4, gene_list=genes)
    pd.testing.assert_frame_equal(q1.loc[alone.index], alone, check_names=False)

    # integer labels: numeric order, an integer reference; cells without a label are in no group and not in the rest
    adata.obs["number"] = quadrant * 5  # 0, 5, 10, 15: as strings "10" would sort before "5"
    numbered = model.rank_genes_groups(adata, "number", reference=0, n_samples=4, gene_list=genes)
    assert list(dict.fromkeys(numbered["group"])) == ["5", "10", "15"]
    adata.obs["partly"] = pd.Series(np.where(quadrant == 2, np.nan, quadrant), index=adata.obs_names)
    partly = model.rank_genes_groups(adata, "partly", ["1.0"], n_samples=4, gene_list=genes).set_index("gene")
    q1_vs_q03 = model.differential_expression(adata, "quadrant", "q1", ["q0", "q3"], n_samples=4, gene_list=genes)
    np.testing.assert_allclose(partly.loc[q1_vs_q03.index, "pvalue"], q1_vs_q03["pvalue"])

    result = sp.tl.rank_genes_groups(adata, model, "quadrant", ["q1"], n_samples=4, gene_list=genes, copy=True)
    stored = result.uns["spalstf_rank_genes_groups"]
    assert stored["params"]["groups"] == ["q1"] and stored["params"]["reference"] == "rest"
    assert set(stored["results"]["group"]) == {"q1"}

    with pytest.raises(ValueError, match="reference='q9'"):
        model.rank_genes_groups(adata, "quadrant", reference="q9", n_samples=2)
    with pytest.raises(ValueError, match="not compared with itself"):
        model.rank_genes_groups(adata, "quadrant", ["q0", "q1"], reference="q0", n_samples=2)
    with pytest.raises(TypeError, match=r"\['q1'\]"):
        model.rank_genes_groups(adata, "quadrant", "q1", n_samples=2)
    # a group without 2 cells with signal: left out with a warning when every group is tested, an error when named
    adata.obs["solo"] = np.where(np.arange(adata.n_obs) == 0, "alone", np.where(quadrant < 2, "bottom", "top"))
    with pytest.raises(ValueError, match=r"alone has 1 labelled cell\(s\), 1 of them with signal"):
        model.rank_genes_groups(adata, "solo", ["alone"], n_samples=2)
    logger = logging.getLogger("spalstf")
    logger.addHandler(recording_handler)
    try:
        solo = model.rank_genes_groups(adata, "solo", n_samples=2, gene_list=genes)
    finally:
        logger.removeHandler(recording_handler)
    assert set(solo["group"]) == {"bottom", "top"}
    assert any("alone" in r.getMessage() and r.levelno == logging.WARNING for r in recording_handler.records)


def test_bad_requests_name_the_problem(known):
    model, adata_st, _ = known
    with pytest.raises(ValueError, match="at least 2"):
        model.spatial_autocorr(adata_st, n_samples=1)
    no_graph = adata_st.copy()
    del no_graph.obsp["spatial_connectivities"]
    with pytest.raises(KeyError, match="spatial_neighbors"):
        model.spatial_autocorr(no_graph, n_samples=2)
    no_coords = adata_st.copy()
    del no_coords.obsm["spatial"]
    with pytest.raises(KeyError, match="spatial_key"):
        model.posterior_predictive_sample(no_coords, n_samples=2)
    with pytest.raises(KeyError, match="did you mean"):
        model.posterior_predictive_sample(adata_st, 2, gene_list=["pat00"])
    with pytest.raises(ValueError, match="not among the groups"):
        model.differential_expression(adata_st, "half", "top", n_samples=2)
    with pytest.raises(KeyError, match="no column"):
        model.differential_expression(adata_st, "quadrant", "a", n_samples=2)
    with pytest.raises(ValueError, match="share groups"):
        model.differential_expression(adata_st, "half", "left", ["left", "right"], n_samples=2)
    with pytest.raises(ValueError, match="random_state"):
        model.posterior_predictive_sample(adata_st, 2, random_state=None)


def test_flags_graphs_and_group_labels_that_would_be_misread_are_refused(known, tmp_path):
    """Values that Python would read as something else, graphs Moran's I cannot use, and labels that clash."""
    model, adata_st, _ = known
    genes = model.imputed_genes[:3]
    kw = {"n_samples": 2, "gene_list": genes}
    with pytest.raises(ValueError, match="two_tailed must be True or False"):
        model.spatial_autocorr(adata_st, two_tailed="no", **kw)
    existing = tmp_path / "draws.h5"
    existing.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="overwrite must be True or False"):
        model.posterior_predictive_sample(adata_st, out=existing, overwrite="no", **kw)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="copy must be True or False"):
        sp.tl.spatial_autocorr(adata_st, model, copy="no", **kw)
    assert "spalstf_moranI" not in adata_st.uns

    for value, problem in ((np.nan, "non-finite"), (-1.0, "negative")):
        bad = adata_st.copy()
        W = bad.obsp["spatial_connectivities"].tocsr(copy=True)
        W.data[:5] = value
        bad.obsp["spatial_connectivities"] = W
        with pytest.raises(ValueError, match=problem):
            model.spatial_autocorr(bad, **kw)
    empty = adata_st.copy()
    empty.obsp["spatial_connectivities"] = empty.obsp["spatial_connectivities"] * 0
    with pytest.raises(ValueError, match="joins none"):
        model.spatial_autocorr(empty, **kw)
    with pytest.raises(ValueError, match="at least 3 cells"):
        model.spatial_autocorr(adata_st[:2].copy(), **kw)

    zones = adata_st.copy()
    zones.obs["zone"] = pd.Categorical(np.where(zones.obs["half"] == "left", "rest", "core"))
    with pytest.raises(ValueError, match="named 'rest'"):
        model.rank_genes_groups(zones, "zone", **kw)
    assert set(model.rank_genes_groups(zones, "zone", reference="core", **kw)["group"]) == {"rest"}
    with pytest.raises(ValueError, match="more than once"):
        model.rank_genes_groups(adata_st, "half", ["left", "left"], **kw)
    with pytest.raises(TypeError, match="one column"):
        model.differential_expression(adata_st, ["half"], "left", **kw)

    # an integer label is a group as its string is (the wrapper records it as such)
    numbered = adata_st.copy()
    numbered.obs["side"] = (numbered.obs["half"] == "right").astype(int)
    sp.tl.differential_expression(numbered, model, "side", 1, **kw)
    assert numbered.uns["spalstf_de"]["params"]["group1"] == ["1"]
    pd.testing.assert_frame_equal(
        numbered.uns["spalstf_de"]["results"], model.differential_expression(numbered, "side", "1", **kw)
    )

    # one cell has draws of its own (white noise: no neighbours to share them with)
    one = model.posterior_predictive_sample(adata_st[:1].copy(), **kw)
    assert one.shape == (1, 3, 2) and np.isfinite(one).all()


def test_misplaced_arguments_self_loops_short_groups_and_masks_are_named(known, tmp_path, monkeypatch):
    """Mistakes that failed deep inside, gave a wrong statistic or blamed the wrong thing now say what to do."""
    model, adata_st, _ = known
    genes = model.imputed_genes[:3]
    kw = {"n_samples": 2, "gene_list": genes}
    # the wrappers' arguments swapped or missing
    for args in ((model, adata_st), (adata_st, None), (adata_st, adata_st)):
        with pytest.raises(TypeError, match=r"sp.tl.differential_expression\(adata_st, model"):
            sp.tl.differential_expression(*args, "half", "left", **kw)
    # a graph that links cells to themselves: Moran's I would count a cell as its own neighbour
    looped = adata_st.copy()
    looped.obsp["spatial_connectivities"] = looped.obsp["spatial_connectivities"] + sparse.identity(looped.n_obs)
    with pytest.raises(ValueError, match=r"to themselves.*W.setdiag\(0\)"):
        model.spatial_autocorr(looped, **kw)
    cosine = adata_st.copy()  # squidpy's cosine transform puts 1 on the diagonal
    sq.gr.spatial_neighbors(cosine, coord_type="generic", n_neighs=6, transform="cosine")
    with pytest.raises(ValueError, match="transform='cosine'"):
        model.spatial_autocorr(cosine, **kw)
    # a write that fails half-way leaves no partial file
    out = tmp_path / "draws.h5"

    def fail(*_args, **_kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(_draws.DrawPlan, "draw", fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.posterior_predictive_sample(adata_st, out=out, **kw)
    assert not out.exists() and not (tmp_path / "draws.h5.partial").exists()
    monkeypatch.undo()
    with pytest.raises(TypeError, match="`out` must be a path"):
        model.posterior_predictive_sample(adata_st, out=5, **kw)
    # a reference group too small, and a rest too small, are named as such
    solo = adata_st.copy()
    solo.obs["solo"] = np.where(np.arange(solo.n_obs) == 0, "alone", np.where(solo.obs["half"] == "left", "a", "b"))
    with pytest.raises(ValueError, match="reference='alone' has 1 cell"):
        model.rank_genes_groups(solo, "solo", reference="alone", **kw)
    # group2=None with no other labelled cell: the message counts labelled cells and cells with signal
    lone = adata_st.copy()
    lone.obs["lone"] = pd.Categorical(np.where(lone.obs["half"] == "left", "left", None))
    with pytest.raises(ValueError, match=r"every other labelled cell\) has 0 labelled cell\(s\), 0 of them"):
        model.differential_expression(lone, "lone", "left", **kw)
    # a boolean mask is not a group label
    with pytest.raises(TypeError, match="not a boolean mask"):
        model.differential_expression(adata_st, "half", adata_st.obs["half"] == "left", **kw)
    # a measured gene is not imputed: say so rather than suggest a look-alike
    for spelling in (model.gene_plan.measured[0], model.gene_plan.measured_st[0]):  # the reference's, adata_st's
        with pytest.raises(KeyError, match="measured, not imputed"):
            model.posterior_predictive_sample(adata_st, 2, gene_list=[spelling])
    # a cell without coordinates: the error says how to go on
    lost = adata_st.copy()
    lost.obsm["spatial"] = np.array(lost.obsm["spatial"], dtype=float)
    lost.obsm["spatial"][0] = np.nan
    with pytest.raises(ValueError, match="drop those cells"):
        model.posterior_predictive_sample(lost, **kw)
    # coordinates in another number of dimensions than the calibration's cells had
    deeper = adata_st.copy()
    deeper.obsm["spatial"] = np.hstack([deeper.obsm["spatial"], np.zeros((deeper.n_obs, 1))])
    with pytest.raises(ValueError, match=r"3 coordinate dimension\(s\).*had 2.*spatial_key"):
        model.posterior_predictive_sample(deeper, **kw)
    # duplicated gene names: genes are found by name
    twice = ad.concat([adata_st, adata_st[:, :1]], axis=1, merge="first")
    twice.obsm["spatial"] = adata_st.obsm["spatial"]
    with pytest.raises(ValueError, match=r"duplicated var_names.*var_names_make_unique"):
        model.posterior_predictive_sample(twice, **kw)


def test_a_calibration_without_coordinates_asks_for_one_with_them(known):
    model, adata_st, _ = known
    calibration = model.interval_calibration_ or model.calibrate_intervals(adata_st)
    try:
        no_coords = adata_st.copy()
        del no_coords.obsm["spatial"]
        model.calibrate_intervals(no_coords)
        assert "draws" not in model.interval_calibration_.details
        with pytest.raises(ValueError, match="calibrate_intervals"):
            model.posterior_predictive_sample(adata_st, n_samples=2)
    finally:
        model.interval_calibration_ = calibration
    # a calibration recorded by an earlier version (no spread of the correlations between genes, no regional shares)
    # must be remade
    import copy

    assert calibration.details["draws"]["regional"]["n_regions"] == 6
    for key in ("error_correlation_spread", "regional"):
        earlier = copy.deepcopy(calibration)
        del earlier.details["draws"][key]
        model.interval_calibration_ = earlier
        try:
            with pytest.raises(ValueError, match="earlier version"):
                model.posterior_predictive_sample(adata_st, n_samples=2)
        finally:
            model.interval_calibration_ = calibration


def _white_noise_plan(n_cells: int, n_genes: int, **settings) -> _draws.DrawPlan:
    """A DrawPlan of ``n_cells`` x ``n_genes`` zeros whose noise is not smoothed (identity operator)."""
    from scipy import sparse

    from spalstf.model._noise import cell_keys, gene_keys

    defaults = {
        "point": np.zeros((n_cells, n_genes), np.float32),
        "scale": np.ones(n_genes),
        "strata": np.zeros((n_cells, n_genes), np.int16),
        "empty": np.zeros(n_cells, bool),
        "table": None,
        "operator": sparse.identity(n_cells, format="csr"),
        "shared": 0.0,
        "cells": cell_keys([f"cell{i}" for i in range(n_cells)], 0),
        "genes": gene_keys([f"g{j}" for j in range(n_genes)]),
        "factor": gene_keys(["f"]),
    }
    return _draws.DrawPlan(**{**defaults, **settings})


def test_errors_shared_within_expression_clusters_are_measured_and_carried():
    """error_clusters finds the share of error variance common to cells of one expression state (0 for independent
    errors), and draws of cells in one cluster share that part of their noise."""
    rng = np.random.default_rng(0)
    n, k = 1200, 6
    centers = rng.normal(0, 10, size=(k, 5))
    labels = rng.integers(0, k, n)
    conditions = centers[labels] + rng.normal(size=(n, 5))
    shared = rng.normal(size=(k, 8))[labels]  # a cluster-level error per gene: half of the variance
    errors = [np.sqrt(0.5) * shared + np.sqrt(0.5) * rng.normal(size=(n, 8))]
    levels = _draws.error_clusters(errors, conditions, levels=(6,))
    assert levels[0]["share"] == pytest.approx(0.5, abs=0.1)
    assert _draws.error_clusters([rng.normal(size=(n, 8))], conditions, levels=(6,))[0]["share"] < 0.02
    np.testing.assert_array_equal(
        pd.crosstab(_draws.nearest_center(conditions, levels[0]["centers"]), labels).gt(0).sum(axis=1), 1
    )

    from spalstf.model._noise import cell_keys

    cluster_keys = cell_keys([f"c{c}" for c in range(k)], 0)
    plan = _white_noise_plan(n, 1, clusters=[(cluster_keys[labels], 0.5)])
    z = plan._field(plan.genes, 400)[:, 0, :]  # (cells, draws): unit variance, half of it shared within a cluster
    same = np.flatnonzero(labels == labels[0])[1]
    other = np.flatnonzero(labels != labels[0])[0]
    assert z.var() == pytest.approx(1.0, abs=0.1)
    assert np.corrcoef(z[0], z[same])[0, 1] == pytest.approx(0.5, abs=0.12)
    assert abs(np.corrcoef(z[0], z[other])[0, 1]) < 0.12


def test_the_errors_moran_is_carried_to_cells_denser_than_the_calibration_sample():
    """A calibration samples at most 10,000 cells: on all cells of a larger section neighbours are closer, and the
    errors' Moran's I there is higher than on the sample. The correlogram carries it to the denser graph."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    side = 60
    x, y = np.meshgrid(np.arange(side), np.arange(side))
    coords = np.column_stack([x.ravel(), y.ravel()]).astype(float) + rng.uniform(-0.3, 0.3, (side * side, 2))
    # 20 genes' errors: a smooth field (a Gaussian blur of white noise, 2 cells wide) plus a white nugget
    fields = [ndimage.gaussian_filter(rng.standard_normal((side, side)), 2.0).ravel() for _ in range(20)]
    errors = np.column_stack([f / f.std() + 0.5 * rng.standard_normal(side * side) for f in fields])

    full = _draws.error_structure([errors], coords)
    sample = np.sort(rng.choice(side * side, side * side // 4, replace=False))
    sampled = _draws.error_structure([errors[sample]], coords[sample])
    assert full["error_moran"] - sampled["error_moran"] > 0.1  # the sample's sparser graph sees a lower Moran's I
    carried = _draws.moran_target(sampled, coords)
    gap = full["error_moran"] - sampled["error_moran"]
    assert abs(carried - full["error_moran"]) < 0.5 * gap, (carried, full["error_moran"], gap)  # most of the way
    assert _draws.moran_target(full, coords) == full["error_moran"]  # the calibration's own cells: unchanged
    assert _draws.moran_target(full, coords[rng.permutation(len(coords))]) == full["error_moran"]  # in any order
    assert abs(_draws.moran_target(full, coords[1:]) - full["error_moran"]) < 0.005  # almost the same cells: no jump


def test_draws_on_the_calibrations_own_cells_use_its_morans_i_also_with_cells_without_signal(known):
    """The calibration leaves out cells without signal; the draws' target on the same data is its measured value."""
    from spalstf.model._spatial_input import SpatialInput

    model, adata_st, _ = known
    adata = adata_st.copy()
    adata.X[:5] = 0  # five cells without signal
    saved = model.interval_calibration_
    try:
        model.calibrate_intervals(adata)
        plan, _ = model._draw_plan(SpatialInput.prepare(adata, None), None, 0, 1000, "spatial")
        measured = model.interval_calibration_.details["draws"]["error_moran"]
    finally:
        model.interval_calibration_ = saved
    assert plan.empty[:5].all() and not plan.empty[5:].any()
    assert plan.moran_target == measured


def _smooth_fields(rng: np.random.Generator, side: int, n: int) -> np.ndarray:
    """``n`` independent smooth fields on a ``side`` x ``side`` grid (a Gaussian blur of white noise), standardised."""
    from scipy import ndimage

    fields = np.column_stack(
        [ndimage.gaussian_filter(rng.standard_normal((side, side)), 2.0).ravel() for _ in range(n)]
    )
    return (fields - fields.mean(axis=0)) / fields.std(axis=0)


def test_the_errors_correlations_between_genes_spread_beyond_chance_and_draws_carry_it():
    """Two smooth fields are correlated by chance; correlation_spread measures what the errors' correlations between
    genes spread beyond that (0 for independent errors), and draws with that spread carry it: random in sign, new in
    every draw, each gene's noise still of unit variance."""

    rng = np.random.default_rng(0)
    side, n_genes = 40, 12
    chance = _smooth_fields(rng, side, 48)
    independent = [_smooth_fields(rng, side, n_genes) for _ in range(3)]
    record = _draws.correlation_spread(independent, chance)
    assert record["error_correlation_spread"] < 0.08  # ~3.5 standard errors of this estimate
    assert record["error_correlation_sd"] > 0.1  # by chance alone, smooth fields on 1,600 cells spread this much
    # errors built as the draws build them: 8 common smooth fields with random loadings, 0.6 of the variance
    correlated = []
    for _ in range(3):
        common = _smooth_fields(rng, side, 8)
        loadings = rng.standard_normal((8, n_genes))
        loadings /= np.linalg.norm(loadings, axis=0)
        own = _smooth_fields(rng, side, n_genes)
        correlated.append(np.sqrt(0.4) * own + np.sqrt(0.6) * common @ loadings)
    spread = _draws.correlation_spread(correlated, chance)["error_correlation_spread"]
    assert spread == pytest.approx(0.6 / np.sqrt(8), abs=0.07)

    n, shared = 3000, 0.5
    share = _draws.share_for_spread(0.15, shared)
    assert _draws.share_for_spread(float("nan"), shared) == 0.0
    assert not _draws.spread_beyond_reach(0.15, shared) and _draws.spread_beyond_reach(0.2, shared)
    fields, loadings = _draws.correlation_keys(8, 0)
    plan = _white_noise_plan(
        n, 40, shared=shared, correlation_share=share, correlation_fields=fields, correlation_loadings=loadings
    )
    z = plan.noise(slice(None), 3)
    assert z.var(axis=0).mean() == pytest.approx(1.0, abs=0.05)
    pairs = [_draws.pair_correlations(z[:, :, k]) for k in range(3)]
    for p in pairs:  # white noise alone spreads by 1 / sqrt(n) = 0.018; without (1 - shared) in the share: 0.075
        assert np.sqrt(p.var() - 1 / n) == pytest.approx(0.15, abs=0.025)
        assert p.mean() == pytest.approx(shared, abs=0.05)
    assert abs(np.corrcoef(pairs[0], pairs[1])[0, 1]) < 0.3  # every draw correlates other pairs
    # the fields are kept per number of draws, so chunks of genes agree, and a first draw does not depend on K
    np.testing.assert_array_equal(plan.noise(slice(0, 5), 3), plan.noise(slice(None), 3)[:, :5])
    np.testing.assert_array_equal(plan.noise(slice(None), 1)[..., 0], z[..., 0])
    with pytest.raises(ValueError, match="needs correlation_fields"):
        settings = {k: v for k, v in plan.__dict__.items() if k != "_correlation_cache"}
        _draws.DrawPlan(**{**settings, "correlation_fields": np.empty(0, np.uint64)})


def test_genes_get_noise_as_smooth_as_the_panel_errors_at_their_expression_level(known):
    """On count platforms the errors of lowly expressed genes are mostly the measurement's white noise, those of
    highly expressed genes the imputation's smooth misses: the calibration records the errors' Moran's I by expression
    level, and each gene's own noise is smoothed to its level's value (the common law for a calibration without it)."""
    from scipy import sparse

    rng = np.random.default_rng(0)
    levels = rng.uniform(0, 4, 200)
    morans = 0.1 + 0.1 * levels + rng.normal(0, 0.02, 200)  # smoother errors at higher levels
    record = _draws.smoothness_by_level(levels, morans)
    assert len(record["shift"]) == _draws.MAX_SMOOTHNESS_LEVELS and len(record["edges"]) == len(record["shift"]) - 1
    assert np.all(np.diff(record["shift"]) > 0.05) and record["shift"][0] < 0 < record["shift"][-1]
    shifts = _draws.level_shifts({"smoothness_levels": record}, np.array([-5.0, 2.0, 9.0, np.nan]))
    assert shifts[0] == record["shift"][0] and shifts[2] == record["shift"][-1]  # beyond the panel: the end bins
    assert shifts[3] == 0.0  # a gene without a level keeps the common law
    few = _draws.smoothness_by_level(levels[: _draws.MIN_GENES_PER_LEVEL], morans[: _draws.MIN_GENES_PER_LEVEL])
    assert few["edges"] == [] and few["shift"] == [0.0]
    # a level that does not predict the Moran's I on held-out panel genes is not used (decided on the panel alone)
    unrelated = _draws.smoothness_by_level(levels, 0.3 + rng.normal(0, 0.05, 200), np.arange(200) // 2)
    assert unrelated["shift"] == [0.0] and unrelated["cv_error"][0] >= unrelated["cv_error"][1]
    assert record["cv_error"][0] < record["cv_error"][1]
    np.testing.assert_array_equal(_draws.level_shifts({}, levels[:3]), 0.0)  # a calibration of an earlier version
    # the own field moves by the shift over its share of the noise, within [0, MAX_MORAN_TARGET]
    np.testing.assert_allclose(_draws.own_targets(0.3, np.array([0.0, 0.1, -0.5]), 0.5, 0.2), [0.3, 0.55, 0.0])

    # the errors are measured on their normal scores: the inverse of the draws' score quantiles, centred on ties
    from scipy import special

    from spalstf.model._calibration import ScoreTable

    scores = np.concatenate([rng.standard_t(3, 4000), np.where(rng.random(4000) < 0.4, 0.0, rng.exponential(1, 4000))])
    strata = np.repeat([0, 1], 4000)
    table = ScoreTable.fit(scores, strata, 2)
    z = _draws.normal_scores(scores, strata, table)
    back = _draws.score_quantiles(table, strata, special.ndtr(z))
    np.testing.assert_allclose(back[np.abs(z) < 3], scores[np.abs(z) < 3], atol=1e-9)
    assert abs(z[:4000].mean()) < 0.05 and z[:4000].std() == pytest.approx(1.0, abs=0.05)
    assert abs(z[4000:].mean()) < 0.1  # 40% exact zeros get the middle of their probabilities, not one end
    assert np.isnan(_draws.normal_scores(np.array([np.nan]), np.zeros(1, int), table)[0])

    # a plan whose second gene's own noise is smoothed: its Moran's I is high, the first gene's stays white
    side = 30
    x, y = np.meshgrid(np.arange(side), np.arange(side))
    coords = np.column_stack([x.ravel(), y.ravel()]).astype(float)
    field, lam = _draws.fit_field(coords, 0.6, [], [])
    white_op = sparse.identity(side * side, format="csr")
    plan = _white_noise_plan(
        side * side, 2, operator=white_op, gene_smoothing=np.array([-1, 0]), level_operators=[field.operator(lam)]
    )
    z = plan.noise(slice(0, 2), 20)
    morans_of_noise = np.median([field.graph.moran(z[:, :, k]) for k in range(20)], axis=0)
    assert abs(morans_of_noise[0]) < 0.05 and morans_of_noise[1] == pytest.approx(0.6, abs=0.08)
    np.testing.assert_array_equal(plan.noise(slice(1, 2), 20)[:, 0], z[:, 1])  # per gene, as without levels
    with pytest.raises(ValueError, match="gene_smoothing"):
        _white_noise_plan(4, 2, gene_smoothing=np.array([0, 1]), level_operators=[white_op])
    with pytest.raises(ValueError, match="gene_smoothing"):
        _white_noise_plan(4, 2, gene_smoothing=np.array([-2, 0]), level_operators=[white_op])

    # the model's calibration records the curve, and its plan smooths each gene to its level's Moran's I
    from spalstf.model._spatial_input import SpatialInput

    model, adata_st, _ = known
    if getattr(model, "interval_calibration_", None) is None:
        model.calibrate_intervals(adata_st)
    record = model.interval_calibration_.details["draws"]["smoothness_levels"]
    assert len(record["shift"]) >= 2 and len(record["edges"]) == len(record["shift"]) - 1
    plan, genes = model._draw_plan(SpatialInput.prepare(adata_st, None), None, 0, 1000, "spatial")
    assert plan.gene_smoothing is not None and len(plan.level_operators) <= _draws.MAX_SMOOTHNESS_LEVELS
    one, _ = model._draw_plan(SpatialInput.prepare(adata_st, None), [genes[-1]], 0, 1000, "spatial")
    own = plan.level_operators[plan.gene_smoothing[-1]] if plan.gene_smoothing[-1] >= 0 else plan.operator
    mine = one.level_operators[one.gene_smoothing[0]] if one.gene_smoothing is not None else one.operator
    assert (own != mine).nnz == 0  # a gene's smoothing does not depend on the other genes asked for


def test_errors_that_vary_between_regions_are_measured_and_drawn_per_gene_and_draw():
    """Some genes' errors differ between regions of the tissue (a half predicted too high), far beyond what noise
    smoothed over neighbours carries: regional_shares finds how much, gene by gene (0 for errors as the law's), and
    each (gene, draw) of the draws takes one of those shares, so a difference between halves varies from draw to draw
    with the share it took (not with the mean share in every draw). The regions do not depend on the cells' order."""
    rng = np.random.default_rng(0)
    n = 3000
    coordinates = rng.uniform(0, 100, size=(n, 2))
    names = np.array([f"cell{i}" for i in range(n)])
    centres, width = _draws.region_centres(coordinates, names)
    assert centres.shape == (_draws.N_REGIONS, 2) and 20 < width < 60  # 6 regions of a 100 x 100 square
    basis = _draws.regional_basis(coordinates, centres, width)
    np.testing.assert_allclose((basis**2).sum(axis=1), 1.0)
    order = rng.permutation(n)
    np.testing.assert_allclose(_draws.region_centres(coordinates[order], names[order])[0], centres, atol=1e-12)
    assert _draws.region_centres(np.zeros((10, 2))) is None  # one position: no regions
    # a corner tile's own regions are narrow; at the section's width its regional field is about constant over it
    tile = (coordinates < 20).all(axis=1)
    tile_centres, tile_width = _draws.region_centres(coordinates[tile], names[tile])
    assert tile_width < width / 3
    wide = _draws.regional_basis(coordinates[tile], tile_centres, width) @ rng.standard_normal((6, 200))
    narrow = _draws.regional_basis(coordinates[tile], tile_centres, tile_width) @ rng.standard_normal((6, 200))
    assert wide.var(axis=0).mean() < 0.1 < 0.3 < narrow.var(axis=0).mean()

    fields = rng.standard_normal((n, 48))  # the law without a regional part: white noise here
    half = np.where(coordinates[:, 0] > 50, 1.0, -1.0)
    regional = np.column_stack([np.sqrt(0.4) * half + np.sqrt(0.6) * rng.standard_normal(n) for _ in range(10)])
    errors = np.column_stack([regional, rng.standard_normal((n, 30))])  # a quarter of the genes vary between halves
    folds = [errors[:, ::2], errors[:, 1::2]]  # two inner folds, the first without signal in 100 cells
    signal = np.arange(n) >= 100
    record = _draws.regional_shares(folds, [np.flatnonzero(signal), None], fields, coordinates)
    shares = np.asarray(record["shares"])
    assert record["n_regions"] == _draws.N_REGIONS and record["law_r2"] < 0.01
    assert record["width"] == _draws.region_centres(coordinates)[1]  # the calibration's regions, recorded
    assert (shares > 0.25).sum() == 10 and (shares < 0.02).sum() == 30  # the halves' genes, and the others at ~0
    # rows without signal (errors 0) are left out: zeroing them changes nothing
    folds[0][~signal] = 0.0
    zeroed = _draws.regional_shares(folds, [np.flatnonzero(signal), None], fields, coordinates)
    assert zeroed["shares"] == record["shares"]
    assert _draws.regional_shares(folds, [None, None], fields, np.zeros((n, 2)))["shares"] == []

    keys = _draws.regional_keys(basis.shape[1], 0)
    plan = _white_noise_plan(n, 20, regional_basis=basis, regional_shares=shares, regional_keys=keys)
    z = plan.noise(slice(None), 200)
    assert z.var(axis=(0, 2)).mean() == pytest.approx(1.0, abs=0.05)  # every entry keeps unit variance
    right = coordinates[:, 0] > 50
    gap = z[right].mean(axis=0) - z[~right].mean(axis=0)  # (genes, draws): the halves' difference of each draw
    d = basis[right].mean(axis=0) - basis[~right].mean(axis=0)  # a unit regional field's gap has variance d @ d
    expected = shares.mean() * (d @ d) + (1 - shares.mean()) * 4 / n
    assert (gap**2).mean() == pytest.approx(expected, rel=0.2)  # ~25 times white noise's 4 / n
    # a share per (gene, draw), not one for all: 3 in 4 draws of every gene have about no regional part (white noise
    # alone keeps |gap| < 0.05 in 83% of them), where the mean share in every draw leaves such gaps in about 1 in 5
    small = np.mean(np.abs(gap) < 0.05, axis=1)
    assert small.min() > 0.5 and small.max() < 0.85
    fixed = _white_noise_plan(
        n, 20, regional_basis=basis, regional_shares=np.full(40, shares.mean()), regional_keys=keys
    )
    fixed_gap = fixed.noise(slice(None), 200)
    assert np.mean(np.abs(fixed_gap[right].mean(axis=0) - fixed_gap[~right].mean(axis=0)) < 0.05) < 0.3
    np.testing.assert_array_equal(plan.noise(slice(0, 5), 200), z[:, :5])  # gene chunks agree
    np.testing.assert_array_equal(plan.noise(slice(None), 50), z[..., :50])  # the first draws of more draws
    with pytest.raises(ValueError, match="regional_keys"):
        _white_noise_plan(n, 2, regional_basis=basis, regional_shares=shares, regional_keys=keys[:2])
    with pytest.raises(ValueError, match="one row per cell"):
        _white_noise_plan(n, 2, regional_basis=basis[:10], regional_shares=shares, regional_keys=keys)


def _halves_gap_variance(field: np.ndarray, coordinates: np.ndarray, axis: int) -> float:
    """Mean squared difference between the halves of the section along ``axis`` of the columns of ``field``."""
    right = coordinates[:, axis] > np.median(coordinates[:, axis])
    return float(((field[right].mean(axis=0) - field[~right].mean(axis=0)) ** 2).mean())


def test_the_regional_part_varies_in_the_directions_the_panel_errors_do():
    """Panel errors that vary along the section's length but not across it teach the regional part that direction:
    the split-half likelihood keeps most of the learnt covariance (a small shrinkage), and the draws' regional field
    differs between the halves along the length several times more than across, where independent weights treat both
    alike. Errors that vary between regions in no particular direction (as independent weights do) keep about
    independent weights. Without gene names (or with too few genes) the mixing gives the plain bumps, and a record
    without a mixing is drawn as before."""
    rng = np.random.default_rng(0)
    n, n_genes = 3000, 40
    coordinates = rng.uniform(0, 100, size=(n, 2))
    names = np.array([f"cell{i}" for i in range(n)])
    fields = rng.standard_normal((n, 48))  # the law without a regional part: white noise here
    genes = [[f"g{j}" for j in range(0, n_genes, 2)], [f"g{j}" for j in range(1, n_genes, 2)]]
    x = coordinates[:, 0] / 100
    along = np.column_stack([np.cos(np.pi * x), np.cos(2 * np.pi * x)])  # smooth profiles along the length only
    profile = along @ rng.standard_normal((2, n_genes))
    errors = 0.5 * profile / profile.std(axis=0) + rng.standard_normal((n, n_genes))
    record = _draws.regional_shares([errors[:, ::2], errors[:, 1::2]], [None, None], fields, coordinates, genes)
    assert record["shrinkage"] <= 0.5
    signal = np.ones(n, bool)
    learnt, used = _draws.drawn_regional_basis(record, coordinates, signal, names)
    assert used
    np.testing.assert_allclose((learnt**2).sum(axis=1), 1.0)
    weights = rng.standard_normal((learnt.shape[1], 2000))
    plain = _draws.regional_basis(coordinates, np.asarray(record["centres"]), record["width"])
    ratio_learnt = _halves_gap_variance(learnt @ weights, coordinates, 0) / _halves_gap_variance(
        learnt @ weights, coordinates, 1
    )
    ratio_plain = _halves_gap_variance(plain @ weights, coordinates, 0) / _halves_gap_variance(
        plain @ weights, coordinates, 1
    )
    assert ratio_learnt > 4 and 0.5 < ratio_plain < 2, (ratio_learnt, ratio_plain)
    # between cells the learnt field varies about as much as independent weights' (only the direction is learnt)
    assert (learnt @ weights).var(axis=0).mean() == pytest.approx((plain @ weights).var(axis=0).mean(), rel=0.35)

    # errors varying between regions as independent weights do: about independent weights
    isotropic = 0.6 * plain @ rng.standard_normal((plain.shape[1], n_genes)) + rng.standard_normal((n, n_genes))
    iso = _draws.regional_shares([isotropic[:, ::2], isotropic[:, 1::2]], [None, None], fields, coordinates, genes)
    assert iso["shrinkage"] >= 0.75
    # without gene names, or with too few genes, the mixing gives the plain bumps (shrinkage 1)
    unnamed = _draws.regional_shares([errors[:, ::2], errors[:, 1::2]], [None, None], fields, coordinates)
    assert unnamed["shrinkage"] == 1.0
    np.testing.assert_allclose(_draws.drawn_regional_basis(unnamed, coordinates, signal, names)[0], plain, atol=1e-12)
    few = [errors[:, :3], errors[:, 3:6]]
    assert _draws.regional_shares(few, [None, None], fields, coordinates, [g[:3] for g in genes])["shrinkage"] == 1
    # a record of an earlier version (no mixing), or cells beyond the calibration's extent: regions of their own
    earlier = {key: value for key, value in record.items() if key != "mixing"}
    own = _draws.regional_basis(coordinates, *_draws.region_centres(coordinates, names))
    assert not _draws.drawn_regional_basis(earlier, coordinates, signal, names)[1]
    np.testing.assert_allclose(_draws.drawn_regional_basis(earlier, coordinates, signal, names)[0], own)
    moved = coordinates + 1000.0
    np.testing.assert_allclose(
        _draws.drawn_regional_basis(record, moved, signal, names)[0],
        _draws.regional_basis(moved, *_draws.region_centres(moved, names)),
    )


def test_draws_and_their_regional_directions_survive_save_and_load(known, tmp_path):
    """The calibration's regional record (regions, mixing, mean) is saved with the model: the loaded model draws the
    same values."""
    model, adata_st, _ = known
    calibration = model.interval_calibration_ or model.calibrate_intervals(adata_st)
    regional = calibration.details["draws"]["regional"]
    assert {"centres", "extent", "mixing", "shrinkage"} <= set(regional)
    draws = model.posterior_predictive_sample(adata_st, n_samples=3, random_state=1)
    model.save(tmp_path / "m")
    loaded = SpaLSTF.load(tmp_path / "m", adata=model.adata.copy())
    np.testing.assert_array_equal(
        loaded.interval_calibration_.details["draws"]["regional"]["mixing"], regional["mixing"]
    )
    np.testing.assert_array_equal(loaded.posterior_predictive_sample(adata_st, n_samples=3, random_state=1), draws)


def test_a_tile_drawn_alone_varies_between_regions_at_the_sections_scale_not_its_own(known):
    """A corner of the section drawn alone gets the calibration's regions (the section's), so a regional field about
    constant over it (as it is within the section), not one that varies across the tile as much as across the whole
    section. Without any share above 0 no regions are made."""
    import copy

    from spalstf.model._spatial_input import SpatialInput

    model, adata_st, _ = known
    calibration = model.interval_calibration_ or model.calibrate_intervals(adata_st)
    assert calibration.details["draws"]["regional"]["n_regions"] == _draws.N_REGIONS
    saved = model.interval_calibration_
    model.interval_calibration_ = copy.deepcopy(calibration)
    regional = model.interval_calibration_.details["draws"]["regional"]
    weights = np.random.default_rng(0).standard_normal((_draws.N_REGIONS, 500))
    try:
        regional["shares"] = [0.0] * 5 + [0.5] * 5
        corner = adata_st[(adata_st.obsm["spatial"] < SIDE / 3).all(axis=1)].copy()
        variances = {}
        for label, adata in (("section", adata_st), ("corner", corner)):
            plan, _ = model._draw_plan(SpatialInput.prepare(adata, None), None, 0, 1000, "spatial")
            variances[label] = (plan.regional_basis @ weights).var(axis=0).mean()
        assert variances["corner"] < 0.1 and variances["section"] > 0.2, variances
        # with a regional part, draws still do not depend on the batches or the cells' order
        draws = model.posterior_predictive_sample(adata_st, n_samples=3, random_state=2)
        batched = model.posterior_predictive_sample(adata_st, n_samples=3, random_state=2, batch_size=97)
        order = np.random.default_rng(1).permutation(adata_st.n_obs)
        shuffled = model.posterior_predictive_sample(adata_st[order].copy(), n_samples=3, random_state=2)
        np.testing.assert_allclose(batched, draws, rtol=1e-5, atol=1e-5)  # float32 rounding of the point estimate
        np.testing.assert_allclose(shuffled, draws[order], rtol=1e-5, atol=1e-5)
        regional["shares"] = [0.0] * 10
        plan, _ = model._draw_plan(SpatialInput.prepare(adata_st, None), None, 0, 1000, "spatial")
        assert plan.regional_basis is None
    finally:
        model.interval_calibration_ = saved
