"""Loudness preservation: correlation of the source's and the output's RMS envelopes."""

from __future__ import annotations

import numpy as np

from quality import ANALYSIS_SR
from quality.pitch import pearson

FRAME = 640
"""Envelope window [samples at 16 kHz]: 40 ms."""
HOP = 160
"""Envelope hop [samples at 16 kHz]: 10 ms, the f0 grid."""
FLOOR_DB = 60.0
"""Frames quieter than the loudest frame minus this many dB are clamped to that floor."""


def rms_envelope_db(wav: np.ndarray, frame: int = FRAME, hop: int = HOP) -> np.ndarray:
    """Frame RMS in dB (re full scale), shape ``[len(wav) // hop]``.

    Frames of ``frame`` samples centred on ``i·hop`` (zero padded at the edges); values below
    ``max − FLOOR_DB`` are raised to it, so digital silence and a faint hiss count alike.
    """
    x = np.asarray(wav, dtype=np.float64)
    n = len(x) // hop
    if n == 0:
        return np.zeros(0)
    xp = np.pad(x, (frame // 2, frame // 2))
    frames = np.lib.stride_tricks.sliding_window_view(xp, frame)[::hop][:n]
    db = 10.0 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-12))
    return np.maximum(db, db.max() - FLOOR_DB)


def loudness_corr(source: np.ndarray, output: np.ndarray, sr: int = ANALYSIS_SR) -> float | None:
    """Pearson correlation of the two dB envelopes (:func:`rms_envelope_db`), cut to the shorter.

    ``source`` and ``output`` are mono float at ``sr`` (16 kHz for the default frame sizes; other
    rates scale the 40 ms / 10 ms frames). 1.0 = the output rises and falls with the source;
    ``None`` when either envelope is flat (e.g. all silence).
    """
    scale = sr / ANALYSIS_SR
    frame, hop = int(round(FRAME * scale)), int(round(HOP * scale))
    a = rms_envelope_db(source, frame, hop)
    b = rms_envelope_db(output, frame, hop)
    n = min(len(a), len(b))
    return pearson(a[:n], b[:n])
