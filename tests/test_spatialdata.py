"""SpatialData in and out: imputation of a table, the imputed genes as a new table, and a zarr round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import spalstf as sp

spatialdata = pytest.importorskip("spatialdata")

KEY = "spalstf_imputed"
ATTRS = "spatialdata_attrs"


def _sdata(adata_st):
    """The pair's spatial cells as a SpatialData object (its obs already has a 'region' column)."""
    return sp.datasets.to_spatialdata(adata_st, region_key="element", instance_key="cell")


def _elements(sdata) -> dict:
    """A copy of everything in ``sdata`` except the tables' documented output keys."""
    tables = {
        name: {
            "X": np.array(t.X, copy=True),
            "obs": t.obs.copy(),
            "var": t.var.copy(),
            "obsm": {k: np.array(v, copy=True) for k, v in t.obsm.items()},
            "uns": {k: v for k, v in t.uns.items()},
        }
        for name, t in sdata.tables.items()
    }
    return {"shapes": {k: v.copy() for k, v in sdata.shapes.items()}, "tables": tables}


def _assert_same_elements(sdata, before: dict, imputed_table: str | None = None, key: str = KEY) -> None:
    """Nothing changed, except ``obsm[key]`` and ``uns[key]`` of ``imputed_table``."""
    assert set(sdata.shapes) == set(before["shapes"])
    for name, shapes in before["shapes"].items():
        pd.testing.assert_frame_equal(sdata.shapes[name], shapes)
        assert spatialdata.transformations.get_transformation(sdata.shapes[name], get_all=True).keys() == {"global"}
    assert set(sdata.tables) == set(before["tables"])
    for name, old in before["tables"].items():
        table = sdata.tables[name]
        new_keys = {key} if name == imputed_table else set()
        np.testing.assert_array_equal(table.X, old["X"])
        pd.testing.assert_frame_equal(table.obs, old["obs"])
        pd.testing.assert_frame_equal(table.var, old["var"])
        assert set(table.obsm) == set(old["obsm"]) | new_keys
        for k, v in old["obsm"].items():
            np.testing.assert_array_equal(table.obsm[k], v)
        assert set(table.uns) == set(old["uns"]) | new_keys
        assert table.uns.get(ATTRS) == old["uns"].get(ATTRS)


def test_converter_places_one_circle_per_cell_at_its_coordinates(pair):
    adata_st, _ = pair
    obs = adata_st.obs.copy()
    sdata = _sdata(adata_st)
    circles, table = sdata.shapes["cells"], sdata.tables["table"]
    np.testing.assert_allclose(np.c_[circles.geometry.x, circles.geometry.y], adata_st.obsm["spatial"][:, :2])
    assert (circles["radius"] > 0).all()
    assert table.uns[ATTRS] == {"region": "cells", "region_key": "element", "instance_key": "cell"}
    assert table.obs["cell"].tolist() == circles.index.tolist()
    assert table.obs_names.equals(adata_st.obs_names)
    pd.testing.assert_frame_equal(adata_st.obs, obs)  # the AnnData is not modified
    with pytest.raises(ValueError, match="already has a column 'region'"):
        sp.datasets.to_spatialdata(adata_st)
    with pytest.raises(ValueError, match="dims must be two different columns"):
        sp.datasets.to_spatialdata(adata_st, region_key="element", dims=(0, 2))


def test_round_trip_impute_add_table_write_read_keeps_every_value(pair, trained, tmp_path):
    adata_st, adata_sc = pair
    sdata = _sdata(adata_st)
    sdata.tables["rna"] = adata_sc.copy()  # a second table, annotating nothing
    before = _elements(sdata)

    assert sp.tl.spalstf_impute(sdata, adata_sc, model=trained.model, table_key="table", progress_bar=False) is None
    table = sdata.tables["table"]
    _assert_same_elements(sdata, before, imputed_table="table")  # region and instance keys, shapes, other tables kept
    assert table.uns[KEY]["imputed_genes"] == trained.model.imputed_genes

    genes = sp.get.imputed(sdata, table_key="table", key_added="imputed", include_measured=True)
    assert sdata.tables["imputed"] is genes
    assert genes.uns[ATTRS] == table.uns[ATTRS]
    pd.testing.assert_series_equal(genes.obs["cell"], table.obs["cell"])
    np.testing.assert_array_equal(genes.X[:, table.n_vars :], table.obsm[KEY].to_numpy())

    path = tmp_path / "embryo.zarr"
    sdata.write(path)
    back = spatialdata.read_zarr(path)
    assert set(back.tables) == {"table", "rna", "imputed"}
    read = back.tables["imputed"]
    np.testing.assert_array_equal(read.X, genes.X)
    assert read.var_names.equals(genes.var_names)
    assert read.var["imputed"].tolist() == genes.var["imputed"].tolist()
    assert read.uns[ATTRS] == genes.uns[ATTRS]
    assert list(read.uns[KEY]["imputed_genes"]) == table.uns[KEY]["imputed_genes"]  # lists are read as arrays
    pd.testing.assert_frame_equal(back.tables["table"].obsm[KEY], table.obsm[KEY])
    np.testing.assert_array_equal(back.tables["table"].obs["cell"], table.obs["cell"])
    pd.testing.assert_frame_equal(back.shapes["cells"], sdata.shapes["cells"])
    np.testing.assert_array_equal(sp.get.imputed(back, table_key="table").X, table.obsm[KEY].to_numpy())


def test_copy_returns_the_modified_copy_and_leaves_the_input(pair, trained):
    adata_st, adata_sc = pair
    sdata = _sdata(adata_st)
    before = _elements(sdata)
    result = sp.tl.spalstf_impute(sdata, adata_sc, model=trained.model, key_added="imp", copy=True, progress_bar=False)
    assert isinstance(result, spatialdata.SpatialData) and result is not sdata
    _assert_same_elements(sdata, before)
    assert "imp" in result.tables["table"].obsm and "imp" in result.tables["table"].uns
    pd.testing.assert_frame_equal(result.shapes["cells"], sdata.shapes["cells"])


def test_bad_tables_are_named_with_the_fix(pair, trained):
    adata_st, adata_sc = pair
    sdata = _sdata(adata_st)
    run = dict(model=trained.model, progress_bar=False)
    sdata.tables["rna"] = adata_sc.copy()
    with pytest.raises(ValueError, match=r"has 2 tables .*pass table_key"):
        sp.tl.spalstf_impute(sdata, adata_sc, **run)
    with pytest.raises(KeyError, match="'cells_table' not found.*'table'"):
        sp.tl.spalstf_impute(sdata, adata_sc, table_key="cells_table", **run)
    with pytest.raises(ValueError, match="annotates no region"):
        sp.tl.spalstf_impute(sdata, adata_sc, table_key="rna", **run)
    with pytest.raises(ValueError, match="table_key is for a SpatialData"):
        sp.tl.spalstf_impute(adata_st, adata_sc, table_key="table", **run)
    assert KEY not in sdata.tables["table"].obsm

    sp.tl.spalstf_impute(sdata, adata_sc, table_key="table", **run)
    with pytest.raises(KeyError, match="run sp.tl.spalstf_impute first"):
        sp.get.imputed(sdata, key="other", table_key="table")
    sp.get.imputed(sdata, table_key="table", key_added="imputed")
    with pytest.raises(ValueError, match="already has a table 'imputed'"):
        sp.get.imputed(sdata, table_key="table", key_added="imputed")
    sp.get.imputed(sdata, table_key="table", key_added="imputed", overwrite=True)
    with pytest.raises(ValueError, match="is the imputed table itself"):
        sp.get.imputed(sdata, table_key="table", key_added="table")
