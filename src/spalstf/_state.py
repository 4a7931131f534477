"""Global state that spalstf sets for a block and restores: the random generators, torch's thread count."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def global_seed(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global generators for a block, then restore their previous states.

    For code that draws from the global generators (Tangram's initial mapping, scvi-tools' ``seed_everything``,
    SpaLSTF's training), so that a seeded call leaves the caller's random state as it found it. torch's generators
    are those of the CPU and of every visible CUDA device (``torch.manual_seed`` seeds both).

    Examples
    --------
    >>> import numpy as np
    >>> np.random.seed(0)
    >>> first = np.random.rand()
    >>> np.random.seed(0)
    >>> with global_seed(3):
    ...     inside = np.random.rand()
    >>> np.random.rand() == first  # the caller's sequence goes on as if nothing had drawn
    True
    """
    states = (random.getstate(), np.random.get_state())
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):  # restores the CPU and the CUDA generators
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])


@contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count after a block whose libraries change it.

    ``scanpy.pp.neighbors`` sets torch's thread count to the number of cores; a user who chose one thread (on a shared
    machine, where more threads than free cores make every torch job many times slower) would silently lose it.

    Examples
    --------
    >>> import torch
    >>> n = torch.get_num_threads()
    >>> with keep_torch_threads():
    ...     torch.set_num_threads(1)
    >>> torch.get_num_threads() == n
    True
    """
    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
