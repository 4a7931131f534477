"""The Drosophila embryo pair bundled with the package (no network needed)."""

from __future__ import annotations

import warnings
from importlib.resources import as_file, files
from typing import TYPE_CHECKING

import mudata as md

from .._constants import TABLE_KEY

if TYPE_CHECKING:
    from spatialdata import SpatialData

_BUNDLED_FILE = "drosophila_embryo.h5mu"
#: Name of the reference's table in the SpatialData version of the pair.
REFERENCE_TABLE = "rna"


def drosophila_embryo(as_spatialdata: bool = False) -> md.MuData | SpatialData:
    """Drosophila embryo ST / scRNA-seq pair (benchmark pair "Dataset5_FISH"), bundled with the package.

    The spatial side is the BDTNP virtual embryo (Fowlkes et al. 2008): 3039 cells x 84 genes of in situ
    expression, continuous values in [0, 1], with 3-D coordinates in ``obsm["spatial"]``. The reference is the
    Drosophila embryo scRNA-seq of Karaiskos et al. (2017): 1297 cells with raw UMI counts, restricted to the 84 spatial
    genes plus the 1916 most highly variable other genes (2000 genes; ``mdata["rna"].uns["gene_selection"]`` says
    how they were chosen). ``scripts/build_drosophila_bundle.py`` rebuilds the file from the raw sources.

    Parameters
    ----------
    as_spatialdata
        Return the pair as a :class:`spatialdata.SpatialData` object (needs spatialdata, which comes with squidpy):
        the spatial cells as circles (shapes ``"cells"``, at coordinates 0 and 2 of ``obsm["spatial"]``, the lateral
        view) annotated by the table ``"table"`` (made by :func:`~spalstf.datasets.to_spatialdata`, all three
        coordinates in its ``obsm["spatial"]``), and the reference as the table ``"rna"``, which annotates no element.

    Returns
    -------
    :class:`mudata.MuData` with modalities ``"spatial"`` (3039 x 84) and ``"rna"`` (1297 x 2000) and the citation
    in ``uns["citation"]``, or the SpatialData object described above. Each call reads a fresh copy, so modifying it
    never changes the bundled data.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> mdata["spatial"].shape, mdata["rna"].shape
    ((3039, 84), (1297, 2000))
    >>> sdata = sp.datasets.drosophila_embryo(as_spatialdata=True)
    >>> sdata.tables["table"].shape, sdata.tables["rna"].shape
    ((3039, 84), (1297, 2000))
    """
    with as_file(files("spalstf.datasets") / "_data" / _BUNDLED_FILE) as path, warnings.catch_warnings():
        # mudata warns about its own future defaults and about the shared gene names of the two modalities
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        mdata = md.read_h5mu(path)
    if not as_spatialdata:
        return mdata
    from ._convert import to_spatialdata

    sdata = to_spatialdata(mdata["spatial"], dims=(0, 2), table_key=TABLE_KEY)
    sdata.tables[REFERENCE_TABLE] = mdata["rna"].copy()
    return sdata
