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
from common.errors import UserError


class LegacyFeatureFile(UserError, ValueError):
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


HOP = 512  # frames of every frame-level file: T = samples // HOP at 44.1 kHz
FRAME_SLACK = 4  # frames a file may differ from T (spectrogram without centring, mel padding)


def feature_problem(path: str, n_samples: int, ssl_dim: int | None = None) -> str | None:
    """Why the feature file ``path`` of a wav with ``n_samples`` samples is unusable, or None.

    "Usable" means complete and loadable with the expected kind, dtype and shape for that wav
    (the table above), so a corrupt, truncated or foreign file (another wav's, another encoder's)
    is found without trusting its name or date. Never unpickles anything.
    """
    import torch

    from common.checkpoint import CheckpointError, safe_load

    if not os.path.isfile(path):
        return "missing"
    n_frames = n_samples // HOP
    try:
        if path.endswith(".pt"):
            arr = safe_load(path)
            if not isinstance(arr, torch.Tensor):
                return f"holds a {type(arr).__name__}, not a tensor"
            if not arr.is_floating_point():
                return f"dtype {arr.dtype}, expected float32"
            arr = arr.float().numpy()
        else:
            arr = load_npy(path)
            if arr.dtype.kind != "f":
                return f"dtype {arr.dtype}, expected float32"
    except LegacyFeatureFile:
        return "reference-format (pickled) file"
    except (CheckpointError, ValueError, OSError) as e:
        return str(e).removeprefix(f"{path}: ")
    if not np.isfinite(arr).all():
        return "contains NaN or infinite values"
    shape = arr.shape

    def frames_off(t: int) -> bool:
        return abs(t - n_frames) > FRAME_SLACK

    if path.endswith(".soft.pt"):
        expected = n_samples / 882  # 16 kHz, hop 320
        if len(shape) != 3 or shape[0] != 1 or shape[2] == 0:
            return f"shape {shape}, expected [1, C, T16]"
        if ssl_dim is not None and shape[1] != ssl_dim:
            return f"{shape[1]} channels but the config's ssl_dim is {ssl_dim} (another encoder?)"
        if not 0.5 * expected - 2 <= shape[2] <= 1.5 * expected + 2:
            return f"{shape[2]} frames, but the wav gives about {expected:.0f} (another file's?)"
    elif path.endswith(".f0.npy"):
        if len(shape) != 2 or shape[0] != 2 or shape[1] != n_frames:
            return f"shape {shape}, expected (2, {n_frames})"
    elif path.endswith(".spec.pt"):
        if len(shape) != 2 or shape[0] != 1025 or frames_off(shape[1]):
            return f"shape {shape}, expected [1025, about {n_frames}]"
    elif path.endswith(".aug_keyshift.npy"):
        if shape != (1,):
            return f"shape {shape}, expected (1,)"
    elif path.endswith((".mel.npy", ".aug_mel.npy")):
        if len(shape) != 2 or shape[1] != 128 or frames_off(shape[0]):
            return f"shape {shape}, expected [about {n_frames}, 128]"
    elif path.endswith((".vol.npy", ".aug_vol.npy")):
        if len(shape) != 1 or frames_off(shape[0]):
            return f"shape {shape}, expected [about {n_frames}]"
    return None
