"""Calibrated intervals and per-gene reliability: the space, the leakage rule, coverage, outputs, metrics."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import spalstf as sp
from spalstf.model import SpaLSTF
from spalstf.model._calibration import CURVE_LEVELS, platform_values

N_GENES, N_MEASURED, N_TYPES = 60, 40, 4


def _pair_with_truth(seed: int = 0, n_ref: int = 300, n_st: int = 400):
    """(adata_st, adata_sc, truth): the spatial cells measured every gene; the panel keeps the first 20.

    Poisson counts of a few cell types (genes exchangeable by construction), the spatial platform at twice the depth
    and with per-gene detection efficiencies, as in situ panels have.
    """
    rng = np.random.default_rng(seed)
    means = rng.gamma(2.0, 3.0, size=(N_TYPES, N_GENES)) + 0.5
    efficiency = rng.lognormal(0.0, 0.3, N_GENES)
    genes = [f"g{i}" for i in range(N_GENES)]
    sc_types = rng.integers(0, N_TYPES, n_ref)
    adata_sc = ad.AnnData(
        X=rng.poisson(means[sc_types]).astype(np.float32),
        obs=pd.DataFrame(index=[f"sc{i}" for i in range(n_ref)]),
        var=pd.DataFrame(index=genes),
    )
    st_types = rng.integers(0, N_TYPES, n_st)
    full = rng.poisson(2.0 * means[st_types] * efficiency).astype(np.float32)
    adata_st = ad.AnnData(
        X=full[:, :N_MEASURED].copy(),
        obs=pd.DataFrame(index=[f"st{i}" for i in range(n_st)]),
        var=pd.DataFrame(index=genes[:N_MEASURED]),
    )
    adata_st.obsm["spatial"] = rng.uniform(0, 100, size=(n_st, 2))
    truth = pd.DataFrame(
        platform_values(full[:, N_MEASURED:], full[:, :N_MEASURED].sum(axis=1), 1e4),
        index=adata_st.obs_names,
        columns=genes[N_MEASURED:],
    )
    return adata_st, adata_sc, truth


@pytest.fixture(scope="module")
def with_truth(one_thread, tiny_model):
    """A model of the pair with truth, trained a few steps, and its in-memory interval result."""
    adata_st, adata_sc, truth = _pair_with_truth()
    reference = adata_sc.copy()
    SpaLSTF.setup_anndata(reference)
    torch.manual_seed(0)
    model = SpaLSTF(reference, adata_st, **tiny_model)
    model.train(max_steps=30, enable_progress_bar=False, accelerator="cpu")
    result = model.impute(adata_st, interval=0.9, progress_bar=False)
    return model, adata_st, adata_sc, truth, result


def test_intervals_cover_the_truth_at_their_level_on_a_pair_where_it_is_known(with_truth):
    model, _, _, truth, (mean, _, lower, upper) = with_truth
    coverage = sp.metrics.interval_coverage(truth, lower, upper)
    assert 0.8 <= coverage <= 0.97
    # a narrower level covers less, and both stay near their nominal value
    _, _, lower50, upper50 = model.impute(with_truth[1], interval=0.5, progress_bar=False)
    coverage50 = sp.metrics.interval_coverage(truth, lower50, upper50)
    assert 0.35 <= coverage50 <= 0.65 < coverage
    assert ((upper50 - lower50).to_numpy() <= (upper - lower).to_numpy() + 1e-6).all()


def test_point_and_bounds_are_in_the_platform_space_and_ordered(with_truth):
    model, adata_st, _, truth, (mean, std, lower, upper) = with_truth
    assert std is None
    for frame in (mean, lower, upper):
        assert frame.index.equals(adata_st.obs_names)
        assert list(frame.columns) == model.imputed_genes
    assert (lower.to_numpy() >= 0).all()
    assert (lower.to_numpy() <= upper.to_numpy()).all()
    # the two sides are calibrated separately, so the point is inside for almost every entry, not by construction
    inside = (lower.to_numpy() <= mean.to_numpy() + 1e-6) & (mean.to_numpy() <= upper.to_numpy() + 1e-6)
    assert inside.mean() > 0.95
    # the map into that space is increasing per gene: the order of the cells is the model's
    plain, _ = model.impute(adata_st, progress_bar=False)
    rho = sp.metrics.spcc(plain, mean)
    assert np.nanmin(rho) > 0.999


def test_calibration_never_sees_an_imputed_gene(with_truth):
    model, adata_st, _, truth, (_, _, lower, upper) = with_truth
    first = model.interval_calibration_
    assert set(first.calibration_genes) == set(model.measured_genes)
    assert not set(first.calibration_genes) & set(model.imputed_genes)
    # the spatial data with the imputed genes' real measurements added, and with them scrambled: the same result
    for values in (truth.to_numpy(), np.random.default_rng(1).permutation(truth.to_numpy())):
        extended = ad.AnnData(
            X=np.hstack([adata_st.X, np.round(np.expm1(np.nan_to_num(values)))]).astype(np.float32),
            obs=adata_st.obs.copy(),
            var=pd.DataFrame(index=list(adata_st.var_names) + list(truth.columns)),
        )
        model.calibrate_intervals(extended)
        _, _, lo, hi = model.impute(extended, interval=0.9, progress_bar=False)
        np.testing.assert_allclose(lo.to_numpy(), lower.to_numpy())
        np.testing.assert_allclose(hi.to_numpy(), upper.to_numpy())
        assert model.get_gene_reliability().to_dict() == first.gene_reliability
    model.interval_calibration_ = first


def test_reliability_is_a_correlation_per_imputed_gene(with_truth):
    model, *_ = with_truth
    reliability = model.get_gene_reliability()
    assert list(reliability.index) == model.imputed_genes
    assert reliability.between(-1, 1).all()


def test_bounds_do_not_depend_on_the_batch(with_truth):
    model, adata_st, _, _, (mean, _, lower, upper) = with_truth
    m, _, lo, hi = model.impute(adata_st, interval=0.9, batch_size=7, progress_bar=False)
    np.testing.assert_allclose(lo.to_numpy(), lower.to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hi.to_numpy(), upper.to_numpy(), rtol=1e-5, atol=1e-6)
    # one cell alone gets its own bounds
    one = adata_st[[5]].copy()
    _, _, lo1, hi1 = model.impute(one, interval=0.9, progress_bar=False)
    np.testing.assert_allclose(lo1.to_numpy()[0], lower.to_numpy()[5], rtol=1e-5, atol=1e-6)


def test_cells_without_signal_get_undefined_bounds(with_truth):
    model, adata_st, *_ = with_truth
    st = adata_st[:12].copy()
    st.X[3] = 0
    _, _, lower, upper = model.impute(st, interval=0.9, progress_bar=False)
    assert lower.iloc[3].isna().all() and upper.iloc[3].isna().all()
    assert lower.drop(index=st.obs_names[3]).notna().all().all()


def test_calibration_and_bounds_survive_save_and_load(with_truth, tmp_path):
    model, adata_st, adata_sc, _, (_, _, lower, upper) = with_truth
    model.save(tmp_path / "m")
    reference = adata_sc.copy()
    loaded = SpaLSTF.load(tmp_path / "m", adata=reference)
    assert loaded.interval_calibration_ is not None
    _, _, lo, hi = loaded.impute(adata_st, interval=0.9, progress_bar=False)
    np.testing.assert_allclose(lo.to_numpy(), lower.to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hi.to_numpy(), upper.to_numpy(), rtol=1e-5, atol=1e-6)


def test_spalstf_impute_writes_the_interval_keys_in_memory_and_in_a_file(with_truth, tmp_path):
    model, adata_st, adata_sc, _, (mean, _, lower, upper) = with_truth
    st = adata_st.copy()
    sc_before = adata_sc.copy()
    sp.tl.spalstf_impute(st, adata_sc, model=model, interval=0.9, progress_bar=False)
    key = "spalstf_imputed"
    pd.testing.assert_frame_equal(st.obsm[key + "_lower"], lower)
    pd.testing.assert_frame_equal(st.obsm[key + "_upper"], upper)
    meta = st.uns[key]
    assert meta["output_space"].startswith("log1p(x / L * 10000) of the spatial platform")
    assert meta["interval"]["level"] == 0.9
    assert set(meta["interval"]["calibration_genes"]) == set(model.measured_genes)
    assert set(meta["gene_reliability"]) == set(model.imputed_genes)
    # the inputs are unchanged except for the documented keys
    assert set(st.obsm) - set(adata_st.obsm) == {key, key + "_lower", key + "_upper"}
    np.testing.assert_array_equal(st.X, adata_st.X)
    np.testing.assert_array_equal(adata_sc.X, sc_before.X)
    assert list(adata_sc.obs.columns) == list(sc_before.obs.columns) and set(adata_sc.uns) == set(sc_before.uns)

    out = tmp_path / "imputed.h5ad"
    st2 = adata_st.copy()
    sp.tl.spalstf_impute(st2, adata_sc, model=model, interval=0.9, out=out, progress_bar=False)
    stored = ad.read_h5ad(out)
    np.testing.assert_allclose(stored.layers["lower"], lower.to_numpy())
    np.testing.assert_allclose(stored.layers["upper"], upper.to_numpy())
    assert stored.uns[key]["gene_reliability"] == pytest.approx(meta["gene_reliability"])
    assert stored.uns[key]["interval"]["n_calibration_genes"] == len(model.measured_genes)
    assert key + "_lower" not in st2.obsm


def test_interval_options_are_checked_before_any_work(pair):
    adata_st, adata_sc = pair
    for bad in (0.0, 1.0, 1.5, "0.9"):
        with pytest.raises(ValueError, match="interval must be None or a number strictly between 0 and 1"):
            sp.tl.spalstf_impute(adata_st, adata_sc, interval=bad, max_steps=1)
    assert "spalstf_imputed" not in adata_st.uns


def test_too_few_measured_genes_for_intervals_name_the_fix(trained):
    model, _, adata_st = trained
    model_genes = model.gene_plan
    small = type(model_genes)(model_genes.measured[:3], model_genes.measured_st[:3], model_genes.imputed)
    model.gene_plan = small
    try:
        with pytest.raises(ValueError, match="pass interval=None"):
            model.calibrate_intervals(adata_st)
    finally:
        model.gene_plan = model_genes


def test_cross_validate_reports_coverage_width_score_and_reliability(one_thread, tiny_model):
    full, adata_sc, _ = _pair_with_truth(n_st=150)
    result = sp.tl.cross_validate(
        full,
        adata_sc,
        methods=["spalstf", "ridge"],
        n_folds=4,
        method_kwargs={"spalstf": {"interval": 0.9, "max_steps": 5, **tiny_model}},
    )
    table = result.intervals
    assert set(table["variant"]) == {"per_cell", "per_gene"}
    assert set(table["level"]) == set(CURVE_LEVELS)
    assert table["nominal"].sum() == 2  # the 0.9 row of each variant
    assert (table["method"] == "spalstf").all()
    summary = result.summary()
    for column in ("coverage", "mean_width", "interval_score", "calibration_error", "reliability_spearman"):
        assert np.isfinite(summary.loc["spalstf", column])
        assert np.isnan(summary.loc["ridge", column])
    assert 0.7 <= summary.loc["spalstf", "coverage"] <= 1.0
    rel = result.reliability
    assert sorted(rel["gene"]) == sorted(full.var_names)
    spcc = result.scores.query("method == 'spalstf' and metric == 'SPCC'").set_index("gene")["value"]
    np.testing.assert_allclose(rel.set_index("gene")["SPCC_truth"].loc[spcc.index], spcc)


def test_bounds_stay_ordered_and_conservative_where_scores_are_one_sided():
    from spalstf.model._calibration import ScoreTable

    scores = np.full(200, -1.0)  # every measurement below its point: the upper side of the interval is negative
    table = ScoreTable.fit(scores, np.zeros(200, dtype=np.int64), 1)
    lo_q, hi_q = table.quantiles(0.5)
    assert hi_q[0] == pytest.approx(-1.0) and lo_q[0] == pytest.approx(1.0)
    small = ScoreTable.fit(np.linspace(-1, 1, 5), np.zeros(5, dtype=np.int64), 1)
    assert np.isinf(small.quantiles(0.95)[1][0])  # too few scores for the level: an unbounded side
    calibration = _toy_calibration(table)
    lower, upper = calibration.bounds(np.array([[0.05, 2.0]]), np.ones(2), np.array([10.0]), 0.5)
    assert (lower <= upper).all() and (lower >= 0).all()


def _toy_calibration(table):
    from spalstf.model._calibration import GeneMap, IntervalCalibration

    return IntervalCalibration(
        gene_map=GeneMap((0.0, 1.0), (0.0, 1.0), 1e-3),
        shift=0.0,
        slope=1.0,
        target_sum=1e4,
        edges=np.zeros(0),
        table=table,
        gene_table=table,
        agreement_knots=np.array([0.0, 1.0]),
        spcc_knots=np.array([0.0, 0.8]),
        gene_reliability={},
        calibration_genes=[],
        n_cells=1,
        n_folds=1,
    )


def test_every_gene_gets_a_reliability_and_genes_beyond_the_panel_keep_their_order():
    """Never a bare NaN (an undefined agreement is no agreement), and no ties at the ends of the panel's range."""
    from spalstf.model._calibration import ScoreTable

    calibration = _toy_calibration(ScoreTable(np.zeros((1, 1)), np.zeros((1, 1)), np.ones(1, np.int64)))
    out = calibration.reliability(np.array([0.5, np.nan, 1.1, 1.2, 2.0, -0.2, -0.3]))
    assert np.isfinite(out).all() and out[0] == pytest.approx(0.4) and out[1] == pytest.approx(0.0)
    assert out[2] == pytest.approx(0.88) and out[3] == pytest.approx(0.96) and out[4] == 1.0  # clipped at 1
    assert out[5] == pytest.approx(-0.16) and out[6] == pytest.approx(-0.24)


def test_agreement_is_zero_where_a_neighbourhood_is_constant(one_thread, tiny_model):
    """A gene that is zero in every reference cell near the spatial cells has no rank agreement: 0, not NaN."""
    from spalstf.model._calibration import agreement_features

    adata_st, adata_sc, _ = _pair_with_truth(n_ref=120, n_st=80)
    reference = adata_sc.copy()
    reference.X[:, -1] = 0  # the last reference gene, imputed below, is zero everywhere
    SpaLSTF.setup_anndata(reference)
    model = SpaLSTF(reference, adata_st, genes=[reference.var_names[-1]], blend=("ridge", "neighbours"), **tiny_model)
    condition = torch.from_numpy(model._st_conditions(np.asarray(adata_st[:, model.gene_plan.measured_st].X)))
    assert np.array_equal(agreement_features(model.module, condition), np.zeros((1, 2)))


def test_reliability_does_not_depend_on_which_parts_the_estimate_blends(one_thread, tiny_model):
    """The agreement uses only the closed-form parts; a network-only model standardises them as its copies do."""
    from spalstf.model._calibration import agreement_features
    from spalstf.model._spatial_input import SpatialInput

    adata_st, adata_sc, _ = _pair_with_truth(n_ref=120, n_st=80)
    out = []
    for blend in (("ridge", "neighbours", "network"), ("network",)):
        reference = adata_sc.copy()
        SpaLSTF.setup_anndata(reference)
        model = SpaLSTF(reference, adata_st, blend=blend, **tiny_model)
        chunks = model._st_condition_chunks(SpatialInput.prepare(adata_st, None), 1024)
        condition = torch.from_numpy(np.concatenate([c for _, _, c, _, _ in chunks]))
        out.append(agreement_features(model.module, condition))
    np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-6)


def test_more_folds_than_measured_genes_is_refused(with_truth):
    model, adata_st, *_ = with_truth
    first = model.interval_calibration_
    with pytest.raises(ValueError, match="exceeds the model's 40 measured genes"):
        model.calibrate_intervals(adata_st, n_folds=41)
    assert model.interval_calibration_ is first


def test_repeated_inner_splits_pool_every_panel_gene_once_per_split(with_truth):
    model, adata_st, *_ = with_truth
    first = model.interval_calibration_
    try:
        with pytest.raises(ValueError, match="n_repeats"):
            model.calibrate_intervals(adata_st, n_repeats=0)
        assert model.interval_calibration_ is first
        one = model.calibrate_intervals(adata_st, n_repeats=1, random_state=3)
        two = model.calibrate_intervals(adata_st, n_repeats=2, random_state=3)
        for calibration, repeats in ((one, 1), (two, 2)):
            assert sorted(calibration.calibration_genes) == sorted(model.gene_plan.measured_st)
            assert set(calibration.details["panel_spcc"]) == set(calibration.calibration_genes)
            assert len(calibration.spcc_knots) == repeats * 40  # each gene predicted once per split
            assert calibration.describe(0.9)["n_repeats"] == repeats
            assert calibration.describe(0.9)["n_folds"] == 5
        # the second split adds predictions of its own, so the map's knots are not those of one split
        assert not np.allclose(one.spcc_knots, two.spcc_knots[::2])
        # and each gene's recorded panel SPCC lies within the range of its predictions' SPCC
        assert min(two.details["panel_spcc"].values()) >= two.spcc_knots.min() - 1e-9
        loo = model.calibrate_intervals(adata_st, n_folds=40, n_repeats=3)  # leave-one-out: every split the same
        assert loo.describe(0.9)["n_repeats"] == 1
        assert len(loo.spcc_knots) == 40
    finally:
        model.interval_calibration_ = first


def test_reliability_uses_the_statistic_that_ranks_the_panel_best(with_truth):
    from spalstf.model._calibration import RELIABILITY_STATISTICS

    model, adata_st, *_ = with_truth
    calibration = model.interval_calibration_
    record = calibration.describe(0.9)["reliability"]
    ranking = record["panel_spearman"]
    assert set(ranking) == set(RELIABILITY_STATISTICS)
    assert all(-1 <= v <= 1 for v in ranking.values())
    assert record["statistic"] == max(ranking, key=ranking.get)
    # the map is the quantile map of that statistic over the panel genes' predictions (one per gene and split): its
    # SPCC knots span the genes' mean SPCC over the splits
    panel = np.array(list(calibration.details["panel_spcc"].values()))
    assert calibration.spcc_knots.min() <= np.nanmin(panel) + 1e-9
    assert calibration.spcc_knots.max() >= np.nanmax(panel) - 1e-9
    assert len(calibration.agreement_knots) == len(calibration.spcc_knots)


def test_default_calibration_sample_shrinks_with_the_panel_and_an_explicit_one_is_kept(with_truth, monkeypatch):
    from spalstf.model import _defaults

    model, adata_st, *_ = with_truth
    first = model.interval_calibration_
    monkeypatch.setattr(_defaults, "MAX_CALIBRATION_ENTRIES", 40 * 3 * 100)  # 40 measured genes x 3 splits x 100 cells
    monkeypatch.setattr(_defaults, "MIN_CALIBRATION_CELLS", 50)
    try:
        assert model.calibrate_intervals(adata_st).n_cells <= 100
        assert 100 < model.calibrate_intervals(adata_st, max_cells=300).n_cells <= 300
        assert model.calibrate_intervals(adata_st, n_repeats=1).n_cells > 250  # one split: three times the cells
    finally:
        model.interval_calibration_ = first


# metrics -----------------------------------------------------------------------------------------------------------
def test_interval_metrics_on_known_values():
    y = pd.DataFrame({"a": [0.0, 1.0, 2.0, np.nan], "b": [5.0, 1.0, 1.0, 1.0]})
    lo = pd.DataFrame({"a": [0.0, 0.0, 0.0, 0.0], "b": [0.0, 0.0, 0.0, np.nan]})
    hi = pd.DataFrame({"a": [1.0, 1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0, 2.0]})
    # a: 2 of 3 defined entries inside; b: 2 of 3 defined entries inside
    assert sp.metrics.interval_coverage(y, lo, hi) == pytest.approx(4 / 6)
    per_gene = sp.metrics.interval_coverage(y, lo, hi, per_gene=True)
    assert per_gene.to_dict() == pytest.approx({"a": 2 / 3, "b": 2 / 3})
    # Winkler: width + 2 / alpha * distance outside; alpha = 0.5 -> penalty 4 per unit
    score = sp.metrics.interval_score(y, lo, hi, level=0.5, per_gene=True)
    assert score["a"] == pytest.approx((1 + 1 + (1 + 4 * 1)) / 3)
    assert score["b"] == pytest.approx(((2 + 4 * 3) + 2 + 2) / 3)
    curve = sp.metrics.calibration_curve(y, {0.5: (lo, hi), 0.9: (lo, hi * 10)})
    assert list(curve["nominal"]) == [0.5, 0.9]
    assert sp.metrics.calibration_error(curve) == pytest.approx((abs(0.5 - 4 / 6) + abs(0.9 - 1.0)) / 2)


def test_an_infinite_bound_covers_and_scores_infinitely():
    y = np.array([0.0, 5.0])
    assert sp.metrics.interval_coverage(y, np.zeros(2), np.array([1.0, np.inf])) == 1.0
    assert np.isinf(sp.metrics.interval_score(y, np.zeros(2), np.array([1.0, np.inf]), level=0.9))


def test_interval_metrics_refuse_swapped_or_misshapen_bounds():
    y = np.zeros((3, 2))
    with pytest.raises(ValueError, match="lower bounds exceed"):
        sp.metrics.interval_coverage(y, np.ones((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="one shape"):
        sp.metrics.interval_score(y, np.zeros((3, 1)), np.ones((3, 1)), level=0.9)
    with pytest.raises(ValueError, match="level must be strictly between 0 and 1"):
        sp.metrics.interval_score(y, y, y + 1, level=1.0)


def test_sp_get_carries_the_bounds_as_layers(with_truth):
    model, adata_st, adata_sc, _, (_, _, lower, upper) = with_truth
    st = adata_st.copy()
    sp.tl.spalstf_impute(st, adata_sc, model=model, interval=0.9, progress_bar=False)
    genes = sp.get.imputed(st)
    np.testing.assert_allclose(genes.layers["lower"], lower.to_numpy())
    np.testing.assert_allclose(genes.layers["upper"], upper.to_numpy())
    assert genes.uns["spalstf_imputed"]["gene_reliability"] == pytest.approx(model.get_gene_reliability().to_dict())
