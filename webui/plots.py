"""Pictures shown after a conversion: f0 curves in notes, spectrograms, a speaker-mix timeline.

matplotlib's object API (``Figure``, no pyplot state, so safe from server threads); each function
writes a PNG and returns its path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def hz_to_midi(f0: np.ndarray) -> np.ndarray:
    """Hz → MIDI note number (A4 = 440 Hz = 69); unvoiced (≤ 0) → NaN so the curve breaks."""
    f0 = np.asarray(f0, dtype=np.float64)
    out = np.full(f0.shape, np.nan)
    v = f0 > 0
    out[v] = 69 + 12 * np.log2(f0[v] / 440.0)
    return out


def note_name(midi: int) -> str:
    """``60`` → ``C4``."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def _save(fig, path: str | os.PathLike) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from common.atomic import atomic_path

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return str(path)


def plot_f0(f0_in: np.ndarray, f0_out: np.ndarray, frame_s: float, path: str | os.PathLike,
            trans: int = 0) -> str:  # fmt: skip
    """Input and output f0 (Hz arrays at ``frame_s`` s per frame) on one plot in notes; the input
    shifted by ``trans`` semitones is dashed (what the output should follow)."""
    from matplotlib.figure import Figure

    m_in, m_out = hz_to_midi(f0_in), hz_to_midi(f0_out)
    fig = Figure(figsize=(10, 3.2))
    ax = fig.add_subplot()
    ax.plot(np.arange(len(m_in)) * frame_s, m_in, lw=1.2, label="input")
    if trans:
        ax.plot(
            np.arange(len(m_in)) * frame_s,
            m_in + trans,
            lw=0.8,
            ls="--",
            label=f"input {trans:+d} st",
        )
    ax.plot(np.arange(len(m_out)) * frame_s, m_out, lw=1.2, label="output")
    both = np.concatenate([m_in[np.isfinite(m_in)], m_out[np.isfinite(m_out)], [60.0]])
    lo, hi = (
        int(np.floor(np.nanpercentile(both, 1))) - 2,
        int(np.ceil(np.nanpercentile(both, 99))) + 2,
    )
    ax.set_ylim(lo, hi)
    step = 1 if hi - lo <= 14 else 2 if hi - lo <= 28 else 12
    ticks = [n for n in range(lo, hi + 1) if n % step == 0 and (step != 12 or n % 12 == 0)] or [60]
    ax.set_yticks(ticks, [note_name(n) for n in ticks])
    ax.grid(alpha=0.3)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch (note)")
    ax.set_title("f0: input and output")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_spectrograms(
    wav_in: np.ndarray, wav_out: np.ndarray, sr: int, path: str | os.PathLike
) -> str:
    """Log-magnitude spectrograms (dB, 2048-point STFT, hop 512) of input and output, stacked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5))
    axes = fig.subplots(2, 1, sharex=True)
    for ax, wav, title in ((axes[0], wav_in, "input"), (axes[1], wav_out, "output")):
        db = _stft_db(np.asarray(wav, np.float32))
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
                  extent=(0, len(wav) / sr, 0, sr / 2000))  # fmt: skip
        ax.set_ylabel("kHz")
        ax.set_title(f"spectrogram: {title}")
    axes[1].set_xlabel("time (s)")
    fig.tight_layout()
    return _save(fig, path)


def _stft_db(wav: np.ndarray, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """``[n_fft/2+1, frames]`` magnitude in dB relative to the loudest bin."""
    if len(wav) < n_fft:
        wav = np.pad(wav, (0, n_fft - len(wav)))
    frames = np.lib.stride_tricks.sliding_window_view(wav, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=1)).T
    return 20 * np.log10(np.maximum(mag, 1e-8) / max(float(mag.max()), 1e-8))


def plot_spk_mix(mix: np.ndarray, names: list[str], path: str | os.PathLike) -> str:
    """Normalised per-frame speaker weights ``[n_spk, N]`` over the fraction of the output."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.6))
    ax = fig.add_subplot()
    x = np.linspace(0, 1, mix.shape[1])
    ax.stackplot(x, mix, labels=names, alpha=0.85)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("fraction of the output")
    ax.set_ylabel("weight")
    ax.set_title("dynamic voice mix")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))
