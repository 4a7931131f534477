"""The Drosophila embryo pair bundled with the package (no network needed)."""

from __future__ import annotations

import warnings
from importlib.resources import as_file, files

import mudata as md

_BUNDLED_FILE = "drosophila_embryo.h5mu"


def drosophila_embryo() -> md.MuData:
    """Drosophila embryo ST / scRNA-seq pair (benchmark pair "Dataset5_FISH"), bundled with the package.

    The spatial side is the BDTNP virtual embryo (Fowlkes et al. 2008): 3039 cells x 84 genes of in situ
    expression, continuous values in [0, 1], with 3-D coordinates in ``obsm["spatial"]``. The reference is the
    Drosophila embryo scRNA-seq of Karaiskos et al. (2017): 1297 cells with raw UMI counts, restricted to the 84 spatial
    genes plus the 1916 most highly variable other genes (2000 genes; ``mdata["rna"].uns["gene_selection"]`` says
    how they were chosen). ``scripts/build_drosophila_bundle.py`` rebuilds the file from the raw sources.

    Returns
    -------
    :class:`mudata.MuData` with modalities ``"spatial"`` (3039 x 84) and ``"rna"`` (1297 x 2000) and the citation
    in ``uns["citation"]``. Each call reads a fresh copy, so modifying it never changes the bundled data.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> mdata["spatial"].shape, mdata["rna"].shape
    ((3039, 84), (1297, 2000))
    """
    with as_file(files("spalstf.datasets") / "_data" / _BUNDLED_FILE) as path, warnings.catch_warnings():
        # mudata warns about its own future defaults and about the shared gene names of the two modalities
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        return md.read_h5mu(path)
