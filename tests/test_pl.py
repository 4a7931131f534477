from __future__ import annotations

import dataclasses
import warnings

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

import spalstf as sp
from spalstf.metrics import accuracy_score
from spalstf.model import SpaLSTF

KEY = "spalstf_imputed"
STD = KEY + "_std"
N_CELLS = 40
METRICS = ["SPCC", "SSIM", "RMSE", "JS"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _spatial_data(seed: int = 0, n_dims: int = 2) -> ad.AnnData:
    """ST cells measuring g0..g5; g3, g4 held out and imputed (cross-validation) and g9 imputed (never measured)."""
    rng = np.random.default_rng(seed)
    genes = [f"g{i}" for i in range(6)]
    adata = ad.AnnData(
        X=rng.uniform(0, 1, (N_CELLS, len(genes))).astype(np.float32),
        obs=pd.DataFrame({"region": ["a", "b"] * (N_CELLS // 2)}, index=[f"c{i}" for i in range(N_CELLS)]),
        var=pd.DataFrame(index=genes),
    )
    adata.obsm["spatial"] = rng.uniform(0, 100, (N_CELLS, n_dims)) * np.array([1.0, 0.5, 0.3][:n_dims])
    imputed = ["g3", "g4", "g9"]
    adata.obsm[KEY] = pd.DataFrame(rng.gamma(2.0, 1.0, (N_CELLS, 3)), index=adata.obs_names, columns=imputed)
    adata.obsm[STD] = pd.DataFrame(rng.gamma(1.0, 0.1, (N_CELLS, 3)), index=adata.obs_names, columns=imputed)
    adata.uns[KEY] = {"params": {"n_samples": 4}, "imputed_genes": imputed, "measured_genes": ["g0", "g1", "g2", "g5"]}
    return adata


def _snapshot(adata: ad.AnnData) -> dict:
    return {
        "X": np.array(adata.X, copy=True),
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "obsm": {
            k: (v.copy() if isinstance(v, pd.DataFrame) else np.array(v, copy=True)) for k, v in adata.obsm.items()
        },
        "uns": {k: repr(v) for k, v in adata.uns.items()},
    }


def _assert_same(adata: ad.AnnData, before: dict) -> None:
    now = _snapshot(adata)
    np.testing.assert_array_equal(now["X"], before["X"])
    pd.testing.assert_frame_equal(now["obs"], before["obs"])
    pd.testing.assert_frame_equal(now["var"], before["var"])
    assert set(now["obsm"]) == set(before["obsm"])
    for k, v in before["obsm"].items():
        if isinstance(v, pd.DataFrame):
            pd.testing.assert_frame_equal(now["obsm"][k], v)
        else:
            np.testing.assert_array_equal(now["obsm"][k], v)
    assert now["uns"] == before["uns"]


def _scatter(ax) -> PathCollection:
    (collection,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    return collection


def _minmax(v: np.ndarray, q: tuple[float, float] = (1, 99)) -> np.ndarray:
    lo, hi = np.percentile(v, q)
    return (v - lo) / (hi - lo)


# spatial_genes ---------------------------------------------------------------------------------------------------
def test_spatial_genes_panels_titles_points_and_shared_scale():
    adata = _spatial_data()
    before = _snapshot(adata)
    axes = sp.pl.spatial_genes(adata, ["g3", "g9"], show=False)

    titles = [ax.get_title() for ax in axes]
    assert titles == [
        "g3 measured",
        "g3 imputed",
        "g3 uncertainty (std, 4 draws)",
        "g9 imputed",
        "g9 uncertainty (std, 4 draws)",
    ]
    for ax in axes:
        assert len(_scatter(ax).get_offsets()) == N_CELLS
    measured, imputed, std = (_scatter(ax) for ax in axes[:3])
    # measured and imputed share one colour scale; the std map has its own colour map and limits
    assert measured.get_clim() == imputed.get_clim() == (0.0, 1.0)
    assert measured.get_cmap().name == imputed.get_cmap().name == "viridis"
    assert std.get_cmap().name == "magma"
    np.testing.assert_allclose(std.get_clim(), np.percentile(adata.obsm[STD]["g3"], [1, 99]))
    # colours: each panel's 1st..99th percentile mapped to [0, 1] (drawn in sorted order, high values on top)
    np.testing.assert_allclose(np.sort(measured.get_array()), np.sort(_minmax(adata[:, "g3"].X.ravel())), rtol=1e-5)
    np.testing.assert_allclose(np.sort(imputed.get_array()), np.sort(_minmax(adata.obsm[KEY]["g3"].to_numpy())))
    assert np.all(np.diff(imputed.get_array()) >= 0)
    # the std map is drawn in the cells' order (no sorting)
    np.testing.assert_allclose(std.get_array(), adata.obsm[STD]["g3"].to_numpy())
    # one colour bar for measured + imputed, one for std, per gene; a placeholder for the unmeasured g9
    fig = axes[0].figure.figure  # the panels of a gene lie in a subfigure
    colorbars = [a for a in fig.axes if a not in axes and a.get_label() == "<colorbar>"]
    assert len(colorbars) == 4
    assert any("not measured" in t.get_text() for a in fig.axes for t in a.texts)
    _assert_same(adata, before)


@pytest.mark.parametrize("scale", ["minmax", "rank", "none"])
def test_spatial_genes_scales(scale):
    adata = _spatial_data()
    axes = sp.pl.spatial_genes(adata, "g4", scale=scale, percentiles=(0, 100), show_std=False, show=False)
    assert len(axes) == 2
    measured, imputed = (_scatter(ax) for ax in axes)
    assert measured.get_clim() == imputed.get_clim()
    raw_m, raw_i = adata[:, "g4"].X.ravel().astype(float), adata.obsm[KEY]["g4"].to_numpy()
    if scale == "minmax":  # exact min-max
        assert measured.get_clim() == (0.0, 1.0)
        np.testing.assert_allclose([imputed.get_array().min(), imputed.get_array().max()], [0.0, 1.0])
        np.testing.assert_allclose(np.sort(measured.get_array()), np.sort(_minmax(raw_m, (0, 100))), rtol=1e-6)
    elif scale == "rank":
        assert measured.get_clim() == (0.0, 1.0)
        expected = (pd.Series(raw_i).rank(method="min").to_numpy() - 1) / (N_CELLS - 1)
        np.testing.assert_allclose(np.sort(imputed.get_array()), np.sort(expected))
    else:
        lo, hi = min(raw_m.min(), raw_i.min()), max(raw_m.max(), raw_i.max())
        np.testing.assert_allclose(measured.get_clim(), (lo, hi), rtol=1e-6)
        np.testing.assert_allclose(np.sort(imputed.get_array()), np.sort(raw_i))


def test_spatial_genes_std_and_measured_switches():
    adata = _spatial_data()
    axes = sp.pl.spatial_genes(adata, ["g3", "g4"], show_measured=False, show_std=False, show=False)
    assert [ax.get_title() for ax in axes] == ["g3 imputed", "g4 imputed"]
    del adata.obsm[STD]
    axes = sp.pl.spatial_genes(adata, "g3", show=False)  # std panel only when the key exists
    assert [ax.get_title() for ax in axes] == ["g3 measured", "g3 imputed"]
    with pytest.raises(KeyError, match=STD):
        sp.pl.spatial_genes(adata, "g3", show_std=True, show=False)


def test_spatial_genes_layer_and_array_obsm():
    adata = _spatial_data()
    adata.layers["doubled"] = adata.X * 2
    adata.obsm[KEY] = adata.obsm[KEY].to_numpy()  # gene names from uns[key]["imputed_genes"]
    axes = sp.pl.spatial_genes(adata, "g3", layer="doubled", scale="none", show_std=False, show=False)
    np.testing.assert_allclose(np.sort(_scatter(axes[0]).get_array()), np.sort(adata.layers["doubled"][:, 3]))
    with pytest.raises(KeyError, match="missing_layer"):
        sp.pl.spatial_genes(adata, "g3", layer="missing_layer", show=False)


def test_spatial_genes_3d_coordinates_dims_and_projection():
    adata = _spatial_data(n_dims=3)
    coords = adata.obsm["spatial"]
    axes = sp.pl.spatial_genes(adata, "g9", dims=(0, 2), show_std=False, show=False)
    (ax,) = axes
    offsets = np.asarray(_scatter(ax).get_offsets())
    np.testing.assert_allclose(offsets[np.lexsort(offsets.T)], coords[:, [0, 2]][np.lexsort(coords[:, [0, 2]].T)])
    assert ax.get_xlabel() == "spatial x" and ax.get_ylabel() == "spatial z"
    axes = sp.pl.spatial_genes(adata, "g9", projection="3d", show_std=False, show=False)
    assert axes[0].name == "3d"
    assert len(_scatter(axes[0]).get_offsets()) == N_CELLS
    with pytest.raises(ValueError, match="dims"):
        sp.pl.spatial_genes(adata, "g9", dims=(0, 3), show=False)
    with pytest.raises(ValueError, match="3 coordinate axes"):
        sp.pl.spatial_genes(adata, "g9", dims=(0, 1), projection="3d", show=False)


def test_spatial_genes_grid():
    adata = _spatial_data()
    fig = sp.pl.spatial_genes(adata, ["g3", "g4", "g9"], ncols=2, show=False, return_fig=True)
    assert isinstance(fig, Figure)
    assert len(fig.subfigs) == 4  # 2 x 2 blocks, the last one empty and hidden
    assert not fig.subfigs[-1].get_visible()
    width, height = fig.get_size_inches()
    assert width > height


def test_spatial_genes_errors():
    adata = _spatial_data()
    with pytest.raises(KeyError, match="'nope'.*'g99'"):
        sp.pl.spatial_genes(adata, ["g3", "nope", "g99"], show=False)
    with pytest.raises(KeyError, match="other_key"):
        sp.pl.spatial_genes(adata, "g3", key="other_key", show=False)
    with pytest.raises(KeyError, match="coords"):
        sp.pl.spatial_genes(adata, "g3", spatial_key="coords", show=False)
    with pytest.raises(ValueError, match="scale"):
        sp.pl.spatial_genes(adata, "g3", scale="zscore", show=False)
    with pytest.raises(ValueError, match="percentiles"):
        sp.pl.spatial_genes(adata, "g3", percentiles=(99, 1), show=False)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="3 panels"):
        sp.pl.spatial_genes(adata, "g3", ax=ax, show=False)


def test_scanpy_conventions_ax_show_save_return_fig(tmp_path):
    adata = _spatial_data()
    fig, ax = plt.subplots()
    out = sp.pl.spatial_genes(adata, "g9", show_std=False, ax=ax, show=False)
    assert out is ax
    assert ax.get_title() == "g9 imputed" and len(fig.axes) == 2  # the panel and its colour bar
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Agg cannot show
        assert sp.pl.spatial_genes(adata, "g9", show=True) is None
        assert isinstance(sp.pl.spatial_genes(adata, "g9", show=True, return_fig=True), Figure)
    path = tmp_path / "sub" / "genes.png"
    sp.pl.spatial_genes(adata, "g9", show=False, save=path)
    assert path.stat().st_size > 0
    sp.pl.spatial_genes(adata, "g9", show=False, save=tmp_path / "noext")
    assert (tmp_path / "noext.png").exists()

    import scanpy as sc

    old = sc.settings.figdir
    sc.settings.figdir = tmp_path / "figdir"
    try:
        sp.pl.spatial_genes(adata, "g9", show=False, save=True)
    finally:
        sc.settings.figdir = old
    assert (tmp_path / "figdir" / f"spatial_genes.{sc.settings.file_format_figs}").exists()


# benchmark -------------------------------------------------------------------------------------------------------
def _scores(with_nan: bool = False) -> pd.DataFrame:
    """Tidy per-gene scores of three methods over two folds (A best, C worst on every metric)."""
    rng = np.random.default_rng(0)
    rows = []
    quality = {"A": 0.8, "B": 0.5, "C": 0.2}
    for method, q in quality.items():
        for fold in range(2):
            for gene in range(5):
                for metric in METRICS:
                    good = q + rng.normal(0, 0.05)
                    value = good if metric in ("SPCC", "SSIM") else 1.0 - good
                    rows.append((method, fold, f"g{fold * 5 + gene}", metric, value))
    scores = pd.DataFrame(rows, columns=["method", "fold", "gene", "metric", "value"])
    if with_nan:
        scores.loc[(scores["method"] == "B") & (scores["metric"] == "JS"), "value"] = np.nan
    return scores


@dataclasses.dataclass
class _FakeCVResult:
    """The shape of sp.tl.cross_validate's CrossValidationResult."""

    scores: pd.DataFrame
    clustering: pd.DataFrame
    resources: pd.DataFrame
    predictions: dict
    as_values: dict

    def summary(self) -> pd.DataFrame:
        med = self.scores.pivot_table(index="method", columns="metric", values="value", aggfunc="median")
        med["AS"] = pd.Series(self.as_values)
        med["time_s"] = 1.0
        return med


def _bar_heights(ax) -> list[float]:
    return [p.get_height() for p in ax.patches]


def test_benchmark_from_scores_dataframe():
    scores = _scores()
    scores_before = scores.copy()
    axes = sp.pl.benchmark(scores, show=False)
    assert len(axes) == 5
    assert [ax.get_title() for ax in axes] == [
        "SPCC (higher is better)",
        "SSIM (higher is better)",
        "RMSE (lower is better)",
        "JS (lower is better)",
        "accuracy score (AS)",
    ]
    for ax in axes[:4]:
        assert len(ax.patches) == 3  # one box per method
        assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C"]
    medians = scores.pivot_table(index="method", columns="metric", values="value", aggfunc="median")
    expected = accuracy_score(medians, metric_cols=METRICS)
    np.testing.assert_allclose(_bar_heights(axes[-1]), expected.loc[["A", "B", "C"]].to_numpy())
    np.testing.assert_allclose(_bar_heights(axes[-1]), [1.0, 2 / 3, 1 / 3])
    # box medians are the per-gene medians of each method
    spcc_medians = [line.get_ydata()[0] for line in axes[0].lines if line.get_gid() == "median"]
    np.testing.assert_allclose(spcc_medians, medians.loc[["A", "B", "C"], "SPCC"].to_numpy())
    pd.testing.assert_frame_equal(scores, scores_before)


def test_benchmark_from_cross_validation_result_uses_its_as():
    scores = _scores()
    result = _FakeCVResult(scores, pd.DataFrame(), pd.DataFrame(), {}, as_values={"A": 0.4, "B": 0.9, "C": 0.6})
    fig = sp.pl.benchmark(result, metrics=["SPCC", "RMSE"], show=False, return_fig=True)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3
    as_ax = axes[-1]
    assert [t.get_text() for t in as_ax.get_xticklabels()] == ["B", "C", "A"]  # best AS first
    np.testing.assert_allclose(_bar_heights(as_ax), [0.9, 0.6, 0.4])
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["B", "C", "A"]  # same order in every panel


def test_benchmark_options_and_errors():
    scores = _scores(with_nan=True)
    with pytest.warns(UserWarning, match="'B'"):
        axes = sp.pl.benchmark(scores, show=False, show_points=True, order=["C", "B", "A"])
    assert len(axes[3].patches) == 2  # B has no JS value: no box
    labels = [t.get_text() for t in axes[-1].texts]
    assert "n/a" in labels
    scores = _scores()
    _, ax = plt.subplots()
    assert sp.pl.benchmark(scores, metrics="SPCC", show_as=False, ax=ax, show=False) is ax
    with pytest.raises(ValueError, match="single panel"):
        sp.pl.benchmark(scores, ax=ax, show=False)
    with pytest.raises(KeyError, match="'ARI'"):
        sp.pl.benchmark(scores, metrics=["SPCC", "ARI"], show=False)
    with pytest.raises(KeyError, match="'D'"):
        sp.pl.benchmark(scores, order=["A", "D"], show=False)
    with pytest.raises(KeyError, match="'value'"):
        sp.pl.benchmark(scores.drop(columns="value"), show=False)
    with pytest.raises(TypeError, match="cross_validate"):
        sp.pl.benchmark({"A": 1}, show=False)


# alignment_umap --------------------------------------------------------------------------------------------------
def _reference(seed: int = 1, n: int = 50) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    genes = [f"g{i}" for i in range(12)]
    return ad.AnnData(
        X=rng.poisson(3.0, (n, len(genes))).astype(np.float32),
        obs=pd.DataFrame(index=[f"r{i}" for i in range(n)]),
        var=pd.DataFrame(index=genes),
    )


def test_alignment_umap_three_sources_and_inputs_unchanged():
    adata_st, adata_sc = _spatial_data(), _reference()
    st_before, sc_before = _snapshot(adata_st), _snapshot(adata_sc)
    ax = sp.pl.alignment_umap(adata_st, adata_sc, n_neighbors=10, show=False)
    collection = ax.collections[0]
    assert len(collection.get_offsets()) == adata_sc.n_obs + 2 * N_CELLS
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"reference ({adata_sc.n_obs})", f"measured ST ({N_CELLS})", f"imputed ST ({N_CELLS})"]
    assert ax.get_title() == "joint UMAP on 2 genes"  # the held-out genes g3, g4
    assert len({tuple(c) for c in collection.get_facecolors()}) == 3
    _assert_same(adata_st, st_before)
    _assert_same(adata_sc, sc_before)

    # subsampling, reproducibility and the case without measured imputed genes
    with pytest.warns(UserWarning, match="measured spatial cells are left out"):
        ax1 = sp.pl.alignment_umap(adata_st, adata_sc, genes=["g9"], max_cells=30, random_state=3, show=False)
    assert len(ax1.collections[0].get_offsets()) == 60
    assert len(ax1.get_legend().get_texts()) == 2


def test_alignment_umap_errors():
    adata_st, adata_sc = _spatial_data(), _reference()
    with pytest.raises(KeyError, match="'g7'"):
        sp.pl.alignment_umap(adata_st, adata_sc, genes=["g3", "g7"], show=False)
    with pytest.raises(KeyError, match="nokey"):
        sp.pl.alignment_umap(adata_st, adata_sc, key="nokey", show=False)
    with pytest.raises(KeyError, match="'g9'"):
        sp.pl.alignment_umap(adata_st, adata_sc[:, :9].copy(), genes=["g9"], show=False)


# training_history ------------------------------------------------------------------------------------------------
class _FakeModel:
    def __init__(self, history):
        self.history = history


def _frame(name: str, values) -> pd.DataFrame:
    return pd.DataFrame({name: values}, index=pd.Index(range(len(values)), name="epoch"))


def test_training_history_fake_model_with_validation():
    n_epochs = 7
    history = {
        f"train_{t}": _frame(f"train_{t}", np.linspace(2, 1, n_epochs)) for t in ("loss", "mse", "kl", "mean_mse")
    }
    history["validation_loss"] = _frame("validation_loss", np.linspace(2.5, 1.5, n_epochs))
    axes = sp.pl.training_history(_FakeModel(history), show=False)
    assert [ax.get_title() for ax in axes] == ["total loss", "diffusion noise MSE", "KL term", "posterior-mean MSE"]
    assert [len(ax.get_lines()) for ax in axes] == [2, 1, 1, 1]
    for ax in axes:
        assert ax.get_xlabel() == "epoch"
        for line in ax.get_lines():
            assert len(line.get_xdata()) == n_epochs
    np.testing.assert_allclose(axes[0].get_lines()[1].get_ydata(), history["validation_loss"].iloc[:, 0])
    assert axes[0].get_legend() is not None

    _, ax = plt.subplots()
    assert sp.pl.training_history(_FakeModel(history), terms="kl", ax=ax, log_y=True, show=False) is ax
    assert ax.get_yscale() == "log"
    # default: log scale only for a term spanning more than a decade
    history["train_kl"] = _frame("train_kl", np.geomspace(5, 0.01, n_epochs))
    axes = sp.pl.training_history(_FakeModel(history), show=False)
    assert [ax.get_yscale() for ax in axes] == ["linear", "linear", "log", "linear"]
    with pytest.raises(ValueError, match="single panel"):
        sp.pl.training_history(_FakeModel(history), ax=ax, show=False)
    with pytest.raises(KeyError, match="'elbo'"):
        sp.pl.training_history(_FakeModel(history), terms=["loss", "elbo"], show=False)
    for empty in (None, {}):
        with pytest.raises(RuntimeError, match="not trained"):
            sp.pl.training_history(_FakeModel(empty), show=False)


def test_training_history_of_a_trained_model(make_pair, tiny_model, tiny_train):
    adata_st, adata_sc = make_pair()
    SpaLSTF.setup_anndata(adata_sc)
    torch.manual_seed(0)
    model = SpaLSTF(adata_sc, adata_st, **tiny_model)
    with pytest.raises(RuntimeError, match="not trained"):
        sp.pl.training_history(model, show=False)
    model.train(**tiny_train)
    axes = sp.pl.training_history(model, show=False)
    assert len(axes) == 4
    for ax, term in zip(axes, ("loss", "mse", "kl", "mean_mse"), strict=True):
        (line,) = ax.get_lines()
        assert len(line.get_xdata()) == tiny_train["max_epochs"]
        np.testing.assert_allclose(line.get_ydata(), model.history[f"train_{term}"].iloc[:, 0].astype(float))


# intervals: width maps, calibration and reliability plots --------------------------------------------------------
def test_spatial_genes_interval_width_panel():
    adata = _spatial_data()
    mean = adata.obsm[KEY]
    adata.obsm[KEY + "_lower"] = mean - 0.5
    adata.obsm[KEY + "_upper"] = mean + 0.5 + mean * 0.1
    adata.obsm[KEY + "_lower"].iloc[2] = np.nan  # a cell without signal
    adata.obsm[KEY + "_upper"].iloc[2] = np.nan
    adata.uns[KEY]["interval"] = {"level": 0.9}
    before = _snapshot(adata)
    axes = sp.pl.spatial_genes(adata, "g3", show_std=False, show=False)
    assert [ax.get_title() for ax in axes] == ["g3 measured", "g3 imputed", "g3 90% interval width"]
    width = _scatter(axes[2]).get_array()
    expected = (adata.obsm[KEY + "_upper"] - adata.obsm[KEY + "_lower"])["g3"].to_numpy()
    np.testing.assert_allclose(np.ma.filled(width, np.nan), expected)  # in the cells' order, NaN kept
    assert _scatter(axes[2]).get_cmap().name == "magma"
    assert [
        ax.get_title() for ax in sp.pl.spatial_genes(adata, "g3", show_interval=False, show_std=False, show=False)
    ] == [
        "g3 measured",
        "g3 imputed",
    ]
    _assert_same(adata, before)
    del adata.obsm[KEY + "_upper"]
    with pytest.raises(KeyError, match=KEY + "_upper"):
        sp.pl.spatial_genes(adata, "g3", show_interval=True, show=False)


def _interval_result():
    levels = [0.5, 0.7, 0.9]
    rows = []
    for variant, shift in (("per_cell", 0.01), ("per_gene", -0.02)):
        for level in levels:
            rows.append(
                {
                    "method": "spalstf",
                    "variant": variant,
                    "level": level,
                    "nominal": level == 0.9,
                    "coverage": level + shift,
                    "mean_width": level * 3,
                    "interval_score": 3.0 + (variant == "per_gene"),
                }
            )
    intervals = pd.DataFrame(rows)
    reliability = pd.DataFrame(
        {
            "method": "spalstf",
            "fold": 0,
            "gene": [f"g{i}" for i in range(6)],
            "reliability": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "SPCC": [0.0, 0.3, 0.2, 0.5, 0.4, 0.7],
            "SPCC_truth": [0.1, 0.2, 0.3, 0.4, 0.5, np.nan],
        }
    )
    return dataclasses.make_dataclass("Result", ["intervals", "reliability"])(intervals, reliability)


def test_calibration_plot_lines_and_legend():
    result = _interval_result()
    ax = sp.pl.calibration(result, show=False)
    lines = [line for line in ax.get_lines() if "calibration" not in line.get_label()]
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_ydata(), [0.51, 0.71, 0.91])
    labels = [line.get_label() for line in lines]
    assert labels[0].startswith("per cell and gene (SpaLSTF): error 0.010, score@90% 3.00")
    assert labels[1].startswith("one width per gene: error 0.020, score@90% 4.00")
    with pytest.raises(KeyError, match="tangram"):
        sp.pl.calibration(result, method="tangram", show=False)
    empty = dataclasses.replace(result, intervals=result.intervals.iloc[:0])
    with pytest.raises(ValueError, match="interval"):
        sp.pl.calibration(empty, show=False)


def test_reliability_plot_points_and_title():
    result = _interval_result()
    ax = sp.pl.reliability(result, show=False)
    offsets = _scatter(ax).get_offsets()
    np.testing.assert_allclose(offsets[:, 0], result.reliability["reliability"])
    rho = result.reliability["reliability"].corr(result.reliability["SPCC"], method="spearman")
    assert ax.get_title() == f"spalstf: 6 genes, Spearman {rho:.2f}"
    ax = sp.pl.reliability(result, spcc="SPCC_truth", show=False)
    assert len(_scatter(ax).get_offsets()) == 5  # the gene without a truth SPCC is left out
    with pytest.raises(ValueError, match="spcc must be"):
        sp.pl.reliability(result, spcc="AS", show=False)
