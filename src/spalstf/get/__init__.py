"""Getters (as :mod:`scanpy.get`): results of spalstf as objects that scanpy, squidpy and spatialdata use directly.

- :func:`imputed`: the imputed genes as an AnnData with the cells' ``obs``, coordinates and spatial graphs,
  optionally joined with the measured genes, from an AnnData, an ``out=`` file or a SpatialData table.
"""

from ._imputed import imputed

__all__ = ["imputed"]
