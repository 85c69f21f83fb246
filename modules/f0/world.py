"""Signal-processing f0 predictors: pm (Praat autocorrelation), dio and harvest (WORLD)."""

from __future__ import annotations

import warnings

import numpy as np

from modules.f0.base import F0Predictor, check_p_len
from modules.pitch import resize_f0

_pyworld = None


def load_pyworld():
    """The pyworld module (imported on first use; its deprecated ``pkg_resources`` use is quiet).

    pyworld 0.3.5 imports ``pkg_resources``, which setuptools 81 removed: the install pins
    setuptools < 81 (requirements.txt).
    """
    global _pyworld
    if _pyworld is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            import pyworld

        _pyworld = pyworld
    return _pyworld


class PMF0Predictor(F0Predictor):
    """``parselmouth.Sound.to_pitch_ac(time_step=hop/sr, voicing_threshold=0.6, 50, 1100)``.

    Praat's frames are zero-padded on both sides to ``p_len`` (``(p_len−n+1)//2`` on the left);
    a track longer than ``p_len`` is cut to it (the reference would return it longer).
    """

    name = "pm"

    def compute_f0(self, wav: np.ndarray, p_len: int | None = None) -> np.ndarray:
        import parselmouth

        x = np.asarray(wav, dtype=np.float64)
        p_len = check_p_len(len(x), self.hop_length, p_len)
        time_step = self.hop_length / self.sampling_rate * 1000 / 1000  # reference's rounding
        f0 = (
            parselmouth.Sound(x, self.sampling_rate)
            .to_pitch_ac(
                time_step=time_step,
                voicing_threshold=0.6,
                pitch_floor=self.f0_min,
                pitch_ceiling=self.f0_max,
            )  # fmt: skip
            .selected_array["frequency"]
        )
        pad_size = (p_len - len(f0) + 1) // 2
        if pad_size > 0 or p_len - len(f0) - pad_size > 0:
            f0 = np.pad(f0, [[pad_size, p_len - len(f0) - pad_size]], mode="constant")
        return np.asarray(f0[:p_len], dtype=np.float64)


class DioF0Predictor(F0Predictor):
    """WORLD dio + stonemask, each value rounded to 0.1 Hz, then ``resize_f0`` to ``p_len``."""

    name = "dio"
    round_to_0_1_hz = True  # the reference rounds dio's track, not harvest's

    def estimate(self, x: np.ndarray, frame_period: float) -> tuple[np.ndarray, np.ndarray]:
        """The WORLD estimator: ``(f0, times)``."""
        return load_pyworld().dio(x, fs=self.sampling_rate, f0_floor=self.f0_min,
                                  f0_ceil=self.f0_max, frame_period=frame_period)  # fmt: skip

    def compute_f0(self, wav: np.ndarray, p_len: int | None = None) -> np.ndarray:
        x = np.ascontiguousarray(wav, dtype=np.float64)
        p_len = check_p_len(len(x), self.hop_length, p_len)
        f0, t = self.estimate(x, 1000 * self.hop_length / self.sampling_rate)
        f0 = load_pyworld().stonemask(x, f0, t, self.sampling_rate)
        if self.round_to_0_1_hz:
            f0 = np.round(f0, 1)  # = the reference's round(np.float64, 1) per element
        return resize_f0(f0, p_len)


class HarvestF0Predictor(DioF0Predictor):
    """WORLD harvest + stonemask (no rounding), then ``resize_f0`` to ``p_len``."""

    name = "harvest"
    round_to_0_1_hz = False

    def estimate(self, x: np.ndarray, frame_period: float) -> tuple[np.ndarray, np.ndarray]:
        return load_pyworld().harvest(x, fs=self.sampling_rate, f0_floor=self.f0_min,
                                      f0_ceil=self.f0_max, frame_period=frame_period)  # fmt: skip
