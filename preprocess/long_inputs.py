"""Feature extraction of long inputs in bounded memory (preprocess_hubert_f0.py).

- :func:`spectrogram_blocked`: the linear spectrogram of §5.1 computed a block of frames at a
  time; every frame is computed from the same samples as in one pass (``center=False`` frames
  are independent), so the result equals :func:`modules.mel_processing.spectrogram_torch`.
- :func:`encode_chunked`: a speech encoder over chunks of ``chunk_s`` seconds with
  ``context_s`` seconds of real signal on each side, computed and then dropped. The HuBERT-style
  conv front-end maps a chunk that starts at sample ``320·k`` onto global frames ``k, k+1, ...``.
  The normalisations that see the whole input in one pass take the whole file's statistics
  (:meth:`vencoder.ssl.Wav2Vec2Encoder.whole_file_stats`: the first conv's per-channel group
  norm, the waveform layer norm of WavLM / DPHuBERT), so a loud and a quiet part of the file
  are normalised alike; only the transformer's attention sees the chunk and its context rather
  than the whole file, so the units differ slightly from one pass. Inputs up to
  ``whole_s`` (default ``chunk_s + 2·context_s``) run in one pass, exactly as so-vits does.
  ContentVec's first conv layer holds three copies of ``512 × samples/5`` floats (≈ 0.8 GB for a
  40 s window), so the chunk size sets most of the encoder's peak memory.
"""

from __future__ import annotations

import torch

HOP16 = 320  # samples per unit frame at 16 kHz (50 frames/s)


def spectrogram_blocked(wav: torch.Tensor, block_frames: int = 4096, n_fft: int = 2048,
                        hop: int = 512, win: int = 2048) -> torch.Tensor:  # fmt: skip
    """``[n_fft//2+1, L // hop]`` float32 spectrogram of ``wav`` ``[L]`` (44.1 kHz), in blocks
    of ``block_frames`` frames (peak memory of one block, not of the whole file; only the two
    edge blocks copy their reflect-padded samples, the others read ``wav`` in place)."""
    from modules.mel_processing import reflect_pad, spectrogram_torch

    n_frames = len(wav) // hop
    if n_frames <= block_frames:
        return spectrogram_torch(wav[None], n_fft, 44100, hop, win, center=False)[0]
    pad = (n_fft - hop) // 2
    head = reflect_pad(wav[None, : pad + n_fft], pad, 0)[0]  # padded[:pad + pad + n_fft]
    tail_from = len(wav) - (pad + n_fft)  # padded index of wav[tail_from] is tail_from + pad
    tail = reflect_pad(wav[None, tail_from:], 0, pad)[0]
    out = torch.empty(n_fft // 2 + 1, n_frames)
    for a in range(0, n_frames, block_frames):
        b = min(a + block_frames, n_frames)
        lo, hi = a * hop, (b - 1) * hop + n_fft  # in padded coordinates
        if hi <= len(head):
            seg = head[lo:hi]
        elif lo >= tail_from + pad:
            seg = tail[lo - tail_from - pad : hi - tail_from - pad]
        elif lo >= pad and hi <= pad + len(wav):
            seg = wav[lo - pad : hi - pad]
        else:  # a block reaching into a padded edge: copy just that block
            seg = torch.cat([head[lo:pad] if lo < pad else wav[:0],
                             wav[max(lo - pad, 0) : min(hi - pad, len(wav))],
                             tail[len(wav) - tail_from : hi - tail_from - pad]
                             if hi > pad + len(wav) else wav[:0]])  # fmt: skip
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
                   context_s: float = 5.0, whole_s: float | None = None) -> torch.Tensor:  # fmt: skip
    """``encoder.encoder(wav16k)`` (``[L16]`` → ``[1, C, T16]``), chunk by chunk for inputs
    longer than ``whole_s`` (see the module docstring); encoders that cannot be chunked run in
    one pass."""
    chunk = max(1, int(chunk_s * 16000) // HOP16)  # frames
    ctx = max(0, int(context_s * 16000) // HOP16)
    n = len(wav16k)
    whole = (chunk + 2 * ctx) * HOP16 if whole_s is None else int(whole_s * 16000)
    if not chunkable(encoder) or n <= whole:
        return encoder.encoder(wav16k)
    stats = encoder.whole_file_stats(wav16k)
    # [1, C, T16] filled chunk by chunk: no second copy of the units from a final cat
    out = None
    a = 0
    while True:
        lo = max(0, a - ctx)
        end = (a + chunk + ctx) * HOP16 + 400  # the last frame's window reaches 400 samples
        units = encoder.encoder(wav16k[lo * HOP16 : end], stats)  # [1, C, t]
        last = end >= n
        part = units[:, :, a - lo : None if last else a - lo + chunk]
        if out is None:  # the conv front-end's frame count for the whole input
            out = units.new_empty(*units.shape[:2], (n - 400) // HOP16 + 1)
        if a + part.shape[2] > out.shape[2]:  # not a HuBERT-style front-end after all
            out = torch.cat([out[:, :, :a], part], dim=2)
        else:
            out[:, :, a : a + part.shape[2]] = part
        filled = a + part.shape[2]
        del units, part
        if last:
            return out if filled == out.shape[2] else out[:, :, :filled].contiguous()
        a += chunk
