"""The transformer: a decoder-only sequence model over Gato's embedded tokens.

Gato (Reed et al., 2022, Sec. 2.3) is "a 1.2B parameter decoder-only transformer with 24
layers, an embedding size of 2048, and a post-attention feedforward hidden size of 8196"
(App. C.1's table says 8192). It reads the embedded sequence of chapters 02-04 and predicts the
next token over the whole vocabulary; the loss is the cross-entropy of the tokens the loss mask
keeps (text and logged actions).

Choices here: pre-norm blocks (LayerNorm before attention and before the feed-forward layer, as
reimplementations read App. C.1), causal scaled-dot-product attention with `n_head` heads of
`d_head` dimensions, a feed-forward layer of `d_ff` hidden units (GELU by default, whose
parameter count matches the paper's nominal sizes; GEGLU on request, see chapter 05), and an
output head that shares its weights with the token table. During training logits are computed
only at the positions whose next token is counted: the full-vocabulary head would otherwise
dominate the cost of a step.

Padding sits at the end of every window (`gato_min.sequence`), so the causal mask alone keeps
real tokens from attending to it.

Acting (`KVCache`, `GatoModel.extend`): the keys and values of every token already seen are
kept, so each new token costs one row of attention instead of a forward pass over the whole
context. Gato has no absolute sequence positions (only positions inside a timestep), so when
the cache is full its oldest entries are dropped and the rest still mean the same: a sliding
memory in the manner of Transformer-XL, whose kept states carry what came before the window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gato_min.embed import GatoEmbedding


class KVCache:
    """Keys and values of the tokens seen so far, per layer, for `batch_size` sequences.

    `capacity` tokens are kept (default: the context length); older ones are dropped first.
    `keep` marks, per sequence, which cached tokens may be attended to: `reset(rows)` forgets a
    sequence's history (a new episode in a batch of environments) without touching the others.
    """

    def __init__(self, config, batch_size: int, capacity: int | None = None, device=None, dtype=torch.float32):
        self.capacity = capacity or config.context_length
        shape = (batch_size, config.n_head, self.capacity, config.d_head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.keep = torch.zeros(batch_size, self.capacity, dtype=torch.bool, device=device)
        self.length = 0  # filled slots (the same for every sequence; `keep` says which count)

    @property
    def batch_size(self) -> int:
        return self.keep.shape[0]

    def reset(self, rows=None) -> None:
        """Forget the history of sequences `rows` (default: all)."""
        if rows is None:
            self.keep.zero_()
            self.length = 0
        else:
            self.keep[torch.as_tensor(rows, dtype=torch.long, device=self.keep.device)] = False

    def attention_mask(self, new: int) -> torch.Tensor:
        """Marks the `new` tokens about to be added as kept and returns which slots each may
        attend to: (B, 1, new, length + new), causal among the new ones, kept among the old."""
        start, total = self.length, self.length + new
        self.keep[:, start:total] = True
        slots = torch.arange(total, device=self.keep.device)
        causal = slots[None, :] <= (start + torch.arange(new, device=self.keep.device))[:, None]
        return causal[None, None] & self.keep[:, None, None, :total]

    def make_room(self, new: int) -> None:
        """Drop the oldest entries so that `new` more tokens fit."""
        if new > self.capacity:
            raise ValueError(f"cannot add {new} tokens to a cache of capacity {self.capacity}")
        overflow = self.length + new - self.capacity
        if overflow > 0:
            kept = self.length - overflow
            for buffers in (self.keys, self.values):
                for buffer in buffers:
                    buffer[:, :, :kept] = buffer[:, :, overflow:self.length].clone()
            self.keep[:, :kept] = self.keep[:, overflow:self.length].clone()
            self.length = kept


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.d_head = config.n_head, config.d_head
        inner = config.n_head * config.d_head
        self.qkv = nn.Linear(config.d_model, 3 * inner)
        self.out = nn.Linear(inner, config.d_model)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_head, self.d_head).permute(2, 0, 3, 1, 4)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # new tokens sit at slots [start, start + length) after the cached ones
            start = cache.length
            total = start + length
            cache.keys[layer][:, :, start:total] = k
            cache.values[layer][:, :, start:total] = v
            y = F.scaled_dot_product_attention(q, cache.keys[layer][:, :, :total], cache.values[layer][:, :, :total],
                                               attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(batch, length, self.n_head * self.d_head))


class FeedForward(nn.Module):
    """Linear-GELU-Linear, or GEGLU: (GELU(x W) * x V) W2, which has a third matrix."""

    def __init__(self, config):
        super().__init__()
        self.gated = config.feedforward == "geglu"
        self.up = nn.Linear(config.d_model, (2 if self.gated else 1) * config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, value = self.up(x).chunk(2, dim=-1)
            return self.down(F.gelu(gate) * value)
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = FeedForward(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer, mask)
        return x + self.mlp(self.ln2(x))


class GatoModel(nn.Module):
    def __init__(self, config, image_channels: int = 3):
        super().__init__()
        self.config = config
        self.embedding = GatoEmbedding(config, image_channels)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def hidden_states(self, batch, cache: KVCache | None = None) -> torch.Tensor:
        x = self.embedding(batch)
        if cache is None and x.shape[1] > self.config.context_length:
            raise ValueError(f"sequence of {x.shape[1]} tokens exceeds context_length={self.config.context_length}")
        if cache is not None:
            if x.shape[0] != cache.batch_size:
                raise ValueError(f"batch of {x.shape[0]} sequences for a cache of {cache.batch_size}")
            cache.make_room(x.shape[1])
            mask = cache.attention_mask(x.shape[1])
        else:
            mask = None
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer, mask)
        if cache is not None:
            cache.length += x.shape[1]
        return self.ln_f(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores over the whole vocabulary; the head is the token table, transposed."""
        return hidden @ self.embedding.token_table.weight.T

    def forward(self, batch) -> torch.Tensor:
        """Logits (B, L, vocab) at every position: position l predicts token l + 1."""
        return self.logits(self.hidden_states(batch))

    @torch.no_grad()
    def extend(self, batch, cache: KVCache) -> torch.Tensor:
        """Feed the tokens of `batch` after those in `cache`; logits (B, L, vocab) of the new
        positions. The same numbers as a full forward over the whole history while it fits."""
        return self.logits(self.hidden_states(batch, cache))

    def token_losses(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of every counted next token, and where they are: (losses (N,), counted
        (B, L - 1) bool), position l of `counted` meaning token l + 1 of the sequence."""
        hidden = self.hidden_states(batch)
        counted = batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]
        if not counted.any():
            raise ValueError("the batch has no token to predict (its loss mask is empty)")
        logits = self.logits(hidden[:, :-1][counted])  # only where a counted token comes next
        losses = F.cross_entropy(logits.float(), batch.token_ids[:, 1:][counted], reduction="none")
        return losses, counted

    def loss(self, batch) -> torch.Tensor:
        """Mean next-token cross-entropy over the tokens the loss mask keeps (Sec. 2.3)."""
        return self.token_losses(batch)[0].mean()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
