"""Evaluate a batch of conversions: every metric of :mod:`quality` per file and on average.

    from quality.evaluate import evaluate
    report = evaluate(items, "eval_out")

``items`` is a list of dicts, one per converted file::

    {"output": "results/x.flac",          # converted audio (any soundfile-readable format)
     "source": "raw/x.wav",               # the input that was converted
     "transpose": -12,                    # semitones applied in conversion (the -t flag)
     "target_bank": ["a.wav", ...],       # clips of the target speaker (paths, or one folder)
     "source_bank": ["b.wav", ...],       # optional: clips of the source speaker (default [source])
     "transcript": "text",                # optional: the source's words; else ASR of the source
     "lang": "en",                        # optional: Whisper code (en, zh, ja, ...) or "none"
     "slice_boundaries_s": [..],          # optional: where to look for clicks (else everywhere)
     "frame_rate_hz": 86.13}              # optional: the model's sampling_rate / hop_length, where
                                          # quality.buzz looks for hop buzz (default 44100 / 512)

Writes ``out_dir/eval.json`` (the returned report), ``out_dir/eval_table.txt`` and, with
``plots``, ``out_dir/f0_curves.png`` (first files), ``out_dir/speaker_similarity.png`` and
``out_dir/<output name>.compare.png`` (spectrograms + f0 of source vs output, first files).

A bad item (unreadable file, output and source of different durations, malformed fields) gets
``{"error": "<one line>"}`` in its entry and the batch goes on; a missing model raises
:class:`EvalError` before any file is read.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.atomic import write_text
from common.audio import AudioError, is_audio_file, load_audio
from quality import ANALYSIS_SR
from quality.buzz import DECODER_FRAME_RATE, check_frame_rate, f0_on_frame_rate, hop_buzz
from quality.clicks import count_clicks
from quality.loudness import loud_silent, loudness_corr
from quality.pitch import PitchTracker, f0_metrics
from quality.report import aggregate, format_table
from quality.speaker import SpeakerEncoder, cosine

MAX_BANK_CLIPS = 16
"""A speaker bank larger than this is sampled evenly (sorted by path) down to this many clips."""
PLOT_FILES = 4
"""f0 curves and comparison pictures are drawn for this many files (the first ones)."""
DURATION_TOLERANCE_S = 0.25
"""Output and source may differ in duration by this much, or 2 % of the source if more."""


class EvalError(Exception):
    """The evaluation cannot run at all (a model is missing, no items); one-line message."""


class ItemError(ValueError):
    """One item cannot be evaluated; the message names the file and the problem."""


def bank_paths(bank) -> list[Path]:
    """A bank given as a folder (its audio files, recursively) or as a list of paths → paths,
    sampled evenly down to :data:`MAX_BANK_CLIPS`."""
    if isinstance(bank, str | os.PathLike):
        folder = Path(bank)
        if not folder.is_dir():
            raise ItemError(f"{folder}: speaker bank folder not found")
        paths = sorted(p for p in folder.rglob("*") if p.is_file() and is_audio_file(p))
        if not paths:
            raise ItemError(f"{folder}: no audio files in this speaker bank folder")
    elif isinstance(bank, list | tuple) and all(isinstance(p, str | os.PathLike) for p in bank):
        paths = [Path(p) for p in bank]
        if not paths:
            raise ItemError("a speaker bank is an empty list")
    else:
        raise ItemError(f"a speaker bank must be a folder or a list of paths, not {bank!r:.60}")
    if len(paths) > MAX_BANK_CLIPS:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, MAX_BANK_CLIPS).astype(int)]
    return paths


def check_item(item, frame_rate_hz: float = DECODER_FRAME_RATE) -> dict:
    """Validate one item and fill in the defaults (see the module doc); ``frame_rate_hz`` is the
    default of the item's ``frame_rate_hz``."""
    if not isinstance(item, dict):
        raise ItemError(f"an item must be an object with 'output' and 'source', not {item!r:.60}")
    for key in ("output", "source"):
        if not isinstance(item.get(key), str | os.PathLike):
            raise ItemError(f"item {item.get('output', item)!s:.80}: '{key}' (a path) is missing")
    out = {"output": str(item["output"]), "source": str(item["source"])}
    try:
        out["transpose"] = float(item.get("transpose", 0) or 0)
    except (TypeError, ValueError):
        raise ItemError(
            f"{out['output']}: transpose {item['transpose']!r} is not a number"
        ) from None
    if not abs(out["transpose"]) <= 48:  # NaN, inf, or beyond inference_main.py's -t range
        raise ItemError(
            f"{out['output']}: transpose {out['transpose']} is out of range (+-48 semitones)"
        )
    out["target_bank"] = item.get("target_bank")
    out["source_bank"] = item.get("source_bank") or [out["source"]]
    transcript = item.get("transcript")
    if transcript is not None and not isinstance(transcript, str):
        raise ItemError(f"{out['output']}: transcript must be text")
    out["transcript"] = transcript
    lang = str(item.get("lang", "en") or "en").lower()
    out["lang"] = "" if lang == "none" else lang  # "": no CER/WER for this item
    bounds = item.get("slice_boundaries_s")
    if bounds is not None:
        try:
            bounds = [float(b) for b in bounds]
        except (TypeError, ValueError):
            raise ItemError(
                f"{out['output']}: slice_boundaries_s must be a list of seconds"
            ) from None
    out["slice_boundaries_s"] = bounds
    try:
        out["frame_rate_hz"] = check_frame_rate(item.get("frame_rate_hz", frame_rate_hz))
    except ValueError as e:
        raise ItemError(f"{out['output']}: frame_rate_hz: {e}") from None
    return out


class Evaluator:
    """Holds the models and caches (sources, banks) across the items of one batch."""

    def __init__(self, f0_predictor: str = "auto", asr: bool = True, dnsmos: bool = True):
        from modules.f0 import SHIPPED_F0, F0ModelMissing

        try:
            self.tracker = PitchTracker(f0_predictor)
        except (F0ModelMissing, ValueError) as e:
            hint = f" (or pass --f0_predictor {SHIPPED_F0}: it ships with the install)"
            raise EvalError(f"f0 predictor {f0_predictor!r}: {e}"
                            + (hint if isinstance(e, F0ModelMissing) else "")) from None  # fmt: skip
        self.speaker = SpeakerEncoder()
        self.dnsmos = None
        if dnsmos:
            from quality.dnsmos import DNSMOSScorer

            self.dnsmos = DNSMOSScorer()
        self.asr = None  # language -> Transcriber, made when an item first needs it
        if asr:
            from concurrent.futures import ThreadPoolExecutor

            self.asr = {}
            self.transcriber("en")  # the usual case: a missing model stops the batch at once
            # Whisper (CTranslate2, no GIL) decodes in this thread while torch and ONNX work on
            # the next items: on 2 cores the batch takes about the time of its longer half.
            self.asr_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr")
        self._sources: dict[str, dict] = {}
        self._banks: dict[tuple, np.ndarray | None] = {}
        self.warnings: list[str] = []

    def transcriber(self, lang: str):
        """The Transcriber of ``lang`` (tiny.en for en, the multilingual base for the others)."""
        if lang not in self.asr:
            from quality.asr import Transcriber, UnknownLanguage

            try:
                self.asr[lang] = Transcriber(threads=max(1, (os.cpu_count() or 2) // 2),
                                             language=lang)  # fmt: skip
            except FileNotFoundError as e:
                raise EvalError(f"ASR: {e} (or run with --no_asr)") from None
            except UnknownLanguage as e:
                raise ItemError(f"ASR: {e}") from None
        return self.asr[lang]

    def source(self, path: str) -> dict:
        """The source's 16 kHz audio and f0, and its transcript once asked for (cached)."""
        if path not in self._sources:
            wav, _ = load_audio(path, ANALYSIS_SR)
            self._sources[path] = {"wav": wav, "f0": self.tracker(wav)}
        return self._sources[path]

    def source_transcript(self, path: str, lang: str = "en"):
        """A future of the source's transcript in ``lang`` (submitted once per source)."""
        s = self.source(path)
        if ("text", lang) not in s:
            s["text", lang] = self.asr_pool.submit(self.transcriber(lang), s["wav"])
        return s["text", lang]

    def bank(self, bank) -> np.ndarray | None:
        """Mean embedding of a speaker bank (cached); unreadable clips are skipped with a warning."""
        paths = bank_paths(bank)
        key = tuple(str(p) for p in paths)
        if key not in self._banks:
            wavs = []
            for p in paths:
                try:
                    wavs.append(load_audio(p, ANALYSIS_SR)[0])
                except AudioError as e:
                    self.warnings.append(f"speaker bank: {e} (skipped)")
                    tqdm.write(f"warning: speaker bank: {e} (skipped)")
            self._banks[key] = self.speaker.embed_speaker(wavs) if wavs else None
        return self._banks[key]

    def __call__(self, item: dict) -> tuple[dict, dict]:
        """Metrics of one checked item → (file entry, tracks and audio for the plots)."""
        out_path = item["output"]
        wav, _ = load_audio(out_path, ANALYSIS_SR)
        src = self.source(item["source"])
        d_out, d_src = len(wav) / ANALYSIS_SR, len(src["wav"]) / ANALYSIS_SR
        if abs(d_out - d_src) > max(DURATION_TOLERANCE_S, 0.02 * d_src):
            raise ItemError(f"{out_path}: lasts {d_out:.2f} s but its source {item['source']} "
                            f"lasts {d_src:.2f} s; is it a conversion of that source?")  # fmt: skip
        entry = {"name": Path(out_path).name, "output": out_path, "source": item["source"],
                 "transpose": item["transpose"], "duration_s": round(d_out, 3)}  # fmt: skip
        tracks = {"source_wav": src["wav"], "output_wav": wav, "source_f0": src["f0"]}
        if self.asr is not None and item["lang"]:  # decoded meanwhile, in the ASR thread
            lang = item["lang"]
            reference = item["transcript"]
            if reference is None:
                reference = self.source_transcript(item["source"], lang)
            tracks["asr"] = (reference, self.asr_pool.submit(self.transcriber(lang), wav), lang)
        out_f0 = tracks["output_f0"] = self.tracker(wav)
        entry.update(f0_metrics(src["f0"], out_f0, item["transpose"]))
        fr = entry["frame_rate_hz"] = item["frame_rate_hz"]
        entry.update(f0_on_frame_rate(src["f0"], out_f0, item["transpose"], fr))
        entry.update(hop_buzz(src["wav"], wav, src["f0"], fr))
        emb = self.speaker.embed(wav)
        for key, bank in (("secs_target", item["target_bank"]),
                          ("secs_source", item["source_bank"])):  # fmt: skip
            ref = self.bank(bank) if bank is not None else None
            entry[key] = cosine(emb, ref) if emb is not None and ref is not None else None
        if self.dnsmos is not None:
            entry.update(self.dnsmos(wav))
        entry["loudness_corr"] = loudness_corr(src["wav"], wav)
        entry["loud_silent"] = loud_silent(src["wav"], wav)
        native, sr = load_audio(out_path)
        entry["clicks"] = count_clicks(native, sr, item["slice_boundaries_s"])
        entry["clicks_where"] = ("slice boundaries" if item["slice_boundaries_s"] is not None
                                 else "whole file")  # fmt: skip
        return entry, tracks


def _fill_error_rates(entry: dict, reference, output_future, lang: str = "en") -> None:
    """CER/WER once the transcripts (``reference``: text or a future) are decoded."""
    from quality.asr import error_rates

    ref = reference if isinstance(reference, str) else reference.result()
    entry["transcript_source"] = ref
    entry["transcript_output"] = output_future.result()
    entry["asr_language"] = lang
    entry["cer"], entry["wer"] = error_rates(ref, entry["transcript_output"], lang)


def _meta(ev: Evaluator, elapsed: float) -> dict:
    import torch

    return {
        "f0_predictor": ev.tracker.name,
        "speaker_encoder": "resemblyzer GE2E",
        "dnsmos": "DNSMOS P.835 (speechmos)" if ev.dnsmos else "off",
        "asr": ", ".join(
            f"{lang}: whisper {'tiny.en' if lang == 'en' else 'base'} (CTranslate2)"
            for lang in sorted(ev.asr)
        )
        if ev.asr
        else "off",
        "elapsed_s": round(elapsed, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "warnings": ev.warnings,
    }


def _plots(out_dir: Path, files: list[dict], drawn: list[tuple[dict, dict]]) -> None:
    from quality.plots import plot_comparison, plot_f0_curves, plot_similarity

    if drawn:
        plot_f0_curves([{**e, **t} for e, t in drawn], out_dir / "f0_curves.png")
        for e, t in drawn:
            plot_comparison(t["source_wav"], t["output_wav"], t["source_f0"], t["output_f0"],
                            e["transpose"], out_dir / f"{e['name']}.compare.png",
                            title=f"{Path(e['source']).name} → {e['name']}")  # fmt: skip
    if any(f.get("secs_target") is not None for f in files):
        plot_similarity(files, out_dir / "speaker_similarity.png")


def evaluate(items, out_dir, f0_predictor: str = "auto", asr: bool = True, dnsmos: bool = True,
             plots: bool = True, progress: bool = True,
             frame_rate_hz: float = DECODER_FRAME_RATE) -> dict:  # fmt: skip
    """Evaluate ``items`` (see the module doc) → ``{"files", "aggregate", "meta"}``; also written
    to ``out_dir/eval.json`` with the table in ``out_dir/eval_table.txt`` and the PNGs.
    ``frame_rate_hz``: the decoder frame rate of items that do not give their own."""
    t0 = time.perf_counter()
    items = list(items)
    if not items:
        raise EvalError("nothing to evaluate: the list of items is empty")
    try:
        check_frame_rate(frame_rate_hz)
    except ValueError as e:
        raise EvalError(f"--frame_rate: {e}") from None
    ev = Evaluator(f0_predictor, asr=asr, dnsmos=dnsmos)
    files, drawn, pending = [], [], []
    for raw in tqdm(items, desc="eval", unit="file", disable=not progress):
        try:
            item = check_item(raw, frame_rate_hz)
            entry, tracks = ev(item)
        except (ItemError, AudioError, ValueError, RuntimeError) as e:
            name = raw.get("output", "?") if isinstance(raw, dict) else "?"
            msg = str(e) if isinstance(e, ItemError | AudioError) else f"{name}: {e}"
            entry = {"name": Path(str(name)).name, "output": str(name), "error": msg}
            if progress:
                tqdm.write(f"error: {msg}")
        else:
            if "asr" in tracks:
                pending.append((entry, *tracks.pop("asr")))
            if len(drawn) < PLOT_FILES:
                drawn.append((entry, tracks))
        files.append(entry)
    for entry, *transcripts in tqdm(pending, desc="asr", unit="file", disable=not progress):
        _fill_error_rates(entry, *transcripts)
    if ev.asr is not None:
        ev.asr_pool.shutdown()
    report = {"files": files, "aggregate": aggregate(files), "meta": {}}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if plots:
        _plots(out_dir, files, drawn)
    report["meta"] = _meta(ev, time.perf_counter() - t0)
    write_text(out_dir / "eval.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_text(out_dir / "eval_table.txt", format_table(report) + "\n")
    return report
