"""Feature extraction of long inputs in bounded memory (preprocess_hubert_f0.py).

- :func:`spectrogram_blocked`: the linear spectrogram of §5.1 computed a block of frames at a
  time; every frame is computed from the same samples as in one pass (``center=False`` frames
  are independent), so the result equals :func:`modules.mel_processing.spectrogram_torch`.
- :func:`encode_chunked`: a speech encoder over chunks of ``chunk_s`` seconds with
  ``context_s`` seconds of real signal on each side, computed and then dropped. The HuBERT-style
  conv front-end maps a chunk that starts at sample ``320·k`` onto global frames ``k, k+1, ...``;
  the transformer's attention and the first layer's group norm see the chunk and its context
  rather than the whole file, so the units differ slightly from one pass. Inputs up to
  ``chunk_s + 2·context_s`` run in one pass, exactly as so-vits does.
"""

from __future__ import annotations

import torch

HOP16 = 320  # samples per unit frame at 16 kHz (50 frames/s)


def spectrogram_blocked(wav: torch.Tensor, block_frames: int = 4096, n_fft: int = 2048,
                        hop: int = 512, win: int = 2048) -> torch.Tensor:  # fmt: skip
    """``[n_fft//2+1, L // hop]`` float32 spectrogram of ``wav`` ``[L]`` (44.1 kHz), in blocks
    of ``block_frames`` frames (peak memory of one block, not of the whole file)."""
    from modules.mel_processing import reflect_pad, spectrogram_torch

    n_frames = len(wav) // hop
    if n_frames <= block_frames:
        return spectrogram_torch(wav[None], n_fft, 44100, hop, win, center=False)[0]
    pad = (n_fft - hop) // 2
    padded = reflect_pad(wav[None], pad, pad)[0]
    out = torch.empty(n_fft // 2 + 1, n_frames)
    for a in range(0, n_frames, block_frames):
        b = min(a + block_frames, n_frames)
        seg = padded[a * hop : (b - 1) * hop + n_fft]
        out[:, a:b] = _frames_spectrogram(seg, n_fft, hop, win)
    return out


def _frames_spectrogram(seg: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    """The magnitude of :func:`spectrogram_torch` for an already padded segment ``[S]``."""
    from modules.mel_processing import hann_window

    window = hann_window(win, seg.dtype, seg.device)
    spec = torch.stft(seg[None], n_fft, hop_length=hop, win_length=win, window=window,
                      center=False, normalized=False, onesided=True, return_complex=True)  # fmt: skip
    spec = torch.view_as_real(spec)
    return torch.sqrt(spec.pow(2).sum(-1) + 1e-6)[0]


def chunkable(encoder) -> bool:
    """Encoders with a HuBERT-style conv front-end (320-sample hop), where chunks line up."""
    from vencoder.ssl import Wav2Vec2Encoder

    return isinstance(encoder, Wav2Vec2Encoder)


def encode_chunked(encoder, wav16k: torch.Tensor, chunk_s: float = 30.0,
                   context_s: float = 5.0) -> torch.Tensor:  # fmt: skip
    """``encoder.encoder(wav16k)`` (``[L16]`` → ``[1, C, T16]``), chunk by chunk for long
    inputs (see the module docstring); encoders that cannot be chunked run in one pass."""
    chunk = max(1, int(chunk_s * 16000) // HOP16)  # frames
    ctx = max(0, int(context_s * 16000) // HOP16)
    n = len(wav16k)
    if not chunkable(encoder) or n <= (chunk + 2 * ctx) * HOP16:
        return encoder.encoder(wav16k)
    out = []
    a = 0
    while True:
        lo = max(0, a - ctx)
        end = (a + chunk + ctx) * HOP16 + 400  # the last frame's window reaches 400 samples
        units = encoder.encoder(wav16k[lo * HOP16 : end])  # [1, C, t]
        last = end >= n
        out.append(units[:, :, a - lo : None if last else a - lo + chunk])
        if last:
            break
        a += chunk
    return torch.cat(out, dim=2)
