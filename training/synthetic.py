"""A small synthetic training set in the on-disk formats, and a tiny model config (tests, bench).

Audio comes from :mod:`common.synthetic` (harmonic "singers" with known f0). The content units
stand in for a speech encoder: a fixed random projection of the 16 kHz log spectrum at 50 fps
(400-sample windows, hop 320, so ``T16 = (L16 - 400) // 320 + 1`` as for HuBERT), so they carry
real information about the audio. f0 is the known contour, interpolated like preprocessing does.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import torch

from common.atomic import save_npy, torch_save
from common.audio import resample
from common.features import f0_path, save_f0, soft_path, spec_path, vol_path
from common.synthetic import SR, Singer, frame_f0, sing
from modules.pitch import interpolate_f0

SINGERS = (
    Singer("alto", 180.0, 420.0, ((800, 100), (1150, 110), (2800, 170)), 0.015),
    Singer("bass", 85.0, 220.0, ((520, 90), (900, 110), (2300, 150)), 0.03),
    Singer("tenor", 130.0, 330.0, ((650, 100), (1050, 110), (2500, 160)), 0.02),
)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "configs_template"


def unit_features(wav44k: np.ndarray, ssl_dim: int, seed: int = 0) -> torch.Tensor:
    """``[1, ssl_dim, T16]`` float32: random projection of the 16 kHz log-magnitude spectrum."""
    wav16 = resample(wav44k, SR, 16000)
    n = max(1, (len(wav16) - 400) // 320 + 1)
    frames = np.stack([np.pad(wav16[i * 320 : i * 320 + 400], (0, 0))[:400] for i in range(n)])
    frames = frames * np.hanning(400)[None]
    mag = np.log(np.abs(np.fft.rfft(frames, axis=1)) + 1e-3)  # [T16, 201]
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((mag.shape[1], ssl_dim)) / np.sqrt(mag.shape[1])
    units = (mag - mag.mean()) @ proj
    return torch.from_numpy(units.T.astype(np.float32))[None]


def write_training_set(
    root: str | os.PathLike,
    n_speakers: int = 2,
    files_per_speaker: int = 4,
    duration: float = 1.0,
    ssl_dim: int = 32,
    n_val_per_speaker: int = 1,
    write_spec: bool = True,
    write_vol: bool = False,
    seed: int = 0,
) -> dict:
    """Write ``root/dataset/44k/<spk>/<spk>_<i>.wav`` and every feature file, plus
    ``root/filelists/{train,val}.txt`` (paths relative to ``root``, reference style).

    Returns ``{"spk": {name: id}, "train": [...], "val": [...]}``.
    """
    import soundfile as sf

    from modules.mel_processing import VolumeExtractor, spectrogram_torch

    root = Path(root)
    spk_map, train, val = {}, [], []
    for s_idx, singer in enumerate(SINGERS[:n_speakers]):
        spk_map[singer.name] = s_idx
        folder = root / "dataset" / "44k" / singer.name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(files_per_speaker):
            d = duration * (0.85 + 0.3 * ((i * 7919) % 10) / 10)
            wav, f0_samples = sing(d, singer, seed=seed + 1000 * s_idx + i, silence=i % 2 == 1)
            pcm = np.round(np.clip(wav, -1, 1) * 32767).astype(np.int16)
            rel = f"./dataset/44k/{singer.name}/{singer.name}_{i:02d}.wav"
            path = str(root / rel)
            sf.write(path, pcm, SR, subtype="PCM_16")
            audio = pcm.astype(np.float32) / 32768.0
            n_frames = len(audio) // 512
            f0 = frame_f0(f0_samples)[:n_frames]
            f0_i, uv = interpolate_f0(f0)
            save_f0(f0_path(path), f0_i, uv)
            torch_save(unit_features(audio, ssl_dim, seed=1234), soft_path(path))
            if write_spec:
                spec = spectrogram_torch(torch.from_numpy(audio)[None]).squeeze(0)
                torch_save(spec, spec_path(path))
            if write_vol:
                save_npy(vol_path(path), VolumeExtractor(512).extract(audio).numpy())
            (val if i < n_val_per_speaker else train).append(rel)
    (root / "filelists").mkdir(parents=True, exist_ok=True)
    (root / "filelists" / "train.txt").write_text("\n".join(train) + "\n")
    (root / "filelists" / "val.txt").write_text("\n".join(val) + "\n")
    return {"spk": spk_map, "train": train, "val": val}


def tiny_config(spk: dict, ssl_dim: int = 32, segment_frames: int = 4, **train_overrides) -> dict:
    """``config_tiny_template.json`` shrunk so that one CPU step takes a fraction of a second.

    The generator is tiny (16/32 channels); the discriminator has no size knobs (46.7 M params).
    """
    with open(TEMPLATE_DIR / "config_tiny_template.json", encoding="utf-8") as f:
        cfg = json.load(f)
    cfg = copy.deepcopy(cfg)
    cfg["model"].update(
        inter_channels=16, hidden_channels=16, filter_channels=32, n_heads=2, n_layers=2,
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]],
        upsample_initial_channel=64, gin_channels=16, ssl_dim=ssl_dim, n_speakers=len(spk),
    )  # fmt: skip
    cfg["train"].update(
        segment_size=512 * segment_frames, batch_size=2, log_interval=1, eval_interval=1000,
        keep_ckpts=2, epochs=10000,
    )  # fmt: skip
    cfg["train"].update(train_overrides)
    cfg["spk"] = dict(spk)
    return cfg


def template_config(spk: dict, tiny: bool = False) -> dict:
    """The template config (or the tiny template) with ``spk``/``n_speakers`` filled in."""
    name = "config_tiny_template.json" if tiny else "config_template.json"
    with open(TEMPLATE_DIR / name, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["spk"] = dict(spk)
    cfg["model"]["n_speakers"] = len(spk)
    return cfg


def synthetic_batch(hps, batch_size: int, frames: int, seed: int = 0) -> dict:
    """A training batch like the collate's, of sine "voices" with noise (bench, tests).

    Keys are :func:`training.trainer.train_step`'s arguments: c ``[B, ssl_dim, T]`` (random),
    f0/uv ``[B, T]`` (one constant pitch per item, 220–330 Hz, all voiced), spec ``[B,
    n_fft//2+1, T]`` of y ``[B, 1, T·hop]``, g ``[B, 1]`` speaker ids, lengths ``[B]`` (all T),
    volume None. Drawn from a generator seeded by ``seed`` (the global RNG is not touched).
    """
    from modules.mel_processing import spectrogram_torch

    d = hps.data
    hop = int(d.hop_length)
    b, n = int(batch_size), int(frames)
    gen = torch.Generator().manual_seed(seed)
    time_axis = torch.arange(n * hop) / d.sampling_rate
    f0_hz = 220.0 * (1 + 0.5 * torch.rand(b, 1, generator=gen))
    y = 0.5 * torch.sin(2 * torch.pi * f0_hz * time_axis)[:, None, :]
    y = y + 0.01 * torch.randn(y.shape, generator=gen)
    spec = spectrogram_torch(y.squeeze(1), d.filter_length, d.sampling_rate, hop, d.win_length)
    n_spk = max(1, min(5, int(hps.model.n_speakers)))
    return {
        "c": torch.randn(b, hps.model.ssl_dim, n, generator=gen),
        "f0": f0_hz.expand(b, n).contiguous(),
        "spec": spec,
        "y": y,
        "g": torch.randint(0, n_spk, (b, 1), generator=gen),
        "lengths": torch.full((b,), n, dtype=torch.long),
        "uv": torch.ones(b, n),
        "volume": None,
    }
