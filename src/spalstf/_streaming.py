"""Streaming over the cells of an AnnData: row chunks in, row chunks out.

The readers accept every matrix an AnnData can hold in ``X`` or a layer: a dense numpy array, a scipy sparse matrix,
an h5py dataset or anndata's backed sparse dataset (``anndata.read_h5ad(path, backed="r")``). They only ever index
the matrix with a row slice of at most ``chunk_size`` rows (``X[start:stop]``), then keep the requested columns, so
working memory is bounded by the chunk and not by the number of cells.

:class:`H5adChunkWriter` writes a cells x genes result into an ``.h5ad`` file chunk by chunk, so the result itself
need not fit in memory either.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from scipy import sparse

try:  # anndata >= 0.11
    from anndata.io import write_elem
except ImportError:  # pragma: no cover - anndata 0.10
    from anndata.experimental import write_elem

#: Elements (rows x columns) read per chunk when the caller sets no chunk size: 2**22 float32 values, 16 MB.
CHUNK_ELEMENTS = 2**22
#: Target size of one HDF5 chunk of the written matrices (elements); HDF5 recommends chunks of 10 kB - 1 MB.
_H5_CHUNK_ELEMENTS = 2**16


def rows_per_chunk(n_columns: int, budget: int | None = None) -> int:
    """Rows of a chunk holding about ``budget`` (default :data:`CHUNK_ELEMENTS`) elements of ``n_columns`` columns."""
    return max(1, (budget or CHUNK_ELEMENTS) // max(1, n_columns))


def read_rows(X: Any, start: int, stop: int, columns: np.ndarray | None = None) -> np.ndarray | sparse.csr_matrix:
    """Rows ``start:stop`` of ``X`` (any AnnData matrix type), restricted to ``columns``.

    Only ``X[start:stop]`` is read from ``X``. Returns a numpy array for dense inputs and a CSR matrix for sparse
    ones (in-memory or backed).
    """
    block = X[start:stop]
    block = sparse.csr_matrix(block) if sparse.issparse(block) else np.asarray(block)
    return block if columns is None else block[:, columns]


def iter_row_chunks(
    X: Any, chunk_size: int, columns: np.ndarray | None = None
) -> Iterator[tuple[int, int, np.ndarray | sparse.csr_matrix]]:
    """Yield ``(start, stop, rows)`` over ``X`` in chunks of at most ``chunk_size`` rows (see :func:`read_rows`)."""
    if chunk_size < 1:
        raise ValueError(f"The chunk size (batch_size) must be >= 1, got {chunk_size}.")
    n = X.shape[0]
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        yield start, stop, read_rows(X, start, stop, columns)


def backing_file(adata: ad.AnnData) -> Path | None:
    """The resolved file behind a backed AnnData, else ``None``."""
    if not adata.isbacked or adata.filename is None:
        return None
    return Path(adata.filename).resolve()


def check_out_path(
    out: str | os.PathLike, overwrite: bool, inputs: Sequence[ad.AnnData] = (), suffix: str = ".h5ad"
) -> Path:
    """Validate the output path of a chunk-written result and return it; errors name the problem and the fix."""
    from .model._defaults import check_option  # at call time: the model package imports this module

    check_option("overwrite", overwrite)
    if not isinstance(out, str | os.PathLike):
        raise TypeError(f"`out` must be a path (str or os.PathLike), got {type(out).__name__}: {out!r}.")
    path = Path(out)
    if path.suffix != suffix:
        raise ValueError(f"`out` must be a path ending in {suffix!r}, got {str(out)!r}; e.g. out='imputed{suffix}'.")
    if not path.parent.exists():
        raise FileNotFoundError(
            f"The directory of `out` ({str(path.parent)!r}) does not exist; create it first "
            "(e.g. `os.makedirs(dirname, exist_ok=True)`)."
        )
    for adata in inputs:
        src = backing_file(adata)
        if src is not None and src == path.resolve():
            raise ValueError(
                f"`out` ({str(out)!r}) is the file `adata_st` is backed by; write the result to another file."
            )
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"`out` ({str(out)!r}) already exists; remove it, choose another path or pass overwrite=True."
        )
    if path.is_dir():
        raise IsADirectoryError(f"`out` ({str(out)!r}) is a directory; pass a file path ending in {suffix!r}.")
    return path


class H5adChunkWriter:
    """Write cells x genes results into an ``.h5ad`` file, one row chunk at a time.

    The file is a regular AnnData: ``obs`` (index: cell names), ``var`` (index: gene names), ``X`` (float32, e.g. the
    imputed mean), the float32 ``layers`` named in ``layers`` (e.g. ``"std"``), and the ``uns`` given to
    :meth:`close` (metadata such as timings is known only at the end). It is written to
    ``<path>.partial`` and renamed to ``path`` only by :meth:`close`, so an interrupted run never leaves a file that
    looks complete. Use as a context manager: on an exception the partial file is removed.

    Parameters
    ----------
    path
        Destination (validated by :func:`check_out_path`).
    obs_names, var_names
        Row and column names.
    layers
        Names of the extra float32 layers to allocate.
    """

    def __init__(
        self,
        path: Path,
        obs_names: pd.Index,
        var_names: pd.Index,
        layers: Sequence[str] = (),
    ):
        self.path = Path(path)
        self.tmp_path = self.path.with_name(self.path.name + ".partial")
        shape = (len(obs_names), len(var_names))
        skeleton = ad.AnnData(
            obs=pd.DataFrame(index=pd.Index(obs_names, dtype=str)),
            var=pd.DataFrame(index=pd.Index(var_names, dtype=str)),
        )
        skeleton.write_h5ad(self.tmp_path)
        self._file = h5py.File(self.tmp_path, "a")
        chunks = (max(1, min(shape[0], _H5_CHUNK_ELEMENTS // max(1, shape[1]))), max(1, shape[1]))
        self._datasets = {None: self._create(self._file, "X", shape, chunks)}
        layer_group = self._file.require_group("layers")
        for name in layers:
            self._datasets[name] = self._create(layer_group, name, shape, chunks)

    @staticmethod
    def _create(group: h5py.Group, name: str, shape: tuple[int, int], chunks: tuple[int, int]) -> h5py.Dataset:
        dset = group.create_dataset(name, shape=shape, dtype=np.float32, chunks=chunks if shape[0] else None)
        dset.attrs["encoding-type"] = "array"  # anndata's on-disk spec of a dense array
        dset.attrs["encoding-version"] = "0.2.0"
        return dset

    def write(self, start: int, stop: int, X: np.ndarray, **layers: np.ndarray) -> None:
        """Write rows ``start:stop`` of ``X`` and of the named layers."""
        self._datasets[None][start:stop] = X
        for name, values in layers.items():
            self._datasets[name][start:stop] = values

    def close(self, uns: dict | None = None) -> Path:
        """Flush, close and move the file into place; returns its path.

        ``uns`` is written into the file's ``uns`` first.
        """
        if uns is not None:
            del self._file["uns"]
            write_elem(self._file, "uns", uns)
        self._file.close()
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file."""
        try:
            self._file.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> H5adChunkWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
