"""Parsers for the source formats of the benchmark pairs, shared by all loaders.

Each ``read_*`` function returns the two modalities ``(spatial, rna)`` as :class:`anndata.AnnData` with cells as
observations; coordinates of the spatial cells are in ``spatial.obsm["spatial"]``. Formats:

- ``"h5ad"``: one ``.h5ad`` file per modality (:func:`read_h5ad_pair`);
- ``"loom"``: one ``.loom`` file per modality, read with :mod:`h5py` (:func:`read_loom_pair`);
- ``"dvex_bdtnp"``: the Drosophila DVEX / BDTNP text files (:func:`read_dvex_bdtnp`);
- ``"spatialbenchmarking"``: a ``DatasetN`` folder of the SpatialBenchmarking ``DataUpload`` archive, on disk or
  inside a zip file (:func:`find_dataupload_folders`, :func:`read_spatialbenchmarking`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from scipy import sparse

Modalities = tuple[ad.AnnData, ad.AnnData]

#: obs columns recognised as coordinates, in order of preference
COORDINATE_COLUMNS: tuple[tuple[str, ...], ...] = (
    ("x_coord", "y_coord", "z_coord"),
    ("x", "y", "z"),
    ("X", "Y", "Z"),
    ("x_centroid", "y_centroid", "z_centroid"),
    ("center_x", "center_y", "center_z"),
    ("array_row", "array_col"),
)
#: file names of a SpatialBenchmarking dataset folder, by role (lower case; the first match wins)
DATAUPLOAD_FILES: dict[str, tuple[str, ...]] = {
    "spatial": ("spatial_count.txt", "insitu_count.txt"),
    "locations": ("locations.txt",),
    "scrna": ("scrna_count.txt",),
}
_CHUNK_ROWS = 512


# --------------------------------------------------------------------------------------------------------------------
# shared helpers


def coordinates_from_obs(obs: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
    """Find the coordinate columns of ``obs`` (``x_coord``/``y_coord``, ``x``/``y``, ``X``/``Y``, ...).

    Parameters
    ----------
    obs
        Per-cell annotations.

    Returns
    -------
    The ``(n_cells, 2 or 3)`` coordinates and the names of the columns used, or ``None`` when there are none.

    Examples
    --------
    >>> obs = pd.DataFrame({"x_coord": [0.0, 1.0], "y_coord": [2.0, 3.0], "cell_type": ["a", "b"]})
    >>> coordinates_from_obs(obs)[1]
    ['x_coord', 'y_coord']
    """
    for names in COORDINATE_COLUMNS:
        present = [n for n in names if n in obs.columns]
        if present[:2] == list(names[:2]) and all(pd.api.types.is_numeric_dtype(obs[n]) for n in present):
            return obs[present].to_numpy(np.float64), present
    return None


def ensure_spatial_coordinates(adata: ad.AnnData, where: str) -> ad.AnnData:
    """Put the coordinates of a spatial AnnData in ``obsm["spatial"]`` (from ``obs`` columns when needed).

    Parameters
    ----------
    adata
        Spatial modality.
    where
        The file it was read from, for the error message.

    Returns
    -------
    ``adata``, modified in place.

    Examples
    --------
    >>> a = ad.AnnData(np.ones((2, 1)), obs=pd.DataFrame({"x": [0.0, 1.0], "y": [1.0, 0.0]}, index=["a", "b"]))
    >>> ensure_spatial_coordinates(a, "example").obsm["spatial"].shape
    (2, 2)
    """
    if "spatial" in adata.obsm:
        adata.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=np.float64)
        return adata
    found = coordinates_from_obs(adata.obs)
    if found is None:
        known = ", ".join("/".join(n[:2]) for n in COORDINATE_COLUMNS)
        raise ValueError(
            f"{where}: no coordinates found. Expected obsm['spatial'] or obs columns {known}; "
            f"obs has {list(adata.obs.columns)}."
        )
    adata.obsm["spatial"], columns = found
    adata.uns["spatial_coordinate_columns"] = columns
    return adata


def _split_fields(line: str, sep: str) -> list[str]:
    return next(csv.reader([line.rstrip("\r\n")], delimiter=sep))


def _to_float32(frame: pd.DataFrame, where: str) -> np.ndarray:
    try:
        return frame.to_numpy(np.float32)
    except ValueError as err:
        raise ValueError(f"{where}: expected numbers only in the matrix ({err}).") from None


# --------------------------------------------------------------------------------------------------------------------
# h5ad and loom


def read_h5ad_pair(files: Mapping[str, Path]) -> Modalities:
    """Read a pair stored as two ``.h5ad`` files (roles ``"spatial"`` and ``"rna"``).

    The spatial coordinates are taken from ``obsm["spatial"]`` or from coordinate columns of ``obs``
    (:func:`coordinates_from_obs`). Matrices are kept as stored.

    Parameters
    ----------
    files
        Paths by role.

    Returns
    -------
    ``(spatial, rna)``.

    Examples
    --------
    >>> spatial, rna = read_h5ad_pair({"spatial": "sp.h5ad", "rna": "sc.h5ad"})  # doctest: +SKIP
    """
    spatial = ad.read_h5ad(files["spatial"])
    rna = ad.read_h5ad(files["rna"])
    return ensure_spatial_coordinates(spatial, str(files["spatial"])), rna


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in ("S", "O"):
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)
    return values


def read_loom(path: str | os.PathLike[str]) -> ad.AnnData:
    """Read a ``.loom`` file (genes x cells in ``/matrix``) into a cells x genes AnnData, with :mod:`h5py` only.

    Gene names come from the row attribute ``Gene`` (or ``gene``, ``var_names``, ``gene_ids``, ``Accession``), cell
    ids from the column attribute ``CellID`` (or ``obs_names``, ``cell_ids``); other 1-D column attributes become
    ``obs`` columns and 2-D ones ``obsm`` entries. The matrix is read in blocks into a CSR matrix.

    Parameters
    ----------
    path
        The ``.loom`` file.

    Returns
    -------
    AnnData with cells as observations.

    Examples
    --------
    >>> adata = read_loom("cells.loom")  # doctest: +SKIP
    """
    with h5py.File(path, "r") as f:
        if "matrix" not in f:
            raise ValueError(f"{path}: not a loom file (no /matrix dataset).")
        matrix = f["matrix"]
        n_genes, n_cells = matrix.shape
        blocks = [
            sparse.csr_matrix(matrix[i : i + _CHUNK_ROWS].astype(np.float32)) for i in range(0, n_genes, _CHUNK_ROWS)
        ]
        x = sparse.vstack(blocks).T.tocsr() if blocks else sparse.csr_matrix((n_cells, 0), dtype=np.float32)
        row = {k: _decode(v[()]) for k, v in f.get("row_attrs", {}).items()}
        col = {k: _decode(v[()]) for k, v in f.get("col_attrs", {}).items()}
    gene_key = next((k for k in ("Gene", "gene", "var_names", "gene_ids", "Accession") if k in row), None)
    cell_key = next((k for k in ("CellID", "obs_names", "cell_ids", "CellId") if k in col), None)
    var_names = [str(g) for g in row[gene_key]] if gene_key else [f"gene_{i}" for i in range(n_genes)]
    obs_names = [str(c) for c in col[cell_key]] if cell_key else [f"cell_{i}" for i in range(n_cells)]
    obs = pd.DataFrame({k: v for k, v in col.items() if k != cell_key and v.ndim == 1}, index=obs_names)
    var = pd.DataFrame({k: v for k, v in row.items() if k != gene_key and v.ndim == 1}, index=var_names)
    adata = ad.AnnData(X=x, obs=obs, var=var)
    for key, value in col.items():
        if value.ndim == 2 and value.shape[0] == n_cells:
            adata.obsm[key] = np.asarray(value)
    return adata


def read_loom_pair(files: Mapping[str, Path]) -> Modalities:
    """Read a pair stored as two ``.loom`` files (roles ``"spatial"`` and ``"rna"``), see :func:`read_loom`.

    Parameters
    ----------
    files
        Paths by role.

    Returns
    -------
    ``(spatial, rna)``.

    Examples
    --------
    >>> spatial, rna = read_loom_pair({"spatial": "sp.loom", "rna": "sc.loom"})  # doctest: +SKIP
    """
    spatial = read_loom(files["spatial"])
    rna = read_loom(files["rna"])
    return ensure_spatial_coordinates(spatial, str(files["spatial"])), rna


# --------------------------------------------------------------------------------------------------------------------
# Drosophila DVEX / BDTNP


def read_dvex_bdtnp(files: Mapping[str, Path]) -> Modalities:
    """Read the Drosophila embryo pair from the DVEX / BDTNP text files.

    - ``"bdtnp"`` (``bdtnp.txt``): spatial in situ values, cells x genes, tab-separated, header row of genes;
    - ``"geometry"`` (``geometry.txt``): coordinates, space-separated, header ``"x" "y" "z"``;
    - ``"dge"`` (``dge_raw.txt.gz``): reference raw UMI counts, genes x cells, tab-separated, first column = gene,
      no header row.

    Parameters
    ----------
    files
        Paths by role (gzip is recognised by the ``.gz`` suffix).

    Returns
    -------
    ``(spatial, rna)``: spatial values as float32 with 3-D coordinates in ``obsm["spatial"]``, observations
    ``bdtnp_0000``...; reference counts as CSR int32, observations ``dvex_0000``...

    Examples
    --------
    >>> spatial, rna = read_dvex_bdtnp(
    ...     {"bdtnp": "bdtnp.txt", "geometry": "geometry.txt", "dge": "dge_raw.txt.gz"}
    ... )  # doctest: +SKIP
    """
    st = pd.read_csv(files["bdtnp"], sep="\t")
    xyz = pd.read_csv(files["geometry"], sep=r"\s+")
    if xyz.shape[0] != st.shape[0]:
        raise ValueError(
            f"{files['geometry']} has {xyz.shape[0]} rows but {files['bdtnp']} has {st.shape[0]} cells; "
            "they must describe the same cells."
        )
    spatial = ad.AnnData(
        X=_to_float32(st, str(files["bdtnp"])),
        obs=pd.DataFrame(index=[f"bdtnp_{i:04d}" for i in range(st.shape[0])]),
        var=pd.DataFrame(index=st.columns.astype(str)),
    )
    spatial.obsm["spatial"] = xyz.to_numpy(np.float64)
    spatial.uns["spatial_coordinate_columns"] = [str(c) for c in xyz.columns]

    dge = pd.read_csv(files["dge"], sep="\t", header=None, index_col=0)
    counts = sparse.csr_matrix(dge.to_numpy(np.int32).T)
    rna = ad.AnnData(
        X=counts,
        obs=pd.DataFrame(index=[f"dvex_{i:04d}" for i in range(counts.shape[0])]),
        var=pd.DataFrame(index=pd.Index([str(g) for g in dge.index])),
    )
    return spatial, rna


# --------------------------------------------------------------------------------------------------------------------
# SpatialBenchmarking DataUpload folders


@dataclass(frozen=True)
class DataUploadFolder:
    """One ``DatasetN`` folder of the SpatialBenchmarking archive, on disk or inside a zip file.

    Parameters
    ----------
    name
        The folder name, e.g. ``"Dataset15"``.
    label
        Where it is, for messages (``/path/DataUpload/Dataset15`` or ``/path/DataUpload.zip:DataUpload/Dataset15``).
    members
        Path (on disk) or member name (in the zip) of each file, by role ``"spatial"``, ``"locations"``, ``"scrna"``.
    zip_path
        The zip file, or ``None`` for a folder on disk.
    """

    name: str
    label: str
    members: dict[str, str] = field(hash=False)
    zip_path: Path | None = None

    @contextmanager
    def open(self, role: str) -> Iterator[IO[str]]:
        """Open the file of ``role`` as text."""
        if self.zip_path is None:
            with open(self.members[role], encoding="utf-8", newline="") as handle:
                yield handle
        else:
            with zipfile.ZipFile(self.zip_path) as zf, zf.open(self.members[role]) as raw:
                yield io.TextIOWrapper(raw, encoding="utf-8", newline="")

    def file_label(self, role: str) -> str:
        """Where the file of ``role`` is, for messages."""
        member = self.members[role]
        return f"{self.zip_path}:{member}" if self.zip_path is not None else member

    def fingerprint(self) -> str:
        """Digest the sizes and dates (or zip CRCs) of the three files, to recognise a parsed copy."""
        parts: list[str] = []
        if self.zip_path is None:
            for role in sorted(self.members):
                stat = os.stat(self.members[role])
                parts.append(f"{self.members[role]}:{stat.st_size}:{stat.st_mtime_ns}")
        else:
            with zipfile.ZipFile(self.zip_path) as zf:
                for role in sorted(self.members):
                    info = zf.getinfo(self.members[role])
                    parts.append(f"{self.zip_path}:{info.filename}:{info.file_size}:{info.CRC}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def spatial_shape(self) -> tuple[int, int]:
        """Cells x genes of the spatial file, from its header and line count (without parsing the values)."""
        with self.open("spatial") as handle:
            header = _split_fields(handle.readline(), "\t")
            first = handle.readline()
            n_rows = 1 if first.strip() else 0
            n_rows += sum(1 for line in handle if line.strip())
        if not first.strip():
            return 0, len(header)
        fields = _split_fields(first, "\t")
        if len(fields) == len(header) + 1:  # an index column without a header name
            return n_rows, len(header)
        if len(fields) == len(header) and not _is_number(fields[0]):  # an index column with a header name
            return n_rows, len(header) - 1
        return n_rows, len(fields)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _dataset_folders_in_names(names: list[str]) -> dict[str, dict[str, str]]:
    """Group file names (paths with ``/``) by parent folder and keep folders that hold the three files."""
    by_parent: dict[str, dict[str, str]] = {}
    for name in names:
        parent, _, base = name.rstrip("/").rpartition("/")
        by_parent.setdefault(parent, {})[base.lower()] = name
    found = {}
    for parent, entries in by_parent.items():
        members = {}
        for role, candidates in DATAUPLOAD_FILES.items():
            hit = next((entries[c] for c in candidates if c in entries), None)
            if hit is not None:
                members[role] = hit
        if len(members) == len(DATAUPLOAD_FILES):
            found[parent] = members
    return found


def _folders_in_zip(path: Path) -> list[DataUploadFolder]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/") and "__MACOSX" not in n]
    except zipfile.BadZipFile as err:
        raise ValueError(f"{path} is not a readable zip file ({err}); download it again.") from None
    return [
        DataUploadFolder(
            name=parent.rpartition("/")[2] or path.stem, label=f"{path}:{parent}", members=m, zip_path=path
        )
        for parent, m in sorted(_dataset_folders_in_names(names).items())
    ]


def find_dataupload_folders(path: str | os.PathLike[str], max_depth: int = 4) -> list[DataUploadFolder]:
    """Find the ``DatasetN`` folders of a SpatialBenchmarking ``DataUpload`` archive.

    A dataset folder holds ``Spatial_count.txt`` (or ``Insitu_count.txt``), ``Locations.txt`` and ``scRNA_count.txt``
    (names compared without case).

    Parameters
    ----------
    path
        The ``DataUpload`` folder, a folder above it, one ``DatasetN`` folder, a zip file of any of these, or a
        folder holding such zip files (Google Drive splits large folders into several zips).
    max_depth
        How deep to look below ``path``.

    Returns
    -------
    The dataset folders found, sorted by where they are.

    Examples
    --------
    >>> folders = find_dataupload_folders("~/data/DataUpload.zip")  # doctest: +SKIP
    >>> [f.name for f in folders]  # doctest: +SKIP
    ['Dataset1', 'Dataset10', ...]
    """
    root = Path(path).expanduser()
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise ValueError(
                f"{root} is a file but not a zip file. Pass the 'DataUpload' folder, a zip file of it, or a folder "
                "holding the zip files."
            )
        return _folders_in_zip(root)
    found: list[DataUploadFolder] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if len(here.parts) - base_depth >= max_depth:
            dirnames.clear()
        dirnames.sort()
        rel = {fname: str(here / fname) for fname in filenames}
        groups = _dataset_folders_in_names(list(rel))
        if "" in groups:
            members = {role: rel[name] for role, name in groups[""].items()}
            found.append(DataUploadFolder(name=here.name, label=str(here), members=members))
        for fname in sorted(filenames):
            if fname.lower().endswith(".zip") and zipfile.is_zipfile(here / fname):
                found.extend(_folders_in_zip(here / fname))
    return found


def _read_cells_by_genes(handle: IO[str], where: str) -> pd.DataFrame:
    """Cells x genes table with a header row of genes and, possibly, an index column."""
    frame = pd.read_csv(handle, sep="\t")
    if frame.shape[1] and not pd.api.types.is_numeric_dtype(frame.iloc[:, 0]):
        frame = frame.set_index(frame.columns[0])
    frame.columns = [str(c) for c in frame.columns]
    if not frame.columns.size:
        raise ValueError(f"{where}: no genes found (expected a tab-separated header row of gene names).")
    return frame


def _read_genes_by_cells(handle: IO[str], where: str) -> tuple[sparse.csr_matrix, list[str], list[str]]:
    """Genes x cells table (first column = gene, header row of cell ids) read in chunks into cells x genes CSR."""
    header = _split_fields(handle.readline(), "\t")
    blocks: list[sparse.csr_matrix] = []
    genes: list[str] = []
    reader = pd.read_csv(handle, sep="\t", header=None, index_col=0, chunksize=_CHUNK_ROWS)
    n_cells = None
    for chunk in reader:
        n_cells = chunk.shape[1]
        blocks.append(sparse.csr_matrix(_to_float32(chunk, where)))
        genes.extend(str(g) for g in chunk.index)
    if n_cells is None:
        raise ValueError(f"{where}: no genes found (expected genes x cells, first column = gene name).")
    if len(header) == n_cells + 1:
        cells = header[1:]
    elif len(header) == n_cells:
        cells = header
    else:
        raise ValueError(f"{where}: the header has {len(header)} cell ids but the rows have {n_cells} values.")
    counts = sparse.vstack(blocks).T.tocsr()
    return counts, [str(c) for c in cells], genes


def _read_locations(handle: IO[str], n_cells: int, where: str) -> tuple[np.ndarray, list[str], pd.DataFrame]:
    text = handle.read()
    frame = pd.read_csv(io.StringIO(text), sep="\t")
    if frame.shape[1] < 2:
        frame = pd.read_csv(io.StringIO(text), sep=r"\s+")
    if frame.shape[0] != n_cells:
        raise ValueError(f"{where}: {frame.shape[0]} locations for {n_cells} spatial cells; they must match.")
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    if len(numeric) < 2:
        raise ValueError(f"{where}: expected at least two numeric coordinate columns, got {list(frame.columns)}.")
    coords = frame[numeric[:3]].to_numpy(np.float64)
    extra = frame.drop(columns=numeric[:3]).reset_index(drop=True)
    return coords, [str(c) for c in numeric[:3]], extra


def read_spatialbenchmarking(folder: DataUploadFolder) -> Modalities:
    """Read one ``DatasetN`` folder of the SpatialBenchmarking archive.

    - ``Spatial_count.txt`` / ``Insitu_count.txt``: cells x genes, tab-separated, header row of gene names, no index
      column (an index column is tolerated);
    - ``Locations.txt``: tab-separated, header ``X Y`` and possibly a third column; up to three numeric columns become
      ``obsm["spatial"]``, other columns ``obs`` columns;
    - ``scRNA_count.txt``: genes x cells, tab-separated, first column = gene name, header row of cell ids (with or
      without a name for the gene column), read in chunks into a CSR matrix.

    Parameters
    ----------
    folder
        The dataset folder (see :func:`find_dataupload_folders`).

    Returns
    -------
    ``(spatial, rna)`` with the values the files give, as float32; spatial observations are named ``spatial_<i>``
    unless the file has an index column.

    Examples
    --------
    >>> folder = find_dataupload_folders("~/data/DataUpload")[0]  # doctest: +SKIP
    >>> spatial, rna = read_spatialbenchmarking(folder)  # doctest: +SKIP
    """
    with folder.open("spatial") as handle:
        table = _read_cells_by_genes(handle, folder.file_label("spatial"))
    index = (
        table.index.astype(str)
        if not isinstance(table.index, pd.RangeIndex)
        else pd.Index([f"spatial_{i}" for i in range(table.shape[0])])
    )
    spatial = ad.AnnData(
        X=_to_float32(table, folder.file_label("spatial")),
        obs=pd.DataFrame(index=index),
        var=pd.DataFrame(index=pd.Index(table.columns)),
    )
    with folder.open("locations") as handle:
        coords, columns, extra = _read_locations(handle, spatial.n_obs, folder.file_label("locations"))
    spatial.obsm["spatial"] = coords
    spatial.uns["spatial_coordinate_columns"] = columns
    for column in extra.columns:
        spatial.obs[str(column)] = extra[column].to_numpy()

    with folder.open("scrna") as handle:
        counts, cells, genes = _read_genes_by_cells(handle, folder.file_label("scrna"))
    rna = ad.AnnData(X=counts, obs=pd.DataFrame(index=pd.Index(cells)), var=pd.DataFrame(index=pd.Index(genes)))
    return spatial, rna


#: parser of each file-based format, taking the downloaded files by role
FILE_PARSERS: dict[str, Callable[[Mapping[str, Path]], Modalities]] = {
    "h5ad": read_h5ad_pair,
    "loom": read_loom_pair,
    "dvex_bdtnp": read_dvex_bdtnp,
}
