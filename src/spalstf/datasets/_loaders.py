"""Loaders of the twelve benchmark pairs: :func:`load` and one thin function per pair."""

from __future__ import annotations

import os
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anndata as ad
import mudata as md

from . import _registry
from ._fetch import cache_dir, fetch_file, missing_archive_message, resolve_archive
from ._parsers import FILE_PARSERS, DataUploadFolder, find_dataupload_folders, read_spatialbenchmarking

PathLike = str | os.PathLike[str]
_F = TypeVar("_F", bound=Callable[..., Any])

_PARAMS_DOC = """\
Parameters
----------
source
    Which source to read (see ``list_datasets()["sources"]``); default: the first one of the registry.
archive
    For the ``"spatialbenchmarking"`` source: the hand-downloaded SpatialBenchmarking ``DataUpload`` folder, a
    zip file of it, a folder holding its zip files, or one ``DatasetN`` folder. Default: the environment variable
    ``SPALSTF_SPATIALBENCHMARKING_DIR``. When nothing is found, the error says what to download and from where.
data_dir
    Cache directory (files go to ``<data_dir>/spalstf/<name>/``). Default: the environment variable
    ``SPALSTF_DATA_DIR``, otherwise ``scanpy.settings.datasetdir``. Later calls read the cache without network.
progressbar
    Show a progress bar while downloading.
check_shapes
    Check the shapes of the loaded data against those registered for the source and raise a
    :class:`ValueError` giving the expected and found shapes when they differ."""

_RETURNS_DOC = """\
Returns
-------
:class:`mudata.MuData` with modalities ``"spatial"`` (values as the source gives them, coordinates in
``obsm["spatial"]``) and ``"rna"`` (the reference counts), and in ``uns``: ``"name"``, ``"table_name"``,
``"citation"``, ``"spatial_citation"``, ``"reference_citation"`` and ``"source"`` (where the files came from)."""


def _pair_doc(func: _F) -> _F:
    """Fill the shared Parameters and Returns sections into a pair loader's docstring, at the placeholder's indent."""
    doc = func.__doc__
    if doc:
        for placeholder, text in (("{params}", _PARAMS_DOC), ("{returns}", _RETURNS_DOC)):
            lines = doc.splitlines()
            for i, line in enumerate(lines):
                if line.strip() == placeholder:
                    indent = line[: len(line) - len(line.lstrip())]
                    lines[i] = textwrap.indent(text, indent)
            doc = "\n".join(lines)
        func.__doc__ = doc
    return func


@contextmanager
def _quiet_mudata() -> Iterator[None]:
    # mudata warns about its future defaults and about the gene names shared by the two modalities
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        yield


def _fmt(shape: tuple[int, int]) -> str:
    return f"{shape[0]} x {shape[1]}"


def _check_shapes(pair: _registry.Pair, src: _registry.Source, spatial: ad.AnnData, rna: ad.AnnData, where: str):
    found = (tuple(spatial.shape), tuple(rna.shape))
    expected = (src.expected_spatial_shape, src.expected_reference_shape)
    if found != expected:
        raise ValueError(
            f"Dataset {pair.name!r} (source {src.name!r}) has unexpected shapes (cells x genes):\n"
            f"  expected: spatial {_fmt(expected[0])}, reference {_fmt(expected[1])}\n"
            f"  found:    spatial {_fmt(found[0])}, reference {_fmt(found[1])}\n"
            f"Read from {where}. The files are not the registered ones (another dataset or another version): check the "
            "path, or pass check_shapes=False to load them anyway."
        )


def _tidy_names(spatial: ad.AnnData, rna: ad.AnnData) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        for adata in (spatial, rna):
            adata.var_names = adata.var_names.astype(str)
            adata.obs_names = adata.obs_names.astype(str)
            adata.var_names_make_unique()
            adata.obs_names_make_unique()
    if spatial.obs_names.intersection(rna.obs_names).size:  # MuData would merge cells of the same name
        spatial.obs_names = "spatial_" + spatial.obs_names
        rna.obs_names = "rna_" + rna.obs_names


def _assemble(
    pair: _registry.Pair,
    src: _registry.Source,
    spatial: ad.AnnData,
    rna: ad.AnnData,
    source_info: dict[str, Any],
) -> md.MuData:
    _tidy_names(spatial, rna)
    spatial.uns["source"] = pair.spatial_citation
    rna.uns["source"] = pair.reference_citation
    with _quiet_mudata():
        mdata = md.MuData({"spatial": spatial, "rna": rna})
    mdata.uns["name"] = pair.name
    mdata.uns["table_name"] = pair.table_name
    mdata.uns["citation"] = f"Spatial: {pair.spatial_citation} Reference: {pair.reference_citation}"
    mdata.uns["spatial_citation"] = pair.spatial_citation
    mdata.uns["reference_citation"] = pair.reference_citation
    mdata.uns["source"] = {"name": src.name, "format": src.format, "description": src.description, **source_info}
    return mdata


def _select_folder(
    pair: _registry.Pair, src: _registry.Source, folders: list[DataUploadFolder], local: Path, message: str
) -> DataUploadFolder:
    """Pick the dataset folder of ``pair``: the folder given directly, else by name, else by spatial shape."""
    if local.is_dir():
        direct = [f for f in folders if f.zip_path is None and Path(f.members["spatial"]).parent == local]
        if direct:
            return direct[0]
    listing = ", ".join(f.label for f in folders) or "none"
    if src.folder is not None:
        hits = [f for f in folders if f.name.lower() == src.folder.lower()]
        if hits:
            return hits[0]
        raise FileNotFoundError(f"{message}\nDataset folders found there: {listing}.")
    hits = [f for f in folders if f.spatial_shape() == src.expected_spatial_shape]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ValueError(
            f"Several dataset folders hold a spatial file of {_fmt(src.expected_spatial_shape)} cells x genes, the "
            f"shape of {pair.name!r}: {', '.join(f.label for f in hits)}. Pass the right one as archive=<folder>."
        )
    raise FileNotFoundError(
        f"{message}\nNone of the dataset folders found there has a spatial file of "
        f"{_fmt(src.expected_spatial_shape)} cells x genes: {listing}."
    )


def _write_atomic(mdata: md.MuData, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with _quiet_mudata():
            mdata.write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        warnings.warn(
            f"Could not keep a parsed copy at {path} ({err}); the next call parses the files again.", stacklevel=3
        )
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load_folder(
    pair: _registry.Pair,
    src: _registry.Source,
    folder: DataUploadFolder,
    info: dict[str, Any],
    parsed_copy: Path,
    check_shapes: bool,
) -> md.MuData:
    """Read a dataset folder, reusing the parsed copy in the cache while the files are unchanged."""
    fingerprint = folder.fingerprint()
    info = {**info, "folder": folder.label, "fingerprint": fingerprint}
    if parsed_copy.exists():
        try:
            with _quiet_mudata():
                cached = md.read_h5mu(parsed_copy)
        except Exception:  # an unreadable copy is parsed again
            cached = None
        if cached is not None and cached.uns.get("source", {}).get("fingerprint") == fingerprint:
            if check_shapes:
                _check_shapes(pair, src, cached["spatial"], cached["rna"], f"{parsed_copy} (parsed {folder.label})")
            return cached
    spatial, rna = read_spatialbenchmarking(folder)
    if check_shapes:
        _check_shapes(pair, src, spatial, rna, folder.label)
    mdata = _assemble(pair, src, spatial, rna, info)
    _write_atomic(mdata, parsed_copy)
    return mdata


def load(
    name: str,
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """Load one of the twelve benchmark pairs of the SpaLSTF paper (Table 1) by name.

    Names (also the names of the per-pair loaders): ``osmfish``, ``seqfish_plus``, ``merfish_visual_cortex``,
    ``iss_visual_cortex``, ``drosophila_embryo_full``, ``baristaseq``, ``merfish_mop``, ``seqfish_embryo``,
    ``starmap_visual_cortex``, ``starmap_prefrontal_cortex``, ``exseq``, ``merfish_osteosarcoma``; the names of
    Table 1 (``"Dataset1_osmFISH"``, ...) are accepted too. :func:`~spalstf.datasets.list_datasets` lists them with
    their shapes, citations and hosts.

    Files with a pinned sha256 are downloaded with :mod:`pooch` into the cache directory and checked; a download that
    fails its hash raises :class:`~spalstf.datasets.DatasetChecksumError` and leaves nothing in the cache. Pairs whose
    only public copy is the SpatialBenchmarking archive (Google Drive, no checksums) are read from a hand-downloaded
    copy (``archive`` or ``SPALSTF_SPATIALBENCHMARKING_DIR``); the parsed result is kept in the cache
    (``<name>.<source>.h5mu``) and reused while the archive files are unchanged.

    Parameters
    ----------
    name
        The pair, see above.
    source
        Which source to read (see ``list_datasets()["sources"]``); default: the first one of the registry.
    archive
        For the ``"spatialbenchmarking"`` source: the hand-downloaded SpatialBenchmarking ``DataUpload`` folder, a
        zip file of it, a folder holding its zip files, or one ``DatasetN`` folder. Default: the environment variable
        ``SPALSTF_SPATIALBENCHMARKING_DIR``.
    data_dir
        Cache directory (files go to ``<data_dir>/spalstf/<name>/``). Default: the environment variable
        ``SPALSTF_DATA_DIR``, otherwise ``scanpy.settings.datasetdir``.
    progressbar
        Show a progress bar while downloading.
    check_shapes
        Check the shapes of the loaded data against those registered for the source.

    Returns
    -------
    :class:`mudata.MuData` with modalities ``"spatial"`` (values as the source gives them, coordinates in
    ``obsm["spatial"]``) and ``"rna"`` (the reference counts), and in ``uns``: ``"name"``, ``"table_name"``,
    ``"citation"``, ``"spatial_citation"``, ``"reference_citation"`` and ``"source"``.

    Raises
    ------
    KeyError
        Unknown name (the message lists the valid ones).
    ValueError
        Unknown source, or shapes that differ from the registered ones.
    FileNotFoundError
        A SpatialBenchmarking pair whose archive was not given or does not hold it (the message says what to
        download, from where, and where to put it).

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.load("osmfish")  # doctest: +SKIP
    >>> mdata = sp.datasets.load("exseq", archive="~/data/DataUpload.zip")  # doctest: +SKIP
    """
    pair = _registry.registry().pair(name)
    src = pair.source(source)
    loader = f"sp.datasets.{pair.name}"
    pair_dir = cache_dir(data_dir) / pair.name

    if src.format == "spatialbenchmarking":
        local = resolve_archive(archive)
        if local is not None or not src.downloadable:
            arch = _registry.registry().archives["spatialbenchmarking"]
            if local is None:
                raise FileNotFoundError(missing_archive_message(pair.name, loader, src.folder, arch))
            message = missing_archive_message(pair.name, loader, src.folder, arch, looked_in=local)
            folders = find_dataupload_folders(local)
            if not folders:
                raise FileNotFoundError(f"{message}\nNo dataset folder at all was found there.")
            folder = _select_folder(pair, src, folders, local, message)
            info = {"archive": str(local), "url": arch.url}
            return _load_folder(pair, src, folder, info, pair_dir / f"{pair.name}.{src.name}.h5mu", check_shapes)
    elif archive is not None:
        names = [s.name for s in pair.sources if s.format == "spatialbenchmarking"]
        hint = f" Pass source={names[0]!r} to read the archive." if names else ""
        raise ValueError(f"archive is only used by a 'spatialbenchmarking' source, not by {src.name!r}.{hint}")

    paths = {f.role: fetch_file(f, pair_dir, progressbar=progressbar) for f in src.files}
    info = {
        "files": [f.fname for f in src.files],
        "urls": [f.urls[0] for f in src.files],
        "sha256": [f.sha256 for f in src.files],
    }
    if src.format == "spatialbenchmarking":  # a pinned zip of dataset folders
        folders = find_dataupload_folders(paths["archive"])
        message = f"The downloaded archive {paths['archive']} does not hold the data of {pair.name!r}."
        folder = _select_folder(pair, src, folders, paths["archive"], message)
        spatial, rna = read_spatialbenchmarking(folder)
        where = folder.label
    else:
        spatial, rna = FILE_PARSERS[src.format](paths)
        where = ", ".join(str(p) for p in paths.values())
    if check_shapes:
        _check_shapes(pair, src, spatial, rna, where)
    return _assemble(pair, src, spatial, rna, info)


# --------------------------------------------------------------------------------------------------------------------
# one loader per pair


@_pair_doc
def osmfish(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """Mouse somatosensory cortex osmFISH pair (Table 1 ``Dataset1_osmFISH``, Codeluppi et al. 2018).

    Sources:

    - ``"spalstf"`` (default, downloaded, sha256 pinned): the pair as processed by the SpaLSTF authors
      (``datasets/sp/dataset1_spatial_33.h5ad`` and ``datasets/sc/dataset1_seq_33.h5ad`` of their repository at a
      fixed commit). Spatial: 3405 cells x 33 genes of counts with ``x_coord``/``y_coord`` in ``obs`` (copied to
      ``obsm["spatial"]``). **Reference: 5613 cells x 33 genes**, i.e. already cut to the 33 spatial genes and to
      5613 cells, not the 14,249 x 34,041 Allen reference of Table 1; values as stored in the file. Enough to
      reproduce the paper's osmFISH runs (they use only the shared genes), not to impute genes outside the panel.
    - ``"spatialbenchmarking"``: folder ``Dataset15`` of a hand-downloaded SpatialBenchmarking archive, with the
      Table 1 shapes (3405 x 33 spatial, 14,249 x 34,041 reference).

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.osmfish()  # doctest: +SKIP
    >>> mdata["spatial"].shape, mdata["rna"].shape  # doctest: +SKIP
    ((3405, 33), (5613, 33))
    """
    return load(
        "osmfish",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def seqfish_plus(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """seqFISH+ mouse cortex pair (Table 1 ``Dataset2_seqFISH+``, Eng et al. 2019; reference Tasic et al. 2018).

    Spatial 524 x 10,000, reference 14,249 x 34,041, read from folder ``Dataset4`` of a hand-downloaded
    SpatialBenchmarking archive (no public copy with a checksum is known).

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.seqfish_plus(archive="~/data/DataUpload")  # doctest: +SKIP
    """
    return load(
        "seqfish_plus",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def merfish_visual_cortex(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """MERFISH mouse primary visual cortex pair (Table 1 ``Dataset3_MERFISH``; reference Tasic et al. 2018).

    Spatial 2399 x 268, reference 14,249 x 34,041, read from folder ``Dataset9`` of a hand-downloaded
    SpatialBenchmarking archive. The paper's citation for the spatial data (its reference [33]) is missing from its
    reference list.

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.merfish_visual_cortex(archive="~/data/DataUpload")  # doctest: +SKIP
    """
    return load(
        "merfish_visual_cortex",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def iss_visual_cortex(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """ISS mouse primary visual cortex pair (Table 1 ``Dataset4_ISS``; reference Tasic et al. 2018).

    Spatial 6000 x 119, reference 14,249 x 34,041, read from folder ``Dataset13`` of a hand-downloaded
    SpatialBenchmarking archive. The paper's citation for the spatial data (its reference [33]) is missing from its
    reference list.

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.iss_visual_cortex(archive="~/data/DataUpload")  # doctest: +SKIP
    """
    return load(
        "iss_visual_cortex",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def drosophila_embryo_full(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """Full Drosophila embryo pair (Table 1 ``Dataset5_FISH``; Karaiskos et al. 2017, BDTNP / Fowlkes et al. 2008).

    Unlike the bundled :func:`~spalstf.datasets.drosophila_embryo` (no network, reference cut to 2000 genes), this
    downloads the raw files and keeps the full reference.

    Sources:

    - ``"dvex_bdtnp"`` (default, downloaded, sha256 pinned): ``bdtnp.txt``, ``geometry.txt`` and ``dge_raw.txt.gz``
      at a fixed commit of a public copy, with the original DVEX host as a mirror for ``dge_raw.txt.gz``. Spatial:
      3039 cells x 84 genes of in situ values in [0, 1] (not counts), 3-D coordinates in ``obsm["spatial"]``.
      Reference: 1297 cells x 8924 genes of raw UMI counts.
    - ``"spatialbenchmarking"``: folder ``Dataset14`` of a hand-downloaded SpatialBenchmarking archive.

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo_full()  # doctest: +SKIP
    >>> mdata["spatial"].shape, mdata["rna"].shape  # doctest: +SKIP
    ((3039, 84), (1297, 8924))
    """
    return load(
        "drosophila_embryo_full",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def baristaseq(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """BARISTAseq mouse primary visual cortex pair (Table 1 ``Dataset6_BARISTAseq``, Chen et al. 2018).

    Spatial 11,426 x 80, reference 14,249 x 34,041 (Tasic et al. 2018), read from a hand-downloaded
    SpatialBenchmarking archive; its folder number is not known here, so the folder whose spatial file has
    11,426 x 80 cells x genes is used (or pass that folder directly as ``archive``).

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.baristaseq(archive="~/data/DataUpload")  # doctest: +SKIP
    """
    return load(
        "baristaseq",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def merfish_mop(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """MERFISH mouse primary motor cortex pair (Table 1 ``Dataset7_MERFISH``, Zhang et al. 2021).

    Spatial 5551 x 247, reference 14,249 x 34,041 (Tasic et al. 2018), read from a hand-downloaded
    SpatialBenchmarking archive; its folder number is not known here, so the folder whose spatial file has
    5551 x 247 cells x genes is used (or pass that folder directly as ``archive``).

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.merfish_mop(archive="~/data/DataUpload")  # doctest: +SKIP
    """
    return load(
        "merfish_mop",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def seqfish_embryo(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """SeqFISH mouse embryo pair (Table 1 ``Dataset8_seqFISH``).

    Spatial 175 x 45, reference 9991 x 16,477, read from a hand-downloaded SpatialBenchmarking archive; its folder
    number is not known here, so the folder whose spatial file has 175 x 45 cells x genes is used (or pass that
    folder directly as ``archive``).

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.seqfish_embryo(archive="~/data/DataUpload")  # doctest: +SKIP
    """
    return load(
        "seqfish_embryo",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def starmap_visual_cortex(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """STARmap mouse visual cortex pair (Table 1 ``Dataset9_STARmap``, Wang et al. 2018; reference Tasic et al. 2018).

    Spatial 1549 x 1020, reference 14,249 x 34,041, read from folder ``Dataset10`` of a hand-downloaded
    SpatialBenchmarking archive.

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.starmap_visual_cortex(archive="~/data/DataUpload")  # doctest: +SKIP
    """
    return load(
        "starmap_visual_cortex",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def starmap_prefrontal_cortex(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """STARmap mouse prefrontal cortex pair (Table 1 ``Dataset10_STARmap``, Wang et al. 2018).

    Spatial 1380 x 166, reference 7737 x 14,837, read from folder ``Dataset11`` of a hand-downloaded
    SpatialBenchmarking archive.

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.starmap_prefrontal_cortex(archive="~/data/DataUpload")  # doctest: +SKIP
    """
    return load(
        "starmap_prefrontal_cortex",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def exseq(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """ExSeq mouse primary visual cortex pair (Table 1 ``Dataset11_ExSeq``, Alon et al. 2021).

    Spatial 1154 x 42, reference 14,249 x 34,041 (Tasic et al. 2018), read from folder ``Dataset17`` of a
    hand-downloaded SpatialBenchmarking archive.

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.exseq(archive="~/data/DataUpload")  # doctest: +SKIP
    """
    return load(
        "exseq",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


@_pair_doc
def merfish_osteosarcoma(
    *,
    source: str | None = None,
    archive: PathLike | None = None,
    data_dir: PathLike | None = None,
    progressbar: bool = True,
    check_shapes: bool = True,
) -> md.MuData:
    """MERFISH human osteosarcoma (U-2 OS) pair (Table 1 ``Dataset12_MERFISH``; reference Zhou et al. 2020).

    Spatial 645 x 12,903, reference 9234 x 19,098, read from folder ``Dataset7`` of a hand-downloaded
    SpatialBenchmarking archive. The paper's citation for the spatial data (its reference [42]) is missing from its
    reference list.

    {params}

    {returns}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.merfish_osteosarcoma(archive="~/data/DataUpload")  # doctest: +SKIP
    """
    return load(
        "merfish_osteosarcoma",
        source=source,
        archive=archive,
        data_dir=data_dir,
        progressbar=progressbar,
        check_shapes=check_shapes,
    )


#: the per-pair loaders, by registry name
PAIR_LOADERS: dict[str, Callable[..., md.MuData]] = {
    f.__name__: f
    for f in (
        osmfish,
        seqfish_plus,
        merfish_visual_cortex,
        iss_visual_cortex,
        drosophila_embryo_full,
        baristaseq,
        merfish_mop,
        seqfish_embryo,
        starmap_visual_cortex,
        starmap_prefrontal_cortex,
        exseq,
        merfish_osteosarcoma,
    )
}
