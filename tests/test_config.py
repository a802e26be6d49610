"""GatoConfig: presets, validation, JSON round trip (Reed et al., 2022, Sec. 2.3 and App. C.1)."""

import pytest

from gato_min.config import PRESETS, GatoConfig


@pytest.mark.parametrize(
    "name, shape",
    [
        ("gato-1.18b", (24, 16, 2048, 8192, 128)),
        ("gato-364m", (12, 12, 1536, 6144, 128)),
        ("gato-79m", (8, 24, 768, 3072, 32)),
    ],
)
def test_app_c1_paper_presets(name, shape):
    cfg = GatoConfig.from_preset(name)
    assert (cfg.n_layer, cfg.n_head, cfg.d_model, cfg.d_ff, cfg.d_head) == shape
    assert cfg.context_length == 1024  # Sec. 2.3
    assert cfg.text_vocab_size == 32000  # Sec. 2.1


def test_sec_2_1_tokenizer_defaults_follow_the_paper():
    cfg = GatoConfig()
    assert (cfg.num_bins, cfg.mu, cfg.mu_law_m, cfg.patch_size) == (1024, 100.0, 256.0, 16)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown preset 'gato-2b'.*cpu-small"):
        GatoConfig.from_preset("gato-2b")


def test_json_round_trip_and_unknown_keys():
    for cfg in PRESETS.values():
        assert GatoConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown keys \\['n_layers'\\]"):
        GatoConfig.from_json('{"n_layers": 3}')


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(text_vocab_size=512), "must be >= num_bins"),
        (dict(n_layer=0), "n_layer must be a positive int"),
        (dict(patch_size=16.0), "patch_size must be a positive int"),
        (dict(mu=0.0), "mu and mu_law_m must be positive"),
    ],
)
def test_invalid_configs_are_refused(changes, match):
    with pytest.raises(ValueError, match=match):
        GatoConfig(**changes)
