"""Melody preservation: f0 of the source (shifted by the transpose) against f0 of the output.

Both signals go through the same tracker on the same grid: 16 kHz audio, hop 160 samples
(10 ms frames, ``len(wav) // 160`` of them). Frame ``i`` of the output is compared with frame
``i`` of the source: a so-vits conversion keeps the input's duration, so the grids line up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modules.f0 import get_f0_predictor
from modules.f0.base import default_pretrain_dir
from quality import ANALYSIS_SR

HOP = 160
"""Tracker hop [samples at 16 kHz]: 10 ms frames."""

ROOT = Path(__file__).resolve().parent.parent


def rmvpe_weights() -> Path | None:
    """``rmvpe.pt`` in ``$SOVITS_PRETRAIN`` / ``./pretrain`` or in the repository's ``pretrain/``."""
    for folder in (default_pretrain_dir(), ROOT / "pretrain"):
        if (folder / "rmvpe.pt").is_file():
            return folder / "rmvpe.pt"
    return None


def resolve_f0_predictor(name: str = "auto") -> str:
    """``auto`` → ``rmvpe`` when its weights are found (:func:`rmvpe_weights`), else ``fcpe``
    (pretrain/fcpe.pt or the model in the torchfcpe wheel); any other name is returned as is."""
    if name.strip().lower() == "auto":
        return "rmvpe" if rmvpe_weights() is not None else "fcpe"
    return name


class PitchTracker:
    """``tracker(wav)`` → raw f0 [Hz] per 10 ms frame, 0 = unvoiced, shape ``[len(wav) // 160]``.

    ``wav`` is float32 mono at 16 kHz. ``name`` is any of :data:`modules.f0.F0_PREDICTORS` or
    ``auto`` (:func:`resolve_f0_predictor`). Raises :class:`modules.f0.F0ModelMissing` when the
    weights of the chosen predictor are absent.
    """

    def __init__(self, name: str = "auto", device=None):
        self.name = resolve_f0_predictor(name)
        kw = {}
        if self.name == "rmvpe" and rmvpe_weights() is not None:
            kw["model_path"] = rmvpe_weights()
        self.predictor = get_f0_predictor(
            self.name, hop_length=HOP, sampling_rate=ANALYSIS_SR, device=device, **kw
        )

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        f0 = np.asarray(self.predictor.compute_f0(np.asarray(wav, dtype=np.float32)), np.float64)
        f0[~np.isfinite(f0)] = 0.0
        return f0


def hz_to_cents(f0: np.ndarray, ref: float = 440.0) -> np.ndarray:
    """Cents above ``ref`` Hz (``1200·log2(f0 / ref)``); only for f0 > 0."""
    return 1200.0 * np.log2(np.asarray(f0, dtype=np.float64) / ref)


def hz_to_midi(f0: np.ndarray) -> np.ndarray:
    """MIDI note numbers (A4 = 440 Hz = 69); NaN where f0 ≤ 0 (unvoiced)."""
    f0 = np.asarray(f0, dtype=np.float64)
    out = np.full(f0.shape, np.nan)
    voiced = f0 > 0
    out[voiced] = 69.0 + hz_to_cents(f0[voiced]) / 100.0
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation; ``None`` when fewer than 3 points or either side is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 3 or np.ptp(a) < 1e-9 or np.ptp(b) < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def f0_metrics(source_f0: np.ndarray, output_f0: np.ndarray, transpose: float = 0.0) -> dict:
    """Compare two f0 tracks [Hz, 0 = unvoiced] on the same frame grid.

    The source track is multiplied by ``2 ** (transpose / 12)`` first; the longer track is cut
    to the shorter one. Returns

    - ``f0_corr``: Pearson correlation of the two tracks in cents (log frequency), over frames
      voiced in both (``None`` with fewer than 3 such frames or a constant track);
    - ``f0_rmse_cents``: root mean square of ``1200·log2(f0_out / f0_src_shifted)`` over the
      same frames (``None`` when there are none); 100 = one semitone off on average;
    - ``vuv_f1``: F1 of the output's voiced decisions against the source's (voiced = positive);
      1.0 when neither has a voiced frame;
    - ``f0_frames``: how many frames were voiced in both.
    """
    n = min(len(source_f0), len(output_f0))
    src = np.asarray(source_f0, dtype=np.float64)[:n] * 2.0 ** (float(transpose) / 12.0)
    out = np.asarray(output_f0, dtype=np.float64)[:n]
    v_src = src > 0
    v_out = out > 0
    both = v_src & v_out
    tp = int(both.sum())
    fp = int((v_out & ~v_src).sum())
    fn = int((v_src & ~v_out).sum())
    vuv_f1 = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    c_src = hz_to_cents(src[both])
    c_out = hz_to_cents(out[both])
    rmse = float(np.sqrt(np.mean((c_out - c_src) ** 2))) if tp else None
    return {"f0_corr": pearson(c_src, c_out), "f0_rmse_cents": rmse, "vuv_f1": float(vuv_f1),
            "f0_frames": tp}  # fmt: skip
