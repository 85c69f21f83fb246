"""``resample.py``: dataset_raw/<spk>/* → dataset/44k/<spk>/*.wav, 44.1 kHz mono int16 (§2.1).

Per file, as in so-vits-svc 4.1: load (mono by channel average) → trim silence (top_db 40) →
scale to peak 0.98 if it clips → resample → unless ``--skip_loudnorm``, normalise the peak to 1.0 →
write ``round(wav·32767)`` as 16-bit PCM. Additions: any format soundfile/librosa read (the output
name keeps the stem and gets ``.wav``), atomic writes, already converted files are skipped
(``--force`` redoes them), and unusable files are reported instead of crashing the batch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from common.atomic import remove_stale_temporaries
from common.audio import (
    AudioError,
    is_audio_file,
    load_audio,
    resample,
    save_wav_int16,
    trim_silence,
)
from common.errors import InputError, UsageError
from common.locking import folder_lock
from preprocess.batch import BatchReport, default_workers, run_batch

MIN_SECONDS = 0.3  # shorter clips are useless for training (preprocess_flist_config skips them)
SILENCE_PEAK = 10 ** (-70 / 20)  # below -70 dBFS peak the file is taken as silent

_job: dict = {}


def _init(out_names: dict[str, str], sr: int, skip_loudnorm: bool, force: bool) -> None:
    _job.update(out_names=out_names, sr=sr, skip_loudnorm=skip_loudnorm, force=force)


def output_path(src: str, in_dir: str, out_dir: str) -> str:
    """``in_dir/<spk>/<stem>.<ext>`` → ``out_dir/<spk>/<stem>.wav`` (see :func:`plan_outputs`)."""
    rel = os.path.relpath(src, in_dir)
    return os.path.join(out_dir, os.path.splitext(rel)[0] + ".wav")


def plan_outputs(
    files: list[str], in_dir: str, out_dir: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Distinct output names, also on case-insensitive file systems.

    Inputs of one speaker whose stems are equal ignoring case (``a.wav``, ``a.flac``, ``A.mp3``)
    would all become ``a.wav``: the ``.wav`` input (else the first by name) keeps ``<stem>.wav``,
    the others get their extension in the name (``a_flac.wav``, ``A_mp3.wav``), with a message.
    Returns ``(src → dst, src → reason)``; a name that still collides is a failure to rename.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for src in files:
        stem = os.path.splitext(os.path.basename(src))[0]
        groups.setdefault((os.path.dirname(src), stem.lower()), []).append(src)
    out: dict[str, str] = {}
    for members in groups.values():
        members.sort(key=lambda p: (not p.lower().endswith(".wav"), os.path.basename(p)))
        out[members[0]] = output_path(members[0], in_dir, out_dir)
        for src in members[1:]:
            stem, ext = os.path.splitext(src)
            dst = output_path(f"{stem}_{ext.lstrip('.').lower()}.wav", in_dir, out_dir)
            out[src] = dst
            print(f"{src}: its name collides with {members[0]} (ignoring case and extension); "
                  f"writing {dst}", file=sys.stderr)  # fmt: skip
    seen: dict[str, str] = {}
    failed: dict[str, str] = {}
    for src in sorted(out):
        key = out[src].lower()
        if key in seen:
            failed[src] = (f"its output {out[src]} would overwrite the output of {seen[key]} "
                           "(rename one of them)")  # fmt: skip
        else:
            seen[key] = src
    return {k: v for k, v in out.items() if k not in failed}, failed


def process_audio(wav: np.ndarray, sr: int, target_sr: int, skip_loudnorm: bool) -> np.ndarray:
    """The reference's per-file processing; ``wav`` is float mono ``[L]`` at ``sr``."""
    wav = trim_silence(wav, top_db=40)
    peak = np.abs(wav).max() if wav.size else 0.0
    if peak > 1.0:
        wav = wav / peak * 0.98
    wav = resample(wav, sr, target_sr)
    if not skip_loudnorm:
        wav = wav / max(np.abs(wav).max(), 1e-9)
    return wav


def convert_one(src: str) -> tuple[str, str | None]:
    """Convert one file; returns ``(status, reason)``. Raises nothing for bad input."""
    dst = _job["out_names"][src]
    if not _job["force"] and os.path.exists(dst):
        return "skipped", None
    try:
        wav, sr = load_audio(src)
    except AudioError as e:
        return "failed", str(e).split(": ", 1)[-1]
    if np.abs(wav).max() < SILENCE_PEAK:
        return "failed", "silent (peak below -70 dBFS)"
    out = process_audio(wav, sr, _job["sr"], _job["skip_loudnorm"])
    if len(out) < MIN_SECONDS * _job["sr"]:
        return (
            "failed",
            f"too short after trimming silence ({len(out) / _job['sr']:.2f} s < {MIN_SECONDS} s)",
        )
    save_wav_int16(dst, out, _job["sr"])
    return "done", None


def find_inputs(in_dir: str, problems: dict[str, str] | None = None) -> list[str]:
    """Audio files one level down: ``in_dir/<speaker>/<file>`` (hidden files ignored).

    A speaker folder that cannot be listed is recorded in ``problems`` with the real reason
    (permission denied, ...) and skipped.
    """
    files = []
    for spk in sorted(os.listdir(in_dir)):
        spk_dir = os.path.join(in_dir, spk)
        if spk.startswith(".") or not os.path.isdir(spk_dir):
            continue
        try:
            names = sorted(os.listdir(spk_dir))
        except OSError as e:
            if problems is not None:
                problems[spk_dir] = f"folder skipped: {(e.strerror or str(e)).lower()}"
            continue
        for name in names:
            path = os.path.join(spk_dir, name)
            if os.path.isfile(path) and is_audio_file(path):
                files.append(path)
    return files


def resample_dataset(
    in_dir: str = "./dataset_raw",
    out_dir: str = "./dataset/44k",
    sr: int = 44100,
    skip_loudnorm: bool = False,
    num_processes: int | None = None,
    force: bool = False,
) -> BatchReport:
    if not os.path.isdir(in_dir):
        raise InputError(
            f"{in_dir}: input folder not found", f"put the audio in {in_dir}/<speaker>/*.wav"
        )
    problems: dict[str, str] = {}
    files = find_inputs(in_dir, problems)
    if not files:
        why = "; ".join(f"{k}: {v}" for k, v in problems.items())
        raise InputError(f"{in_dir}: no audio files found in {in_dir}/<speaker>/" +
                         (f" ({why})" if why else ""), "put one folder per speaker there")  # fmt: skip
    out_names, collisions = plan_outputs(files, in_dir, out_dir)
    with folder_lock(out_dir, "resample"):
        remove_stale_temporaries(out_dir, recursive=True)
        args = (out_names, sr, skip_loudnorm, force)
        report = run_batch(convert_one, list(out_names), num_processes, "resample", _init, args)
    for path, reason in {**problems, **collisions}.items():
        report.add(path, "failed", reason)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Resample dataset_raw to 44.1 kHz mono 16-bit wav.")
    p.add_argument("--sr2", type=int, default=44100, help="target sampling rate")
    p.add_argument("--in_dir", type=str, default="./dataset_raw", help="folder of speaker folders")
    p.add_argument("--out_dir2", type=str, default="./dataset/44k", help="output folder")
    p.add_argument("--skip_loudnorm", action="store_true", help="skip peak normalisation")
    p.add_argument(
        "--num_processes",
        type=int,
        default=default_workers(),
        help="worker processes (default: all cores)",
    )
    p.add_argument("--force", action="store_true", help="redo files that are already converted")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sr2 < 1:
        raise UsageError(f"--sr2 {args.sr2}: out of range; a sample rate must be >= 1 Hz")
    report = resample_dataset(
        args.in_dir, args.out_dir2, args.sr2, args.skip_loudnorm, args.num_processes, args.force
    )
    print(report.summary("resample"))
    print(f"output: {Path(args.out_dir2).resolve()}")
    return report.exit_code
