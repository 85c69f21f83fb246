"""Speaker similarity (SECS): cosine of resemblyzer speaker embeddings.

resemblyzer's GE2E encoder (a 3-layer LSTM over 40-band mel frames, 256-d embeddings) ships its
weights inside the wheel (``resemblyzer/pretrained.pt``), so nothing is downloaded; that file is
a plain state dict, loaded by ``torch.load``, whose default is ``weights_only=True`` in the
pinned torch (no pickled code can run; checked by the tests). Each clip goes through resemblyzer's
own preprocessing (volume normalisation to −30 dBFS, WebRTC-VAD removal of long silences) and
``embed_utterance`` (1.6 s partials, averaged, L2-normed), the setup of the published SECS
numbers. The VAD is trained on speech: when it keeps less than 0.5 s of a clip (a pure tone,
a hum) the clip is embedded untrimmed instead.
"""

from __future__ import annotations

import warnings

import numpy as np

from quality import ANALYSIS_SR

MIN_KEPT_S = 0.5
"""When the VAD keeps less than this [s], the untrimmed clip is embedded."""


def _resemblyzer():
    with warnings.catch_warnings():  # resemblyzer imports scipy.ndimage.morphology (deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        import resemblyzer
        import resemblyzer.hparams
    return resemblyzer


class SpeakerEncoder:
    """``embed(wav)`` → unit-norm 256-d float32 embedding of a 16 kHz mono float clip."""

    def __init__(self, device: str = "cpu"):
        self._r = _resemblyzer()
        self.encoder = self._r.VoiceEncoder(device, verbose=False)

    def preprocess(self, wav: np.ndarray) -> np.ndarray:
        audio = self._r.audio
        wav = audio.normalize_volume(np.asarray(wav, dtype=np.float32),
                                     self._r.hparams.audio_norm_target_dBFS, increase_only=True)  # fmt: skip
        wav = np.clip(wav, -1.0, 1.0).astype(np.float32)
        trimmed = audio.trim_long_silences(wav)
        return trimmed if len(trimmed) >= MIN_KEPT_S * ANALYSIS_SR else wav

    def embed(self, wav: np.ndarray) -> np.ndarray | None:
        """The clip's embedding; ``None`` for a silent clip (it has no voice to embed)."""
        if not np.any(np.abs(wav) > 1e-6):
            return None
        return self.encoder.embed_utterance(self.preprocess(wav)).astype(np.float32)

    def embed_speaker(self, wavs) -> np.ndarray | None:
        """Mean of the clips' embeddings, L2-normed (resemblyzer's ``embed_speaker``); silent
        clips are left out, ``None`` when all are silent."""
        embeds = [e for e in map(self.embed, wavs) if e is not None]
        if not embeds:
            return None
        mean = np.mean(embeds, axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (1.0 = same direction)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
