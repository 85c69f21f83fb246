"""``preprocess_flist_config.py``: file lists, ``configs/config.json`` and ``configs/diffusion.yaml``.

Differences from so-vits-svc 4.1 (§2.2), all deliberate:
- Speaker ids follow the **sorted** speaker folder names (the reference used ``os.listdir`` order,
  which differs between machines), so the same dataset always gives the same ids.
- Lists are shuffled with a fixed seed, so re-running gives the same split.
- Validation takes 2 files per speaker as in the reference, but never a speaker's last training
  file: a speaker with 2 or 3 usable files gives 1 to validation. A speaker with fewer than 2
  usable files is left out with a message.
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import soundfile as sf
import yaml

from common.atomic import write_text
from common.config_check import TRAIN, validate_config, validate_diffusion_config
from common.errors import UserError
from common.hparams import load_config, save_config

MIN_SECONDS = 0.3
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "configs_template"

# encoder → (ssl_dim, gin_channels, filter_channels or None to keep the template's, diffusion
# encoder_out_channels). The reference's table plus the ONNX encoders and the CTranslate2 Whispers.
ENCODER_DIMS: dict[str, tuple[int, int, int | None, int]] = {
    "vec768l12": (768, 768, 768, 768),
    "dphubert": (768, 768, 768, 768),
    "wavlmbase+": (768, 768, 768, 768),
    "vec768l9-onnx": (768, 768, 768, 768),
    "vec768l12-onnx": (768, 768, 768, 768),
    "vec256l9": (256, 256, None, 256),
    "hubertsoft": (256, 256, None, 256),
    "vec256l9-onnx": (256, 256, None, 256),
    "vec256l12-onnx": (256, 256, None, 256),
    "hubertsoft-onnx": (256, 256, None, 256),
    "whisper-ppg": (1024, 1024, 1024, 1024),
    "cnhubertlarge": (1024, 1024, 1024, 1024),
    "whisper-ppg-large": (1280, 1280, 1280, 1280),
    "whisper-ppg-ct2": (384, 384, None, 384),
    "whisper-base-ct2": (512, 512, None, 512),
}


class DatasetError(UserError, ValueError):
    """The dataset folder cannot give any usable speaker."""


def scan_speaker(spk_dir: Path, source_dir: str, problems: list[str]) -> list[str]:
    """Usable wav paths of one speaker, as ``source_dir/spk/file`` strings (reference format)."""
    paths = []
    try:
        names = sorted(os.listdir(spk_dir))
    except OSError as e:
        problems.append(f"{spk_dir}: folder skipped: {(e.strerror or str(e)).lower()}")
        return paths
    for name in names:
        path = spk_dir / name
        if name.startswith(".") or not name.endswith("wav") or not path.is_file():
            continue
        try:
            info = sf.info(str(path))
        except Exception:  # noqa: BLE001
            problems.append(f"{path}: not a readable wav file; skipped")
            continue
        if info.frames / info.samplerate < MIN_SECONDS:
            problems.append(
                f"{path}: shorter than {MIN_SECONDS} s "
                f"({info.frames / info.samplerate:.2f} s); skipped"
            )
            continue
        if not name.isascii():
            problems.append(f"{path}: non-ASCII file name (kept; some tools may not like it)")
        paths.append("/".join([source_dir, spk_dir.name, name]))
    return paths


def build_filelists(
    source_dir: str, seed: int = 1234
) -> tuple[dict[str, int], list[str], list[str], list[str]]:
    """Return ``(spk_map, train, val, problems)`` for ``source_dir/<speaker>/*.wav``."""
    root = Path(source_dir)
    if not root.is_dir():
        raise DatasetError(f"{source_dir}: folder not found (run resample.py first)")
    problems: list[str] = []
    rng = random.Random(seed)
    spk_map: dict[str, int] = {}
    train: list[str] = []
    val: list[str] = []
    for spk in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        wavs = scan_speaker(root / spk, source_dir, problems)
        if len(wavs) < 2:
            problems.append(
                f"{root / spk}: speaker '{spk}' has {len(wavs)} usable file(s); at least "
                "2 are needed (one for training, one for validation); speaker left out"
            )
            continue
        spk_map[spk] = len(spk_map)
        rng.shuffle(wavs)
        n_val = 2 if len(wavs) >= 4 else 1
        val += wavs[:n_val]
        train += wavs[n_val:]
    if not spk_map:
        raise DatasetError(
            f"{source_dir}: no speaker with at least 2 usable wav files "
            f"(expected {source_dir}/<speaker>/*.wav)"
        )
    rng.shuffle(train)
    rng.shuffle(val)
    return spk_map, train, val, problems


def make_config(spk_map: dict[str, int], speech_encoder: str, vol_aug: bool, tiny: bool) -> dict:
    """``configs/config.json`` content from the template (§2.2)."""
    template = "config_tiny_template.json" if tiny else "config_template.json"
    config = load_config(TEMPLATE_DIR / template).to_dict()
    ssl_dim, gin, filt, _ = ENCODER_DIMS[speech_encoder]
    model = config["model"]
    model["ssl_dim"] = ssl_dim
    model["gin_channels"] = gin
    if filt is not None:
        model["filter_channels"] = filt
    model["n_speakers"] = len(spk_map)
    model["speech_encoder"] = speech_encoder
    if vol_aug:
        config["train"]["vol_aug"] = True
        model["vol_embedding"] = True
    if tiny:
        model["filter_channels"] = 512
    config["spk"] = dict(spk_map)
    return config


def make_diffusion_config(spk_map: dict[str, int], speech_encoder: str) -> dict:
    with open(TEMPLATE_DIR / "diffusion_template.yaml", encoding="utf-8") as f:
        d = yaml.safe_load(f)
    d["model"]["n_spk"] = len(spk_map)
    d["data"]["encoder"] = speech_encoder
    d["data"]["encoder_out_channels"] = ENCODER_DIMS[speech_encoder][3]
    d["spk"] = dict(spk_map)
    return d


def write_outputs(args: argparse.Namespace) -> dict[str, int]:
    spk_map, train, val, problems = build_filelists(args.source_dir)
    for p in problems:
        print(f"warning: {p}")
    config = make_config(spk_map, args.speech_encoder, args.vol_aug, args.tiny)
    config_dir = Path(args.config_dir)
    diff = make_diffusion_config(spk_map, args.speech_encoder)
    validate_config(config, config_dir / "config.json", TRAIN)  # what every later step checks
    validate_diffusion_config(diff, config_dir / "diffusion.yaml", TRAIN, config)
    write_text(args.train_list, "".join(f"{w}\n" for w in train))
    write_text(args.val_list, "".join(f"{w}\n" for w in val))
    save_config(config, config_dir / "config.json")
    write_text(config_dir / "diffusion.yaml", yaml.safe_dump(diff, allow_unicode=True))
    print(
        f"speakers (id: name, sorted by name): {', '.join(f'{i}: {s}' for s, i in spk_map.items())}"
    )
    print(f"{len(train)} training and {len(val)} validation files")
    for path in (
        args.train_list,
        args.val_list,
        config_dir / "config.json",
        config_dir / "diffusion.yaml",
    ):
        print(f"wrote {path}")
    return spk_map


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Write file lists and configs for training.")
    p.add_argument(
        "--train_list", type=str, default="./filelists/train.txt", help="path to train list"
    )
    p.add_argument("--val_list", type=str, default="./filelists/val.txt", help="path to val list")
    p.add_argument("--source_dir", type=str, default="./dataset/44k", help="path to source dir")
    p.add_argument(
        "--speech_encoder",
        type=str,
        default="vec768l12",
        choices=sorted(ENCODER_DIMS),
        help="choice a speech encoder|" + ",".join(ENCODER_DIMS),
    )
    p.add_argument(
        "--vol_aug",
        action="store_true",
        help="Whether to use volume embedding and volume augmentation",
    )
    p.add_argument("--tiny", action="store_true", help="Whether to train sovits tiny")
    p.add_argument("--config_dir", type=str, default="./configs", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    write_outputs(args)
    return 0
