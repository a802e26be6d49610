"""The transformer: a decoder-only sequence model over Gato's embedded tokens.

Gato (Reed et al., 2022, Sec. 2.3) is "a 1.2B parameter decoder-only transformer with 24
layers, an embedding size of 2048, and a post-attention feedforward hidden size of 8196"
(App. C.1's table says 8192). It reads the embedded sequence of chapters 02-04 and predicts the
next token over the whole vocabulary; the loss is the cross-entropy of the tokens the loss mask
keeps (text and logged actions).

Choices here: pre-norm blocks (LayerNorm before attention and before the feed-forward layer, as
reimplementations read App. C.1), causal scaled-dot-product attention with `n_head` heads of
`d_head` dimensions, a GELU feed-forward layer of `d_ff` hidden units, and an output head that
shares its weights with the token table. During training logits are computed only at the
positions whose next token is counted: the full-vocabulary head would otherwise dominate the
cost of a step.

Padding sits at the end of every window (`gato_min.sequence`), so the causal mask alone keeps
real tokens from attending to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gato_min.embed import GatoEmbedding


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.d_head = config.n_head, config.d_head
        inner = config.n_head * config.d_head
        self.qkv = nn.Linear(config.d_model, 3 * inner)
        self.out = nn.Linear(inner, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_head, self.d_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(batch, length, self.n_head * self.d_head))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.d_ff), nn.GELU(), nn.Linear(config.d_ff, config.d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
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

    def hidden_states(self, batch) -> torch.Tensor:
        x = self.embedding(batch)
        if x.shape[1] > self.config.context_length:
            raise ValueError(f"sequence of {x.shape[1]} tokens exceeds context_length={self.config.context_length}")
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores over the whole vocabulary; the head is the token table, transposed."""
        return hidden @ self.embedding.token_table.weight.T

    def forward(self, batch) -> torch.Tensor:
        """Logits (B, L, vocab) at every position: position l predicts token l + 1."""
        return self.logits(self.hidden_states(batch))

    def loss(self, batch) -> torch.Tensor:
        """Mean next-token cross-entropy over the tokens the loss mask keeps (Sec. 2.3)."""
        hidden = self.hidden_states(batch)
        counted = batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]
        if not counted.any():
            raise ValueError("the batch has no token to predict (its loss mask is empty)")
        logits = self.logits(hidden[:, :-1][counted])  # only where a counted token comes next
        return F.cross_entropy(logits.float(), batch.token_ids[:, 1:][counted])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
