"""The fast-start training options used by the demo voice (bench/train_demo_voice.py):
``train.disc_start_step`` (no discriminator before it) and ``train.max_frames`` (item crop).
Both are absent from the standard configs, which keep the reference behaviour."""

from __future__ import annotations

import json

import torch

from common.hparams import HParams
from training.synthetic import tiny_config, write_training_set


def _step_inputs(hps, b=2, n=24):
    from modules.mel_processing import spectrogram_torch

    gen = torch.Generator().manual_seed(0)
    y = 0.5 * torch.sin(2 * torch.pi * 220.0 * torch.arange(n * 512) / 44100)[None, None]
    y = (y + 0.01 * torch.randn(b, 1, n * 512, generator=gen)).float()
    spec = spectrogram_torch(y.squeeze(1), 2048, 44100, 512, 2048)
    return dict(c=torch.randn(b, hps.model.ssl_dim, n, generator=gen),
                f0=torch.full((b, n), 220.0), spec=spec, y=y,
                g=torch.zeros(b, 1, dtype=torch.long), lengths=torch.full((b,), n),
                uv=torch.ones(b, n), volume=None)  # fmt: skip


def test_train_step_without_discriminator_leaves_d_alone():
    from models import MultiPeriodDiscriminator, SynthesizerTrn
    from training.trainer import StepContext, train_step

    torch.manual_seed(0)
    hps = HParams(**tiny_config({"a": 0, "b": 1}, ssl_dim=8, segment_frames=4))
    net_g = SynthesizerTrn(1025, 4, **hps.model)
    net_d = MultiPeriodDiscriminator()
    optim_g = torch.optim.AdamW(net_g.parameters(), 1e-3)
    optim_d = torch.optim.AdamW(net_d.parameters(), 1e-3)
    ctx = StepContext.create(hps, net_g, net_d, optim_g, optim_d, torch.device("cpu"))
    assert ctx.adversarial  # the reference default
    d_before = {k: v.clone() for k, v in net_d.state_dict().items()}
    g_before = {k: v.clone() for k, v in net_g.state_dict().items()}
    ctx.adversarial = False
    out = train_step(ctx, **_step_inputs(hps))
    assert all(torch.equal(v, net_d.state_dict()[k]) for k, v in d_before.items())
    assert all(p.grad is None for p in net_d.parameters()) and not optim_d.state
    assert float(out["loss_gen"]) == float(out["loss_fm"]) == float(out["loss_disc"]) == 0.0
    assert float(out["loss_mel"]) > 0 and out["grad_norm_g"] > 0
    assert any(not torch.equal(v, net_g.state_dict()[k]) for k, v in g_before.items())


def test_max_frames_cuts_training_items_not_validation(tmp_path, monkeypatch):
    from data_utils import TextAudioSpeakerLoader

    info = write_training_set(tmp_path, n_speakers=1, files_per_speaker=3, duration=1.0,
                              ssl_dim=8)  # fmt: skip
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(info["spk"], ssl_dim=8)
    full = TextAudioSpeakerLoader("filelists/train.txt", HParams(**cfg))
    lengths = [full[i][2].shape[1] for i in range(len(full))]
    assert min(lengths) > 30
    cfg["train"]["max_frames"] = 30
    hps = HParams(**json.loads(json.dumps(cfg)))
    cut = TextAudioSpeakerLoader("filelists/train.txt", hps)
    for i in range(len(cut)):
        c, f0, spec, wav, _spk, uv, _vol = cut[i]
        assert c.shape[1] == f0.shape[0] == spec.shape[1] == uv.shape[0] == 30
        assert wav.shape[1] == 30 * 512
    uncut = TextAudioSpeakerLoader("filelists/train.txt", hps, crop=False)
    assert [uncut[i][2].shape[1] for i in range(len(uncut))] == lengths
