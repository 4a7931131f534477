"""Key names written to or read from AnnData objects (one place, no scattered string literals)."""

from __future__ import annotations

#: Default ``obsm``/``uns`` key of :func:`spalstf.tl.spalstf_impute`.
IMPUTED_KEY = "spalstf_imputed"
#: Suffix of the ``obsm`` key holding the per-cell, per-gene standard deviation over draws.
STD_SUFFIX = "_std"
#: Suffixes of the ``obsm`` keys holding the lower and upper bounds of the calibrated interval (``interval=``).
LOWER_SUFFIX = "_lower"
UPPER_SUFFIX = "_upper"
#: ``obsm`` key of spatial coordinates (scanpy/squidpy convention).
SPATIAL_KEY = "spatial"
#: ``obs`` column the model registers to know each reference cell's row (scvi-tools convention).
INDICES_OBS_KEY = "_indices"
#: ``var`` column of :func:`spalstf.get.imputed`: ``True`` for an imputed gene, ``False`` for a measured one.
IMPUTED_VAR_KEY = "imputed"
#: Name of the table of a :class:`spatialdata.SpatialData` when there is one (spatialdata-io's convention).
TABLE_KEY = "table"
#: Names used by :func:`spalstf.datasets.to_spatialdata`: the shapes element of the cells, and the table's region
#: and instance columns.
SHAPES_KEY = "cells"
REGION_KEY = "region"
INSTANCE_KEY = "cell_id"
