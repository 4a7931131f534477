"""What a benchmark script sets up before it measures: the pair it reads, and the threads of the process."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import mudata as md
import torch

logger = logging.getLogger(__name__)


def load_pair(
    name: str,
    *,
    local: str | os.PathLike[str] | None = None,
    shared_data: str | os.PathLike[str] | None = None,
) -> tuple[str, md.MuData]:
    """Load a benchmark pair: the bundled Drosophila pair, a pair of :mod:`spalstf.datasets`, or a local file.

    A pair whose pinned files all lie in ``shared_data`` is read from there through the real loader: the files are
    linked into a temporary cache, where :func:`spalstf.datasets.load` checks their sha256, so nothing is
    downloaded. Otherwise the pair is loaded (and downloaded once) as :func:`spalstf.datasets.load` does.

    Parameters
    ----------
    name
        ``"drosophila_embryo"`` (the bundled pair, no network) or a name :func:`spalstf.datasets.load` takes.
    local
        A ``.h5mu`` file with modalities ``"spatial"`` and ``"rna"``; when given, ``name`` is not used and the file's
        stem names the pair.
    shared_data
        A folder of copies of pinned files, ``<shared_data>/<pair>/<file>`` (e.g. the project's ``../shared/data``).

    Returns
    -------
    The pair's name (as the registry spells it, or the file's stem) and the MuData with modalities ``"spatial"``
    and ``"rna"``.

    Examples
    --------
    >>> import spalstf as sp
    >>> name, mdata = sp.benchmark.load_pair("drosophila_embryo")
    >>> name, sorted(mdata.mod)
    ('drosophila_embryo', ['rna', 'spatial'])
    """
    from .. import datasets
    from ..datasets import _registry

    if local is not None:
        return Path(local).stem, md.read_h5mu(local)
    if name == "drosophila_embryo":
        return name, datasets.drosophila_embryo()
    pair = _registry.registry().pair(name)
    if shared_data is not None:
        shared = Path(shared_data)
        source = pair.source(None)
        copies = {f.fname: shared / pair.name / f.fname for f in source.files}
        if copies and all(p.exists() for p in copies.values()):
            logger.info("reading %s from %s (sha256 checked by the loader)", pair.name, shared / pair.name)
            # the loader's cache layout, removed after
            with tempfile.TemporaryDirectory(prefix="spalstf-bench-") as tmp:
                cache = Path(tmp)
                (cache / "spalstf" / pair.name).mkdir(parents=True)
                for fname, path in copies.items():
                    (cache / "spalstf" / pair.name / fname).symlink_to(path.resolve())
                return pair.name, datasets.load(pair.name, data_dir=cache, progressbar=False)
    return pair.name, datasets.load(pair.name)


def limit_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count and the BLAS and OpenMP thread pools of this process.

    For timings that compare: on a shared machine, more threads than free cores make every torch and BLAS call many
    times slower. ``None`` leaves the defaults.

    Parameters
    ----------
    threads
        Threads of torch and of every thread pool ``threadpoolctl`` finds (``None``: leave them as they are).

    Examples
    --------
    >>> import spalstf as sp
    >>> sp.benchmark.limit_threads(1)  # doctest: +SKIP
    """
    if threads is not None:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(threads)
