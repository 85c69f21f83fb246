"""A face track for a conversion, from the z the decoder actually receives (motion.md §0, §9.17).

:class:`ZTrack` listens to :class:`inference.infer_tool.Svc` while it converts
(``svc.z_listener``): per slice it receives the decoder input ``z·mask`` ``[1, C, T]`` and where the
slice's audio lands in the output (offset, padding, crossfade), and rebuilds z on the output's
own frame grid: frame ``j`` ↔ output samples ``[512·j, 512·(j+1))``, sampled at the frame centre
``512·j + 256`` from the slice that wrote that sample, linearly interpolated between the slice's
frames (slices start at arbitrary samples), and blended with the same linear crossfade the audio
uses. Frames in silent chunks (no slice) get the training set's silence z. The visemes model then
runs once over the whole song, so it has context across slice boundaries.

    track = convert_with_face(svc, predictor, "raw/song.wav", "alice", tran=0, slice_db=-40, ...)
    audio, values = track            # float32 [L] at 44.1 kHz, float32 [L // 512, 61]
"""

from __future__ import annotations

import numpy as np

from motion.predict import VisemesPredictor


class ZTrack:
    """Collects the decoder's z per slice and lays it onto the output frame grid."""

    def __init__(self, z_silence: np.ndarray, hop: int = 512):
        self.hop = hop
        self.z_silence = np.asarray(z_silence, np.float32)
        self.z: np.ndarray | None = None  # [C, T_out]
        self._last: np.ndarray | None = None

    # -- called by Svc -----------------------------------------------------------------------
    def start(self, n_samples: int) -> None:
        n = n_samples // self.hop
        self.z = np.repeat(self.z_silence[:, None], n, axis=1)
        self._centres = self.hop * np.arange(n) + self.hop / 2

    def decoder_input(self, z) -> None:
        """The tensor the decoder received, ``[1, C, T]`` (``z·mask``)."""
        self._last = z[0].detach().float().cpu().numpy()

    def piece(self, at: int, pad_len: int, piece_len: int, y_len: int, blend_at: int | None,
              blend_len: int) -> None:  # fmt: skip
        """A converted slice was placed: output samples ``[at, at+piece_len)`` hold local samples
        ``pad_len + (s − at − off)`` (``off`` = centring of a short output); a crossfade, if any,
        runs over ``[blend_at, blend_at + blend_len)`` from the previous slice to this one."""
        zl = self._last
        if self.z is None or zl is None:
            return
        off = (piece_len - y_len) // 2 if y_len < piece_len else 0
        c = self._centres
        sel = np.flatnonzero((c >= at) & (c < at + piece_len))
        if sel.size == 0:
            return
        pos = (c[sel] - at - off + pad_len - self.hop / 2) / self.hop  # local frame coordinate
        frames = np.arange(zl.shape[1])
        new = np.stack([np.interp(pos, frames, zl[k]) for k in range(zl.shape[0])])
        if blend_at is None:
            w = np.ones(sel.size)
        elif blend_len > 1:
            w = np.clip((c[sel] - blend_at) / (blend_len - 1), 0.0, 1.0)
        else:
            w = (c[sel] >= blend_at).astype(float)
        self.z[:, sel] = self.z[:, sel] * (1 - w) + new * w
        self._last = None


def convert_with_face(svc, predictor: VisemesPredictor, raw_audio_path, spk, tran, slice_db,
                      cluster_infer_ratio, auto_predict_f0, noice_scale, **kwargs):  # fmt: skip
    """:meth:`Svc.slice_inference` plus a face track: ``(audio [L], values [L // 512, 61])``.

    The conversion itself is unchanged (the listener only reads tensors); for the web UI.
    """
    track = ZTrack(predictor.z_silence, svc.hop_size)
    svc.z_listener = track
    try:
        audio = svc.slice_inference(raw_audio_path, spk, tran, slice_db, cluster_infer_ratio,
                                    auto_predict_f0, noice_scale, **kwargs)  # fmt: skip
    finally:
        svc.z_listener = None
    if track.z is None:
        raise RuntimeError("the conversion did not report its slices (z_listener unsupported)")
    return audio, predictor(track.z)
