"""The test checkpoints are faithful to the real files, and the loaders fit the real shapes.

1. Each layout generator, given the real config, reproduces the JSON state-dict listing of
   tests/data/formats exactly (names, order, shapes), and the tiny files carry the same
   pickle globals as the real ones.
2. Each reader + model, fed the JSON listing at real size as ``meta`` tensors (nothing is
   allocated), loads with no key missing or left over and has the reference's sizes.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.vencoder_checkpoints import (
    TINY_CONTENTVEC,
    TINY_DPHUBERT,
    TINY_HUBERT_SOFT,
    TINY_WAVLM,
    TINY_WHISPER,
    dphubert_layout,
    fairseq_dictionary_class,
    fairseq_hubert_layout,
    hubert_soft_layout,
    json_layout,
    make_dictionary,
    random_state,
    reference_json,
    wavlm_layout,
    whisper_layout,
    write_dphubert,
    write_fairseq_hubert,
    write_hubert_soft,
    write_wavlm,
    write_whisper,
)
from vencoder.base import load_strict
from vencoder.formats import (
    parse_conv_layers,
    read_dphubert,
    read_fairseq_hubert,
    read_hubert_soft,
    read_wavlm,
)
from vencoder.wav2vec2 import Wav2Vec2Model
from vencoder.whisper import read_whisper


def _ref(name):
    ref = reference_json(name)
    return ref


LAYOUTS = {
    "checkpoint_best_legacy_500.json": lambda r: fairseq_hubert_layout(r["config"]["model"], 504),
    "chinese-hubert-large-fairseq-ckpt.json":
        lambda r: fairseq_hubert_layout(r["config"]["model"], 504),
    "WavLM-Base+.json": lambda r: wavlm_layout(r["config"]),
    "DPHuBERT-sp0.75.json": lambda r: dphubert_layout(r["config"]),
    "hubert-soft-0d54a1f4.json": lambda r: hubert_soft_layout(),
    "whisper-medium.json": lambda r: whisper_layout(r["config"]),
    "whisper-large-v2.json": lambda r: whisper_layout(r["config"]),
}  # fmt: skip


@pytest.mark.parametrize("json_name", list(LAYOUTS))
def test_layout_matches_reference_listing(json_name):
    ref = _ref(json_name)
    assert LAYOUTS[json_name](ref) == json_layout(ref)
    assert len(ref["state_dict"]) == ref["num_state_dict_keys"]


@pytest.mark.parametrize(
    "json_name, write",
    [
        ("checkpoint_best_legacy_500.json",
         lambda p, r: write_fairseq_hubert(p, r, TINY_CONTENTVEC, ["0", "1"])),
        ("WavLM-Base+.json", lambda p, r: write_wavlm(p, r, TINY_WAVLM)),
        ("DPHuBERT-sp0.75.json", lambda p, r: write_dphubert(p, r, TINY_DPHUBERT)),
        ("hubert-soft-0d54a1f4.json", lambda p, r: write_hubert_soft(p, **TINY_HUBERT_SOFT)),
        ("whisper-medium.json", lambda p, r: write_whisper(p, r, TINY_WHISPER)),
    ],
)  # fmt: skip
def test_tiny_files_have_the_real_pickle_globals(json_name, write, tmp_path):
    ref = _ref(json_name)
    path = tmp_path / "x.pt"
    write(path, ref)
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert sorted(unsafe) == sorted(ref["weights_only_unsafe_globals"])


def test_dictionary_stand_in_pickles_like_fairseq():
    ref = _ref("checkpoint_best_legacy_500.json")
    with fairseq_dictionary_class() as cls:
        d = make_dictionary(cls, ["0"])
        assert type(d).__module__ + "." + type(d).__name__ == ref["task_state_dictionary"]["class"]
        assert list(d.__dict__) == ref["task_state_dictionary"]["attributes_in_order"]


def test_parse_conv_layers_never_evaluates():
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2") == (
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    )
    for bad in ("__import__('os').system('true')", "[(1,2,3)] * 10**9", "[(1,2)]", "[x]", "1"):
        with pytest.raises(ValueError):
            parse_conv_layers(bad)


# ------------------------------------------------------------------- real shapes, on "meta"


def _meta_state(ref):
    dtype = {"float32": torch.float32, "float16": torch.float16}
    return {
        k: torch.empty(v["shape"], dtype=dtype[v["dtype"]], device="meta")
        for k, v in ref["state_dict"].items()
    }


def _load_meta(reader, ckpt):
    config, state, unused = reader(ckpt, "meta-file")
    with torch.device("meta"):
        model = Wav2Vec2Model(config)
    report = load_strict(model, state, "meta-file", ignore=unused.__contains__)
    assert report.missing == [] and report.unexpected == []
    return config, model, report


def _numel(model):
    """Parameters as stored in a file: the folded pos_conv weight counts as weight_v + weight_g."""
    return sum(p.numel() for p in model.state_dict().values()) + model.cfg.conv_pos


def test_contentvec_real_shapes():
    ref = _ref("checkpoint_best_legacy_500.json")
    ckpt = {"args": None, "cfg": copy.deepcopy(ref["config"]), "model": _meta_state(ref)}
    config, model, report = _load_meta(read_fairseq_hubert, ckpt)
    assert model.num_layers == 12  # encoder_layers_1=3 (ContentVec's extra layers) is ignored
    assert config.embed_dim == 768 and config.final_proj_dim == 256
    assert not config.layer_norm_first and config.extractor_mode == "group_norm"
    assert set(report.ignored) == {"mask_emb", "label_embs_concat"}
    assert _numel(model) == ref["total_params"] - 768 - 504 * 256
    assert config.num_frames(16000) == 49 and config.receptive_field() == 400


def test_cnhubert_large_real_shapes():
    ref = _ref("chinese-hubert-large-fairseq-ckpt.json")
    ckpt = {"args": None, "cfg": copy.deepcopy(ref["config"]), "model": _meta_state(ref)}
    config, model, _ = _load_meta(read_fairseq_hubert, ckpt)
    assert model.num_layers == 24 and config.embed_dim == 1024
    assert config.layer_norm_first and config.extractor_mode == "layer_norm"
    assert config.final_proj_dim == 768
    assert _numel(model) == ref["total_params"] - 1024 - 504 * 768


def test_wavlm_base_plus_real_shapes():
    ref = _ref("WavLM-Base+.json")
    ckpt = {"cfg": copy.deepcopy(ref["config"]), "model": _meta_state(ref)}
    config, model, _ = _load_meta(read_wavlm, ckpt)
    assert config.rel_pos.num_buckets == 320 and config.rel_pos.max_distance == 800
    assert config.rel_pos.gru_rel_pos and not config.normalize_waveform
    assert model.encoder.layers[0].self_attn.relative_attention_bias is not None
    assert model.encoder.layers[1].self_attn.relative_attention_bias is None
    assert _numel(model) == ref["total_params"] - 768


def test_dphubert_real_shapes():
    ref = _ref("DPHuBERT-sp0.75.json")
    ckpt = {"state_dict": _meta_state(ref), "config": copy.deepcopy(ref["config"]),
            "distill_linear_projs": {}}  # fmt: skip
    config, model, _ = _load_meta(read_dphubert, ckpt)
    assert model.encoder.layers[11].self_attn is None  # attention pruned away in the last layer
    assert model.feature_extractor.dummy_weight.shape == (380,)
    assert _numel(model) == ref["total_params"]


def test_hubert_soft_real_shapes():
    ref = _ref("hubert-soft-0d54a1f4.json")
    config, model, report = _load_meta(read_hubert_soft, _meta_state(ref))
    assert config.embed_dim == 768 and config.final_proj_dim == 256 and model.num_layers == 12
    assert config.layers[0].num_heads == 12 and config.layers[0].ffn_dim == 3072
    assert config.conv_pos == 128 and config.conv_pos_groups == 16
    assert set(report.ignored) == {"masked_spec_embed", "label_embedding.weight"}
    assert _numel(model) == ref["total_params"] - 768 - 100 * 256


@pytest.mark.parametrize("json_name, width", [("whisper-medium.json", 1024),
                                              ("whisper-large-v2.json", 1280)])  # fmt: skip
def test_whisper_real_shapes(json_name, width):
    ref = _ref(json_name)
    ckpt = {"dims": dict(ref["config"]), "model_state_dict": _meta_state(ref)}
    model, dims, report = read_whisper(ckpt, "meta-file")
    assert report.missing == [] and report.unexpected == []
    assert dims["n_audio_state"] == width
    assert len(report.ignored) == ref["decoder_keys"]
    assert sum(p.numel() for p in model.state_dict().values()) == ref["encoder_params"]


@pytest.mark.slow
def test_hubert_soft_real_size_file(tmp_path):
    """One full-size (94.6 M parameters, 378 MB) hubert-soft file through the real loader."""
    import vencoder

    path = tmp_path / "hubert-soft-0d54a1f4.pt"
    torch.save(random_state(hubert_soft_layout()), path)
    enc = vencoder.get_speech_encoder("hubertsoft", device="cpu", path=path)
    assert enc.dim == 256
    assert enc.encoder(0.1 * torch.randn(16000)).shape == (1, 256, 50)
