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
