"""Numerical cross-check: each encoder against a straightforward re-implementation of the
original code's equations, run directly on the file's state dict with the file's own key names.

The references below follow the producing code (fairseq ``HubertModel.extract_features``,
unilm ``WavLM``, pyf98 ``DPHuBERT`` / torchaudio ``wav2vec2_model``, bshall ``HubertSoft.units``,
openai ``AudioEncoder``). They share nothing with ``vencoder`` except the file: no key mapping, no
weight-norm helper (``torch._weight_norm`` is used), and attention is computed by different code
paths (``F.multi_head_attention_forward``, ``nn.TransformerEncoderLayer``, explicit softmax).
So a wrong key mapping, a mis-folded weight norm, a wrong norm placement or a wrong layer choice
shows up as a mismatch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import vencoder
from tests.vencoder_checkpoints import (
    TINY_CNHUBERT,
    TINY_CONTENTVEC,
    TINY_DPHUBERT,
    TINY_HUBERT_SOFT,
    TINY_WAVLM,
    TINY_WHISPER,
    reference_json,
    write_dphubert,
    write_fairseq_hubert,
    write_hubert_soft,
    write_wavlm,
    write_whisper,
)
from vencoder.formats import parse_conv_layers

torch.set_num_threads(2)
TOL = dict(rtol=1e-4, atol=1e-4)


def _ref(name):
    ref = reference_json(name)
    return ref


def _wav(n=16000, seed=1):
    return 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(seed))


def _pos_conv(sd, prefix, x_btc, groups):
    """x + GELU(SamePad(weight-normed grouped conv)) in [B, T, C]."""
    w = torch._weight_norm(sd[prefix + "weight_v"], sd[prefix + "weight_g"], 2)
    k = w.shape[-1]
    y = F.conv1d(x_btc.transpose(1, 2), w, sd[prefix + "bias"], padding=k // 2, groups=groups)
    if k % 2 == 0:
        y = y[:, :, :-1]
    return x_btc + F.gelu(y).transpose(1, 2)


def _ln(sd, prefix, x):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + "weight"], sd[prefix + "bias"])


def _lin(sd, prefix, x):
    return F.linear(x, sd[prefix + "weight"], sd.get(prefix + "bias"))


# ------------------------------------------------------------------------ fairseq / WavLM


def _t5_buckets(relative_positions, num_buckets, max_distance):
    """unilm WavLM ``_relative_positions_bucket(bidirectional=True)``, as written there."""
    relative_buckets = 0
    num_buckets = num_buckets // 2
    relative_buckets += (relative_positions > 0).to(torch.long) * num_buckets
    relative_positions = torch.abs(relative_positions)
    max_exact = num_buckets // 2
    is_small = relative_positions < max_exact
    large = max_exact + (
        torch.log(relative_positions.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    relative_buckets += torch.where(is_small, relative_positions, large)
    return relative_buckets


def fairseq_reference(sd, m, wav, output_layer=None, wavlm=None):
    """fairseq HubertModel / unilm WavLM ``extract_features`` (eval), ``m`` = model config."""
    convs = parse_conv_layers(m["conv_feature_layers"])
    x = wav[None, None]
    for i, (c, _, s) in enumerate(convs):
        p = f"feature_extractor.conv_layers.{i}."
        x = F.conv1d(x, sd[p + "0.weight"], sd.get(p + "0.bias"), stride=s)
        if m["extractor_mode"] == "layer_norm":
            x = _ln(sd, p + "2.1.", x.transpose(-2, -1)).transpose(-2, -1)
        elif i == 0:
            x = F.group_norm(x, c, sd[p + "2.weight"], sd[p + "2.bias"])
        x = F.gelu(x)
    x = _lin(sd, "post_extract_proj.", _ln(sd, "layer_norm.", x.transpose(1, 2)))
    x = _pos_conv(sd, "encoder.pos_conv.0.", x, m["conv_pos_groups"])
    lnf = m["layer_norm_first"]
    if not lnf:
        x = _ln(sd, "encoder.layer_norm.", x)
    x = x.transpose(0, 1)  # T x B x C, as fairseq
    t, b, e = x.shape
    h = m["encoder_attention_heads"]
    position_bias = None
    for i in range(m["encoder_layers"]):
        p = f"encoder.layers.{i}."

        def attn(q, p=p):
            nonlocal position_bias
            mask = None
            if wavlm is not None:
                table = sd.get(p + "self_attn.relative_attention_bias.weight")
                if position_bias is None and table is not None:
                    rel = torch.arange(t)[None, :] - torch.arange(t)[:, None]
                    values = F.embedding(_t5_buckets(rel, *wavlm), table).permute(2, 0, 1)
                    position_bias = values.unsqueeze(0).repeat(b, 1, 1, 1).view(b * h, t, t)
                if position_bias is not None:
                    ql = q.transpose(0, 1).reshape(b, t, h, -1).permute(0, 2, 1, 3)
                    g = _lin(sd, p + "self_attn.grep_linear.", ql).view(b, h, t, 2, 4).sum(-1)
                    gate_a, gate_b = torch.sigmoid(g).chunk(2, dim=-1)
                    gate = gate_a * (gate_b * sd[p + "self_attn.grep_a"] - 1.0) + 2.0
                    mask = gate.view(b * h, -1, 1) * position_bias
            s = p + "self_attn."
            out, _ = F.multi_head_attention_forward(
                q, q, q, e, h, torch.empty([0]),
                torch.cat([sd[s + "q_proj.bias"], sd[s + "k_proj.bias"], sd[s + "v_proj.bias"]]),
                None, None, False, 0.0, sd[s + "out_proj.weight"], sd[s + "out_proj.bias"],
                training=False, need_weights=False, attn_mask=mask,
                use_separate_proj_weight=True, q_proj_weight=sd[s + "q_proj.weight"],
                k_proj_weight=sd[s + "k_proj.weight"], v_proj_weight=sd[s + "v_proj.weight"],
            )  # fmt: skip
            return out

        def ffn(y, p=p):
            return _lin(sd, p + "fc2.", F.gelu(_lin(sd, p + "fc1.", y)))

        if lnf:
            x = x + attn(_ln(sd, p + "self_attn_layer_norm.", x))
            x = x + ffn(_ln(sd, p + "final_layer_norm.", x))
        else:
            x = _ln(sd, p + "self_attn_layer_norm.", x + attn(x))
            x = _ln(sd, p + "final_layer_norm.", x + ffn(x))
        if output_layer is not None and i == output_layer - 1:
            break
    x = x.transpose(0, 1)
    if lnf and output_layer is None:
        x = _ln(sd, "encoder.layer_norm.", x)
    return x


def _model_cfg(ref, overrides):
    m = dict(ref["config"]["model"] if "model" in ref["config"] else ref["config"])
    m.update(overrides)
    return m


def test_contentvec_matches_fairseq_equations(tmp_path):
    ref = _ref("checkpoint_best_legacy_500.json")
    path = tmp_path / "cv.pt"
    sd = write_fairseq_hubert(path, ref, TINY_CONTENTVEC, ["0", "1"], optimizer_state=False)
    m = _model_cfg(ref, TINY_CONTENTVEC)
    wav = _wav()
    with torch.no_grad():
        l12 = fairseq_reference(sd, m, wav, output_layer=12)
        l9 = _lin(sd, "final_proj.", fairseq_reference(sd, m, wav, output_layer=9))
    out12 = vencoder.get_speech_encoder("vec768l12", "cpu", path=path).encoder(wav)
    out9 = vencoder.get_speech_encoder("vec256l9", "cpu", path=path).encoder(wav)
    torch.testing.assert_close(out12, l12.transpose(1, 2), **TOL)
    torch.testing.assert_close(out9, l9.transpose(1, 2), **TOL)


def test_cnhubert_matches_fairseq_equations(tmp_path):
    ref = _ref("chinese-hubert-large-fairseq-ckpt.json")
    path = tmp_path / "cn.pt"
    sd = write_fairseq_hubert(path, ref, TINY_CNHUBERT, ["16", "413"], optimizer_state=False)
    wav = _wav()
    with torch.no_grad():
        expected = fairseq_reference(sd, _model_cfg(ref, TINY_CNHUBERT), wav)
    out = vencoder.get_speech_encoder("cnhubertlarge", "cpu", path=path).encoder(wav)
    torch.testing.assert_close(out, expected.transpose(1, 2), **TOL)


def test_wavlm_matches_unilm_equations(tmp_path):
    ref = _ref("WavLM-Base+.json")
    path = tmp_path / "wavlm.pt"
    sd = write_wavlm(path, ref, TINY_WAVLM)
    m = _model_cfg(ref, TINY_WAVLM)
    # 2 s: relative distances up to 99 frames reach the log-spaced buckets (exact below 8 here)
    wav = _wav(32000)
    with torch.no_grad():
        expected = fairseq_reference(sd, m, wav, wavlm=(m["num_buckets"], m["max_distance"]))
        no_bias = fairseq_reference(sd, m, wav)
    out = vencoder.get_speech_encoder("wavlmbase+", "cpu", path=path).encoder(wav)
    torch.testing.assert_close(out, expected.transpose(1, 2), **TOL)
    assert not torch.allclose(out, no_bias.transpose(1, 2), **TOL)  # the bias matters


# ------------------------------------------------------------------------ DPHuBERT


def dphubert_reference(sd, c, wav):
    """pyf98/DPHuBERT ``wav2vec2_model(**config)(wav)[0]`` (eval), written out."""
    x = wav[None, None]
    for i, (ch, _, s) in enumerate(c["extractor_conv_layer_config"]):
        p = f"feature_extractor.conv_layers.{i}."
        x = F.conv1d(x, sd[p + "conv.weight"], sd.get(p + "conv.bias"), stride=s)
        if p + "layer_norm.weight" in sd:
            x = F.group_norm(x, ch, sd[p + "layer_norm.weight"], sd[p + "layer_norm.bias"])
        x = F.gelu(x)
    x = x.transpose(1, 2) * sd["feature_extractor.dummy_weight"]
    x = _lin(sd, "encoder.feature_projection.projection.",
             _ln(sd, "encoder.feature_projection.layer_norm.", x))  # fmt: skip
    x = _pos_conv(sd, "encoder.transformer.pos_conv_embed.conv.", x, c["encoder_pos_conv_groups"])
    x = _ln(sd, "encoder.transformer.layer_norm.", x)
    b, t, _ = x.shape
    d = c["encoder_head_dim"]
    for i in range(c["encoder_num_layers"]):
        p = f"encoder.transformer.layers.{i}."
        if p + "attention.q_proj.weight" in sd:
            h = c["encoder_num_heads"][i]
            q = _lin(sd, p + "attention.q_proj.", x).view(b, t, h, d).transpose(1, 2)
            k = _lin(sd, p + "attention.k_proj.", x).view(b, t, h, d).transpose(1, 2)
            v = _lin(sd, p + "attention.v_proj.", x).view(b, t, h, d).transpose(1, 2)
            weights = torch.softmax((q * d**-0.5) @ k.transpose(-2, -1), dim=-1)
            a = (weights @ v).transpose(1, 2).reshape(b, t, h * d)
            x = x + _lin(sd, p + "attention.out_proj.", a)
        x = _ln(sd, p + "layer_norm.", x)
        if p + "feed_forward.intermediate_dense.weight" in sd:
            y = F.gelu(_lin(sd, p + "feed_forward.intermediate_dense.", x))
            x = x + _lin(sd, p + "feed_forward.output_dense.", y)
        x = _ln(sd, p + "final_layer_norm.", x)
    return x


def test_dphubert_matches_reference_equations(tmp_path):
    ref = _ref("DPHuBERT-sp0.75.json")
    path = tmp_path / "dp.pth"
    sd = write_dphubert(path, ref, TINY_DPHUBERT)
    c = {**ref["config"], **TINY_DPHUBERT}
    wav = _wav()
    with torch.no_grad():
        expected = dphubert_reference(sd, c, wav)
    out = vencoder.get_speech_encoder("dphubert", "cpu", path=path).encoder(wav)
    torch.testing.assert_close(out, expected.transpose(1, 2), **TOL)


# ------------------------------------------------------------------------ hubert-soft


class _BshallHubertSoft(torch.nn.Module):
    """bshall/hubert ``HubertSoft`` built from torch's own modules (names as in the file)."""

    def __init__(self, hidden, ffn, layers, proj, conv, pos_kernel, pos_groups):
        super().__init__()
        nn = torch.nn
        fe = nn.Module()
        fe.conv0 = nn.Conv1d(1, conv, 10, 5, bias=False)
        fe.norm0 = nn.GroupNorm(conv, conv)
        for i in (1, 2, 3, 4):
            setattr(fe, f"conv{i}", nn.Conv1d(conv, conv, 3, 2, bias=False))
        for i in (5, 6):
            setattr(fe, f"conv{i}", nn.Conv1d(conv, conv, 2, 2, bias=False))
        self.feature_extractor = fe
        self.feature_projection = nn.Module()
        self.feature_projection.norm = nn.LayerNorm(conv)
        self.feature_projection.projection = nn.Linear(conv, hidden)
        self.positional_embedding = nn.Module()
        self.positional_embedding.conv = nn.Conv1d(
            hidden, hidden, pos_kernel, padding=pos_kernel // 2, groups=pos_groups
        )
        self.norm = nn.LayerNorm(hidden)
        layer = nn.TransformerEncoderLayer(hidden, 12, ffn, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.proj = nn.Linear(hidden, proj)

    def units(self, wav):
        fe = self.feature_extractor
        x = F.pad(wav, (40, 40))[:, None]
        x = F.gelu(fe.norm0(fe.conv0(x)))
        for i in range(1, 7):
            x = F.gelu(getattr(fe, f"conv{i}")(x))
        x = self.feature_projection.projection(self.feature_projection.norm(x.transpose(1, 2)))
        y = self.positional_embedding.conv(x.transpose(1, 2))
        x = x + F.gelu(y[:, :, :-1]).transpose(1, 2)
        return self.proj(self.encoder(self.norm(x)))


def test_hubert_soft_matches_bshall_model(tmp_path):
    path = tmp_path / "hs.pt"
    sd = write_hubert_soft(path, **TINY_HUBERT_SOFT)
    ref_model = _BshallHubertSoft(**TINY_HUBERT_SOFT).eval()
    state = {k.removeprefix("module."): v for k, v in sd.items()}
    pe = "positional_embedding.conv."
    state[pe + "weight"] = torch._weight_norm(
        state.pop(pe + "weight_v"), state.pop(pe + "weight_g"), 2
    )
    del state["masked_spec_embed"], state["label_embedding.weight"]
    ref_model.load_state_dict(state, strict=True)
    wav = _wav(12345)
    with torch.no_grad():
        expected = ref_model.units(wav[None])
    out = vencoder.get_speech_encoder("hubertsoft", "cpu", path=path).encoder(wav)
    torch.testing.assert_close(out, expected.transpose(1, 2), **TOL)


# ------------------------------------------------------------------------ whisper


def whisper_reference(sd, dims, mel):
    """openai-whisper ``AudioEncoder.forward`` (fp32), with its q·k scaling and softmax."""
    x = F.gelu(F.conv1d(mel, sd["encoder.conv1.weight"], sd["encoder.conv1.bias"], padding=1))
    x = F.gelu(
        F.conv1d(x, sd["encoder.conv2.weight"], sd["encoder.conv2.bias"], stride=2, padding=1)
    )
    x = x.permute(0, 2, 1) + sd["encoder.positional_embedding"]
    h = dims["n_audio_head"]
    for i in range(dims["n_audio_layer"]):
        p = f"encoder.blocks.{i}."
        y = _ln(sd, p + "attn_ln.", x)
        q, k, v = (_lin(sd, p + f"attn.{n}.", y) for n in ("query", "key", "value"))
        b, t, c = q.shape
        scale = (c // h) ** -0.25
        q = q.view(b, t, h, -1).permute(0, 2, 1, 3) * scale
        k = k.view(b, t, h, -1).permute(0, 2, 3, 1) * scale
        v = v.view(b, t, h, -1).permute(0, 2, 1, 3)
        w = F.softmax((q @ k).float(), dim=-1)
        x = x + _lin(sd, p + "attn.out.", (w @ v).permute(0, 2, 1, 3).flatten(start_dim=2))
        y = _ln(sd, p + "mlp_ln.", x)
        x = x + _lin(sd, p + "mlp.2.", F.gelu(_lin(sd, p + "mlp.0.", y)))
    return _ln(sd, "encoder.ln_post.", x)


def test_whisper_matches_openai_equations(tmp_path):
    from vencoder.whisper import log_mel_spectrogram

    ref = _ref("whisper-medium.json")
    path = tmp_path / "medium.pt"
    sd = write_whisper(path, ref, TINY_WHISPER)
    sd = {k: v.float() for k, v in sd.items()}
    dims = {**ref["config"], **TINY_WHISPER}
    wav = _wav(16000)
    with torch.no_grad():
        mel = log_mel_spectrogram(F.pad(wav, (0, 480000 - 16000)), 80)
        expected = whisper_reference(sd, dims, mel[None])[:, : 16000 // 320]
    out = vencoder.get_speech_encoder("whisper-ppg", "cpu", path=path).encoder(wav)
    torch.testing.assert_close(out, expected.transpose(1, 2), **TOL)


def test_whisper_log_mel_recipe():
    """§6 recipe written with numpy + librosa (independent of torch.stft)."""
    import librosa
    import numpy as np

    from vencoder.whisper import log_mel_spectrogram

    wav = _wav(480000, seed=3).numpy()
    padded = np.pad(wav, 200, mode="reflect")
    window = np.hanning(401)[:-1]  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(padded, 400)[::160][:-1]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # [3000, 201]
    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = (np.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0
    ours = log_mel_spectrogram(torch.from_numpy(wav), 80).numpy()
    assert ours.shape == (80, 3000)
    np.testing.assert_allclose(ours, log_spec, rtol=1e-4, atol=1e-4)
