"""Names and readers/writers of the per-utterance feature files (sovits-4.1.md §4).

For ``X = dataset/44k/<spk>/<name>.wav`` (``T = len(wav) // 512`` frames):

| file                 | content                                     | format                          |
|----------------------|---------------------------------------------|---------------------------------|
| ``X.soft.pt``        | speech-encoder units                        | torch float32 ``[1, C, T16]``   |
| ``X.f0.npy``         | rows (f0 Hz interpolated, uv 1=voiced)      | numpy float32 ``(2, T)``        |
| ``<name>.spec.pt``   | linear magnitude spectrogram                | torch float32 ``[1025, T]``     |
| ``X.vol.npy``        | frame RMS volume                            | numpy float32 ``[T]``           |
| ``X.mel.npy``        | nsf-hifigan log-mel (diffusion)             | numpy float32 ``[T, 128]``      |
| ``X.aug_mel.npy``    | key-shifted, volume-shifted log-mel         | numpy float32 ``[T, 128]``      |
| ``X.aug_keyshift.npy`` | the key shift of ``aug_mel`` (semitones)  | numpy float32 ``[1]``           |
| ``X.aug_vol.npy``    | volume of the volume-shifted audio          | numpy float32 ``[T]``           |

Unlike the reference, nothing here is pickled: every ``.npy`` is a plain array that loads with
``allow_pickle=False``. A reference ``.f0.npy`` (an object array) is detected by
:func:`load_f0` raising :class:`LegacyFeatureFile`, and preprocessing recomputes it.
"""

from __future__ import annotations

import os

import numpy as np

from common.atomic import save_npy


class LegacyFeatureFile(ValueError):
    """A feature file in the reference's pickled format; it is never unpickled, only recomputed."""


def soft_path(wav_path: str) -> str:
    return f"{wav_path}.soft.pt"


def f0_path(wav_path: str) -> str:
    return f"{wav_path}.f0.npy"


def spec_path(wav_path: str) -> str:
    return wav_path.replace(".wav", ".spec.pt")


def vol_path(wav_path: str) -> str:
    return f"{wav_path}.vol.npy"


def mel_path(wav_path: str) -> str:
    return f"{wav_path}.mel.npy"


def aug_mel_path(wav_path: str) -> str:
    return f"{wav_path}.aug_mel.npy"


def aug_keyshift_path(wav_path: str) -> str:
    return f"{wav_path}.aug_keyshift.npy"


def aug_vol_path(wav_path: str) -> str:
    return f"{wav_path}.aug_vol.npy"


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """``np.load`` without pickle; a pickled (object) array raises :class:`LegacyFeatureFile`."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise LegacyFeatureFile(f"{path}: pickled (reference-format) feature file") from None
        raise ValueError(f"{path}: unreadable feature file ({e})") from None


def save_f0(path: str | os.PathLike, f0: np.ndarray, uv: np.ndarray) -> None:
    """Write ``(2, T)`` float32: row 0 = interpolated f0 [Hz], row 1 = uv (1 voiced)."""
    f0 = np.asarray(f0, dtype=np.float32).reshape(-1)
    uv = np.asarray(uv, dtype=np.float32).reshape(-1)
    if f0.shape != uv.shape:
        raise ValueError(f"{path}: f0 and uv lengths differ ({f0.shape[0]} vs {uv.shape[0]})")
    save_npy(path, np.stack([f0, uv]))


def load_f0(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read ``X.f0.npy`` → ``(f0 [T] float32, uv [T] float32)``."""
    arr = load_npy(path)
    if arr.ndim != 2 or arr.shape[0] != 2:
        raise ValueError(f"{path}: expected an f0 array of shape (2, T), got {arr.shape}")
    return arr[0].astype(np.float32), arr[1].astype(np.float32)
