"""Tiny diffusion files in the reference layout, for tests and benches.

``write_diffusion(root)`` writes ``root/logs/44k/diffusion/config.yaml`` (the 4.1 template with
tiny model sizes, encoder ``hubertsoft`` with 8 channels like :mod:`tests.infer_fixtures`) and
``model_0.pt`` = ``{'global_step': 0, 'model': state_dict, 'optimizer': AdamW state}`` saved
with plain ``torch.save``, as 4.1's train_diff.py writes it (random init, reference key names).
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = {"n_layers": 2, "n_chans": 16, "n_hidden": 8}


def diffusion_config(spk: dict, ssl_dim: int = 8, encoder: str = "hubertsoft", **model) -> dict:
    cfg = yaml.safe_load((ROOT / "configs_template" / "diffusion_template.yaml").read_text())
    cfg["data"]["encoder"] = encoder
    cfg["data"]["encoder_out_channels"] = ssl_dim
    cfg["model"].update(TINY_MODEL, n_spk=len(spk), **model)
    cfg["spk"] = dict(spk)
    cfg["device"] = "cpu"
    return cfg


def write_diffusion(root: Path, spk: dict, ssl_dim: int = 8, seed: int = 0, name: str = "diffusion",
                    **model) -> Path:  # fmt: skip
    """Write config.yaml + model_0.pt under ``root/logs/44k/<name>``; returns the folder."""
    from common.hparams import HParams
    from diffusion import build_unit2mel

    folder = Path(root) / "logs" / "44k" / name
    folder.mkdir(parents=True, exist_ok=True)
    cfg = diffusion_config(spk, ssl_dim, **model)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(seed)
    net = build_unit2mel(HParams(**cfg))
    # the zero-initialised output layer would make every random model predict zero noise
    torch.nn.init.normal_(net.decoder.denoise_fn.output_projection.weight, std=0.05)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    torch.save({"global_step": 0, "model": net.state_dict(), "optimizer": opt.state_dict()},
               folder / "model_0.pt")  # fmt: skip
    return folder


def write_diffusion_training_set(
    root: Path, duration: float = 1.4, ssl_dim: int = 8, **train
) -> dict:
    """A 2-singer data set with every ``--use_diff`` feature, a tiny NSF-HiFiGAN in
    ``pretrain/nsf_hifigan`` and ``configs/diffusion.yaml`` (tiny model, 0.5 s crops)."""
    import numpy as np

    from common.audio import load_audio
    from modules.mel_processing import NsfMel, VolumeExtractor
    from preprocess.features import required_outputs, write_diffusion_features
    from tests.infer_fixtures import NSF_CONFIG
    from training.synthetic import write_training_set
    from vdecoder import NsfHifiGanGenerator, save_nsf_hifigan

    root = Path(root)
    info = write_training_set(root, 2, 4, duration, ssl_dim, write_spec=False, write_vol=True)
    mel, vol = NsfMel(), VolumeExtractor(512)
    for rel in info["train"] + info["val"]:
        path = str(root / rel)
        wav, _ = load_audio(path, sr=44100)
        write_diffusion_features(path, np.asarray(wav, np.float32), mel, vol,
                                 required_outputs(path, True, True))  # fmt: skip
    torch.manual_seed(1)
    save_nsf_hifigan(NsfHifiGanGenerator.from_openvpi(NSF_CONFIG), NSF_CONFIG,
                     root / "pretrain" / "nsf_hifigan")  # fmt: skip
    cfg = diffusion_config(info["spk"], ssl_dim)
    cfg["data"]["duration"] = 0.5
    cfg["infer"]["speedup"] = 50
    cfg["train"].update(batch_size=4, num_workers=0, interval_log=1, interval_val=4,
                        interval_force_save=8, save_opt=True, **train)  # fmt: skip
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "diffusion.yaml").write_text(yaml.safe_dump(cfg))
    return {**info, "config": cfg}
