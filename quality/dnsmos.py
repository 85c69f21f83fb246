"""DNSMOS P.835 (Microsoft's non-intrusive speech quality predictor), ONNX models from the
speechmos wheel: nothing is downloaded.

The model (``dnsmos_models/sig_bak_ovr.onnx``) scores 9.01 s windows; its raw outputs are
calibrated by speechmos's polynomials (``DNSMOS.get_polyfit_val``). Windows here follow each other
without overlap, the last one ending at the clip's end (the reference script hops by 1 s: nine
times the work for nearly the same mean); a clip shorter than one window is tiled up to it, as in
the reference. Scores are 1..5 MOS: ``ovrl`` overall,
``sig`` speech signal, ``bak`` background. DNSMOS was trained on speech, not singing: read it as
a noise / artefact score ("electric" buzz lowers sig and ovrl), not as singing quality.

No singing-aware MOS predictor is included: the published ones (SingMOS-trained, UTMOS-style)
need self-supervised speech models fetched from a model hub at run time, which this suite never
does, and none ships its weights in a package.
"""

from __future__ import annotations

import os

import numpy as np

from quality import ANALYSIS_SR

WINDOW_S = 9.01
"""The model's input length [s]."""


class DNSMOSScorer:
    """``scorer(wav)`` → ``{"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"}`` for 16 kHz mono float."""

    def __init__(self):
        import onnxruntime as ort
        from speechmos import dnsmos

        path = os.path.join(os.path.dirname(dnsmos.__file__), "dnsmos_models", "sig_bak_ovr.onnx")
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.calibrate = dnsmos.DNSMOS.get_polyfit_val

    def __call__(self, wav: np.ndarray) -> dict:
        x = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
        n = int(WINDOW_S * ANALYSIS_SR)
        if len(x) == 0:
            raise ValueError("DNSMOS of an empty clip")
        if len(x) < n:
            x = np.tile(x, -(-n // len(x)))
        starts = list(range(0, len(x) - n + 1, n))
        if starts[-1] + n < len(x):  # one more window, ending at the end, covers the rest
            starts.append(len(x) - n)
        scores = []
        for a in starts:
            sig, bak, ovrl = self.session.run(None, {"input_1": x[None, a : a + n]})[0][0]
            scores.append(self.calibrate(None, sig, bak, ovrl, False))
        sig, bak, ovrl = np.mean(scores, axis=0)
        return {"dnsmos_ovrl": float(ovrl), "dnsmos_sig": float(sig), "dnsmos_bak": float(bak)}
