"""Silence slicer used by inference (sovits-4.1.md §15.1; the RVC/openvpi audio-slicer).

The algorithm is the reference's, step for step (every duration is counted in hop frames):

- frame RMS with ``librosa.feature.rms(frame_length=win, hop_length=hop)`` (centred, zero padded:
  librosa ≥ 0.9 pads with zeros, the same as the reference's librosa 0.9.1);
- a silent run is cut only when it is leading (starts at frame 0 and is longer than
  ``max_sil_kept``) or when it lasts at least ``min_interval`` **and** the current clip is at least
  ``min_length`` long;
- a run of at most ``max_sil_kept`` is cut at its argmin-RMS frame; one of at most
  ``2·max_sil_kept`` keeps up to ``max_sil_kept`` on each side of the argmin; a longer one is cut
  at the argmins of its first and last ``max_sil_kept`` windows;
- a trailing silence of at least ``min_interval`` is cut at the argmin within ``max_sil_kept``.

The result is an ordered list of ``{"slice": bool (True = silence), "split_time": "start,end"}``
in samples, the reference's format (it returned a dict keyed "0", "1", …; :func:`cut` returns
that dict too).

Departure (documented): the reference's short-input test compared the number of *samples* with
``min_length`` in *frames* (so only inputs of ≤ 250 samples were left whole); that is kept as is,
because changing it would change where real songs are cut.
"""

from __future__ import annotations

import numpy as np


class Slicer:
    def __init__(
        self,
        sr: int,
        threshold: float = -40.0,
        min_length: int = 5000,
        min_interval: int = 300,
        hop_size: int = 20,
        max_sil_kept: int = 5000,
    ):
        if not min_length >= min_interval >= hop_size:
            raise ValueError("min_length >= min_interval >= hop_size must hold")
        if not max_sil_kept >= hop_size:
            raise ValueError("max_sil_kept >= hop_size must hold")
        min_interval = sr * min_interval / 1000
        self.threshold = 10 ** (threshold / 20.0)
        self.hop_size = round(sr * hop_size / 1000)
        self.win_size = min(round(min_interval), 4 * self.hop_size)
        self.min_length = round(sr * min_length / 1000 / self.hop_size)
        self.min_interval = round(min_interval / self.hop_size)
        self.max_sil_kept = round(sr * max_sil_kept / 1000 / self.hop_size)

    def _rms(self, samples: np.ndarray) -> np.ndarray:
        import librosa

        return librosa.feature.rms(
            y=samples, frame_length=self.win_size, hop_length=self.hop_size, center=True,
            pad_mode="constant",
        ).squeeze(0)  # fmt: skip

    def silence_tags(self, samples: np.ndarray) -> list[tuple[int, int]]:
        """The (begin, end) hop-frame ranges to cut as silence."""
        rms_list = self._rms(samples)
        sil_tags: list[tuple[int, int]] = []
        silence_start = None
        clip_start = 0
        for i, rms in enumerate(rms_list):
            if rms < self.threshold:  # silent frame: remember where the run began
                if silence_start is None:
                    silence_start = i
                continue
            if silence_start is None:  # sound, and no silent run pending
                continue
            is_leading_silence = silence_start == 0 and i > self.max_sil_kept
            need_slice_middle = (
                i - silence_start >= self.min_interval and i - clip_start >= self.min_length
            )
            if not is_leading_silence and not need_slice_middle:
                silence_start = None
                continue
            if i - silence_start <= self.max_sil_kept:
                pos = int(rms_list[silence_start : i + 1].argmin()) + silence_start
                sil_tags.append((0, pos) if silence_start == 0 else (pos, pos))
                clip_start = pos
            elif i - silence_start <= self.max_sil_kept * 2:
                pos = int(
                    rms_list[i - self.max_sil_kept : silence_start + self.max_sil_kept + 1].argmin()
                )
                pos += i - self.max_sil_kept
                pos_l = (
                    int(rms_list[silence_start : silence_start + self.max_sil_kept + 1].argmin())
                    + silence_start
                )
                pos_r = (
                    int(rms_list[i - self.max_sil_kept : i + 1].argmin()) + i - self.max_sil_kept
                )
                if silence_start == 0:
                    sil_tags.append((0, pos_r))
                    clip_start = pos_r
                else:
                    sil_tags.append((min(pos_l, pos), max(pos_r, pos)))
                    clip_start = max(pos_r, pos)
            else:
                pos_l = (
                    int(rms_list[silence_start : silence_start + self.max_sil_kept + 1].argmin())
                    + silence_start
                )
                pos_r = (
                    int(rms_list[i - self.max_sil_kept : i + 1].argmin()) + i - self.max_sil_kept
                )
                sil_tags.append((0, pos_r) if silence_start == 0 else (pos_l, pos_r))
                clip_start = pos_r
            silence_start = None
        total_frames = rms_list.shape[0]
        if silence_start is not None and total_frames - silence_start >= self.min_interval:
            silence_end = min(total_frames, silence_start + self.max_sil_kept)
            pos = int(rms_list[silence_start : silence_end + 1].argmin()) + silence_start
            sil_tags.append((pos, total_frames + 1))
        return sil_tags

    def slice(self, waveform: np.ndarray) -> list[dict]:
        """Chunks of ``waveform`` (``[L]``, or ``[C, L]`` which is averaged for the analysis)."""
        samples = np.asarray(waveform, dtype=np.float32)
        if samples.ndim > 1:
            samples = samples.mean(axis=0)
        n = samples.shape[0]
        if n <= self.min_length:  # reference: samples compared with frames (see module doc)
            return [{"slice": False, "split_time": f"0,{n}"}]
        sil_tags = self.silence_tags(samples)
        if not sil_tags:
            return [{"slice": False, "split_time": f"0,{n}"}]
        hop = self.hop_size
        chunks = []
        if sil_tags[0][0]:  # the first silence does not start at 0: voiced chunk before it
            chunks.append({"slice": False, "split_time": f"0,{min(n, sil_tags[0][0] * hop)}"})
        for i, (begin, end) in enumerate(sil_tags):
            if i:
                start = sil_tags[i - 1][1] * hop
                chunks.append({"slice": False, "split_time": f"{start},{min(n, begin * hop)}"})
            chunks.append({"slice": True, "split_time": f"{begin * hop},{min(n, end * hop)}"})
        if sil_tags[-1][1] * hop < n:
            chunks.append({"slice": False, "split_time": f"{sil_tags[-1][1] * hop},{n}"})
        return chunks


def cut(wav: np.ndarray, sr: int, db_thresh: float = -30, min_len: int = 5000) -> dict:
    """Slice ``wav`` at ``sr``; returns the reference's ``{"0": chunk, "1": chunk, …}`` dict."""
    chunks = Slicer(sr=sr, threshold=db_thresh, min_length=min_len).slice(wav)
    return {str(i): c for i, c in enumerate(chunks)}


def chunks2audio(wav: np.ndarray, chunks: dict | list) -> list[tuple[bool, np.ndarray]]:
    """``[(is_silence, samples)]`` for every non-empty chunk, in order (views into ``wav``)."""
    items = chunks.values() if isinstance(chunks, dict) else chunks
    result = []
    for c in items:
        begin, end = (int(x) for x in c["split_time"].split(","))
        if begin != end:
            result.append((bool(c["slice"]), wav[begin:end]))
    return result
