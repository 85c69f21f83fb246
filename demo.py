"""The demo: the whole so-vits-svc flow on a built-in synthetic two-singer dataset, no downloads.

    .venv/bin/python demo.py [--workdir demo_work]

Steps, each one a real run of the top-level script a user would run, inside ``--workdir``:
generate two synthetic singers → resample.py → preprocess_flist_config.py →
preprocess_hubert_f0.py (the real whisper-ppg-ct2 encoder shipped with the install; f0 from rmvpe
when ``pretrain/rmvpe.pt`` is there, else the FCPE model shipped with the install) → train.py (the
tiny config, a few minutes on the CPU) → cluster/train_cluster.py → inference_main.py (one alto
clip sung by the bass, plain and with cluster ratio 0.5) → train_diff.py (a tiny diffusion model on
the ``--use_diff`` features) → inference_main.py -shd (the same clip with shallow diffusion) → the
motion sidecar (synthetic face takes of the bass → motion/prepare_visemes.py → train_visemes.py →
inference_main.py --visemes: a face track ``*.blendshapes.npy``/``.csv`` next to the conversion) →
inference_main.py with the demo voice shipped in ``pretrain/demo_voice/`` (the same two singers,
trained ahead for hours by ``bench/train_demo_voice.py``: a few CPU minutes of training cannot make
a voice that sings) on an alto clip none of these models heard → inference_main.py with the
real-voice base shipped in ``pretrain/base_voice/`` (real, licensed recordings only,
``bench/train_base_voice.py``): a held-out phrase of the vocadito singer S7 sung with the voice of
the vocadito singer S1 → eval.py's table for the conversions, with a spectrogram + f0 picture of
source vs output next to each.
Re-running resumes: finished steps are skipped by the scripts themselves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common.checkpoint import latest_checkpoint_path
from common.synthetic import DEMO_SINGERS, write_dataset

ROOT = Path(__file__).resolve().parent


def run(step: str, args: list[str], cwd: Path) -> None:
    print(f"\n== {step}: {' '.join(args)}", flush=True)
    t0 = time.time()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"demo: step '{step}' failed (exit {proc.returncode})")
    print(f"== {step} done in {time.time() - t0:.1f} s", flush=True)


def best_f0_predictor(work: Path) -> str:
    """rmvpe when its weights are in ``pretrain/`` (the demo's or the repo's), else fcpe (bundled)."""
    for pretrain in (work / "pretrain", ROOT / "pretrain"):
        if (pretrain / "rmvpe.pt").is_file():
            if not (work / "pretrain").exists():
                (work / "pretrain").symlink_to(pretrain)
            return "rmvpe"
    return "fcpe"


def diffusion_demo(work: Path, convert: list[str], steps: int) -> None:
    """Train a tiny diffusion model (``configs/diffusion_demo.yaml``) and convert once with -shd.

    Without openvpi's NSF-HiFiGAN in ``pretrain/nsf_hifigan`` an untrained stand-in vocoder is
    written to ``stand_in_nsf_hifigan/``: the flow runs, but that conversion does not sing."""
    import yaml

    cfg = yaml.safe_load((work / "configs" / "diffusion.yaml").read_text(encoding="utf-8"))
    vocoder = next((p / "nsf_hifigan" for p in (work / "pretrain", ROOT / "pretrain")
                    if (p / "nsf_hifigan" / "model").is_file()), None)  # fmt: skip
    if vocoder is None:
        import torch

        from vdecoder import NsfHifiGanGenerator, save_nsf_hifigan

        vocoder = work / "stand_in_nsf_hifigan"
        print(f"== no pretrain/nsf_hifigan: writing an untrained stand-in vocoder to {vocoder}")
        h = {"resblock": "1", "upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4, 4],
             "upsample_initial_channel": 64, "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]],
             "num_mels": 128, "n_fft": 2048, "hop_size": 512, "win_size": 2048, "sampling_rate": 44100,
             "fmin": 40, "fmax": 16000}  # fmt: skip
        torch.manual_seed(0)
        save_nsf_hifigan(NsfHifiGanGenerator.from_openvpi(h), h, vocoder)
    cfg["model"].update(n_layers=4, n_chans=64, n_hidden=64, k_step_max=100)
    # lr 1e-3 (template 1e-4): on the demo set this tiny model's loss falls from 1.01 to 0.83 in 500
    # steps and to 0.70 in 2,900 (10 minutes, one thread of a busy 2-core machine); at 1e-4 it
    # stays at 1.00 over the first 300 steps
    cfg["train"].update(batch_size=8, num_workers=0, interval_log=5, interval_val=steps, lr=1e-3)
    cfg.update(device="cpu", vocoder={"type": "nsf-hifigan", "ckpt": str(vocoder / "model")})
    (work / "configs" / "diffusion_demo.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    run("train diffusion", [str(ROOT / "train_diff.py"), "-c", "configs/diffusion_demo.yaml",
                            "--max_steps", str(steps)], work)  # fmt: skip
    dm = f"logs/44k/diffusion/model_{steps}.pt"
    run("convert with shallow diffusion", [*convert, "-shd", "-dm", dm, "-dc", "logs/44k/diffusion/config.yaml",
                                           "-ks", "100"], work)  # fmt: skip


def face_track(work: Path, model: str, convert: list[str], steps: int) -> Path:
    """Motion sidecar: synthetic face takes of the bass → prepare → train → convert with a face."""
    import json

    from motion.synthetic import write_takes

    if not (work / "face_takes").is_dir():
        write_takes(work / "face_takes", [s for s in DEMO_SINGERS if s.name == "bass"], 4, 6.0)
    run("face: prepare", [str(ROOT / "motion" / "prepare_visemes.py"), "--takes", "face_takes",
                          "-m", model, "-c", "logs/44k/config.json", "-s", "bass"], work)  # fmt: skip
    cfg_path = work / "configs" / "visemes.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"].update(hidden=48)
    cfg["train"].update(segment_frames=128, eval_interval=max(1, steps // 2))
    cfg_path.write_text(json.dumps(cfg, indent=2))
    run("face: train", [str(ROOT / "train_visemes.py"), "-c", "configs/visemes.json", "-m", "visemes",
                        "--max_steps", str(steps)], work)  # fmt: skip
    run("convert with a face track", [*convert, "--visemes", f"logs/visemes/V_{steps}.pth"], work)
    return next((work / "results").glob("*.blendshapes.npy"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workdir", default="demo_work", help="folder for every demo output")
    p.add_argument("--files_per_singer", type=int, default=8)
    p.add_argument(
        "--train_steps", type=int, default=16, help="training steps (about 16 s each on 2 cores)"
    )
    p.add_argument(
        "--diff_steps", type=int, default=20, help="diffusion training steps (tiny model)"
    )
    p.add_argument("--face_steps", type=int, default=300, help="motion sidecar training steps")
    args = p.parse_args(argv)
    work = Path(args.workdir).resolve()
    raw = work / "dataset_raw"
    t0 = time.time()
    if not raw.is_dir():
        print(f"== generating {len(DEMO_SINGERS)} synthetic singers in {raw}")
        write_dataset(raw, DEMO_SINGERS, files_per_singer=args.files_per_singer, duration=4.0)
    run("resample", [str(ROOT / "resample.py")], work)
    config = [
        str(ROOT / "preprocess_flist_config.py"),
        "--speech_encoder",
        "whisper-ppg-ct2",
        "--tiny",
    ]
    run("config", config, work)
    f0 = best_f0_predictor(work)
    features = [str(ROOT / "preprocess_hubert_f0.py"), "--f0_predictor", f0, "--num_processes", "1",
                "--use_diff"]  # fmt: skip
    run("features", features, work)
    steps = args.train_steps
    train = [str(ROOT / "train.py"), "-c", "configs/config.json", "-m", "44k", "--max_steps", str(steps),
             "--eval_interval", str(max(1, steps // 2)), "--log_interval", "4"]  # fmt: skip
    run("train", train, work)
    model = latest_checkpoint_path(work / "logs" / "44k", "G_*.pth")
    run("cluster", [str(ROOT / "cluster" / "train_cluster.py"), "--minibatch"], work)
    clip = sorted((raw / "alto").glob("*.wav"))[0]
    (work / "raw").mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, work / "raw" / clip.name)
    convert = [str(ROOT / "inference_main.py"), "-m", model, "-c", "logs/44k/config.json", "-n", clip.name,
               "-s", "bass", "-t", "-12", "-f0p", f0]  # fmt: skip
    run("convert", convert, work)
    run("convert with cluster ratio 0.5", [*convert, "-cr", "0.5"], work)
    diffusion_demo(work, convert, args.diff_steps)
    face = face_track(work, model, convert, args.face_steps)
    heldout = demo_voice(work, f0)
    real = real_voice(work, f0)

    print(f"\nDemo finished in {time.time() - t0:.0f} s. Outputs:")
    for label, path in [
        ("raw singers", raw),
        ("44.1 kHz dataset", work / "dataset" / "44k"),
        ("file lists", work / "filelists"),
        ("configs", work / "configs"),
        ("features", work / "dataset" / "44k" / "<singer>" / "*.soft.pt, *.f0.npy, *.spec.pt"),
        ("model", model),
        ("TensorBoard logs", work / "logs" / "44k"),
        ("k-means model", work / "logs" / "44k" / "kmeans_10000.pt"),
        ("diffusion model", work / "logs" / "44k" / "diffusion"),
        ("conversions", work / "results"),
        ("face track", face),
    ]:
        print(f"  {label:18s} {path}")
    for result in sorted((work / "results").glob(f"{clip.name}_*")):
        print(f"  {'':18s}   {result.name}")
    raw_banks = (work / "dataset_raw" / "alto", work / "dataset_raw" / "bass")
    pairs = [Pair(c, "alto", "bass", -12, *raw_banks) for c in (clip.name, heldout) if c]
    if real is not None:
        bank = BASE_VOICE / "demo" / "bank"
        pairs.append(
            Pair(real, REAL_SOURCE, REAL_TARGET, 0, bank / REAL_SOURCE, bank / REAL_TARGET)
        )
    report_quality(work, pairs)
    return 0


DEMO_VOICE = ROOT / "pretrain" / "demo_voice"
# the demo voice was trained on seeds 0…23 and 1000…1023 (bench/train_demo_voice.py)
HELDOUT_SEED = 777


def demo_voice(work: Path, f0: str) -> str | None:
    """Convert a clip no model here has heard with the shipped demo voice (``pretrain/demo_voice/``:
    the same two singers, trained ahead by ``bench/train_demo_voice.py``), so that a newcomer hears
    what a trained voice sounds like; the few training steps above only show the flow. Returns the
    clip's name in ``raw/``, or None when the release file is absent."""
    import soundfile as sf

    from common.synthetic import sing

    model, config = DEMO_VOICE / "demo_voice.pth", DEMO_VOICE / "config.json"
    if not (model.is_file() and config.is_file()):
        print(f"\n== no demo voice in {DEMO_VOICE}: skipping the trained-voice conversion")
        return None
    name = "alto_heldout.wav"
    if not (work / "raw" / name).is_file():
        alto = next(s for s in DEMO_SINGERS if s.name == "alto")
        wav = sing(4.0, alto, seed=HELDOUT_SEED)[0]
        sf.write(work / "raw" / name, wav, 44100, subtype="PCM_16")
    run("convert a held-out clip with the trained demo voice",
        [str(ROOT / "inference_main.py"), "-m", str(model), "-c", str(config), "-n", name,
         "-s", "bass", "-t", "-12", "-f0p", f0], work)  # fmt: skip
    return name


BASE_VOICE = ROOT / "pretrain" / "base_voice"
# the real-voice pair (bench/train_base_voice.py): vocadito S7's held-out phrase sung by S1
REAL_SOURCE, REAL_TARGET = "vocadito_S7", "vocadito_S1"


def real_voice(work: Path, f0: str) -> str | None:
    """Convert a real singer's held-out phrase (vocadito S7, CC BY 4.0) with the shipped real-voice
    base (``pretrain/base_voice/``: real recordings only, bench/train_base_voice.py) into another
    real singer of that model (S1). Returns the clip's name in ``raw/``, or None when the release
    file is absent."""
    model, config = BASE_VOICE / "base_voice.pth", BASE_VOICE / "config.json"
    clip = BASE_VOICE / "demo" / f"{REAL_SOURCE}_heldout.flac"
    if not (model.is_file() and config.is_file() and clip.is_file()):
        print(f"\n== no real-voice base in {BASE_VOICE}: skipping the real-voice conversion")
        return None
    (work / "raw").mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, work / "raw" / clip.name)
    run(f"convert a real singer's held-out phrase ({REAL_SOURCE} -> {REAL_TARGET}) with the base voice",
        [str(ROOT / "inference_main.py"), "-m", str(model), "-c", str(config), "-n", clip.name,
         "-s", REAL_TARGET, "-t", "0", "-f0p", f0], work)  # fmt: skip
    return clip.name


@dataclass
class Pair:
    """One conversion of ``raw/<clip>`` to measure: who sang it, whose voice it should have, the
    transpose, and reference audio of both singers (for speaker similarity)."""

    clip: str
    source: str
    target: str
    transpose: float
    source_bank: Path
    target_bank: Path


def report_quality(work: Path, pairs: list[Pair]) -> None:
    """Measure the demo's conversions of each ``raw/<clip>`` with eval.py's metrics (quality/) and
    print the table; eval.json, eval_table.txt and the pictures (``<output>.compare.png``:
    spectrograms and f0 of source vs output) go next to the outputs in ``results/``. ASR is off:
    the synthetic singers sing no words, and the real singers' phrases are short."""
    from quality.evaluate import EvalError, evaluate
    from quality.report import format_table

    results = work / "results"
    audio = (".flac", ".wav", ".ogg", ".mp3")
    outputs = [(pair, p) for pair in pairs
               for p in sorted(results.glob(f"{pair.clip}_*")) if p.suffix in audio]  # fmt: skip
    if not outputs:
        print("\n== quality: no conversions to measure")
        return
    print(f"\n== quality of the conversions (eval.py's metrics, written to {results})", flush=True)
    items = [{"output": str(o), "source": str(work / "raw" / pair.clip), "transpose": pair.transpose,
              "target_bank": str(pair.target_bank), "source_bank": str(pair.source_bank)}
             for pair, o in outputs]  # fmt: skip
    try:
        report = evaluate(items, results, asr=False, progress=False)
    except EvalError as e:
        print(f"demo: quality not measured: {e}")
        return
    print(format_table(report))
    by_name = {o.name: pair for pair, o in outputs}
    for f in report["files"]:
        pair = by_name.get(f["name"])
        if pair is None or "error" in f or f["secs_target"] is None or f["secs_source"] is None:
            continue
        corr = f["f0_corr"]
        melody = "follows" if corr is not None and corr >= 0.8 else "does NOT follow"
        corr_text = "no common voiced frames" if corr is None else f"F0 corr {corr:.2f}"
        nearer = pair.target if f["secs_target"] > f["secs_source"] else pair.source
        print(f"  {f['name']}: {melody} the source melody {pair.transpose:+g} st ({corr_text}); "
              f"sounds nearer {nearer} (SECS {pair.target} {f['secs_target']:.3f}, "
              f"{pair.source} {f['secs_source']:.3f}); picture "
              f"{results / (f['name'] + '.compare.png')}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
