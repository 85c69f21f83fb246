"""Training memory with one long clip: peak RSS of a few real ``train.py`` steps on the CPU.

    python bench/train_memory.py [--config tiny|template] [--long_seconds 33] [--steps 3]
                                 [--max_frames N] [--workdir bench_work/train_memory]

Builds (once, resumable) the synthetic two-singer set of the demo (4 clips of about 4 s each) plus
one clip of ``--long_seconds`` for the bass, runs resample.py, preprocess_flist_config.py
(whisper-ppg-ct2, ``--tiny`` for the tiny config) and preprocess_hubert_f0.py (fcpe): nothing
to download. Then ``train.py --max_steps N`` runs in a fresh ``logs/`` folder as a child
process; its peak resident set size (``wait4``'s ``ru_maxrss``, as ``/usr/bin/time -v`` reports
it: the largest process of the run) and the seconds per step from its log are printed as JSON.
``--max_frames`` sets ``train.max_frames`` (0: 4.1's 800/790-frame crop; default: the
config's). Run it with ``OMP_NUM_THREADS=1`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _run(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, check=True)


def prepare(work: Path, tiny: bool, long_seconds: float) -> None:
    import soundfile as sf

    from common.synthetic import DEMO_SINGERS, sing, write_dataset

    raw = work / "dataset_raw"
    if not raw.is_dir():
        write_dataset(raw, DEMO_SINGERS, files_per_singer=4, duration=4.0)
        bass = next(s for s in DEMO_SINGERS if s.name == "bass")
        sf.write(raw / "bass" / "long.wav", sing(long_seconds, bass, seed=4242)[0], 44100,
                 subtype="PCM_16")  # fmt: skip
    _run([ROOT / "resample.py", "--num_processes", "1"], work)
    _run([ROOT / "preprocess_flist_config.py", "--speech_encoder", "whisper-ppg-ct2",
          *(["--tiny"] if tiny else [])], work)  # fmt: skip
    _run([ROOT / "preprocess_hubert_f0.py", "--f0_predictor", "fcpe"], work)


def measure(work: Path, steps: int, max_frames: int | None) -> dict:
    cfg_path = work / "configs" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if max_frames is not None:
        cfg["train"]["max_frames"] = max_frames
    cfg_path.write_text(json.dumps(cfg, indent=2))
    shutil.rmtree(work / "logs", ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-c", "configs/config.json",
                             "-m", "44k", "--max_steps", str(steps), "--log_interval", "1"],
                            cwd=work, env=env)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"train_memory: train.py exited {proc.returncode}")
    log = (work / "logs" / "44k" / "train.log").read_text(encoding="utf-8")
    per_step = [float(x) for x in re.findall(r"([\d.]+) s/step", log)]
    return {
        "max_frames": cfg["train"].get("max_frames") or "4.1 crop (800/790)",
        "batch_size": cfg["train"]["batch_size"],
        "steps": steps,
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "sec_per_step": per_step,
        "wall_s": round(time.perf_counter() - t0, 1),
        "long_clip_warned": "long.wav" in log or None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--config", choices=["tiny", "template"], default="tiny")
    p.add_argument("--long_seconds", type=float, default=33.0)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--max_frames", type=int, default=None,
                   help="train.max_frames for the run (0: 4.1's crop; default: the config's)")  # fmt: skip
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    work = Path(args.workdir or ROOT / "bench_work" / f"train_memory_{args.config}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, args.config == "tiny", args.long_seconds)
    result = {"config": args.config, "long_clip_s": args.long_seconds,
              "threads": os.environ.get("OMP_NUM_THREADS"),
              **measure(work, args.steps, args.max_frames)}  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
