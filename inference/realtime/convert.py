"""The engine's model stage: :class:`SvcConverter` runs the offline pipeline's own stages on a
stream window, and :func:`correct_octaves` keeps the f0 continuous across blocks.

Per window ``[W]`` (``T = W / hop`` frames, see :mod:`inference.realtime.engine`):

1. ``svc.get_unit_f0`` on the whole window (speech units, f0 ``·2^(transpose/12)``, uv, the
   cluster / retrieval mix): the extra left context is what the encoder and the f0 predictor see;
2. f0 continuity (:meth:`SvcConverter.continuity`): frames already played keep the f0 they were
   played with (the history); the frames new in this block are octave-corrected against the last
   voiced f0 played (:func:`correct_octaves`);
3. ``svc.synthesize`` (the same method the offline ``Svc.infer`` calls: so-vits in torch or ONNX,
   fp32 or bf16 as the Svc was loaded, enhancer, diffusion) on the **last** ``ceil(n_out/hop) +
   SYNTH_MARGIN_FRAMES`` frames only, with the matching input samples.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

SYNTH_MARGIN_FRAMES = 16
"""Frames synthesized left of the frames the block needs (16 × 11.6 ms = 0.19 s at 44.1 kHz;
capped at the window). What the synthesizer sees left of an output frame: the decoder (a 7-frame
input convolution, then resblocks of kernel ≤ 11 and dilation ≤ 5 at 8 samples a frame: ≈ ±10
frames), the flow (4 couplings of a 4-layer WaveNet of kernel 5: ≤ ±32 frames, fast-decaying) and
the prior encoder's attention (the whole input, weakly). Measured on the template config (random
init, the source's random phases and noise zeroed, noise scale 0) for the last 28 frames of a
115-frame window, the relative RMS difference to synthesizing the whole window is 1.9e-2 with no
margin, 4.0e-4 with 4 frames, 2.6e-4 with 16, 2.4e-4 with 32, 1.5e-4 with 64; the random start
phases of the harmonics alone make two seeds differ by 0.26. 16 frames covers the decoder's
receptive field with room to spare for a trained model: a 0.25 s block with 1 s of extra context
synthesizes 44 of the window's 115 frames."""

OCTAVE_TOLERANCE = 0.15
"""A step of ``±1 ± 0.15`` octaves between two voiced frames is taken as an octave error."""

OCTAVE_RESET_FRAMES = 10
"""An unvoiced gap this long (10 × 11.6 ms = 116 ms, a rest) ends the reference f0: the next note
may start in any octave."""


def correct_octaves(f0: np.ndarray, voiced: np.ndarray, last_f0: float | None,
                    tol: float = OCTAVE_TOLERANCE,
                    reset_frames: int = OCTAVE_RESET_FRAMES) -> np.ndarray:  # fmt: skip
    """Remove octave jumps: ``f0 [N]`` Hz, ``voiced [N]`` bool, ``last_f0`` the last voiced f0
    before these frames (Hz; ``None``: none) → a corrected copy ``[N]``.

    Walks the frames from ``last_f0``: a voiced frame whose ``log2(f0 / reference)`` is within
    ``tol`` of ``+1`` is halved, of ``-1`` doubled; the (corrected) frame becomes the reference.
    So a jump at a block join is corrected, and the frames after it follow the corrected octave
    until the predictor returns on its own (no further jump) or a rest of ``reset_frames``
    unvoiced frames. A true octave leap sung with a glide has no one-frame jump and is kept.
    """
    out = np.array(f0, dtype=np.float64, copy=True)
    ref = float(last_f0) if last_f0 and last_f0 > 0 else None
    gap = 0
    for i in range(out.shape[0]):
        if not voiced[i] or out[i] <= 0:
            gap += 1
            if gap >= reset_frames:
                ref = None
            continue
        gap = 0
        if ref is not None:
            r = math.log2(out[i] / ref)
            if abs(r - 1.0) <= tol:
                out[i] *= 0.5
            elif abs(r + 1.0) <= tol:
                out[i] *= 2.0
        ref = out[i]
    return out


class SvcConverter:
    """The default converter of :class:`inference.realtime.StreamEngine` (see the module doc):
    ``converter(window [W] float32, n_out) -> [n_out] float32``, the audio of the window's last
    ``n_out`` samples. ``block`` (samples): how far the window moves per block (for the f0
    history)."""

    def __init__(self, svc: Any, config: Any, window: int, block: int):
        self.svc = svc
        self.config = config
        self.hop = int(svc.hop_size)
        self.frames = window // self.hop
        self.block_frames = block // self.hop
        self.sid = torch.LongTensor([[svc.speaker_id(config.speaker)]]).to(svc.dev)
        if config.cluster_infer_ratio != 0 and svc.cluster_model is None:
            from common.errors import UsageError

            raise UsageError(f"-cr {config.cluster_infer_ratio}: no cluster model or feature index "
                             "was loaded", "give one with -cm, or use -cr 0")  # fmt: skip
        svc.f0_predictor(config.f0_predictor)  # load it now (a missing weight file fails here)
        self.calls = 0
        self.reset()

    def reset(self) -> None:
        self._hist_f0: np.ndarray | None = None  # [T] Hz as used for the previous window
        self._hist_uv: np.ndarray | None = None

    def skip(self) -> None:
        """A gated block: the window moved without a conversion (its frames count as unvoiced)."""
        if self._hist_f0 is not None:
            n = self.block_frames
            self._hist_f0 = np.concatenate([self._hist_f0[n:], np.zeros(n)])
            self._hist_uv = np.concatenate([self._hist_uv[n:], np.zeros(n, bool)])

    def continuity(self, f0: np.ndarray, uv: np.ndarray, first_old: int, first_new: int):
        """f0 ``[T]`` Hz and uv ``[T]`` bool of this window → the ones to synthesize: frames
        ``[first_old, first_new)`` (played in earlier blocks) take the history's values, frames
        from ``first_new`` on are :func:`correct_octaves` against the last voiced f0 played."""
        f0, uv = f0.astype(np.float64), uv.astype(bool)
        last = None
        if self._hist_f0 is not None:
            n = self.block_frames
            f0[first_old:first_new] = self._hist_f0[first_old + n : first_new + n]
            uv[first_old:first_new] = self._hist_uv[first_old + n : first_new + n]
            played_f0, played_uv = self._hist_f0[: first_new + n], self._hist_uv[: first_new + n]
            idx = np.flatnonzero(played_uv & (played_f0 > 0))
            if idx.size and played_uv.shape[0] - 1 - idx[-1] < OCTAVE_RESET_FRAMES:
                last = float(played_f0[idx[-1]])
        f0[first_new:] = correct_octaves(f0[first_new:], uv[first_new:], last)
        self._hist_f0, self._hist_uv = f0.copy(), uv.copy()
        return f0, uv

    def __call__(self, window: np.ndarray, n_out: int) -> np.ndarray:
        svc, cfg, h = self.svc, self.config, self.hop
        self.calls += 1
        n_frames = len(window) // h
        need = math.ceil(n_out / h)
        start = max(0, n_frames - need - SYNTH_MARGIN_FRAMES)
        first_new = (len(window) - n_out) // h  # the first frame this block plays
        c, f0, uv = svc.get_unit_f0(window, cfg.transpose, cfg.cluster_infer_ratio, cfg.speaker,
                                    False, cfg.f0_predictor)  # fmt: skip
        f0_np, uv_np = self.continuity(f0[0].float().cpu().numpy(), uv[0].cpu().numpy() > 0.5,
                                       start, first_new)  # fmt: skip
        f0 = torch.from_numpy(f0_np[start:]).to(f0)[None]
        uv = torch.from_numpy(uv_np[start:].astype(np.float32)).to(uv)[None]
        audio = svc.synthesize(c[:, :, start:], f0, uv, self.sid, window[start * h :],
                               noice_scale=cfg.noise_scale, auto_predict_f0=False, seed=cfg.seed,
                               k_step=100, second_encoding=False, enhancer_adaptive_key=0,
                               loudness_envelope_adjustment=1)  # fmt: skip
        y = audio.detach().float().cpu().numpy().reshape(-1)
        want = (n_frames - start) * h
        if y.shape[0] != want:  # (every synthesizer gives hop samples a frame; be exact anyway)
            y = np.pad(y[:want], (0, max(0, want - y.shape[0])))
        return y[-n_out:].astype(np.float32)
