"""Quiet by default: a default call shows a progress bar and spalstf's own messages, nothing of the libraries."""

from __future__ import annotations

import logging
import re
import warnings

import pytest
import scanpy as sc

import spalstf as sp

from .conftest import TINY_MODEL

LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "scvi")
#: one tqdm state, e.g. "Epoch 1/3:  33%|###   | 1/3 [00:00<00:00, 15.66it/s, v_num=1, train_loss=20]"
PROGRESS = re.compile(r"^[\w ()/]+:\s+\d+%\|.*\| \d+/\d+ \[.*\]$")


@pytest.fixture
def library_records(recording_handler):
    """Every record the libraries' loggers emit during the test, and every warning raised (none filtered)."""
    handler = recording_handler
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # also the deprecation notices pytest's configuration ignores
        yield handler.records, caught
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).removeHandler(handler)


def _impute(pair, **kwargs):
    adata_st, adata_sc = pair
    sp.tl.spalstf_impute(adata_st, adata_sc, max_steps=3, **TINY_MODEL, **kwargs)


def test_a_default_call_writes_nothing_without_progress_bar(pair, capfd, library_records):
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    capfd.readouterr()
    _impute(pair, progress_bar=False)
    out, err = capfd.readouterr()
    records, caught = library_records
    assert out == "" and err == ""
    assert [r.getMessage() for r in records] == []  # no banner, tip or "`Trainer.fit` stopped" was even emitted
    assert [str(w.message) for w in caught] == []  # no deprecation notice or Lightning hint
    # nothing is changed for the code that runs after the call
    assert {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS} == levels


def test_with_progress_bar_only_progress_bars_are_written(pair, capfd, library_records):
    capfd.readouterr()
    _impute(pair, progress_bar=True)
    out, err = capfd.readouterr()  # Lightning's bar writes to stdout, the sampling bar to stderr
    states = [s.strip() for s in re.split(r"[\r\n]+", out + "\n" + err) if s.strip()]
    assert any(s.startswith("Epoch") for s in states) and any(s.startswith("Sampling") for s in states)
    assert [s for s in states if not PROGRESS.match(s)] == []
    records, caught = library_records
    assert [r.getMessage() for r in records] == [] and [str(w.message) for w in caught] == []


def test_our_messages_follow_scanpys_verbosity(pair, capfd):
    verbosity = sc.settings.verbosity
    try:
        capfd.readouterr()
        _impute(pair, progress_bar=False)
        assert capfd.readouterr().err == ""  # default verbosity: warnings only
        sc.settings.verbosity = "info"
        _impute(pair, progress_bar=False)
        err = capfd.readouterr().err
        assert re.fullmatch(
            r"imputed 10 genes of 60 cells from 20 measured genes \(.*\): obsm\['spalstf_imputed'\].*\n", err
        )
    finally:
        sc.settings.verbosity = verbosity


def test_warnings_for_the_user_still_show(pair, library_records):
    adata_st, adata_sc = pair
    adata_st.X[:2] = 0  # cells without signal: spalstf warns about them
    _, caught = library_records
    _impute((adata_st, adata_sc), progress_bar=False)
    assert [w.category for w in caught] == [UserWarning]
    assert "have no signal" in str(caught[0].message)
