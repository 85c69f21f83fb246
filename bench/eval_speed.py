"""How long eval.py takes on 10 ten-second conversions (issue 8: under a minute on 2 cores).

    python bench/eval_speed.py [--data ../shared/data] [--files 10] [--seconds 10] [--threads 2]

Inputs: LibriSpeech clips from ``<data>/librispeech`` (16 kHz speech with words, so the ASR
decodes real sentences), cut or tiled to ``--seconds``; each "output" is its source at a lower
gain with a little noise (a stand-in conversion of the same duration: eval.py's cost does not
depend on how good the conversion is, except that ASR of garbled audio can decode longer).
Target bank: speaker 367's folder, source bank: speaker 1688's. Without the data folder,
synthetic singers (common/synthetic.py) are used. eval.py runs as a user runs it (a fresh
process, every metric on, plots on), with ``OMP_NUM_THREADS=--threads``; the wall time includes
start-up and model loading. Writes ``bench/results/eval_speed.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_items(work: Path, data: Path, n: int, seconds: float) -> tuple[list[dict], str]:
    rng = np.random.default_rng(0)
    lib = data / "librispeech"
    (work / "src").mkdir(parents=True)
    (work / "out").mkdir()
    if lib.is_dir():
        from common.audio import load_audio

        clips = sorted(lib.glob("*/*.flac"))
        kind = "LibriSpeech"
        target, source = str(lib / "367"), str(lib / "1688")
        sr = 16000
        waves = [load_audio(p, sr)[0] for p in clips[:: max(1, len(clips) // n)][:n]]
    else:
        from common.synthetic import DEMO_SINGERS, sing, write_dataset

        print(f"eval_speed: {lib} not found: synthetic singers instead", file=sys.stderr)

        kind = "synthetic singers"
        sr = 44100
        waves = [sing(seconds, DEMO_SINGERS[i % 2], seed=i)[0] for i in range(n)]
        write_dataset(work / "banks", DEMO_SINGERS, files_per_singer=4)
        target, source = str(work / "banks" / "bass"), str(work / "banks" / "alto")
    items = []
    for i, w in enumerate(waves):
        w = np.resize(w, int(seconds * sr)).astype(np.float32)  # tile or cut
        out = 0.8 * w + 0.003 * rng.standard_normal(len(w)).astype(np.float32)
        sf.write(work / "src" / f"{i:02d}.wav", w, sr)
        sf.write(work / "out" / f"{i:02d}.flac", np.clip(out, -1, 1), sr)
        items.append({"output": str(work / "out" / f"{i:02d}.flac"),
                      "source": str(work / "src" / f"{i:02d}.wav"), "transpose": 0,
                      "target_bank": target, "source_bank": source})  # fmt: skip
    return items, kind


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    shared = [p / "shared" / "data" for p in ROOT.parents[:2] if (p / "shared" / "data").is_dir()]
    ap.add_argument("--data", default=str(shared[0] if shared else ROOT.parent / "shared" / "data"))
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "eval_speed.json"))
    args = ap.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        items, kind = make_items(work, Path(args.data), args.files, args.seconds)
        (work / "items.json").write_text(json.dumps(items))
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--manifest",
                               str(work / "items.json"), "--out", str(work / "eval")],
                              env=env, capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, sep="\n")
            return 1
        report = json.loads((work / "eval" / "eval.json").read_text())
    result = {
        "files": args.files, "seconds_each": args.seconds, "inputs": kind,
        "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
        "evaluate_s": report["meta"]["elapsed_s"],
        "aggregate": report["aggregate"],
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "platform": platform.platform(), "torch": torch.__version__,
                    "python": platform.python_version()},
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(proc.stdout)
    m = result["machine"]
    print(f"eval.py on {args.files} × {args.seconds:g} s ({kind}), every metric on: "
          f"wall {result['wall_s']} s (evaluate() {result['evaluate_s']} s), CPU {result['cpu_s']} s; "
          f"{m['cpu_count']} CPUs, OMP threads {args.threads}, load average at end "
          f"{m['load_average_at_end']}, torch {m['torch']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
