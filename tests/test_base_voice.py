"""The shipped real-voice base (pretrain/base_voice, bench/train_base_voice.py): what the demo's
real-voice conversion and the recipe's default --base_model rely on."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "pretrain" / "base_voice"


def test_shipped_base_voice_is_a_small_release_of_real_singers_that_fits_its_config():
    from bench.train_base_voice import DEMO_SOURCE, DEMO_TARGET, ENCODER, MAX_RELEASE_BYTES
    from common.checkpoint import check_checkpoint_fit, checkpoint_step, safe_load
    from common.hparams import load_config
    from models import SynthesizerTrn

    pth = FOLDER / "base_voice.pth"
    assert pth.stat().st_size <= MAX_RELEASE_BYTES
    ckpt = safe_load(pth)
    assert checkpoint_step(ckpt, pth) == int((FOLDER / "step.txt").read_text())
    cfg = json.loads((FOLDER / "config.json").read_text())
    assert cfg["model"]["speech_encoder"] == ENCODER
    assert {DEMO_SOURCE, DEMO_TARGET} <= set(cfg["spk"])
    hps = load_config(FOLDER / "config.json", purpose="infer")
    net = SynthesizerTrn(hps.data.filter_length // 2 + 1,
                         hps.train.segment_size // hps.data.hop_length, **hps.model)  # fmt: skip
    check_checkpoint_fit(
        pth, ckpt["model"], net.state_dict(), "its config.json", allow_partial=True
    )
    assert all(v.dtype.is_floating_point is False or v.dtype.itemsize == 2
               for v in ckpt["model"].values())  # fmt: skip
    licence = (FOLDER / "LICENSE.md").read_text()
    for source in ("vocadito", "LibriSpeech", "sms-tools", "PTDB-TUG", "CC BY 4.0", "ODbL"):
        assert source in licence


def test_shipped_base_voice_carries_the_demo_clips_it_is_measured_on():
    """The demo's real-voice row needs the held-out phrase and reference audio of both singers on
    a clone without ../shared."""
    from bench.train_base_voice import BANK_PIECES, DEMO_SOURCE, DEMO_TARGET

    held = FOLDER / "demo" / f"{DEMO_SOURCE}_heldout.flac"
    info = sf.info(held)
    assert info.samplerate == 44100 and 1.0 < info.duration < 10
    for spk in (DEMO_SOURCE, DEMO_TARGET):
        bank = sorted((FOLDER / "demo" / "bank" / spk).glob("*.flac"))
        assert len(bank) == BANK_PIECES
        assert held.name not in {p.name for p in bank}


@pytest.mark.parametrize(
    "given, config, encoder, expected",
    [
        (None, "small", "whisper-ppg-ct2", "base"),
        (["none"], "small", "whisper-ppg-ct2", None),
        (None, "template", "whisper-ppg-ct2", None),
        (None, "small", "vec768l12", None),
        (["G_9.pth", "D_9.pth"], "template", "vec768l12", ["G_9.pth", "D_9.pth"]),
    ],
)
def test_recipe_fine_tunes_from_the_base_voice_by_default_when_it_fits(given, config, encoder,
                                                                       expected, capsys):  # fmt: skip
    from bench.quality_recipe import default_base_model

    args = Namespace(base_model=given, config=config, speech_encoder=encoder)
    got = default_base_model(args)
    if expected == "base":
        assert got == [str(FOLDER / "base_voice.pth")]
    else:
        assert got == expected
    if given is None and expected is None:
        assert "from scratch" in capsys.readouterr().out
