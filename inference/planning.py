"""Planning and assembling a whole file (:class:`SlicePlanning`): silence slicing and forced clips
(``_plan``, ``_n_frames``), the dynamic speaker-mix matrix (``build_spk_mix``) and
``slice_inference``, which converts every planned piece with ``infer`` and crossfades them into
place (sizes in output samples; see :mod:`inference.infer_tool`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from common.errors import InputError
from inference import dsp, slicer
from inference.dsp import pad_array
from inference.synthesis import DEFAULT_SEED


class SlicePlanning:
    """``_plan``, ``_n_frames``, ``build_spk_mix`` and ``slice_inference`` of
    :class:`inference.infer_tool.Svc`."""

    def _plan(
        self,
        wav: np.ndarray,
        slice_db: float,
        pad_seconds: float,
        clip_seconds: float,
        lg_num: float,
    ) -> list[tuple[bool, int, np.ndarray, list[tuple[int, np.ndarray]], int]]:
        """Chunks of the input: ``(is_silence, start, data, [(offset, piece)], lg_samples)``."""
        sr = self.target_sample
        chunks = slicer.chunks2audio(wav, slicer.cut(wav, sr, db_thresh=slice_db))
        plan = []
        pos = 0
        for is_silence, data in chunks:
            start = pos
            pos += len(data)
            if is_silence:
                plan.append((True, start, data, [], 0))
                continue
            per_size, lg_size = int(clip_seconds * sr), int(lg_num * sr)
            if (
                per_size == 0
                and self.max_chunk_seconds > 0
                and len(data) > self.max_chunk_seconds * sr
            ):
                per_size, lg_size = int(self.max_chunk_seconds * sr), int(0.5 * sr)
            if per_size == 0:
                pieces = [(0, data)]
                lg_size = 0
            else:
                pieces = [(max(i - lg_size, 0), data[max(i - lg_size, 0) : i + per_size])
                          for i in range(0, len(data), per_size)]  # fmt: skip
            plan.append((False, start, data, pieces, lg_size))
        return plan

    def _n_frames(self, n_samples: int, pad_len: int) -> int:
        return (n_samples + 2 * pad_len) // self.hop_size

    def build_spk_mix(self, spk_mix_map: Mapping, n_frames: int) -> torch.Tensor:
        """The per-frame weight matrix ``[n_spk, n_frames]`` (rows = speaker ids; columns sum to 1)."""
        n_spk = len(self.spk2id)
        rows: dict[int, Any] = {}
        for key, segs in spk_mix_map.items():
            sid = self.speaker_id(key)
            if sid in rows:
                raise InputError(f"spkmix.py: spk_mix_map: speaker {key!r} is given twice")
            rows[sid] = segs
        missing = [f"{k} ({v})" for k, v in self.spk2id.items() if v not in rows]
        if missing or len(rows) != n_spk:
            raise InputError(
                f"spkmix.py: spk_mix_map: every speaker of the config must be present "
                f"(unused ones as [[0., 1., 0., 0.]]); missing: {', '.join(missing) or '-'}"
            )
        mix = torch.zeros(n_spk, n_frames, dtype=torch.float64)
        for sid, segs in rows.items():
            if not segs:
                raise InputError(f"spkmix.py: spk_mix_map: speaker {sid} has no segments")
            if float(segs[0][0]) != 0.0 or float(segs[-1][1]) != 1.0:
                raise InputError(f"spkmix.py: spk_mix_map: speaker {sid}: the first segment must start at 0 "
                                 "and the last end at 1")  # fmt: skip
            last_end = None
            for seg in segs:
                if len(seg) != 4:
                    raise InputError(
                        f"spkmix.py: spk_mix_map: segment {seg} must be [t_start, t_end, v_start, v_end]"
                    )
                t0, t1, v0, v1 = (float(x) for x in seg)
                if v0 < 0 or v1 < 0:
                    raise InputError(
                        f"spkmix.py: spk_mix_map: values must be >= 0 (speaker {sid}, {seg})"
                    )
                begin, end = int(n_frames * t0), int(n_frames * t1)
                if end <= begin:
                    raise InputError(f"spkmix.py: spk_mix_map: segment {seg} of speaker {sid} is empty or reversed "
                                     f"({n_frames} frames in all)")  # fmt: skip
                if last_end is not None and last_end != begin:
                    raise InputError(f"spkmix.py: spk_mix_map: speaker {sid}: segments must be contiguous "
                                     "(each start = the previous end)")  # fmt: skip
                last_end = end
                length = end - begin
                mix[sid, begin:end] = v0 + (v1 - v0) / length * torch.arange(
                    length, dtype=torch.float64
                )
        total = mix.sum(0)
        zero = total == 0
        mix[:, zero] = 1.0 / n_spk
        total[zero] = 1.0
        return (mix / total).float()

    def slice_inference(
        self,
        raw_audio_path: Any,
        spk: Any,
        tran: float,
        slice_db: float,
        cluster_infer_ratio: float,
        auto_predict_f0: bool,
        noice_scale: float,
        pad_seconds: float = 0.5,
        clip_seconds: float = 0,
        lg_num: float = 0,
        lgr_num: float = 0.75,
        f0_predictor: str = "pm",
        enhancer_adaptive_key: float = 0,
        cr_threshold: float = 0.05,
        k_step: int = 100,
        use_spk_mix: bool = False,
        second_encoding: bool = False,
        loudness_envelope_adjustment: float = 1,
        seed: int = DEFAULT_SEED,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Convert a whole file (or numpy wav at ``target_sample``) → float32 ``[L]`` at 44.1 kHz.

        ``progress(done, total)`` is called before the first slice and after each converted slice
        (``total`` = voiced pieces to convert), e.g. for a progress bar.
        """
        sr = self.target_sample
        if clip_seconds < 0 or lg_num < 0 or pad_seconds < 0:
            raise ValueError("clip, crossfade and pad lengths must be >= 0")
        if not 0 <= lgr_num <= 1:
            raise ValueError(f"linear_gradient_retain must be in [0, 1], got {lgr_num}")
        from inference.cli import MIN_CLIP_SECONDS

        if 0 < clip_seconds < MIN_CLIP_SECONDS:
            raise ValueError(f"clip {clip_seconds} s: a forced clip is 0 (off) or at least "
                             f"{MIN_CLIP_SECONDS} s (shorter clips come out silent)")  # fmt: skip
        if clip_seconds > 0 and lg_num >= clip_seconds:
            raise ValueError(
                f"the crossfade ({lg_num} s) must be shorter than the clip ({clip_seconds} s)"
            )
        if use_spk_mix and len(self.spk2id) == 1:  # §18.8: the reference indexed dict_keys here
            spk = next(iter(self.spk2id))
            use_spk_mix = False
        if use_spk_mix and not self.spk_mix_enable:
            raise ValueError("use_spk_mix needs Svc(..., spk_mix_enable=True)")
        if use_spk_mix:
            self.check_spk_mix_diffusion()

        t0 = time.perf_counter()
        wav = dsp.read_audio(raw_audio_path, sr)
        self._tick("read", t0)
        pad_len = int(sr * pad_seconds)
        listener = getattr(self, "z_listener", None)  # absent on stand-ins built without __init__
        if listener is not None:
            listener.start(len(wav))
        plan = self._plan(wav, slice_db, pad_seconds, clip_seconds, lg_num)

        if use_spk_mix:
            total = sum(len(d) // self.hop_size if s else sum(self._n_frames(len(p), pad_len) for _, p in pieces)
                        for s, _, d, pieces, _ in plan)  # fmt: skip
            spk = self.build_spk_mix(spk, max(total, 1)).to(self.dev)

        out = np.zeros(len(wav), dtype=np.float32)
        global_frame = 0
        n_pieces, done = sum(len(pieces) for *_, pieces, _ in plan), 0
        if progress is not None:
            progress(0, n_pieces)
        for is_silence, start, data, pieces, lg_size in plan:
            if is_silence:
                global_frame += len(data) // self.hop_size
                continue
            r = int(lg_size * lgr_num)  # blended samples, centred in the lg overlap
            cl = (lg_size - r) // 2
            fade = np.linspace(0, 1, r, dtype=np.float32)
            for k, (offset, piece) in enumerate(pieces):
                padded = np.concatenate(
                    [np.zeros(pad_len, np.float32), piece, np.zeros(pad_len, np.float32)]
                )
                audio, _, n_frames = self.infer(
                    spk, tran, padded, cluster_infer_ratio=cluster_infer_ratio,
                    auto_predict_f0=auto_predict_f0, noice_scale=noice_scale, f0_predictor=f0_predictor,
                    enhancer_adaptive_key=enhancer_adaptive_key, cr_threshold=cr_threshold, k_step=k_step,
                    frame=global_frame, spk_mix=use_spk_mix, second_encoding=second_encoding,
                    loudness_envelope_adjustment=loudness_envelope_adjustment, seed=seed,
                )  # fmt: skip
                global_frame += n_frames
                done += 1
                if progress is not None:
                    progress(done, n_pieces)
                t1 = time.perf_counter()
                y = audio.cpu().numpy()
                y = y[pad_len : len(y) - pad_len]
                y_len = len(y)
                y = pad_array(y, len(piece))
                at = start + offset  # where this piece's first sample belongs
                if listener is not None:
                    blend = k > 0 and lg_size > 0
                    listener.piece(at, pad_len, len(piece), y_len, at + cl if blend else None, r)
                if k > 0 and lg_size > 0:
                    # the overlap [at, at+lg): keep the previous output up to at+cl, blend r samples,
                    # then this piece from at+cl+r (the reference's formula, in output samples)
                    a = at + cl
                    out[a : a + r] = out[a : a + r] * (1 - fade) + y[cl : cl + r] * fade
                    out[a + r : at + len(y)] = y[cl + r :]
                else:
                    out[at : at + len(y)] = y
                self._tick("assemble", t1)
        return out
