"""Per-cell Gaussian noise that does not depend on batching.

Each cell gets a 64-bit key from its name and the user's seed; every noise value is a pure function of
``(cell key, stream, gene)`` (a counter-based generator built on SplitMix64 and the Box-Muller transform). A cell
therefore receives the same noise whether it is sampled alone, in any batch size, or in any order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_STREAM = np.uint64(0xD1B54A32D192ED03)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def cell_keys(cell_names: Iterable[str], seed: int) -> np.ndarray:
    """64-bit key per cell from its name and ``seed`` (BLAKE2b, so keys are stable across runs and platforms)."""
    salt = int(seed).to_bytes(16, "little", signed=True)[:16]
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(str(n).encode(), digest_size=8, salt=salt).digest(), "little")
            for n in cell_names
        ],
        dtype=np.uint64,
    )


def gaussian(keys: np.ndarray, stream: int, n_genes: int) -> torch.Tensor:
    """Standard normal noise of shape ``(len(keys), n_genes)``, a function of each key, ``stream`` and the gene."""
    with np.errstate(over="ignore"):
        base = _splitmix64(keys.astype(np.uint64) ^ (np.uint64(stream) * _STREAM))
        counters = base[:, None] + np.arange(2 * n_genes, dtype=np.uint64)[None, :] * _GOLDEN
        bits = _splitmix64(counters) >> np.uint64(11)  # 53 random bits
    u = (bits.astype(np.float64) + 0.5) / float(1 << 53)  # in (0, 1)
    u1, u2 = u[:, :n_genes], u[:, n_genes:]
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return torch.from_numpy(z.astype(np.float32))


def gene_keys(gene_names: Iterable[str]) -> np.ndarray:
    """64-bit key per gene from its name (BLAKE2b), so that a gene's draws do not depend on which others are drawn."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(str(g).encode(), digest_size=8).digest(), "little") for g in gene_names],
        dtype=np.uint64,
    )


def keyed_normal(cells: np.ndarray, genes: np.ndarray, first_draw: int, n_draws: int) -> np.ndarray:
    """Standard normal noise of shape ``(cells, genes, n_draws)`` (float64), a function of each (cell, gene, draw).

    ``cells`` are :func:`cell_keys` (they carry the seed), ``genes`` :func:`gene_keys`; draw ``k`` is the same
    whatever the other cells, genes or draws asked for, so results do not depend on chunking or order.
    """
    draws = np.arange(first_draw, first_draw + n_draws, dtype=np.uint64)
    with np.errstate(over="ignore"):
        per_gene = _splitmix64(genes.astype(np.uint64)[:, None] ^ (draws[None, :] * _STREAM))  # (genes, draws)
        base = _splitmix64(cells.astype(np.uint64)[:, None, None] ^ per_gene[None])
        bits1 = _splitmix64(base) >> np.uint64(11)
        bits2 = _splitmix64(base ^ _MIX1) >> np.uint64(11)
    u1 = (bits1.astype(np.float64) + 0.5) / float(1 << 53)
    u2 = (bits2.astype(np.float64) + 0.5) / float(1 << 53)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
