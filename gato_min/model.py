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
output head that shares its weights with the token table (`tie_head`; a head of its own is one
flag away). During training logits are computed only at the positions whose next token is
counted: the full-vocabulary head would otherwise dominate the cost of a step.

Padding sits at the end of every window (`gato_min.sequence`), so the causal mask alone keeps
real tokens from attending to it.

Acting (`KVCache`, `GatoModel.extend`): the keys and values of every token already seen are
kept, so each new token costs one row of attention instead of a forward pass over the whole
context. Gato has no absolute sequence positions (only positions inside a timestep), so when
the cache is full its oldest entries are dropped and the rest still mean the same: a sliding
memory in the manner of Transformer-XL, whose kept states carry what came before the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gato_min.embed import GatoEmbedding


class KVCache:
    """Keys and values of the tokens seen so far, per layer, for `batch_size` sequences.

    A ring of `capacity` slots (default: the context length): once full, each new token takes
    the slot of the oldest one. Attention here has no positional term, so where a token sits
    in the ring does not change what it means; `slot_time` (which token of the stream each slot
    holds) gives the causal order. `keep` marks, per sequence, which slots may be attended to:
    `reset(rows)` forgets a sequence's history (a new episode in a batch of environments)
    without touching the others, and `install_prefix` puts a prompt computed once back in front
    of a sequence's next tokens.
    """

    def __init__(self, config, batch_size: int, capacity: int | None = None, device=None, dtype=torch.float32):
        self.capacity = capacity or config.context_length
        shape = (batch_size, config.n_head, self.capacity, config.d_head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.keep = torch.zeros(batch_size, self.capacity, dtype=torch.bool, device=device)
        self.slot_time = torch.full((self.capacity,), -1, dtype=torch.long, device=device)
        self.time = 0  # tokens written so far (the same for every sequence; `keep` says which count)
        self.slots = torch.zeros(0, dtype=torch.long, device=device)  # where the current call writes

    @property
    def batch_size(self) -> int:
        return self.keep.shape[0]

    @property
    def length(self) -> int:
        """Filled slots: the tokens written so far, up to the capacity."""
        return min(self.time, self.capacity)

    def reset(self, rows=None) -> None:
        """Forget the history of sequences `rows` (default: all, and empty the ring)."""
        if rows is None:
            self.keep.zero_()
            self.slot_time.fill_(-1)
            self.time = 0
        else:
            self.keep[self._row_indices(rows)] = False

    def _row_indices(self, rows) -> torch.Tensor:
        """Row numbers as a long tensor on the cache's device; a boolean mask is refused, since
        converting it to integers would name rows 0 and 1 instead of the rows it marks."""
        rows = torch.as_tensor(rows, device=self.keep.device)
        if rows.dtype == torch.bool or (rows.numel() and rows.is_floating_point()):
            raise TypeError(f"rows must be row numbers (ints), got a tensor of dtype {rows.dtype}")
        return rows.to(torch.long).reshape(-1)

    def begin(self, new: int, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Claim slots for `new` tokens about to be added (evicting the oldest when full) and
        return which slots each may attend to: (B, 1, new, used), causal among the new ones and
        limited to kept slots among the old. `keep` (B, new) bool leaves some new tokens out of
        every later token's view (default: all kept); each token always sees itself."""
        if new > self.capacity:
            raise ValueError(f"cannot add {new} tokens to a cache of capacity {self.capacity}")
        device = self.keep.device
        times = self.time + torch.arange(new, device=device)
        self.slots = times % self.capacity
        self.slot_time[self.slots] = times
        self.keep[:, self.slots] = True if keep is None else keep.to(device=device, dtype=torch.bool)
        used = min(self.time + new, self.capacity)
        mask = (self.slot_time[None, :used] <= times[:, None])[None, None] & self.keep[:, None, None, :used]
        mask[:, :, torch.arange(new, device=device), self.slots] = True
        return mask

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store layer `layer`'s keys and values (B, H, new, d) of the current call; return the
        filled part of the ring to attend over."""
        self.keys[layer][:, :, self.slots] = keys
        self.values[layer][:, :, self.slots] = values
        used = min(self.time + keys.shape[2], self.capacity)
        return self.keys[layer][:, :, :used], self.values[layer][:, :, :used]

    def finish(self, new: int) -> None:
        self.time += new

    def prefix(self, row: int = 0) -> CachePrefix:
        """The cached keys and values of sequence `row`, in order, for `install_prefix`: the
        state after a prompt, computed once and reused for every episode."""
        if self.time > self.capacity:
            raise ValueError("the cache has wrapped around; a prefix must fit in it whole")
        if not bool(self.keep[row, : self.time].all()):
            raise ValueError(f"sequence {row} of the cache has forgotten part of its history; nothing to copy")
        return CachePrefix(
            [k[row, :, : self.time].clone() for k in self.keys], [v[row, :, : self.time].clone() for v in self.values]
        )

    def install_prefix(self, rows, prefix: CachePrefix) -> None:
        """Make `prefix` the whole history of sequences `rows`: it takes their most recent
        slots (claimed for every sequence first if fewer are filled), everything else is
        forgotten. The next tokens of those rows then follow the prefix as if it had been fed."""
        size = prefix.length
        if size > self.capacity:
            raise ValueError(f"a prefix of {size} tokens does not fit a cache of capacity {self.capacity}")
        rows = self._row_indices(rows)
        if self.length < size:  # claim the missing slots; no other sequence keeps them
            claimed = torch.zeros(self.batch_size, size - self.length, dtype=torch.bool, device=self.keep.device)
            self.begin(size - self.length, keep=claimed)
            self.finish(size - self.length)
        slots = (self.time - size + torch.arange(size, device=self.keep.device)) % self.capacity
        for buffers, stored in ((self.keys, prefix.keys), (self.values, prefix.values)):
            for buffer, part in zip(buffers, stored):
                buffer[rows[:, None], :, slots[None, :]] = part.permute(1, 0, 2).to(buffer.dtype)[None]
        self.keep[rows] = False
        self.keep[rows[:, None], slots[None, :]] = True


@dataclass
class CachePrefix:
    """One sequence's keys and values per layer, (H, length, d) each: a prompt, ready to install."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def length(self) -> int:
        return self.keys[0].shape[1]


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.d_head = config.n_head, config.d_head
        inner = config.n_head * config.d_head
        self.qkv = nn.Linear(config.d_model, 3 * inner)
        self.out = nn.Linear(inner, config.d_model)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_head, self.d_head).permute(2, 0, 3, 1, 4)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # the new tokens' keys and values join the ring, then they attend over it
            keys, values = cache.write(layer, k, v)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(batch, length, self.n_head * self.d_head))

    def forward_at(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Causal attention outputs at `positions` (B, Q) only: every position's key and value, but
        queries (and the output projection) only where asked. The rows of `forward(x)` at those
        positions, at about a quarter of the cost of the query side when a quarter is asked."""
        batch, length, _ = x.shape
        inner = self.n_head * self.d_head
        q_weight, kv_weight = self.qkv.weight.split([inner, 2 * inner])
        q_bias, kv_bias = self.qkv.bias.split([inner, 2 * inner])
        picked = x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))
        q = F.linear(picked, q_weight, q_bias).view(batch, -1, self.n_head, self.d_head).transpose(1, 2)
        k, v = F.linear(x, kv_weight, kv_bias).view(batch, length, 2, self.n_head, self.d_head).permute(2, 0, 3, 1, 4)
        visible = torch.arange(length, device=x.device) <= positions[..., None]  # (B, Q, L): causal
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None])
        return self.out(y.transpose(1, 2).reshape(batch, -1, inner))


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

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer, mask)
        return x + self.mlp(self.ln2(x))

    def forward_at(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The block's outputs at `positions` (B, Q) only (no cache): a last block need not
        compute the positions whose outputs nothing reads."""
        picked = x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))
        picked = picked + self.attn.forward_at(self.ln1(x), positions)
        return picked + self.mlp(self.ln2(picked))


def smooth_value_embeddings(
    num_bins: int, d_model: int, frequencies: int = 32, std: float = 0.02, seed: int = 0
) -> torch.Tensor:
    """(num_bins, d_model) starting embeddings of the continuous bins in which neighbours are close.

    Bin b sits at u = (b + 0.5) / num_bins in [0, 1]; its vector is a fixed random mix of
    cos(pi k u) and sin(pi k u), k = 1..`frequencies`, weighted 1/k, scaled to `std` per entry.
    A plain random table makes every bin a stranger to its neighbours, so a value the data
    rarely shows (a cheetah at rest, a joint at an unusual angle) is read as noise until that
    very bin has been trained; with this start it reads like the values beside it. The rows are
    still an ordinary learned table (Sec. 2.2): only where learning starts changes.
    """
    generator = torch.Generator().manual_seed(seed)
    u = (torch.arange(num_bins, dtype=torch.float64) + 0.5) / num_bins
    k = torch.arange(1, frequencies + 1, dtype=torch.float64)
    features = torch.cat(
        [torch.cos(torch.pi * u[:, None] * k), torch.sin(torch.pi * u[:, None] * k)], dim=1
    ) / torch.cat([k, k])
    mix = torch.randn(2 * frequencies, d_model, generator=generator, dtype=torch.float64)
    table = features @ mix
    return (table / table.std() * std).float()


def gaussian_bin_targets(bins: torch.Tensor, num_bins: int, width: float) -> torch.Tensor:
    """(N, num_bins) target distributions: a Gaussian of standard deviation `width` bins around
    the middle of each target bin, integrated over every bin and renormalized over [0, num_bins).

    The histogram loss (Imani & White, 2018; "HL-Gauss", Farebrother et al., 2024): with a
    one-hot target, bin 511 is as wrong as bin 0 when the answer is 512, so the model must learn
    each bin's neighbourhood from data; a smoothed target tells it that nearby bins are nearly
    right. The paper trains on one-hot targets (width 0, `TrainSettings.bin_smoothing`).
    """
    if width <= 0:
        raise ValueError(f"the width of smoothed bin targets must be > 0 bins, got {width}")
    edges = torch.arange(num_bins + 1, device=bins.device, dtype=torch.float32)
    centre = bins.to(torch.float32)[:, None] + 0.5
    mass = torch.special.ndtr((edges[None, :] - centre) / width)
    probabilities = mass[:, 1:] - mass[:, :-1]
    return probabilities / probabilities.sum(dim=1, keepdim=True)


class GatoModel(nn.Module):
    def __init__(self, config, image_channels: int = 3):
        super().__init__()
        self.config = config
        self.embedding = GatoEmbedding(config, image_channels)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        # the head: the token table itself (tied), or a matrix of its own, so that a bin's row as
        # something read (an observation) and as something predicted (an action) can differ
        self.head = None if config.tie_head else nn.Linear(config.d_model, config.vocab.size, bias=False)
        self.apply(self._init_weights)
        if config.value_init == "smooth":
            with torch.no_grad():
                vocab = config.vocab
                rows = slice(vocab.continuous_offset, vocab.continuous_offset + vocab.num_bins)
                self.embedding.token_table.weight[rows] = smooth_value_embeddings(vocab.num_bins, config.d_model)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def hidden_states(
        self, batch, cache: KVCache | None = None, keep: torch.Tensor | None = None, only: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final hidden states (B, L, d_model). `only` (B, L) bool (no cache): just the states at
        those positions, (N, d_model) in row-major order as `states[only]` would give, with the
        last block computed only there (training reads the outputs before counted tokens alone)."""
        if only is not None and cache is not None:
            raise ValueError("hidden_states(only=...) computes a whole window; it takes no cache")
        x = self.embedding(batch)
        if cache is None and x.shape[1] > self.config.context_length:
            raise ValueError(f"sequence of {x.shape[1]} tokens exceeds context_length={self.config.context_length}")
        if cache is not None:
            if x.shape[0] != cache.batch_size:
                raise ValueError(f"batch of {x.shape[0]} sequences for a cache of {cache.batch_size}")
            mask = cache.begin(x.shape[1], keep)
        else:
            mask = None
        if only is not None:
            return self.ln_f(self._last_block_at(x, only))
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer, mask)
        if cache is not None:
            cache.finish(x.shape[1])
        return self.ln_f(x)

    def _last_block_at(self, x: torch.Tensor, only: torch.Tensor) -> torch.Tensor:
        """Every block but the last over the whole window, the last only at the positions `only`
        marks, gathered per row (padded to the row with the most), then flattened to (N, d)."""
        for block in self.blocks[:-1]:
            x = block(x)
        counts = only.sum(dim=1)
        width = max(int(counts.max()), 1)
        # each row's marked positions first, in order (a stable sort of "not marked"), then filler
        order = torch.sort((~only).to(torch.int8), dim=1, stable=True).indices[:, :width]
        picked = self.blocks[-1].forward_at(x, order)
        valid = torch.arange(width, device=x.device) < counts[:, None]
        return picked[valid]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores over the whole vocabulary; the head is the token table, transposed (or, with
        `tie_head=False`, a matrix of its own)."""
        if self.head is not None:
            return self.head(hidden)
        return hidden @ self.embedding.token_table.weight.T

    def forward(self, batch) -> torch.Tensor:
        """Logits (B, L, vocab) at every position: position l predicts token l + 1."""
        return self.logits(self.hidden_states(batch))

    @torch.no_grad()
    def extend(self, batch, cache: KVCache, keep: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Feed the tokens of `batch` after those in `cache`; logits (B, L, vocab) of the new
        positions (only the last one, (B, vocab), with `last_only`). The same numbers as a full
        forward over the whole history while it fits. `keep` (B, L) bool: see `KVCache.begin`."""
        hidden = self.hidden_states(batch, cache, keep)
        return self.logits(hidden[:, -1] if last_only else hidden)

    def token_losses(self, batch, bin_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of every counted next token, and where they are: (losses (N,), counted
        (B, L - 1) bool), position l of `counted` meaning token l + 1 of the sequence.
        `bin_smoothing` > 0: a continuous token's target is `gaussian_bin_targets` of that width
        instead of its one bin (text and discrete tokens keep their one-hot target)."""
        counted = batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]
        if not counted.any():
            raise ValueError("the batch has no token to predict (its loss mask is empty)")
        before_counted = F.pad(counted, (0, 1))  # position l's output predicts token l + 1
        hidden = self.hidden_states(batch, only=before_counted)  # only where a counted token comes next
        logits = self.logits(hidden).float()
        targets = batch.token_ids[:, 1:][counted]
        if not bin_smoothing:
            return F.cross_entropy(logits, targets, reduction="none"), counted
        log_probs = F.log_softmax(logits, dim=-1)
        losses = -log_probs.gather(1, targets[:, None]).squeeze(1)
        vocab = self.config.vocab
        bins = targets - vocab.continuous_offset
        continuous = (bins >= 0) & (bins < vocab.num_bins)
        if continuous.any():
            smoothed = gaussian_bin_targets(bins[continuous], vocab.num_bins, bin_smoothing)
            columns = log_probs[continuous, vocab.continuous_offset : vocab.continuous_offset + vocab.num_bins]
            losses = losses.masked_scatter(continuous, -(smoothed * columns).sum(dim=1))
        return losses, counted

    def loss(self, batch, bin_smoothing: float = 0.0) -> torch.Tensor:
        """Mean next-token cross-entropy over the tokens the loss mask keeps (Sec. 2.3); see
        `token_losses` for `bin_smoothing`."""
        return self.token_losses(batch, bin_smoothing)[0].mean()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class LossModule(nn.Module):
    """A model whose forward is the training loss: what DistributedDataParallel wraps (the
    training loop and the benchmarks both step through it)."""

    def __init__(self, model: GatoModel, bin_smoothing: float = 0.0):
        super().__init__()
        self.model, self.bin_smoothing = model, bin_smoothing

    def forward(self, batch) -> torch.Tensor:
        return self.model.loss(batch, self.bin_smoothing)
