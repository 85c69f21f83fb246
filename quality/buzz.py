"""Hop buzz: energy at the decoder's frame rate where the output should be quiet or unvoiced.

A so-vits decoder (NSF-HiFiGAN) makes one frame of audio per ``hop_length`` samples: 512 at
44.1 kHz, a frame rate of ``44100 / 512 = 86.13 Hz`` (:data:`DECODER_FRAME_RATE`). A half-trained
one leaves a faint periodic pattern at that rate, a comb of lines at ``k · 86.13 Hz``, in
silences and at voicing edges, and a pitch tracker may read it as a voiced 86 Hz. Two measures:

:func:`hop_buzz` (``hop_buzz_db``): **comb-to-background ratio** of the output minus that of the
source, in dB, over the stretches where the *source* is unvoiced (its f0 track is 0 on every
10 ms frame under an analysis window, plus one frame either side: silences, breaths, unvoiced
consonants of at least ~150 ms). The output's own tracker is not consulted, because a buzz it
reads as voiced is exactly what is looked for. In each 128 ms Hann window (2048 samples at
16 kHz, hop 512, 7.8 Hz bins), every tooth ``k · frame_rate`` (``k = 1 …`` while
``k · frame_rate ≤ MAX_HZ`` = 4 kHz) gets the mean power of the bins within ``ON_HZ`` (10 Hz) of
it over the mean power of its own background: the bins nearer to it than to any other tooth
but at least ``OFF_HZ`` (25 Hz) from it, in dB; the window's ratio is the mean over the teeth
(each tooth against its own neighbourhood, so the spectral tilt of speech or of low rumble does
not count), after adding ``FLOOR_POWER`` (1e-10, about 16-bit quantisation noise) to every bin
so digital silence reads 0 dB. The window ratios are averaged (dB) for the output and for the
source at the same windows; ``hop_buzz_db = output − source``. ≤ 0: no more buzz than the
source. White noise reads about -0.6 dB on either side (fewer bins on a tooth than beside it
bias the log mean), so noise against noise gives about 0 (within ±1 dB in the tests); over
noise of RMS 0.001 (-60 dBFS), one click every 512 samples at 44.1 kHz in the silences gives
+3 dB with clicks of 0.01, +15 dB with 0.05 and +27 dB with 0.2 (the Hann window's leakage
bounds the ratio near +30 dB).

:func:`f0_on_frame_rate`: share of the output's voiced 10 ms frames whose f0 is within
``TOLERANCE_CENTS`` (50 cents, ±2.9 %) of the frame rate or its octave (``LOCK_MULTIPLES``:
86.13 and 172.27 Hz at 44.1 kHz / 512, what a tracker locks to on a click train: the
fundamental, or the octave above as its likeliest octave error) while the source's f0 at that
frame, shifted by the transpose, is not (unvoiced, or voiced elsewhere); a note the source
really sings at F2/F3 (23 cents from 86.13/172.27 Hz) therefore does not count.

Both work on the 16 kHz analysis audio (:data:`quality.ANALYSIS_SR`): eval.py resamples the
output and the source, whatever their own rates, so the comb is the same on both sides.
"""

from __future__ import annotations

import numpy as np

from quality import ANALYSIS_SR
from quality.pitch import HOP as F0_HOP

DECODER_FRAME_RATE = 44100 / 512
"""Frame rate [Hz] of the project's models: ``sampling_rate / hop_length`` of the 44k configs."""
FRAME_RATE_RANGE = (70.0, 2000.0)
"""Accepted frame rates [Hz]: from 70 Hz every tooth has background bins (``OFF_HZ`` or more
from it, nearer to it than to the next) on the 7.8 Hz grid."""
WINDOW = 2048
"""Analysis window [samples at 16 kHz]: 128 ms, 7.8 Hz bins (the teeth are 86 Hz apart)."""
WINDOW_HOP = 512
"""Hop between analysis windows [samples at 16 kHz]: 32 ms."""
ON_HZ = 10.0
"""Comb bins: within this distance [Hz] of a tooth ``k · frame_rate``."""
OFF_HZ = 25.0
"""Background bins: at least this far [Hz] from every tooth."""
MAX_HZ = 4000.0
"""Teeth up to this frequency [Hz]."""
FLOOR_POWER = 1e-10
"""Added to every bin's power (full scale 1.0): digital silence has a ratio of 0 dB."""
TOLERANCE_CENTS = 50.0
"""An f0 within this many cents of ``m · frame_rate`` sits on the frame rate."""
LOCK_MULTIPLES = (1, 2)
"""Multiples ``m`` of the frame rate a tracker locks to on a hop buzz."""


def check_frame_rate(frame_rate: float) -> float:
    """``frame_rate`` as a float; ``ValueError`` (one line) outside :data:`FRAME_RATE_RANGE`."""
    lo, hi = FRAME_RATE_RANGE
    try:
        fr = float(frame_rate)
    except (TypeError, ValueError):
        raise ValueError(f"frame rate {frame_rate!r} is not a number") from None
    if not lo <= fr <= hi:
        raise ValueError(
            f"frame rate {fr:g} Hz is outside {lo:g}..{hi:g} Hz (sampling_rate / hop_length "
            f"of the model's config, e.g. 44100 / 512 = {DECODER_FRAME_RATE:.2f})"
        )
    return fr


def comb_weights(frame_rate: float, n_fft: int = WINDOW, sr: int = ANALYSIS_SR):
    """Averaging weights over the ``n_fft // 2 + 1`` rfft bins → ``(on, off)``, each
    ``[K, n_fft // 2 + 1]``: row ``k − 1`` averages the bins within :data:`ON_HZ` of tooth
    ``k · frame_rate`` (``on``) and the bins whose nearest tooth it is but at least
    :data:`OFF_HZ` away (``off``); ``K`` teeth up to :data:`MAX_HZ` (and below Nyquist)."""
    f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    n_teeth = int(min(MAX_HZ, sr / 2 - frame_rate / 2) // frame_rate)
    nearest = np.round(f / frame_rate)
    dist = np.abs(f - nearest * frame_rate)
    teeth = np.arange(1, n_teeth + 1)[:, None]
    own = nearest[None, :] == teeth
    on = (own & (dist <= ON_HZ)[None, :]).astype(np.float64)
    off = (own & (dist >= OFF_HZ)[None, :]).astype(np.float64)
    keep = (on.sum(axis=1) > 0) & (off.sum(axis=1) > 0)
    on, off = on[keep], off[keep]
    return on / on.sum(axis=1, keepdims=True), off / off.sum(axis=1, keepdims=True)


def unvoiced_windows(source_f0: np.ndarray, n_samples: int) -> np.ndarray:
    """Start samples of the analysis windows (:data:`WINDOW` long, every :data:`WINDOW_HOP`)
    under which the source's f0 track (10 ms frames, 0 = unvoiced) is 0 on every frame, plus
    one frame either side; windows that reach past the track are left out. Shape ``[W]``."""
    voiced = np.asarray(source_f0, dtype=np.float64) > 0
    t = len(voiced)
    if n_samples < WINDOW or t == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, n_samples - WINDOW + 1, WINDOW_HOP)
    lo = np.maximum(starts // F0_HOP - 1, 0)
    hi = -(-(starts + WINDOW) // F0_HOP) + 1  # exclusive
    inside = -(-(starts + WINDOW) // F0_HOP) <= t
    csum = np.r_[0, np.cumsum(voiced)]
    n_voiced = csum[np.minimum(hi, t)] - csum[lo]
    return starts[inside & (n_voiced == 0)]


def comb_ratio_db(wav: np.ndarray, starts: np.ndarray, frame_rate: float) -> np.ndarray:
    """Comb-to-background ratio [dB] of each window of ``wav`` (16 kHz) starting at ``starts``,
    shape ``[len(starts)]`` (see the module doc)."""
    if len(starts) == 0:
        return np.zeros(0)
    x = np.asarray(wav, dtype=np.float64)
    w = np.hanning(WINDOW)
    frames = x[starts[:, None] + np.arange(WINDOW)[None, :]] * w
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 / np.sum(w**2) + FLOOR_POWER
    on, off = comb_weights(frame_rate)
    return np.mean(10.0 * np.log10((power @ on.T) / (power @ off.T)), axis=1)


def hop_buzz(source: np.ndarray, output: np.ndarray, source_f0: np.ndarray,
             frame_rate: float = DECODER_FRAME_RATE) -> dict:  # fmt: skip
    """Hop buzz of ``output`` against ``source`` (both mono float at 16 kHz, ``source_f0`` the
    source's 10 ms f0 track [Hz, 0 = unvoiced]); the longer signal is cut to the shorter.

    Returns ``hop_buzz_db`` (output − source, dB), ``hop_buzz_output_db`` and
    ``hop_buzz_source_db`` (the mean comb-to-background ratios, dB) and ``hop_buzz_windows``
    (how many 128 ms windows were measured); the three ratios are ``None`` when the source has
    no unvoiced stretch long enough for a window.
    """
    fr = check_frame_rate(frame_rate)
    n = min(len(source), len(output))
    starts = unvoiced_windows(source_f0, n)
    if len(starts) == 0:
        return {"hop_buzz_db": None, "hop_buzz_output_db": None, "hop_buzz_source_db": None,
                "hop_buzz_windows": 0}  # fmt: skip
    out_db = float(np.mean(comb_ratio_db(output, starts, fr)))
    src_db = float(np.mean(comb_ratio_db(source, starts, fr)))
    return {"hop_buzz_db": out_db - src_db, "hop_buzz_output_db": out_db,
            "hop_buzz_source_db": src_db, "hop_buzz_windows": int(len(starts))}  # fmt: skip


def on_frame_rate(f0: np.ndarray, frame_rate: float = DECODER_FRAME_RATE) -> np.ndarray:
    """Boolean per frame: voiced and within :data:`TOLERANCE_CENTS` of ``m · frame_rate`` for an
    ``m`` in :data:`LOCK_MULTIPLES`."""
    f0 = np.asarray(f0, dtype=np.float64)
    out = np.zeros(f0.shape, dtype=bool)
    v = f0 > 0
    if v.any():
        teeth = frame_rate * np.asarray(LOCK_MULTIPLES, dtype=np.float64)
        cents = np.abs(1200.0 * np.log2(f0[v, None] / teeth[None, :]))
        out[v] = cents.min(axis=1) <= TOLERANCE_CENTS
    return out


def f0_on_frame_rate(source_f0: np.ndarray, output_f0: np.ndarray, transpose: float = 0.0,
                     frame_rate: float = DECODER_FRAME_RATE) -> dict:  # fmt: skip
    """Frames where the output's tracker sits on the frame rate and the source's does not.

    ``source_f0``/``output_f0``: 10 ms f0 tracks [Hz, 0 = unvoiced], cut to the shorter; the
    source is multiplied by ``2 ** (transpose / 12)`` first. Returns ``f0_on_frame_rate`` (such
    frames over the output's voiced frames; ``None`` when the output has none) and
    ``f0_on_frame_rate_frames`` (how many).
    """
    fr = check_frame_rate(frame_rate)
    n = min(len(source_f0), len(output_f0))
    src = np.asarray(source_f0, dtype=np.float64)[:n] * 2.0 ** (float(transpose) / 12.0)
    out = np.asarray(output_f0, dtype=np.float64)[:n]
    hits = on_frame_rate(out, fr) & ~on_frame_rate(src, fr)
    voiced = int((out > 0).sum())
    return {"f0_on_frame_rate": float(hits.sum() / voiced) if voiced else None,
            "f0_on_frame_rate_frames": int(hits.sum())}  # fmt: skip
