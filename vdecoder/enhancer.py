"""NSF-HiFiGAN enhancer: re-synthesise so-vits output from its own mel (sovits-4.1.md §15 step 9).

``Enhancer('nsf-hifigan', 'pretrain/nsf_hifigan/model').enhance(audio [1, L], sr, f0 [1, T, 1],
hop, adaptive_key=0)``:

1. ``adaptive_sr = 100·round(44100·2^(key/12)/100)``; the audio is resampled to it (so the
   vocoder, which assumes 44.1 kHz, sees it shifted by about ``key`` semitones);
2. f0 is scaled by ``44100/adaptive_sr`` and remapped in time with ``np.interp`` onto
   ``len(audio_res)//512 + 1`` frames (edge values held);
3. mel → NSF-HiFiGAN → audio, resampled back from ``adaptive_sr`` to 44100.

Returns ``(audio [L'] float tensor, 44100)``. Resampling uses :func:`common.audio.resample`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vdecoder.pretrained import DEFAULT_NSF_HIFIGAN, Vocoder, _resample_torch

logger = logging.getLogger(__name__)

__all__ = ["Enhancer"]


class Enhancer:
    def __init__(
        self,
        enhancer_type: str = "nsf-hifigan",
        enhancer_ckpt: str | os.PathLike = DEFAULT_NSF_HIFIGAN,
        device: Any = None,
    ):
        if enhancer_type != "nsf-hifigan":
            raise ValueError(f"Unknown enhancer {enhancer_type!r}; expected 'nsf-hifigan'")
        self.vocoder = Vocoder("nsf-hifigan", enhancer_ckpt, device=device)
        self.vocoder.load()  # the reference loads the enhancer eagerly
        self.device = self.vocoder.device
        self.enhancer_sample_rate = self.vocoder.vocoder_sample_rate
        self.enhancer_hop_size = self.vocoder.vocoder_hop_size

    @torch.no_grad()
    def enhance(
        self,
        audio: torch.Tensor,
        sample_rate: int,
        f0: torch.Tensor,
        hop_size: int,
        adaptive_key: float = 0,
        silence_front: float = 0,
    ) -> tuple[torch.Tensor, int]:
        """Enhance ``audio [1, L]`` at ``sample_rate`` given ``f0 [1, T, 1]`` at ``hop_size``.

        ``silence_front`` seconds at the start are skipped and given back as zeros.
        """
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        if f0.dim() == 2:
            f0 = f0.unsqueeze(-1)
        sr_out = self.enhancer_sample_rate
        hop_out = self.enhancer_hop_size
        start_frame = int(silence_front * sample_rate / hop_size)
        real_silence_front = start_frame * hop_size / sample_rate
        audio = audio[:, int(np.round(real_silence_front * sample_rate)) :]
        f0 = f0[:, start_frame:, :]

        adaptive_factor = 2 ** (-adaptive_key / 12)
        adaptive_sample_rate = 100 * int(np.round(sr_out / adaptive_factor / 100))
        real_factor = sr_out / adaptive_sample_rate

        audio_res = _resample_torch(audio.float(), sample_rate, adaptive_sample_rate)
        n_frames = int(audio_res.size(-1) // hop_out + 1)

        f0_np = f0[0, :, 0].detach().cpu().double().numpy() * real_factor
        if f0_np.size == 0:
            raise ValueError("Enhancer.enhance: f0 is empty")
        time_org = (hop_size / sample_rate) * np.arange(len(f0_np)) / real_factor
        time_frame = (hop_out / sr_out) * np.arange(n_frames)
        f0_res = np.interp(time_frame, time_org, f0_np, left=f0_np[0], right=f0_np[-1])
        f0_res = torch.from_numpy(f0_res).unsqueeze(0).float().to(self.device)  # [1, n_frames]

        mel = self.vocoder.mel.get_mel(audio_res.to(self.device))  # [1, n_mels, T]
        if mel.size(-1) == 0:
            logger.warning("Enhancer: input shorter than one frame; returned unenhanced")
            enhanced = _resample_torch(audio.float().view(-1), sample_rate, sr_out)
        else:
            model = self.vocoder.load()
            dtype = next(model.parameters()).dtype
            enhanced = model(mel.to(dtype), f0_res[:, : mel.size(-1)]).view(-1).float()
            enhanced = _resample_torch(enhanced, adaptive_sample_rate, sr_out)
        if start_frame > 0:
            enhanced = F.pad(enhanced, (int(np.round(sr_out * real_silence_front)), 0))
        return enhanced, sr_out
