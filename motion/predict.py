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
from common.errors import InputError
from motion.channels import N_VALUES, NAMES
from motion.model import build
from motion.voice import FPS, HOP, SR


class VisemesError(InputError):
    """A visemes checkpoint is missing, is not one, or does not fit the voice model; the message
    names the file (a :class:`common.errors.UserError`, also a ``ValueError``)."""


class VisemesPredictor:
    """A ``V_*.pth`` checkpoint ready to map z to the 61 values."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        from common.checkpoint import safe_load

        ck = safe_load(path)
        if not isinstance(ck, dict) or not isinstance(ck.get("visemes"), dict) or "model" not in ck:
            raise VisemesError(
                f"{path}: not a visemes checkpoint (train one with train_visemes.py)"
            )
        self.meta = ck["visemes"]
        self.path = str(path)
        self.device = torch.device(device)
        try:
            self.z_channels = int(self.meta["z_channels"])
            self.net = build(self.z_channels, dict(self.meta["model"]))
            self.net.load_state_dict(ck["model"])
            self.z_silence = np.asarray(self.meta["stats"]["z_silence"], np.float32)
            if self.z_silence.shape != (self.z_channels,):
                raise ValueError(f"stats.z_silence has shape {self.z_silence.shape}")
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
            # load_state_dict: "Error(s) in loading state_dict for X:" then the first problem
            msg = (lines[1] if len(lines) > 1 else lines[0])[:200] if lines else type(e).__name__
            raise VisemesError(f"{path}: a damaged visemes checkpoint ({type(e).__name__}: {msg})",
                               "train it again with train_visemes.py") from None  # fmt: skip
        self.net.eval().requires_grad_(False).to(self.device)

    def check_voice(self, hps, config_path: str | os.PathLike,
                    model_path: str | os.PathLike | None = None) -> None:  # fmt: skip
        """Refuse a voice model (its config ``hps``, checkpoint ``model_path``) whose z this model
        cannot read: another z width (``model.inter_channels``), another frame rate than 44100 Hz
        / hop 512, or other weights than the voice model it was trained on (when the checkpoint
        records their SHA-256, ``voice_sha256``; older ones are not checked)."""
        sr, hop = int(hps.data.sampling_rate), int(hps.data.hop_length)
        if (sr, hop) != (SR, HOP):
            raise VisemesError(f"{config_path}: the visemes model {self.path} reads z at {SR} Hz / "
                               f"hop {HOP} ({FPS:.2f} fps), this voice model runs at {sr} Hz / "
                               f"hop {hop}", "use a 44.1 kHz voice model with hop 512")  # fmt: skip
        width = int(hps.model.inter_channels)
        if width != self.z_channels:
            raise VisemesError(
                f"{self.path}: expects z with {self.z_channels} channels but the voice model of "
                f"{config_path} has {width} (model.inter_channels)",
                "use the visemes model trained on this voice model's z (prepare_visemes.py, "
                "train_visemes.py)",
            )
        recorded = self.meta.get("voice_sha256")
        if recorded and model_path is not None:
            from common.fingerprint import checkpoint_sha256

            if checkpoint_sha256(model_path) != recorded:
                trained = self.meta.get("voice_model") or "another voice model"
                raise VisemesError(
                    f"{self.path}: was trained on the z of {trained}, not of {model_path} (other "
                    "weights; z of another voice model move the face wrongly)",
                    "use the visemes model trained for this voice model, or prepare and train "
                    "one for it (prepare_visemes.py, train_visemes.py)",
                )

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
