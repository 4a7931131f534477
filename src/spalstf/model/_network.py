"""Networks of SpaLSTF: the BiLSTM condition encoder, the point head, the XCiT-style denoiser, their ablation variants.

Everything here works on one cell at a time (a batch is only a stack of independent cells): the BiLSTM runs over a
cell's own context sequence and the attention runs over the gene tokens of that cell, never across cells.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ContextEncoder(nn.Module):
    """Bidirectional LSTM over a cell's context sequence (the cell, then its nearest reference cells).

    Each token is a cell's profile over some genes plus two scalars (``is_query`` flag and distance to the query);
    tokens are projected to ``n_input_proj`` features, read by a ``n_layers``-layer BiLSTM, and the last layer's final
    forward and backward states are concatenated (``2 * n_hidden`` features).
    """

    def __init__(self, n_token_features: int, n_hidden: int = 128, n_layers: int = 2, n_input_proj: int = 128):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(n_token_features, n_input_proj), nn.SiLU())
        self.lstm = nn.LSTM(n_input_proj, n_hidden, num_layers=n_layers, batch_first=True, bidirectional=True)
        self.n_out = 2 * n_hidden

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens``: (cells, sequence, features) -> (cells, 2 * n_hidden)."""
        return self._read(self.proj(tokens))

    def forward_indexed(
        self, query: torch.Tensor, table: torch.Tensor, neighbors: torch.Tensor, distances: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` on the sequence [query cell, ``table[neighbors]``...], without building its tokens.

        Equal to ``forward`` on tokens whose first token holds ``query`` in its first ``query.shape[1]`` gene features
        (other genes 0), query flag 1 and distance 0, followed by the rows ``table[neighbors]`` with flag 0 and
        ``distances``. The input projection is linear, so it is applied to each distinct table row once and the
        projected rows are gathered: memory is (distinct rows x genes) instead of (cells x sequence x genes), which
        matters with tens of thousands of genes.

        Parameters
        ----------
        query
            (cells, q) gene values of the query cells (the first q genes of a token).
        table
            (rows, genes) profiles the context cells are taken from.
        neighbors, distances
            (cells, k) row indices into ``table`` and their distances to the query.
        """
        weight, bias = self.proj[0].weight, self.proj[0].bias
        n_genes = weight.shape[1] - 2
        q = query @ weight[:, : query.shape[1]].T + weight[:, n_genes] + bias
        rows, inverse = torch.unique(neighbors, return_inverse=True)
        ctx = (table[rows] @ weight[:, :n_genes].T)[inverse] + distances[..., None] * weight[:, n_genes + 1] + bias
        return self._read(self.proj[1](torch.cat([q[:, None], ctx], dim=1)))

    def _read(self, projected: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(projected)
        return torch.cat([h[-2], h[-1]], dim=-1)


class ConditionEncoder(nn.Module):
    """The condition embedding without a context sequence (the ablation "without BiLSTM"): an MLP of the cell alone.

    Same output size as :class:`ContextEncoder` (``2 * n_hidden``) and the same :meth:`forward_indexed` signature,
    so the rest of the module does not change; the neighbours are ignored.
    """

    def __init__(self, n_measured: int, n_hidden: int = 128, n_input_proj: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_measured, n_input_proj), nn.SiLU(), nn.Linear(n_input_proj, 2 * n_hidden))
        self.n_out = 2 * n_hidden

    def forward_indexed(
        self, query: torch.Tensor, table: torch.Tensor, neighbors: torch.Tensor, distances: torch.Tensor
    ) -> torch.Tensor:
        """(cells, q) query values -> (cells, 2 * n_hidden); ``table``, ``neighbors`` and ``distances`` are unused."""
        return self.net(query)


class PointHead(nn.Sequential):
    """The learned point estimate ``mu(c, y)`` of a cell's unknown genes: an MLP of the embedding and the condition.

    ``Linear -> SiLU -> Linear`` on ``[y, c]``. A :class:`~torch.nn.Sequential`, so its parameters keep the names
    (``0.weight``, ``2.weight``, ...) under which saved models hold them.

    Parameters
    ----------
    n_embedding
        Features of the condition embedding ``y``.
    n_measured
        Genes of the condition ``c``.
    n_hidden
        Width of the hidden layer.
    n_out
        Unknown genes estimated.
    """

    def __init__(self, n_embedding: int, n_measured: int, *, n_hidden: int, n_out: int):
        super().__init__(nn.Linear(n_embedding + n_measured, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))

    def forward(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(cells, n_measured) condition and (cells, n_embedding) embedding -> (cells, n_out)."""
        return super().forward(torch.cat([y, condition], dim=1))


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (integer or fractional) diffusion steps, shape (cells, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class CrossCovarianceAttention(nn.Module):
    """XCA (El-Nouby et al. 2021): attention between feature channels, computed over a cell's gene tokens.

    The attention map per head is ``d_head x d_head`` (channels x channels), so memory is linear in the number of
    tokens and therefore in the number of genes.
    """

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"n_hidden ({dim}) must be divisible by n_heads ({n_heads}).")
        self.n_heads = n_heads
        self.temperature = nn.Parameter(torch.ones(n_heads, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (cells, tokens, dim)."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 4, 1)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (cells, heads, d_head, tokens)
        # the channel-by-channel map is small (inner dimension: tokens) and sharpened by a learned temperature, so it
        # is computed in float32 even under autocast; only the projections and attn @ v use reduced precision
        with torch.autocast(device_type=x.device.type, enabled=False):
            q = F.normalize(q.float(), dim=-1)
            k = F.normalize(k.float(), dim=-1)
            attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        out = (attn.to(v.dtype) @ v).permute(0, 3, 1, 2).reshape(b, n, d)
        return self.proj(out)


class SoftmaxSelfAttention(nn.Module):
    """Standard multi-head softmax self-attention between a cell's gene tokens (the ablation of XCA).

    The attention map per head is ``tokens x tokens``; with the same projections as
    :class:`CrossCovarianceAttention`, it differs only in what attends to what.
    """

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"n_hidden ({dim}) must be divisible by n_heads ({n_heads}).")
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (cells, tokens, dim)."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (cells, heads, tokens, d_head)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


#: Attention of the denoiser's blocks: ``"xca"`` (the paper's) or ``"softmax"`` (the ablation).
ATTENTIONS = {"xca": CrossCovarianceAttention, "softmax": SoftmaxSelfAttention}


class LocalPatchInteraction(nn.Module):
    """LPI: depthwise convolution over neighbouring gene tokens (explicit token-to-token communication)."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (cells, tokens, dim)."""
        h = self.conv2(F.gelu(self.conv1(x.transpose(1, 2))))
        return h.transpose(1, 2)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class XCiTBlock(nn.Module):
    """XCA -> LPI -> FFN, each pre-normed and modulated by the time + condition embedding (adaLN-Zero).

    ``attention="softmax"`` puts :class:`SoftmaxSelfAttention` where XCA is (the ablation "without XCA").
    """

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float = 4.0, attention: str = "xca"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {list(ATTENTIONS)}, got {attention!r}.")
        self.norms = nn.ModuleList([nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) for _ in range(3)])
        self.xca = ATTENTIONS[attention](dim, n_heads)
        self.lpi = LocalPatchInteraction(dim)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x``: (cells, tokens, dim); ``c``: (cells, dim)."""
        mods = self.ada(c).chunk(9, dim=-1)
        for i, layer in enumerate((self.xca, self.lpi, self.ffn)):
            shift, scale, gate = mods[3 * i : 3 * i + 3]
            x = x + gate[:, None] * layer(_modulate(self.norms[i](x), shift, scale))
        return x


class Denoiser(nn.Module):
    """Predicts the noise on the unknown genes from the noisy cell, the diffusion step and the condition.

    A cell's gene vector (measured genes clean, unknown genes noisy, plus the mask) is cut into ``n_tokens``
    contiguous gene patches; each patch is embedded as one token, so the work per cell is linear in the number of
    genes (embedding) and constant in it for the attention.
    """

    def __init__(
        self,
        n_genes: int,
        n_condition: int,
        n_hidden: int = 128,
        n_blocks: int = 4,
        n_heads: int = 8,
        n_tokens: int = 8,
        attention: str = "xca",
    ):
        super().__init__()
        self.n_genes = n_genes
        self.n_tokens = max(1, min(n_tokens, n_genes))
        self.patch = math.ceil(n_genes / self.n_tokens)
        self.n_pad = self.patch * self.n_tokens - n_genes
        self.embed = nn.Linear(2 * self.patch, n_hidden)
        self.pos = nn.Parameter(torch.zeros(1, self.n_tokens, n_hidden))
        nn.init.normal_(self.pos, std=0.02)
        self.time_mlp = nn.Sequential(nn.Linear(256, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_hidden))
        self.cond_mlp = nn.Sequential(nn.Linear(n_condition, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_hidden))
        self.blocks = nn.ModuleList([XCiTBlock(n_hidden, n_heads, attention=attention) for _ in range(n_blocks)])
        self.norm_out = nn.LayerNorm(n_hidden, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(n_hidden, 2 * n_hidden))
        self.out = nn.Linear(n_hidden, self.patch)
        for layer in (self.ada_out[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``x``: (cells, genes) with measured genes clean; ``mask``: (genes,) 1 = measured; returns (cells, genes)."""
        b = x.shape[0]
        feats = torch.stack([x, mask.expand_as(x)], dim=-1)  # (cells, genes, 2)
        if self.n_pad:
            feats = F.pad(feats, (0, 0, 0, self.n_pad))
        tokens = self.embed(feats.reshape(b, self.n_tokens, 2 * self.patch)) + self.pos
        c = self.time_mlp(timestep_embedding(t)) + self.cond_mlp(condition)
        for block in self.blocks:
            tokens = block(tokens, c)
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        out = self.out(_modulate(self.norm_out(tokens), shift, scale))
        return out.reshape(b, -1)[:, : self.n_genes]
