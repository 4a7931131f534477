"""No silent wrong answers: every input that used to give a wrong result, or another library's raw error, now gives
a correct result or an error naming the argument and the fix. One test per case."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

import spalstf as sp
from spalstf.model import SpaLSTF

KEY = "spalstf_imputed"


def _run(adata_st, adata_sc, tiny_model, tiny_train, **kwargs):
    return sp.tl.spalstf_impute(adata_st, adata_sc, progress_bar=False, **{**tiny_model, **tiny_train, **kwargs})


# wrong results with no error -------------------------------------------------------------------------------------
def test_half_of_a_section_gets_the_values_of_the_whole_section(one_thread, tiny_model):
    """The fitted spatial statistics do not swing with the sample: a model built on a random half imputes those cells
    as one built on the whole section (per gene Spearman >= 0.98), on the real Drosophila pair."""
    mdata = sp.datasets.drosophila_embryo()
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    held = list(adata_st.var_names[:8])
    panel = adata_st[:, 8:].copy()
    half = panel[np.sort(np.random.default_rng(0).choice(panel.n_obs, panel.n_obs // 2, replace=False))].copy()
    options = {**tiny_model, "max_steps": 20, "enable_progress_bar": False, "accelerator": "cpu"}
    whole_out = sp.tl.spalstf_impute(panel, adata_sc, genes=held, copy=True, progress_bar=False, **options)
    half_out = sp.tl.spalstf_impute(half, adata_sc, genes=held, copy=True, progress_bar=False, **options)
    a = whole_out.obsm[KEY].loc[half.obs_names]
    b = half_out.obsm[KEY]
    rho = [spearmanr(a[g], b[g]).correlation for g in held]
    assert min(rho) >= 0.98, rho


def test_cells_without_signal_never_change_other_cells_and_are_flagged(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    _run(adata_st, adata_sc, tiny_model, tiny_train)
    clean = adata_st.obsm[KEY].copy()
    with_empty = adata_st.copy()
    with_empty.X[:20] = 0
    with pytest.warns(UserWarning, match="20 of 60 spatial cells have no signal"):
        _run(with_empty, adata_sc, tiny_model, tiny_train)
    # other cells: the same values as a model built without the empty cells at all
    _run(adata_st[20:].copy(), adata_sc, tiny_model, tiny_train, key_added="rest")
    rest = adata_st[20:].copy()
    _run(rest, adata_sc, tiny_model, tiny_train)
    pd.testing.assert_frame_equal(with_empty.obsm[KEY].iloc[20:], rest.obsm[KEY], rtol=1e-5, atol=1e-5)
    assert with_empty.uns[KEY]["n_cells_without_signal"] == 20
    assert with_empty.uns[KEY]["cells_without_signal"] == list(adata_st.obs_names[:20])
    assert adata_st.uns[KEY]["n_cells_without_signal"] == 0
    assert not clean.empty


def test_a_cell_imputed_alone_keeps_its_own_values(trained):
    model, _, adata_st = trained
    together, _ = model.impute(adata_st, progress_bar=False)
    for i in (0, 7, 33):
        alone, _ = model.impute(adata_st[i : i + 1].copy(), progress_bar=False)
        np.testing.assert_allclose(alone.values[0], together.values[i], rtol=0, atol=1e-5)
    assert len({tuple(np.round(together.values[i], 4)) for i in (0, 7, 33)}) == 3  # different cells differ


def test_an_all_zero_section_is_refused(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    adata_st.X[:] = 0
    with pytest.raises(ValueError, match="0 cell\\(s\\) with signal"):
        _run(adata_st, adata_sc, tiny_model, tiny_train)


def test_gene_names_that_match_only_ignoring_case_warn(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    adata_st.var_names = [g.upper() if i % 2 else g for i, g in enumerate(adata_st.var_names)]
    with pytest.warns(UserWarning, match=r"10 gene\(s\) of adata_st match .* only when case is ignored.*10 exact"):
        _run(adata_st, adata_sc, tiny_model, tiny_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _run(adata_st, adata_sc, tiny_model, tiny_train, case_sensitive=False, key_added="folded")
    assert len(adata_st.uns["folded"]["measured_genes"]) == 20


def test_a_log_normalised_reference_is_refused_with_the_fix(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    adata_sc.layers["log"] = np.log1p(adata_sc.X)
    with pytest.raises(ValueError, match=r"raw counts.*layer_sc=.*require_counts=False"):
        _run(adata_st, adata_sc, tiny_model, tiny_train, layer_sc="log")
    _run(adata_st, adata_sc, tiny_model, tiny_train, layer_sc="log", require_counts=False)  # the explicit override
    assert KEY in adata_st.obsm


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_epochs", 0),
        ("max_epochs", -1),
        ("max_steps", 0),
        ("batch_size", 0),
        ("batch_size", -5),
        ("lr", 0),
        ("lr", -1.0),
        ("n_hidden", 0),
        ("n_blocks", 0),
        ("n_neighbors", 0),
        ("n_diffusion_steps", 0),
        ("n_sampling_steps", 0),
        ("n_sampling_steps", -3),
        ("n_sampling_steps", 10_000),
        ("n_samples", 0),
        ("n_samples", 2.5),
        ("n_top_genes", -1),
        ("n_top_genes", 0),
        ("kl_weight", -1.0),
        ("perturbation_std", -1.0),
        ("target_sum", 0),
        ("impute_batch_size", 0),
        ("alignment", "rank"),
        ("blend", ("ridge", "ridge")),
    ],
)
def test_every_option_is_validated_up_front(pair, tiny_model, tiny_train, option, value):
    adata_st, adata_sc = pair
    kwargs = {option: value}
    if option == "n_sampling_steps":
        kwargs["n_samples"] = 2
    with pytest.raises(ValueError, match=option):
        _run(adata_st, adata_sc, tiny_model, tiny_train, **kwargs)
    assert KEY not in adata_st.obsm and KEY not in adata_st.uns


@pytest.mark.parametrize("preset_steps", [None, 20])
def test_too_many_sampling_steps_fail_before_training(pair, tiny_model, tiny_train, monkeypatch, preset_steps):
    adata_st, adata_sc = pair
    model = {k: v for k, v in tiny_model.items() if k != "n_diffusion_steps"}  # None: the preset's 1000 steps
    if preset_steps is not None:
        model["n_diffusion_steps"] = preset_steps
    monkeypatch.setattr(sp.model.SpaLSTF, "train", lambda *a, **k: pytest.fail("trained before checking"))
    with pytest.raises(ValueError, match=rf"n_sampling_steps must be at most .*\({preset_steps or 1000}\)"):
        sp.tl.spalstf_impute(
            adata_st, adata_sc, progress_bar=False, n_samples=2, n_sampling_steps=1001, **model, **tiny_train
        )


def test_uns_records_the_values_really_used(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    _run(adata_st, adata_sc, tiny_model, {**tiny_train, "max_epochs": 1}, n_samples=2, n_sampling_steps=50)
    params = adata_st.uns[KEY]["params"]
    assert params["max_epochs"] == 1 and params["n_sampling_steps"] == 50 and params["n_diffusion_steps"] == 50
    assert params["batch_size"] == 256 and params["lr"] == 1e-3  # resolved defaults, not "None"


def test_a_validation_split_is_reproducible(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    runs = []
    for key in ("a", "b"):
        _run(adata_st, adata_sc, tiny_model, tiny_train, train_size=0.8, random_state=5, key_added=key)
        runs.append(adata_st.obsm[key])
    pd.testing.assert_frame_equal(runs[0], runs[1])
    _run(adata_st, adata_sc, tiny_model, tiny_train, train_size=0.8, random_state=6, key_added="c")
    assert not np.allclose(adata_st.obsm["c"].values, runs[0].values)


def test_duplicated_spatial_cell_names_are_refused(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    adata_st.obs_names = ["cell"] * 30 + [f"c{i}" for i in range(30)]
    with pytest.raises(ValueError, match=r"duplicated obs_names.*obs_names_make_unique"):
        _run(adata_st, adata_sc, tiny_model, tiny_train)


# raw errors of other libraries -----------------------------------------------------------------------------------
def test_a_backed_reference_is_refused_clearly(pair, tiny_model, tiny_train, tmp_path):
    adata_st, adata_sc = pair
    adata_sc.write_h5ad(tmp_path / "ref.h5ad")
    backed = ad.read_h5ad(tmp_path / "ref.h5ad", backed="r")
    with pytest.raises(ValueError, match=r"adata_sc` is backed.*to_memory\(\)"):
        _run(adata_st, backed, tiny_model, tiny_train)
    backed.file.close()


def test_non_string_gene_names_are_refused_clearly(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    adata_st.var.index = pd.Index(range(adata_st.n_vars))
    with pytest.raises(TypeError, match=r"adata_st.var_names must be gene names \(strings\).*astype\(str\)"):
        _run(adata_st, adata_sc, tiny_model, tiny_train)


@pytest.fixture
def saved(trained, tmp_path):
    model, _, adata_st = trained
    model.save(tmp_path / "model", overwrite=True)
    return tmp_path / "model", adata_st


def _reference(make_pair):
    return make_pair()[1]


def test_load_says_what_is_wrong_and_what_to_pass(saved, make_pair, tmp_path):
    path, _ = saved
    with pytest.raises(ValueError, match="pass adata="):
        SpaLSTF.load(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpaLSTF.load(tmp_path / "nowhere", adata=_reference(make_pair))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "model.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot be read as a saved SpaLSTF model"):
        SpaLSTF.load(damaged, adata=_reference(make_pair))


@pytest.mark.parametrize("change", ["missing", "renamed", "permuted"])
def test_load_checks_the_reference_genes_and_leaves_it_unchanged(saved, make_pair, change):
    path, _ = saved
    reference = _reference(make_pair)
    if change == "missing":
        reference = reference[:, 2:].copy()
    elif change == "renamed":
        reference.var_names = [f"x{g}" for g in reference.var_names]
    else:
        reference = reference[:, ::-1].copy()
    obs, uns = reference.obs.copy(), dict(reference.uns)
    with pytest.raises(ValueError, match="another order" if change == "permuted" else "does not have the genes"):
        SpaLSTF.load(path, adata=reference)
    pd.testing.assert_frame_equal(reference.obs, obs)
    assert dict(reference.uns) == uns


def test_load_round_trip_still_works(saved, make_pair):
    path, adata_st = saved
    loaded = SpaLSTF.load(path, adata=_reference(make_pair), accelerator="cpu")
    assert loaded.imputed_genes == [f"g{i}" for i in range(20, 30)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"genes": []}, "`genes` is empty"),
        ({"genes": ["g20", "g20"]}, r"`genes` has duplicated entries \('g20'\); pass each gene once"),
        ({"n_neighbors": 0}, "n_neighbors must be an integer >= 1"),
        ({"n_top_genes": 0}, "n_top_genes must be an integer >= 1"),
        ({"layer_sc": "nope"}, r"'nope' \(`layer_sc`\)"),
        ({"layer_st": "nope"}, r"'nope' \(`layer_st`\)"),
    ],
)
def test_messages_name_the_real_problem(pair, tiny_model, tiny_train, kwargs, match):
    adata_st, adata_sc = pair
    with pytest.raises((ValueError, KeyError), match=match):
        _run(adata_st, adata_sc, tiny_model, tiny_train, **kwargs)


def test_spalstf_impute_leaves_the_global_generators_as_it_found_them(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    _run(adata_st, adata_sc, tiny_model, tiny_train, random_state=7)
    torch.testing.assert_close(torch.rand(3), expected_torch)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)


@pytest.mark.parametrize(
    ("genes", "alignment"),
    [
        (["Antp", "danr"], "quantile"),
        (["Antp", "danr"], "zscore"),
        (["Ama", "CG11208"], "quantile"),
        (["sna", "trn", "Antp"], "quantile"),
    ],
)
def test_small_panels_give_values_the_reference_can_produce(one_thread, genes, alignment):
    """Two- and three-gene panels of the real pair: every imputed value lies within the reference's range of the gene.

    (A neighbour average constant over the reference was divided by its near-zero spread: values up to 1e5.)
    """
    mdata = sp.datasets.drosophila_embryo()
    st, reference = mdata["spatial"][:, genes].copy(), mdata["rna"].copy()
    sp.model.SpaLSTF.setup_anndata(reference)
    model = sp.model.SpaLSTF(reference, st, n_top_genes=20, alignment=alignment)
    model.train(max_steps=3, enable_progress_bar=False)
    mean, _ = model.impute(st, progress_bar=False)
    module = model.module
    highest = (module.x0_max * module.target_std + module.target_mean).numpy()
    values = mean.to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= highest + 1e-4).all()


def test_a_one_gene_panel_is_refused_with_the_reason():
    mdata = sp.datasets.drosophila_embryo()
    reference = mdata["rna"].copy()
    sp.model.SpaLSTF.setup_anndata(reference)
    with pytest.raises(ValueError, match=r"at least 2.*cosine similarity.*two or more measured genes"):
        sp.model.SpaLSTF(reference, mdata["spatial"][:, ["sna"]].copy(), n_top_genes=20)
