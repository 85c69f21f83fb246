"""The engine's model stage: :class:`SvcConverter` runs the offline pipeline's own stages on a
stream window, and :func:`correct_octaves` keeps the f0 continuous across blocks.

Per window ``[W]`` (``T = W / hop`` frames, see :mod:`inference.realtime.engine`):

1. ``svc.get_unit_f0`` on the whole window (speech units, f0 ``·2^(transpose/12)``, uv, the
   cluster / retrieval mix): the extra left context is what the encoder and the f0 predictor see;
2. f0 continuity (:meth:`SvcConverter.continuity`): frames already played keep the f0 they were
   played with (the history); the frames new in this block are octave-corrected against a
   trusted reference carried from the frames played (:func:`correct_octaves`, :class:`OctaveState`);
3. ``svc.synthesize`` (the same method the offline ``Svc.infer`` calls: so-vits in torch or ONNX,
   fp32 or bf16 as the Svc was loaded, enhancer, diffusion) on the **last** ``ceil(n_out/hop) +
   SYNTH_MARGIN_FRAMES`` frames only, with the matching input samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
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

WHISPER_SHORT_PAD_S = 1.0
"""``whisper_window="short"``: a Whisper encoder's input is padded to the next whole second
instead of 30 s (``encoder(..., pad_seconds=1.0)``, vencoder/whisper.py)."""

OCTAVE_TOLERANCE = 0.15
"""A step of ``±1 ± 0.15`` octaves between two voiced frames is taken as an octave error."""

OCTAVE_RESET_FRAMES = 10
"""An unvoiced gap this long (10 × 11.6 ms = 116 ms, a rest) ends the reference f0: the next note
may start in any octave."""

OCTAVE_STABLE_FRAMES = 6
"""A reference f0 is trusted once it has held for this many voiced frames (6 × 11.6 ms = 70 ms)
with no octave step between them. The first frames of a sung note are not: on vocadito_1 fcpe
gives the onset's first 3-4 frames at the subharmonic (75 Hz, then 138-145 Hz), and a corrector
that trusted them halved the whole 1.5 s note (issue 22)."""

OCTAVE_MAX_FIXED = 16
"""At most this many consecutive frames (16 × 11.6 ms = 186 ms) are corrected against one
reference: an octave error of a predictor lasts a few frames, a new octave that holds longer
is taken as sung (a leap without a glide) and becomes the reference."""


@dataclass
class OctaveState:
    """Where :func:`correct_octaves` stands after a run of frames (carried across blocks).

    ``ref``: the last voiced f0 taken as predicted (Hz; ``None``: none, e.g. after a rest);
    ``run``: voiced frames taken as predicted since the last octave step (``ref`` is trusted
    once ``run >= OCTAVE_STABLE_FRAMES``); ``fixed``: frames corrected in a row against ``ref``;
    ``gap``: unvoiced frames since the last voiced one. A corrected frame never becomes ``ref``.
    """

    ref: float | None = None
    run: int = 0
    fixed: int = 0
    gap: int = 0


def correct_octaves(f0: np.ndarray, voiced: np.ndarray,
                    state: OctaveState | float | None = None, tol: float = OCTAVE_TOLERANCE,
                    reset_frames: int = OCTAVE_RESET_FRAMES,
                    stable_frames: int = OCTAVE_STABLE_FRAMES,
                    max_fixed: int = OCTAVE_MAX_FIXED) -> np.ndarray:  # fmt: skip
    """Remove octave errors: ``f0 [N]`` Hz, ``voiced [N]`` bool → a corrected copy ``[N]``.

    ``state``: where the frames before these left off (an :class:`OctaveState`, updated in
    place; a number: a trusted reference f0 in Hz; ``None``: nothing before). A voiced frame
    whose ``log2(f0 / ref)`` is within ``tol`` of ``+1`` is halved, of ``-1`` doubled, but only
    when ``ref`` is trusted (it held ``stable_frames`` voiced frames) and fewer than
    ``max_fixed`` frames in a row were corrected; otherwise the frame is taken as predicted and
    becomes the new reference (its run restarts at 1). Corrected frames leave ``ref`` as it was,
    so one wrong frame cannot pull the rest of a note into its octave. ``reset_frames``
    unvoiced frames (a rest) forget ``ref``. A true leap sung with a glide has no one-frame
    octave step and is kept.
    """
    if isinstance(state, OctaveState):
        st = state
    elif state is not None and state > 0:
        st = OctaveState(ref=float(state), run=stable_frames)
    else:
        st = OctaveState()
    out = np.array(f0, dtype=np.float64, copy=True)
    for i in range(out.shape[0]):
        if not voiced[i] or out[i] <= 0:
            st.gap += 1
            if st.gap >= reset_frames:
                st.ref, st.run, st.fixed = None, 0, 0
            continue
        st.gap = 0
        if st.ref is None:
            st.ref, st.run, st.fixed = float(out[i]), 1, 0
            continue
        r = math.log2(out[i] / st.ref)
        step = 1.0 if abs(r - 1.0) <= tol else -1.0 if abs(r + 1.0) <= tol else 0.0
        if step == 0.0:
            st.ref, st.run, st.fixed = float(out[i]), st.run + 1, 0
        elif st.run >= stable_frames and st.fixed < max_fixed:
            out[i] *= 2.0**-step
            st.fixed += 1
        else:  # an untrusted reference (a note's first frames), or the new octave held
            st.ref, st.run, st.fixed = float(out[i]), 1, 0
    return out


def is_whisper(svc: Any) -> bool:
    """Whether ``svc``'s speech encoder is a Whisper one (takes ``pad_seconds``)."""
    from vencoder.whisper import WhisperPPG, WhisperPPGCT2

    return isinstance(getattr(svc, "hubert_model", None), (WhisperPPG, WhisperPPGCT2))


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
        self.encoder_kw = None
        if getattr(config, "whisper_window", "30s") == "short" and is_whisper(svc):
            self.encoder_kw = {"pad_seconds": WHISPER_SHORT_PAD_S}
        self.calls = 0
        self.reset()

    def reset(self) -> None:
        self._hist_f0: np.ndarray | None = None  # [T] Hz as used for the previous window
        self._hist_uv: np.ndarray | None = None
        self._octave = OctaveState()  # after the last frame played

    def skip(self) -> None:
        """A gated block: the window moved without a conversion (its frames count as unvoiced)."""
        if self._hist_f0 is not None:
            n = self.block_frames
            self._hist_f0 = np.concatenate([self._hist_f0[n:], np.zeros(n)])
            self._hist_uv = np.concatenate([self._hist_uv[n:], np.zeros(n, bool)])
        correct_octaves(
            np.zeros(self.block_frames), np.zeros(self.block_frames, bool), self._octave
        )

    def continuity(self, f0: np.ndarray, uv: np.ndarray, first_old: int, first_new: int):
        """f0 ``[T]`` Hz and uv ``[T]`` bool of this window → the ones to synthesize: frames
        ``[first_old, first_new)`` (played in earlier blocks) take the history's values, frames
        from ``first_new`` on are :func:`correct_octaves` from where the frames played so far
        left off (:class:`OctaveState`). The state is kept after this block's played frames
        ``[first_new, first_new + block_frames)``: the frames after them (the next join's tail)
        are converted again, from a new window, by the next block."""
        f0, uv = f0.astype(np.float64), uv.astype(bool)
        n = self.block_frames
        if self._hist_f0 is not None:
            f0[first_old:first_new] = self._hist_f0[first_old + n : first_new + n]
            uv[first_old:first_new] = self._hist_uv[first_old + n : first_new + n]
        played = min(first_new + n, f0.shape[0])
        f0[first_new:played] = correct_octaves(f0[first_new:played], uv[first_new:played],
                                               self._octave)  # fmt: skip
        tail = replace(self._octave)
        f0[played:] = correct_octaves(f0[played:], uv[played:], tail)
        self._hist_f0, self._hist_uv = f0.copy(), uv.copy()
        return f0, uv

    def __call__(self, window: np.ndarray, n_out: int) -> np.ndarray:
        svc, cfg, h = self.svc, self.config, self.hop
        self.calls += 1
        n_frames = len(window) // h
        need = math.ceil(n_out / h)
        start = max(0, n_frames - need - SYNTH_MARGIN_FRAMES)
        first_new = (len(window) - n_out) // h  # the first frame this block plays
        kw = {"encoder_kw": self.encoder_kw} if self.encoder_kw else {}
        c, f0, uv = svc.get_unit_f0(window, cfg.transpose, cfg.cluster_infer_ratio, cfg.speaker,
                                    False, cfg.f0_predictor, **kw)  # fmt: skip
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
