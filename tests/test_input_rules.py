"""Input handling: every input gets a correct answer or an error naming the problem and the fix; nothing is silently
replaced, dropped or recorded wrongly, and no user key is overwritten. One test per case of the reliability review."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest

import spalstf as sp
from spalstf.model import SpaLSTF

KEY = "spalstf_imputed"


def _run(adata_st, adata_sc, tiny_model, tiny_train, **kwargs):
    return sp.tl.spalstf_impute(adata_st, adata_sc, progress_bar=False, **{**tiny_model, **tiny_train, **kwargs})


@pytest.fixture
def logged(recording_handler):
    """Records of the package logger (it does not propagate to the root logger, where caplog listens)."""
    handler = recording_handler
    logger = logging.getLogger("spalstf")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def _build(adata_st, adata_sc, tiny_model, **kwargs):
    SpaLSTF.setup_anndata(adata_sc)
    return SpaLSTF(adata_sc, adata_st, **{**tiny_model, **kwargs})


# 1. one non-integer entry does not switch the normalisation --------------------------------------------------------
def test_one_non_integer_entry_keeps_the_count_normalisation_and_warns(pair, tiny_model, logged):
    adata_st, adata_sc = pair
    clean = _build(adata_st, adata_sc.copy(), tiny_model)
    assert clean.settings["normalize_st"] is True
    adata_st.X[0, 0] += 0.5
    with pytest.warns(UserWarning, match=r"0\.\d+% of adata_st.s nonzero values .* non-integer.*normalize_st"):
        nudged = _build(adata_st, adata_sc.copy(), tiny_model)
    assert nudged.settings["normalize_st"] is True
    assert bool(nudged.module.st_normalized)
    assert any("library-normalised" in r.getMessage() for r in logged)
    np.testing.assert_allclose(
        nudged._st_conditions(np.asarray(adata_st.X[1:6])), clean._st_conditions(np.asarray(adata_st.X[1:6]))
    )


def test_values_that_are_clearly_not_counts_are_used_as_given_and_recorded(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    adata_st.X = np.log1p(adata_st.X)
    _run(adata_st, adata_sc, tiny_model, tiny_train)
    assert adata_st.uns[KEY]["params"]["normalize_st"] is False or adata_st.uns[KEY]["params"]["normalize_st"] == 0


# 2. whitespace in gene names -----------------------------------------------------------------------------------------
def test_gene_names_that_differ_by_whitespace_warn(pair, tiny_model):
    adata_st, adata_sc = pair
    adata_st.var_names = [g + " " if i % 2 else g for i, g in enumerate(adata_st.var_names)]
    with pytest.warns(UserWarning, match=r"10 gene\(s\) of adata_st match a reference gene only when surrounding "):
        model = _build(adata_st, adata_sc, tiny_model)
    assert len(model.measured_genes) == 10


def test_whitespace_only_matches_say_so_in_the_error(pair, tiny_model):
    adata_st, adata_sc = pair
    adata_st.var_names = [" " + g for g in adata_st.var_names]
    with pytest.raises(ValueError, match="whitespace"):
        _build(adata_st, adata_sc, tiny_model)


# 3. recorded settings are those used ---------------------------------------------------------------------------------
def test_a_clamped_n_neighbors_is_recorded_as_used_and_warned(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    with pytest.warns(UserWarning, match=r"n_neighbors=5000 .* 149"):
        _run(adata_st, adata_sc, tiny_model, tiny_train, n_neighbors=5000)
    assert adata_st.uns[KEY]["params"]["n_neighbors"] == adata_sc.n_obs - 1


# 4. key_added never replaces a user's obsm key -----------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", "_lower", "_upper"])
def test_key_added_refuses_to_replace_coordinates(pair, tiny_model, tiny_train, monkeypatch, suffix):
    adata_st, adata_sc = pair
    coords = adata_st.obsm["spatial"].copy()
    adata_st.obsm["spatial" + suffix] = coords
    monkeypatch.setattr(SpaLSTF, "train", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(ValueError, match=r"obsm\['spatial" + suffix + r"'\] .*not written by spalstf_impute"):
        _run(adata_st, adata_sc, tiny_model, tiny_train, key_added="spatial", interval=0.9)
    np.testing.assert_array_equal(adata_st.obsm["spatial" + suffix], coords)
    assert "spatial" not in adata_st.uns


def test_key_added_may_replace_its_own_earlier_result(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    _run(adata_st, adata_sc, tiny_model, tiny_train, n_samples=2, n_sampling_steps=3)
    assert KEY + "_std" in adata_st.obsm
    _run(adata_st, adata_sc, tiny_model, tiny_train)  # replaces the result, drops the stale _std
    assert KEY + "_std" not in adata_st.obsm


def test_a_frame_with_other_columns_under_our_key_is_refused(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    _run(adata_st, adata_sc, tiny_model, tiny_train)
    adata_st.obsm[KEY + "_std"] = pd.DataFrame(np.zeros((adata_st.n_obs, 2)), index=adata_st.obs_names)
    with pytest.raises(ValueError, match="not written by spalstf_impute"):
        _run(adata_st, adata_sc, tiny_model, tiny_train)


# 5. raw tracebacks ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [None, 123, ""])
def test_a_key_added_that_is_not_a_name_is_refused_up_front(pair, tiny_model, tiny_train, monkeypatch, key):
    adata_st, adata_sc = pair
    monkeypatch.setattr(SpaLSTF, "train", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises((TypeError, ValueError), match="key_added must be a non-empty string"):
        _run(adata_st, adata_sc, tiny_model, tiny_train, key_added=key)


@pytest.mark.parametrize("seed", [None, 1.5, "0", True, -1])
def test_a_random_state_that_is_not_an_integer_is_refused(pair, tiny_model, tiny_train, trained, monkeypatch, seed):
    adata_st, adata_sc = pair
    with pytest.raises(ValueError, match="random_state must be an integer"):
        trained.model.impute(trained.adata_st, n_samples=2, random_state=seed, progress_bar=False)
    monkeypatch.setattr(SpaLSTF, "train", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(ValueError, match="random_state must be an integer"):
        _run(adata_st, adata_sc, tiny_model, tiny_train, random_state=seed)


@pytest.mark.parametrize("flag", ["copy", "overwrite"])
def test_a_flag_that_is_not_a_bool_is_refused_up_front(
    pair, tiny_model, tiny_train, trained, tmp_path, monkeypatch, flag
):
    """``copy="no"`` or ``overwrite="no"`` would read as True: a copy nobody asked for, a file replaced."""
    adata_st, adata_sc = pair
    existing = tmp_path / "imputed.h5ad"
    existing.write_bytes(b"keep me")
    monkeypatch.setattr(SpaLSTF, "train", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(ValueError, match=f"{flag} must be True or False"):
        _run(adata_st, adata_sc, tiny_model, tiny_train, **{flag: "no"}, out=existing)
    with pytest.raises(ValueError, match="overwrite must be True or False"):
        trained.model.impute(trained.adata_st, out=existing, overwrite=1, progress_bar=False)
    assert existing.read_bytes() == b"keep me" and KEY not in adata_st.obsm


def test_load_with_other_cells_names_the_trained_number(trained, make_pair, tmp_path):
    trained.model.save(tmp_path / "m", overwrite=True)
    reference = make_pair()[1]
    with pytest.raises(ValueError, match=r"trained on 150 reference cells.*100"):
        SpaLSTF.load(tmp_path / "m", adata=reference[:100].copy())


def test_cross_validate_refuses_invalid_option_values_up_front(pair):
    adata_st, adata_sc = pair
    with pytest.raises(ValueError, match=r"method_kwargs\['knn'\]: n_neighbors must be an integer >= 1, got 0"):
        sp.benchmark.cross_validate(adata_st, adata_sc, methods=["knn"], method_kwargs={"knn": {"n_neighbors": 0}})
    with pytest.raises(ValueError, match=r"method_kwargs\['spalstf'\]: n_hidden must be an integer >= 1"):
        sp.benchmark.cross_validate(
            adata_st, adata_sc, methods=["spalstf"], method_kwargs={"spalstf": {"n_hidden": -3}}
        )


def test_a_failing_method_is_reported_in_one_line(pair, monkeypatch, logged):
    from spalstf.benchmark import _peers

    adata_st, adata_sc = pair

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setitem(_peers.PEERS, "ridge", broken)
    result = sp.benchmark.cross_validate(adata_st, adata_sc, methods=["ridge"], n_folds=2)
    failures = [r for r in logged if "broken on purpose" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is None
    assert "2 fold" in failures[0].getMessage()
    assert (result.resources["error"] == "RuntimeError: broken on purpose").all()


def _sdata(adata_st):
    return sp.datasets.to_spatialdata(adata_st, region_key="element", instance_key="cell")


@pytest.mark.parametrize("problem", ["duplicated", "absent"])
def test_a_table_with_bad_instance_ids_is_refused(pair, trained, problem):
    pytest.importorskip("spatialdata")
    adata_st, adata_sc = pair
    sdata = _sdata(adata_st)
    table = sdata.tables["table"]
    ids = table.obs["cell"].to_numpy().copy()
    ids[1] = ids[0] if problem == "duplicated" else 10_000
    table.obs["cell"] = ids
    with pytest.raises(ValueError, match="duplicated instance ids" if problem == "duplicated" else "not in"):
        sp.tl.spalstf_impute(sdata, adata_sc, model=trained.model, progress_bar=False)
    assert KEY not in table.obsm


# 6. unclear messages -------------------------------------------------------------------------------------------------
def test_requesting_measured_genes_says_they_leave_the_condition(pair, tiny_model, logged):
    adata_st, adata_sc = pair
    model = _build(adata_st, adata_sc, tiny_model, genes=["g0", "g1", "g25"])
    assert len(model.measured_genes) == 18
    assert any("2 of the requested genes" in r.getMessage() and "18" in r.getMessage() for r in logged)


def test_no_scvi_count_warning_beside_our_own_error(pair, tiny_model):
    adata_st, adata_sc = pair
    adata_sc.X = np.log1p(adata_sc.X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _build(adata_st, adata_sc, tiny_model, require_counts=False)
    assert model is not None
    assert not [w for w in caught if "unnormalized count data" in str(w.message)]


def test_counts_in_raw_are_named_in_the_fix(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    adata_sc.raw = adata_sc.copy()
    adata_sc.X = np.log1p(adata_sc.X)
    with pytest.raises(ValueError, match=r"adata\.raw\.to_adata\(\)"):
        _run(adata_st, adata_sc, tiny_model, tiny_train)
    with pytest.raises(ValueError, match=r"adata\.raw\.to_adata\(\)"):
        _build(adata_st, adata_sc, tiny_model)


def test_impute_on_an_upper_case_panel_hints_at_case(trained):
    model, _, adata_st = trained
    upper = adata_st.copy()
    upper.var_names = [g.upper() for g in upper.var_names]
    with pytest.raises(KeyError, match="case and surrounding whitespace are ignored"):
        model.impute(upper, progress_bar=False)


def test_a_table_without_region_is_fine_with_require_spatial_false(pair, trained):
    pytest.importorskip("spatialdata")
    adata_st, adata_sc = pair
    sdata = _sdata(adata_st)
    sdata.tables["loose"] = adata_st.copy()
    sp.tl.spalstf_impute(
        sdata, adata_sc, model=trained.model, table_key="loose", require_spatial=False, progress_bar=False
    )
    assert KEY in sdata.tables["loose"].obsm


# 7. threads ----------------------------------------------------------------------------------------------------------
def test_our_calls_run_with_scanpys_n_jobs_threads_and_restore_torchs(pair, tiny_model, tiny_train, monkeypatch):
    import scanpy as sc
    import torch

    adata_st, adata_sc = pair
    seen = []
    train = SpaLSTF.train

    def recording_train(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return train(self, *args, **kwargs)

    monkeypatch.setattr(SpaLSTF, "train", recording_train)
    before, n_jobs = torch.get_num_threads(), sc.settings.n_jobs
    torch.set_num_threads(2)
    try:
        sc.settings.n_jobs = 1  # scanpy's default
        _run(adata_st, adata_sc, tiny_model, tiny_train)
        assert torch.get_num_threads() == 2
        _run(adata_st, adata_sc, tiny_model, tiny_train, n_jobs=2)
        sc.settings.n_jobs = 2
        _run(adata_st, adata_sc, tiny_model, tiny_train)
        with pytest.raises(ValueError, match="n_jobs must be"):
            _run(adata_st, adata_sc, tiny_model, tiny_train, n_jobs=0)
    finally:
        torch.set_num_threads(before)
        sc.settings.n_jobs = n_jobs
    assert seen == [1, 2, 2]
