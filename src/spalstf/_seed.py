"""Seeding the global random generators for a block without leaving them changed."""

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
    SpaLSTF's training), so that a seeded call leaves the caller's random state as it found it.

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
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
