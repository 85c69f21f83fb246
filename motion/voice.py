"""The voice model's posterior encoder as a feature extractor: wav → z (mean ``m_q``) at 86.13 fps.

z is what the visemes model reads. Training and audio-only inference take it from ``enc_q`` on
the linear spectrogram (n_fft 2048, hop 512, the training spectrogram), **with** the speaker
embedding ``g`` (enc_q is trained with it; the reference ran it with ``g=None``, §9.6) and the
**mean** ``m_q`` (not a noisy sample, §9.7). Frame ``i`` covers output samples
``[512·i, 512·(i+1))``; its spectrogram window is centred on sample ``512·i + 256``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

SR = 44100
HOP = 512
FPS = SR / HOP  # 86.1328125


def frame_times(n_frames: int, sr: int = SR, hop: int = HOP) -> np.ndarray:
    """Centre time in s of each z frame ``[n_frames]``."""
    return (hop * np.arange(n_frames) + hop / 2) / sr


class PosteriorEncoder:
    """``enc_q`` of a so-vits-svc checkpoint plus its speaker table; :meth:`z` turns audio into z."""

    def __init__(self, model_path: str | os.PathLike, config_path: str | os.PathLike,
                 device: str = "cpu"):  # fmt: skip
        from common.checkpoint import load_checkpoint
        from common.hparams import load_config
        from models import SynthesizerTrn

        hps = load_config(config_path)
        self.sr = int(hps.data.sampling_rate)
        self.hop = int(hps.data.hop_length)
        self.n_fft = int(hps.data.filter_length)
        self.win = int(hps.data.win_length)
        if (self.sr, self.hop) != (SR, HOP):
            raise ValueError(f"{config_path}: the motion sidecar expects 44100 Hz / hop 512, "
                             f"got {self.sr} / {self.hop}")  # fmt: skip
        net = SynthesizerTrn(self.n_fft // 2 + 1, hps.train.segment_size // self.hop,
                             **hps.model.to_dict())  # fmt: skip
        load_checkpoint(model_path, net, None)
        self.enc_q = net.enc_q.eval().requires_grad_(False).to(device)
        self.emb_g = net.emb_g.eval().requires_grad_(False).to(device)
        self.spk2id = {str(k): int(v) for k, v in (hps.spk or {}).items()}
        self.channels = int(hps.model.inter_channels)
        self.device = device
        self.model_path, self.config_path = str(model_path), str(config_path)

    def speaker_id(self, speaker: str | int) -> int:
        if isinstance(speaker, str) and speaker in self.spk2id:
            return self.spk2id[speaker]
        if str(speaker).isdigit() and int(speaker) < self.emb_g.num_embeddings:
            return int(speaker)
        raise ValueError(f"speaker {speaker!r} is not in the voice model's speakers "
                         f"({', '.join(self.spk2id) or 'none'})")  # fmt: skip

    @torch.no_grad()
    def z(self, wav: np.ndarray, speaker: str | int) -> np.ndarray:
        """``wav`` float32 ``[L]`` at 44.1 kHz → ``m_q`` float32 ``[C, L // 512]``."""
        from modules.mel_processing import spectrogram_torch

        sid = self.speaker_id(speaker)
        y = torch.from_numpy(np.ascontiguousarray(wav, np.float32))[None].to(self.device)
        spec = spectrogram_torch(y.clamp(-1, 1), self.n_fft, self.sr, self.hop, self.win)
        g = self.emb_g(torch.tensor([[sid]], device=self.device)).transpose(1, 2)
        lengths = torch.tensor([spec.shape[-1]], device=self.device)
        _, m_q, _, _ = self.enc_q(spec, lengths, g=g)
        return m_q[0].float().cpu().numpy()
