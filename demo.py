"""The demo: the whole so-vits-svc flow on a built-in synthetic two-singer dataset, no downloads.

    .venv/bin/python demo.py [--workdir demo_work]

Steps, each one a real run of the top-level script a user would run, inside ``--workdir``:
generate two synthetic singers → resample.py → preprocess_flist_config.py →
preprocess_hubert_f0.py (the real whisper-ppg-ct2 encoder shipped with the install; f0 from rmvpe
when ``pretrain/rmvpe.pt`` is there, else the FCPE model shipped with the install) → train.py (the
tiny config, a few minutes on the CPU) → cluster/train_cluster.py → inference_main.py (one alto
clip sung by the bass, plain and with cluster ratio 0.5).
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workdir", default="demo_work", help="folder for every demo output")
    p.add_argument("--files_per_singer", type=int, default=8)
    p.add_argument(
        "--train_steps", type=int, default=16, help="training steps (about 16 s each on 2 cores)"
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
    ]:
        print(f"  {label:18s} {path}")
    for result in sorted((work / "results").glob(f"{clip.name}_*")):
        print(f"  {'':18s}   {result.name}")
    report_quality(work, clip.name, source_singer="alto", target_singer="bass", transpose=-12)
    return 0


def report_quality(work: Path, clip: str, source_singer: str, target_singer: str,
                   transpose: float) -> None:  # fmt: skip
    """Measure the demo's conversions of ``raw/<clip>`` with eval.py's metrics (quality/) and
    print the table; eval.json, eval_table.txt and the pictures (``<output>.compare.png``:
    spectrograms and f0 of source vs output) go next to the outputs in ``results/``. ASR is off:
    the synthetic singers sing no words."""
    from quality.evaluate import EvalError, evaluate
    from quality.report import format_table

    results = work / "results"
    outputs = sorted(p for p in results.glob(f"{clip}_*") if p.suffix != ".png")
    if not outputs:
        print("\n== quality: no conversions to measure")
        return
    print(f"\n== quality of the conversions (eval.py's metrics, written to {results})", flush=True)
    raw = work / "dataset_raw"
    items = [{"output": str(o), "source": str(work / "raw" / clip), "transpose": transpose,
              "target_bank": str(raw / target_singer), "source_bank": str(raw / source_singer)}
             for o in outputs]  # fmt: skip
    try:
        report = evaluate(items, results, asr=False, progress=False)
    except EvalError as e:
        print(f"demo: quality not measured: {e}")
        return
    print(format_table(report))
    for f in report["files"]:
        if "error" in f or f["secs_target"] is None or f["secs_source"] is None:
            continue
        corr = f["f0_corr"]
        melody = "follows" if corr is not None and corr >= 0.8 else "does NOT follow"
        corr_text = "no common voiced frames" if corr is None else f"F0 corr {corr:.2f}"
        nearer = target_singer if f["secs_target"] > f["secs_source"] else source_singer
        print(f"  {f['name']}: {melody} the source melody {transpose:+g} st ({corr_text}); "
              f"sounds nearer the {nearer} (SECS {target_singer} {f['secs_target']:.3f}, "
              f"{source_singer} {f['secs_source']:.3f}); picture "
              f"{results / (f['name'] + '.compare.png')}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
