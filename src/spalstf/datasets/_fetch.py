"""Downloads through :mod:`pooch` (pinned sha256, progress bar) and the cache and archive locations."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pooch

from ._registry import Archive, RemoteFile

#: environment variable overriding the cache directory (default: ``scanpy.settings.datasetdir``)
ENV_DATA_DIR = "SPALSTF_DATA_DIR"
#: environment variable pointing at a hand-downloaded SpatialBenchmarking ``DataUpload`` folder or zip
ENV_SPATIALBENCHMARKING_DIR = "SPALSTF_SPATIALBENCHMARKING_DIR"
#: sub-folder of the cache directory that holds the files of this package
CACHE_SUBDIR = "spalstf"


class DatasetChecksumError(ValueError):
    """A downloaded file does not have its pinned sha256; nothing was written to the cache."""


class DatasetDownloadError(ConnectionError):
    """A file could not be downloaded from any of its URLs; nothing was written to the cache."""


def cache_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory that holds the downloaded files (``<base>/spalstf``).

    Parameters
    ----------
    data_dir
        Base directory. Default: the environment variable ``SPALSTF_DATA_DIR`` if set, otherwise
        ``scanpy.settings.datasetdir``.

    Returns
    -------
    ``<base>/spalstf`` (not created here).

    Examples
    --------
    >>> cache_dir("/tmp/my_data")
    PosixPath('/tmp/my_data/spalstf')
    """
    if data_dir is not None:
        base = Path(data_dir)
    elif os.environ.get(ENV_DATA_DIR):
        base = Path(os.environ[ENV_DATA_DIR])
    else:
        import scanpy as sc

        base = Path(sc.settings.datasetdir)
    return base.expanduser().absolute() / CACHE_SUBDIR


def _found_hash(message: str) -> str:
    match = re.search(r"but got ([0-9a-fA-F]+)", message)
    return match.group(1) if match else "unknown"


def fetch_file(remote: RemoteFile, directory: Path, *, progressbar: bool = True) -> Path:
    """Download one registry file into ``directory`` (or reuse the cached copy) and check its sha256.

    The URLs are tried in order (primary first, then mirrors). :func:`pooch.retrieve` writes to a temporary file in
    ``directory`` and moves it to its final name only once the hash matches, so a corrupted, truncated or interrupted
    download never leaves a file that a later call would trust, and a later call simply downloads again. A cached
    file is re-hashed on every call and downloaded again when it does not match.

    Parameters
    ----------
    remote
        The registry entry of the file.
    directory
        Where to keep the file.
    progressbar
        Show a progress bar while downloading.

    Returns
    -------
    Path of the verified file.

    Raises
    ------
    DatasetChecksumError
        (a :class:`ValueError`) when a download completed but its sha256 differs from the pinned one.
    DatasetDownloadError
        (a :class:`ConnectionError`) when no URL could be downloaded.

    Examples
    --------
    >>> from spalstf.datasets._registry import registry
    >>> remote = registry().pair("osmfish").default_source.files[0]
    >>> path = fetch_file(remote, cache_dir() / "osmfish")  # doctest: +SKIP
    """
    import requests

    known_hash = f"sha256:{remote.sha256}"
    failures: list[str] = []
    mismatches: list[tuple[str, str]] = []
    for url in remote.urls:
        try:
            path = pooch.retrieve(
                url, known_hash=known_hash, fname=remote.fname, path=directory, progressbar=progressbar
            )
        except ValueError as err:
            if "hash" not in str(err).lower():
                raise
            found = _found_hash(str(err))
            mismatches.append((url, found))
            failures.append(f"{url}: sha256 {found} does not match")
        except requests.exceptions.RequestException as err:
            failures.append(f"{url}: {type(err).__name__}: {err}")
        else:
            return Path(path)
    tried = "\n".join(f"  - {line}" for line in failures)
    target = Path(directory) / remote.fname
    if mismatches:
        found = ", ".join(sorted({f for _, f in mismatches}))
        raise DatasetChecksumError(
            f"The download of {remote.fname!r} does not have the pinned sha256.\n"
            f"  expected: {remote.sha256}\n  found:    {found}\n"
            f"Tried:\n{tried}\n"
            f"The file was deleted and nothing was written to {target}. A truncated or corrupted transfer: call the "
            "loader again to retry. If it keeps failing, the host has changed the file: please report it to the "
            "spalstf developers rather than trusting the new file."
        )
    raise DatasetDownloadError(
        f"Could not download {remote.fname!r} from any of its URLs:\n{tried}\n"
        f"Nothing was written to {target}. Check the network connection and call the loader again to retry (an "
        "interrupted download starts afresh), or download the file by hand, check that its sha256 is "
        f"{remote.sha256} and put it at {target}."
    )


def resolve_archive(archive: str | os.PathLike[str] | None) -> Path | None:
    """Return the path of the hand-downloaded SpatialBenchmarking archive, if one is given.

    Parameters
    ----------
    archive
        Path given by the user; default: the environment variable ``SPALSTF_SPATIALBENCHMARKING_DIR``.

    Returns
    -------
    The path, or ``None`` when neither the argument nor the environment variable is set.

    Examples
    --------
    >>> resolve_archive(None) is None  # doctest: +SKIP
    True
    """
    if archive is not None:
        path, origin = Path(archive).expanduser(), "the argument archive"
    elif os.environ.get(ENV_SPATIALBENCHMARKING_DIR):
        path, origin = Path(os.environ[ENV_SPATIALBENCHMARKING_DIR]).expanduser(), ENV_SPATIALBENCHMARKING_DIR
    else:
        return None
    if not path.exists():
        raise FileNotFoundError(
            f"{path} (given by {origin}) does not exist. It should be the SpatialBenchmarking 'DataUpload' folder, a "
            "zip file of it, a folder holding such zip files, or one 'DatasetN' folder of it."
        )
    return path


def missing_archive_message(
    pair_name: str, loader: str, folder: str | None, archive: Archive, looked_in: Path | None = None
) -> str:
    """Say exactly what to download, from where, and where to put it, for a pair read from the archive.

    Parameters
    ----------
    pair_name
        Registry name of the pair.
    loader
        How the user calls the loader, e.g. ``"sp.datasets.exseq"``.
    folder
        The ``DatasetN`` folder that holds the pair, if known.
    archive
        The registry entry of the archive.
    looked_in
        The path that was searched, if any.

    Returns
    -------
    The message.

    Examples
    --------
    >>> from spalstf.datasets._registry import registry
    >>> reg = registry()
    >>> print(missing_archive_message("exseq", "sp.datasets.exseq", "Dataset17", reg.archives["spatialbenchmarking"]))
    ... # doctest: +ELLIPSIS
    Dataset 'exseq' is read from the SpatialBenchmarking DataUpload archive...
    """
    which = (
        f"its folder {folder} (with Spatial_count.txt or Insitu_count.txt, Locations.txt and scRNA_count.txt)"
        if folder
        else "the DatasetN folder holding this pair (its number is not known here; it is found by its shapes)"
    )
    where = f"\nNo matching folder was found in {looked_in}." if looked_in is not None else ""
    return (
        f"Dataset {pair_name!r} is read from the {archive.title}, which has no pinned checksums and cannot be "
        f"downloaded automatically.{where}\n"
        f"To load it:\n"
        f"  1. {archive.instructions} Source: {archive.url}\n"
        f"     It needs {which}.\n"
        f"  2. Put it anywhere, e.g. ~/data/DataUpload (or ~/data/DataUpload.zip).\n"
        f'  3. Pass the path: {loader}(archive="~/data/DataUpload"), or set the environment variable '
        f"{ENV_SPATIALBENCHMARKING_DIR}=~/data/DataUpload.\n"
        f"The path may also be a single DatasetN folder."
    )
