"""The transformer (gato_min.model): causality, no target leak, the masked loss (Sec. 2.3)."""

import numpy as np
import torch
import torch.nn.functional as F

from gato_min.config import GatoConfig
from gato_min.model import GatoModel
from gato_min.sequence import SequenceSampler, TokenizedEpisodes
from gato_min.tokenize import Tokenizer
from test_sequence import atari_episodes, mujoco_episodes

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
    total, count = 0.0, 0
    for b in range(batch.token_ids.shape[0]):
        for l in range(1, batch.token_ids.shape[1]):
            if batch.loss_mask[b, l] and batch.attention_mask[b, l]:
                log_probs = F.log_softmax(logits[b, l - 1].double(), dim=-1)
                total -= float(log_probs[batch.token_ids[b, l]])
                count += 1
    assert count == int(batch.loss_mask.sum())
    with torch.no_grad():
        np.testing.assert_allclose(float(model.loss(batch)), total / count, rtol=1e-5)
