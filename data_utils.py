"""Training dataset and collate (sovits-4.1.md §11), reading our per-utterance files (§4).

For each wav ``X`` listed in a filelist (``./dataset/44k/<spk>/<name>.wav``):

- ``X`` itself: 44.1 kHz (``data.sampling_rate``) 16-bit audio, read as ``int16 / 32768``;
- ``<name>.spec.pt`` (:func:`common.features.spec_path`): linear spectrogram ``[1025, T]``,
  regenerated with ``spectrogram_torch`` and saved atomically when missing or unreadable;
- ``X.f0.npy``: ``(2, T)`` float32, f0 [Hz] and uv (:func:`common.features.load_f0`);
- ``X.soft.pt``: units ``[1, ssl_dim, T16]`` stretched to ``T`` frames by
  :func:`training.units.repeat_expand_2d` with ``data.unit_interpolate_mode``;
- ``X.vol.npy`` ``[T]``, only when ``model.vol_embedding``.

The speaker is the parent folder's name, mapped through ``hps.spk``. Frame counts must agree
within 2 frames (reference tolerance) and everything is trimmed to the shortest; otherwise a
:class:`DatasetError` names the file and says which files disagree.

Each item is ``(c[C,T], f0[T], spec[1025,T], wav[1,T*hop], spk[1], uv[T], vol[T] or None)``, and
with ``return_ids=True`` the dataset index is appended (used to record which samples a rank saw).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.utils.data

from common.checkpoint import CheckpointError, safe_load
from common.errors import UserError
from common.features import f0_path, load_f0, load_npy, soft_path, spec_path, vol_path
from training.units import repeat_expand_2d

logger = logging.getLogger(__name__)

MAX_FRAMES = 800  # longer items are cut to a random 790-frame window (reference)
CUT_FRAMES = 790
MAX_LONG_WARNINGS = 10  # files named one by one in the "longer than an item may be" warning


class DatasetError(UserError, ValueError):
    """A training item is unusable; the message starts with the offending file."""


def load_filepaths(filelist: str | os.PathLike) -> list[str]:
    """Read a filelist: one wav path per line (a ``|``-separated line keeps its first field)."""
    try:
        with open(filelist, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except FileNotFoundError:
        raise FileNotFoundError(f"{filelist}: filelist not found") from None
    return [ln.split("|")[0] for ln in lines if ln]


def _read_wav(path: str, expected_sr: int) -> torch.Tensor:
    """``[1, L]`` float32 = int16 / 32768 (what scipy + ``/ max_wav_value`` gives for PCM_16)."""
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path}: not a readable audio file ({e})") from None
    if sr != expected_sr:
        raise DatasetError(
            f"{path}: sample rate {sr} Hz, but the config expects {expected_sr} Hz "
            "(run resample.py and preprocessing again)"
        )
    if data.shape[0] == 0:
        raise DatasetError(f"{path}: contains no samples")
    return torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))[None]


class TextAudioSpeakerLoader(torch.utils.data.Dataset):
    """so-vits-svc 4.1 training/validation dataset.

    ``audiopaths`` is a filelist path or a list of wav paths. The list is shuffled once with seed
    1234 like the reference (a local RNG: the global ``random`` state is left alone).
    ``all_in_mem`` loads every item at construction. ``vol_aug`` enables volume augmentation
    when ``train.vol_aug`` is also true and volumes are loaded (``model.vol_embedding``).
    """

    def __init__(
        self,
        audiopaths: str | os.PathLike | Sequence[str],
        hparams,
        all_in_mem: bool = False,
        vol_aug: bool = True,
        return_ids: bool = False,
        crop: bool = True,
    ):
        if isinstance(audiopaths, (str, os.PathLike)):
            self.audiopaths = load_filepaths(audiopaths)
            source = str(audiopaths)
        else:
            self.audiopaths = [str(p) for p in audiopaths]
            source = "the given list"
        if not self.audiopaths:
            raise DatasetError(f"{source}: no audio files listed")
        self.hparams = hparams
        data = hparams.data
        self.max_wav_value = float(data.max_wav_value)
        self.sampling_rate = int(data.sampling_rate)
        self.filter_length = int(data.filter_length)
        self.hop_length = int(data.hop_length)
        self.win_length = int(data.win_length)
        self.unit_interpolate_mode = data.get("unit_interpolate_mode", "left") or "left"
        self.spk_map = dict(hparams.spk.items())
        self.ssl_dim = int(hparams.model.ssl_dim) if "ssl_dim" in hparams.model else None
        self.vol_emb = bool(hparams.model.get("vol_embedding", False))
        self.vol_aug = bool(hparams.train.get("vol_aug", False)) and vol_aug
        self.return_ids = return_ids
        # optional train.max_frames: cut longer items to a random window of that many frames
        # (cheaper steps on the CPU: the encoders see whole items); absent = reference 800/790
        self.max_frames = int(hparams.train.get("max_frames", 0) or 0) if crop else 0
        random.Random(1234).shuffle(self.audiopaths)

        missing = [p for p in self.audiopaths if not os.path.isfile(p)]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DatasetError(
                f"{source}: {len(missing)} listed audio file(s) not found (paths are relative to "
                f"the working directory {os.getcwd()}): {shown}"
            )

        self._warn_long_items("training" if crop else "validation")
        self.all_in_mem = all_in_mem
        self._reported: set[str] = set()
        self.cache = None
        if all_in_mem:
            cache = [self._try_get_audio(p) for p in self.audiopaths]
            self.audiopaths = [p for p, c in zip(self.audiopaths, cache) if c is not None]
            self.cache = [c for c in cache if c is not None]
            if not self.cache:
                raise DatasetError(f"{source}: no usable item (reasons above)",
                                   "re-run preprocess_hubert_f0.py")  # fmt: skip

    def _warn_long_items(self, kind: str) -> None:
        """One warning line per listed file longer than an item may be (:meth:`random_slice`
        cuts it to one random window per epoch; the rest of it goes unused that epoch). The
        window also caps what a long clip costs: a step's memory grows with the longest item of
        its batch (the encoders' attention with its square), so without the cut one 33 s clip
        would multiply it. Reads the file headers only."""
        import soundfile as sf

        limit, cut = (self.max_frames,) * 2 if self.max_frames else (MAX_FRAMES, CUT_FRAMES)
        setting = "train.max_frames" if self.max_frames else "so-vits-svc 4.1's crop"
        sr, hop = self.sampling_rate, self.hop_length
        long = []
        for p in self.audiopaths:
            try:
                n = sf.info(p).frames
            except Exception:  # noqa: BLE001 - an unreadable file is reported when it is loaded
                continue
            if n // hop > limit:
                long.append((p, n))
        for p, n in long[:MAX_LONG_WARNINGS]:
            logger.warning(
                "%s: %.1f s is longer than a %s item may be (%.1f s, %d frames: %s); each epoch "
                "uses one random %.1f s window of it (slice long recordings into 5-15 s clips, "
                "as for so-vits-svc 4.1)", p, n / sr, kind, limit * hop / sr, limit, setting,
                cut * hop / sr,
            )  # fmt: skip
        if len(long) > MAX_LONG_WARNINGS:
            logger.warning("%d more %s files are longer than %.1f s", len(long) - MAX_LONG_WARNINGS,
                           kind, limit * hop / sr)  # fmt: skip

    # ------------------------------------------------------------------------------------------
    def _spec(self, filename: str, audio_norm: torch.Tensor) -> torch.Tensor:
        path = spec_path(filename)
        n_bins = self.filter_length // 2 + 1
        if os.path.exists(path):
            try:
                spec = safe_load(path)
                if isinstance(spec, torch.Tensor) and spec.dim() == 2 and spec.shape[0] == n_bins:
                    return spec.float()
                logger.warning("%s: unexpected content; recomputing the spectrogram", path)
            except CheckpointError as e:
                logger.warning("%s; recomputing the spectrogram", e)
        from common.atomic import torch_save
        from modules.mel_processing import spectrogram_torch

        spec = spectrogram_torch(
            audio_norm, self.filter_length, self.sampling_rate, self.hop_length, self.win_length,
            center=False,
        ).squeeze(0)  # fmt: skip
        torch_save(spec, path)
        return spec

    def get_audio(self, filename: str):
        filename = filename.replace("\\", "/")
        audio_norm = _read_wav(filename, self.sampling_rate)
        spec = self._spec(filename, audio_norm)

        spk_name = Path(filename).parent.name
        if spk_name not in self.spk_map:
            raise DatasetError(
                f"{filename}: speaker folder '{spk_name}' is not in the config's spk map "
                f"({sorted(self.spk_map)})"
            )
        spk = torch.LongTensor([int(self.spk_map[spk_name])])

        f0_file = f0_path(filename)
        if not os.path.exists(f0_file):
            raise DatasetError(f"{filename}: {f0_file} is missing (run preprocess_hubert_f0.py)")
        try:
            f0_np, uv_np = load_f0(f0_file)
        except ValueError as e:
            raise DatasetError(f"{filename}: {e} (run preprocess_hubert_f0.py again)") from None
        f0 = torch.from_numpy(f0_np.astype(np.float32))
        uv = torch.from_numpy(uv_np.astype(np.float32))

        c_file = soft_path(filename)
        try:
            c = safe_load(c_file)
        except CheckpointError as e:
            raise DatasetError(f"{filename}: {e} (run preprocess_hubert_f0.py)") from None
        if not isinstance(c, torch.Tensor) or c.dim() != 3 or c.shape[0] != 1 or c.shape[2] == 0:
            shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
            raise DatasetError(
                f"{filename}: {c_file} should hold a [1, C, T16] tensor, got {shape}"
            )
        if not (torch.isfinite(c).all() and np.isfinite(f0_np).all()):
            raise DatasetError(f"{filename}: NaN or infinite values in {c_file} or {f0_file}",
                               "delete them and re-run preprocess_hubert_f0.py")  # fmt: skip
        if self.ssl_dim is not None and c.shape[1] != self.ssl_dim:
            raise DatasetError(
                f"{filename}: {c_file} has {c.shape[1]} channels but the config's ssl_dim is "
                f"{self.ssl_dim} (features from another speech encoder? re-run preprocessing)"
            )
        c = repeat_expand_2d(c.squeeze(0).float(), f0.shape[0], mode=self.unit_interpolate_mode)

        volume = None
        if self.vol_emb:
            v_file = vol_path(filename)
            if not os.path.exists(v_file):
                raise DatasetError(
                    f"{filename}: {v_file} is missing but model.vol_embedding is on "
                    "(run preprocess_hubert_f0.py again)"
                )
            try:
                volume = torch.from_numpy(
                    np.asarray(load_npy(v_file), dtype=np.float32).reshape(-1)
                )
            except ValueError as e:
                raise DatasetError(f"{filename}: {e} (run preprocess_hubert_f0.py again)") from None

        n_c, n_spec, n_audio = c.size(-1), spec.size(-1), audio_norm.shape[1]
        lmin = min(n_c, n_spec)
        if abs(n_c - n_spec) >= 3:
            raise DatasetError(
                f"{filename}: frame counts disagree: {f0_file} has {n_c} frames but "
                f"{spec_path(filename)} has {n_spec} (the audio gives {n_audio // self.hop_length}); "
                "delete the stale feature files and re-run preprocessing"
            )
        if abs(n_audio - lmin * self.hop_length) >= 3 * self.hop_length:
            raise DatasetError(
                f"{filename}: the audio has {n_audio} samples ({n_audio // self.hop_length} frames) "
                f"but the features have {lmin} frames; re-run preprocessing for this file"
            )
        if volume is not None and (volume.shape[0] < lmin or volume.shape[0] - lmin >= 3):
            raise DatasetError(
                f"{filename}: {vol_path(filename)} has {volume.shape[0]} frames but the other "
                f"features have {lmin}; re-run preprocessing for this file"
            )
        spec, c, f0, uv = spec[:, :lmin], c[:, :lmin], f0[:lmin], uv[:lmin]
        audio_norm = audio_norm[:, : lmin * self.hop_length]
        if volume is not None:
            volume = volume[:lmin]
        return c, f0, spec, audio_norm, spk, uv, volume

    def random_slice(self, c, f0, spec, audio_norm, spk, uv, volume):
        if random.choice([True, False]) and self.vol_aug and volume is not None:
            from modules.mel_processing import spectrogram_torch

            max_amp = float(torch.max(torch.abs(audio_norm))) + 1e-5
            max_shift = min(1, np.log10(1 / max_amp))
            log10_vol_shift = random.uniform(-1, max_shift)
            audio_norm = audio_norm * (10**log10_vol_shift)
            volume = volume * (10**log10_vol_shift)
            d = self.hparams.data
            spec = spectrogram_torch(
                audio_norm, d.filter_length, d.sampling_rate, d.hop_length, d.win_length,
                center=False,
            )[0]  # fmt: skip
        limit, cut = (self.max_frames,) * 2 if self.max_frames else (MAX_FRAMES, CUT_FRAMES)
        if spec.shape[1] > limit:
            start = random.randint(0, spec.shape[1] - limit)
            end = start + cut
            spec, c, f0, uv = spec[:, start:end], c[:, start:end], f0[start:end], uv[start:end]
            audio_norm = audio_norm[:, start * self.hop_length : end * self.hop_length]
            if volume is not None:
                volume = volume[start:end]
        return c, f0, spec, audio_norm, spk, uv, volume

    def _try_get_audio(self, filename: str):
        """``get_audio`` or, for a bad item, one warning line naming it (once) and None."""
        try:
            return self.get_audio(filename)
        except DatasetError as e:
            if filename not in self._reported:
                self._reported.add(filename)
                logger.warning("%s; this item is skipped", e)
            return None

    def __getitem__(self, index: int):
        """Item ``index``; a bad item (unreadable or foreign feature file) is reported and the
        next good one is used instead, so batches keep their size (and DDP ranks their step
        count)."""
        if self.all_in_mem:
            item = self.random_slice(*self.cache[index])
            return (*item, index) if self.return_ids else item
        n = len(self.audiopaths)
        for k in range(n):
            i = (index + k) % n
            loaded = self._try_get_audio(self.audiopaths[i])
            if loaded is not None:
                item = self.random_slice(*loaded)
                return (*item, i) if self.return_ids else item
        raise DatasetError("no usable training item (every item failed; reasons above)",
                           "re-run preprocess_hubert_f0.py")  # fmt: skip

    def __len__(self) -> int:
        return len(self.audiopaths)


class TextAudioCollate:
    """Sort by length (descending) and zero-pad (reference ``TextAudioCollate``).

    Returns ``(c[B,C,T], f0[B,T], spec[B,F,T], wav[B,1,L], spk[B,1], lengths[B], uv[B,T],
    vol[B,T] or None)``; items carrying an index (``return_ids``) add ``ids[B]`` at the end, in
    the sorted order.
    """

    def __call__(self, batch):
        batch = [b for b in batch if b is not None]
        has_ids = len(batch[0]) == 8
        lengths_in = torch.LongTensor([x[0].shape[1] for x in batch])
        _, ids_sorted_decreasing = torch.sort(lengths_in, dim=0, descending=True)

        n = len(batch)
        max_c_len = max(x[0].size(1) for x in batch)
        max_wav_len = max(x[3].size(1) for x in batch)
        lengths = torch.zeros(n, dtype=torch.long)
        c_padded = torch.zeros(n, batch[0][0].shape[0], max_c_len)
        f0_padded = torch.zeros(n, max_c_len)
        spec_padded = torch.zeros(n, batch[0][2].shape[0], max_c_len)
        wav_padded = torch.zeros(n, 1, max_wav_len)
        spkids = torch.zeros(n, 1, dtype=torch.long)
        uv_padded = torch.zeros(n, max_c_len)
        volume_padded = torch.zeros(n, max_c_len)
        ids = torch.zeros(n, dtype=torch.long)

        for i in range(n):
            row = batch[ids_sorted_decreasing[i]]
            c = row[0]
            c_padded[i, :, : c.size(1)] = c
            lengths[i] = c.size(1)
            f0_padded[i, : row[1].size(0)] = row[1]
            spec_padded[i, :, : row[2].size(1)] = row[2]
            wav_padded[i, :, : row[3].size(1)] = row[3]
            spkids[i, 0] = row[4]
            uv_padded[i, : row[5].size(0)] = row[5]
            volume = row[6]
            if volume is not None and volume_padded is not None:
                volume_padded[i, : volume.size(0)] = volume
            else:
                volume_padded = None
            if has_ids:
                ids[i] = row[7]
        out = (c_padded, f0_padded, spec_padded, wav_padded, spkids, lengths, uv_padded,
               volume_padded)  # fmt: skip
        return (*out, ids) if has_ids else out
