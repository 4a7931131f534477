"""The registry of the twelve benchmark pairs (``_registry.toml``): loading, validation and :func:`list_datasets`."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlparse

import pandas as pd

REGISTRY_FILE = "_registry.toml"
SCHEMA_VERSION = 1

#: parser kinds and the file roles each expects ("spatialbenchmarking" may also have no files: a local archive)
FORMAT_ROLES: dict[str, frozenset[str]] = {
    "h5ad": frozenset({"spatial", "rna"}),
    "loom": frozenset({"spatial", "rna"}),
    "dvex_bdtnp": frozenset({"bdtnp", "geometry", "dge"}),
    "spatialbenchmarking": frozenset({"archive"}),
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file of a source: its role for the parser, cache file name, URLs (primary first) and hash."""

    role: str
    fname: str
    urls: tuple[str, ...]
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class Source:
    """One way to obtain a pair: parser kind, downloadable files and the shapes those files have."""

    name: str
    format: str
    description: str
    expected_spatial_shape: tuple[int, int]
    expected_reference_shape: tuple[int, int]
    files: tuple[RemoteFile, ...] = ()
    folder: str | None = None

    @property
    def downloadable(self) -> bool:
        """Whether the source has files to download (otherwise it reads a local archive)."""
        return len(self.files) > 0

    @property
    def checksum_pinned(self) -> bool:
        """Whether every file of the source has a pinned sha256 (only downloadable sources can have one)."""
        return self.downloadable and all(f.sha256 for f in self.files)


@dataclass(frozen=True)
class Pair:
    """A benchmark pair: its row of Table 1, citations and sources (the first one is the default)."""

    name: str
    table_name: str
    tissue: str
    technology: str
    table_spatial_shape: tuple[int, int]
    table_reference_shape: tuple[int, int]
    spatial_citation: str
    reference_citation: str
    sources: tuple[Source, ...]
    notes: str = ""

    @property
    def default_source(self) -> Source:
        """The source used when none is asked for."""
        return self.sources[0]

    def source(self, name: str | None) -> Source:
        """Return the source called ``name`` (the default one for ``None``)."""
        if name is None:
            return self.default_source
        for src in self.sources:
            if src.name == name:
                return src
        valid = ", ".join(repr(s.name) for s in self.sources)
        raise ValueError(f"Pair {self.name!r} has no source {name!r}; its sources are: {valid}.")


@dataclass(frozen=True)
class Archive:
    """A hand-downloaded archive that some sources read from (the SpatialBenchmarking ``DataUpload`` folder)."""

    name: str
    title: str
    url: str
    host: str
    citation: str
    instructions: str


@dataclass(frozen=True)
class Registry:
    """All pairs and archives of the registry file."""

    pairs: dict[str, Pair]
    archives: dict[str, Archive]

    def pair(self, name: str) -> Pair:
        """Return the pair called ``name``; unknown names raise a :class:`KeyError` that lists the valid ones."""
        if not isinstance(name, str):
            raise TypeError(f"A dataset name must be a string, got {type(name).__name__}.")
        key = name.strip().lower()
        if key in self.pairs:
            return self.pairs[key]
        for pair in self.pairs.values():  # also accept the names of Table 1, e.g. "Dataset1_osmFISH"
            if pair.table_name.lower() == key:
                return pair
        valid = ", ".join(self.pairs)
        raise KeyError(f"Unknown dataset {name!r}. Valid names: {valid} (or their Table 1 names, see list_datasets()).")


def _shape(value: Any, where: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise ValueError(f"{where}: expected [cells, genes] as two positive integers, got {value!r}.")
    return (value[0], value[1])


def _required(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise ValueError(f"{where}: missing required key {key!r}.")
    return table[key]


def _parse_file(table: dict[str, Any], where: str) -> RemoteFile:
    urls = _required(table, "urls", where)
    if not (isinstance(urls, list) and urls and all(isinstance(u, str) and urlparse(u).scheme for u in urls)):
        raise ValueError(f"{where}: 'urls' must be a non-empty list of URLs, got {urls!r}.")
    sha256 = str(table.get("sha256", "")).lower()
    if not _SHA256.match(sha256):
        raise ValueError(
            f"{where}: a downloadable file needs its sha256 (64 hex digits), got {sha256!r}. Files without a known "
            "hash are not downloaded: describe them as a local archive instead."
        )
    return RemoteFile(
        role=str(_required(table, "role", where)),
        fname=str(_required(table, "fname", where)),
        urls=tuple(urls),
        sha256=sha256,
        size=table.get("size"),
    )


def _parse_source(table: dict[str, Any], where: str) -> Source:
    fmt = _required(table, "format", where)
    if fmt not in FORMAT_ROLES:
        raise ValueError(f"{where}: unknown format {fmt!r}; known formats: {', '.join(FORMAT_ROLES)}.")
    remote = tuple(_parse_file(f, f"{where}.files[{i}]") for i, f in enumerate(table.get("files", [])))
    roles = [f.role for f in remote]
    if remote or fmt != "spatialbenchmarking":
        if sorted(roles) != sorted(FORMAT_ROLES[fmt]):
            raise ValueError(
                f"{where}: format {fmt!r} needs files with roles {sorted(FORMAT_ROLES[fmt])}, got {roles}."
            )
    if len({f.fname for f in remote}) != len(remote):
        raise ValueError(f"{where}: two files share a file name.")
    return Source(
        name=str(_required(table, "name", where)),
        format=fmt,
        description=str(table.get("description", "")),
        expected_spatial_shape=_shape(
            _required(table, "expected_spatial_shape", where), f"{where}.expected_spatial_shape"
        ),
        expected_reference_shape=_shape(
            _required(table, "expected_reference_shape", where), f"{where}.expected_reference_shape"
        ),
        files=remote,
        folder=table.get("folder"),
    )


def parse_registry(data: dict[str, Any]) -> Registry:
    """Validate the content of a registry file and build the :class:`Registry`.

    Parameters
    ----------
    data
        The parsed TOML document.

    Returns
    -------
    The validated registry; a malformed entry raises a :class:`ValueError` naming the entry and the key.

    Examples
    --------
    >>> import tomllib
    >>> reg = parse_registry(tomllib.loads("schema_version = 1"))
    >>> reg.pairs
    {}
    """
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"Registry schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}.")
    archives = {}
    for name, table in data.get("archives", {}).items():
        where = f"archives.{name}"
        archives[name] = Archive(
            name=name,
            **{k: str(_required(table, k, where)) for k in ("title", "url", "host", "citation", "instructions")},
        )
    pairs = {}
    for name, table in data.get("pairs", {}).items():
        where = f"pairs.{name}"
        sources = tuple(_parse_source(s, f"{where}.sources[{i}]") for i, s in enumerate(table.get("sources", [])))
        if not sources:
            raise ValueError(f"{where}: a pair needs at least one source.")
        if len({s.name for s in sources}) != len(sources):
            raise ValueError(f"{where}: two sources share a name.")
        for src in sources:
            if src.format == "spatialbenchmarking" and "spatialbenchmarking" not in archives:
                raise ValueError(f"{where}: source {src.name!r} needs the archive 'spatialbenchmarking'.")
        pairs[name] = Pair(
            name=name,
            table_name=str(_required(table, "table_name", where)),
            tissue=str(_required(table, "tissue", where)),
            technology=str(_required(table, "technology", where)),
            table_spatial_shape=_shape(_required(table, "table_spatial_shape", where), f"{where}.table_spatial_shape"),
            table_reference_shape=_shape(
                _required(table, "table_reference_shape", where), f"{where}.table_reference_shape"
            ),
            spatial_citation=str(_required(table, "spatial_citation", where)),
            reference_citation=str(_required(table, "reference_citation", where)),
            sources=sources,
            notes=str(table.get("notes", "")),
        )
    return Registry(pairs=pairs, archives=archives)


@cache
def registry() -> Registry:
    """Return the registry shipped with the package (read once, then cached)."""
    text = (files("spalstf.datasets") / REGISTRY_FILE).read_text(encoding="utf-8")
    return parse_registry(tomllib.loads(text))


def _hosts(pair: Pair, reg: Registry) -> str:
    hosts: list[str] = []
    for src in pair.sources:
        if src.downloadable:
            for f in src.files:
                for url in f.urls:
                    host = urlparse(url).netloc
                    if host not in hosts:
                        hosts.append(host)
        elif src.format == "spatialbenchmarking":
            host = reg.archives["spatialbenchmarking"].host
            if host not in hosts:
                hosts.append(host)
    return "; ".join(hosts)


def list_datasets() -> pd.DataFrame:
    """List the twelve benchmark pairs of the SpaLSTF paper (Table 1) and where their files come from.

    Each pair has a loader of the same name in :mod:`spalstf.datasets` (``sp.datasets.osmfish()``, ...) and can be
    loaded with :func:`spalstf.datasets.load`. The shapes are those of Table 1; a pair's default source may differ
    (the osmFISH pair as processed by the SpaLSTF authors has a 5613 x 33 reference, see
    :func:`spalstf.datasets.osmfish`), and ``default_spatial_shape`` / ``default_reference_shape`` say what the
    default loader returns.

    Returns
    -------
    :class:`pandas.DataFrame` with one row per pair, in the order of Table 1, and the columns

    - ``name``: the loader name (``sp.datasets.<name>()``, ``sp.datasets.load("<name>")``);
    - ``table_name``: the name in Table 1 (e.g. ``"Dataset1_osmFISH"``, typos of the paper corrected);
    - ``tissue``, ``technology``;
    - ``spatial_cells``, ``spatial_genes``, ``reference_cells``, ``reference_genes``: the shapes of Table 1;
    - ``spatial_citation``, ``reference_citation``;
    - ``hosts``: where the files of all its sources live;
    - ``checksum_pinned``: whether the default source is downloaded with pinned sha256 hashes (otherwise it reads a
      hand-downloaded copy of the SpatialBenchmarking archive);
    - ``default_source``, ``sources``: the source names accepted by the ``source`` argument of the loaders;
    - ``default_spatial_shape``, ``default_reference_shape``: the shapes the default source yields;
    - ``notes``.

    Examples
    --------
    >>> import spalstf as sp
    >>> df = sp.datasets.list_datasets()
    >>> df.loc[df["name"] == "osmfish", ["spatial_cells", "spatial_genes", "reference_cells", "reference_genes"]]
       spatial_cells  spatial_genes  reference_cells  reference_genes
    0           3405             33            14249            34041
    """
    reg = registry()
    rows = []
    for pair in reg.pairs.values():
        default = pair.default_source
        rows.append(
            {
                "name": pair.name,
                "table_name": pair.table_name,
                "tissue": pair.tissue,
                "technology": pair.technology,
                "spatial_cells": pair.table_spatial_shape[0],
                "spatial_genes": pair.table_spatial_shape[1],
                "reference_cells": pair.table_reference_shape[0],
                "reference_genes": pair.table_reference_shape[1],
                "spatial_citation": pair.spatial_citation,
                "reference_citation": pair.reference_citation,
                "hosts": _hosts(pair, reg),
                "checksum_pinned": default.checksum_pinned,
                "default_source": default.name,
                "sources": ", ".join(s.name for s in pair.sources),
                "default_spatial_shape": default.expected_spatial_shape,
                "default_reference_shape": default.expected_reference_shape,
                "notes": pair.notes,
            }
        )
    return pd.DataFrame(rows)
