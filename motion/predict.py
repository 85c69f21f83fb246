"""Inference with a trained visemes model, and the face-track files.

    pred = VisemesPredictor("logs/visemes/V_best.pth")
    values = pred(z)                      # z float32 [C, T] → float32 [T, 61] at 86.13 fps
    write_track("results/song", values)   # song.blendshapes.npy + song.blendshapes.csv

Track files, frame ``i`` ↔ audio samples ``[512·i, 512·(i+1))`` at 44.1 kHz:

- ``<prefix>.blendshapes.npy``: float32 ``[T, 61]``, Live Link stream order (motion.channels);
- ``<prefix>.blendshapes.csv``: the Live Link Face app's CSV layout, ``Timecode,BlendshapeCount,
  <61 names>``, one row per frame at 86.1328125 fps; the timecode is ``HH:MM:SS:FF.fff`` with
  ``FF.fff`` counted at 60 fps as in the app's exports (so ``import_llf.py`` reads it back exactly).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_open, save_npy
from motion.channels import N_VALUES, NAMES
from motion.model import build
from motion.voice import FPS


class VisemesError(ValueError):
    """A visemes checkpoint is missing or is not one; the message names the file."""


class VisemesPredictor:
    """A ``V_*.pth`` checkpoint ready to map z to the 61 values."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        from common.checkpoint import safe_load

        ck = safe_load(path)
        if not isinstance(ck, dict) or "visemes" not in ck or "model" not in ck:
            raise VisemesError(
                f"{path}: not a visemes checkpoint (train one with train_visemes.py)"
            )
        self.meta = ck["visemes"]
        self.path = str(path)
        self.device = torch.device(device)
        self.net = build(int(self.meta["z_channels"]), self.meta["model"])
        self.net.load_state_dict(ck["model"])
        self.net.eval().requires_grad_(False).to(self.device)
        self.z_channels = int(self.meta["z_channels"])
        self.z_silence = np.asarray(self.meta["stats"]["z_silence"], np.float32)

    @torch.no_grad()
    def __call__(self, z: np.ndarray) -> np.ndarray:
        """``z`` float32 ``[C, T]`` → values float32 ``[T, 61]`` (0–1 blendshapes, rotations)."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[0] != self.z_channels:
            raise VisemesError(f"{self.path}: expects z with {self.z_channels} channels, got "
                               f"{tuple(z.shape)} (a different voice model?)")  # fmt: skip
        if z.shape[1] == 0:
            return np.zeros((0, N_VALUES), np.float32)
        y = self.net(torch.from_numpy(z)[None].to(self.device))[0]
        return y.T.float().cpu().numpy()


def timecode(seconds: float) -> str:
    """``HH:MM:SS:FF.fff`` with FF at 60 fps (the Live Link Face CSV convention)."""
    whole = int(seconds)
    ff = (seconds - whole) * 60.0
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:{ff:06.3f}"


def write_llf_csv(path: str | os.PathLike, values: np.ndarray, fps: float = FPS) -> None:
    values = np.asarray(values, np.float32)
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write("Timecode,BlendshapeCount," + ",".join(NAMES) + "\n")
        for i, row in enumerate(values):
            f.write(f"{timecode(i / fps)},{N_VALUES}," + ",".join(f"{x:.6f}" for x in row) + "\n")


def write_track(
    prefix: str | os.PathLike, values: np.ndarray, fps: float = FPS
) -> tuple[Path, Path]:
    """Write ``<prefix>.blendshapes.npy`` and ``.csv``; returns both paths."""
    npy, csv = Path(f"{prefix}.blendshapes.npy"), Path(f"{prefix}.blendshapes.csv")
    save_npy(npy, np.asarray(values, np.float32))
    write_llf_csv(csv, values, fps)
    return npy, csv


def track_prefix(audio_path: str | os.PathLike) -> str:
    """``results/x.flac`` → ``results/x`` (the track files sit next to the audio)."""
    p = Path(audio_path)
    return str(p.with_suffix("")) if p.suffix else str(p)
