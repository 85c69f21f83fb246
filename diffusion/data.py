"""Diffusion training data (sovits-4.1.md §13 "Training"; reference ``diffusion/data_loaders.py``).

For every file-list entry ``X = dataset/44k/<spk>/<name>.wav`` it reads ``X.mel.npy``
(``[T, 128]``), ``X.aug_mel.npy`` + ``X.aug_keyshift.npy``, ``X.vol.npy``, ``X.aug_vol.npy``,
``X.f0.npy`` (row 0, Hz) and ``X.soft.pt`` (units stretched to T frames with
``data.unit_interpolate_mode``, ``[T, C]``; fp16 in memory with ``train.cache_fp16``). The speaker
id is ``spk[<spk folder>]`` (0 when ``model.n_spk <= 1``).

Training items are ``data.duration``-second crops: ``start ~ U(0, dur − duration − 0.1)`` s,
``int(duration·sr/hop)`` frames. With probability ½ the augmented mel / volume are used, f0 is
scaled by ``2^(keyshift/12)`` and ``aug_shift = keyshift``; otherwise ``aug_shift = 0``. Clips
shorter than ``duration + 0.1`` s are left out (reported once). Validation items are whole files.

Randomness is drawn from a generator seeded by ``(seed, epoch, index)``, so a resumed run sees
the same crops. Missing diffusion features are a :class:`MissingFeatures` error telling the user
to run ``preprocess_hubert_f0.py --use_diff``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common import features as ff
from common.errors import ConfigError, InputError, UserError

logger = logging.getLogger(__name__)

__all__ = ["DiffusionDataset", "MissingFeatures", "collate"]


class MissingFeatures(InputError, FileNotFoundError):
    """A feature file that train_diff.py needs is missing (message says what to run)."""


def _need(path: str) -> str:
    if not os.path.isfile(path):
        raise MissingFeatures(
            f"{path}: missing; run preprocess_hubert_f0.py --use_diff to write the diffusion "
            "features (mel, aug_mel, vol, aug_vol)"
        )
    return path


class DiffusionDataset(Dataset):
    def __init__(self, filelist: str | os.PathLike, args, train: bool = True, seed: int = 1234,
                 config: str | os.PathLike = "diffusion config"):  # fmt: skip
        self.args = args
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        self.sr = int(args.data.sampling_rate)
        self.hop = int(args.data.block_size)
        self.duration = float(args.data.duration)
        self.n_spk = int(args.model.n_spk or 1)
        self.spk = {str(k): int(v) for k, v in (args.spk or {}).items()}
        self.mode = args.data.unit_interpolate_mode or "left"
        self.fp16 = bool(args.train.get("cache_fp16", False))
        self.cache_all = bool(args.train.get("cache_all_data", True))
        if not os.path.isfile(filelist):
            raise InputError(
                f"{filelist}: file list not found", "run preprocess_flist_config.py first"
            )
        paths = [ln.strip() for ln in Path(filelist).read_text(encoding="utf-8").splitlines()]
        paths = [p for p in paths if p]
        if not paths:
            raise InputError(f"{filelist}: no files listed", "run preprocess_flist_config.py")
        self.paths, short, longest = [], [], 0.0
        for p in paths:
            self.speaker_id(p)  # a speaker missing from the spk map fails here, not mid-epoch
            for f in (ff.mel_path(p), ff.aug_mel_path(p), ff.aug_keyshift_path(p), ff.vol_path(p),
                      ff.aug_vol_path(p), ff.f0_path(p), ff.soft_path(p)):  # fmt: skip
                _need(f)
            n_frames = _frames(ff.mel_path(p))
            longest = max(longest, n_frames * self.hop / self.sr)
            if train and n_frames * self.hop / self.sr < self.duration + 0.1:
                short.append(p)
                continue
            self.paths.append(p)
        if short:
            logger.warning(
                "%d clip(s) shorter than data.duration + 0.1 = %.2f s are left out of training: %s%s",
                len(short), self.duration + 0.1, ", ".join(short[:5]), " …" if len(short) > 5 else "",
            )  # fmt: skip
        if not self.paths:
            raise ConfigError(
                f"{config}: data.duration is "
                f"{self.duration} s, but every clip of {filelist} is shorter than data.duration "
                f"+ 0.1 s = {self.duration + 0.1:.2f} s (the longest is {longest:.2f} s)",
                "lower data.duration",
            )
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def speaker_id(self, path: str) -> int:
        if self.n_spk <= 1:
            return 0
        name = Path(path).parent.name
        if name not in self.spk:
            raise InputError(
                f"{path}: speaker folder {name!r} is not in the diffusion config's spk map "
                f"({', '.join(self.spk)})",
                "re-run preprocess_flist_config.py",
            )
        return self.spk[name]

    def check_widths(self, mel_bins: int, config: str | os.PathLike) -> None:
        """The first clip's units must have ``data.encoder_out_channels`` channels and its mels
        ``mel_bins`` (the vocoder's) bins: a one-line error here rather than a shape error in the
        first step."""
        item = self._load(0)
        p, units = self.paths[0], item["units"]
        want = int(self.args.data.encoder_out_channels)
        if units.shape[1] != want:
            raise ConfigError(
                f"{config}: data.encoder_out_channels is {want} but {ff.soft_path(p)} has "
                f"{units.shape[1]} channels",
                "use the config of the encoder these units came from, or re-run "
                "preprocess_hubert_f0.py --use_diff",
            )
        if item["mel"].shape[1] != mel_bins:
            raise InputError(
                f"{ff.mel_path(p)}: {item['mel'].shape[1]} mel bins, but the vocoder "
                f"({self.args.vocoder.ckpt}) makes {mel_bins}",
                "re-run preprocess_hubert_f0.py --use_diff with this vocoder",
            )

    def _load(self, i: int) -> dict:
        if i in self._cache:
            return self._cache[i]
        try:
            return self._read(i)
        except (ValueError, OSError) as e:
            if isinstance(e, UserError):
                raise
            raise InputError(
                f"{self.paths[i]}: unreadable diffusion features ({e})",
                "re-run preprocess_hubert_f0.py --use_diff",
            ) from None

    def _read(self, i: int) -> dict:
        from common.checkpoint import safe_load
        from training.units import repeat_expand_2d

        p = self.paths[i]
        mel = ff.load_npy(ff.mel_path(p)).astype(np.float32)
        n = mel.shape[0]
        f0 = ff.load_f0(ff.f0_path(p))[0]
        units = safe_load(ff.soft_path(p))
        if not torch.is_tensor(units) or units.dim() != 3:
            raise InputError(f"{ff.soft_path(p)}: expected a [1, C, T] tensor",
                             "re-run preprocess_hubert_f0.py --use_diff")  # fmt: skip
        units = repeat_expand_2d(units[0].float(), n, self.mode).T.contiguous()
        item = {
            "mel": torch.from_numpy(mel),
            "aug_mel": torch.from_numpy(ff.load_npy(ff.aug_mel_path(p)).astype(np.float32)),
            "keyshift": float(ff.load_npy(ff.aug_keyshift_path(p)).reshape(-1)[0]),
            "f0": torch.from_numpy(f0[:n].astype(np.float32))[:, None],
            "vol": torch.from_numpy(ff.load_npy(ff.vol_path(p))[:n].astype(np.float32))[:, None],
            "aug_vol": torch.from_numpy(ff.load_npy(ff.aug_vol_path(p))[:n].astype(np.float32))[:, None],
            "units": units.half() if self.fp16 else units,
            "spk_id": self.speaker_id(p),
            "name": p,
        }  # fmt: skip
        lengths = {k: item[k].shape[0] for k in ("aug_mel", "f0", "vol", "aug_vol")}
        bad = {k: v for k, v in lengths.items() if v < n}
        if bad:
            raise InputError(f"{p}: feature lengths {bad} are shorter than the mel ({n} frames)",
                             "re-run preprocess_hubert_f0.py --use_diff")  # fmt: skip
        if self.cache_all:
            self._cache[i] = item
        return item

    def __getitem__(self, i: int) -> dict:
        item = self._load(i)
        mel, vol, f0, shift = item["mel"], item["vol"], item["f0"], 0.0
        units = item["units"]
        n = mel.shape[0]
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            dur = n * self.hop / self.sr
            frames = int(self.duration / (self.hop / self.sr))
            start = rng.uniform(0, max(dur - self.duration - 0.1, 0))
            s = min(int(start / (self.hop / self.sr)), n - frames)
            sl = slice(s, s + frames)
            if rng.random() < 0.5:
                mel, vol = item["aug_mel"], item["aug_vol"]
                f0 = f0 * 2 ** (item["keyshift"] / 12)
                shift = item["keyshift"]
            mel, vol, f0, units = mel[sl], vol[sl], f0[sl], units[sl]
        return {
            "mel": mel, "f0": f0, "volume": vol, "units": units.float(),
            "spk_id": torch.LongTensor([item["spk_id"]]),
            "aug_shift": torch.FloatTensor([[shift]]), "name": item["name"],
        }  # fmt: skip


def _frames(path: str) -> int:
    """Rows of a ``[T, n_mels]`` mel file (memory-mapped); an unreadable one is an InputError."""
    try:
        mel = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(
            f"{path}: unreadable ({e})", "re-run preprocess_hubert_f0.py --use_diff"
        ) from None
    if mel.ndim != 2:
        raise InputError(f"{path}: expected a [T, n_mels] mel, got shape {list(mel.shape)}",
                         "re-run preprocess_hubert_f0.py --use_diff")  # fmt: skip
    return int(mel.shape[0])


def collate(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "name"}
    out["name"] = [it["name"] for it in items]
    return out
