"""Intersphinx inventories written at build time, so the docs build without network access.

Sphinx's intersphinx normally downloads each project's ``objects.inv``. Our CI and the development machines have no
access to documentation hosts, so the inventories of the objects our docstrings refer to are listed here and written
into the build directory by ``conf.py``. Each entry maps a Python object to its page on the project's documentation
site (``uri`` relative to the project's base URL in :data:`PROJECTS`). Add an entry when a docstring refers to an
object of another project that is not yet listed; unresolved references render as plain text.
"""

from __future__ import annotations

import zlib
from pathlib import Path

#: project -> (base URL, version label, {object name: (role, uri relative to the base URL)}).
PROJECTS: dict[str, tuple[str, str, dict[str, tuple[str, str]]]] = {
    "python": (
        "https://docs.python.org/3/",
        "3",
        {
            "str": ("class", "library/stdtypes.html#str"),
            "int": ("class", "library/functions.html#int"),
            "float": ("class", "library/functions.html#float"),
            "bool": ("class", "library/functions.html#bool"),
            "list": ("class", "library/stdtypes.html#list"),
            "dict": ("class", "library/stdtypes.html#dict"),
            "tuple": ("class", "library/stdtypes.html#tuple"),
            "None": ("data", "library/constants.html#None"),
            "KeyError": ("exception", "library/exceptions.html#KeyError"),
            "ValueError": ("exception", "library/exceptions.html#ValueError"),
            "RuntimeError": ("exception", "library/exceptions.html#RuntimeError"),
            "OSError": ("exception", "library/exceptions.html#OSError"),
            "pathlib.Path": ("class", "library/pathlib.html#pathlib.Path"),
            "os.PathLike": ("class", "library/os.html#os.PathLike"),
            "gc.freeze": ("function", "library/gc.html#gc.freeze"),
            "collections.abc.Sequence": ("class", "library/collections.abc.html#collections.abc.Sequence"),
            "collections.abc.Mapping": ("class", "library/collections.abc.html#collections.abc.Mapping"),
            "collections.abc.Callable": ("class", "library/collections.abc.html#collections.abc.Callable"),
            "typing.Any": ("data", "library/typing.html#typing.Any"),
            "typing.Literal": ("data", "library/typing.html#typing.Literal"),
        },
    ),
    "numpy": (
        "https://numpy.org/doc/stable/",
        "stable",
        {
            "numpy.ndarray": ("class", "reference/generated/numpy.ndarray.html#numpy.ndarray"),
            "numpy.random.Generator": ("class", "reference/random/generator.html#numpy.random.Generator"),
            "numpy.nanmedian": ("function", "reference/generated/numpy.nanmedian.html#numpy.nanmedian"),
        },
    ),
    "pandas": (
        "https://pandas.pydata.org/docs/",
        "stable",
        {
            "pandas.DataFrame": ("class", "reference/api/pandas.DataFrame.html#pandas.DataFrame"),
            "pandas.Series": ("class", "reference/api/pandas.Series.html#pandas.Series"),
            "pandas.Index": ("class", "reference/api/pandas.Index.html#pandas.Index"),
        },
    ),
    "scipy": (
        "https://docs.scipy.org/doc/scipy/",
        "stable",
        {
            "scipy.sparse.csr_matrix": (
                "class",
                "reference/generated/scipy.sparse.csr_matrix.html#scipy.sparse.csr_matrix",
            ),
            "scipy.sparse.spmatrix": ("class", "reference/generated/scipy.sparse.spmatrix.html#scipy.sparse.spmatrix"),
            "scipy.stats.spearmanr": (
                "function",
                "reference/generated/scipy.stats.spearmanr.html#scipy.stats.spearmanr",
            ),
            "scipy.stats.zscore": ("function", "reference/generated/scipy.stats.zscore.html#scipy.stats.zscore"),
        },
    ),
    "anndata": (
        "https://anndata.readthedocs.io/en/stable/",
        "stable",
        {
            "anndata.AnnData": ("class", "generated/anndata.AnnData.html#anndata.AnnData"),
            "anndata.AnnData.write": ("method", "generated/anndata.AnnData.write.html#anndata.AnnData.write"),
        },
    ),
    "mudata": (
        "https://mudata.readthedocs.io/en/latest/",
        "latest",
        {
            "mudata.MuData": ("class", "api/generated/mudata.MuData.html#mudata.MuData"),
        },
    ),
    "scanpy": (
        "https://scanpy.readthedocs.io/en/stable/",
        "stable",
        {
            "scanpy.pp.neighbors": ("function", "api/generated/scanpy.pp.neighbors.html#scanpy.pp.neighbors"),
            "scanpy.pp.pca": ("function", "api/generated/scanpy.pp.pca.html#scanpy.pp.pca"),
            "scanpy.tl.leiden": ("function", "api/generated/scanpy.tl.leiden.html#scanpy.tl.leiden"),
            "scanpy.tl.umap": ("function", "api/generated/scanpy.tl.umap.html#scanpy.tl.umap"),
        },
    ),
    "squidpy": (
        "https://squidpy.readthedocs.io/en/stable/",
        "stable",
        {
            "squidpy.gr.spatial_neighbors": (
                "function",
                "api/squidpy.gr.spatial_neighbors.html#squidpy.gr.spatial_neighbors",
            ),
            "squidpy.gr.spatial_autocorr": (
                "function",
                "api/squidpy.gr.spatial_autocorr.html#squidpy.gr.spatial_autocorr",
            ),
        },
    ),
    "scvi": (
        "https://docs.scvi-tools.org/en/stable/",
        "stable",
        {
            "scvi.model.base.BaseModelClass": (
                "class",
                "api/reference/scvi.model.base.BaseModelClass.html#scvi.model.base.BaseModelClass",
            ),
            "scvi.dataloaders.DataSplitter": (
                "class",
                "api/reference/scvi.dataloaders.DataSplitter.html#scvi.dataloaders.DataSplitter",
            ),
            "scvi.train.TrainRunner": ("class", "api/reference/scvi.train.TrainRunner.html#scvi.train.TrainRunner"),
            "scvi.train.Trainer": ("class", "api/reference/scvi.train.Trainer.html#scvi.train.Trainer"),
            "scvi.data.AnnDataManager": (
                "class",
                "api/reference/scvi.data.AnnDataManager.html#scvi.data.AnnDataManager",
            ),
            "scvi.external.GIMVI": ("class", "api/reference/scvi.external.GIMVI.html#scvi.external.GIMVI"),
        },
    ),
    "matplotlib": (
        "https://matplotlib.org/stable/",
        "stable",
        {
            "matplotlib.axes.Axes": ("class", "api/_as_gen/matplotlib.axes.Axes.html#matplotlib.axes.Axes"),
            "matplotlib.figure.Figure": ("class", "api/_as_gen/matplotlib.figure.Figure.html#matplotlib.figure.Figure"),
            "matplotlib.colors.Colormap": (
                "class",
                "api/_as_gen/matplotlib.colors.Colormap.html#matplotlib.colors.Colormap",
            ),
            "matplotlib.pyplot.show": ("function", "api/_as_gen/matplotlib.pyplot.show.html#matplotlib.pyplot.show"),
        },
    ),
    "torch": (
        "https://docs.pytorch.org/docs/stable/",
        "stable",
        {
            "torch.Tensor": ("class", "tensors.html#torch.Tensor"),
            "torch.nn.Module": ("class", "generated/torch.nn.Module.html#torch.nn.Module"),
            "torch.save": ("function", "generated/torch.save.html#torch.save"),
        },
    ),
}

#: Names under which type hints reach Sphinx (the defining module) -> the public name documented by the project.
ALIASES: dict[str, str] = {
    "anndata._core.anndata.AnnData": "anndata.AnnData",
    "mudata._core.mudata.MuData": "mudata.MuData",
    "pandas.core.frame.DataFrame": "pandas.DataFrame",
    "pandas.core.series.Series": "pandas.Series",
    "matplotlib.axes._axes.Axes": "matplotlib.axes.Axes",
    "scvi.model.base._base_model.BaseModelClass": "scvi.model.base.BaseModelClass",
}


def write_inventory(path: Path, project: str, version: str, objects: dict[str, tuple[str, str]]) -> None:
    """Write ``objects`` as a Sphinx version-2 inventory (``objects.inv``) at ``path``."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    lines = "".join(f"{name} py:{role} 1 {uri} -\n" for name, (role, uri) in sorted(objects.items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + zlib.compress(lines.encode()))


def intersphinx_mapping(directory: Path) -> dict[str, tuple[str, str]]:
    """Write every project's inventory into ``directory`` and return Sphinx's ``intersphinx_mapping``."""
    mapping = {}
    for name, (base_url, version, objects) in PROJECTS.items():
        objects = dict(objects)
        objects.update({alias: objects[public] for alias, public in ALIASES.items() if public in objects})
        path = directory / f"{name}.inv"
        write_inventory(path, name, version, objects)
        mapping[name] = (base_url, str(path))
    return mapping
