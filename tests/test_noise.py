"""The per-cell counter-based noise (spalstf.model._noise): standard normal, keyed by cell and stream."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spalstf.model._noise import cell_keys, gaussian


# noise -----------------------------------------------------------------------------------------------------------
def test_gaussian_is_standard_normal():
    keys = cell_keys([f"cell{i}" for i in range(4000)], seed=0)
    z = gaussian(keys, stream=0, n_genes=25).numpy()
    assert z.shape == (4000, 25)
    assert z.dtype == np.float32
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 0.02
    assert abs(z.std() - 1.0) < 0.02
    assert abs((np.abs(z) < 1).mean() - 0.6827) < 0.01
    assert abs((np.abs(z) < 2).mean() - 0.9545) < 0.005
    # no gene or cell is degenerate
    assert np.abs(z.mean(0)).max() < 0.1
    assert z.std(1).min() > 0.2


def test_gaussian_depends_on_key_and_stream():
    keys = cell_keys(["a", "b", "c"], seed=0)
    z0 = gaussian(keys, stream=0, n_genes=16).numpy()
    z1 = gaussian(keys, stream=1, n_genes=16).numpy()
    assert not np.allclose(z0[0], z0[1])
    assert not np.allclose(z0[1], z0[2])
    assert not np.allclose(z0, z1)
    # the same inputs give the same values
    np.testing.assert_array_equal(z0, gaussian(keys, stream=0, n_genes=16).numpy())
    # a large stream index (e.g. the DDPM stream of draw s at step i) is fine
    big = gaussian(keys, stream=10 * 1501 + 1500, n_genes=16).numpy()
    assert np.isfinite(big).all() and not np.allclose(big, z0)


def test_gaussian_per_key_independent_of_other_keys():
    keys = cell_keys([f"cell{i}" for i in range(20)], seed=3)
    full = gaussian(keys, stream=7, n_genes=9).numpy()
    for i in (0, 5, 19):
        np.testing.assert_array_equal(gaussian(keys[[i]], stream=7, n_genes=9).numpy()[0], full[i])
    perm = np.random.default_rng(0).permutation(20)
    np.testing.assert_array_equal(gaussian(keys[perm], stream=7, n_genes=9).numpy(), full[perm])
    np.testing.assert_array_equal(gaussian(keys[:4], stream=7, n_genes=9).numpy(), full[:4])


def test_cell_keys_stable_and_seeded():
    names = pd.Index(["AAAC-1", "AAAG-1", "TTTC-2"])
    k = cell_keys(names, seed=0)
    assert k.dtype == np.uint64 and k.shape == (3,)
    np.testing.assert_array_equal(k, cell_keys(list(names), seed=0))
    assert len(set(k.tolist())) == 3
    k1 = cell_keys(names, seed=1)
    assert (k != k1).all()
    assert (k != cell_keys(names, seed=-1)).all()
    # a key depends on the name only, not on the position or the other names
    assert cell_keys(["TTTC-2"], seed=0)[0] == k[2]
