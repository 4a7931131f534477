"""Loaders of the twelve benchmark pairs: :func:`load` and one function per pair, made from its registry entry."""

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

_DOC_WIDTH = 110  # line width of the generated docstring text

#: the parameters shared by :func:`load` and the pair loaders (numpydoc items, no section header)
_PARAMS_DOC = """\
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

#: the Returns section shared by :func:`load` and the pair loaders: a type line, then the indented description (numpydoc
#: reads every unindented line of the section as a new return value)
_RETURNS_DOC = """\
mudata.MuData
    Modalities ``"spatial"`` (values as the source gives them, coordinates in ``obsm["spatial"]``) and ``"rna"``
    (the reference counts); ``uns`` holds ``"name"``, ``"table_name"``, ``"citation"``, ``"spatial_citation"``,
    ``"reference_citation"`` and ``"source"`` (where the files came from)."""

#: the errors shared by :func:`load` and the pair loaders (numpydoc items, no section header)
_RAISES_DOC = """\
ValueError
    Unknown source, ``archive`` given for a source that does not read one, or shapes that differ from the
    registered ones (``check_shapes``).
FileNotFoundError
    A SpatialBenchmarking source whose archive was not given or does not hold the pair (the message says what to
    download, from where, and where to put it).
DatasetChecksumError
    A download that does not have its pinned sha256 (a :class:`ValueError`; nothing is kept in the cache).
DatasetDownloadError
    A file that could not be downloaded from any of its URLs (a :class:`ConnectionError`)."""


def _fill_doc(func: _F) -> _F:
    """Replace the lines ``{params}``, ``{returns}``, ``{raises}`` and ``{names}`` of a docstring, at their indent."""
    names = ", ".join(f"``{name}``" for name in _registry.registry().pairs)
    texts = {
        "{params}": _PARAMS_DOC,
        "{returns}": _RETURNS_DOC,
        "{raises}": _RAISES_DOC,
        "{names}": textwrap.fill(names + ".", width=_DOC_WIDTH, break_on_hyphens=False),
    }
    lines = (func.__doc__ or "").splitlines()
    for i, line in enumerate(lines):
        if line.strip() in texts:
            lines[i] = textwrap.indent(texts[line.strip()], line[: len(line) - len(line.lstrip())])
    func.__doc__ = "\n".join(lines)
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


@_fill_doc
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

    Names, those of the registry (each also the name of a per-pair loader):
    {names}
    The names of Table 1 (``"Dataset1_osmFISH"``, ...) are accepted too. :func:`~spalstf.datasets.list_datasets`
    lists the pairs with their shapes, citations and hosts.

    Files with a pinned sha256 are downloaded with :mod:`pooch` into the cache directory and checked; a download that
    fails its hash raises :class:`~spalstf.datasets.DatasetChecksumError` and leaves nothing in the cache. Pairs whose
    only public copy is the SpatialBenchmarking archive (Google Drive, no checksums) are read from a hand-downloaded
    copy (``archive`` or ``SPALSTF_SPATIALBENCHMARKING_DIR``); the parsed result is kept in the cache
    (``<name>.<source>.h5mu``) and reused while the archive files are unchanged.

    Parameters
    ----------
    name
        The pair, see above.
    {params}

    Returns
    -------
    {returns}

    Raises
    ------
    KeyError
        Unknown name (the message lists the valid ones).
    {raises}

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
# one loader per pair, made from its registry entry


def _n(count: int) -> str:
    return f"{count:,}" if count >= 10_000 else str(count)


def _shapes(spatial: tuple[int, int], reference: tuple[int, int]) -> str:
    return f"spatial {_n(spatial[0])} x {_n(spatial[1])}, reference {_n(reference[0])} x {_n(reference[1])}"


def _wrap(text: str, bullet: bool = False) -> str:
    return textwrap.fill(
        text,
        width=_DOC_WIDTH,
        initial_indent="- " if bullet else "",
        subsequent_indent="  " if bullet else "",
        break_on_hyphens=False,
        break_long_words=False,
    )


def _source_doc(src: _registry.Source, default: bool) -> str:
    if src.format == "spatialbenchmarking" and not src.downloadable:
        how = "read from a hand-downloaded SpatialBenchmarking archive (``archive``, no checksums), " + (
            f"folder ``{src.folder}``"
            if src.folder
            else "the folder whose files have these shapes (or pass that folder as ``archive``)"
        )
    else:
        files = ", ".join(f"``{f.fname}``" for f in src.files)
        mirrors = " (with a mirror)" if any(len(f.urls) > 1 for f in src.files) else ""
        how = f"downloaded into the cache and checked against pinned sha256 hashes{mirrors}: {files}"
    label = f'``"{src.name}"``' + (" (default)" if default else "")
    shapes = _shapes(src.expected_spatial_shape, src.expected_reference_shape)
    return _wrap(f"{label}: {how}; {shapes} (cells x genes).", bullet=True)


def _example(pair: _registry.Pair, src: _registry.Source, default: bool) -> list[str]:
    args = [] if default else [f'source="{src.name}"']
    if src.format == "spatialbenchmarking" and not src.downloadable:
        args.append('archive="~/data/DataUpload"')
    lines = [f"mdata = sp.datasets.{pair.name}({', '.join(args)})  # doctest: +SKIP"]
    if default:
        lines.append('mdata["spatial"].shape, mdata["rna"].shape  # doctest: +SKIP')
    lines = [">>> " + line for line in lines]
    if default:
        lines.append(f"({src.expected_spatial_shape}, {src.expected_reference_shape})")
    return lines


def _pair_docstring(pair: _registry.Pair) -> str:
    """The numpydoc docstring of a pair loader, from the pair's registry entry."""
    summary = f"Load the {pair.technology} pair of the {pair.tissue}: Table 1 ``{pair.table_name}`` of the paper."
    parts = [
        summary,
        _wrap(f"Spatial data: {pair.spatial_citation}"),
        _wrap(f"Reference: {pair.reference_citation}"),
        f"Table 1 shapes (cells x genes): {_shapes(pair.table_spatial_shape, pair.table_reference_shape)}.",
        "Sources (the ``source`` argument):\n\n"
        + "\n".join(_source_doc(s, default=i == 0) for i, s in enumerate(pair.sources)),
    ]
    if pair.notes:
        parts.append(_wrap(pair.notes))
    examples = [">>> import spalstf as sp"]
    for i, src in enumerate(pair.sources):
        examples += _example(pair, src, default=i == 0)
    parts += [
        f"Parameters\n----------\n{_PARAMS_DOC}",
        f"Returns\n-------\n{_RETURNS_DOC}",
        f"Raises\n------\n{_RAISES_DOC}",
        "Examples\n--------\n" + "\n".join(examples),
    ]
    return "\n\n".join(parts) + "\n"


def _pair_loader(name: str) -> Callable[..., md.MuData]:
    """Make the public loader of the registry pair ``name``: :func:`load` with the name bound, its own docstring."""
    pair = _registry.registry().pairs[name]

    def loader(
        *,
        source: str | None = None,
        archive: PathLike | None = None,
        data_dir: PathLike | None = None,
        progressbar: bool = True,
        check_shapes: bool = True,
    ) -> md.MuData:
        return load(
            name,
            source=source,
            archive=archive,
            data_dir=data_dir,
            progressbar=progressbar,
            check_shapes=check_shapes,
        )

    loader.__name__ = loader.__qualname__ = name
    loader.__doc__ = _pair_docstring(pair)
    return loader


# the names are spelled out so that they are importable, visible to static tools and stable API; a test checks that
# they are exactly the pairs of the registry
osmfish = _pair_loader("osmfish")
seqfish_plus = _pair_loader("seqfish_plus")
merfish_visual_cortex = _pair_loader("merfish_visual_cortex")
iss_visual_cortex = _pair_loader("iss_visual_cortex")
drosophila_embryo_full = _pair_loader("drosophila_embryo_full")
baristaseq = _pair_loader("baristaseq")
merfish_mop = _pair_loader("merfish_mop")
seqfish_embryo = _pair_loader("seqfish_embryo")
starmap_visual_cortex = _pair_loader("starmap_visual_cortex")
starmap_prefrontal_cortex = _pair_loader("starmap_prefrontal_cortex")
exseq = _pair_loader("exseq")
merfish_osteosarcoma = _pair_loader("merfish_osteosarcoma")

#: the per-pair loaders, by registry name (a pair of the registry without its loader above fails here, at import)
PAIR_LOADERS: dict[str, Callable[..., md.MuData]] = {name: globals()[name] for name in _registry.registry().pairs}
