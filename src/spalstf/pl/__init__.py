"""Plotting: a picture for every result of :mod:`spalstf.tl`.

:func:`spatial_genes` (measured vs imputed expression in space, and its uncertainty), :func:`benchmark` (per-gene
metrics and accuracy score of a cross-validation), :func:`calibration` and :func:`reliability` (how a
cross-validation's intervals and per-gene reliability held up), :func:`alignment_umap` (reference, measured and
imputed cells in one UMAP) and :func:`training_history` (loss curves). All follow scanpy's conventions (``ax=``,
``show=``, ``save=``, ``return_fig=``) and never modify their inputs.
"""

from ._alignment import alignment_umap
from ._benchmark import benchmark
from ._history import training_history
from ._spatial import spatial_genes
from ._uncertainty import calibration, reliability

__all__ = ["alignment_umap", "benchmark", "calibration", "reliability", "spatial_genes", "training_history"]
