"""CPU threads of spalstf's own calls: capped while they run (scanpy's ``n_jobs``), restored afterwards.

torch starts one intra-op thread per core. On a machine where other jobs use the cores (a shared node, a busy
laptop) those threads wait on each other: on a 2-core machine loaded by other jobs, one ``spalstf_impute`` of the
bundled Drosophila pair took 198 s with torch's 2 threads and 31 s with one (``benchmarks/threads.py``). So training
and imputation run with ``n_jobs`` threads, by default :attr:`scanpy.settings.n_jobs` (1 unless the user set it; -1:
every core), for torch and for the BLAS/OpenMP pools; the caller's settings are restored when the call returns.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])

#: Set while a call of spalstf holds the thread count, so that inner calls keep it.
_ACTIVE: list[int] = []


def resolve_n_jobs(n_jobs: int | None) -> int:
    """The number of threads for ``n_jobs``: ``None`` -> ``scanpy.settings.n_jobs``; -1 -> every core.

    Raises
    ------
    ValueError
        ``n_jobs`` is not ``None``, -1 or an integer >= 1.
    """
    if n_jobs is None:
        import scanpy as sc

        n_jobs = sc.settings.n_jobs
    if isinstance(n_jobs, bool | np.bool_) or not isinstance(n_jobs, int | np.integer) or (n_jobs < 1 and n_jobs != -1):
        raise ValueError(f"n_jobs must be None, -1 (every core) or an integer >= 1, got {n_jobs!r}.")
    return (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)


@contextmanager
def cpu_threads(n_jobs: int | None = None) -> Iterator[int]:
    """Run a block with ``n_jobs`` threads (:func:`resolve_n_jobs`) in torch and the BLAS/OpenMP pools.

    Inside another such block, ``n_jobs=None`` keeps the outer count. torch's thread count and the pools' limits are
    restored on exit.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with cpu_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if n_jobs is None and _ACTIVE:
        yield _ACTIVE[-1]
        return
    n = resolve_n_jobs(n_jobs)
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    _ACTIVE.append(n)
    try:
        with threadpool_limits(n):
            torch.set_num_threads(n)
            yield n
    finally:
        _ACTIVE.pop()
        torch.set_num_threads(before)


def with_cpu_threads(method: F) -> F:
    """Run ``method`` inside :func:`cpu_threads` (``scanpy.settings.n_jobs``, or the count of an outer call)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with cpu_threads():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
