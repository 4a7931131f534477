"""`to_spatialdata`: an AnnData of cells with coordinates as a SpatialData object (cells as circles, one table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from .._constants import INSTANCE_KEY, REGION_KEY, SHAPES_KEY, SPATIAL_KEY, TABLE_KEY
from .._spatialdata import import_spatialdata

if TYPE_CHECKING:
    from spatialdata import SpatialData


def _default_radius(xy: np.ndarray) -> float:
    """Half the median distance from a cell to its nearest other cell (circles that touch, rarely overlap)."""
    from scipy.spatial import cKDTree

    if len(xy) < 2:
        return 1.0
    dist, _ = cKDTree(xy).query(xy, k=2)
    nearest = dist[:, 1][dist[:, 1] > 0]
    return float(np.median(nearest) / 2) if nearest.size else 1.0


def to_spatialdata(
    adata: AnnData,
    *,
    dims: Sequence[int] = (0, 1),
    radius: float | None = None,
    shapes_key: str = SHAPES_KEY,
    table_key: str = TABLE_KEY,
    region_key: str = REGION_KEY,
    instance_key: str = INSTANCE_KEY,
) -> SpatialData:
    """A :class:`spatialdata.SpatialData` of the cells of ``adata``: circles at their coordinates and one table.

    The shapes element ``shapes_key`` has one circle per cell (centre: the coordinates ``dims`` of
    ``adata.obsm["spatial"]``, in the ``"global"`` coordinate system; index ``0 .. n_obs - 1``). The table
    ``table_key`` is a copy of ``adata`` (all coordinates kept in ``obsm["spatial"]``) that annotates it, with
    ``obs[region_key]`` (the element's name) and ``obs[instance_key]`` (the circle of each cell) added. ``adata`` is
    not modified. Needs spatialdata (``pip install spatialdata``; it comes with squidpy).

    Parameters
    ----------
    adata
        Cells with coordinates in ``obsm["spatial"]``.
    dims
        The two coordinate columns that place the circles (e.g. ``(0, 2)`` for a lateral view of 3-D coordinates).
    radius
        Circle radius in coordinate units. ``None``: half the median distance of a cell to its nearest neighbour.
    shapes_key, table_key
        Names of the shapes element and of the table.
    region_key, instance_key
        Names of the table's ``obs`` columns saying which element and which circle each cell is.

    Returns
    -------
    The new SpatialData object.

    Examples
    --------
    >>> import spalstf as sp
    >>> adata_st = sp.datasets.drosophila_embryo()["spatial"]
    >>> sdata = sp.datasets.to_spatialdata(adata_st, dims=(0, 2))
    >>> sdata.tables["table"].n_obs, len(sdata.shapes["cells"])
    (3039, 3039)
    """
    sd = import_spatialdata()
    from geopandas import GeoDataFrame
    from shapely import points
    from spatialdata.models import ShapesModel, TableModel
    from spatialdata.transformations import Identity

    if SPATIAL_KEY not in adata.obsm:
        raise KeyError(f"adata.obsm[{SPATIAL_KEY!r}] is missing: the circles need the cells' coordinates there.")
    coords = np.asarray(adata.obsm[SPATIAL_KEY], dtype=float)
    dims = list(dims)
    if len(dims) != 2 or len(set(dims)) != 2 or not all(0 <= d < coords.shape[1] for d in dims):
        raise ValueError(
            f"dims must be two different columns of obsm['spatial'] (which has {coords.shape[1]}), got {dims}."
        )
    if not np.isfinite(coords[:, dims]).all():
        raise ValueError("obsm['spatial'] has missing or infinite coordinates; circles need finite positions.")
    for column in (region_key, instance_key):
        if column in adata.obs:
            raise ValueError(
                f"adata.obs already has a column {column!r}; pass another region_key / instance_key for the table."
            )
    xy = coords[:, dims]
    if radius is None:
        radius = _default_radius(xy)
    elif not (np.isscalar(radius) and np.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a positive number or None, got {radius!r}.")

    ids = np.arange(adata.n_obs)
    circles = GeoDataFrame({"radius": np.full(adata.n_obs, float(radius))}, geometry=points(xy), index=ids)
    shapes = ShapesModel.parse(circles, transformations={"global": Identity()})
    table = adata.copy()
    table.obs[region_key] = pd.Categorical([shapes_key] * adata.n_obs)
    table.obs[instance_key] = ids
    table = TableModel.parse(table, region=shapes_key, region_key=region_key, instance_key=instance_key)
    return sd.SpatialData(shapes={shapes_key: shapes}, tables={table_key: table})
