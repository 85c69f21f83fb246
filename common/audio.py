"""Audio loading, resampling and saving with clear per-file errors.

Waveforms are float32 numpy arrays in [-1, 1], shape ``[L]`` (mono) unless stated otherwise.
Resampling uses soxr (high quality), the same resampler for training and inference, so content
features see the same signal in both (the reference used two different resamplers, §18.5).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from common.errors import UserError

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".aiff", ".aif")


class AudioError(UserError, ValueError):
    """An input audio file is unusable; the message starts with the file name."""


def is_audio_file(path: str | os.PathLike) -> bool:
    name = os.path.basename(str(path))
    return not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS)


def load_audio(
    path: str | os.PathLike, sr: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Read any file soundfile (libsndfile) or, failing that, librosa/audioread can decode.

    Returns ``(wav, sample_rate)``: float32, ``[L]`` if ``mono`` (channels averaged) else
    ``[C, L]``; resampled to ``sr`` when given. Raises :class:`AudioError` for an unreadable,
    empty, or non-finite (NaN/Inf) file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    try:
        with open(path, "rb"):  # the real reason first (permission denied, ...)
            pass
    except OSError as e:
        raise AudioError(f"{path}: {(e.strerror or str(e)).lower()}") from None
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)  # [L, C]
        data = data.T
        _warn_if_truncated(path)
    except sf.LibsndfileError as e:
        if path.suffix.lower() not in _SNDFILE_SUFFIXES:
            data, file_sr = _load_with_audioread(path)
        else:
            data, file_sr = _read_truncated(path, e)
    except Exception:  # noqa: BLE001
        if path.suffix.lower() in _SNDFILE_SUFFIXES:
            raise AudioError(
                f"{path}: not a readable audio file (unknown or corrupt format)"
            ) from None
        data, file_sr = _load_with_audioread(path)
    if data.size == 0 or data.shape[-1] == 0:
        raise AudioError(f"{path}: contains no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    wav = data.mean(axis=0) if mono else data
    if sr is not None and sr != file_sr:
        wav = resample(wav, file_sr, sr)
        file_sr = sr
    return np.ascontiguousarray(wav, dtype=np.float32), int(file_sr)


def _warn_if_truncated(path: Path) -> None:
    """libsndfile reads what a cut-off WAV/AIFF holds; say so (its header promised more)."""
    info = sf.info(str(path))
    m = re.search(r"data\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info)
    if m and int(m.group(2)) < int(m.group(1)):
        logger.warning("%s: truncated file (the header promises more audio than it holds); "
                       "using the %.2f s that are there (re-export it if that is wrong)", path,
                       info.frames / max(1, info.samplerate))  # fmt: skip


def _read_truncated(path: Path, err: Exception) -> tuple[np.ndarray, int]:
    """Decode a cut-off FLAC/OGG up to the damage, with a warning; nothing decodable: AudioError."""
    reason = str(err).replace("Error : ", "").strip().splitlines()[0] if str(err) else "corrupt"
    blocks: list[np.ndarray] = []
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            while True:
                block = f.read(4096, dtype="float32", always_2d=True)
                if not len(block):
                    break
                blocks.append(block)
    except Exception:  # noqa: BLE001 - the damaged part
        pass
    if not blocks:
        raise AudioError(f"{path}: not a readable audio file ({reason})", "re-export it") from None
    data = np.concatenate(blocks).T
    logger.warning("%s: truncated or damaged (%s); using the first %.2f s (re-export it if that "
                   "is wrong)", path, reason, data.shape[1] / sr)  # fmt: skip
    return data, int(sr)


_SNDFILE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


def _load_with_audioread(path: Path) -> tuple[np.ndarray, int]:
    """Decode formats libsndfile lacks (m4a, aac) through librosa/audioread → ``[C, L]``."""
    import warnings

    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, sr = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
    except Exception as e:  # noqa: BLE001
        raise AudioError(f"{path}: not a readable audio file ({type(e).__name__})") from None
    return np.atleast_2d(data), int(sr)


def trim_silence(
    wav: np.ndarray, top_db: float = 40.0, frame_length: int = 2048, hop_length: int = 512
) -> np.ndarray:
    """Strip leading/trailing silence: same definition as ``librosa.effects.trim`` (defaults).

    Frame RMS (zero-padded, centred frames) in dB relative to the loudest frame; frames above
    ``-top_db`` are kept. Written in numpy to avoid librosa's numba compile in every worker.
    """
    y = np.asarray(wav, dtype=np.float32)
    if y.size == 0:
        return y
    pad = frame_length // 2
    yp = np.pad(y, pad)
    n_frames = 1 + (len(yp) - frame_length) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(yp, frame_length)[::hop_length][:n_frames]
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    ref = power.max()
    db = 10 * np.log10(np.maximum(1e-10, power)) - 10 * np.log10(max(1e-10, ref))
    keep = np.flatnonzero(db > -top_db)
    if len(keep) == 0:
        return y[:0]
    start = int(keep[0] * hop_length)
    end = min(len(y), int((keep[-1] + 1) * hop_length))
    return y[start:end]


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample along the last axis with soxr (VHQ). Returns float32."""
    if sr_in == sr_out:
        return np.asarray(wav, dtype=np.float32)
    import soxr

    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 1:
        return soxr.resample(x, sr_in, sr_out, quality="VHQ").astype(np.float32)
    return np.stack([soxr.resample(c, sr_in, sr_out, quality="VHQ") for c in x]).astype(np.float32)


def save_audio(
    path: str | os.PathLike,
    wav: np.ndarray,
    sr: int,
    subtype: str | None = None,
    format: str | None = None,
) -> None:
    """Write audio atomically. ``wav`` is float ``[L]`` or ``[L, C]``; format from the suffix."""
    from common.atomic import atomic_path

    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "wav").upper()
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.asarray(wav), sr, subtype=subtype, format=fmt)


def save_wav_int16(path: str | os.PathLike, wav: np.ndarray, sr: int) -> None:
    """Write 16-bit PCM wav atomically: ``round(clip(wav) * 32767)`` (reference scaling)."""
    pcm = np.round(np.clip(wav, -1.0, 1.0) * 32767.0).astype(np.int16)
    save_audio(path, pcm, sr, subtype="PCM_16", format="WAV")
