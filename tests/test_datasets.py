"""Tests of ``sp.datasets``: registry, Table 1, parsers and the download path (offline, against 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import inspect
import io
import pickle
import pydoc
import threading
import tomllib
import typing
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import spalstf as sp
from spalstf.datasets import _fetch, _loaders, _parsers, _registry

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared beside the repository, as in CI
SHARED_DROSOPHILA = SHARED_DATA / "drosophila_embryo"
SHARED_OSMFISH = SHARED_DATA / "osmfish"

# Table 1 of the SpaLSTF paper (typos of the paper corrected: oscFISH -> osmFISH, BARISTAseg -> BARISTAseq)
TABLE_1 = [
    ("osmfish", "Dataset1_osmFISH", (3405, 33), (14249, 34041)),
    ("seqfish_plus", "Dataset2_seqFISH+", (524, 10000), (14249, 34041)),
    ("merfish_visual_cortex", "Dataset3_MERFISH", (2399, 268), (14249, 34041)),
    ("iss_visual_cortex", "Dataset4_ISS", (6000, 119), (14249, 34041)),
    ("drosophila_embryo_full", "Dataset5_FISH", (3039, 84), (1297, 8924)),
    ("baristaseq", "Dataset6_BARISTAseq", (11426, 80), (14249, 34041)),
    ("merfish_mop", "Dataset7_MERFISH", (5551, 247), (14249, 34041)),
    ("seqfish_embryo", "Dataset8_seqFISH", (175, 45), (9991, 16477)),
    ("starmap_visual_cortex", "Dataset9_STARmap", (1549, 1020), (14249, 34041)),
    ("starmap_prefrontal_cortex", "Dataset10_STARmap", (1380, 166), (7737, 14837)),
    ("exseq", "Dataset11_ExSeq", (1154, 42), (14249, 34041)),
    ("merfish_osteosarcoma", "Dataset12_MERFISH", (645, 12903), (9234, 19098)),
]
PAIR_NAMES = [row[0] for row in TABLE_1]
N_SP, G_SP, N_SC, G_SC = 6, 4, 8, 5  # fixture shapes: spatial 6 x 4, reference 8 x 5


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------------------------
# local HTTP server


class _FixtureHandler(BaseHTTPRequestHandler):
    server: _FixtureServer

    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        mode = self.server.modes.get(self.path, "ok")
        if body is None or mode == "missing":
            self.send_error(404)
            return
        if mode == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        elif mode == "truncate":  # a shorter file, announced with its (shorter) length
            body = body[: len(body) // 2]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "interrupt":  # announce the full length, send half, drop the connection
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class _FixtureServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _FixtureHandler)
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url + path


@pytest.fixture
def datasets_http_server():
    """A server on 127.0.0.1 serving in-memory fixture files; ``modes[path]`` makes a path misbehave."""
    server = _FixtureServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def datasets_env(tmp_path, monkeypatch):
    """Isolate the cache in ``tmp_path/cache``, unset the archive variable, keep 127.0.0.1 off any proxy."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(_fetch.ENV_DATA_DIR, str(cache))
    monkeypatch.delenv(_fetch.ENV_SPATIALBENCHMARKING_DIR, raising=False)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return cache


# --------------------------------------------------------------------------------------------------------------------
# fixture files in each source format


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _counts(n_cells: int, n_genes: int, seed: int = 0) -> np.ndarray:
    return _rng(seed).poisson(3.0, size=(n_cells, n_genes)).astype(np.float32)


def _genes(n: int, prefix: str = "Gene") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _h5ad_bytes(adata: ad.AnnData, tmp: Path) -> bytes:
    path = tmp / f"fixture_{id(adata)}.h5ad"
    adata.write_h5ad(path)
    return path.read_bytes()


def make_h5ad_files(tmp: Path, n_sp=N_SP, g_sp=G_SP, n_sc=N_SC, g_sc=G_SC) -> dict[str, bytes]:
    spatial = ad.AnnData(
        X=_counts(n_sp, g_sp, 1),
        obs=pd.DataFrame(
            {"x_coord": np.arange(n_sp, dtype=float), "y_coord": np.arange(n_sp) * 2.0},
            index=[str(i) for i in range(n_sp)],
        ),
        var=pd.DataFrame(index=_genes(g_sp)),
    )
    rna = ad.AnnData(X=_counts(n_sc, g_sc, 2), var=pd.DataFrame(index=_genes(g_sc)))
    rna.obs_names = [str(i) for i in range(n_sc)]  # same names as the spatial cells, on purpose
    return {"spatial": _h5ad_bytes(spatial, tmp), "rna": _h5ad_bytes(rna, tmp)}


def _loom_bytes(x: np.ndarray, genes: list[str], cells: list[str], tmp: Path, coords: np.ndarray | None) -> bytes:
    path = tmp / f"fixture_{len(cells)}_{len(genes)}.loom"
    with h5py.File(path, "w") as f:
        f.create_dataset("matrix", data=x.T)  # genes x cells
        f.create_dataset("row_attrs/Gene", data=np.array(genes, dtype="S"))
        f.create_dataset("col_attrs/CellID", data=np.array(cells, dtype="S"))
        f.create_dataset("col_attrs/cluster", data=np.array(["a"] * len(cells), dtype="S"))
        if coords is not None:
            f.create_dataset("col_attrs/X", data=coords[:, 0])
            f.create_dataset("col_attrs/Y", data=coords[:, 1])
    return path.read_bytes()


def make_loom_files(tmp: Path, n_sp=N_SP, g_sp=G_SP, n_sc=N_SC, g_sc=G_SC) -> dict[str, bytes]:
    coords = _rng(3).uniform(size=(n_sp, 2))
    return {
        "spatial": _loom_bytes(_counts(n_sp, g_sp, 1), _genes(g_sp), _genes(n_sp, "sp"), tmp, coords),
        "rna": _loom_bytes(_counts(n_sc, g_sc, 2), _genes(g_sc), _genes(n_sc, "sc"), tmp, None),
    }


def make_dvex_files(n_sp=N_SP, g_sp=G_SP, n_sc=N_SC, g_sc=G_SC) -> dict[str, bytes]:
    genes = _genes(g_sc)
    st = pd.DataFrame(_rng(4).uniform(size=(n_sp, g_sp)).round(4), columns=genes[:g_sp])
    bdtnp = st.to_csv(sep="\t", index=False).encode()
    xyz = _rng(5).normal(size=(n_sp, 3)).round(3)
    geometry = ('"x" "y" "z"\n' + "".join(f"{a} {b} {c}\n" for a, b, c in xyz)).encode()
    dge = pd.DataFrame(_counts(n_sc, g_sc, 6).T.astype(int), index=genes)
    dge_text = dge.to_csv(sep="\t", header=False).encode()
    return {"bdtnp": bdtnp, "geometry": geometry, "dge": gzip.compress(dge_text)}


def dataupload_files(
    n_sp=N_SP,
    g_sp=G_SP,
    n_sc=N_SC,
    g_sc=G_SC,
    *,
    insitu: bool = False,
    third_column: bool = False,
    gene_column_label: bool = True,
    seed: int = 0,
) -> dict[str, str]:
    """The three text files of a DatasetN folder, in the real column layout."""
    genes = _genes(g_sc)
    spatial = pd.DataFrame(_counts(n_sp, g_sp, seed).astype(int), columns=genes[:g_sp])
    locations = pd.DataFrame(
        {"X": _rng(seed).uniform(0, 100, n_sp).round(2), "Y": _rng(seed + 1).uniform(0, 100, n_sp)}
    )
    if third_column:
        locations["Z"] = np.arange(n_sp, dtype=float)
    scrna = pd.DataFrame(_counts(n_sc, g_sc, seed + 2).T.astype(int), index=genes, columns=_genes(n_sc, "cell"))
    scrna_text = scrna.to_csv(sep="\t", index_label="gene" if gene_column_label else False)
    if not gene_column_label:  # header row of cell ids only
        scrna_text = "\t".join(scrna.columns) + "\n" + scrna.to_csv(sep="\t", header=False)
    name = "Insitu_count.txt" if insitu else "Spatial_count.txt"
    return {
        name: spatial.to_csv(sep="\t", index=False),
        "Locations.txt": locations.to_csv(sep="\t", index=False),
        "scRNA_count.txt": scrna_text,
    }


def write_dataupload(root: Path, folders: dict[str, dict[str, str]]) -> Path:
    for folder, texts in folders.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for fname, text in texts.items():
            (root / folder / fname).write_text(text)
    return root


def dataupload_zip(folders: dict[str, dict[str, str]], prefix: str = "DataUpload/") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for folder, texts in folders.items():
            for fname, text in texts.items():
                zf.writestr(f"{prefix}{folder}/{fname}", text)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------------------------
# registry patching: same entries, URLs on the local server, hashes and shapes of the fixture files


def patch_source(
    monkeypatch,
    server: _FixtureServer,
    name: str,
    blobs: dict[str, bytes],
    *,
    source: str | None = None,
    fmt: str | None = None,
    shapes=((N_SP, G_SP), (N_SC, G_SC)),
    folder: str | None = "keep",
    mirror: bool = False,
) -> _registry.Source:
    """Point a registry source at fixture files served by ``server`` (the real fetch code path runs unchanged)."""
    reg = _registry.registry()
    pair = reg.pair(name)
    src = pair.source(source)
    old = {f.role: f for f in src.files}
    remote = []
    for role, data in blobs.items():
        fname = old[role].fname if role in old else f"{name}_{role}.bin"
        urls = [server.add(f"/{name}/{fname}", data)]
        if mirror:
            urls.append(server.add(f"/mirror/{name}/{fname}", data))
        remote.append(_registry.RemoteFile(role=role, fname=fname, urls=tuple(urls), sha256=sha256(data)))
    new_src = dataclasses.replace(
        src,
        format=fmt or src.format,
        files=tuple(remote),
        expected_spatial_shape=shapes[0],
        expected_reference_shape=shapes[1],
        folder=src.folder if folder == "keep" else folder,
    )
    new_pair = dataclasses.replace(pair, sources=tuple(new_src if s is src else s for s in pair.sources))
    new_reg = dataclasses.replace(reg, pairs={**reg.pairs, pair.name: new_pair})
    monkeypatch.setattr(_registry, "registry", lambda: new_reg)
    return new_src


def fixture_blobs(fmt: str, tmp: Path, folder: str | None) -> dict[str, bytes]:
    if fmt == "h5ad":
        return make_h5ad_files(tmp)
    if fmt == "loom":
        return make_loom_files(tmp)
    if fmt == "dvex_bdtnp":
        return make_dvex_files()
    if fmt == "spatialbenchmarking":
        other = dataupload_files(3, 2, 4, 3, seed=9)  # another dataset next to it, as in the real archive
        return {"archive": dataupload_zip({folder or "Dataset99": dataupload_files(), "Dataset98": other})}
    raise AssertionError(fmt)


# --------------------------------------------------------------------------------------------------------------------
# list_datasets and the registry


def test_list_datasets_matches_table_1():
    df = sp.datasets.list_datasets()
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 12
    for column in (
        "name",
        "table_name",
        "tissue",
        "technology",
        "spatial_cells",
        "spatial_genes",
        "reference_cells",
        "reference_genes",
        "spatial_citation",
        "reference_citation",
        "hosts",
        "checksum_pinned",
    ):
        assert column in df.columns
    for (_, row), (name, table_name, sp_shape, ref_shape) in zip(df.iterrows(), TABLE_1, strict=True):
        assert row["name"] == name
        assert row["table_name"] == table_name
        assert (row["spatial_cells"], row["spatial_genes"]) == sp_shape
        assert (row["reference_cells"], row["reference_genes"]) == ref_shape
        assert row["spatial_citation"] and row["reference_citation"] and row["hosts"] and row["tissue"]
        assert callable(getattr(sp.datasets, name)), f"sp.datasets.{name} is missing"
    pinned = set(df.loc[df["checksum_pinned"], "name"])
    assert pinned == {"osmfish", "drosophila_embryo_full"}
    osm = df.set_index("name").loc["osmfish"]
    assert osm["default_reference_shape"] == (5613, 33)  # the pinned files differ from Table 1, and say so
    assert "Google Drive" in df.set_index("name").loc["exseq", "hosts"]


def test_registry_file_ships_with_the_package_and_pins_the_verified_sources():
    text = (files("spalstf.datasets") / "_registry.toml").read_text()
    assert tomllib.loads(text)["schema_version"] == 1
    reg = _registry.registry()
    assert list(reg.pairs) == PAIR_NAMES
    osm = {f.role: f for f in reg.pair("osmfish").source("spalstf").files}
    assert osm["spatial"].sha256 == "087aa55460dfd6458c229d86b2bf218872403850847e0fd30f647e3b5abaf7e6"
    assert osm["rna"].sha256 == "8e8281d58044f43664e0d650cbd3351238f9fb5eef3f962b97a2b319b5b97512"
    assert all("c934a3ba8bf89de0a45b66b90e89faa3dbd29aba" in f.urls[0] for f in osm.values())
    dros = {f.fname: f for f in reg.pair("drosophila_embryo_full").default_source.files}
    assert {name: f.sha256 for name, f in dros.items()} == {
        "bdtnp.txt": "54f92f3e20e392f23b39b87d5b8d19a2158fed761f1ce7a0a5b7fb4ec176d388",
        "geometry.txt": "80b5fa2a651049fbdc1565aaef9ccc27a770020f27884cb30f8a8ef0be0d13b1",
        "dge_raw.txt.gz": "7a0e75fd400bbf3a1da601bdfe5e6e9a63900253ffb7f7834a781724a6ec67b8",
    }
    assert all("21be38ca442d60550580e3dee1fa54dbac9f9893" in f.urls[0] for f in dros.values())
    assert len(dros["dge_raw.txt.gz"].urls) == 2  # a mirror
    for pair in reg.pairs.values():
        for src in pair.sources:
            assert all(len(f.sha256) == 64 for f in src.files)
    if (SHARED_DROSOPHILA / "SHA256SUMS").exists():
        sums = dict(line.split()[::-1] for line in (SHARED_DROSOPHILA / "SHA256SUMS").read_text().splitlines())
        assert all(sums[name] == f.sha256 for name, f in dros.items())


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"sha256": None}, "sha256"),
        ({"urls": []}, "urls"),
        ({"format": "csv"}, "unknown format"),
        ({"expected_spatial_shape": [3, -1]}, "expected_spatial_shape"),
    ],
)
def test_registry_validation_names_the_bad_entry(patch, message):
    data = tomllib.loads((files("spalstf.datasets") / "_registry.toml").read_text())
    src = data["pairs"]["osmfish"]["sources"][0]
    for key, value in patch.items():
        if key in ("sha256", "urls"):
            if value is None:
                del src["files"][0][key]
            else:
                src["files"][0][key] = value
        else:
            src[key] = value
    with pytest.raises(ValueError, match=message) as err:
        _registry.parse_registry(data)
    assert "pairs.osmfish.sources[0]" in str(err.value)


# --------------------------------------------------------------------------------------------------------------------
# the pair loaders, made from the registry


def _count(n: int) -> str:  # how the docstrings write a number of cells or genes
    return f"{n:,}" if n >= 10_000 else str(n)


def _shape_text(shape: tuple[int, int]) -> str:
    return f"{_count(shape[0])} x {_count(shape[1])}"


def test_pair_loaders_are_exactly_the_registry_pairs():
    assert list(_loaders.PAIR_LOADERS) == list(_registry.registry().pairs) == PAIR_NAMES
    for name, loader in _loaders.PAIR_LOADERS.items():
        assert name in sp.datasets.__all__
        assert getattr(sp.datasets, name) is loader
        assert loader.__name__ == loader.__qualname__ == name
        assert loader.__module__ == "spalstf.datasets._loaders"
        assert getattr(_loaders, name) is loader  # found where __module__ and __qualname__ say: pickles by name
        assert pickle.loads(pickle.dumps(loader)) is loader


@pytest.mark.parametrize("name", PAIR_NAMES)
def test_pair_loader_signature_is_that_of_load_without_the_name(name):
    loader = getattr(sp.datasets, name)
    sig, load_sig = inspect.signature(loader), inspect.signature(sp.datasets.load)
    assert list(sig.parameters) == ["source", "archive", "data_dir", "progressbar", "check_shapes"]
    assert list(sig.parameters.values()) == list(load_sig.parameters.values())[1:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in sig.parameters.values())
    assert sig.return_annotation == load_sig.return_annotation
    assert typing.get_type_hints(loader) == {
        k: v for k, v in typing.get_type_hints(sp.datasets.load).items() if k != "name"
    }  # what sphinx-autodoc-typehints reads
    shown = pydoc.render_doc(loader, renderer=pydoc.plaintext)  # what help() prints
    assert f"{name}{sig}" in shown
    with pytest.raises(TypeError):
        loader("spatialbenchmarking")  # keyword-only, as before


@pytest.mark.parametrize("name", PAIR_NAMES)
def test_pair_loader_docstring_is_made_from_its_registry_entry(name):
    pair = _registry.registry().pair(name)
    doc = inspect.getdoc(getattr(sp.datasets, name))
    flat = " ".join(doc.split())  # the long lines are wrapped
    summary = doc.splitlines()[0]
    assert pair.technology in summary and pair.tissue in summary and f"``{pair.table_name}``" in summary
    assert pair.spatial_citation in flat and pair.reference_citation in flat
    assert (
        f"spatial {_shape_text(pair.table_spatial_shape)}, reference {_shape_text(pair.table_reference_shape)}" in flat
    )
    for src in pair.sources:
        shapes = (
            f"spatial {_shape_text(src.expected_spatial_shape)}, reference {_shape_text(src.expected_reference_shape)}"
        )
        assert f'``"{src.name}"``' in flat and shapes in flat
        assert src.folder is None or f"``{src.folder}``" in flat
        assert all(f"``{f.fname}``" in flat for f in src.files)
    assert " ".join(pair.notes.split()) in flat
    default = pair.default_source
    assert f"({default.expected_spatial_shape}, {default.expected_reference_shape})" in doc  # the example's output
    assert f">>> mdata = sp.datasets.{name}(" in doc
    # one copy of the shared sections, the same text in load()
    for shared in (_loaders._PARAMS_DOC, _loaders._RETURNS_DOC, _loaders._RAISES_DOC):
        assert shared in doc and shared in inspect.getdoc(sp.datasets.load)
    for section in ("Parameters", "Returns", "Raises", "Examples"):
        assert f"\n{section}\n{'-' * len(section)}\n" in doc


def test_load_docstring_lists_the_registry_names():
    flat = " ".join(inspect.getdoc(sp.datasets.load).split())
    assert ", ".join(f"``{name}``" for name in PAIR_NAMES) + "." in flat
    assert "{" not in inspect.getdoc(sp.datasets.load).split("Examples")[0]  # no placeholder left


# --------------------------------------------------------------------------------------------------------------------
# the download path of every loader, against the local server


@pytest.mark.parametrize("name", PAIR_NAMES)
def test_every_loader_downloads_through_pooch_and_reuses_the_cache(
    name, datasets_http_server, datasets_env, tmp_path, monkeypatch
):
    server = datasets_http_server
    src = _registry.registry().pair(name).default_source
    # archive-only pairs get a pinned zip of dataset folders (the same parser as the hand-downloaded archive)
    blobs = fixture_blobs(src.format, tmp_path, src.folder)
    patch_source(monkeypatch, server, name, blobs)

    mdata = getattr(sp.datasets, name)()
    assert set(mdata.mod) == {"spatial", "rna"}
    assert mdata["spatial"].shape == (N_SP, G_SP)
    assert mdata["rna"].shape == (N_SC, G_SC)
    assert mdata["spatial"].obsm["spatial"].shape[0] == N_SP
    assert mdata["spatial"].obsm["spatial"].shape[1] in (2, 3)
    assert not set(mdata["spatial"].obs_names) & set(mdata["rna"].obs_names)
    assert mdata.uns["name"] == name
    assert mdata.uns["citation"] and mdata.uns["source"]["urls"][0].startswith(server.url)
    assert len(server.requests) == len(blobs)
    for fname in mdata.uns["source"]["files"]:
        assert (datasets_env / "spalstf" / name / fname).is_file()

    # the second call reads the cache: the server is not asked again
    again = sp.datasets.load(name)
    assert len(server.requests) == len(blobs)
    np.testing.assert_array_equal(_dense(again["rna"].X), _dense(mdata["rna"].X))


def _dense(x) -> np.ndarray:
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


@pytest.mark.parametrize("fmt", ["h5ad", "loom"])
def test_h5ad_and_loom_sources_keep_values_and_coordinates(
    fmt, datasets_http_server, datasets_env, tmp_path, monkeypatch
):
    blobs = fixture_blobs(fmt, tmp_path, None)
    patch_source(monkeypatch, datasets_http_server, "osmfish", blobs, fmt=fmt)
    mdata = sp.datasets.osmfish(progressbar=False)
    spatial_path = datasets_env / "spalstf" / "osmfish" / "dataset1_spatial_33.h5ad"
    if fmt == "h5ad":
        expected = ad.read_h5ad(spatial_path)
        np.testing.assert_array_equal(mdata["spatial"].obsm["spatial"], expected.obs[["x_coord", "y_coord"]].to_numpy())
    else:
        with h5py.File(spatial_path, "r") as f:  # fname kept from the registry, content is loom
            x, y = f["col_attrs/X"][()], f["col_attrs/Y"][()]
            matrix = f["matrix"][()]
        np.testing.assert_allclose(mdata["spatial"].obsm["spatial"], np.c_[x, y])
        np.testing.assert_array_equal(_dense(mdata["spatial"].X), matrix.T)
        assert list(mdata["spatial"].var_names) == _genes(G_SP)
    assert mdata["spatial"].X.sum() > 0


def test_dvex_bdtnp_parser_reads_the_raw_layout(tmp_path):
    blobs = make_dvex_files()
    paths = {}
    for role, fname in (("bdtnp", "bdtnp.txt"), ("geometry", "geometry.txt"), ("dge", "dge_raw.txt.gz")):
        paths[role] = tmp_path / fname
        paths[role].write_bytes(blobs[role])
    spatial, rna = _parsers.read_dvex_bdtnp(paths)
    assert spatial.shape == (N_SP, G_SP) and rna.shape == (N_SC, G_SC)
    assert spatial.obsm["spatial"].shape == (N_SP, 3)
    assert spatial.uns["spatial_coordinate_columns"] == ["x", "y", "z"]
    dge = pd.read_csv(io.BytesIO(gzip.decompress(blobs["dge"])), sep="\t", header=None, index_col=0)
    np.testing.assert_array_equal(rna.X.toarray(), dge.to_numpy().T)
    assert list(rna.var_names) == list(dge.index)


@pytest.mark.skipif(not (SHARED_DROSOPHILA / "dge_raw.txt.gz").exists(), reason="raw Drosophila files not present")
def test_real_drosophila_files_with_the_pinned_hashes(datasets_http_server, datasets_env, monkeypatch):
    """The registry entry as shipped (only the host rewritten) against the real raw files."""
    reg = _registry.registry()
    pair = reg.pair("drosophila_embryo_full")
    src = pair.default_source
    remote = []
    for f in src.files:
        url = datasets_http_server.add(f"/ucbmcb288/{f.fname}", (SHARED_DROSOPHILA / f.fname).read_bytes())
        remote.append(dataclasses.replace(f, urls=(url,)))
    new_pair = dataclasses.replace(pair, sources=(dataclasses.replace(src, files=tuple(remote)), *pair.sources[1:]))
    monkeypatch.setattr(
        _registry, "registry", lambda: dataclasses.replace(reg, pairs={**reg.pairs, pair.name: new_pair})
    )

    mdata = sp.datasets.drosophila_embryo_full(progressbar=False)
    assert mdata["spatial"].shape == (3039, 84) and mdata["rna"].shape == (1297, 8924)
    bundled = sp.datasets.drosophila_embryo()
    np.testing.assert_allclose(mdata["spatial"].X, bundled["spatial"].X)
    np.testing.assert_allclose(mdata["spatial"].obsm["spatial"], bundled["spatial"].obsm["spatial"])
    genes = list(bundled["rna"].var_names[:50])
    np.testing.assert_array_equal(mdata["rna"][:, genes].X.toarray(), bundled["rna"][:, genes].X.toarray())


@pytest.mark.skipif(
    not all((SHARED_OSMFISH / f).is_file() for f in ("dataset1_spatial_33.h5ad", "dataset1_seq_33.h5ad")),
    reason=f"real osmFISH files not present in {SHARED_OSMFISH}",
)
@pytest.mark.filterwarnings("ignore::anndata.OldFormatWarning")  # the files predate anndata's encoding metadata
def test_real_osmfish_files_with_the_pinned_hashes(datasets_http_server, datasets_env, monkeypatch):
    """The registry entry as shipped (only the host rewritten) against the real files: hash, shapes, coordinates."""
    server = datasets_http_server
    reg = _registry.registry()
    pair = reg.pair("osmfish")
    src = pair.default_source
    assert src.name == "spalstf" and src.format == "h5ad"
    files_by_role = {f.role: f for f in src.files}
    remote = []
    for f in src.files:
        data = (SHARED_OSMFISH / f.fname).read_bytes()
        assert sha256(data) == f.sha256, f"{SHARED_OSMFISH / f.fname} is not the pinned file"
        remote.append(dataclasses.replace(f, urls=(server.add(f"/SpaLSTF/{f.fname}", data),)))
    new_pair = dataclasses.replace(pair, sources=(dataclasses.replace(src, files=tuple(remote)), *pair.sources[1:]))
    monkeypatch.setattr(
        _registry, "registry", lambda: dataclasses.replace(reg, pairs={**reg.pairs, pair.name: new_pair})
    )
    cached = datasets_env / "spalstf" / "osmfish"

    # one flipped byte on the wire fails the pinned sha256 and leaves nothing in the cache
    bad = files_by_role["spatial"]
    server.modes[f"/SpaLSTF/{bad.fname}"] = "corrupt"
    with pytest.raises(sp.datasets.DatasetChecksumError, match=f"expected: {bad.sha256}"):
        sp.datasets.osmfish(progressbar=False)
    assert not (cached / bad.fname).exists()
    server.modes.clear()

    mdata = sp.datasets.osmfish(progressbar=False)
    for f in src.files:
        assert sha256((cached / f.fname).read_bytes()) == f.sha256
    assert mdata.uns["source"]["sha256"] == [f.sha256 for f in src.files]
    spatial, rna = mdata["spatial"], mdata["rna"]
    assert spatial.shape == (3405, 33) and rna.shape == (5613, 33)

    # against the files read directly: coordinates from obs, counts, cells and genes unchanged
    raw_spatial = ad.read_h5ad(SHARED_OSMFISH / files_by_role["spatial"].fname)
    raw_rna = ad.read_h5ad(SHARED_OSMFISH / files_by_role["rna"].fname)
    assert "spatial" not in raw_spatial.obsm  # the file keeps its coordinates in obs only
    np.testing.assert_array_equal(spatial.obsm["spatial"], raw_spatial.obs[["x_coord", "y_coord"]].to_numpy(np.float64))
    assert spatial.uns["spatial_coordinate_columns"] == ["x_coord", "y_coord"]
    for loaded, raw in ((spatial, raw_spatial), (rna, raw_rna)):
        assert loaded.X.dtype == raw.X.dtype
        np.testing.assert_array_equal(_dense(loaded.X), _dense(raw.X))
        assert list(loaded.obs_names) == list(raw.obs_names) and list(loaded.var_names) == list(raw.var_names)
    counts = _dense(spatial.X)
    assert counts.min() >= 0 and np.array_equal(counts, np.round(counts))  # molecule counts

    # load() by name or by Table 1 name reads the verified cache: no new request
    n = len(server.requests)
    for name in ("osmfish", "Dataset1_osmFISH"):
        again = sp.datasets.load(name, progressbar=False)
        np.testing.assert_array_equal(_dense(again["rna"].X), _dense(rna.X))
        np.testing.assert_array_equal(again["spatial"].obsm["spatial"], spatial.obsm["spatial"])
    assert len(server.requests) == n


def test_bundled_drosophila_embryo_is_unchanged():
    mdata = sp.datasets.drosophila_embryo()
    assert mdata["spatial"].shape == (3039, 84) and mdata["rna"].shape == (1297, 2000)


# --------------------------------------------------------------------------------------------------------------------
# failed downloads


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


@pytest.mark.parametrize("mode", ["corrupt", "truncate"])
def test_hash_mismatch_raises_clearly_and_leaves_nothing_to_trust(
    mode, datasets_http_server, datasets_env, tmp_path, monkeypatch
):
    server = datasets_http_server
    blobs = make_h5ad_files(tmp_path)
    src = patch_source(monkeypatch, server, "osmfish", blobs)
    bad = next(f for f in src.files if f.role == "spatial")
    server.modes[f"/osmfish/{bad.fname}"] = mode
    served = blobs["spatial"]
    served = bytes([served[0] ^ 0xFF]) + served[1:] if mode == "corrupt" else served[: len(served) // 2]

    with pytest.raises(sp.datasets.DatasetChecksumError) as err:
        sp.datasets.osmfish(progressbar=False)
    message = str(err.value)
    assert isinstance(err.value, ValueError)
    assert bad.fname in message
    assert f"expected: {bad.sha256}" in message
    assert f"found:    {sha256(served)}" in message
    assert "retry" in message
    assert not (datasets_env / "spalstf" / "osmfish" / bad.fname).exists()
    assert all(p.name != bad.fname and not p.name.startswith("tmp") for p in _cache_files(datasets_env))

    # once the host serves the right file, a new call succeeds
    server.modes.clear()
    mdata = sp.datasets.osmfish(progressbar=False)
    assert mdata["spatial"].shape == (N_SP, G_SP)


def test_interrupted_download_can_be_retried(datasets_http_server, datasets_env, tmp_path, monkeypatch):
    server = datasets_http_server
    src = patch_source(monkeypatch, server, "drosophila_embryo_full", make_dvex_files())
    dge = next(f for f in src.files if f.role == "dge")
    server.modes[f"/drosophila_embryo_full/{dge.fname}"] = "interrupt"

    with pytest.raises(sp.datasets.DatasetDownloadError) as err:
        sp.datasets.drosophila_embryo_full(progressbar=False)
    assert dge.fname in str(err.value) and "retry" in str(err.value)
    assert isinstance(err.value, ConnectionError)
    assert not (datasets_env / "spalstf" / "drosophila_embryo_full" / dge.fname).exists()
    assert not [p for p in _cache_files(datasets_env) if p.name.startswith("tmp")]

    server.modes.clear()
    mdata = sp.datasets.drosophila_embryo_full(progressbar=False)
    assert mdata["rna"].shape == (N_SC, G_SC)


def test_corrupted_cache_file_is_downloaded_again(datasets_http_server, datasets_env, tmp_path, monkeypatch):
    server = datasets_http_server
    patch_source(monkeypatch, server, "osmfish", make_h5ad_files(tmp_path))
    sp.datasets.osmfish(progressbar=False)
    cached = datasets_env / "spalstf" / "osmfish" / "dataset1_seq_33.h5ad"
    cached.write_bytes(cached.read_bytes()[:100])  # e.g. a disk error
    n = len(server.requests)
    mdata = sp.datasets.osmfish(progressbar=False)
    assert len(server.requests) == n + 1
    assert mdata["rna"].shape == (N_SC, G_SC)


def test_mirror_is_used_when_the_primary_url_fails(datasets_http_server, datasets_env, tmp_path, monkeypatch):
    server = datasets_http_server
    src = patch_source(monkeypatch, server, "drosophila_embryo_full", make_dvex_files(), mirror=True)
    for f in src.files:
        server.modes[f"/drosophila_embryo_full/{f.fname}"] = "missing"
    mdata = sp.datasets.drosophila_embryo_full(progressbar=False)
    assert mdata["spatial"].shape == (N_SP, G_SP)
    assert sum(r.startswith("/mirror/") for r in server.requests) == 3


def test_unreachable_host_raises_download_error(datasets_env, monkeypatch):
    reg = _registry.registry()
    pair = reg.pair("osmfish")
    dead = "http://127.0.0.1:9/nothing"  # discard port: connection refused
    src = dataclasses.replace(
        pair.default_source, files=tuple(dataclasses.replace(f, urls=(dead,)) for f in pair.default_source.files)
    )
    new_pair = dataclasses.replace(pair, sources=(src, *pair.sources[1:]))
    monkeypatch.setattr(
        _registry, "registry", lambda: dataclasses.replace(reg, pairs={**reg.pairs, "osmfish": new_pair})
    )
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with pytest.raises(sp.datasets.DatasetDownloadError, match="dataset1_spatial_33.h5ad"):
        sp.datasets.osmfish(progressbar=False)


def test_shape_mismatch_raises_with_expected_and_found(datasets_http_server, datasets_env, tmp_path, monkeypatch):
    patch_source(
        monkeypatch, datasets_http_server, "osmfish", make_h5ad_files(tmp_path), shapes=((3405, 33), (5613, 33))
    )
    with pytest.raises(ValueError, match="unexpected shapes") as err:
        sp.datasets.osmfish(progressbar=False)
    message = str(err.value)
    assert "expected: spatial 3405 x 33, reference 5613 x 33" in message
    assert f"found:    spatial {N_SP} x {G_SP}, reference {N_SC} x {G_SC}" in message
    mdata = sp.datasets.osmfish(progressbar=False, check_shapes=False)
    assert mdata["spatial"].shape == (N_SP, G_SP)


# --------------------------------------------------------------------------------------------------------------------
# SpatialBenchmarking folders


@pytest.mark.parametrize("insitu", [False, True])
@pytest.mark.parametrize("third_column", [False, True])
@pytest.mark.parametrize("gene_column_label", [True, False])
def test_spatialbenchmarking_folder_parser(tmp_path, insitu, third_column, gene_column_label):
    texts = dataupload_files(insitu=insitu, third_column=third_column, gene_column_label=gene_column_label)
    root = write_dataupload(tmp_path / "DataUpload", {"Dataset17": texts})
    folders = _parsers.find_dataupload_folders(root)
    assert [f.name for f in folders] == ["Dataset17"]
    assert folders[0].spatial_shape() == (N_SP, G_SP)
    spatial, rna = _parsers.read_spatialbenchmarking(folders[0])

    expected_sp = pd.read_csv(
        io.StringIO(next(t for n, t in texts.items() if n.endswith("_count.txt") and "scRNA" not in n)), sep="\t"
    )
    np.testing.assert_array_equal(spatial.X, expected_sp.to_numpy(np.float32))
    assert list(spatial.var_names) == list(expected_sp.columns)
    locations = pd.read_csv(io.StringIO(texts["Locations.txt"]), sep="\t")
    np.testing.assert_allclose(spatial.obsm["spatial"], locations.to_numpy())
    assert spatial.obsm["spatial"].shape == (N_SP, 3 if third_column else 2)
    assert spatial.uns["spatial_coordinate_columns"] == list(locations.columns)
    scrna = pd.read_csv(io.StringIO(texts["scRNA_count.txt"]), sep="\t", index_col=0)
    np.testing.assert_array_equal(rna.X.toarray(), scrna.to_numpy().T)
    assert list(rna.obs_names) == _genes(N_SC, "cell")
    assert list(rna.var_names) == _genes(G_SC)


def test_locations_with_a_label_column_go_to_obs(tmp_path):
    texts = dataupload_files()
    loc = pd.read_csv(io.StringIO(texts["Locations.txt"]), sep="\t")
    loc["cell_type"] = ["a", "b"] * (N_SP // 2)
    texts["Locations.txt"] = loc.to_csv(sep="\t", index=False)
    folder = _parsers.find_dataupload_folders(write_dataupload(tmp_path, {"Dataset1": texts}))[0]
    spatial, _ = _parsers.read_spatialbenchmarking(folder)
    assert spatial.obsm["spatial"].shape == (N_SP, 2)
    assert list(spatial.obs["cell_type"]) == list(loc["cell_type"])


def test_local_archive_folder_zip_and_environment_variable(tmp_path, datasets_env, monkeypatch):
    folders = {"Dataset17": dataupload_files(), "Dataset4": dataupload_files(3, 2, 4, 3, seed=5)}
    root = write_dataupload(tmp_path / "DataUpload", folders)
    zip_path = tmp_path / "zips" / "DataUpload-20240101T000000Z-001.zip"
    zip_path.parent.mkdir()
    zip_path.write_bytes(dataupload_zip(folders))
    patch_source(monkeypatch, _NoServer(), "exseq", {}, shapes=((N_SP, G_SP), (N_SC, G_SC)))

    from_dir = sp.datasets.exseq(archive=root)
    from_dataset_folder = sp.datasets.exseq(archive=root / "Dataset17", data_dir=tmp_path / "other_cache")
    from_zip = sp.datasets.exseq(archive=zip_path, data_dir=tmp_path / "zip_cache")
    from_zip_folder = sp.datasets.load("Dataset11_ExSeq", archive=zip_path.parent, data_dir=tmp_path / "zf_cache")
    monkeypatch.setenv(_fetch.ENV_SPATIALBENCHMARKING_DIR, str(root))
    from_env = sp.datasets.exseq(data_dir=tmp_path / "env_cache")
    for mdata in (from_dataset_folder, from_zip, from_zip_folder, from_env):
        np.testing.assert_array_equal(mdata["spatial"].X, from_dir["spatial"].X)
        np.testing.assert_array_equal(mdata["rna"].X.toarray(), from_dir["rna"].X.toarray())
    assert from_dir.uns["source"]["archive"] == str(root)
    assert from_zip.uns["source"]["folder"].endswith("DataUpload/Dataset17")


def test_local_archive_parsed_copy_is_reused_until_the_files_change(tmp_path, datasets_env, monkeypatch):
    root = write_dataupload(tmp_path / "DataUpload", {"Dataset17": dataupload_files()})
    patch_source(monkeypatch, _NoServer(), "exseq", {})
    first = sp.datasets.exseq(archive=root)
    assert (datasets_env / "spalstf" / "exseq" / "exseq.spatialbenchmarking.h5mu").is_file()

    calls = []
    real = _loaders.read_spatialbenchmarking
    monkeypatch.setattr(_loaders, "read_spatialbenchmarking", lambda f: calls.append(f) or real(f))
    second = sp.datasets.exseq(archive=root)
    assert calls == []
    np.testing.assert_array_equal(second["spatial"].X, first["spatial"].X)

    changed = dataupload_files(seed=3)
    (root / "Dataset17" / "Spatial_count.txt").write_text(changed["Spatial_count.txt"] + "\n")
    third = sp.datasets.exseq(archive=root)
    assert len(calls) == 1
    assert not np.array_equal(third["spatial"].X, first["spatial"].X)


def test_pair_without_known_folder_is_found_by_its_shapes(tmp_path, datasets_env, monkeypatch):
    folders = {"Dataset2": dataupload_files(3, 2, 4, 3, seed=5), "Dataset23": dataupload_files()}
    zip_path = tmp_path / "DataUpload.zip"
    zip_path.write_bytes(dataupload_zip(folders))
    patch_source(monkeypatch, _NoServer(), "merfish_mop", {})
    mdata = sp.datasets.merfish_mop(archive=zip_path)
    assert mdata["spatial"].shape == (N_SP, G_SP)
    assert mdata.uns["source"]["folder"].endswith("Dataset23")


class _NoServer:
    """Stand-in for the server when a source gets no files (a local-archive source)."""

    def add(self, path, data):  # pragma: no cover - never called with files
        raise AssertionError(path)


def test_missing_archive_says_what_to_download_from_where_and_where_to_put_it(datasets_env, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        sp.datasets.exseq()
    message = str(err.value)
    assert "https://drive.google.com/drive/folders/1pHmE9cg_tMcouV1LFJFtbyBJNp7oQo9J" in message
    assert "DataUpload" in message and "Dataset17" in message
    assert "Spatial_count.txt" in message and "scRNA_count.txt" in message
    assert 'sp.datasets.exseq(archive="' in message and _fetch.ENV_SPATIALBENCHMARKING_DIR in message

    # an archive without the pair's folder lists what it holds
    root = write_dataupload(tmp_path / "DataUpload", {"Dataset4": dataupload_files()})
    with pytest.raises(FileNotFoundError, match="Dataset17") as err:
        sp.datasets.exseq(archive=root)
    assert "Dataset4" in str(err.value) and str(root) in str(err.value)
    with pytest.raises(FileNotFoundError, match="11426 x 80"):
        sp.datasets.baristaseq(archive=root)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sp.datasets.exseq(archive=tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="No dataset folder"):
        sp.datasets.exseq(archive=empty)


def test_archive_shape_mismatch_against_table_1(tmp_path, datasets_env):
    root = write_dataupload(tmp_path / "DataUpload", {"Dataset17": dataupload_files()})
    with pytest.raises(ValueError, match="expected: spatial 1154 x 42, reference 14249 x 34041"):
        sp.datasets.exseq(archive=root)


# --------------------------------------------------------------------------------------------------------------------
# bad input, cache location


def test_bad_input_gets_clear_errors(tmp_path, datasets_env):
    with pytest.raises(KeyError, match="Valid names: osmfish, seqfish_plus"):
        sp.datasets.load("osmfishh")
    with pytest.raises(ValueError, match="its sources are: 'spalstf', 'spatialbenchmarking'"):
        sp.datasets.osmfish(source="zenodo")
    with pytest.raises(ValueError, match="source='spatialbenchmarking'"):
        sp.datasets.osmfish(archive=tmp_path)
    with pytest.raises(TypeError):
        sp.datasets.load(3)
    assert _registry.registry().pair("Dataset1_osmFISH").name == "osmfish"


def test_cache_directory_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(_fetch.ENV_DATA_DIR, raising=False)
    previous = sc.settings.datasetdir
    sc.settings.datasetdir = tmp_path / "scanpy_data"
    try:
        assert _fetch.cache_dir() == (tmp_path / "scanpy_data" / "spalstf").absolute()
    finally:
        sc.settings.datasetdir = previous
    monkeypatch.setenv(_fetch.ENV_DATA_DIR, str(tmp_path / "env"))
    assert _fetch.cache_dir() == tmp_path / "env" / "spalstf"
    assert _fetch.cache_dir(tmp_path / "arg") == tmp_path / "arg" / "spalstf"


def test_data_dir_argument_overrides_environment(datasets_http_server, datasets_env, tmp_path, monkeypatch):
    patch_source(monkeypatch, datasets_http_server, "osmfish", make_h5ad_files(tmp_path))
    sp.datasets.osmfish(data_dir=tmp_path / "mine", progressbar=False)
    assert (tmp_path / "mine" / "spalstf" / "osmfish" / "dataset1_seq_33.h5ad").is_file()
    assert not datasets_env.exists()
