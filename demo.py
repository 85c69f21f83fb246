"""The demo: the whole so-vits-svc flow on a built-in synthetic two-singer dataset, no downloads.

    .venv/bin/python demo.py [--workdir demo_work]

Steps, each one a real run of the top-level script a user would run, inside ``--workdir``:
generate two synthetic singers → resample.py → preprocess_flist_config.py →
preprocess_hubert_f0.py (the real whisper-ppg-ct2 encoder shipped with the install; f0 from rmvpe
when ``pretrain/rmvpe.pt`` is there, else the FCPE model shipped with the install) → train.py (the
demo voice's small config, a few steps on the CPU: the flow, not a voice) → cluster/train_cluster.py
→ inference_main.py (one alto clip sung by the bass, plain and with cluster ratio 0.5, and with the
pretrained demo voice ``pretrain/demo_voice/``, used as is) → F0 corr and speaker similarity of the
plain conversions (eval.py when present) and a spectrogram + f0 picture next to each.
Re-running resumes: finished steps are skipped by the scripts themselves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
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


# --- the pretrained demo voice (bench/train_demo_voice.py): converts; the demo's own steps show the
# flow. Scores via eval.py (quality.evaluate) when present, else F0 corr + speaker similarity.
DEMO_VOICE = ROOT / "pretrain" / "demo_voice" / "demo_voice.pth"


def use_demo_config(config_path: Path) -> None:
    """Give the demo's config the demo voice's model and training settings (cheap CPU steps)."""
    import json

    from common.atomic import write_text

    voice = json.loads((DEMO_VOICE.parent / "config.json").read_text(encoding="utf-8"))
    cfg = json.loads(config_path.read_text(encoding="utf-8"))
    cfg["model"].update(voice["model"])
    cfg["train"].update({k: v for k, v in voice["train"].items() if "interval" not in k})
    write_text(config_path, json.dumps(cfg, indent=2) + "\n")


def score_demo(work: Path, raw: Path, clip: Path, f0: str) -> None:
    """Print F0 corr and speaker similarity (SECS) of the plain conversions (the demo's own
    model, the demo voice); a spectrogram + f0 picture goes next to each output."""
    from bench.train_demo_voice import picture

    items = []
    for results in (work / "results", work / "demo_voice" / "results"):
        for out in sorted(results.glob(f"{clip.name}_-12key_bass_sovits_*")):
            items.append({"output": str(out), "source": str(clip), "transpose": -12,
                          "target_bank": sorted(str(p) for p in (raw / "bass").glob("*.wav")),
                          "source_bank": sorted(str(p) for p in (raw / "alto").glob("*.wav"))})  # fmt: skip
    try:
        from quality.evaluate import evaluate
    except ImportError:  # eval.py not merged yet: the two headline numbers only
        from bench.train_demo_voice import quick_scores as evaluate
    report = evaluate(items, str(work / "eval"), f0_predictor=f0, asr=False, dnsmos=False)
    print(f"\n{'conversion (alto -> bass, -12)':52s} {'F0 corr':>8s} {'SECS bass':>9s} "
          f"{'SECS alto':>9s}")  # fmt: skip
    for it, res in zip(items, report["files"]):
        picture(it["source"], it["output"], -12, Path(it["output"]).with_suffix(".png"), f0)
        name = str(Path(it["output"]).relative_to(work))
        print(f"{name:52s} {res['f0_corr']:8.3f} {res['secs_target']:9.3f} "
              f"{res['secs_source']:9.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workdir", default="demo_work", help="folder for every demo output")
    p.add_argument("--files_per_singer", type=int, default=8)
    p.add_argument(
        "--train_steps",
        type=int,
        default=16,
        help="training steps (the flow; the demo voice converts)",
    )
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
    use_demo_config(work / "configs" / "config.json")
    f0 = best_f0_predictor(work)
    features = [str(ROOT / "preprocess_hubert_f0.py"), "--f0_predictor", f0, "--num_processes", "1"]
    run("features", features, work)
    steps = args.train_steps
    train = [str(ROOT / "train.py"), "-c", "configs/config.json", "-m", "44k", "--max_steps", str(steps),
             "--eval_interval", str(max(1, steps // 2)), "--log_interval", "4"]  # fmt: skip
    run("train", train, work)
    model = latest_checkpoint_path(work / "logs" / "44k", "G_*.pth")
    run("cluster", [str(ROOT / "cluster" / "train_cluster.py"), "--minibatch"], work)
    clip = sorted((raw / "alto").glob("*.wav"))[0]
    (work / "raw").mkdir(exist_ok=True)
    shutil.copy(clip, work / "raw" / clip.name)
    convert = [str(ROOT / "inference_main.py"), "-m", model, "-c", "logs/44k/config.json", "-n", clip.name,
               "-s", "bass", "-t", "-12", "-f0p", f0]  # fmt: skip
    run("convert", convert, work)
    run("convert with cluster ratio 0.5", [*convert, "-cr", "0.5"], work)
    voice_dir = work / "demo_voice"
    (voice_dir / "raw").mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, voice_dir / "raw" / clip.name)
    voice = [convert[0], "-m", str(DEMO_VOICE), "-c", str(DEMO_VOICE.parent / "config.json"),
             *convert[5:]]  # fmt: skip
    run("convert with the pretrained demo voice", voice, voice_dir)
    score_demo(work, raw, clip, f0)

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
        ("conversions", work / "results"),
        ("demo voice output", work / "demo_voice" / "results"),
    ]:
        print(f"  {label:18s} {path}")
        if label.endswith(("conversions", "output")):
            for result in sorted(Path(path).glob(f"{clip.name}_*")):
                print(f"  {'':18s}   {result.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
