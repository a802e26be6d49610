"""The transformer (gato_min.model): causality, no target leak, the masked loss (Sec. 2.3)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_sequence import atari_episodes, mujoco_episodes
from torch import nn

from gato_min.batch import Batch, concat_batches
from gato_min.config import GatoConfig
from gato_min.model import (
    CachePrefix,
    GatoModel,
    KVCache,
    LossModule,
    gaussian_bin_targets,
    smooth_value_embeddings,
)
from gato_min.sampling import SequenceSampler
from gato_min.sequence import TokenizedEpisodes
from gato_min.tokenize import Tokenizer

CONFIG = GatoConfig.from_preset("cpu-tiny", context_length=96)


def _batch(make=mujoco_episodes, size=2):
    data = TokenizedEpisodes(make(), Tokenizer(CONFIG))
    return SequenceSampler(data, CONFIG, seed=0).sample(size)


def test_changing_token_k_leaves_earlier_outputs_bit_identical():
    torch.manual_seed(0)
    model = GatoModel(CONFIG).eval()
    batch = _batch()
    reference = model(batch)
    for k in (5, 40, 90):
        changed = _batch()
        changed.token_ids[:, k] = (changed.token_ids[:, k] + 7) % CONFIG.vocab.size
        out = model(changed)
        assert torch.equal(out[:, :k], reference[:, :k])
        assert not torch.equal(out[:, k:], reference[:, k:])


def test_action_prediction_never_depends_on_the_action_itself():
    torch.manual_seed(0)
    model = GatoModel(CONFIG).eval()
    batch = _batch(atari_episodes)
    action_positions = torch.nonzero(batch.loss_mask[0]).flatten()
    k = int(action_positions[2])
    before = model(batch)[0, k - 1]  # the logits that predict token k
    batch.token_ids[0, k] = (batch.token_ids[0, k] + 1) % CONFIG.num_bins
    assert torch.equal(model(batch)[0, k - 1], before)


def test_loss_equals_hand_computed_masked_cross_entropy():
    torch.manual_seed(0)
    model = GatoModel(CONFIG).eval()
    batch = _batch()
    with torch.no_grad():
        logits = model(batch)
    per_token = []  # in the order of the batch: row by row, position by position
    for b in range(batch.token_ids.shape[0]):
        for pos in range(1, batch.token_ids.shape[1]):
            if batch.loss_mask[b, pos] and batch.attention_mask[b, pos]:
                log_probs = F.log_softmax(logits[b, pos - 1].double(), dim=-1)
                per_token.append(-float(log_probs[batch.token_ids[b, pos]]))
    assert len(per_token) == int(batch.loss_mask.sum())
    with torch.no_grad():
        np.testing.assert_allclose(float(model.loss(batch)), np.mean(per_token), rtol=1e-5)
        losses, _ = model.token_losses(batch)  # by default every target is its one token, torques included
    np.testing.assert_allclose(losses.numpy(), per_token, rtol=1e-5)


def test_cached_decoding_equals_a_full_forward_over_the_whole_context():
    """Acting feeds tokens a few at a time through the key/value cache: same logits as one pass."""
    config = GatoConfig.from_preset("cpu-tiny", context_length=256)
    data = TokenizedEpisodes(atari_episodes(), Tokenizer(config))
    batch = SequenceSampler(data, config, seed=1).sample(2)
    torch.manual_seed(0)
    model = GatoModel(config).eval()
    full = model(batch)
    cache = KVCache(config, batch_size=2)
    cuts = [0, 30, 31, 32, 100, 101, 200, 256]  # a long prompt, then single tokens, then chunks
    pieces = [model.extend(batch.window(a, b), cache) for a, b in zip(cuts, cuts[1:])]
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-4, atol=1e-4)
    assert cache.length == 256


def test_cache_drops_its_oldest_tokens_and_forgets_reset_rows():
    config = GatoConfig.from_preset("cpu-tiny", context_length=96)
    batch = _batch(size=2)
    torch.manual_seed(0)
    model = GatoModel(config).eval()
    cache = KVCache(config, batch_size=2, capacity=48)
    model.extend(batch.window(0, 40), cache)
    last = model.extend(batch.window(40, 60), cache)  # 60 tokens seen, 48 kept
    assert cache.length == 48
    # the last 20 positions attend to at most 48 keys: tokens 12..59
    assert torch.isfinite(last).all()
    cache.reset([1])
    alone = model.extend(batch.window(60, 61), cache)[1]
    fresh = model.extend(batch.window(60, 61), KVCache(config, batch_size=2))[1]
    torch.testing.assert_close(alone, fresh, rtol=1e-5, atol=1e-5)  # row 1 sees only its new token
    short = KVCache(config, batch_size=2, capacity=48)
    model.extend(batch.window(0, 4), short)
    for mask in (torch.tensor([False, True]), np.array([False, True]), [0.0, 1.0]):  # row numbers only
        with pytest.raises(TypeError, match="rows must be row numbers"):
            cache.reset(mask)
        with pytest.raises(TypeError, match="rows must be row numbers"):
            short.install_prefix(mask, short.prefix())


def test_concatenated_batches_embed_as_their_parts():
    """Mixing tasks in one step concatenates batches: image patches must follow their rows."""
    first, second = _batch(atari_episodes, 2), _batch(mujoco_episodes, 1)
    third = _batch(atari_episodes, 1)
    model = GatoModel(CONFIG).eval()
    joined = concat_batches([first, second, third])
    assert joined.shape == (4, CONFIG.context_length)
    parts = torch.cat([model.embedding(b) for b in (first, second, third)])
    torch.testing.assert_close(model.embedding(joined), parts)
    torch.testing.assert_close(model.embedding(joined.window(5, 60)), parts[:, 5:60])


def test_an_untied_head_has_weights_of_its_own_and_keeps_the_loss_and_the_cache_right():
    """`tie_head=False`: logits come from a matrix of their own (vocabulary x width more
    parameters), a training step moves it apart from the token table, and the masked loss and
    cached decoding still hold."""
    config = CONFIG.replace(tie_head=False)
    torch.manual_seed(0)
    tied, untied = GatoModel(CONFIG), GatoModel(config)
    assert untied.num_parameters() - tied.num_parameters() == config.vocab.size * config.d_model
    batch = _batch()
    hidden = untied.hidden_states(batch)
    assert torch.equal(untied.logits(hidden), hidden @ untied.head.weight.T)
    assert not torch.allclose(untied.logits(hidden), hidden @ untied.embedding.token_table.weight.T)
    table, head = untied.embedding.token_table.weight.detach().clone(), untied.head.weight.detach().clone()
    untied.loss(batch).backward()
    torch.optim.SGD(untied.parameters(), lr=1.0).step()
    assert not torch.equal(untied.head.weight, head) and not torch.equal(untied.embedding.token_table.weight, table)
    untied.eval()
    with torch.no_grad():
        full = untied(batch)
        cache = KVCache(config, batch_size=batch.token_ids.shape[0])
        stepped = torch.cat([untied.extend(batch.window(t, t + 1), cache) for t in range(8)], dim=1)
    torch.testing.assert_close(stepped, full[:, :8], rtol=1e-4, atol=1e-5)


def _normal_bin_masses(target: int, num_bins: int, width: float) -> np.ndarray:
    """The smoothed target written out bin by bin with math.erf: the mass that N(target + 0.5,
    width) puts on [b, b + 1), renormalized over the bins that exist."""
    cdf = [0.5 * (1 + math.erf((edge - (target + 0.5)) / (width * math.sqrt(2)))) for edge in range(num_bins + 1)]
    masses = np.diff(np.array(cdf))
    return masses / masses.sum()


def test_gaussian_bin_targets_are_the_normal_masses_of_each_bin():
    bins = torch.tensor([0, 300, 1023, 511])
    targets = gaussian_bin_targets(bins, 1024, 5.0)
    assert targets.shape == (4, 1024) and targets.dtype == torch.float32
    for row, target in zip(targets, bins.tolist()):
        np.testing.assert_allclose(row.numpy(), _normal_bin_masses(target, 1024, 5.0), atol=1e-6)
    assert torch.allclose(targets.sum(dim=1), torch.ones(4))
    mean = (targets * torch.arange(1024)).sum(dim=1)
    assert mean[1] == pytest.approx(300.0, abs=1e-3)  # far from the edges: centred on the bin
    assert mean[0] > 0.5 and mean[2] < 1022.5  # at an edge the cut-off tail pulls the mean inward
    std = ((targets[1] * (torch.arange(1024) - 300.0) ** 2).sum()).sqrt()
    assert std == pytest.approx((5.0**2 + 1 / 12) ** 0.5, rel=0.02)  # a Gaussian spread over unit bins
    narrow = gaussian_bin_targets(torch.tensor([7]), 16, 0.01)[0]  # a tiny width is the one-hot target
    assert narrow[7] == pytest.approx(1.0) and narrow.argmax() == 7
    for width in (0.0, -1.0):
        with pytest.raises(ValueError, match="width"):
            gaussian_bin_targets(torch.tensor([3]), 1024, width)
    # built where the bins are (the meta device, shapes without data, stands in for a GPU: mixing it
    # with CPU tensors raises as CUDA does)
    on_device = gaussian_bin_targets(torch.tensor([3, 9], device="meta"), 16, 2.0)
    assert on_device.device.type == "meta" and on_device.shape == (2, 16)


def _fourier_mix(num_bins: int, d_model: int, frequencies: int, std: float, seed: int) -> np.ndarray:
    """The smooth table written out in double precision: bin b at u = (b + 0.5) / num_bins; cos
    and sin of pi k u weighted 1 / k, mixed by a Gaussian matrix drawn from `seed`, scaled to `std`."""
    u = (np.arange(num_bins) + 0.5) / num_bins
    k = np.arange(1, frequencies + 1)
    features = np.concatenate([np.cos(np.pi * np.outer(u, k)) / k, np.sin(np.pi * np.outer(u, k)) / k], axis=1)
    mix = torch.randn(2 * frequencies, d_model, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    expected = features @ mix.numpy()
    return expected / expected.std(ddof=1) * std


def test_smooth_value_embeddings_are_the_stated_fourier_mix():
    num_bins, d_model, frequencies = 64, 16, 4
    table = smooth_value_embeddings(num_bins, d_model, frequencies=frequencies, std=0.5, seed=3)
    assert table.shape == (num_bins, d_model) and table.dtype == torch.float32
    assert float(table.std()) == pytest.approx(0.5, rel=1e-5)
    expected = _fourier_mix(num_bins, d_model, frequencies, 0.5, 3)
    np.testing.assert_allclose(table.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(table, smooth_value_embeddings(num_bins, d_model, frequencies=frequencies, std=0.5, seed=3))
    assert not torch.allclose(table, smooth_value_embeddings(num_bins, d_model, frequencies=frequencies, std=0.5))
    # the defaults: 32 frequencies, seed 0, std 0.02, computed in double precision and rounded once
    # to float32 (so within one float32 step of its largest entry of the exact table)
    full = smooth_value_embeddings(1024, 64)
    exact = _fourier_mix(1024, 64, 32, 0.02, 0)
    step = float(np.spacing(np.float32(np.abs(exact).max())))
    np.testing.assert_allclose(full.numpy(), exact, rtol=0, atol=step)
    # what it is for: neighbouring bins start close, far bins do not
    cosine = F.cosine_similarity(full[:-1], full[1:]).min()
    assert cosine > 0.99 and F.cosine_similarity(full[:1], full[-1:]).item() < 0.5
    assert float(full.std()) == pytest.approx(0.02, rel=1e-5)


def test_smooth_value_init_puts_the_table_in_the_bin_rows_only():
    smooth = GatoModel(CONFIG.replace(value_init="smooth")).embedding.token_table.weight.detach()
    plain = GatoModel(CONFIG).embedding.token_table.weight.detach()
    vocab = CONFIG.vocab
    rows = slice(vocab.continuous_offset, vocab.continuous_offset + vocab.num_bins)
    assert torch.equal(smooth[rows], smooth_value_embeddings(vocab.num_bins, CONFIG.d_model))
    assert not torch.allclose(plain[rows], smooth[rows])
    other = torch.ones(vocab.size, dtype=torch.bool)
    other[rows] = False
    assert float(smooth[other].std()) == pytest.approx(float(plain[other].std()), rel=0.1)  # the usual init elsewhere


def test_smoothed_loss_by_hand_on_a_batch_of_buttons_and_torques():
    """`bin_smoothing`: every counted continuous token (a torque) is scored against the smoothed
    histogram of its bin, every discrete one (a button) against its own token, and the counted
    positions are the same as without smoothing."""
    torch.manual_seed(0)
    model = GatoModel(CONFIG).eval()
    batch = concat_batches([_batch(atari_episodes, 1), _batch(mujoco_episodes, 1)])
    vocab = CONFIG.vocab
    with torch.no_grad():
        logits = model(batch)
        losses, counted = model.token_losses(batch, bin_smoothing=3.0)
        plain, plain_counted = model.token_losses(batch)
        smoothed_mean, plain_mean = float(model.loss(batch, bin_smoothing=3.0)), float(model.loss(batch))
    assert torch.equal(counted, plain_counted)
    assert smoothed_mean == pytest.approx(float(losses.mean()), rel=1e-6)  # `loss` passes its width on
    assert plain_mean == pytest.approx(float(plain.mean()), rel=1e-6) and smoothed_mean != plain_mean
    expected, kinds = [], set()
    for b, pos in zip(*torch.nonzero(counted, as_tuple=True)):
        log_probs = F.log_softmax(logits[b, pos].double(), dim=-1)
        token = int(batch.token_ids[b, pos + 1])
        bin_ = token - vocab.continuous_offset
        if 0 <= bin_ < vocab.num_bins:
            target = gaussian_bin_targets(torch.tensor([bin_]), vocab.num_bins, 3.0)[0].double()
            columns = log_probs[vocab.continuous_offset : vocab.continuous_offset + vocab.num_bins]
            expected.append(-float((target * columns).sum()))
            kinds.add("continuous")
        else:
            expected.append(-float(log_probs[token]))
            kinds.add("discrete")
    assert kinds == {"continuous", "discrete"}
    np.testing.assert_allclose(losses.numpy(), expected, rtol=1e-4)
    discrete = torch.tensor([k == e for k, e in zip(losses.tolist(), plain.tolist())])
    assert discrete.any() and not discrete.all()  # buttons unchanged, torques changed
    empty = batch.window(0, 3)
    empty.loss_mask[:] = False
    with pytest.raises(ValueError, match="^the batch has no token to predict"):
        model.token_losses(empty)


def _rows(batch, rows):
    """Sequences `rows` of a batch without image patches (MuJoCo), in that order."""
    assert not len(batch.patch_index)
    index = torch.tensor(rows)
    per_patch = ("patches", "patch_index", "patch_row_ranges", "patch_col_ranges")
    return Batch(**{k: v if k in per_patch else v[index] for k, v in batch.__dict__.items()})


def test_an_installed_prefix_continues_like_the_tokens_it_was_cut_from():
    """`prefix` copies one sequence's cached history; `install_prefix` makes it the whole
    history of other rows, in an empty ring (its slots are claimed first) and in one that has
    wrapped around, and the rows left alone keep their own."""
    torch.manual_seed(0)
    model = GatoModel(CONFIG).eval()
    batch = _batch(size=2)
    with torch.no_grad():
        source = KVCache(CONFIG, batch_size=2)
        model.extend(batch.window(0, 20), source)
        prefix = source.prefix(row=1)
        assert prefix.length == 20 and len(prefix.keys) == CONFIG.n_layer
        expected = model.extend(batch.window(20, 25), source)[1]  # row 1 going on after its 20 tokens
        # an empty ring of 32 slots: the prefix takes 20 claimed slots, seen by row 2 only
        cache = KVCache(CONFIG, batch_size=3, capacity=32)
        cache.install_prefix([2], prefix)
        assert cache.length == 20 and cache.keep[:2].sum() == 0 and bool(cache.keep[2, :20].all())
        step = _rows(batch.window(20, 25), [0, 0, 1])
        got = model.extend(step, cache)
        torch.testing.assert_close(got[2], expected, rtol=1e-5, atol=1e-5)
        alone = model.extend(_rows(batch.window(20, 25), [0]), KVCache(CONFIG, batch_size=1))[0]
        torch.testing.assert_close(got[0], alone, rtol=1e-5, atol=1e-5)  # rows 0, 1 saw no prefix
        # wrap the ring (25 + 30 tokens in 32 slots), then give row 0 the prefix; row 1 is untouched
        twin = KVCache(CONFIG, batch_size=3, capacity=32)
        for c in (cache, twin):
            if c is twin:
                twin.install_prefix([2], prefix)
                model.extend(step, twin)
            model.extend(_rows(batch.window(25, 55), [0, 1, 1]), c)
        assert cache.time == 55 and cache.length == 32
        with pytest.raises(ValueError, match="^the cache has wrapped around"):
            cache.prefix(0)
        full = KVCache(CONFIG, batch_size=2, capacity=20)
        model.extend(batch.window(0, 20), full)
        assert torch.equal(full.prefix(1).keys[0], prefix.keys[0])  # exactly full: still whole
        model.extend(batch.window(20, 21), full)
        with pytest.raises(ValueError, match="wrapped"):
            full.prefix(1)  # one token more: the first is gone
        cache.install_prefix([0], prefix)
        assert int(cache.keep[0].sum()) == 20 and bool(cache.keep[0, cache.slot_time.argsort()[-20:]].all())
        nxt = _rows(batch.window(20, 25), [1, 0, 0])
        got, untouched = model.extend(nxt, cache), model.extend(nxt, twin)
        torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1:], untouched[1:], rtol=1e-5, atol=1e-5)
        # forgetting: a reset row has no prefix to give; a full reset empties the ring
        source.reset([1])
        with pytest.raises(ValueError, match="forgotten"):
            source.prefix(1)
        cache.reset()
        assert cache.time == 0 and cache.length == 0 and not cache.keep.any() and bool((cache.slot_time == -1).all())
        fresh = model.extend(nxt, KVCache(CONFIG, batch_size=3, capacity=32))
        torch.testing.assert_close(model.extend(nxt, cache), fresh, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="capacity"):
            KVCache(CONFIG, batch_size=1, capacity=16).install_prefix([0], prefix)
        with pytest.raises(ValueError, match="capacity"):
            cache.begin(33)


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact GELU: x times the standard normal's distribution function at x."""
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(dim=-1, keepdim=True) + norm.eps) * norm.weight + norm.bias


def _causal_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """Multi-head attention written out: each head's softmax(q k^T / sqrt(d_head)) over the
    positions up to its own, the heads side by side, then the output projection. The qkv layer's
    rows are the queries of every head, then the keys, then the values."""
    batch, length, _ = x.shape
    inner = attn.n_head * attn.d_head

    def heads(rows: slice) -> torch.Tensor:
        projected = x @ attn.qkv.weight[rows].T + attn.qkv.bias[rows]
        return projected.reshape(batch, length, attn.n_head, attn.d_head).transpose(1, 2)

    q, k, v = (heads(slice(i * inner, (i + 1) * inner)) for i in range(3))
    scores = q @ k.transpose(-1, -2) / math.sqrt(attn.d_head)
    later = torch.ones(length, length, dtype=torch.bool).triu(diagonal=1)
    weights = torch.softmax(scores.masked_fill(later, float("-inf")), dim=-1)
    joined = (weights @ v).transpose(1, 2).reshape(batch, length, inner)
    return joined @ attn.out.weight.T + attn.out.bias


def test_forward_is_n_layer_pre_norm_blocks_then_the_tied_head():
    """Logits = tied head(LN(blocks(embedding))), each block x + attention(LN(x)), then
    x + Linear(GELU(Linear(LN(x)))), all written out here with the model's own weights."""
    torch.manual_seed(0)
    model = GatoModel(CONFIG).eval()
    batch = _batch()
    assert len(model.blocks) == CONFIG.n_layer
    with torch.no_grad():
        x = model.embedding(batch)
        for block in model.blocks:
            x = x + _causal_attention(block.attn, _layer_norm(block.ln1, x))
            h = _layer_norm(block.ln2, x)
            x = x + _gelu(h @ block.mlp.up.weight.T + block.mlp.up.bias) @ block.mlp.down.weight.T + block.mlp.down.bias
        expected = _layer_norm(model.ln_f, x) @ model.embedding.token_table.weight.T
        torch.testing.assert_close(model(batch), expected, rtol=1e-4, atol=1e-4)


def test_geglu_feed_forward_multiplies_a_gelu_gate_by_a_second_projection():
    """`feedforward="geglu"`: (GELU(x W) * x V) W2 with W and V the two halves of one wider
    input layer (one more d_model x d_ff matrix and its bias per layer); "gelu" keeps one."""
    torch.manual_seed(0)
    d, f = CONFIG.d_model, CONFIG.d_ff
    gelu, geglu = GatoModel(CONFIG), GatoModel(CONFIG.replace(feedforward="geglu"))
    assert geglu.num_parameters() - gelu.num_parameters() == CONFIG.n_layer * (d * f + f)
    x = torch.randn(2, 6, d)
    plain = gelu.blocks[0].mlp
    assert plain.up.weight.shape == (f, d)
    with torch.no_grad():
        expected = _gelu(x @ plain.up.weight.T + plain.up.bias) @ plain.down.weight.T + plain.down.bias
        torch.testing.assert_close(plain(x), expected)
        gated = geglu.blocks[1].mlp
        assert gated.up.weight.shape == (2 * f, d)
        gate = x @ gated.up.weight[:f].T + gated.up.bias[:f]
        value = x @ gated.up.weight[f:].T + gated.up.bias[f:]
        torch.testing.assert_close(gated(x), (_gelu(gate) * value) @ gated.down.weight.T + gated.down.bias)
        assert torch.isfinite(geglu.loss(_batch()))


def test_weights_start_normal_with_std_0_02_and_biases_at_zero():
    torch.manual_seed(0)
    model = GatoModel(CONFIG.replace(tie_head=False))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    assert linears and tables
    for modules in (linears, tables):
        weights = torch.cat([m.weight.detach().flatten() for m in modules])
        assert float(weights.std()) == pytest.approx(0.02, rel=0.05) and abs(float(weights.mean())) < 1e-3
    assert not any(m.bias.any() for m in linears if m.bias is not None)


def test_a_model_for_one_channel_images_takes_one_channel_patches():
    model = GatoModel(CONFIG, image_channels=1)
    patches = torch.rand(3, 1, CONFIG.patch_size, CONFIG.patch_size)
    assert model.embedding.patch_block(patches).shape == (3, CONFIG.d_model)
    with pytest.raises(ValueError, match="patches must have shape"):
        model.embedding.patch_block(patches.expand(3, 3, -1, -1))


def test_the_loss_module_is_the_model_loss_with_its_smoothing():
    torch.manual_seed(0)
    model = GatoModel(CONFIG).eval()
    batch = _batch()  # MuJoCo: continuous targets, which smoothing changes
    with torch.no_grad():
        plain, smoothed = float(model.loss(batch)), float(model.loss(batch, bin_smoothing=2.0))
        assert plain != smoothed
        assert float(LossModule(model)(batch)) == pytest.approx(plain, rel=1e-6)
        assert float(LossModule(model, bin_smoothing=2.0)(batch)) == pytest.approx(smoothed, rel=1e-6)


def test_the_model_refuses_a_sequence_longer_than_its_context_and_a_batch_unlike_its_cache():
    torch.manual_seed(0)
    model = GatoModel(CONFIG).eval()
    longer = CONFIG.replace(context_length=128)
    batch = SequenceSampler(TokenizedEpisodes(mujoco_episodes(), Tokenizer(longer)), longer, seed=0).sample(2)
    with pytest.raises(ValueError, match=r"^sequence of 128 tokens exceeds context_length=96$"):
        model(batch)
    assert model(batch.window(0, 96)).shape == (2, 96, CONFIG.vocab.size)  # a whole context is fine
    with pytest.raises(ValueError, match=r"^batch of 2 sequences for a cache of 3$"):
        model.extend(batch.window(0, 5), KVCache(CONFIG, batch_size=3))


def test_tokens_left_out_by_keep_are_hidden_from_every_later_token():
    """`extend(..., keep)`: a token marked False is seen by nothing after it (an action fed for a
    row whose episode has just restarted), as if it had never been fed; other rows keep all."""
    torch.manual_seed(0)
    model = GatoModel(CONFIG).eval()
    batch = _batch(size=2)
    keep = torch.ones(2, 12, dtype=torch.bool)
    keep[0, 5] = False
    cache, everything = KVCache(CONFIG, batch_size=2), KVCache(CONFIG, batch_size=2)
    got = torch.cat([model.extend(batch.window(0, 12), cache, keep), model.extend(batch.window(12, 14), cache)], 1)
    full = torch.cat([model.extend(batch.window(0, 12), everything), model.extend(batch.window(12, 14), everything)], 1)
    skipped = KVCache(CONFIG, batch_size=1)
    without = [model.extend(_rows(batch.window(a, b), [0]), skipped)[0] for a, b in ((0, 5), (6, 12), (12, 14))]
    torch.testing.assert_close(got[0, :6], full[0, :6], rtol=1e-5, atol=1e-5)  # up to the token itself
    torch.testing.assert_close(got[0, 6:], torch.cat(without[1:]), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(full[0, 6:], got[0, 6:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], full[1], rtol=1e-5, atol=1e-5)


def test_a_prefix_installs_into_a_partly_filled_ring_and_into_one_it_fills_exactly():
    torch.manual_seed(0)
    model = GatoModel(CONFIG).eval()
    batch = _batch(size=2)
    source = KVCache(CONFIG, batch_size=2)
    model.extend(batch.window(0, 20), source)
    prefix = source.prefix(1)
    assert all(torch.equal(a, b) for a, b in zip(source.prefix().keys, source.prefix(0).keys))  # row 0 by default
    assert not torch.equal(source.prefix().keys[0], prefix.keys[0])
    expected = model.extend(batch.window(20, 25), source)[1]
    # a ring holding 6 tokens of each row, fewer than the prefix's 20: 14 more slots are claimed,
    # kept by the installed row only; row 0 still sees just its own 6 tokens
    cache = KVCache(CONFIG, batch_size=2, capacity=32)
    model.extend(_rows(batch.window(0, 6), [0, 0]), cache)
    cache.install_prefix([1], prefix)
    assert cache.length == 20 and int(cache.keep[0].sum()) == 6 and bool(cache.keep[1, :20].all())
    got = model.extend(_rows(batch.window(20, 25), [0, 1]), cache)
    torch.testing.assert_close(got[1], expected, rtol=1e-5, atol=1e-5)
    own = KVCache(CONFIG, batch_size=1)
    model.extend(_rows(batch.window(0, 6), [0]), own)
    torch.testing.assert_close(got[0], model.extend(_rows(batch.window(20, 25), [0]), own)[0], rtol=1e-5, atol=1e-5)
    # a prefix exactly as long as the ring fits, and goes on like its tokens fed into that ring
    exact, fed = KVCache(CONFIG, batch_size=1, capacity=20), KVCache(CONFIG, batch_size=1, capacity=20)
    exact.install_prefix([0], prefix)
    model.extend(_rows(batch.window(0, 20), [1]), fed)
    step = _rows(batch.window(20, 25), [1])
    torch.testing.assert_close(model.extend(step, exact), model.extend(step, fed), rtol=1e-5, atol=1e-5)


def test_a_cache_keeps_its_buffers_on_its_device_and_in_its_dtype():
    """`device`: every buffer lives there and claiming, writing, installing and resetting keep it
    there (the meta device, shapes without data, stands in for a GPU: it refuses CPU operands as
    CUDA does). `dtype`: keys and values are stored in it, a float32 prefix is converted."""
    n_head, d_head = CONFIG.n_head, CONFIG.d_head
    meta = KVCache(CONFIG, batch_size=2, capacity=8, device="meta")

    def on_meta(cache: KVCache) -> bool:
        return all(t.device.type == "meta" for t in [*cache.keys, *cache.values, cache.keep, cache.slot_time])

    assert on_meta(meta)
    mask = meta.begin(3)
    assert mask.device.type == "meta" and mask.shape == (2, 1, 3, 3)
    new = torch.zeros(2, n_head, 3, d_head, device="meta")
    for layer in range(CONFIG.n_layer):
        meta.write(layer, new, new)
    meta.finish(3)
    part = torch.zeros(n_head, 5, d_head, device="meta")
    meta.install_prefix([1], CachePrefix([part] * CONFIG.n_layer, [part] * CONFIG.n_layer))
    meta.reset([0])
    assert on_meta(meta)
    # float64 buffers; a float32 prefix installed in two rows at once, none in the row between
    wide = KVCache(CONFIG, batch_size=3, capacity=8, dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in [*wide.keys, *wide.values])
    torch.manual_seed(0)
    parts = [torch.randn(n_head, 5, d_head) for _ in range(2 * CONFIG.n_layer)]
    prefix = CachePrefix(parts[: CONFIG.n_layer], parts[CONFIG.n_layer :])
    wide.install_prefix([0, 2], prefix)
    for buffer, part in zip([*wide.keys, *wide.values], parts):
        assert torch.equal(buffer[[0, 2], :, :5], part.double().expand(2, -1, -1, -1)) and not buffer[1].any()
    assert wide.keep[[0, 2], :5].all() and not wide.keep[[0, 2], 5:].any() and not wide.keep[1].any()
    # no rows: nothing changes
    before = wide.keep.clone()
    wide.install_prefix([], prefix)
    wide.reset([])
    assert torch.equal(wide.keep, before) and wide.length == 5


@pytest.mark.parametrize("make", [mujoco_episodes, atari_episodes])
def test_the_loss_computes_the_last_block_only_where_a_counted_token_comes_next(make):
    """Training reads the final states before counted tokens alone, so the last block runs only
    there: the loss and every gradient are those of the whole window's states, masked."""
    config = GatoConfig.from_preset("cpu-tiny", context_length=96, n_layer=3)  # first, middle and last blocks
    torch.manual_seed(0)
    model = GatoModel(config).eval()  # eval: the same patch positions on both paths
    batch = _batch(make, size=3)
    fast = model.loss(batch)
    fast_grads = torch.autograd.grad(fast, list(model.parameters()), allow_unused=True)
    counted = batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]
    states = model.hidden_states(batch)[:, :-1][counted]
    slow = F.cross_entropy(model.logits(states).float(), batch.token_ids[:, 1:][counted])
    slow_grads = torch.autograd.grad(slow, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    for name, a, b in zip([n for n, _ in model.named_parameters()], fast_grads, slow_grads):
        if b is None:
            assert a is None, name
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    only = torch.zeros_like(batch.attention_mask)  # rows with different counts, one with none
    only[0, [3, 7, 40]] = True
    only[2, 5] = True
    with torch.no_grad():
        picked = model.hidden_states(batch, only=only)
        torch.testing.assert_close(picked, model.hidden_states(batch)[only], rtol=1e-5, atol=1e-6)
    untouched = KVCache(config, batch_size=3)
    with pytest.raises(ValueError, match=r"^hidden_states\(only=\.\.\.\) computes a whole window; it takes no cache$"):
        model.hidden_states(batch, untouched, only=only)
    assert untouched.time == 0 and not untouched.keep.any()  # refused before any slot was claimed
