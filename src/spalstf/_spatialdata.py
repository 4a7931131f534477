"""SpatialData support: the one place that imports :mod:`spatialdata` (lazily) and reads or adds its tables.

spatialdata is optional at import time (``import spalstf`` never imports it); it comes with squidpy, and the functions
that need it import it through :func:`import_spatialdata`, which names the package to install when it is missing.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from anndata import AnnData

if TYPE_CHECKING:
    from spatialdata import SpatialData

SPATIALDATA_MISSING = (
    "This needs the spatialdata package, which is not installed: `pip install spatialdata` (or "
    "`pip install 'spalstf[spatialdata]'`; recent squidpy brings it too)."
)


def import_spatialdata() -> Any:
    """The :mod:`spatialdata` module; an `ImportError` naming ``pip install spatialdata`` when it is missing."""
    try:
        import spatialdata
    except ImportError as err:
        raise ImportError(SPATIALDATA_MISSING) from err
    return spatialdata


def is_spatialdata(obj: Any) -> bool:
    """Whether ``obj`` is a :class:`spatialdata.SpatialData`.

    spatialdata is not imported here: such an object exists only if the caller imported it.
    """
    module = sys.modules.get("spatialdata")
    return module is not None and isinstance(obj, module.SpatialData)


class TableKeys(NamedTuple):
    """What a SpatialData table annotates: the region element(s) and the obs columns naming region and instance."""

    region: list[str]
    region_key: str
    instance_key: str


def resolve_table(
    sdata: SpatialData, table_key: str | None, *, require_region: bool = True
) -> tuple[str, AnnData, TableKeys]:
    """The table ``table_key`` of ``sdata`` (``None``: its only table), with the region it annotates.

    Errors name the problem and the fix: no or several tables without ``table_key``, an unknown name, a table that
    annotates no region (only with ``require_region``; without, such a table is returned with empty keys), a region
    element that is not in ``sdata``, and instance ids that do not identify the cells: an id used twice within a
    region, or (for a shapes region) an id that is not in the shapes' index.
    """
    from spatialdata.models import TableModel

    names = list(sdata.tables.keys())
    if table_key is None:
        if len(names) != 1:
            raise ValueError(
                f"The SpatialData object has {len(names)} tables ({names}); pass table_key= the one whose cells to use."
                if names
                else "The SpatialData object has no table: add the cells' expression as a table annotating their "
                "shapes or labels (spatialdata.models.TableModel.parse(adata, region=..., region_key=..., "
                "instance_key=...)), then pass table_key=."
            )
        table_key = names[0]
    if table_key not in sdata.tables:
        raise KeyError(f"table_key {table_key!r} not found in the SpatialData object; its tables are {names}.")
    table = sdata.tables[table_key]
    attrs = table.uns.get(TableModel.ATTRS_KEY) or {}
    region = attrs.get(TableModel.REGION_KEY)
    if region is None or (not isinstance(region, str) and len(region) == 0):
        if not require_region:
            return table_key, table, TableKeys([], "", "")
        raise ValueError(
            f"Table {table_key!r} annotates no region (no shapes or labels element), so its cells have no place in "
            "space. Link it to the element of its cells with spatialdata.models.TableModel.parse(table, "
            "region=<element name>, region_key=<obs column>, instance_key=<obs column>, overwrite_metadata=True), or "
            "impute the AnnData itself."
        )
    regions = [region] if isinstance(region, str) else [str(r) for r in region]
    elements = {*sdata.shapes.keys(), *sdata.labels.keys(), *sdata.points.keys()}
    missing = [r for r in regions if r not in elements]
    if missing:
        raise ValueError(
            f"Table {table_key!r} annotates {missing}, which the SpatialData object does not hold (its shapes, labels "
            f"and points are {sorted(elements)}); add the element or correct the table's region."
        )
    keys = TableKeys(regions, attrs[TableModel.REGION_KEY_KEY], attrs[TableModel.INSTANCE_KEY])
    for column in (keys.region_key, keys.instance_key):
        if column not in table.obs:
            raise ValueError(
                f"Table {table_key!r} names obs column {column!r} as its region or instance key, but has no such "
                "column; parse it again with spatialdata.models.TableModel.parse."
            )
    _check_instances(sdata, table_key, table, keys)
    return table_key, table, keys


def _check_instances(sdata: SpatialData, table_key: str, table: AnnData, keys: TableKeys) -> None:
    """Raise a `ValueError` when the instance ids do not name one cell each of the region element."""
    obs = table.obs[[keys.region_key, keys.instance_key]]
    duplicated = obs.duplicated()
    if duplicated.any():
        examples = obs[duplicated].head(3).itertuples(index=False)
        raise ValueError(
            f"Table {table_key!r} has {int(duplicated.sum())} duplicated instance ids (obs[{keys.instance_key!r}] "
            f"within a region, e.g. {[tuple(e) for e in examples]}), so its rows cannot be matched to one element "
            "each. Give every row its own instance id and parse the table again (TableModel.parse)."
        )
    for region in keys.region:
        if region not in sdata.shapes:  # labels and points: the ids are not checked here
            continue
        ids = obs.loc[obs[keys.region_key].astype(str) == region, keys.instance_key]
        absent = ids[~ids.isin(sdata.shapes[region].index)]
        if len(absent):
            raise ValueError(
                f"Table {table_key!r} has {len(absent)} instance id(s) not in the index of shapes {region!r} (e.g. "
                f"{absent.head(3).tolist()}), so those rows are no element. Correct obs[{keys.instance_key!r}] to the "
                "shapes' index, or the shapes."
            )


def add_table(sdata: SpatialData, name: str, adata: AnnData, keys: TableKeys, *, overwrite: bool = False) -> AnnData:
    """Add ``adata`` (whose obs holds the region and instance columns) as table ``name`` annotating ``keys.region``."""
    from spatialdata.models import TableModel

    if name in sdata.tables and not overwrite:
        raise ValueError(
            f"The SpatialData object already has a table {name!r}; pass another key_added or overwrite=True."
        )
    table = TableModel.parse(
        adata,
        region=keys.region[0] if len(keys.region) == 1 else keys.region,
        region_key=keys.region_key,
        instance_key=keys.instance_key,
        overwrite_metadata=True,
    )
    sdata.tables[name] = table
    return table
