"""PNG pictures of an evaluation: f0 curves in notes, the speaker-similarity scatter, and a
source-vs-output comparison (spectrograms + f0) of single conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.atomic import atomic_path
from quality import ANALYSIS_SR
from quality.pitch import HOP, hz_to_midi
from quality.report import short_name


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)


def _f0_axes(ax, source_f0: np.ndarray, output_f0: np.ndarray, transpose: float) -> None:
    """Source f0 shifted by ``transpose`` and output f0, as MIDI notes over time [s]."""
    n = min(len(source_f0), len(output_f0))
    t = np.arange(n) * HOP / ANALYSIS_SR
    shifted = np.asarray(source_f0[:n], dtype=np.float64) * 2.0 ** (transpose / 12.0)
    ax.plot(t, hz_to_midi(shifted), color="tab:blue", lw=1.6, label=f"source {transpose:+g} st")
    ax.plot(t, hz_to_midi(output_f0[:n]), color="tab:orange", lw=1.0, label="output")
    ax.set_ylabel("note (MIDI)")
    ax.grid(alpha=0.3)


def plot_f0_curves(entries: list[dict], path: Path) -> None:
    """One panel per file: ``entries`` have ``name``, ``transpose``, ``f0_corr``,
    ``f0_rmse_cents`` and the tracks ``source_f0``, ``output_f0`` (Hz per 10 ms frame)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(entries), 1, figsize=(10, 2.4 * len(entries) + 0.4),
                             squeeze=False)  # fmt: skip
    for ax, e in zip(axes[:, 0], entries):
        _f0_axes(ax, e["source_f0"], e["output_f0"], e["transpose"])
        corr, rmse = e.get("f0_corr"), e.get("f0_rmse_cents")
        stats = "" if corr is None else f"  corr {corr:.3f}, RMSE {rmse:.0f} cents"
        ax.set_title(f"{e['name']}{stats}", fontsize=9)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    _save(fig, Path(path))


def plot_similarity(files: list[dict], path: Path) -> None:
    """Scatter of ``secs_source`` (x) against ``secs_target`` (y), one point per file; above the
    diagonal the output is nearer the target speaker than the source speaker."""
    plt = _pyplot()
    pts = [(f["secs_source"], f["secs_target"], f["name"]) for f in files
           if f.get("secs_source") is not None and f.get("secs_target") is not None]  # fmt: skip
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    lo = min([0.5, *[min(x, y) for x, y, _ in pts]]) - 0.02
    ax.plot([lo, 1], [lo, 1], color="grey", lw=1, ls="--", label="as near to both")
    if pts:
        xs, ys, names = zip(*pts)
        ax.scatter(xs, ys, color="tab:purple", zorder=3)
        for x, y, name in pts[:20]:
            ax.annotate(
                short_name(name, 24), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set_xlabel("similarity to the source speaker (SECS)")
    ax.set_ylabel("similarity to the target speaker (SECS)")
    ax.set_title("speaker similarity of the outputs", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, Path(path))


def _spectrogram_db(wav: np.ndarray, n_fft: int = 1024) -> np.ndarray:
    """|STFT| in dB (re the loudest bin, floored at −80), ``[n_fft // 2 + 1, frames]``, hop 160."""
    import torch

    x = torch.from_numpy(np.asarray(wav, dtype=np.float32))
    if len(x) < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - len(x)))
    spec = torch.stft(x, n_fft, HOP, window=torch.hann_window(n_fft), return_complex=True).abs()
    db = 20 * torch.log10(spec.clamp_min(1e-8))
    return (db - db.max()).clamp_min(-80.0).numpy()


def plot_comparison(source: np.ndarray, output: np.ndarray, source_f0: np.ndarray,
                    output_f0: np.ndarray, transpose: float, path: Path,
                    title: str = "") -> None:  # fmt: skip
    """Three panels: source spectrogram, output spectrogram (16 kHz audio, 0-8 kHz), and both
    f0 curves in notes (the source's shifted by ``transpose`` semitones)."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    for ax, wav, label in ((axes[0], source, "source"), (axes[1], output, "output")):
        db = _spectrogram_db(wav)
        extent = (0, db.shape[1] * HOP / ANALYSIS_SR, 0, ANALYSIS_SR / 2000)
        ax.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=-80, vmax=0)
        ax.set_ylabel("kHz")
        ax.set_title(label, fontsize=9, loc="left")
    _f0_axes(axes[2], source_f0, output_f0, transpose)
    axes[2].legend(loc="upper right", fontsize=8)
    axes[2].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, Path(path))
