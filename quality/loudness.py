"""Loudness preservation: correlation of the source's and the output's RMS envelopes, and the
share of the source's loud frames that come out silent."""

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
LOUD_DB = 30.0
""":func:`loud_silent`: a source frame is loud within this many dB of the source's loudest frame."""
SILENT_DB = 40.0
"""... an output frame is silent more than this many dB below the output's loudest frame ..."""
ABS_SILENT_DBFS = -60.0
"""... or below this frame RMS [dBFS] (a source frame below it is never loud)."""
DROP_DB = 20.0
"""... or this many dB below the source frame, both relative to their own loudest frame."""


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


def loud_silent(source: np.ndarray, output: np.ndarray, sr: int = ANALYSIS_SR) -> float | None:
    """Share of the source's loud frames where the output is silent (a sung note that came out
    mute), on the envelopes of :func:`rms_envelope_db` (40 ms frames every 10 ms), cut to the
    shorter.

    Loud: the source frame is within :data:`LOUD_DB` (30 dB) of the source's loudest frame and
    above :data:`ABS_SILENT_DBFS` (-60 dBFS). Silent: the output frame is more than
    :data:`SILENT_DB` (40 dB) below the output's own loudest frame, or below -60 dBFS (so an
    all-silent output counts as silent everywhere), or it dropped out: more than
    :data:`DROP_DB` (20 dB) below the source frame, both taken relative to their own loudest
    frame (a level-independent test: a uniformly quieter output drops nothing; a note sung at
    -7 dB that comes out at -29 dB does). Both thresholds sit above the envelope's
    floor (``max − FLOOR_DB``), so the clamping does not touch them. ``None`` when the source has
    no loud frame. 0.0 = every loud source frame has sound in the output.
    """
    scale = sr / ANALYSIS_SR
    frame, hop = int(round(FRAME * scale)), int(round(HOP * scale))
    a = rms_envelope_db(source, frame, hop)
    b = rms_envelope_db(output, frame, hop)
    n = min(len(a), len(b))
    if n == 0:
        return None
    a, b = a[:n], b[:n]
    loud = (a >= a.max() - LOUD_DB) & (a > ABS_SILENT_DBFS)
    if not loud.any():
        return None
    dropped = (a - a.max()) - (b - b.max()) > DROP_DB
    silent = (b < b.max() - SILENT_DB) | (b < ABS_SILENT_DBFS) | dropped
    return float(np.mean(silent[loud]))
