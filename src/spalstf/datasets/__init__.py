"""Datasets: the bundled Drosophila embryo pair and loaders for the benchmark pairs."""

from ._drosophila import drosophila_embryo

__all__ = ["drosophila_embryo"]
