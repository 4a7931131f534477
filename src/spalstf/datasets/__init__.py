"""Datasets: the bundled Drosophila embryo pair and loaders for the twelve benchmark pairs of the SpaLSTF paper.

- :func:`drosophila_embryo`: bundled with the package, no network (the default for examples; also as SpatialData);
- :func:`to_spatialdata`: cells of an AnnData as a SpatialData object (circles at their coordinates and a table);
- :func:`list_datasets`: the twelve pairs of the paper's Table 1, their shapes, citations and hosts;
- :func:`load` and one loader per pair: :func:`osmfish`, :func:`seqfish_plus`, :func:`merfish_visual_cortex`,
  :func:`iss_visual_cortex`, :func:`drosophila_embryo_full`, :func:`baristaseq`, :func:`merfish_mop`,
  :func:`seqfish_embryo`, :func:`starmap_visual_cortex`, :func:`starmap_prefrontal_cortex`, :func:`exseq`,
  :func:`merfish_osteosarcoma`.

Environment variables: ``SPALSTF_DATA_DIR`` (cache directory, default ``scanpy.settings.datasetdir``) and
``SPALSTF_SPATIALBENCHMARKING_DIR`` (a hand-downloaded SpatialBenchmarking ``DataUpload`` folder or zip).
"""

from ._convert import to_spatialdata
from ._drosophila import drosophila_embryo
from ._fetch import ENV_DATA_DIR, ENV_SPATIALBENCHMARKING_DIR, DatasetChecksumError, DatasetDownloadError
from ._loaders import (
    baristaseq,
    drosophila_embryo_full,
    exseq,
    iss_visual_cortex,
    load,
    merfish_mop,
    merfish_osteosarcoma,
    merfish_visual_cortex,
    osmfish,
    seqfish_embryo,
    seqfish_plus,
    starmap_prefrontal_cortex,
    starmap_visual_cortex,
)
from ._registry import list_datasets

__all__ = [
    "drosophila_embryo",
    "to_spatialdata",
    "list_datasets",
    "load",
    "osmfish",
    "seqfish_plus",
    "merfish_visual_cortex",
    "iss_visual_cortex",
    "drosophila_embryo_full",
    "baristaseq",
    "merfish_mop",
    "seqfish_embryo",
    "starmap_visual_cortex",
    "starmap_prefrontal_cortex",
    "exseq",
    "merfish_osteosarcoma",
    "DatasetChecksumError",
    "DatasetDownloadError",
    "ENV_DATA_DIR",
    "ENV_SPATIALBENCHMARKING_DIR",
]
