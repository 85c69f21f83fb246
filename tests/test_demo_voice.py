"""The shipped demo voice (pretrain/demo_voice/, made by bench/train_demo_voice.py)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from common.checkpoint import load_checkpoint, safe_load
from common.synthetic import DEMO_SINGERS

VOICE = Path(__file__).resolve().parent.parent / "pretrain" / "demo_voice"


def test_demo_voice_loads_fits_its_config_and_is_small():
    path = VOICE / "demo_voice.pth"
    assert path.stat().st_size <= 10 * 1000 * 1000
    config = json.loads((VOICE / "config.json").read_text(encoding="utf-8"))
    assert config["spk"] == {s.name: i for i, s in enumerate(DEMO_SINGERS)}
    assert config["model"]["speech_encoder"] == "whisper-ppg-ct2"  # what the demo extracts

    from common.hparams import HParams
    from models import SynthesizerTrn

    ckpt = safe_load(path)  # weights_only
    hps = HParams(**config)
    net = SynthesizerTrn(hps.data.filter_length // 2 + 1,
                         hps.train.segment_size // hps.data.hop_length, **hps.model)  # fmt: skip
    own = net.state_dict()
    model = ckpt["model"]
    assert set(model) == {k for k in own if not k.startswith("enc_q.")}  # a release file
    for k, v in model.items():
        assert v.shape == own[k].shape, k
        if v.is_floating_point():
            assert v.dtype == torch.float16, k  # compress_model.py -hf
            assert torch.isfinite(v).all(), k
    load_checkpoint(path, net)  # the loader inference uses (weights_only, cast to fp32)
    loaded = net.state_dict()
    for k, v in model.items():
        assert torch.equal(loaded[k], v.to(loaded[k].dtype)), k
