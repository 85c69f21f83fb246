"""A complete, tiny inference work folder for tests and benchmarks.

``make_workdir(root)`` writes, under ``root`` (used as the current folder, like the repository
root in real use):

- ``logs/44k/config.json``: the tiny config shrunk further (16/32 channels), speech encoder
  ``hubertsoft`` with ``ssl_dim`` 8, speakers ``alto`` (0) and ``bass`` (1);
- ``logs/44k/G_0.pth``: a random-init generator in the 4.1 checkpoint layout
  (``{model, iteration, optimizer (AdamW state), learning_rate}``);
- ``pretrain/hubert-soft-0d54a1f4.pt``: a tiny random HuBERT-soft in the real file format;
- ``pretrain/nsf_hifigan/{config.json, model}``: a tiny random NSF-HiFiGAN in openvpi's layout;
- ``dataset/44k/<spk>/*.wav.soft.pt`` (random ``[1, 8, T]``), ``logs/44k/kmeans_10000.pt`` and
  ``logs/44k/feature_and_index.npz`` built from them;
- ``raw/``: ``song.wav`` (44.1 kHz: 3.2 s of singing then 0.8 s of silence), ``st48.flac``
  (48 kHz stereo) and ``low.ogg`` (22.05 kHz);
- ``spkmix.py`` for the two speakers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SPK = {"alto": 0, "bass": 1}
SSL_DIM = 8

NSF_CONFIG = {
    "resblock": "1", "upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4, 4],
    "upsample_initial_channel": 32, "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]],
    "num_mels": 128, "n_fft": 2048, "hop_size": 512, "win_size": 2048, "sampling_rate": 44100,
    "fmin": 40, "fmax": 16000,
}  # fmt: skip

SPKMIX = """spk_mix_map = {
    0: [[0.0, 0.5, 1, 0.2], [0.5, 1, 0.2, 1]],
    1: [[0.0, 1.0, 0.0, 1.0]],
}
"""


def infer_config(vol_embedding: bool = False) -> dict:
    from training.synthetic import tiny_config

    cfg = tiny_config(SPK, ssl_dim=SSL_DIM)
    cfg["model"]["speech_encoder"] = "hubertsoft"
    cfg["model"]["vol_embedding"] = vol_embedding
    return cfg


def write_random_checkpoint(cfg: dict, path: Path, seed: int = 0) -> None:
    """A random-init G in the 4.1 layout, with an (empty) AdamW state as train.py saves it."""
    from common.checkpoint import save_checkpoint
    from models import SynthesizerTrn

    torch.manual_seed(seed)
    net = SynthesizerTrn(cfg["data"]["filter_length"] // 2 + 1,
                         cfg["train"]["segment_size"] // cfg["data"]["hop_length"], **cfg["model"])  # fmt: skip
    opt = torch.optim.AdamW(net.parameters(), 1e-4, betas=(0.8, 0.99), eps=1e-9)
    save_checkpoint(net, opt, 1e-4, 0, path)


def write_pretrain(pretrain: Path) -> None:
    from tests.test_vencoder import TINY_HUBERT_SOFT
    from tests.vencoder_checkpoints import write_hubert_soft
    from vdecoder import NsfHifiGanGenerator, save_nsf_hifigan

    pretrain.mkdir(parents=True, exist_ok=True)
    write_hubert_soft(pretrain / "hubert-soft-0d54a1f4.pt", **TINY_HUBERT_SOFT)
    torch.manual_seed(1)
    save_nsf_hifigan(
        NsfHifiGanGenerator.from_openvpi(NSF_CONFIG), NSF_CONFIG, pretrain / "nsf_hifigan"
    )


def singing(seconds: float, seed: int = 3) -> np.ndarray:
    from common.synthetic import DEMO_SINGERS, sing

    wav, _ = sing(seconds, DEMO_SINGERS[0], seed=seed, silence=False)
    return np.asarray(wav, np.float32)


def write_raw(raw: Path) -> dict[str, tuple[int, int]]:
    """Inputs; returns ``{name: (samples, sample_rate)}``."""
    from common.audio import resample

    raw.mkdir(parents=True, exist_ok=True)
    song = np.concatenate([singing(3.2), np.zeros(int(0.8 * 44100), np.float32)])
    sf.write(raw / "song.wav", song, 44100)
    w48 = resample(song[: int(2.5 * 44100)], 44100, 48000)
    sf.write(raw / "st48.flac", np.stack([w48, 0.5 * w48], 1), 48000)
    low = resample(singing(2.0, seed=5), 44100, 22050)
    sf.write(raw / "low.ogg", low, 22050)
    return {
        "song.wav": (len(song), 44100),
        "st48.flac": (len(w48), 48000),
        "low.ogg": (len(low), 22050),
    }


def write_cluster_files(root: Path) -> None:
    from cluster.feature_index import save_feature_index, train_index
    from cluster.train_cluster import train_cluster
    from common.atomic import torch_save

    g = torch.Generator().manual_seed(0)
    for spk in SPK:
        d = root / "dataset" / "44k" / spk
        d.mkdir(parents=True, exist_ok=True)
        for i in range(2):
            torch_save(torch.randn(1, SSL_DIM, 150, generator=g), d / f"{spk}_{i}.wav.soft.pt")
    km = {
        spk: train_cluster(root / "dataset" / "44k" / spk, 64, use_gpu=True, device="cpu")
        for spk in SPK
    }
    torch_save(km, root / "logs" / "44k" / "kmeans_10000.pt")
    idx = {sid: train_index(root / "dataset" / "44k" / spk, seed=0) for spk, sid in SPK.items()}
    save_feature_index(idx, root / "logs" / "44k" / "feature_and_index.npz")


def make_workdir(root: Path, vol_embedding: bool = False) -> dict:
    root = Path(root)
    (root / "logs" / "44k").mkdir(parents=True, exist_ok=True)
    cfg = infer_config(vol_embedding)
    (root / "logs" / "44k" / "config.json").write_text(json.dumps(cfg, indent=2))
    write_random_checkpoint(cfg, root / "logs" / "44k" / "G_0.pth")
    write_pretrain(root / "pretrain")
    inputs = write_raw(root / "raw")
    write_cluster_files(root)
    (root / "spkmix.py").write_text(SPKMIX)
    return {"config": cfg, "inputs": inputs}
