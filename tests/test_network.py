"""The networks (spalstf.model._network)."""

from __future__ import annotations

import torch


def test_indexed_context_equals_token_context():
    """The context encoder's gathered projection equals the projection of the full (cells, sequence, genes) tokens."""
    from spalstf.model._network import ContextEncoder

    torch.manual_seed(0)
    enc = ContextEncoder(12 + 2, n_hidden=8, n_layers=2, n_input_proj=16)
    table, query = torch.randn(30, 12), torch.randn(5, 7)
    neighbors, distances = torch.randint(0, 30, (5, 4)), torch.rand(5, 4)
    tokens = torch.zeros(5, 5, 14)
    tokens[:, 0, :7], tokens[:, 0, -2] = query, 1.0
    tokens[:, 1:, :12], tokens[:, 1:, -1] = table[neighbors], distances
    torch.testing.assert_close(enc.forward_indexed(query, table, neighbors, distances), enc(tokens))
