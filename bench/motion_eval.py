"""Motion sidecar evaluation: lip-sync metrics of a visemes model, and the real Live Link take.

    python bench/motion_eval.py                                # synthetic run + the real take
    python bench/motion_eval.py --visemes logs/visemes/V_best.pth --list filelists/val_visemes.txt

1. The real take (``--data``, default ../shared/data/arkit/neurosync_trainer_lite: a Live Link
   Face ``_cal.csv`` export with its speech, see its README) is imported with import_llf, its
   bad frames counted, its face-to-audio lag estimated (motion.lag) and the loudness→JawOpen
   correlation measured (the baseline a model has to beat on such data). Skipped if absent.
2. A visemes model on prepared held-out takes (``--visemes`` + ``--list``): per take and mean,
   per-channel Pearson and MAE of the mouth shapes, lip-closure hit rate, residual lag (ms), and
   the loudness baseline (motion.metrics). Without ``--visemes`` the synthetic pipeline of the
   tests is run (demo-like singers with generated faces, a tiny random-init voice model for z,
   ``--steps`` training steps) and its held-out takes are scored.

Writes ``bench/results/motion_eval.json`` and prints a table, with the machine, threads and torch
version.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = next(
    (p / "shared" / "data" / "arkit" / "neurosync_trainer_lite" for p in (ROOT.parent, ROOT.parent.parent)
     if (p / "shared").is_dir()),
    ROOT.parent / "shared" / "data" / "arkit" / "neurosync_trainer_lite",
)  # fmt: skip


def real_take(data: Path, work: Path) -> dict | None:
    from common.audio import load_audio
    from motion.align import bad_frames
    from motion.channels import JAW_OPEN
    from motion.import_llf import import_take
    from motion.lag import estimate_lag, loudness_envelope, mouth_opening
    from motion.metrics import pearson
    from motion.voice import SR, frame_times

    csv, wav = data / "testset.csv", data / "audio.wav"
    if not (csv.is_file() and wav.is_file()):
        return None
    take = import_take(csv, wav, work / "real_take")
    audio, _ = load_audio(take.audio_path, sr=SR)
    bad, counts = bad_frames(take.values)
    env, env_t = loudness_envelope(audio, SR)
    good = ~bad
    lag, r = estimate_lag(take.t[good], mouth_opening(take.values[good]), env, env_t)
    lag_jaw, r_jaw = estimate_lag(take.t[good], take.values[good, JAW_OPEN], env, env_t)
    grid = frame_times(len(audio) // 512)
    inside = (grid >= take.t[0] + lag) & (grid <= take.t[-1] + lag)
    jaw = np.interp(grid[inside], take.t[good] - lag, take.values[good, JAW_OPEN])
    loud = np.interp(grid[inside], env_t, env)
    return {"csv": str(csv), "frames": len(take.values), "summary": take.meta["summary"],
            "bad_frames": counts, "lag_ms_mouth_opening": round(lag * 1e3, 2), "lag_corr": round(r, 3),
            "lag_ms_jaw_only": round(lag_jaw * 1e3, 2), "lag_corr_jaw_only": round(r_jaw, 3),
            "loudness_baseline_corr_jaw": round(pearson(loud, jaw), 3)}  # fmt: skip


def score(visemes: str, list_path: str, cwd: Path | None = None) -> dict:
    """Metrics on the prepared takes of ``list_path`` (prefixes relative to ``cwd``)."""
    import os

    if cwd is not None:
        old = os.getcwd()
        os.chdir(cwd)
        try:
            return score(visemes, list_path)
        finally:
            os.chdir(old)
    from motion.metrics import evaluate, mean_metrics
    from motion.predict import VisemesPredictor
    from motion.trainer import load_items

    pred = VisemesPredictor(visemes)
    base = tuple(pred.meta["stats"]["baseline"])
    per = []
    for it in load_items(list_path):
        d = evaluate(pred(it.z), it.bs, it.mask, it.loud, base)
        d["take"] = it.name
        per.append(d)
    return {"mean": mean_metrics(per), "takes": per}


def synthetic(work: Path, steps: int) -> tuple[str, str, dict]:
    import subprocess

    from common.synthetic import DEMO_SINGERS
    from motion.synthetic import write_takes
    from tests.infer_fixtures import infer_config, write_random_checkpoint

    cfg = infer_config()
    (work / "voice.json").write_text(json.dumps(cfg))
    write_random_checkpoint(cfg, work / "G_0.pth")
    write_takes(work / "takes", DEMO_SINGERS[:1], n_per_singer=8, duration=6.0, lag=0.04)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    run = lambda args: subprocess.run([sys.executable, *map(str, args)], cwd=work, env=env,  # noqa: E731
                                      check=True, capture_output=True, text=True)  # fmt: skip
    out = run([ROOT / "motion" / "prepare_visemes.py", "--takes", "takes", "-m", "G_0.pth", "-c",
               "voice.json", "-s", "alto", "--val", "2"]).stdout  # fmt: skip
    c = json.loads((work / "configs" / "visemes.json").read_text())
    c["model"].update(hidden=48, n_blocks=5)
    c["train"].update(segment_frames=128, learning_rate=3e-3, eval_interval=max(50, steps // 4))
    (work / "configs" / "visemes.json").write_text(json.dumps(c))
    t0 = time.time()
    run([ROOT / "train_visemes.py", "-c", "configs/visemes.json", "-m", "face", "--max_steps",
         str(steps), "--device", "cpu"])  # fmt: skip
    info = {"prepare_table": out.splitlines()[:10], "train_s": round(time.time() - t0, 1),
            "steps": steps}  # fmt: skip
    return (
        str(work / "logs" / "face" / f"V_{steps}.pth"),
        str(work / "filelists" / "val_visemes.txt"),
        info,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the real take's folder")
    p.add_argument("--visemes", default=None, help="V_*.pth to score (default: synthetic run)")
    p.add_argument("--list", default=None, help="prepared held-out takes (val_visemes.txt)")
    p.add_argument("--steps", type=int, default=600, help="training steps of the synthetic run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "motion_eval.json"))
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    report: dict = {"machine": {"cpu": platform.processor() or platform.machine(),
                                "python": platform.python_version(), "torch": torch.__version__,
                                "threads": args.threads}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report["real_take"] = real_take(Path(args.data), work)
        if report["real_take"] is None:
            print(f"motion_eval: no testset.csv + audio.wav in {args.data}: the real take is "
                  "left out (pass --data)", file=sys.stderr)  # fmt: skip
        if args.visemes:
            vis, lst, info = (
                args.visemes,
                args.list or "filelists/val_visemes.txt",
                {"source": "given"},
            )
        else:
            vis, lst, info = synthetic(work, args.steps)
            info["source"] = "synthetic (motion.synthetic, tiny random voice model)"
        report["model"] = {
            "visemes": vis,
            **info,
            **score(vis, lst, None if args.visemes else work),
        }
    from common.atomic import write_text

    write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    print(f"\nwrote {args.out}")
    return 0


def format_table(report: dict) -> str:
    lines = [f"machine: {report['machine']}"]
    rt = report.get("real_take")
    if rt:
        lines.append(f"real take ({rt['frames']} frames, {rt['summary']['effective_fps']} fps): lag "
                     f"{rt['lag_ms_mouth_opening']:+.1f} ms (r {rt['lag_corr']:.2f}; JawOpen only "
                     f"{rt['lag_ms_jaw_only']:+.1f} ms), loudness→JawOpen r {rt['loudness_baseline_corr_jaw']:.2f}")  # fmt: skip
    else:
        lines.append("real take: not found (skipped)")
    m = report["model"]["mean"]
    lines.append(f"{'metric':34s} {'value':>8s}")
    for k, v in m.items():
        lines.append(f"{k:34s} {v:8.3f}" if isinstance(v, float) else f"{k:34s} {v!s:>8s}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
